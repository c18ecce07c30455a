//! User tokens: HS256 JWTs with `sub` = the user id, minted with the secret the server was
//! configured with, exactly as an application backend would.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    /// Room patterns the user may join and publish to (Belfry's `rooms` claim).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rooms: &'a [String],
}

/// Mints HS256 tokens for one secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
}

impl Minter {
    /// A minter for `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::default(),
        }
    }

    /// A token for `user`, valid for `ttl`, allowing the room patterns `rooms`.
    pub fn mint(&self, user: &str, ttl: Duration, rooms: &[String]) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub: user,
            exp: now + ttl.as_secs(),
            iat: now,
            rooms,
        };
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    #[test]
    fn tokens_carry_the_user_and_verify_with_the_secret() {
        let token = Minter::new("s3cret")
            .mint("u-7", Duration::from_secs(60), &["bench:*".to_owned()])
            .unwrap();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "u-7");
        assert_eq!(data.claims["rooms"][0], "bench:*");
    }
}
