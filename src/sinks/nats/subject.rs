//! Subjects: where an event is published, and NATS's rules for a subject one may publish to.
//!
//! Evolution's names: per instance `{instance}.{dotted event}`, globally
//! `{prefix}.{dotted event}`, or the bare `{dotted event}` without a prefix. The event's
//! part is its catalog spelling ([`EventKind::dotted`]); a custom (provider-only) event keeps
//! its own dotted name, so `{instance}.>` or `{instance}.linq.>` select it.

use crate::catalog::EventKind;
use crate::envelope::LoggedEvent;

/// A subject that cannot be published to; it never will be, so the event is `Permanent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{subject}` is not a NATS subject one can publish to: {rule}")]
pub struct InvalidSubject {
    /// The subject as built.
    pub subject: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The subject of `event`: the global one (`prefix` or none) when `global`, else the
/// instance's own.
pub fn subject_for(global: bool, prefix: Option<&str>, event: &LoggedEvent) -> String {
    let name = event.event.event.as_str();
    // Stored events carry the dotted name: match it without the allocating parse.
    let dotted = EventKind::all()
        .find(|k| k.dotted() == name)
        .or_else(|| EventKind::parse(name).ok())
        .map_or_else(|| name.trim(), |k| k.dotted());
    match (global, prefix) {
        (false, _) => format!("{}.{dotted}", event.event.instance),
        (true, Some(prefix)) => format!("{prefix}.{dotted}"),
        (true, None) => dotted.to_owned(),
    }
}

/// Checks `subject` against the rules of a publish subject: tokens separated by `.`, none
/// empty, no whitespace or control characters (they end the protocol's subject field) and
/// no wildcard (`*`, `>`), which a subscriber could match but nothing may publish to.
pub fn check(subject: &str) -> Result<(), InvalidSubject> {
    let invalid = |rule| {
        Err(InvalidSubject {
            subject: subject.to_owned(),
            rule,
        })
    };
    if subject.is_empty() {
        return invalid("it is empty");
    }
    if subject.split('.').any(str::is_empty) {
        return invalid("a `.`-separated token is empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("it contains whitespace or a control character");
    }
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return invalid("a token is a wildcard (`*` or `>`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StoredEvent;
    use serde_json::value::RawValue;

    fn event(instance: &str, name: &str) -> LoggedEvent {
        LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: 1,
            received_at: chrono::Utc::now(),
            event: StoredEvent {
                id: uuid::Uuid::now_v7(),
                instance: instance.into(),
                event: name.into(),
                chat: None,
                data: RawValue::from_string("{}".into()).unwrap(),
                sender: None,
                source: None,
                raw: None,
                instance_id: None,
                key: None,
                request: None,
            },
        }
    }

    #[test]
    fn subjects_are_evolutions() {
        let e = event("shop", "messages.upsert");
        assert_eq!(subject_for(false, None, &e), "shop.messages.upsert");
        assert_eq!(subject_for(false, Some("acme"), &e), "shop.messages.upsert");
        assert_eq!(subject_for(true, Some("acme"), &e), "acme.messages.upsert");
        assert_eq!(subject_for(true, None, &e), "messages.upsert");
        let e = event("shop", "GROUP_PARTICIPANTS_UPDATE");
        assert_eq!(
            subject_for(false, None, &e),
            "shop.group-participants.update"
        );
    }

    #[test]
    fn custom_events_keep_their_dotted_name() {
        let e = event("shop", "linq.message_received");
        assert_eq!(subject_for(false, None, &e), "shop.linq.message_received");
        assert_eq!(subject_for(true, Some("p"), &e), "p.linq.message_received");
    }

    #[test]
    fn publish_subjects_follow_nats_rules() {
        for good in ["shop.messages.upsert", "a", "ção.call", "a-b_c.d"] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "my shop.call",
            "tab\there.call",
            "a.*.b",
            "a.>",
            "nl\n.call",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        // `*` and `>` inside a token are ordinary characters.
        assert!(check("a*b.c>d").is_ok());
    }
}
