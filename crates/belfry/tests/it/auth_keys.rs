//! ES256 user tokens: verified with a configured PEM public key, or with keys fetched from a
//! JWKS URL by `kid`; and no algorithm confusion between the two key families.

use axum::Router;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::{JWT_SECRET, spawn_app_with};

/// A P-256 key pair made for these tests only (`openssl ecparam -name prime256v1 -genkey`).
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghC18T/5ftQ0oaWL2
B8PkDzDmihAmeO2CH175Azu6I7qhRANCAARcKpVDPK6y9ZHDV5kI27DJDomWgs3U
QuWfEl0nmoiLbJz3F0T9KYr6g6G+bijZOlEr0pj355UHO/2IfAURz9iU
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXCqVQzyusvWRw1eZCNuwyQ6JloLN
1ELlnxJdJ5qIi2yc9xdE/SmK+oOhvm4o2TpRK9KY9+eVBzv9iHwFEc/YlA==
-----END PUBLIC KEY-----
";

fn exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

fn es256(kid: Option<&str>, sub: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": exp()}), &key).unwrap()
}

async fn status(app: &crate::support::TestApp, token: &str) -> u16 {
    app.client
        .get(format!("{}/v1/me/unread-count", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn es256_tokens_verify_against_a_configured_public_key() {
    let app = spawn_app_with(|c| {
        c.auth.jwt_secret = None;
        c.auth.jwt_public_key = Some(EC_PUBLIC.into());
    })
    .await;
    assert_eq!(status(&app, &es256(None, "alice")).await, 200);
    // HS256 signed with the public key as the "secret": the classic algorithm confusion.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp()}),
        &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&app, &confused).await, 401);
    // Nor is an HS256 token with some other secret accepted when only a public key is set.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": exp()}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(status(&app, &hs).await, 401);
}

#[tokio::test]
async fn es256_tokens_verify_against_keys_from_a_jwks_url_by_kid() {
    let mut jwk = Jwk::from_encoding_key(
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    jwk.common.key_id = Some("key-1".into());
    let set = JwkSet { keys: vec![jwk] };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let router = Router::new().route(
        "/jwks.json",
        get(move || async move { axum::Json(set.clone()) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let app = spawn_app_with(|c| {
        c.auth.jwt_secret = None;
        c.auth.jwks_url = Some(jwks_url);
    })
    .await;
    assert_eq!(status(&app, &es256(Some("key-1"), "alice")).await, 200);
    assert_eq!(status(&app, &es256(Some("unknown"), "alice")).await, 401);
    assert_eq!(
        status(&app, &es256(None, "alice")).await,
        401,
        "a kid is required"
    );
}
