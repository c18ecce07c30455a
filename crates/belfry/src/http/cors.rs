//! Cross-origin access for web pages on another origin: CORS on the client routes
//! (`http.cors_allowed_origins`, with tower-http's `CorsLayer`) and the `Origin` check of the
//! WebSocket handshake (`ws.allowed_origins`). Backend routes get neither: they are called by
//! servers, never by pages.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{HttpConfig, WsConfig};

/// The CORS layer of the client routes, or `None` when no origin is configured (then browsers
/// allow same-origin pages only).
pub(super) fn layer(config: &HttpConfig) -> Option<CorsLayer> {
    let origins = &config.cors_allowed_origins;
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // `config::check_origin` vetted every entry at load time.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            // What the SDK sends. Tokens travel in `Authorization`, never in cookies, so
            // credentials mode stays off (and `*` stays usable).
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(Duration::from_secs(config.cors_max_age_secs)),
    )
}

/// Why a WebSocket handshake's `Origin` was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ForeignOrigin(pub String);

/// Checks the `Origin` of a WebSocket handshake against `ws.allowed_origins` (by default
/// `http.cors_allowed_origins`). Allowed: no `Origin` (not a browser), the server's own origin
/// (its host and port are the handshake's `Host`), a listed origin, anything under `*`.
pub(super) fn check_ws_origin(
    headers: &HeaderMap,
    ws: &WsConfig,
    http: &HttpConfig,
) -> Result<(), ForeignOrigin> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let Ok(origin) = origin.to_str() else {
        return Err(ForeignOrigin(
            String::from_utf8_lossy(origin.as_bytes()).into_owned(),
        ));
    };
    let allowed = ws
        .allowed_origins
        .as_ref()
        .unwrap_or(&http.cors_allowed_origins);
    if allowed.iter().any(|o| o == "*" || o == origin) || is_same_origin(origin, headers) {
        Ok(())
    } else {
        Err(ForeignOrigin(origin.chars().take(200).collect()))
    }
}

/// True when `origin`'s host and port are the request's `Host` (a page served by this server,
/// or through a proxy that keeps `Host`). The scheme is not compared: behind a TLS-terminating
/// proxy the server cannot know it.
fn is_same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Some(authority) = origin
        .strip_prefix("http://")
        .map(|a| (a, "80"))
        .or_else(|| origin.strip_prefix("https://").map(|a| (a, "443")))
    else {
        return false;
    };
    let (authority, default_port) = authority;
    with_port(authority, default_port).eq_ignore_ascii_case(&with_port(host, default_port))
}

/// `host[:port]` with the scheme's default port made explicit.
fn with_port(authority: &str, default_port: &str) -> String {
    let has_port = match authority.rsplit_once(':') {
        // `[::1]` has colons but no port; `[::1]:8080` and `host:8080` have one.
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    fn check(origin: Option<&str>, host: &str, allowed: &[&str]) -> bool {
        let http = HttpConfig {
            cors_allowed_origins: allowed.iter().map(|s| s.to_string()).collect(),
            ..HttpConfig::default()
        };
        check_ws_origin(&headers(origin, host), &WsConfig::default(), &http).is_ok()
    }

    #[test]
    fn same_origin_and_listed_origins_pass_and_others_do_not() {
        assert!(
            check(None, "127.0.0.1:8080", &[]),
            "no Origin: not a browser"
        );
        assert!(check(Some("http://127.0.0.1:8080"), "127.0.0.1:8080", &[]));
        assert!(check(Some("https://belfry.example"), "belfry.example", &[]));
        assert!(check(Some("http://[::1]:8080"), "[::1]:8080", &[]));
        assert!(!check(Some("http://127.0.0.1:5173"), "127.0.0.1:8080", &[]));
        assert!(!check(
            Some("http://evil.example"),
            "belfry.example:80",
            &[]
        ));
        assert!(check(
            Some("http://127.0.0.1:5173"),
            "127.0.0.1:8080",
            &["http://127.0.0.1:5173"]
        ));
        assert!(check(
            Some("http://anything.example"),
            "127.0.0.1:8080",
            &["*"]
        ));
        assert!(!check(
            Some("null"),
            "127.0.0.1:8080",
            &["http://127.0.0.1:5173"]
        ));
    }
}
