//! ES256 user tokens: verified with a configured PEM public key, or with keys fetched from a
//! JWKS URL by `kid`; and no algorithm confusion between the two key families.

use axum::Router;
use axum::routing::get;
use base64ct::Encoding;
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

/// An RSA-2048 key pair made for these tests only (`openssl genpkey -algorithm RSA`).
const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCl+WJzdFHjZRdK
g6cvBknZbuV+zp9pe3yEH5mqhxIuJ/9rRGSBxyqY5hKoC6DTsYC90F1Isbh4ONat
WsNS2Fc5i2FPFmkm1rrHkd0ubuZ5ruS9PQY8UcmU+5GoWDFNlitsdiqya/T1l0PM
Bh4IrT7wrZa6kF3xNTPK+alyh9uiEToUxLuLeybuYJHhc3WidEj2bi0KnRCAwRAx
br5wj3yAECIQMDVrICAsN73/F4eJHKWQzN0BB1IE7soh3hL56oTBJKadiBVOL3Wb
2UsbiQScmtWUE+S7qzP1enM/TOKL5EVsUf2WroSwZxNZvFULcTwnO+zAyPT0seuw
ztDtm6g3AgMBAAECggEAAkaFgYS2PLJdm+FrMNtattbs4YyupdESF3OhdTON3cEh
oNRatmbHIDqDRfeG2HAmDjQlm0IIf+lzlAPbCq85nunYxy9M+MHX5LWMvT66/S8X
JrsH81rBsz+xswemgWROKxoBotmVDarpvInW7pKFeuI+X0dsakqq75z1pELVkYa6
SG/5g6YQL1g+1URbSSdxAlth+vjOUmGVnnwuv2OQB1+JYZYQiEhAN4FpqjpOAFMC
3qLzr8BQiQJkR6lMfo957TxWFNxKg9dStf+zU1ifBiL9syJpjkZd0UbGSrYJHb6z
US21xw5UzDeuvKCtKR+oc8ieOJ+yfJ59FuAdu5zBmQKBgQDSBflmtd0ykO5Ro6gK
ptQ8e+wAOKeD0IG+ynb/JJ1p0RD/r9fnEciM5DbbjFJPabVXKxcbppIhNOFwwkXz
Rmamu0hH8ycf7HCkTB3PS0bWRStnGEA6ImW9Y4lba4xvR4NULzP4x8KJROc1dWwd
QWkk//QfTiFJNG2bbEZHoNQfSQKBgQDKTtPkioTJXlIlmQ6k0Yjse4lYK1ee3rdE
2JCKSALDowLogLLgae3e2rMyCxGDKYO+L6BLVsDlyWCbCD5468uHNF7FwBGk2r1g
0a5I8S6O/4iNE6gpehhG8qVI+tW52N+2uOgueSFNv2nw5J98Xoa3Jvm7tsYgMWMG
gygz5sgLfwKBgQCoPBLgvJN4mvHcQZ0tEx/1Z0rPjpJZG1+jBim2DY1uowLb3e6z
cOJWQcTTrx6L8GBLd//lrVNm+CYSHfzMd7tomaK3x8WyY8KDSVmjoGgY4YV36swg
BUe8Iox3x7nRtdY0TC90fAePz7rpbqrw8GGaOtFBdmNhcXbPRjcxz1m7yQKBgGi2
+JJ46FZajeaMHLpPArJ1FxgeBxJicTYfamFI+LVOsPirdOsXqVoKlWo3tG7RlDFi
8XNNijbmTyyvzbZFRmnLP6rXycosto1guvdibxjxRzrOi+I8IkjG26q0ut+hU9p+
Rx+W7xgRFcLsc2iqfMxcTjNNXavYJEuAo9SJhc39AoGBAJuOEGYeoZpFriG8x8K5
qQErdoWUwkCOD0l16MYWeDXq6wDHU/mr3pBrWHzNazsW9tiiofcen1z99FhN1hLm
XURmObsXVUxwChyDugvClJIVWQaYGYNkV0UtFu2UZ+mOtikJXgYDnsxTUfQ9kqHx
C7nE9lM/Ue9g000tfr9ccOvI
-----END PRIVATE KEY-----
";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApflic3RR42UXSoOnLwZJ
2W7lfs6faXt8hB+ZqocSLif/a0RkgccqmOYSqAug07GAvdBdSLG4eDjWrVrDUthX
OYthTxZpJta6x5HdLm7mea7kvT0GPFHJlPuRqFgxTZYrbHYqsmv09ZdDzAYeCK0+
8K2WupBd8TUzyvmpcofbohE6FMS7i3sm7mCR4XN1onRI9m4tCp0QgMEQMW6+cI98
gBAiEDA1ayAgLDe9/xeHiRylkMzdAQdSBO7KId4S+eqEwSSmnYgVTi91m9lLG4kE
nJrVlBPku6sz9XpzP0zii+RFbFH9lq6EsGcTWbxVC3E8JzvswMj09LHrsM7Q7Zuo
NwIDAQAB
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

/// The 401 message for `token`.
async fn refusal(app: &crate::support::TestApp, token: &str) -> String {
    let response = app
        .client
        .get(format!("{}/v1/me/unread-count", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
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
async fn rs256_tokens_verify_and_hs256_signed_with_the_rsa_public_key_is_refused() {
    let app = spawn_app_with(|c| {
        c.auth.jwt_secret = None;
        c.auth.jwt_public_key = Some(RSA_PUBLIC.into());
    })
    .await;
    let claims = json!({"sub": "alice", "exp": exp()});
    let rs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(status(&app, &rs256).await, 200);
    // Algorithm confusion: HS256 with the RSA public key (PEM text, and its DER bytes) as the
    // HMAC secret, as a verifier that trusts the token's `alg` would accept.
    let der = base64ct::Base64::decode_vec(
        &RSA_PUBLIC
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap();
    for secret in [RSA_PUBLIC.as_bytes(), der.as_slice()] {
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(status(&app, &confused).await, 401);
    }
    // A token of the other public-key family is refused too.
    assert_eq!(status(&app, &es256(None, "alice")).await, 401);
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
    assert_eq!(
        refusal(&app, &es256(Some("unknown"), "alice")).await,
        "unknown kid \"unknown\""
    );
    assert!(
        refusal(&app, &es256(None, "alice"))
            .await
            .starts_with("kid is required"),
        "a kid is required"
    );
}
