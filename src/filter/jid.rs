//! One normalization for every JID and phone number a filter compares.
//!
//! Filters' allow and deny lists and the facts extracted from events both go through
//! [`normalize_id`], so that two spellings of the same chat or person always compare equal
//! as plain strings, and the comparison at routing time needs no parsing:
//!
//! | input | normalized |
//! |---|---|
//! | `5511999990000@s.whatsapp.net` | `5511999990000@s.whatsapp.net` |
//! | `5511999990000:12@s.whatsapp.net` (a device) | `5511999990000@s.whatsapp.net` |
//! | `5511999990000@c.us` (whatsapp-web.js, WPPConnect) | `5511999990000@s.whatsapp.net` |
//! | `+55 11 99999-0000`, `5511999990000` (a phone number) | `5511999990000@s.whatsapp.net` |
//! | `1203630@G.US` | `1203630@g.us` |
//! | `123456789:3@lid` | `123456789@lid` |
//! | `status@broadcast`, `1203@newsletter` | unchanged |
//!
//! A phone number thus matches exactly the phone JIDs of that number; a `@lid` JID matches
//! only itself (an event about a `@lid` chat carries the phone JID separately, in
//! `remoteJidAlt` / `participantAlt`, and the facts keep both).

use super::ChatType;

/// The server phone JIDs are normalized to.
const PHONE_SERVER: &str = "s.whatsapp.net";

/// The fewest digits a phone number may have: shorter strings are typos, not numbers.
const MIN_PHONE_DIGITS: usize = 5;

/// The most digits a phone number may have (E.164 allows 15; some gateways keep a few
/// more for national prefixes).
const MAX_PHONE_DIGITS: usize = 20;

/// The longest normalized id: every JID WhatsApp uses is far shorter, and the facts'
/// binary encoding stores each id with a one-byte length.
pub const MAX_ID_LEN: usize = 255;

/// The canonical form of a JID or phone number (see the module table), or `None` when
/// `input` is neither: empty, a JID with an empty user or server, characters a phone
/// number cannot have, too few or too many digits, or longer than [`MAX_ID_LEN`].
pub fn normalize_id(input: &str) -> Option<String> {
    let input = input.trim();
    let normalized = match input.rsplit_once('@') {
        Some((user, server)) => normalize_jid(user, server)?,
        None => normalize_phone(input)?,
    };
    (normalized.len() <= MAX_ID_LEN).then_some(normalized)
}

/// `user[:device]@server` -> `user@server`, the server in lower case, `c.us` read as
/// `s.whatsapp.net`. Byte-level and one allocation: ingest runs this for every message.
fn normalize_jid(user: &str, server: &str) -> Option<String> {
    // The device part follows the first ':' (`5511:12@s.whatsapp.net`, `123:3@lid`).
    let user = user.split_once(':').map_or(user, |(user, _device)| user);
    // No spaces or control characters (ASCII: JIDs are); the '@' was split off last, so
    // a second one would be in the user part.
    let valid_user = !user.is_empty() && user.bytes().all(|b| b > b' ' && b != 0x7f && b != b'@');
    let valid_server = !server.is_empty()
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if !valid_user || !valid_server {
        return None;
    }
    let phone = server.eq_ignore_ascii_case("c.us");
    let server_len = if phone {
        PHONE_SERVER.len()
    } else {
        server.len()
    };
    let mut out = String::with_capacity(user.len() + 1 + server_len);
    out.push_str(user);
    out.push('@');
    if phone {
        out.push_str(PHONE_SERVER);
    } else {
        // ASCII only (checked above), so one char per byte.
        out.extend(server.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(out)
}

/// `+55 (11) 99999-0000` -> `5511999990000@s.whatsapp.net`. Only digits and the
/// separators people write numbers with are accepted.
fn normalize_phone(input: &str) -> Option<String> {
    let mut digits = String::with_capacity(input.len() + 1 + PHONE_SERVER.len());
    for c in input.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len()) {
        return None;
    }
    digits.push('@');
    digits.push_str(PHONE_SERVER);
    Some(digits)
}

/// The kind of chat a normalized chat JID names, from its server; `None` for a server
/// that names no chat kind Switchyard knows.
pub fn chat_type_of(normalized: &str) -> Option<ChatType> {
    let (_, server) = normalized.rsplit_once('@')?;
    match server {
        // `hosted` and `hosted.lid` are the servers of hosted (Cloud API) accounts: people.
        PHONE_SERVER | "lid" | "hosted" | "hosted.lid" => Some(ChatType::Direct),
        "g.us" => Some(ChatType::Group),
        // `status@broadcast` (status updates) and broadcast lists (`<id>@broadcast`).
        "broadcast" => Some(ChatType::Broadcast),
        "newsletter" => Some(ChatType::Newsletter),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        normalize_id(s)
    }

    #[test]
    fn jids_keep_user_and_server_and_drop_the_device() {
        let phone = Some("5511999990000@s.whatsapp.net".to_owned());
        assert_eq!(norm("5511999990000@s.whatsapp.net"), phone);
        assert_eq!(norm("5511999990000:12@s.whatsapp.net"), phone);
        assert_eq!(norm("5511999990000@c.us"), phone);
        assert_eq!(norm(" 5511999990000@S.WhatsApp.NET "), phone);
        assert_eq!(norm("123456789:3@lid").as_deref(), Some("123456789@lid"));
        assert_eq!(norm("1203630@G.US").as_deref(), Some("1203630@g.us"));
        assert_eq!(
            norm("status@broadcast").as_deref(),
            Some("status@broadcast")
        );
        assert_eq!(norm("1203@newsletter").as_deref(), Some("1203@newsletter"));
    }

    #[test]
    fn phone_numbers_become_phone_jids() {
        let phone = Some("5511999990000@s.whatsapp.net".to_owned());
        assert_eq!(norm("+55 11 99999-0000"), phone);
        assert_eq!(norm("5511999990000"), phone);
        assert_eq!(norm("+55 (11) 99999.0000"), phone);
    }

    #[test]
    fn garbage_is_not_an_id() {
        for bad in [
            "",
            "   ",
            "@s.whatsapp.net",
            "5511@",
            "abc",
            "1234",
            "+55 11 9999x",
            "123456789012345678901",
            "a b@s.whatsapp.net",
            "5511@s.whats app.net",
            ":3@lid",
            "55@11@s.whatsapp.net",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
        assert_eq!(norm(&format!("{}@lid", "1".repeat(300))), None);
    }

    #[test]
    fn chat_types_follow_the_server() {
        assert_eq!(chat_type_of("5511@s.whatsapp.net"), Some(ChatType::Direct));
        assert_eq!(chat_type_of("123@lid"), Some(ChatType::Direct));
        assert_eq!(chat_type_of("123@g.us"), Some(ChatType::Group));
        assert_eq!(chat_type_of("status@broadcast"), Some(ChatType::Broadcast));
        assert_eq!(chat_type_of("1@broadcast"), Some(ChatType::Broadcast));
        assert_eq!(chat_type_of("1@newsletter"), Some(ChatType::Newsletter));
        assert_eq!(chat_type_of("1@call"), None);
        assert_eq!(chat_type_of("nothing"), None);
    }
}
