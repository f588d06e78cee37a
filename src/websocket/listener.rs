//! The plain `/ws` protocol: the subscription comes from the query string and may be
//! replaced by a `subscribe` message; every message to the listener is an envelope as JSON
//! text, `sequence` included.
//!
//! A subscribe message: `{"action":"subscribe","instances":["a"],"events":["messages.upsert"],
//! "from_sequence":N,"filter":{...}}` (every field optional; `instance`/`event` accepted
//! too; `filter` is a subscription's content filter, replacing the query string's). The server
//! answers `{"subscribed":{...}}` and continues from `from_sequence`, or, without it, right
//! after the last event the previous subscription looked at, with events accepted before
//! the message still following the old selection: no gap, no duplicate, one switch point.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connection::{self, Outbox, Outgoing, Why};
use super::feed::Feed;
use super::filter::{Filter, Selection};
use super::Hub;
use crate::api::auth::Principal;
use crate::api::error::{ApiError, ErrorCode};

/// What a listener asked for: which events, from where.
#[derive(Debug, Clone)]
pub struct Request {
    /// Instances and events.
    pub selection: Selection,
    /// Replay from this sequence; `None` starts at the log's end.
    pub from: Option<u64>,
}

/// Checks `selection` against what `principal` may see and what exists: an instance token
/// sees only its own instance (and gets it when it names none); named instances must exist.
pub fn authorize(
    hub: &Hub,
    principal: &Principal,
    mut selection: Selection,
) -> Result<Selection, ApiError> {
    if let Principal::Instance(own) = principal {
        let instances = selection
            .instances
            .get_or_insert_with(|| [own.clone()].into_iter().collect());
        for name in instances.iter() {
            principal.require_instance(name)?;
        }
    }
    if let Some(instances) = &selection.instances {
        let missing = hub.registry.read(|p| {
            instances
                .iter()
                .find(|name| !p.instances.contains_key(*name))
                .cloned()
        });
        if let Some(name) = missing {
            return Err(ApiError::not_found(format!("instance `{name}`")));
        }
    }
    Ok(selection)
}

/// The body of a subscribe message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeMessage {
    action: String,
    #[serde(default, alias = "instance")]
    instances: OneOrMany,
    #[serde(default, alias = "event")]
    events: OneOrMany,
    #[serde(default)]
    from_sequence: Option<u64>,
    /// The content filter (`crate::filter::Filter`'s shape); absent = none.
    #[serde(default)]
    filter: Option<serde_json::Value>,
}

/// A name or a list of names.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn parse_subscribe(hub: &Hub, principal: &Principal, text: &str) -> Result<Request, ApiError> {
    let msg: SubscribeMessage = serde_json::from_str(text).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("expected {{\"action\":\"subscribe\",\"instances\":[..],\"events\":[..],\"from_sequence\":N}}: {e}"),
        )
    })?;
    if msg.action != "subscribe" {
        return Err(ApiError::validation("action", "must be \"subscribe\""));
    }
    let mut selection = Selection::parse(&msg.instances.into_vec(), &msg.events.into_vec())?;
    if let Some(filter) = &msg.filter {
        selection.content = crate::filter::Filter::from_value(filter)
            .map_err(|e| crate::api::instance_body::filter_error(e, "filter"))?;
    }
    Ok(Request {
        selection: authorize(hub, principal, selection)?,
        from: msg.from_sequence,
    })
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<u64>,
    filter: Filter,
}

/// Starts a feed; `handover` is (switch point, previous filter) when it replaces a feed
/// without a new start.
fn start(
    hub: &Arc<Hub>,
    outbox: &Outbox,
    request: Request,
    handover: Option<(u64, Filter)>,
) -> Running {
    let filter = Filter::new(request.selection, hub.registry.clone(), true).counted(hub);
    let render = Box::new(|frame: &super::hub::Frame| Message::Text(frame.envelope.clone()));
    let mut feed = Feed::new(
        hub.clone(),
        filter.clone(),
        render,
        outbox.clone(),
        request.from,
    );
    if let Some((until, previous)) = handover {
        feed = feed.with_handover(until, previous);
    }
    let cancel = CancellationToken::new();
    let task = tokio::spawn(feed.run(cancel.clone()));
    Running {
        cancel,
        task,
        filter,
    }
}

/// Serves one `/ws` connection until it closes.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, principal: Principal, request: Request) {
    let (outbox, mut inbox) = connection::open(socket, hub.clone(), Message::Ping(Bytes::new()));
    let mut running = start(&hub, &outbox, request, None);
    while let Some(message) = inbox.recv().await {
        let text = match message {
            Message::Text(text) => text,
            _ => {
                inbox
                    .finish(Why::Policy("send subscribe messages as JSON text".into()))
                    .await;
                running.cancel.cancel();
                return;
            }
        };
        let mut request = match parse_subscribe(&hub, &principal, &text) {
            Ok(request) => request,
            Err(e) => {
                let reply = Message::Text(e.body().to_string().into());
                if !outbox
                    .push(Outgoing {
                        sequence: None,
                        message: reply,
                    })
                    .await
                {
                    break;
                }
                continue;
            }
        };
        // Without a new start, events accepted before this message keep the old selection
        // and later ones get the new one, whatever the old feed had reached.
        let switch_at = hub.next_sequence();
        running.cancel.cancel();
        let position = (&mut running.task)
            .await
            .unwrap_or_else(|_| hub.next_sequence());
        let handover = request
            .from
            .is_none()
            .then(|| (switch_at, running.filter.clone()));
        let from = *request.from.get_or_insert(position);
        let mut ack = json!({"subscribed": {
            "instances": request.selection.instances,
            "events": request.selection.events,
            "from_sequence": from,
        }});
        if !request.selection.content.is_empty() {
            ack["subscribed"]["filter"] = json!(request.selection.content);
        }
        if !outbox
            .push(Outgoing {
                sequence: None,
                message: Message::Text(ack.to_string().into()),
            })
            .await
        {
            break;
        }
        running = start(&hub, &outbox, request, handover);
    }
    running.cancel.cancel();
    inbox.finish(Why::PeerGone).await;
}
