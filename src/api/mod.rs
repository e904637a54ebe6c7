//! The HTTP API: the old Node bridge's routes and answers (design.md §4),
//! plus our own. Handlers only talk to the engine handle.

mod health;
mod lookups;
mod send;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;

/// Requests other than media sends never need more than this.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub started: Instant,
    /// Empty = no auth.
    pub token: String,
    /// How long `/sessions/start` waits for a QR code or a connection.
    pub start_wait: Duration,
}

impl ApiState {
    pub fn new(engine: Engine, token: String) -> ApiState {
        ApiState {
            engine,
            started: Instant::now(),
            token,
            start_wait: Duration::from_secs(40),
        }
    }
}

pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/", get(health::root))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/sessions", get(sessions::list))
        .route("/sessions/start", post(sessions::start))
        .route("/sessions/check-number", post(lookups::check_number))
        .route("/sessions/contact-info", post(lookups::contact_info))
        .route("/sessions/group-metadata", post(lookups::group_metadata))
        .route(
            "/sessions/subscribe-presence",
            post(lookups::subscribe_presence),
        )
        .route(
            "/sessions/send",
            post(send::send).layer(axum::extract::DefaultBodyLimit::max(send::SEND_BODY_LIMIT)),
        )
        .route(
            "/sessions/{id}",
            get(sessions::info).delete(sessions::delete),
        )
        .route("/sessions/{id}/status", get(sessions::status))
        .route("/sessions/{id}/reconnect", post(sessions::reconnect))
        .route("/sessions/{id}/qr", get(sessions::qr))
        .route("/sessions/{id}/dead-letters", get(sessions::dead_letters))
        .route(
            "/sessions/{id}/dead-letters/{delivery}/replay",
            post(sessions::replay),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not found") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// With `api.token` set, every route but `/health` needs
/// `Authorization: Bearer <token>`.
async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.token.is_empty() || request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        next.run(request).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{"error": "..."}` with a status, as the old bridge answered.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "Session not found")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            format!("invalid request body: {}", rejection.body_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
