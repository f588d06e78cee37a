//! Evolution's `jwt_key`: a webhook whose `headers` hold a `jwt_key` never sends it as a
//! header. Each request carries `Authorization: Bearer <JWT>` instead, HS256 with that key
//! (its UTF-8 bytes, as Evolution's `jsonwebtoken.sign` takes a string secret), claims
//! `{"iat", "exp": iat + 600, "app": "evolution", "action": "webhook"}`, minted per request
//! so a retry hours later still carries a token its receiver accepts.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The `headers` entry that holds the key (Evolution's spelling, matched exactly).
pub const JWT_KEY_HEADER: &str = "jwt_key";

/// How long a minted token is valid, in seconds (Evolution's 10 minutes).
pub const JWT_LIFETIME_SECONDS: i64 = 600;

/// Evolution's claims, in its order.
#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    app: &'static str,
    action: &'static str,
}

/// An HS256 token signed with `key`, issued at `now` (Unix seconds). The error never
/// contains the key: it is the library's error kind only.
pub fn mint(key: &str, now: i64) -> Result<String, String> {
    let claims = Claims {
        iat: now,
        exp: now + JWT_LIFETIME_SECONDS,
        app: "evolution",
        action: "webhook",
    };
    let key = EncodingKey::from_secret(key.as_bytes())
        .map_err(|e| format!("unusable webhook `headers.{JWT_KEY_HEADER}`: {e}"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| format!("cannot mint the webhook JWT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn tokens_decode_with_the_key_and_carry_evolutions_claims() {
        let now = chrono::Utc::now().timestamp();
        let token = mint("k3y", now).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"k3y").unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(
            decoded.claims,
            serde_json::json!({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"})
        );
        assert_eq!(decoded.header.typ.as_deref(), Some("JWT"));
        let wrong = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"other").unwrap(),
            &validation,
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn an_empty_key_is_refused_without_echoing_anything() {
        let err = mint("", 0).unwrap_err();
        assert!(err.contains("jwt_key"), "{err}");
    }
}
