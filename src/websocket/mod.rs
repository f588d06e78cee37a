//! WebSocket listeners: a plain WebSocket endpoint (`/ws`) and socket.io (Engine.IO v4 over
//! the websocket transport), both fed from the event log.
//!
//! # Layout
//! - [`hub`]: the shared tail. One task reads each new batch of the log once, renders every
//!   event's envelope once, and publishes the batch on a broadcast channel.
//! - [`feed`]: one subscription's stream: replay from the log from its start sequence, then
//!   the broadcast, with gaps and lag filled from the log (no gap, no duplicate).
//! - [`filter`]: which instances and events a subscription wants, and the instance's own
//!   `/websocket/set` settings.
//! - [`connection`]: the per-connection writer: bounded outbox, keep-alive pings, dead-peer
//!   detection, and the close frame that says why.
//! - [`listener`]: the plain `/ws` protocol (query string and `subscribe` messages).
//! - [`socketio`] and [`engineio`]: the socket.io packet format and the session that serves
//!   namespaces over one Engine.IO websocket.
//!
//! A listener never slows anyone else: the tail only `send`s to a broadcast (which never
//! blocks), a lagging feed re-reads the log itself, and a full outbox pauses only that
//! listener's feed; one that takes nothing for `websocket.slow_timeout_seconds` is closed
//! with [`CLOSE_TOO_SLOW`] and the sequence to resume from.

pub mod connection;
pub mod engineio;
pub mod feed;
pub mod filter;
pub mod hub;
pub mod listener;
pub mod socketio;

pub use hub::Hub;

use prometheus::{IntCounterVec, IntGauge, Opts};

/// Close code sent to a listener whose outbox overflowed (the 4000-4999 range is for
/// applications; 4008 echoes HTTP 408's "too slow").
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code for a peer that stopped answering pings.
pub const CLOSE_DEAD_PEER: u16 = 4000;
/// Close code when the server shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a message that breaks the protocol.
pub const CLOSE_POLICY: u16 = 1008;

/// The listeners' Prometheus metrics.
#[derive(Clone)]
pub struct WsMetrics {
    /// Open WebSocket connections (plain and socket.io).
    pub connections: IntGauge,
    /// Envelopes queued to listeners.
    pub messages: prometheus::IntCounter,
    /// Connections the server closed, by reason (`too_slow`, `dead_peer`, `shutdown`, ...).
    pub closed: IntCounterVec,
}

impl WsMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> Result<WsMetrics, prometheus::Error> {
        let connections = IntGauge::new(
            "switchyard_websocket_connections",
            "Open WebSocket and socket.io connections.",
        )?;
        let messages = prometheus::IntCounter::new(
            "switchyard_websocket_messages_total",
            "Envelopes queued to WebSocket listeners.",
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "switchyard_websocket_server_closed_total",
                "Connections the server closed, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        Ok(WsMetrics {
            connections,
            messages,
            closed,
        })
    }
}
