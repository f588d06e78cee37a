//! Pusher's request signing (HTTP API "authentication"), and the names Pusher accepts.
//!
//! A request carries `auth_key`, `auth_timestamp` (Unix seconds; Pusher refuses one more
//! than 600 s off its clock), `auth_version=1.0`, `body_md5` (hex MD5 of the body) and
//! `auth_signature`: the hex HMAC-SHA256, keyed with the app secret, of
//! `"{METHOD}\n{path}\n{query}"`, where `query` is every other parameter as `key=value`,
//! sorted by key and joined with `&`, values as they are (not percent-encoded).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// The longest channel name the official libraries send (`validate_channel`).
const MAX_CHANNEL: usize = 200;
/// The longest event name Pusher accepts.
const MAX_EVENT_NAME: usize = 200;

/// The authentication parameters of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    /// The app key.
    pub auth_key: String,
    /// When signed, Unix seconds.
    pub auth_timestamp: i64,
    /// Hex MD5 of the body.
    pub body_md5: String,
    /// Hex HMAC-SHA256 of the string to sign.
    pub auth_signature: String,
}

impl SignedQuery {
    /// The query parameters, sorted by name, `auth_signature` included: what the request's
    /// URL carries.
    pub fn params(&self) -> [(&'static str, String); 5] {
        [
            ("auth_key", self.auth_key.clone()),
            ("auth_signature", self.auth_signature.clone()),
            ("auth_timestamp", self.auth_timestamp.to_string()),
            ("auth_version", "1.0".to_owned()),
            ("body_md5", self.body_md5.clone()),
        ]
    }
}

/// Signs a `POST` of `body` to `path` (`/apps/{app_id}/batch_events`) for the app `key`
/// with `secret`, at `timestamp` (Unix seconds).
pub fn sign(path: &str, body: &[u8], key: &str, secret: &str, timestamp: i64) -> SignedQuery {
    let body_md5 = hex::encode(Md5::digest(body));
    let to_sign = format!(
        "POST\n{path}\nauth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}"
    );
    // HMAC accepts a key of any length: `new_from_slice` cannot fail for it.
    let auth_signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    SignedQuery {
        auth_key: key.to_owned(),
        auth_timestamp: timestamp,
        body_md5,
        auth_signature,
    }
}

/// Whether Pusher accepts `name` as a channel: 1 to 200 of `A-Z a-z 0-9 _ - = @ , . ;`
/// (an instance name with a space, say, cannot be a channel).
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// Whether Pusher accepts `name` as an event name (at most 200 characters).
pub fn valid_event_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_EVENT_NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Pusher's HTTP API authentication docs: app 3, key
    /// `278d425bdf160c739803`, secret `7ad3773142a6692b25b8`, timestamp 1353088179, body
    /// `{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`.
    #[test]
    fn the_documented_example_signs_as_documented() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let signed = sign(
            "/apps/3/events",
            body,
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            1353088179,
        );
        assert_eq!(signed.body_md5, "ec365a775a4cd0599faeb73354201b6f");
        assert_eq!(
            signed.auth_signature,
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn channel_names_follow_pushers_rules() {
        for ok in ["inst", "my-inst_1", "a=b@c,d.e;f", &"x".repeat(200)] {
            assert!(valid_channel(ok), "{ok}");
        }
        for bad in ["", "has space", "ação", "a/b", &"x".repeat(201)] {
            assert!(!valid_channel(bad), "{bad}");
        }
        assert!(valid_event_name("messages.upsert"));
        assert!(!valid_event_name(&"e".repeat(201)));
    }
}
