//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`
//! (Swagger UI at `/docs`, bundled in the binary so it works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, inbox, live, ops, preferences, push};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A backend API key from `auth.api_keys`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A user token; `sub` is the user id"))
                    .build(),
            ),
        );
    }
}

/// Belfry's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Belfry", description = "Self-hosted real-time notifications. Live protocol: docs/protocol.md."),
    paths(
        api::notify, api::batch, api::room_message,
        inbox::list, inbox::unread_count, inbox::read, inbox::unread, inbox::seen,
        inbox::archive, inbox::read_all, inbox::delete,
        preferences::mine, preferences::replace_mine,
        preferences::of_user, preferences::replace_of_user,
        push::vapid_public_key, push::subscribe, push::unsubscribe,
        live::ws, live::sse, live::poll,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "backend", description = "Server-to-server: API key"),
        (name = "inbox", description = "A user's own notifications: user JWT"),
        (name = "live", description = "Live delivery"),
        (name = "push", description = "Web Push"),
        (name = "ops", description = "Operations"),
    )
)]
pub struct ApiDoc;
