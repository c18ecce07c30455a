//! Authentication: backend API keys and user JWTs, turned into typed principals.
//!
//! User tokens: HS256 with a shared secret; RS256/ES256 with a PEM public key or a JWKS URL
//! (cached, refreshed on an unknown `kid`). `sub` is the user id (a string, or an integer read
//! as its decimal text) and `exp` is required; `nbf` and `iat` are checked when present; `aud`
//! and `iss` are required and checked when configured. Every refusal says which check failed
//! (docs/tokens.md). Each algorithm is tied to its own key family, so a token
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
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    Missing,
    /// A token in the query string of a route that takes it only in a header.
    #[error(
        "?token= is accepted only by /v1/ws and /v1/sse, where a browser cannot send headers; send `Authorization: Bearer <token>`"
    )]
    TokenInQuery,
    /// A user token was given but refused; the message says exactly why.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The API key is not one of the configured keys.
    #[error("invalid API key")]
    BadApiKey,
    /// The auth configuration cannot be used.
    #[error("auth configuration: {0}")]
    Config(String),
}

/// Why a user token was refused. Each message names the claim or check at fault; docs/tokens.md
/// lists them with their causes. Never carries the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts with a JSON header.
    #[error("token is not a JWT (header.payload.signature, base64url)")]
    Malformed,
    /// The header names an algorithm no configured key accepts.
    #[error(
        "alg {0} is not accepted (configure auth.jwt_secret for HS256, a public key or JWKS for RS256/ES256)"
    )]
    AlgorithmNotAccepted(String),
    /// The header's algorithm does not fit the key's family.
    #[error("alg {0} does not match the configured key")]
    AlgorithmMismatch(String),
    /// The signature is wrong (another secret or key signed it, or it was altered).
    #[error("signature does not verify")]
    BadSignature,
    /// A JWKS is configured and the header names no `kid`.
    #[error("kid is required (the header must name a key of the JWKS)")]
    MissingKid,
    /// The JWKS has no key with this `kid`, even after a refresh.
    #[error("unknown kid {0:?}")]
    UnknownKid(String),
    /// A required claim is absent or not of its type.
    #[error("{0} is required ({1})")]
    MissingClaim(&'static str, &'static str),
    /// `exp` (plus the leeway) has passed.
    #[error("token expired at {} (now {})", rfc3339(*.at), rfc3339(*.now))]
    Expired {
        /// The token's `exp`.
        at: u64,
        /// The server's clock when it checked.
        now: u64,
    },
    /// `nbf` (minus the leeway) is still ahead.
    #[error("token is not valid before {} (now {})", rfc3339(*.nbf), rfc3339(*.now))]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The server's clock when it checked.
        now: u64,
    },
    /// `iat` (minus the leeway) is in the future: a minting clock ahead of the server's.
    #[error("iat {} is in the future (now {}); check the minting server's clock", rfc3339(*.iat), rfc3339(*.now))]
    IssuedInFuture {
        /// The token's `iat`.
        iat: u64,
        /// The server's clock when it checked.
        now: u64,
    },
    /// `aud` is not the configured `auth.audience`.
    #[error("aud does not match (expected {0:?})")]
    AudienceMismatch(String),
    /// `iss` is not the configured `auth.issuer`.
    #[error("iss does not match (expected {0:?})")]
    IssuerMismatch(String),
    /// `sub` is empty, of another type, or not a valid user id.
    #[error("sub must be a non-empty string{0}")]
    BadSub(&'static str),
    /// A claim Belfry reads has the wrong type.
    #[error("claims: {0}")]
    BadClaims(String),
}

impl TokenError {
    /// "token expired at `at`", as seen now.
    pub fn expired_now(at: u64) -> Self {
        TokenError::Expired {
            at,
            now: unix_now(),
        }
    }
}

/// A Unix time as RFC 3339, or as the raw number when it is out of range.
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}

/// Seconds since the Unix epoch now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The instant a token that expires at `exp` (Unix seconds) stops being valid, for timers.
///
/// Saturating: an `exp` decades ahead (or near `u64::MAX`) gives a far but valid instant, never
/// an overflow. Every live transport (WebSocket, SSE, long-poll) arms its expiry timer with it,
/// on connect and on refresh alike.
pub fn expiry_deadline(exp: u64) -> tokio::time::Instant {
    /// Farther than any session lives; small enough for every clock's `Instant` to hold.
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(exp).saturating_sub(now_unix).min(FAR);
    let now = tokio::time::Instant::now();
    now.checked_add(left).unwrap_or(now)
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

/// The claims as presented, read leniently so each problem gets its own message.
#[derive(Deserialize)]
struct Presented {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    rooms_read: Vec<String>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    publish: bool,
}

/// A NumericDate (RFC 7519) claim: seconds since the epoch, an integer or (as some libraries
/// write) a non-negative float, truncated.
fn numeric_date(
    name: &'static str,
    value: Option<serde_json::Value>,
) -> Result<Option<u64>, TokenError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let secs = match &value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match secs {
        Some(secs) => Ok(Some(secs)),
        None if name == "exp" => Err(TokenError::MissingClaim("exp", SECONDS)),
        None => Err(TokenError::BadClaims(format!("{name} must be {SECONDS}"))),
    }
}

/// What a NumericDate is.
const SECONDS: &str = "seconds since the Unix epoch";

/// `sub` as a user id. PyJWT, ORMs and many apps put the database's integer id there: a JSON
/// integer is read as its decimal text (`42` and `"42"` are the same user).
fn subject(sub: Option<serde_json::Value>) -> Result<UserId, TokenError> {
    let text = match sub {
        None => return Err(TokenError::MissingClaim("sub", "the user id, a string")),
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(TokenError::BadSub(" (or an integer)")),
    };
    if text.is_empty() {
        return Err(TokenError::BadSub(""));
    }
    UserId::parse(text).map_err(|_| {
        TokenError::BadSub(" of at most 128 characters, without whitespace or control characters")
    })
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
            Err(e) => {
                tracing::warn!(url = %crate::config::redact_url(&self.url), error = %e.without_url(), "JWKS fetch failed")
            }
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

    /// Verifies a user token: signature, then `exp`, `nbf`, `iat`, `aud`, `iss` and `sub`.
    pub async fn verify(&self, token: &str) -> Result<User, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        Ok(self.verify_token(token).await?)
    }

    async fn verify_token(&self, token: &str) -> Result<User, TokenError> {
        use jsonwebtoken::errors::ErrorKind;

        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let named = format!("{:?}", header.alg);
        let (alg, key) = match header.alg {
            Algorithm::HS256 => match &self.secret {
                Some((key, _)) => (Algorithm::HS256, key.clone()),
                None => return Err(TokenError::AlgorithmNotAccepted(named)),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                self.public_key_for(header.kid.as_deref(), &named).await?
            }
            _ => return Err(TokenError::AlgorithmNotAccepted(named)),
        };
        if alg != header.alg {
            return Err(TokenError::AlgorithmMismatch(named));
        }
        // jsonwebtoken checks the signature, and the presence and value of `aud` and `iss`;
        // Belfry checks the times itself, so that each failure can say which time and why.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Presented>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAlgorithm => TokenError::AlgorithmMismatch(named.clone()),
                    ErrorKind::InvalidAudience => {
                        TokenError::AudienceMismatch(self.audience.clone().unwrap_or_default())
                    }
                    ErrorKind::InvalidIssuer => {
                        TokenError::IssuerMismatch(self.issuer.clone().unwrap_or_default())
                    }
                    ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                        "aud" => {
                            TokenError::MissingClaim("aud", "a string, or an array of strings")
                        }
                        "iss" => TokenError::MissingClaim("iss", "a string"),
                        _ => TokenError::MissingClaim("exp", SECONDS),
                    },
                    ErrorKind::Json(json) => TokenError::BadClaims(json.to_string()),
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        let now = unix_now();
        let exp =
            numeric_date("exp", claims.exp)?.ok_or(TokenError::MissingClaim("exp", SECONDS))?;
        let nbf = numeric_date("nbf", claims.nbf)?;
        let iat = numeric_date("iat", claims.iat)?;
        if exp.saturating_add(self.leeway) < now {
            return Err(TokenError::Expired { at: exp, now });
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(TokenError::NotYetValid { nbf, now });
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(self.leeway)
        {
            return Err(TokenError::IssuedInFuture { iat, now });
        }
        let id = subject(claims.sub)?;
        Ok(User {
            id,
            expires_at: exp,
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
        named: &str,
    ) -> Result<(Algorithm, DecodingKey), TokenError> {
        if let Some(found) = &self.public_key {
            return Ok(found.clone());
        }
        match (&self.jwks, kid) {
            (Some(jwks), Some(kid)) => jwks.key(kid).await.ok_or_else(|| {
                // The kid comes from the caller: bounded before it is echoed.
                TokenError::UnknownKid(kid.chars().take(64).collect())
            }),
            (Some(_), None) => Err(TokenError::MissingKid),
            (None, _) => Err(TokenError::AlgorithmNotAccepted(named.to_owned())),
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
        let now = unix_now();
        let exp = now.saturating_add(ttl.as_secs());
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
