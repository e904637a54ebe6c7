//! The HTTP API: the old Node bridge's routes and answers (ARCHITECTURE.md: the wire formats),
//! plus our own. Handlers only talk to the engine handle.

mod access;
mod cluster_views;
mod forward;
mod health;
mod lookups;
mod media;
mod nats_views;
mod send;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;

pub use access::{AccessPolicy, Trusted};
pub use send::CONCURRENT_SENDS;

/// Requests other than media sends never need more than this.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub started: Instant,
    pub access: AccessPolicy,
    /// Turns for `/sessions/send` bodies (see `send::one_of_few`).
    pub send_slots: Arc<tokio::sync::Semaphore>,
    /// How long `/sessions/start` waits for a QR code or a connection.
    pub start_wait: Duration,
    /// In a cluster (`[cluster]`): this host's name and the shared session
    /// list; `None` on a single host.
    pub cluster: Option<crate::cluster::control::ClusterControl>,
    /// In a cluster: every session of the cluster, who serves it and its
    /// last reported state (`cluster::view`), for the views.
    pub cluster_view: Option<tokio::sync::watch::Receiver<crate::cluster::view::ClusterSnapshot>>,
    /// With `[nats]`: the NATS target, for its health and backlog.
    pub nats: Option<Arc<crate::nats::NatsHub>>,
    /// The files behind media URLs (`GET /media/<id>`).
    pub media: Option<Arc<crate::media_store::MediaStore>>,
}

impl ApiState {
    /// An API on loopback with `token` (empty = none).
    pub fn new(engine: Engine, token: String) -> ApiState {
        Self::with_access(
            engine,
            AccessPolicy {
                token,
                ..AccessPolicy::default()
            },
        )
    }

    pub fn with_access(engine: Engine, access: AccessPolicy) -> ApiState {
        ApiState {
            engine,
            started: Instant::now(),
            access,
            send_slots: Arc::new(tokio::sync::Semaphore::new(send::CONCURRENT_SENDS)),
            start_wait: Duration::from_secs(40),
            cluster: None,
            cluster_view: None,
            nats: None,
            media: None,
        }
    }
}

pub fn router(state: ApiState) -> Router {
    let state = Arc::new(state);
    // Routes about one session a cluster's other host may serve: asked
    // here, answered there (`forward`).
    let forwarded = || middleware::from_fn_with_state(state.clone(), forward::to_owner);
    Router::new()
        .route("/", get(health::root))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/media/{id}", get(media::get))
        .route("/sessions", get(sessions::list))
        .route("/sessions/start", post(sessions::start))
        .route(
            "/sessions/check-number",
            post(lookups::check_number).layer(forwarded()),
        )
        .route(
            "/sessions/contact-info",
            post(lookups::contact_info).layer(forwarded()),
        )
        .route(
            "/sessions/group-metadata",
            post(lookups::group_metadata).layer(forwarded()),
        )
        .route(
            "/sessions/subscribe-presence",
            post(lookups::subscribe_presence).layer(forwarded()),
        )
        .route(
            "/sessions/send",
            // A send may carry up to SEND_BODY_LIMIT of media, read only once
            // its turn comes: a few at a time bound what sends can hold.
            post(send::send)
                .layer(axum::extract::DefaultBodyLimit::max(send::SEND_BODY_LIMIT))
                .layer(forwarded())
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    send::one_of_few,
                )),
        )
        .route(
            "/sessions/{id}",
            get(sessions::info).delete(sessions::delete),
        )
        .route("/sessions/{id}/status", get(sessions::status))
        .route(
            "/sessions/{id}/reconnect",
            post(sessions::reconnect).layer(forwarded()),
        )
        .route("/sessions/{id}/qr", get(sessions::qr).layer(forwarded()))
        .route(
            "/sessions/{id}/dead-letters",
            get(sessions::dead_letters).layer(forwarded()),
        )
        .route(
            "/sessions/{id}/dead-letters/{delivery}/replay",
            post(sessions::replay).layer(forwarded()),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not found") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), access::check))
        .with_state(state)
}

/// A client has this long to send a request's headers (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. HTTP/1 has
/// one request in flight per connection, so this caps requests too.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves until `shutdown` resolves, then lets open requests finish (10 s at
/// most). Each connection's peer address reaches the handlers as
/// `ConnectInfo`, which the access check needs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: wait for a connection to end
                    // rather than spinning.
                    tracing::warn!("HTTP API cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
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

/// The engine's errors as the old bridge answered them, so handlers use `?`.
impl From<crate::engine::EngineError> for ApiError {
    fn from(error: crate::engine::EngineError) -> ApiError {
        use crate::engine::EngineError;
        match error {
            EngineError::NotFound => ApiError::not_found(),
            EngineError::BeingDeleted | EngineError::MigrationUnconfirmed => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        }
    }
}

impl From<crate::engine::RequestError> for ApiError {
    fn from(error: crate::engine::RequestError) -> ApiError {
        use crate::engine::RequestError;
        match error {
            RequestError::NotFound => ApiError::not_found(),
            RequestError::NotConnected => ApiError::bad_request("Session not connected"),
            RequestError::Failed(reason) => ApiError::new(StatusCode::BAD_GATEWAY, reason),
        }
    }
}

impl From<crate::engine::outbound::OutboundError> for ApiError {
    fn from(error: crate::engine::outbound::OutboundError) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

/// A session id from a URL or a body that is not one.
impl From<crate::paths::InvalidSessionId> for ApiError {
    fn from(error: crate::paths::InvalidSessionId) -> ApiError {
        ApiError::bad_request(error.to_string())
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
