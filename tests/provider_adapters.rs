//! Provider adapters against fixture payloads: every `tests/fixtures/providers/<provider>/*.json`
//! is normalized and compared with its snapshot in `.../<provider>/expected/<name>.json`
//! (event, source, sender, dedupe key, data and raw, or the error and its field).
//!
//! After an intended change, regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test
//! provider_adapters` and review the diff. Fixture names carry intent: `error-*` must be
//! rejected, `seed-*` are the seeds' payloads verbatim, everything else must normalize.
//! Evolution fixtures named `[error-]by-events__<kebab-event>__<name>.json` are posted as
//! to `/ingest/{instance}/evolution/<kebab-event>`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::catalog::EventKind;
use switchyard::ingest::providers::{evolution, linq, meta, whapi, AdapterError};
use switchyard::ingest::IncomingEvent;

const PROVIDERS: &[&str] = &["evolution", "whapi", "meta", "linq"];

fn dir(provider: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(provider)
}

fn fixture(provider: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(provider).join(format!("{name}.json"))).expect("fixture exists")
}

/// The `<kebab-event>` an Evolution fixture is posted under, from its name.
fn path_event(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("error-").unwrap_or(name);
    rest.strip_prefix("by-events__")?.split("__").next()
}

fn normalize(provider: &str, name: &str, body: &[u8]) -> Result<Vec<IncomingEvent>, AdapterError> {
    match provider {
        "evolution" => evolution::normalize(body, path_event(name)),
        "whapi" => whapi::normalize(body),
        "meta" => meta::normalize(body),
        "linq" => linq::normalize(body),
        other => panic!("no adapter {other}"),
    }
}

fn snapshot(result: &Result<Vec<IncomingEvent>, AdapterError>) -> Value {
    match result {
        Ok(events) => json!({
            "events": events.iter().map(|e| json!({
                "event": e.event,
                "source": e.source,
                "sender": e.sender,
                "dedupe_key": e.dedupe_key,
                "data": serde_json::from_str::<Value>(e.data.get()).unwrap(),
                "raw": e.raw.as_ref().map(|r| serde_json::from_str::<Value>(r.get()).unwrap()),
            })).collect::<Vec<_>>()
        }),
        Err(e) => json!({ "error": e.to_string(), "field": e.field() }),
    }
}

fn fixture_names(provider: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir(provider))
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut failures = Vec::new();
    let mut count = 0;
    for provider in PROVIDERS {
        let expected_dir = dir(provider).join("expected");
        if update {
            std::fs::create_dir_all(&expected_dir).unwrap();
        }
        for name in fixture_names(provider) {
            count += 1;
            let body = fixture(provider, &name);
            let result = normalize(provider, &name, &body);
            // Intent encoded in the name.
            if name.starts_with("error-") {
                assert!(result.is_err(), "{provider}/{name} should be rejected");
            } else if !name.starts_with("seed-") {
                assert!(
                    result.is_ok(),
                    "{provider}/{name}: {:?}",
                    result.as_ref().err()
                );
            }
            if let Ok(events) = &result {
                let text = std::str::from_utf8(&body).unwrap();
                for e in events {
                    assert_eq!(e.source, Some(*provider), "{provider}/{name}");
                    if *provider == "evolution" {
                        // Evolution's data is the body's own; its envelope carries the
                        // gateway's apikey and the URL it posted to.
                        assert!(e.raw.is_none(), "{provider}/{name}: raw kept");
                        continue;
                    }
                    let raw = e.raw.as_ref().expect("raw kept");
                    assert!(
                        text.contains(raw.get()) || raw.get().contains("[redacted]"),
                        "{provider}/{name}: raw is neither verbatim nor redacted"
                    );
                }
            }
            let got = snapshot(&result);
            let path = expected_dir.join(format!("{name}.json"));
            if update {
                let mut text = serde_json::to_string_pretty(&got).unwrap();
                text.push('\n');
                std::fs::write(&path, text).unwrap();
                continue;
            }
            let want: Value = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
                Err(_) => {
                    failures.push(format!(
                        "{provider}/{name}: no snapshot at {}",
                        path.display()
                    ));
                    continue;
                }
            };
            if got != want {
                failures.push(format!(
                    "{provider}/{name} differs from its snapshot\n--- want\n{}\n--- got\n{}",
                    serde_json::to_string_pretty(&want).unwrap(),
                    serde_json::to_string_pretty(&got).unwrap()
                ));
            }
        }
    }
    assert!(count >= 85, "only {count} fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn one(provider: &str, name: &str) -> Vec<IncomingEvent> {
    normalize(provider, name, &fixture(provider, name)).unwrap()
}

fn data(e: &IncomingEvent) -> Value {
    serde_json::from_str(e.data.get()).unwrap()
}

fn err(provider: &str, name: &str) -> AdapterError {
    normalize(provider, name, &fixture(provider, name)).unwrap_err()
}

// ---- Whapi --------------------------------------------------------------------------

#[test]
fn whapi_seed_payloads_as_scraped_are_rejected_naming_the_field() {
    // The seed's chat ids were obfuscated to "[email protected]" by the page it was
    // copied from; they break Whapi's own pattern, and the error says where.
    let e = err("whapi", "seed-chats-post-incoming");
    assert_eq!(e.field(), "chats[0].id");
    assert!(
        e.to_string()
            .contains(r"does not match ^[\d-]{10,31}@[\w\.]{1,}$"),
        "{e}"
    );
    assert_eq!(
        err("whapi", "seed-chats-delete").field(),
        "chats_removed[0]"
    );
    // Two seed payloads are not JSON (elided "....", a cut-off string): rejected at `$`.
    assert_eq!(err("whapi", "seed-chats-patch").field(), "$");
    assert_eq!(err("whapi", "seed-messages-post-ephemeral").field(), "$");
}

#[test]
fn whapi_chats_map_to_evolution_chat_events() {
    let up = one("whapi", "chats-post-incoming");
    assert_eq!(up[0].event, "chats.upsert");
    assert_eq!(data(&up[0])[0]["remoteJid"], "919984351847@s.whatsapp.net");
    assert_eq!(data(&up[0])[0]["unreadMessages"], 1);
    let patch = one("whapi", "chats-patch");
    assert_eq!(patch[0].event, "chats.update");
    let d = data(&patch[0]);
    assert_eq!(
        d[0]["changes"],
        json!(["last_message", "labels", "mute", "mute_until"])
    );
    assert_eq!(d[0]["before"]["name"], "Jonathan");
    assert_eq!(d[0]["after"]["mute"], true);
    assert_eq!(d[0]["mute"], true);
    // The 2^64 mute_until is kept exactly in raw even though it does not fit an integer.
    assert!(patch[0]
        .raw
        .as_ref()
        .unwrap()
        .get()
        .contains("18446744073709552000"));
    let del = one("whapi", "chats-delete");
    assert_eq!(del[0].event, "chats.delete");
    assert_eq!(data(&del[0]), json!(["919984351847@s.whatsapp.net"]));
}

#[test]
fn whapi_messages_are_in_evolution_shape() {
    let batch = one("whapi", "messages-post-text-batch");
    assert_eq!(batch.len(), 2);
    let d = data(&batch[0]);
    assert_eq!(batch[0].event, "messages.upsert");
    assert_eq!(
        d["key"],
        json!({"remoteJid": "919984351847@s.whatsapp.net", "fromMe": false, "id": "Jx4PWGLbIm8vXXs-wJhUo1DN1A"})
    );
    assert_eq!(d["pushName"], "Jonathan");
    assert_eq!(d["message"]["conversation"], "Hi, is my order ready?");
    assert_eq!(d["messageType"], "conversation");
    assert_eq!(d["messageTimestamp"], 1747661100);
    assert_eq!(batch[0].sender, None);
    // A message we sent names our own number.
    assert_eq!(
        batch[1].sender.as_deref(),
        Some("14155550123@s.whatsapp.net")
    );
    // Each event's raw is its own item.
    assert!(batch[0]
        .raw
        .as_ref()
        .unwrap()
        .get()
        .contains("Jx4PWGLbIm8vXXs"));
    assert!(!batch[0]
        .raw
        .as_ref()
        .unwrap()
        .get()
        .contains("MGGZ9qgtJgHAGNk"));

    let img = data(&one("whapi", "messages-post-image-group")[0]);
    assert_eq!(img["key"]["participant"], "447700900123@s.whatsapp.net");
    assert_eq!(img["messageType"], "imageMessage");
    assert_eq!(
        img["message"]["imageMessage"]["caption"],
        "Receipt attached"
    );
    assert_eq!(img["contextInfo"]["stanzaId"], "Jx4PWGLbIm8vXXs-wJhUo1DN1A");

    let reaction = data(&one("whapi", "messages-post-reaction")[0]);
    assert_eq!(reaction["message"]["reactionMessage"]["text"], "👍");
    assert_eq!(
        reaction["message"]["reactionMessage"]["key"]["id"],
        "MGGZ9qgtJgHAGNk-wK0UxJM1oA"
    );

    let edited = one("whapi", "messages-patch");
    assert_eq!(edited[0].event, "messages.edited");
    assert_eq!(
        data(&edited[0])["message"]["conversation"],
        "Yes, it ships tomorrow."
    );
    assert_eq!(one("whapi", "messages-delete")[0].event, "messages.delete");
}

#[test]
fn whapi_statuses_are_message_updates_keyed_by_status() {
    let st = one("whapi", "statuses-post");
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|e| e.event == "messages.update"));
    assert_eq!(data(&st[0])["status"], "DELIVERY_ACK");
    assert_eq!(data(&st[1])["status"], "READ");
    assert_eq!(data(&st[0])["keyId"], "MGGZ9qgtJgHAGNk-wK0UxJM1oA");
    assert_ne!(st[0].dedupe_key, st[1].dedupe_key);
}

#[test]
fn whapi_other_kinds() {
    let cases = [
        ("contacts-post", "contacts.upsert"),
        ("contacts-patch", "contacts.update"),
        ("groups-post", "groups.upsert"),
        ("groups-patch", "groups.update"),
        ("groups-put-participants", "group-participants.update"),
        ("presences-post", "presence.update"),
        ("labels-post", "labels.edit"),
        ("labels-delete", "labels.edit"),
        ("calls-post", "call"),
        ("custom-channel-patch", "whapi.channel.patch"),
        ("messages-post-ephemeral", "messages.upsert"),
    ];
    for (name, event) in cases {
        assert_eq!(one("whapi", name)[0].event, event, "{name}");
    }
    let presence = data(&one("whapi", "presences-post")[0]);
    assert_eq!(
        presence["presences"]["919984351847@s.whatsapp.net"]["lastKnownPresence"],
        "composing"
    );
    assert_eq!(data(&one("whapi", "labels-delete")[0])["deleted"], true);
    assert_eq!(
        data(&one("whapi", "groups-post")[0])[0]["participants"][0]["admin"],
        "superadmin"
    );
}

#[test]
fn whapi_errors_name_the_field() {
    assert_eq!(
        err("whapi", "error-chat-id").to_string(),
        r#"whapi: chats[0].id: "abc" does not match ^[\d-]{10,31}@[\w\.]{1,}$"#
    );
    assert_eq!(err("whapi", "error-no-event").field(), "event");
    assert_eq!(
        err("whapi", "error-messages-not-array").to_string(),
        "whapi: messages: expected an array, got an object"
    );
    assert_eq!(
        err("whapi", "error-message-no-id").field(),
        "messages[0].id"
    );
}

// ---- Meta ---------------------------------------------------------------------------

fn sign(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn meta_signature_guards_every_fixture() {
    for name in fixture_names("meta") {
        let body = fixture("meta", &name);
        let good = sign(b"app-secret", &body);
        assert!(
            meta::verify_signature(b"app-secret", &body, Some(&good)),
            "{name}"
        );
        assert!(
            !meta::verify_signature(b"wrong-secret", &body, Some(&good)),
            "{name}"
        );
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(
            !meta::verify_signature(b"app-secret", &tampered, Some(&good)),
            "{name}"
        );
    }
}

#[test]
fn meta_messages_and_statuses() {
    let m = one("meta", "messages-text");
    assert_eq!(m[0].event, "messages.upsert");
    assert_eq!(m[0].sender.as_deref(), Some("15550783881@s.whatsapp.net"));
    let d = data(&m[0]);
    assert_eq!(d["key"]["remoteJid"], "16505551234@s.whatsapp.net");
    assert_eq!(d["key"]["fromMe"], false);
    assert_eq!(d["pushName"], "Sheena Nelson");
    assert_eq!(
        d["message"]["conversation"],
        "Does it come in another color?"
    );
    assert_eq!(d["messageTimestamp"], 1749416383);

    let st = one("meta", "statuses");
    let statuses: Vec<Value> = st.iter().map(|e| data(e)["status"].clone()).collect();
    assert_eq!(
        statuses,
        vec![
            json!("SERVER_ACK"),
            json!("DELIVERY_ACK"),
            json!("READ"),
            json!("ERROR")
        ]
    );
    assert!(st.iter().all(|e| e.event == "messages.update"));

    assert_eq!(
        data(&one("meta", "messages-reaction")[0])["message"]["reactionMessage"]["text"],
        "❤️"
    );
    assert_eq!(
        data(&one("meta", "messages-interactive-button")[0])["message"]["buttonsResponseMessage"]
            ["selectedButtonId"],
        "change-date"
    );
    assert_eq!(one("meta", "calls")[0].event, "call");
    let custom = one("meta", "custom-template-status-update");
    assert_eq!(custom[0].event, "meta.message_template_status_update");
    assert_eq!(data(&custom[0])["event"], "APPROVED");
    assert_eq!(one("meta", "two-entries").len(), 2);
    assert_eq!(
        err("meta", "error-message-no-from").field(),
        "entry[0].changes[0].value.messages[0].from"
    );
    assert_eq!(
        err("meta", "error-changes-not-array").field(),
        "entry[0].changes"
    );
}

// ---- Linq ---------------------------------------------------------------------------

/// Every event name the Linq seed lists, and what it becomes.
#[test]
fn linq_seed_event_names_all_map() {
    // shared/ sits beside the repository (in CI too); without it the table still runs.
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/seeds/linq-update-webhook-subscription.txt"),
    );
    let expected = [
        ("message.sent", "send.message"),
        ("message.received", "messages.upsert"),
        ("message.read", "messages.update"),
        ("message.delivered", "messages.update"),
        ("message.failed", "messages.update"),
        ("message.edited", "messages.edited"),
        ("reaction.added", "messages.upsert"),
        ("reaction.removed", "messages.upsert"),
        ("participant.added", "group-participants.update"),
        ("participant.removed", "group-participants.update"),
        ("chat.created", "chats.upsert"),
        ("chat.group_name_updated", "groups.update"),
        ("chat.group_icon_updated", "groups.update"),
        (
            "chat.group_name_update_failed",
            "linq.chat.group_name_update_failed",
        ),
        (
            "chat.group_icon_update_failed",
            "linq.chat.group_icon_update_failed",
        ),
        ("chat.typing_indicator.started", "presence.update"),
        ("chat.typing_indicator.stopped", "presence.update"),
        (
            "phone_number.status_updated",
            "linq.phone_number.status_updated",
        ),
        ("call.initiated", "call"),
        ("call.ringing", "call"),
        ("call.answered", "call"),
        ("call.ended", "call"),
        ("call.failed", "call"),
        ("call.declined", "call"),
        ("call.no_answer", "call"),
    ];
    if let Ok(seed) = seed {
        for line in seed.lines() {
            let t = line.trim().trim_matches(',');
            if t.starts_with('"')
                && t.ends_with('"')
                && t.contains('.')
                && !t.contains(' ')
                && !t.contains('/')
            {
                let name = t.trim_matches('"');
                assert!(
                    expected.iter().any(|(l, _)| *l == name),
                    "seed event {name} not in the table"
                );
            }
        }
    }
    // A payload carrying every field any mapping reads.
    for (linq_event, evolution_event) in expected {
        let body = json!({
            "api_version": "v3", "event_type": linq_event, "event_id": "e-1", "created_at": "2026-02-05T19:31:13.736Z",
            "data": {"id": "m-1", "message_id": "m-0", "chat": {"id": "c-1"}, "handle": {"handle": "+1"}, "parts": [{"type": "text", "value": "x"}]}
        });
        let events = linq::normalize(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{linq_event}: {e}"));
        assert_eq!(events[0].event, evolution_event, "{linq_event}");
        if evolution_event.starts_with("linq.") {
            assert!(
                EventKind::parse(&events[0].event).is_err(),
                "custom names never collide"
            );
        } else {
            assert!(EventKind::parse(&events[0].event).is_ok());
        }
    }
}

#[test]
fn linq_payloads() {
    let m = one("linq", "message-received");
    let d = data(&m[0]);
    assert_eq!(d["key"]["id"], "b6f1c2d3-0a4e-4f5a-8b7c-6d5e4f3a2b10");
    assert_eq!(
        d["key"]["remoteJid"],
        "9f2c6a4e-3b1d-4c8e-9a7f-1e2d3c4b5a69"
    );
    assert_eq!(d["key"]["fromMe"], false);
    assert_eq!(d["message"]["conversation"], "Running 5 min late");
    assert_eq!(d["messageTimestamp"], 1770319872);
    let legacy = data(&one("linq", "message-received-legacy")[0]);
    assert_eq!(legacy["key"]["id"], "d8b3e4f5-2c6a-4b7c-8d9e-8f7a6b5c4d32");
    let media = data(&one("linq", "message-received-media")[0]);
    assert_eq!(
        media["message"]["imageMessage"]["caption"],
        "Photo of the dent"
    );
    assert_eq!(data(&one("linq", "message-read")[0])["status"], "READ");
    assert_eq!(
        data(&one("linq", "reaction-added")[0])["message"]["reactionMessage"]["text"],
        "❤️"
    );
    assert_eq!(
        data(&one("linq", "reaction-removed")[0])["message"]["reactionMessage"]["text"],
        ""
    );
    let p = data(&one("linq", "participant-removed")[0]);
    assert_eq!(p["action"], "remove");
    assert_eq!(p["participants"], json!(["+447700900123"]));
    assert_eq!(one("linq", "legacy-v2-typing")[0].event, "presence.update");
    assert_eq!(data(&one("linq", "call-ended")[0])["status"], "terminate");
    let custom = one("linq", "custom-phone-number-status-updated");
    assert_eq!(custom[0].event, "linq.phone_number.status_updated");
    assert_eq!(data(&custom[0])["status"], "flagged");
    assert_eq!(
        one("linq", "message-sent")[0].sender.as_deref(),
        Some("+14155550123")
    );
    assert_eq!(err("linq", "error-no-event-type").field(), "event_type");
    assert_eq!(err("linq", "error-message-no-chat").field(), "data.chat.id");
    assert_eq!(err("linq", "error-bad-event-type").field(), "event_type");
    // The seed's JSON is the subscription API's responses, not webhooks.
    assert_eq!(err("linq", "seed-response-0").field(), "event_type");
}

// ---- Evolution ----------------------------------------------------------------------

#[test]
fn evolution_envelopes() {
    let m = one("evolution", "messages-upsert");
    assert_eq!(m[0].event, "messages.upsert");
    assert_eq!(m[0].sender.as_deref(), Some("5511888888888@s.whatsapp.net"));
    assert_eq!(data(&m[0])["key"]["id"], "3EB0C767D26A1D3F5F2A");
    // data is stored verbatim: Evolution already speaks Evolution.
    let body = String::from_utf8(fixture("evolution", "messages-upsert")).unwrap();
    assert!(body.contains(m[0].data.get()));
    assert!(
        m[0].raw.is_none(),
        "no raw: it would repeat data and carry the apikey"
    );
    assert_eq!(
        one("evolution", "messages-upsert-upper-spelling")[0].event,
        "messages.upsert"
    );
    assert_eq!(
        one("evolution", "by-events__messages-upsert__no-event-in-body")[0].event,
        "messages.upsert"
    );
    assert_eq!(
        one("evolution", "group-participants-update")[0].event,
        "group-participants.update"
    );
    assert_eq!(one("evolution", "qrcode-updated")[0].sender, None);
    let mismatch = err("evolution", "error-by-events__messages-update__mismatch");
    assert_eq!(
        mismatch.to_string(),
        "evolution: event: body says messages.upsert but the URL names messages.update"
    );
    assert_eq!(err("evolution", "error-unknown-event").field(), "event");
    assert_eq!(err("evolution", "error-no-data").field(), "data");
}

// ---- Dedupe across adapters ---------------------------------------------------------

/// Feeds every fixture twice (a provider retry): each event is kept
/// the first time and dropped the second; within one delivery no two distinct events
/// share a key.
#[test]
fn retries_are_stored_once_and_distinct_events_never_merge() {
    // The idempotency index keys events by (instance, key); a set is that index without the
    // log (its log-backed behaviour is tested through the binary in hostile_records.rs).
    let mut seen = std::collections::HashSet::new();
    for provider in PROVIDERS {
        for name in fixture_names(provider) {
            let body = fixture(provider, &name);
            let Ok(events) = normalize(provider, &name, &body) else {
                continue;
            };
            // Evolution fixtures repeat the same message on purpose (spellings, by-events).
            let instance = format!("{provider}-{name}");
            for e in &events {
                if let Some(key) = &e.dedupe_key {
                    assert!(
                        seen.insert((instance.clone(), key.clone())),
                        "{provider}/{name}: {key} merged with another event"
                    );
                }
            }
            // The provider's retry: the same body gives the same keys.
            let retry = normalize(provider, &name, &body).expect("normalizes again");
            for e in &retry {
                if let Some(key) = &e.dedupe_key {
                    assert!(
                        seen.contains(&(instance.clone(), key.clone())),
                        "{provider}/{name}: retry kept"
                    );
                }
            }
        }
    }
}
