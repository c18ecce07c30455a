//! The demo blog served by `belfry demo`: a few users and posts kept in memory, one-click
//! sign-in (it mints development tokens), and like/comment buttons that notify the post's
//! author by calling Belfry's own backend API over HTTP, exactly as an app's backend would.
//!
//! The page itself (demo/, built with Vite) is embedded in the binary at build time.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::AppState;
use crate::http::ApiError;
use crate::model::UserId;
use crate::protocol::ErrorCode;

#[derive(rust_embed::RustEmbed)]
#[folder = "$OUT_DIR/demo"]
struct Assets;

/// Tokens minted by the demo live this long.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A demo user.
#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    id: &'static str,
    name: &'static str,
}

const USERS: [DemoUser; 3] = [
    DemoUser {
        id: "alice",
        name: "Alice",
    },
    DemoUser {
        id: "bob",
        name: "Bob",
    },
    DemoUser {
        id: "carol",
        name: "Carol",
    },
];

#[derive(Debug, Clone, Serialize)]
struct Comment {
    author_id: String,
    body: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
struct Post {
    id: u64,
    author_id: &'static str,
    title: &'static str,
    body: &'static str,
    likes: u64,
    liked_by: Vec<String>,
    comments: Vec<Comment>,
}

/// The demo's in-memory blog.
pub struct Blog {
    posts: Mutex<Vec<Post>>,
    api_base: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl Blog {
    /// A blog whose backend calls Belfry at `addr` with `api_key`.
    pub fn new(addr: SocketAddr, api_key: Option<String>) -> Self {
        let post = |id, author_id, title, body| Post {
            id,
            author_id,
            title,
            body,
            likes: 0,
            liked_by: Vec::new(),
            comments: Vec::new(),
        };
        Self {
            posts: Mutex::new(vec![
                post(
                    1,
                    "alice",
                    "Hello, Belfry",
                    "The bell lights up the moment someone reacts.",
                ),
                post(
                    2,
                    "bob",
                    "Notes on resuming",
                    "Every notification has a per-user sequence number.",
                ),
                post(
                    3,
                    "carol",
                    "Calm, not chatty",
                    "Real-time done right is quiet until it matters.",
                ),
            ]),
            api_base: format!("http://{addr}"),
            api_key,
            client: reqwest::Client::new(),
        }
    }

    fn with_post<T>(&self, id: u64, f: impl FnOnce(&mut Post) -> T) -> Option<T> {
        let mut posts = match self.posts.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        posts.iter_mut().find(|p| p.id == id).map(f)
    }

    /// What an app backend does: one HTTP call to Belfry. Events of one `group` (the likes of
    /// a post) collapse into one inbox item that lists its actors.
    async fn notify(
        &self,
        recipient: &str,
        kind: &str,
        group: &str,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<(), ApiError> {
        let key = self.api_key.as_deref().unwrap_or_default();
        let response = self
            .client
            .post(format!("{}/v1/notifications", self.api_base))
            .bearer_auth(key)
            .json(&json!({
                "recipients": [recipient], "type": kind, "data": data,
                "group_key": group, "actor": actor,
            }))
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "demo notify failed");
                ApiError::new(ErrorCode::Unavailable, "notify failed")
            })?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "demo notify refused");
            return Err(ApiError::new(ErrorCode::Internal, "notify refused"));
        }
        Ok(())
    }
}

/// The demo's routes (mounted only by `belfry demo`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .route("/belfry-sw.js", get(service_worker))
        .route("/demo/api/users", get(users))
        .route("/demo/api/token", post(token))
        .route("/demo/api/posts", get(posts))
        .route("/demo/api/posts/{id}/like", post(like))
        .route("/demo/api/posts/{id}/comments", post(comment))
}

fn blog(state: &AppState) -> Result<&Blog, ApiError> {
    state.demo.as_deref().ok_or_else(ApiError::not_found)
}

async fn index() -> Response {
    serve("index.html")
}

async fn service_worker() -> Response {
    let mut response = serve("belfry-sw.js");
    // Browsers re-check a service worker script on navigation; never let a cache pin an old one.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

async fn asset(Path(path): Path<String>) -> Response {
    serve(&format!("assets/{path}"))
}

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mime = match path.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, mime)], file.data.into_owned()).into_response()
        }
        None => ApiError::not_found().into_response(),
    }
}

async fn users() -> impl IntoResponse {
    axum::Json(USERS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    user_id: String,
}

async fn token(
    State(state): State<AppState>,
    axum::Json(body): axum::Json<TokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    blog(&state)?;
    if !USERS.iter().any(|u| u.id == body.user_id) {
        return Err(ApiError::not_found());
    }
    let user = UserId::parse(body.user_id).map_err(|_| ApiError::not_found())?;
    let (token, exp) = state
        .auth
        .mint_with(&user, TOKEN_TTL, |c| c.rooms = vec!["todo:*".into()])?;
    let expires_at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(exp).unwrap_or(0))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    Ok(axum::Json(
        json!({"token": token, "expires_at": expires_at}),
    ))
}

async fn posts(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let blog = blog(&state)?;
    let posts = match blog.posts.lock() {
        Ok(p) => p.clone(),
        Err(p) => p.into_inner().clone(),
    };
    Ok(axum::Json(posts))
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "sign in first"))?;
    Ok(state.auth.verify(token).await?.id.to_string())
}

fn display_name(id: &str) -> &str {
    USERS.iter().find(|u| u.id == id).map_or(id, |u| u.name)
}

async fn like(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let actor = signed_in(&state, &headers).await?;
    let blog = blog(&state)?;
    let (post, newly) = blog
        .with_post(id, |p| {
            let newly = !p.liked_by.contains(&actor);
            if newly {
                p.liked_by.push(actor.clone());
                p.likes += 1;
            }
            (p.clone(), newly)
        })
        .ok_or_else(ApiError::not_found)?;
    if newly && post.author_id != actor {
        let data = json!({
            "post_id": post.id, "post_title": post.title,
            "actor_id": actor, "actor_name": display_name(&actor),
        });
        let group = format!("post:{}:likes", post.id);
        blog.notify(
            post.author_id,
            "post.liked",
            &group,
            display_name(&actor),
            data,
        )
        .await?;
    }
    Ok(axum::Json(post))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentRequest {
    body: String,
}

async fn comment(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<CommentRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = signed_in(&state, &headers).await?;
    let text = body.body.trim().to_owned();
    if text.is_empty() || text.chars().count() > 2000 {
        return Err(ApiError::new(
            ErrorCode::Validation,
            "body: 1–2000 characters",
        ));
    }
    let blog = blog(&state)?;
    let post = blog
        .with_post(id, |p| {
            p.comments.push(Comment {
                author_id: actor.clone(),
                body: text.clone(),
                created_at: crate::model::now(),
            });
            p.clone()
        })
        .ok_or_else(ApiError::not_found)?;
    if post.author_id != actor {
        let preview: String = text.chars().take(80).collect();
        let data = json!({
            "post_id": post.id, "post_title": post.title,
            "actor_id": actor, "actor_name": display_name(&actor), "preview": preview,
        });
        let group = format!("post:{}:comments", post.id);
        blog.notify(
            post.author_id,
            "comment.created",
            &group,
            display_name(&actor),
            data,
        )
        .await?;
    }
    Ok((StatusCode::CREATED, axum::Json(post)))
}
