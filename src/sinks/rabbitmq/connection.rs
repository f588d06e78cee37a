//! The connection manager: one AMQP connection with one confirm-mode publish channel,
//! re-established by a background task with capped exponential backoff, without limit.
//!
//! Sends never wait for a connection: they take the current [`Link`] or get the reason
//! there is none, and the engine retries them later. A fresh `Link` carries an empty
//! topology cache, so everything is declared again after a reconnect (the broker may have
//! lost non-replicated state, or an operator may have deleted a queue).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Timeouts and backoff of the RabbitMQ connection and its operations.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Bound on opening a connection and its channel.
    pub connect_timeout: Duration,
    /// Bound on one send (declarations, publishes and confirms) or one eager declaration.
    pub operation_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay; a 20 s outage is noticed within this much of its end.
    pub backoff_max: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// One live connection, its publish channel, and what has been declared on it.
pub(crate) struct Link {
    /// The connection; declarations open short-lived channels on it.
    pub(crate) connection: Connection,
    /// The confirm-mode channel every publish goes through.
    pub(crate) channel: Channel,
    /// (exchange, queue) pairs declared and bound on this connection.
    declared: Mutex<HashSet<(String, String)>>,
    /// Why this link was given up, set once by whoever noticed first.
    broken_reason: Mutex<Option<String>>,
    /// Wakes the manager when a sender finds the link broken.
    broken: Notify,
}

impl Link {
    /// Whether `(exchange, queue)` is already declared and bound on this connection.
    pub(crate) fn is_declared(&self, exchange: &str, queue: &str) -> bool {
        self.declared
            .lock()
            .map(|d| d.contains(&(exchange.to_owned(), queue.to_owned())))
            .unwrap_or(false)
    }

    /// Records a successful declaration so later sends skip it.
    pub(crate) fn mark_declared(&self, exchange: &str, queue: &str) {
        if let Ok(mut d) = self.declared.lock() {
            d.insert((exchange.to_owned(), queue.to_owned()));
        }
    }

    /// Forgets a declaration the broker no longer has (a message to it came back).
    pub(crate) fn forget_declared(&self, exchange: &str, queue: &str) {
        if let Ok(mut d) = self.declared.lock() {
            d.remove(&(exchange.to_owned(), queue.to_owned()));
        }
    }

    /// Reports the link as unusable; the manager replaces it.
    pub(crate) fn mark_broken(&self, reason: &str) {
        if let Ok(mut r) = self.broken_reason.lock() {
            r.get_or_insert_with(|| reason.to_owned());
        }
        // notify_one stores a permit, so the manager sees it even if it is not waiting yet.
        self.broken.notify_one();
    }

    async fn wait_broken(&self) -> String {
        self.broken.notified().await;
        self.broken_reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "reported broken".into())
    }
}

/// What the manager currently has.
#[derive(Clone)]
enum LinkState {
    /// Not connected yet, or reconnecting; the last failure, if any.
    Connecting(Option<String>),
    /// Connected.
    Up(Arc<Link>),
    /// The sink was shut down.
    Closed,
}

/// Hands out the current link; owns the background task that keeps one open.
pub(crate) struct Manager {
    state: watch::Receiver<LinkState>,
}

impl Manager {
    /// Starts the background task. Must be called inside a tokio runtime.
    pub(crate) fn start(uri: String, options: LinkOptions, cancel: CancellationToken) -> Manager {
        let (tx, rx) = watch::channel(LinkState::Connecting(None));
        tokio::spawn(run(uri, options, tx, cancel));
        Manager { state: rx }
    }

    /// The current link, or why there is none.
    pub(crate) fn current(&self) -> Result<Arc<Link>, String> {
        match &*self.state.borrow() {
            LinkState::Up(link) => Ok(link.clone()),
            LinkState::Connecting(None) => Err("connecting to RabbitMQ".into()),
            LinkState::Connecting(Some(e)) => Err(format!("reconnecting to RabbitMQ: {e}")),
            LinkState::Closed => Err("the RabbitMQ sink is shut down".into()),
        }
    }

    /// Waits up to `timeout` for a link (startup, eager declarations, tests).
    pub(crate) async fn wait_up(&self, timeout: Duration) -> Result<Arc<Link>, String> {
        let mut rx = self.state.clone();
        // Timing out is not an error here: `current()` below says why there is no link.
        let _ = tokio::time::timeout(timeout, async {
            loop {
                if let LinkState::Up(_) | LinkState::Closed = &*rx.borrow_and_update() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.current()
    }
}

async fn open(uri: &str) -> Result<(Connection, Channel), lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name("switchyard".into());
    let connection = Connection::connect(uri, props).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// Resolves with the first connection-level error the client reports.
async fn connection_error(connection: &Connection) -> String {
    let mut events = connection.events_listener();
    while let Some(event) = events.next().await {
        if let Event::Error(e) = event {
            return e.to_string();
        }
    }
    "connection event stream ended".into()
}

fn jittered(delay: Duration) -> Duration {
    // +-20 % so many instances of the sink do not reconnect in lockstep.
    delay.mul_f64(rand::rng().random_range(0.8..1.2))
}

async fn run(
    uri: String,
    options: LinkOptions,
    tx: watch::Sender<LinkState>,
    cancel: CancellationToken,
) {
    let mut delay = options.backoff_initial;
    loop {
        let opened = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(options.connect_timeout, open(&uri)) => r,
        };
        match opened {
            Ok(Ok((connection, channel))) => {
                let link = Arc::new(Link {
                    connection,
                    channel,
                    declared: Mutex::new(HashSet::new()),
                    broken_reason: Mutex::new(None),
                    broken: Notify::new(),
                });
                tx.send_replace(LinkState::Up(link.clone()));
                tracing::info!("connected to RabbitMQ");
                delay = options.backoff_initial;
                let reason = tokio::select! {
                    _ = cancel.cancelled() => {
                        tx.send_replace(LinkState::Closed);
                        close(&link).await;
                        return;
                    }
                    r = link.wait_broken() => r,
                    r = connection_error(&link.connection) => r,
                };
                tracing::warn!(%reason, "RabbitMQ connection lost; reconnecting");
                tx.send_replace(LinkState::Connecting(Some(reason)));
                close(&link).await;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot connect to RabbitMQ");
                tx.send_replace(LinkState::Connecting(Some(e.to_string())));
            }
            Err(_) => {
                let reason = format!("connect timed out after {:?}", options.connect_timeout);
                tracing::warn!(%reason, retry_in = ?delay, "cannot connect to RabbitMQ");
                tx.send_replace(LinkState::Connecting(Some(reason)));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(jittered(delay)) => {}
        }
        delay = (delay * 2).min(options.backoff_max);
    }
    tx.send_replace(LinkState::Closed);
}

async fn close(link: &Link) {
    // Best effort and bounded: the peer may already be gone.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        link.connection.close(200, "switchyard reconnecting".into()),
    )
    .await;
}
