//! The HTTP layer: routes, extractors and the error mapping. Thin by rule: handlers parse,
//! call the notifier, store or a transport session, and shape the answer. It owns no state
//! of its own and holds no business rule.

mod api;
mod conformance;
mod cors;
mod error;
mod extract;
mod inbox;
mod live;
mod openapi;
mod ops;
mod preferences;
mod push;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;
pub use openapi::ApiDoc;

use crate::app::AppState;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    // The routes a web page calls (with a user token): the only ones that answer cross-origin.
    let client = Router::new()
        .route("/v1/me/notifications", get(inbox::list))
        .route("/v1/me/unread-count", get(inbox::unread_count))
        .route("/v1/me/notifications/read", post(inbox::read))
        .route("/v1/me/notifications/unread", post(inbox::unread))
        .route("/v1/me/notifications/seen", post(inbox::seen))
        .route("/v1/me/notifications/archive", post(inbox::archive))
        .route("/v1/me/notifications/read-all", post(inbox::read_all))
        .route("/v1/me/notifications/{id}", delete(inbox::delete))
        .route(
            "/v1/me/preferences",
            get(preferences::mine).put(preferences::replace_mine),
        )
        .route("/v1/push/vapid-public-key", get(push::vapid_public_key))
        .route(
            "/v1/me/push-subscriptions",
            post(push::subscribe).delete(push::unsubscribe),
        )
        .route("/v1/sse", get(live::sse))
        .route("/v1/poll", get(live::poll))
        // Before the CORS layer, so that a preflight (OPTIONS) reaches it.
        .method_not_allowed_fallback(method_not_allowed);
    let client = match cors::layer(&state.config.http) {
        Some(cors) => client.layer(cors),
        None => client,
    };
    let mut router = Router::new()
        .route("/v1/notifications", post(api::notify))
        .route("/v1/notifications/batch", post(api::batch))
        .route("/v1/rooms/{room}/messages", post(api::room_message))
        .route(
            "/v1/users/{user_id}/preferences",
            get(preferences::of_user).put(preferences::replace_of_user),
        )
        .route("/v1/ws", get(live::ws))
        .merge(client)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .fallback(|| async { ApiError::not_found() });
    if state.demo.is_some() {
        router = router.merge(crate::demo::router());
    }
    if state.config.ws.echo_endpoint {
        router = router.route("/v1/ws/echo", get(conformance::echo));
    }
    // Last: it applies to the routes registered before it.
    router = router.method_not_allowed_fallback(method_not_allowed);
    let router = router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_unavailable,
        ))
        .with_state(state);
    with_security_headers(router)
}

/// A method the route does not serve: the JSON error body (axum keeps the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        crate::protocol::ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Headers for browsers on every answer (unless a route set its own): no MIME sniffing, no
/// framing by any page (Swagger UI at `/docs`, the demo; clickjacking), no `Referer` leaking
/// URLs to other sites. The API's JSON is never framed or sniffed either, so one rule serves all.
fn with_security_headers(router: Router) -> Router {
    use axum::http::{HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;

    [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
    .into_iter()
    .fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// Counts the answers that refused work because the store was unreachable.
async fn count_unavailable(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE && request_was_api(&response) {
        state.metrics.store_unavailable.inc();
    }
    response
}

/// `/readyz` answers 503 too, without an error body; only API errors carry `ApiError`'s marker.
fn request_was_api(response: &Response) -> bool {
    response.extensions().get::<error::Unavailable>().is_some()
}
