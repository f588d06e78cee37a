//! The socket.io v5 packet format over Engine.IO v4 text frames: just what a server of
//! events needs (open, ping, namespace connect, events, connect errors, disconnect).
//!
//! A frame is an Engine.IO packet type digit (`0` open, `1` close, `2` ping, `3` pong,
//! `4` message) followed, for messages, by a socket.io packet: a type digit (`0` CONNECT,
//! `1` DISCONNECT, `2` EVENT, `4` CONNECT_ERROR, ...), the namespace with a trailing comma
//! unless it is `/`, an optional ack id, then JSON. So `42/acme,["messages.upsert",{...}]`
//! is an event on namespace `/acme`.

use serde_json::json;

/// A socket.io packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Namespace connect (client) or its acceptance (server).
    Connect,
    /// Leave a namespace.
    Disconnect,
    /// An event.
    Event,
    /// An acknowledgement.
    Ack,
    /// A refused namespace connect.
    ConnectError,
    /// An event with binary attachments.
    BinaryEvent,
    /// An acknowledgement with binary attachments.
    BinaryAck,
}

/// A socket.io packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: Kind,
    /// The namespace, with its leading `/`.
    pub namespace: &'a str,
    /// The JSON payload, if any (a CONNECT's auth object, an EVENT's array).
    pub data: Option<&'a str>,
}

/// An Engine.IO frame from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `2`: the client pings (not used by v4 clients, answered anyway).
    Ping,
    /// `3`: the answer to our ping.
    Pong,
    /// `1`: the client closes the session.
    Close,
    /// `4...`: a socket.io packet.
    Message(&'a str),
    /// Anything else (upgrade probes, noop): ignored.
    Other,
}

/// A frame that is not a valid socket.io packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed socket.io packet: {0}")]
pub struct Malformed(&'static str);

/// Splits an Engine.IO text frame.
pub fn engine_frame(text: &str) -> Frame<'_> {
    match text.as_bytes().first() {
        Some(b'1') => Frame::Close,
        Some(b'2') => Frame::Ping,
        Some(b'3') => Frame::Pong,
        Some(b'4') => Frame::Message(&text[1..]),
        _ => Frame::Other,
    }
}

/// Parses a socket.io packet (the text after the Engine.IO `4`).
pub fn decode(text: &str) -> Result<Packet<'_>, Malformed> {
    let kind = match text.as_bytes().first() {
        Some(b'0') => Kind::Connect,
        Some(b'1') => Kind::Disconnect,
        Some(b'2') => Kind::Event,
        Some(b'3') => Kind::Ack,
        Some(b'4') => Kind::ConnectError,
        Some(b'5') => Kind::BinaryEvent,
        Some(b'6') => Kind::BinaryAck,
        _ => return Err(Malformed("unknown packet type")),
    };
    let mut rest = &text[1..];
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let dash = rest
            .find('-')
            .ok_or(Malformed("binary packet without count"))?;
        rest = &rest[dash + 1..];
    }
    let namespace = if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        let ns = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        ns
    } else {
        "/"
    };
    let ack_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest = &rest[ack_len..];
    Ok(Packet {
        kind,
        namespace,
        data: (!rest.is_empty()).then_some(rest),
    })
}

fn prefix(namespace: &str) -> String {
    if namespace == "/" {
        String::new()
    } else {
        format!("{namespace},")
    }
}

/// The Engine.IO open packet, the first frame of a session.
pub fn open(sid: &str, ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: u64) -> String {
    let body = json!({
        "sid": sid, "upgrades": [], "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms, "maxPayload": max_payload,
    });
    format!("0{body}")
}

/// Accepts a namespace connect.
pub fn connect_ok(namespace: &str, sid: &str) -> String {
    format!("40{}{}", prefix(namespace), json!({ "sid": sid }))
}

/// Refuses a namespace connect; socket.io-client raises `connect_error` with `message`.
pub fn connect_error(namespace: &str, message: &str) -> String {
    format!("44{}{}", prefix(namespace), json!({ "message": message }))
}

/// An event: `name` with the envelope (already JSON) as its one argument.
pub fn event(namespace: &str, name: &str, envelope_json: &str) -> String {
    // `name` is a catalog or provider event name; serde_json quotes and escapes it.
    let name = serde_json::Value::from(name);
    format!("42{}[{name},{envelope_json}]", prefix(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_namespace_connects_with_and_without_auth() {
        let p = decode("0/acme,").unwrap();
        assert_eq!(
            (p.kind, p.namespace, p.data),
            (Kind::Connect, "/acme", None)
        );
        let p = decode(r#"0/acme,{"apikey":"k"}"#).unwrap();
        assert_eq!(p.data, Some(r#"{"apikey":"k"}"#));
        let p = decode("0").unwrap();
        assert_eq!((p.namespace, p.data), ("/", None));
        let p = decode(r#"0{"apikey":"k"}"#).unwrap();
        assert_eq!((p.namespace, p.data), ("/", Some(r#"{"apikey":"k"}"#)));
    }

    #[test]
    fn decodes_events_with_ack_ids_and_binary_counts() {
        let p = decode(r#"2/acme,12["hello",1]"#).unwrap();
        assert_eq!((p.kind, p.data), (Kind::Event, Some(r#"["hello",1]"#)));
        let p = decode(r#"51-/acme,["x",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.namespace), (Kind::BinaryEvent, "/acme"));
        assert!(decode("9").is_err());
        assert!(decode("").is_err());
    }

    #[test]
    fn encodes_what_socket_io_client_expects() {
        assert_eq!(connect_ok("/acme", "s1"), r#"40/acme,{"sid":"s1"}"#);
        assert_eq!(connect_ok("/", "s1"), r#"40{"sid":"s1"}"#);
        assert_eq!(connect_error("/x", "no"), r#"44/x,{"message":"no"}"#);
        assert_eq!(
            event("/acme", "messages.upsert", r#"{"a":1}"#),
            r#"42/acme,["messages.upsert",{"a":1}]"#
        );
        assert_eq!(event("/", "call", "{}"), r#"42["call",{}]"#);
        assert!(open("s", 25000, 20000, 1_000_000).starts_with(r#"0{"#));
        assert_eq!(engine_frame("3"), Frame::Pong);
        assert_eq!(engine_frame("40/a,"), Frame::Message("0/a,"));
    }
}
