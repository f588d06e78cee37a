//! The sink's one NATS connection, and what it learns from the server.
//!
//! - The client (async-nats) connects in the background and reconnects forever, with its
//!   own capped backoff (at most 4 s between attempts), resubscribing what it had. A send
//!   never waits for it: while it is not connected, a send is a `Retry` at once, so no
//!   publish piles up in the client's buffer to go out, unconfirmed, after we gave up.
//! - The round trip: async-nats's `flush` only writes the buffer to the socket, which proves
//!   nothing about the server. The connection answers requests on its own `_INBOX`
//!   subject, so a request to it comes back only after the server has processed every
//!   earlier publish of the connection (a server handles one connection's messages in
//!   order): that is the confirmation of core publishes.
//! - Which subjects a JetStream stream captures (`$JS.API.STREAM.NAMES` filtered by the
//!   subject), remembered for a while, so streams created or deleted later are noticed.
//!   A server without JetStream (nobody answers the API) means core publishes; but once
//!   JetStream has answered on this connection, its silence is taken as JetStream not
//!   being ready (a server still starting) and sends wait, for up to
//!   [`JETSTREAM_GRACE`]: a core publish then would count as delivered while no stream
//!   stored it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{NatsError, NatsOptions};

/// How long JetStream, once seen, may stay silent before the server is taken to have none
/// (an operator turned it off) and subjects are published core.
pub(crate) const JETSTREAM_GRACE: Duration = Duration::from_secs(60);

/// The server addresses of `uri`: one URL or several, comma-separated (`nats://`,
/// `tls://`; scheme and port 4222 may be left out; `user:password@` or `token@` in it is
/// how the client authenticates).
pub(crate) fn server_addrs(uri: &str) -> Result<Vec<ServerAddr>, String> {
    let addrs = uri
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<ServerAddr>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("no NATS server URL".into());
    }
    Ok(addrs)
}

/// Whether a stream captures a subject, as last looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// A JetStream stream stores what is published to it: publish with an ack.
    Stream,
    /// No stream (or no JetStream on the server): a core publish, confirmed by the round
    /// trip.
    Core,
}

/// One page of `$JS.API.STREAM.NAMES`.
#[derive(Debug, Deserialize)]
struct StreamNames {
    #[serde(default)]
    streams: Option<Vec<String>>,
}

/// The client, its JetStream context, the round-trip subject and the capture cache.
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) jetstream: jetstream::Context,
    /// The subject this connection's own responder answers.
    echo: String,
    captures: Mutex<HashMap<String, (Capture, Instant)>>,
    /// Whether JetStream ever answered, and since when it has been silent.
    jetstream_state: Mutex<JetStreamState>,
    options: NatsOptions,
}

/// What the connection knows about the server's JetStream.
#[derive(Debug, Default)]
struct JetStreamState {
    /// It answered an API request once.
    seen: bool,
    /// It has not answered since then.
    silent_since: Option<Instant>,
}

impl Connection {
    /// Starts connecting to `addrs` (in the background: a server that is down now makes
    /// sends retry, not start-up fail) and starts the round-trip responder on `tasks`,
    /// until `cancel`.
    pub(crate) async fn start(
        addrs: Vec<ServerAddr>,
        options: NatsOptions,
        cancel: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Connection, NatsError> {
        let client = ConnectOptions::new()
            .name("switchyard")
            .retry_on_initial_connect()
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.operation_timeout))
            // A server that went silent (not closed) is noticed within two intervals.
            .ping_interval(options.ping_interval)
            .event_callback(|event| async move {
                match event {
                    Event::Connected => tracing::info!("connected to NATS"),
                    Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                    other => tracing::warn!(event = %other, "NATS connection event"),
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| NatsError::Client(e.to_string()))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.operation_timeout)
            // Acks of a send that gave up (its deadline passed) hold in-flight permits
            // until then.
            .ack_timeout(options.operation_timeout)
            .build(client.clone());
        let echo = format!("{}.switchyard-round-trip", client.new_inbox());
        let responder = client
            .subscribe(echo.clone())
            .await
            .map_err(|e| NatsError::Client(e.to_string()))?;
        tasks.spawn(answer_round_trips(client.clone(), responder, cancel));
        Ok(Connection {
            client,
            jetstream,
            echo,
            captures: Mutex::new(HashMap::new()),
            jetstream_state: Mutex::new(JetStreamState::default()),
            options,
        })
    }

    /// Why nothing can be sent now, if so.
    pub(crate) fn unavailable(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            async_nats::connection::State::Pending => Some("connecting to NATS".into()),
            async_nats::connection::State::Disconnected => {
                Some("disconnected from NATS; reconnecting".into())
            }
        }
    }

    /// Writes what is buffered and waits for the server to have processed it (see the
    /// module docs), within `left`.
    pub(crate) async fn round_trip(&self, left: Duration) -> Result<(), String> {
        let flushed = tokio::time::timeout(left, async {
            self.client
                .flush()
                .await
                .map_err(|e| format!("NATS flush failed: {e}"))?;
            let request = async_nats::Request::new()
                .payload(Bytes::new())
                .timeout(Some(left));
            self.client
                .send_request(self.echo.clone(), request)
                .await
                .map(|_| ())
                .map_err(|e| format!("NATS did not confirm the publishes: {e}"))
        })
        .await;
        flushed.unwrap_or_else(|_| {
            Err(format!(
                "NATS did not confirm the publishes within {left:?}"
            ))
        })
    }

    /// Whether a stream captures `subject`: cached, else asked of the server within `left`.
    /// An error (a timeout) leaves it unknown, so the events wait for a later attempt.
    pub(crate) async fn capture(&self, subject: &str, left: Duration) -> Result<Capture, String> {
        if let Some(capture) = self.cached(subject) {
            return Ok(capture);
        }
        let filter = serde_json::json!({ "subject": subject });
        let request = self
            .jetstream
            .request::<_, _, jetstream::response::Response<StreamNames>>("STREAM.NAMES", &filter);
        let capture = match tokio::time::timeout(left, request).await {
            Err(_) => return Err(format!("JetStream did not answer within {left:?}")),
            Ok(Ok(jetstream::response::Response::Ok(page))) => {
                self.jetstream_answered();
                if page.streams.is_some_and(|s| !s.is_empty()) {
                    Capture::Stream
                } else {
                    Capture::Core
                }
            }
            // JetStream is not enabled for this account: a stream can capture nothing.
            Ok(Ok(jetstream::response::Response::Err { .. })) => {
                self.jetstream_answered();
                Capture::Core
            }
            Ok(Err(e)) => match e.kind() {
                jetstream::context::RequestErrorKind::NoResponders => {
                    self.jetstream_silent(subject)?
                }
                _ => {
                    return Err(format!(
                        "cannot ask JetStream which stream captures `{subject}`: {e}"
                    ))
                }
            },
        };
        self.remember(subject, capture);
        Ok(capture)
    }

    fn jetstream_answered(&self) {
        let mut state = self
            .jetstream_state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.seen = true;
        state.silent_since = None;
    }

    /// Nobody answers the JetStream API: no JetStream on this server (core publishes), unless
    /// it answered before and has been silent for less than [`JETSTREAM_GRACE`].
    fn jetstream_silent(&self, subject: &str) -> Result<Capture, String> {
        let mut state = self
            .jetstream_state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !state.seen {
            return Ok(Capture::Core);
        }
        let since = *state.silent_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= JETSTREAM_GRACE {
            return Ok(Capture::Core);
        }
        Err(format!(
            "JetStream answered before but not now (not ready yet?): `{subject}` waits for it, \
             at most {JETSTREAM_GRACE:?}"
        ))
    }

    /// Forgets what is known about `subject` (a stream went away, or stopped acking).
    pub(crate) fn forget(&self, subject: &str) {
        let mut captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        captures.remove(subject);
    }

    fn cached(&self, subject: &str) -> Option<Capture> {
        let captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        captures
            .get(subject)
            .filter(|(_, at)| at.elapsed() < self.options.capture_ttl)
            .map(|(capture, _)| *capture)
    }

    fn remember(&self, subject: &str, capture: Capture) {
        let mut captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        captures.insert(subject.to_owned(), (capture, Instant::now()));
    }
}

/// Answers every round-trip request of the connection with an empty reply, until `cancel`.
async fn answer_round_trips(
    client: Client,
    mut requests: async_nats::Subscriber,
    cancel: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = cancel.cancelled() => break,
            m = requests.next() => m,
        };
        let Some(message) = message else { break };
        if let Some(reply) = message.reply {
            // A lost reply only makes that send retry.
            let _ = client.publish(reply, Bytes::new()).await;
        }
    }
    // Whatever the client still buffers goes out before it is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
}
