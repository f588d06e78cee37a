//! One WebSocket connection's plumbing, shared by `/ws` and socket.io: a bounded outbox
//! drained by a writer task, keep-alive pings, dead-peer detection, and one close decision
//! that the writer turns into a close frame saying why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Hub, CLOSE_DEAD_PEER, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_SLOW};

/// How long the writer waits to hand a close frame to a peer that is not reading.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Why the server ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The outbox overflowed: the listener reads slower than events arrive.
    TooSlow,
    /// No frame from the peer within the ping interval plus the ping timeout.
    DeadPeer,
    /// The server is shutting down.
    Shutdown,
    /// The peer broke the protocol; the text says how.
    Policy(String),
    /// The peer closed or the connection broke: no close frame to send.
    PeerGone,
}

impl Why {
    fn label(&self) -> &'static str {
        match self {
            Why::TooSlow => "too_slow",
            Why::DeadPeer => "dead_peer",
            Why::Shutdown => "shutdown",
            Why::Policy(_) => "policy",
            Why::PeerGone => "peer_gone",
        }
    }

    fn frame(&self, resume_from: u64) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Why::TooSlow => (
                CLOSE_TOO_SLOW,
                format!("listener too slow; resume with from_sequence={resume_from}"),
            ),
            Why::DeadPeer => (CLOSE_DEAD_PEER, "no pong within the ping timeout".into()),
            Why::Shutdown => (
                CLOSE_GOING_AWAY,
                format!("server shutting down; resume with from_sequence={resume_from}"),
            ),
            // Close reasons are limited to 123 bytes by the protocol.
            Why::Policy(text) => (CLOSE_POLICY, truncate(text, 120)),
            Why::PeerGone => return None,
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// One message for the peer, with the event sequence it carries (if any).
#[derive(Debug)]
pub struct Outgoing {
    /// The event's sequence, so that a close can say where to resume.
    pub sequence: Option<u64>,
    /// The frame.
    pub message: Message,
}

/// The single close decision of a connection: the first reason wins.
#[derive(Clone)]
pub struct Closer(Arc<watch::Sender<Option<Why>>>);

impl Closer {
    /// Decides to close for `why`, unless a reason was already decided.
    pub fn close(&self, why: Why) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Resolves once a close is decided.
    pub async fn closed(&self) {
        let mut rx = self.0.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = rx.wait_for(Option::is_some).await;
    }
}

/// The sending side handed to feeds. A full outbox makes the feed wait (it is the
/// listener's own pace; nobody else waits); one that takes nothing for the slow timeout
/// closes the connection with [`Why::TooSlow`].
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    closer: Closer,
    slow_timeout: Duration,
    /// Where to resume when nothing has been written yet (set by the feed at start).
    resume_hint: Arc<AtomicU64>,
    hub: Arc<Hub>,
}

impl Outbox {
    /// Queues `item`, waiting while the outbox is full. Returns false when the connection
    /// is closing (possibly because of this wait): the caller stops.
    pub async fn push(&self, item: Outgoing) -> bool {
        let item = match self.tx.try_send(item) {
            Ok(()) => {
                self.hub.metrics.messages.inc();
                return true;
            }
            Err(mpsc::error::TrySendError::Full(item)) => item,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        };
        let wait = tokio::time::timeout(self.slow_timeout, self.tx.send(item));
        tokio::select! {
            _ = self.closer.closed() => false,
            sent = wait => match sent {
                Ok(Ok(())) => {
                    self.hub.metrics.messages.inc();
                    true
                }
                Ok(Err(_)) => false,
                Err(_) => {
                    self.closer.close(Why::TooSlow);
                    false
                }
            },
        }
    }

    /// Records where a listener that received nothing yet would resume.
    pub fn hint_resume(&self, sequence: u64) {
        self.resume_hint.fetch_max(sequence, Ordering::Relaxed);
    }

    /// The connection's close decision.
    pub fn closer(&self) -> &Closer {
        &self.closer
    }
}

/// The receiving side, read by the protocol handler.
pub struct Inbox {
    stream: SplitStream<WebSocket>,
    closer: Closer,
    hub: Arc<Hub>,
    dead_after: Duration,
    writer: JoinHandle<()>,
}

impl Inbox {
    /// The next data frame from the peer; `None` once the connection should end (the close
    /// reason is decided by then). Pings and pongs only prove the peer alive.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            let next = tokio::select! {
                _ = self.hub.shutdown.cancelled() => {
                    self.closer.close(Why::Shutdown);
                    return None;
                }
                _ = self.closer.closed() => return None,
                next = tokio::time::timeout(self.dead_after, self.stream.next()) => next,
            };
            match next {
                Err(_) => {
                    self.closer.close(Why::DeadPeer);
                    return None;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    self.closer.close(Why::PeerGone);
                    return None;
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return Some(message),
            }
        }
    }

    /// Ends the connection for `why` (unless already decided) and waits until the writer
    /// has sent the close frame or given up.
    pub async fn finish(self, why: Why) {
        self.closer.close(why);
        let _ = self.writer.await;
    }
}

/// Opens a connection: spawns the writer and returns the outbox and inbox. `ping` is the
/// keep-alive frame (a WebSocket ping, or Engine.IO's `2`).
pub fn open(socket: WebSocket, hub: Arc<Hub>, ping: Message) -> (Outbox, Inbox) {
    let config = &hub.config;
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(config.buffer_messages.max(1));
    let (close_tx, close_rx) = watch::channel(None);
    let closer = Closer(Arc::new(close_tx));
    let resume_hint = Arc::new(AtomicU64::new(0));
    let ping_interval = Duration::from_secs_f64(config.ping_interval_seconds);
    let dead_after = ping_interval + Duration::from_secs_f64(config.ping_timeout_seconds);
    let writer = Writer {
        sink,
        rx,
        close_rx,
        ping,
        ping_interval,
        resume_hint: resume_hint.clone(),
        closer: closer.clone(),
        hub: hub.clone(),
    };
    let writer = tokio::spawn(writer.run());
    let outbox = Outbox {
        tx,
        closer: closer.clone(),
        slow_timeout: Duration::from_secs_f64(config.slow_timeout_seconds),
        resume_hint,
        hub: hub.clone(),
    };
    let inbox = Inbox {
        stream,
        closer,
        hub,
        dead_after,
        writer,
    };
    (outbox, inbox)
}

struct Writer {
    sink: SplitSink<WebSocket, Message>,
    rx: mpsc::Receiver<Outgoing>,
    close_rx: watch::Receiver<Option<Why>>,
    ping: Message,
    ping_interval: Duration,
    resume_hint: Arc<AtomicU64>,
    closer: Closer,
    hub: Arc<Hub>,
}

impl Writer {
    async fn run(mut self) {
        self.hub.metrics.connections.inc();
        let why = self.pump().await;
        // Tell the reader and the feeds, when the writer is the one that found out.
        self.closer.close(why.clone());
        self.hub
            .metrics
            .closed
            .with_label_values(&[why.label()])
            .inc();
        let resume = self.resume_hint.load(Ordering::Relaxed);
        if let Some(frame) = why.frame(resume) {
            // A peer that does not read may never take the frame; give up after a while.
            let close = self.sink.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(CLOSE_WAIT, close).await;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, self.sink.close()).await;
        self.hub.metrics.connections.dec();
    }

    /// Sends until a close is decided; returns the reason.
    async fn pump(&mut self) -> Why {
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        loop {
            let item = tokio::select! {
                biased;
                why = decided(&mut self.close_rx) => return why,
                item = self.rx.recv() => match item {
                    Some(item) => item,
                    None => return Why::PeerGone,
                },
                _ = ping.tick() => Outgoing { sequence: None, message: self.ping.clone() },
            };
            // A write stuck on a peer that stopped reading is abandoned as soon as a close is
            // decided. Once `feed` has taken a frame it is queued whole ahead of anything sent
            // later (the close frame included), so framing holds and the frame counts as sent
            // for the resume point; a frame not yet taken was not sent at all.
            tokio::select! {
                biased;
                why = decided(&mut self.close_rx) => return why,
                fed = self.sink.feed(item.message) => {
                    if fed.is_err() {
                        return Why::PeerGone;
                    }
                    if let Some(sequence) = item.sequence {
                        self.resume_hint.fetch_max(sequence + 1, Ordering::Relaxed);
                    }
                }
            }
            tokio::select! {
                biased;
                why = decided(&mut self.close_rx) => return why,
                flushed = self.sink.flush() => {
                    if flushed.is_err() {
                        return Why::PeerGone;
                    }
                }
            }
        }
    }
}

async fn decided(rx: &mut watch::Receiver<Option<Why>>) -> Why {
    match rx.wait_for(Option::is_some).await {
        Ok(why) => why.clone().unwrap_or(Why::PeerGone),
        Err(_) => Why::PeerGone,
    }
}
