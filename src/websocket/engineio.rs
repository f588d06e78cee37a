//! A socket.io session over one Engine.IO v4 websocket: the open packet, Engine.IO pings,
//! and any number of namespaces, each a feed of its own.
//!
//! Namespace `/{instance}` carries that instance's events (narrowed by its
//! `/websocket/set` settings) and exists as soon as the instance does, before any event.
//! The default namespace `/` carries every instance's events when `WEBSOCKET_GLOBAL_EVENTS`
//! is on, as Evolution's global mode does. The socket.io event name is the dotted event,
//! the one argument is the envelope.
//!
//! Auth: the `apikey` of the handshake (query string or header), or an `apikey` in the
//! CONNECT packet's auth payload (`io(url, {auth: {apikey}})`). The auth payload may also
//! carry `from_sequence` to replay from the log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connection::{self, Outbox, Outgoing, Why};
use super::feed::Feed;
use super::filter::{Filter, Selection};
use super::listener::authorize;
use super::socketio::{self, Kind};
use super::Hub;
use crate::api::auth::Principal;

/// Resolves an API key to a principal (the API's own rule, handed in by the route).
pub type Authenticate = Arc<dyn Fn(&str) -> Option<Principal> + Send + Sync>;

/// Largest message a client may send (we only expect CONNECT and DISCONNECT packets).
const MAX_PAYLOAD: u64 = 1_000_000;

/// What the handshake request carried.
pub struct Handshake {
    /// The principal of the handshake's key, if it had one.
    pub principal: Option<Principal>,
    /// `from_sequence` from the query string.
    pub from: Option<u64>,
    /// The content filter of the query string (`from_me`, `chat_types`, `chats`,
    /// `message_types`); a CONNECT packet's `auth.filter` object replaces it.
    pub content: crate::filter::Filter,
    /// Resolves a key sent in a CONNECT packet.
    pub authenticate: Authenticate,
}

struct Namespace {
    cancel: CancellationToken,
    _task: JoinHandle<u64>,
}

fn new_sid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Serves one Engine.IO session until it closes.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, handshake: Handshake) {
    let ping = Message::Text("2".into());
    let (outbox, mut inbox) = connection::open(socket, hub.clone(), ping);
    let c = &hub.config;
    let open = socketio::open(
        &new_sid(),
        (c.ping_interval_seconds * 1000.0) as u64,
        (c.ping_timeout_seconds * 1000.0) as u64,
        MAX_PAYLOAD,
    );
    let mut namespaces: HashMap<String, Namespace> = HashMap::new();
    let mut why = Why::PeerGone;
    if send(&outbox, open).await {
        while let Some(message) = inbox.recv().await {
            let Message::Text(text) = message else {
                continue;
            };
            let packet = match socketio::engine_frame(&text) {
                socketio::Frame::Ping => {
                    if !send(&outbox, "3".into()).await {
                        break;
                    }
                    continue;
                }
                socketio::Frame::Close => break,
                socketio::Frame::Pong | socketio::Frame::Other => continue,
                socketio::Frame::Message(packet) => packet,
            };
            let packet = match socketio::decode(packet) {
                Ok(packet) => packet,
                Err(e) => {
                    why = Why::Policy(e.to_string());
                    break;
                }
            };
            match packet.kind {
                Kind::Connect => {
                    let ns = packet.namespace.to_string();
                    if let Some(old) = namespaces.remove(&ns) {
                        old.cancel.cancel();
                    }
                    match connect(&hub, &handshake, &outbox, &ns, packet.data).await {
                        Ok(running) => {
                            namespaces.insert(ns, running);
                        }
                        Err(message) => {
                            if !send(&outbox, socketio::connect_error(&ns, &message)).await {
                                break;
                            }
                        }
                    }
                }
                Kind::Disconnect => {
                    if let Some(old) = namespaces.remove(packet.namespace) {
                        old.cancel.cancel();
                    }
                }
                // Events and acks from clients mean nothing to an event server.
                _ => {}
            }
        }
    }
    for ns in namespaces.values() {
        ns.cancel.cancel();
    }
    inbox.finish(why).await;
}

async fn send(outbox: &Outbox, text: String) -> bool {
    outbox
        .push(Outgoing {
            sequence: None,
            message: Message::Text(text.into()),
        })
        .await
}

/// Accepts or refuses a namespace; on acceptance the feed is running.
async fn connect(
    hub: &Arc<Hub>,
    handshake: &Handshake,
    outbox: &Outbox,
    ns: &str,
    data: Option<&str>,
) -> Result<Namespace, String> {
    let auth: Value = data
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| "the auth payload must be a JSON object".to_string())?
        .unwrap_or(Value::Null);
    let key = ["apikey", "apiKey", "token"]
        .iter()
        .find_map(|k| auth.get(*k).and_then(Value::as_str))
        .filter(|k| !k.is_empty());
    let principal = match key {
        Some(key) => (handshake.authenticate)(key).ok_or("apikey is invalid")?,
        None => handshake.principal.clone().ok_or(
            "apikey is required: pass it in the query string (?apikey=) or in auth: {apikey}",
        )?,
    };
    let from = auth
        .get("from_sequence")
        .and_then(Value::as_u64)
        .or(handshake.from);
    let (selection, instance_settings) = if ns == "/" {
        if !hub.config.global_events {
            return Err("the default namespace carries events only with \
                 WEBSOCKET_GLOBAL_EVENTS=true; connect to /{instance}"
                .into());
        }
        (Selection::everything(), false)
    } else {
        let instance = ns.trim_start_matches('/').to_string();
        let selection = Selection {
            instances: Some([instance].into_iter().collect()),
            ..Selection::default()
        };
        (selection, true)
    };
    let mut selection = selection;
    selection.content = match auth.get("filter") {
        Some(filter) => crate::filter::Filter::from_value(filter).map_err(|e| e.to_string())?,
        None => handshake.content.clone(),
    };
    let selection = authorize(hub, &principal, selection).map_err(|e| e.message)?;
    let filter = Filter::new(selection, hub.registry.clone(), instance_settings).counted(hub);
    let namespace = ns.to_string();
    let render = Box::new(move |frame: &super::hub::Frame| {
        Message::Text(socketio::event(&namespace, &frame.event, &frame.envelope).into())
    });
    // The feed's start is fixed before the client hears "connected": every event accepted
    // after its `connect` handler runs reaches it.
    let feed = Feed::new(hub.clone(), filter, render, outbox.clone(), from);
    if !send(outbox, socketio::connect_ok(ns, &new_sid())).await {
        return Err("connection closing".into());
    }
    let cancel = CancellationToken::new();
    let task = tokio::spawn(feed.run(cancel.clone()));
    Ok(Namespace {
        cancel,
        _task: task,
    })
}
