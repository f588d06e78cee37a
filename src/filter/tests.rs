//! The filter model end to end: a mixed stream, the five acceptance filters, every clause,
//! errors, query parameters, and garbage.

use serde_json::{json, Value};

use super::*;

/// One event of the sample stream.
struct Sample {
    name: &'static str,
    event: &'static str,
    data: Value,
}

/// A mixed stream: direct and group chats, `fromMe` both ways, a status broadcast, a
/// newsletter, three message types, a `@lid` chat with its phone JID in `remoteJidAlt`,
/// a status update (no `messageType`) and an event about no chat.
fn stream() -> Vec<Sample> {
    let message = |remote: Value, from_me: bool, push: &str, kind: &str, extra: Value| {
        let mut key = json!({"remoteJid": remote, "fromMe": from_me, "id": "3EB0C0FFEE"});
        if let Value::Object(extra) = extra {
            key.as_object_mut().unwrap().extend(extra);
        }
        let body = match kind {
            "conversation" => json!({"conversation": "oi"}),
            other => json!({ other: {"url": "https://mmg.whatsapp.net/x", "mimetype": "x"} }),
        };
        json!({"key": key, "pushName": push, "messageType": kind, "message": body,
               "messageTimestamp": 1764806400, "instanceId": "a1"})
    };
    vec![
        Sample {
            name: "direct-in-text",
            event: "messages.upsert",
            data: message(
                json!("5511999990000@s.whatsapp.net"),
                false,
                "Ana",
                "conversation",
                json!({}),
            ),
        },
        Sample {
            name: "direct-out-text",
            event: "send.message",
            data: message(
                json!("5511999990000@s.whatsapp.net"),
                true,
                "Me",
                "conversation",
                json!({}),
            ),
        },
        Sample {
            name: "group-in-image",
            event: "messages.upsert",
            data: message(
                json!("120363025246125486@g.us"),
                false,
                "Bruno",
                "imageMessage",
                json!({"participant": "5521988887777:3@s.whatsapp.net"}),
            ),
        },
        Sample {
            name: "group-out-text",
            event: "messages.upsert",
            data: message(
                json!("120363025246125486@g.us"),
                true,
                "Me",
                "conversation",
                json!({}),
            ),
        },
        Sample {
            name: "status-in-image",
            event: "messages.upsert",
            data: message(
                json!("status@broadcast"),
                false,
                "Carla",
                "imageMessage",
                json!({"participant": "5531977776666@s.whatsapp.net"}),
            ),
        },
        Sample {
            name: "lid-in-audio",
            event: "messages.upsert",
            data: message(
                json!("98765432109876@lid"),
                false,
                "Alice",
                "audioMessage",
                json!({"remoteJidAlt": "5521988887777@s.whatsapp.net"}),
            ),
        },
        Sample {
            name: "direct-in-audio",
            event: "messages.upsert",
            data: message(
                json!("5531977776666@s.whatsapp.net"),
                false,
                "Alberto",
                "audioMessage",
                json!({}),
            ),
        },
        Sample {
            name: "newsletter-in-text",
            event: "messages.upsert",
            data: message(
                json!("120363111@newsletter"),
                false,
                "Canal",
                "conversation",
                json!({}),
            ),
        },
        Sample {
            name: "direct-status-update",
            event: "messages.update",
            data: json!({"keyId": "3EB0", "remoteJid": "5511999990000@s.whatsapp.net",
                         "fromMe": true, "status": "READ", "instanceId": "a1"}),
        },
        Sample {
            name: "connection",
            event: "connection.update",
            data: json!({"state": "open", "statusReason": 200}),
        },
    ]
}

/// The names of the samples `filter` selects, evaluated as the router will: facts from
/// their stored bytes, `data` parsed lazily. Also checks that `data` is parsed only when
/// the filter has an expression.
fn selected(filter: &Filter) -> Vec<&'static str> {
    let compiled = filter.compile().expect("compiles");
    stream()
        .into_iter()
        .filter(|sample| {
            let raw = RawValue::from_string(sample.data.to_string()).unwrap();
            let stored = EventFacts::extract(sample.event, &raw).to_bytes();
            let facts = EventFacts::from_bytes(&stored).expect("facts decode");
            let data = LazyData::new(&raw);
            let matched = compiled.matches(&facts, &data);
            if !compiled.needs_data() {
                assert!(
                    !data.was_parsed(),
                    "{}: parsed without an expression",
                    sample.name
                );
            }
            matched
        })
        .map(|sample| sample.name)
        .collect()
}

fn filter(value: Value) -> Filter {
    Filter::from_value(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

#[test]
fn acceptance_incoming_direct_only() {
    assert_eq!(
        selected(&filter(json!({"from_me": false, "chat_types": ["direct"]}))),
        ["direct-in-text", "lid-in-audio", "direct-in-audio"]
    );
}

#[test]
fn acceptance_no_groups_and_no_status() {
    // `chat_types` is what to keep; events about no chat have no chat type and are not kept.
    assert_eq!(
        selected(&filter(json!({"chat_types": ["direct", "newsletter"]}))),
        [
            "direct-in-text",
            "direct-out-text",
            "lid-in-audio",
            "direct-in-audio",
            "newsletter-in-text",
            "direct-status-update"
        ]
    );
    // The same with a deny list, which lets chatless events through.
    assert_eq!(
        selected(&filter(json!({"match": {"$not": {"$or": [
            {"data.key.remoteJid": {"$startsWith": "status@"}},
            {"data.key.remoteJid": {"$in": ["120363025246125486@g.us"]}}
        ]}}}))),
        [
            "direct-in-text",
            "direct-out-text",
            "lid-in-audio",
            "direct-in-audio",
            "newsletter-in-text",
            "direct-status-update",
            "connection"
        ]
    );
}

#[test]
fn acceptance_allow_list_of_two_phone_numbers() {
    // 5521988887777 is the phone JID of the @lid chat (remoteJidAlt), and a participant
    // of the group, which is not a chat with them.
    assert_eq!(
        selected(&filter(
            json!({"chats": {"allow": ["+55 11 99999-0000", "5521988887777"]}})
        )),
        [
            "direct-in-text",
            "direct-out-text",
            "lid-in-audio",
            "direct-status-update"
        ]
    );
}

#[test]
fn acceptance_image_messages_only() {
    assert_eq!(
        selected(&filter(json!({"message_types": ["imageMessage"]}))),
        ["group-in-image", "status-in-image"]
    );
}

#[test]
fn acceptance_expression_on_push_name() {
    assert_eq!(
        selected(&filter(
            json!({"match": {"data.pushName": {"$startsWith": "A"}}})
        )),
        ["direct-in-text", "lid-in-audio", "direct-in-audio"]
    );
}

#[test]
fn each_clause_alone_and_together() {
    assert_eq!(selected(&Filter::default()).len(), stream().len());
    assert_eq!(
        selected(&filter(json!({"from_me": true}))),
        ["direct-out-text", "group-out-text", "direct-status-update"]
    );
    assert_eq!(
        selected(&filter(json!({"from_me": "any"}))).len(),
        stream().len()
    );
    assert_eq!(
        selected(&filter(json!({"chat_types": ["group", "broadcast"]}))),
        ["group-in-image", "group-out-text", "status-in-image"]
    );
    assert_eq!(
        selected(&filter(
            json!({"chats": {"deny": ["status@broadcast", "120363025246125486@g.us"]}})
        )),
        [
            "direct-in-text",
            "direct-out-text",
            "lid-in-audio",
            "direct-in-audio",
            "newsletter-in-text",
            "direct-status-update",
            "connection"
        ]
    );
    // The @lid JID itself matches too; a phone number never matches a @lid JID.
    assert_eq!(
        selected(&filter(json!({"chats": {"allow": ["98765432109876@lid"]}}))),
        ["lid-in-audio"]
    );
    assert_eq!(
        selected(&filter(json!({"chats": {"allow": ["98765432109876"]}}))),
        Vec::<&str>::new()
    );
    // Deny wins over allow, through either JID.
    assert_eq!(
        selected(&filter(json!({"chats": {
            "allow": ["5511999990000", "98765432109876@lid"],
            "deny": ["5521988887777@c.us"]}}))),
        ["direct-in-text", "direct-out-text", "direct-status-update"]
    );
    // Participants: the device suffix and the spelling do not matter.
    assert_eq!(
        selected(&filter(
            json!({"participants": {"allow": ["+55 21 98888-7777", "5531977776666@c.us"]}})
        )),
        ["group-in-image", "status-in-image"]
    );
    assert_eq!(
        selected(&filter(
            json!({"participants": {"deny": ["5521988887777"]}})
        ))
        .len(),
        stream().len() - 1
    );
    assert_eq!(
        selected(&filter(
            json!({"message_types": ["conversation", "audioMessage"]})
        )),
        [
            "direct-in-text",
            "direct-out-text",
            "group-out-text",
            "lid-in-audio",
            "direct-in-audio",
            "newsletter-in-text"
        ]
    );
    assert_eq!(
        selected(&filter(json!({
            "from_me": false,
            "chat_types": ["direct", "group"],
            "message_types": ["audioMessage", "imageMessage"],
            "match": {"data.pushName": {"$in": ["Alice", "Bruno"]}}
        }))),
        ["group-in-image", "lid-in-audio"]
    );
}

#[test]
fn the_expression_sees_data_once_and_only_past_the_structured_clauses() {
    let raw = RawValue::from_string(
        json!({"key": {"remoteJid": "1@g.us", "fromMe": false}, "pushName": "Ana"}).to_string(),
    )
    .unwrap();
    let facts = EventFacts::extract("messages.upsert", &raw);
    let data = LazyData::new(&raw);
    let direct_only = filter(json!({"chat_types": ["direct"], "match": {"data.pushName": "Ana"}}))
        .compile()
        .unwrap();
    assert!(direct_only.needs_data());
    assert!(!direct_only.matches(&facts, &data));
    assert!(!data.was_parsed(), "the chat type already failed");
    let groups = filter(json!({"chat_types": ["group"], "match": {"data.pushName": "Ana"}}))
        .compile()
        .unwrap();
    let mut calls = 0;
    let parsed = data.get().cloned();
    assert!(groups.matches_with(&facts, || {
        calls += 1;
        parsed.as_ref()
    }));
    assert_eq!(calls, 1);
    assert!(groups.matches(&facts, &data) && data.was_parsed());
    assert!(
        !groups.matches_with(&facts, || None),
        "data that is not JSON fails"
    );
    assert!(Filter::default().compile().unwrap().matches_everything());
    assert!(!groups.matches_everything());
}

#[test]
fn filters_serialize_back_as_given() {
    let given = json!({
        "from_me": false,
        "chat_types": ["direct", "group", "broadcast", "newsletter"],
        "chats": {"allow": ["+55 11 99999-0000", "120363@g.us"], "deny": ["status@broadcast"]},
        "participants": {"deny": ["5521988887777"]},
        "message_types": ["conversation", "imageMessage"],
        "match": {"data.pushName": {"$startsWith": "A"}}
    });
    let parsed: Filter = serde_json::from_value(given.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), given);
    assert_eq!(
        serde_json::to_value(filter(json!({"from_me": "any", "chats": null}))).unwrap(),
        json!({})
    );
    assert!(filter(json!({})).is_empty());
    assert!(Filter::from_value(&Value::Null).unwrap().is_empty());
}

#[test]
fn bad_filters_name_the_path_and_the_problem() {
    let cases = [
        (json!([]), "filter", "expects an object"),
        (json!({"bogus": 1}), "filter.bogus", "unknown key"),
        (json!({"bogus": null}), "filter.bogus", "unknown key"),
        (
            json!({"from_me": "yes"}),
            "filter.from_me",
            "true, false or \"any\"",
        ),
        (
            json!({"chat_types": "direct"}),
            "filter.chat_types",
            "expects an array",
        ),
        (json!({"chat_types": []}), "filter.chat_types", "is empty"),
        (
            json!({"chat_types": ["direct", "status"]}),
            "filter.chat_types[1]",
            "not a chat type",
        ),
        (
            json!({"chat_types": [1]}),
            "filter.chat_types[0]",
            "expects a string",
        ),
        (
            json!({"chats": ["5511"]}),
            "filter.chats",
            "\"allow\" and/or \"deny\"",
        ),
        (
            json!({"chats": {"only": []}}),
            "filter.chats.only",
            "unknown key",
        ),
        (
            json!({"chats": {"allow": []}}),
            "filter.chats.allow",
            "is empty",
        ),
        (
            json!({"chats": {"allow": ["5511999990000", "abc"]}}),
            "filter.chats.allow[1]",
            "not a JID",
        ),
        (
            json!({"participants": {"deny": ["@lid"]}}),
            "filter.participants.deny[0]",
            "not a JID",
        ),
        (
            json!({"message_types": ["image message"]}),
            "filter.message_types[0]",
            "not a message type",
        ),
        (
            json!({"message_types": []}),
            "filter.message_types",
            "is empty",
        ),
        (
            json!({"match": {"data.pushName": {"$startsWith": 1}}}),
            "filter.match.data.pushName.$startsWith",
            "expects a string",
        ),
        (
            json!({"match": {"pushName": "A"}}),
            "filter.match.pushName",
            "paths start with `data`",
        ),
        (
            json!({"match": "data.pushName == A"}),
            "filter.match",
            "expects an object",
        ),
    ];
    for (value, path, problem) in cases {
        let err = Filter::from_value(&value).expect_err(&value.to_string());
        assert_eq!(err.path, path, "{value}");
        assert!(err.problem.contains(problem), "{value}: {}", err.problem);
    }
    let too_many: Vec<String> = (0..=MAX_LIST_ENTRIES)
        .map(|i| format!("{}", 5_511_000_000_000u64 + i as u64))
        .collect();
    let err = Filter::from_value(&json!({"chats": {"deny": too_many}})).unwrap_err();
    assert_eq!(err.path, "filter.chats.deny");
    // Through serde, the message carries the path.
    let err = serde_json::from_value::<Filter>(json!({"chat_types": ["dm"]})).unwrap_err();
    assert!(
        err.to_string()
            .contains("filter.chat_types[0]: \"dm\" is not a chat type"),
        "{err}"
    );
    // A filter built by hand is checked when compiled.
    let by_hand = Filter {
        chats: Some(IdLists {
            allow: Some(vec!["x".into()]),
            deny: None,
        }),
        ..Filter::default()
    };
    assert_eq!(by_hand.compile().unwrap_err().path, "filter.chats.allow[0]");
}

#[test]
fn query_params_map_onto_the_same_model() {
    let params = [
        ("instance", "sales"),
        ("from_me", "false"),
        ("chat_types", "direct, group"),
        ("chats", " 5511999990000,120363025246125486@g.us,"),
        ("message_types", "conversation,imageMessage"),
        ("events", "MESSAGES_UPSERT"),
    ];
    let from_query = Filter::from_query_params(params).unwrap();
    assert_eq!(
        from_query,
        filter(json!({
            "from_me": false,
            "chat_types": ["direct", "group"],
            "chats": {"allow": ["5511999990000", "120363025246125486@g.us"]},
            "message_types": ["conversation", "imageMessage"]
        }))
    );
    assert_eq!(selected(&from_query), ["direct-in-text", "group-in-image"]);
    // Owned pairs work too, as a web framework hands them over.
    let owned = vec![
        ("from_me".to_owned(), "ANY".to_owned()),
        ("chats".to_owned(), String::new()),
    ];
    assert!(Filter::from_query_params(owned).unwrap().is_empty());
    // Repeated parameters add up; a `+` decoded as a space still reads as a number.
    let repeated =
        Filter::from_query_params([("chats", " 55 11 99999-0000"), ("chats", "5521988887777")])
            .unwrap();
    assert_eq!(repeated.chats.unwrap().allow.unwrap().len(), 2);

    let errors = [
        (
            vec![("from_me", "maybe")],
            "from_me",
            "not true, false or any",
        ),
        (
            vec![("from_me", "true"), ("from_me", "false")],
            "from_me",
            "different values",
        ),
        (
            vec![("chat_types", "direct,dm")],
            "chat_types",
            "\"dm\" is not a chat type",
        ),
        (
            vec![("chats", "5511999990000,abc")],
            "chats",
            "\"abc\" is not a JID",
        ),
        (
            vec![("message_types", "image-message")],
            "message_types",
            "not a message type",
        ),
    ];
    for (params, path, problem) in errors {
        let err = Filter::from_query_params(params.clone()).expect_err(&format!("{params:?}"));
        assert_eq!(err.path, path, "{params:?}");
        assert!(err.problem.contains(problem), "{params:?}: {}", err.problem);
    }
}

/// A small deterministic generator for garbage (xorshift64).
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// A random JSON value built from filter-ish and event-ish words.
    fn value(&mut self, depth: u32) -> Value {
        const WORDS: &[&str] = &[
            "data",
            "data.pushName",
            "data.key",
            "data.key.remoteJid",
            "$eq",
            "$neq",
            "$in",
            "$nin",
            "$exists",
            "$startsWith",
            "$gt",
            "$gte",
            "$lt",
            "$lte",
            "$and",
            "$or",
            "$not",
            "from_me",
            "chat_types",
            "chats",
            "participants",
            "message_types",
            "match",
            "allow",
            "deny",
            "key",
            "remoteJid",
            "remoteJidAlt",
            "fromMe",
            "participant",
            "participantAlt",
            "messageType",
            "direct",
            "group",
            "5511999990000@s.whatsapp.net",
            "1@lid",
            "status@broadcast",
            "+55 11 9999-0000",
            "",
            "0",
            "a..b",
            "any",
        ];
        match (self.next() % if depth == 0 { 5 } else { 8 }, depth) {
            (0, _) => Value::Null,
            (1, _) => Value::Bool(self.next().is_multiple_of(2)),
            (2, _) => json!((self.next() % 2000) as i64 - 1000),
            (3, _) => json!((self.next() % 1000) as f64 / 7.0),
            (4, _) => Value::String(self.pick(WORDS).to_owned()),
            (5 | 6, _) => {
                let n = self.next() % 4;
                let mut object = serde_json::Map::new();
                for _ in 0..n {
                    let key = self.pick(WORDS).to_owned();
                    object.insert(key, self.value(depth - 1));
                }
                Value::Object(object)
            }
            _ => {
                let n = self.next() % 4;
                Value::Array((0..n).map(|_| self.value(depth - 1)).collect())
            }
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut garbage = Garbage(0x2545_f491_4f6c_dd1d);
    let events = [
        "messages.upsert",
        "messages.update",
        "send.message",
        "chats.upsert",
        "presence.update",
        "call",
        "nonsense",
    ];
    let mut compiled_ok = 0;
    for _ in 0..20_000 {
        let candidate = garbage.value(4);
        let data = garbage.value(4);
        let raw = RawValue::from_string(data.to_string()).unwrap();
        let facts = EventFacts::extract(garbage.pick(&events), &raw);
        assert_eq!(EventFacts::from_bytes(&facts.to_bytes()), Ok(facts.clone()));
        if let Ok(filter) = Filter::from_value(&candidate) {
            let compiled = filter.compile().expect("a parsed filter compiles");
            compiled_ok += 1;
            let _ = compiled.matches(&facts, &LazyData::new(&raw));
            // What a filter serializes to parses back to the same filter.
            let again = Filter::from_value(&serde_json::to_value(&filter).unwrap()).unwrap();
            assert_eq!(again, filter);
        }
        if let Ok(expression) = expr::Expr::compile(&candidate, "filter.match") {
            let _ = expression.eval(&data);
        }
    }
    assert!(
        compiled_ok > 100,
        "the generator makes some valid filters: {compiled_ok}"
    );
}
