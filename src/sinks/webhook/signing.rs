//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! The signed content is `"{id}.{timestamp}.{body}"`, HMAC-SHA256 with the secret's key
//! bytes, sent as `v1,<standard base64>`. Secrets are written `whsec_<base64 of the key>`.

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

/// The key bytes of a webhook secret.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)") // never print key material
    }
}

impl SigningKey {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference verifiers).
    pub fn from_secret(secret: &str) -> Result<SigningKey, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        Ok(SigningKey(STANDARD.decode(encoded.trim())?))
    }

    /// A key from raw bytes.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> SigningKey {
        SigningKey(key.into())
    }

    /// A new random 24-byte key, shown as `whsec_...`; for the API when a user asks for a
    /// signed webhook without giving a secret.
    pub fn generate_secret() -> String {
        let key: [u8; 24] = rand::random();
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
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
    fn generated_secrets_parse() {
        let secret = SigningKey::generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(SigningKey::from_secret(&secret).is_ok());
    }
}
