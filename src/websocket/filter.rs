//! Which events a subscription receives: its own instance and event choices and its
//! content filter (`crate::filter`: query parameters `from_me`, `chat_types`, `chats`,
//! `message_types`, or a subscribe message's `filter`), narrowed by each instance's
//! `/websocket/set` settings.
//!
//! The content filter reads each frame's facts, decoded once per event by the hub; an
//! expression (`match`) parses the event's `data` (from the frame's envelope) only when
//! the structured clauses pass, once per event and listener.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::hub::Frame;
use crate::catalog::{EventKind, UnknownEvent, OPERATIONAL_PREFIX};
use crate::filter::CompiledFilter;
use crate::registry::records::SinkKind;
use crate::registry::Registry;

/// A subscription's filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Instance names; `None` means every instance.
    pub instances: Option<BTreeSet<String>>,
    /// Dotted event names; `None` means every event.
    pub events: Option<BTreeSet<&'static str>>,
    /// The content filter, as every subscription has one; empty = every event.
    pub content: crate::filter::Filter,
}

impl Selection {
    /// Builds a selection from names as clients send them: each entry may hold several
    /// comma-separated names, in any Evolution spelling for events. Empty lists mean "all".
    pub fn parse<S: AsRef<str>>(instances: &[S], events: &[S]) -> Result<Selection, UnknownEvent> {
        let split = |items: &[S]| -> Vec<String> {
            items
                .iter()
                .flat_map(|s| s.as_ref().split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let instances: BTreeSet<String> = split(instances).into_iter().collect();
        let events = split(events)
            .iter()
            .map(|name| EventKind::parse(name).map(EventKind::dotted))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Selection {
            instances: (!instances.is_empty()).then_some(instances),
            events: (!events.is_empty()).then_some(events),
            content: crate::filter::Filter::default(),
        })
    }

    /// The selection with every instance, every event.
    pub fn everything() -> Selection {
        Selection::default()
    }
}

/// A selection bound to the registry, so that each instance's websocket settings apply as
/// they change.
#[derive(Clone)]
pub struct Filter {
    selection: Selection,
    registry: Arc<Registry>,
    /// Whether the instance's `/websocket/set` settings narrow the stream (they do for `/ws`
    /// and instance namespaces; Evolution's global mode sends everything).
    instance_settings: bool,
    /// `selection.content`, compiled once; `None` when it has no clause. `Err` only for a
    /// filter that did not validate (never built by the API): it then passes nothing.
    content: Result<Option<Arc<CompiledFilter>>, ()>,
    /// Held while the listener runs: it counts for the operational events it named.
    _interest: Option<Arc<super::hub::Interest>>,
}

impl Filter {
    /// A filter over `selection`; `instance_settings` applies each instance's websocket
    /// `enabled` and `events`.
    pub fn new(selection: Selection, registry: Arc<Registry>, instance_settings: bool) -> Filter {
        let content = selection.content.compile_narrowing().map_err(|e| {
            tracing::error!(error = %e, "a listener's filter does not compile; it passes nothing");
        });
        Filter {
            selection,
            registry,
            instance_settings,
            content,
            _interest: None,
        }
    }

    /// The filter, counted in `hub` as a receiver of the operational events it names (so
    /// the alerts watcher writes them while it listens).
    pub fn counted(mut self, hub: &super::Hub) -> Filter {
        self._interest = hub.interest(self.selection.events.as_ref());
        self
    }

    /// Whether `frame` passes the content filter.
    fn content_accepts(&self, frame: &Frame) -> bool {
        let compiled = match &self.content {
            Ok(None) => return true,
            Ok(Some(compiled)) => compiled,
            Err(()) => return false,
        };
        // `data` only when an expression asks, parsed from the envelope the frame carries.
        let envelope = OnceCell::new();
        compiled.matches_with(&frame.facts, || {
            envelope
                .get_or_init(|| serde_json::from_str::<Value>(&frame.envelope).ok())
                .as_ref()
                .and_then(|e| e.get("data"))
        })
    }

    /// The selection.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Whether `frame` goes to this subscription.
    pub fn accepts(&self, frame: &Frame) -> bool {
        let s = &self.selection;
        if s.instances
            .as_ref()
            .is_some_and(|set| !set.contains(&*frame.instance))
        {
            return false;
        }
        if s.events
            .as_ref()
            .is_some_and(|set| !set.contains(&*frame.event))
        {
            return false;
        }
        // The server's own events reach only a listener that named them.
        if s.events.is_none() && frame.event.starts_with(OPERATIONAL_PREFIX) {
            return false;
        }
        if !self.content_accepts(frame) {
            return false;
        }
        // Names are reused after a delete: while an instance of this name exists, only the
        // events stored under its id are its own (older records: those received after it
        // was created).
        let own = self.registry.read(|p| {
            p.instances.get(&*frame.instance).is_none_or(|i| {
                crate::envelope::belongs_to(
                    frame.instance_id,
                    frame.received_at,
                    i.created.id,
                    i.created.created_at,
                )
            })
        });
        if !own {
            return false;
        }
        if !self.instance_settings {
            return true;
        }
        // An instance never configured for websocket sends everything; one explicitly
        // disabled sends nothing (Evolution's rule); an events list narrows (empty = all).
        self.registry.read(|p| {
            match p
                .instances
                .get(&*frame.instance)
                .and_then(|i| i.sinks.get(&SinkKind::Websocket))
            {
                None => true,
                Some(set) => {
                    set.enabled
                        && (set.events.is_empty()
                            || set.events.iter().any(|k| k.dotted() == &*frame.event)
                            || frame.event.starts_with(OPERATIONAL_PREFIX))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_and_comma_separated_names_in_any_spelling() {
        let s = Selection::parse(
            &["a,b", "c"],
            &["MESSAGES_UPSERT", "chats.update,GROUP_UPDATE"],
        )
        .unwrap();
        let instances: Vec<_> = s.instances.unwrap().into_iter().collect();
        assert_eq!(instances, ["a", "b", "c"]);
        let events: Vec<_> = s.events.unwrap().into_iter().collect();
        assert_eq!(events, ["chats.update", "groups.update", "messages.upsert"]);
    }

    #[test]
    fn empty_lists_mean_everything_and_unknown_events_are_errors() {
        let empty: [&str; 0] = [];
        assert_eq!(
            Selection::parse(&empty, &[""]).unwrap(),
            Selection::everything()
        );
        assert!(Selection::parse(&empty, &["nope.nope"]).is_err());
    }
}
