//! Webhook signatures: Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`) and Linq's (`X-Webhook-Signature`, `X-Webhook-Timestamp`).
//!
//! Standard Webhooks signs `"{id}.{timestamp}.{body}"` with HMAC-SHA256 over the secret's
//! key bytes, sent as `v1,<standard base64>`; secrets are written `whsec_<base64 of the key>`.
//! Linq signs `"{timestamp}.{body}"` with HMAC-SHA256, sent as lower-case hex; its key is
//! the secret string's own bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix secrets carry when shown to users.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret that is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error)]
#[error("the webhook secret is not `whsec_` followed by base64: {0}")]
pub struct InvalidSecret(#[from] base64::DecodeError);

/// A webhook secret's key, as the HMAC state keyed with it: keying hashes the key (two
/// SHA-256 blocks), which then happens once per key instead of once per message.
#[derive(Clone)]
pub struct SigningKey(Option<Hmac<Sha256>>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)") // never print key material
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference verifiers).
    pub fn from_secret(secret: &str) -> Result<SigningKey, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        Ok(SigningKey::keyed(&STANDARD.decode(encoded.trim())?))
    }

    /// A key from raw bytes.
    pub fn from_bytes(key: impl AsRef<[u8]>) -> SigningKey {
        SigningKey::keyed(key.as_ref())
    }

    fn keyed(key: &[u8]) -> SigningKey {
        // HMAC accepts keys of any length, so this is always `Some`.
        SigningKey(Hmac::<Sha256>::new_from_slice(key).ok())
    }

    /// A new random 24-byte key, shown as `whsec_...`; for the API when a user asks for a
    /// signed webhook without giving a secret.
    pub fn generate_secret() -> String {
        let key: [u8; 24] = rand::random();
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    /// A Linq key: Linq verifiers use the secret string's bytes as the HMAC key as given.
    pub fn from_linq_secret(secret: &str) -> SigningKey {
        SigningKey::keyed(secret.as_bytes())
    }

    /// A new random Linq-style secret (64 hex characters), shown once at creation.
    pub fn generate_linq_secret() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// The `webhook-signature` value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.mac(&[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ]);
        format!("v1,{}", STANDARD.encode(mac))
    }

    /// The `X-Webhook-Signature` value of Linq's scheme: hex HMAC of `{timestamp}.{body}`.
    pub fn sign_linq(&self, timestamp: i64, body: &[u8]) -> String {
        hex::encode(self.mac(&[timestamp.to_string().as_bytes(), b".", body]))
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        // `None` only if keying failed, which HMAC never does.
        let Some(mut mac) = self.0.clone() else {
            return Vec::new();
        };
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svix_reference_vector() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn prefix_is_optional_and_garbage_is_refused() {
        let a = SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(a.sign("x", 1, b"{}"), b.sign("x", 1, b"{}"));
        assert!(SigningKey::from_secret("whsec_not base64!").is_err());
    }

    #[test]
    fn linq_scheme_is_hex_hmac_of_timestamp_dot_body() {
        // Expected value from Python: hmac.new(b"linq-test-secret",
        // b'1614265330.{"test": 2432232314}', hashlib.sha256).hexdigest()
        let key = SigningKey::from_linq_secret("linq-test-secret");
        assert_eq!(
            key.sign_linq(1_614_265_330, br#"{"test": 2432232314}"#),
            "a4247ae5b6d9b3f29a078cb9620d5f72ff257dcc230e300098ad2d2ba632965c"
        );
        let generated = SigningKey::generate_linq_secret();
        assert_eq!(generated.len(), 64);
        assert!(generated.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn generated_secrets_parse() {
        let secret = SigningKey::generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(SigningKey::from_secret(&secret).is_ok());
    }
}
