//! Authentication: backend API keys and user JWTs, turned into typed principals.
//!
//! User tokens: HS256 with a shared secret; RS256/ES256 with a PEM public key or a JWKS URL
//! (cached, refreshed on an unknown `kid`). `sub` is the user id and `exp` is required; `aud` and
//! `iss` are checked when configured. Each algorithm is tied to its own key family, so a token
//! that names HS256 is never checked against a public key (no algorithm confusion), and `none`
//! is never accepted. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};

use crate::config::AuthConfig;
use crate::model::UserId;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why credentials were refused. The message is safe to show to the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials were given.
    #[error("missing credentials")]
    Missing,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token is malformed, badly signed or fails a claim check.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The API key is not one of the configured keys.
    #[error("invalid API key")]
    BadApiKey,
    /// The auth configuration cannot be used.
    #[error("auth configuration: {0}")]
    Config(String),
}

/// The claims Belfry reads from a user token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Room patterns the user may join and publish to (`todo:*`, `doc:42`, `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Room patterns the user may join read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms_read: Vec<String>,
    /// In a room token: the one room it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// In a room token: whether it allows publishing too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish: bool,
}

/// What a user may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoomAccess {
    /// Join, receive messages and presence.
    Read,
    /// Also publish.
    Publish,
}

/// Room permissions carried by a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomGrants {
    publish: Vec<String>,
    read: Vec<String>,
    ticket: Option<(String, bool)>,
}

fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

impl RoomGrants {
    /// The best access these grants give to `room`, if any.
    pub fn access(&self, room: &str) -> Option<RoomAccess> {
        if let Some((ticket_room, publish)) = &self.ticket
            && ticket_room == room
        {
            return Some(if *publish {
                RoomAccess::Publish
            } else {
                RoomAccess::Read
            });
        }
        if self.publish.iter().any(|p| pattern_matches(p, room)) {
            Some(RoomAccess::Publish)
        } else if self.read.iter().any(|p| pattern_matches(p, room)) {
            Some(RoomAccess::Read)
        } else {
            None
        }
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Who.
    pub id: UserId,
    /// Until when the token is valid, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Room permissions from the token's claims.
    pub grants: RoomGrants,
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl Jwks {
    async fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        if let Some(found) = self.keys.read().await.get(kid) {
            return Some(found.clone());
        }
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return self.keys.read().await.get(kid).cloned();
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => *self.keys.write().await = keys,
            Err(e) => tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed"),
        }
        self.keys.read().await.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, reqwest::Error> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            let alg = match jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            keys.insert(kid.clone(), (alg, key));
        }
        Ok(keys)
    }
}

/// Verifies credentials. Cheap to share: wrap it in an `Arc`.
pub struct Auth {
    api_keys: Vec<SecretString>,
    secret: Option<(DecodingKey, EncodingKey)>,
    public_key: Option<(Algorithm, DecodingKey)>,
    jwks: Option<Jwks>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
}

impl Auth {
    /// Builds the verifier from configuration.
    pub fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        let secret = config.jwt_secret.as_ref().map(|s| {
            let bytes = s.expose_secret().as_bytes();
            (
                DecodingKey::from_secret(bytes),
                EncodingKey::from_secret(bytes),
            )
        });
        let public_key = config
            .jwt_public_key
            .as_deref()
            .map(load_public_key)
            .transpose()?;
        let jwks = match &config.jwks_url {
            Some(url) => Some(Jwks {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))?,
                keys: RwLock::new(HashMap::new()),
                last_fetch: Mutex::new(None),
                min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
            }),
            None => None,
        };
        Ok(Self {
            api_keys: config.api_keys.clone(),
            secret,
            public_key,
            jwks,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway_secs,
        })
    }

    /// Checks a backend API key in constant time against every configured key.
    pub fn check_api_key(&self, presented: &str) -> Result<(), AuthError> {
        let mut ok = 0u8;
        for key in &self.api_keys {
            ok |= key
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .unwrap_u8();
        }
        if ok == 1 {
            Ok(())
        } else {
            Err(AuthError::BadApiKey)
        }
    }

    /// Verifies a user token.
    pub async fn verify(&self, token: &str) -> Result<User, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("token too large"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        let (alg, key) = match header.alg {
            Algorithm::HS256 => match &self.secret {
                Some((key, _)) => (Algorithm::HS256, key.clone()),
                None => return Err(AuthError::Invalid("algorithm not accepted")),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                self.public_key_for(header.kid.as_deref()).await?
            }
            _ => return Err(AuthError::Invalid("algorithm not accepted")),
        };
        if alg != header.alg {
            return Err(AuthError::Invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet"),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience"),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer"),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing claim"),
                _ => AuthError::Invalid("malformed"),
            }
        })?;
        let claims = data.claims;
        let id = UserId::parse(claims.sub).map_err(|_| AuthError::Invalid("bad sub"))?;
        Ok(User {
            id,
            expires_at: claims.exp,
            grants: RoomGrants {
                publish: claims.rooms,
                read: claims.rooms_read,
                ticket: claims.room.map(|room| (room, claims.publish)),
            },
        })
    }

    async fn public_key_for(
        &self,
        kid: Option<&str>,
    ) -> Result<(Algorithm, DecodingKey), AuthError> {
        if let Some(found) = &self.public_key {
            return Ok(found.clone());
        }
        match (&self.jwks, kid) {
            (Some(jwks), Some(kid)) => jwks.key(kid).await.ok_or(AuthError::Invalid("unknown kid")),
            (Some(_), None) => Err(AuthError::Invalid("missing kid")),
            (None, _) => Err(AuthError::Invalid("algorithm not accepted")),
        }
    }

    /// Mints an HS256 token for `user`, valid for `ttl` (development and the demo).
    pub fn mint(&self, user: &UserId, ttl: Duration) -> Result<(String, u64), AuthError> {
        self.mint_with(user, ttl, |_| {})
    }

    /// Like [`Auth::mint`], letting `extra` add claims (room grants, a room ticket).
    pub fn mint_with(
        &self,
        user: &UserId,
        ttl: Duration,
        extra: impl FnOnce(&mut Claims),
    ) -> Result<(String, u64), AuthError> {
        let Some((_, key)) = &self.secret else {
            return Err(AuthError::Config(
                "minting needs auth.jwt_secret (HS256)".into(),
            ));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let exp = now + ttl.as_secs();
        let mut claims = Claims {
            sub: user.to_string(),
            exp,
            iat: Some(now),
            rooms: Vec::new(),
            rooms_read: Vec::new(),
            room: None,
            publish: false,
        };
        extra(&mut claims);
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| AuthError::Config(format!("cannot sign: {e}")))?;
        Ok((token, exp))
    }
}

fn load_public_key(value: &str) -> Result<(Algorithm, DecodingKey), AuthError> {
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| AuthError::Config(format!("cannot read jwt_public_key {value}: {e}")))?
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((Algorithm::ES256, key));
    }
    Err(AuthError::Config(
        "jwt_public_key is neither an RSA nor an EC public key in PEM".into(),
    ))
}

/// Shared handle.
pub type SharedAuth = Arc<Auth>;

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let config = AuthConfig {
            api_keys: vec![SecretString::from("key-1")],
            jwt_secret: Some(SecretString::from("s3cret")),
            ..AuthConfig::default()
        };
        Auth::new(&config).unwrap()
    }

    #[test]
    fn api_keys_must_match_exactly() {
        let auth = auth();
        assert!(auth.check_api_key("key-1").is_ok());
        assert_eq!(auth.check_api_key("key-"), Err(AuthError::BadApiKey));
        assert_eq!(auth.check_api_key(""), Err(AuthError::BadApiKey));
    }

    #[tokio::test]
    async fn minted_tokens_verify_and_name_the_user() {
        let auth = auth();
        let user = UserId::parse("42").unwrap();
        let (token, _) = auth.mint(&user, Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(&token).await.unwrap().id, user);
    }

    #[tokio::test]
    async fn unsigned_tokens_are_refused() {
        // {"alg":"none","typ":"JWT"}.{"sub":"42","exp":9999999999}.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(auth().verify(token).await.is_err());
    }
}
