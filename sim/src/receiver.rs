//! A real HTTP webhook receiver on 127.0.0.1 that records what arrives and
//! answers from a script (status codes, hangs, huge bodies).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Never answers within any sane timeout.
    Hang,
    /// 200 with a large garbage body.
    Huge(usize),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// Messages in the `messages.upsert` requests received.
    upserted: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts on 127.0.0.1:0; unscripted requests get 200.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener).await
    }

    /// Starts on a given (earlier closed) port, for "the ERP came back".
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        Self::serve(tokio::net::TcpListener::bind(addr).await.unwrap()).await
    }

    async fn serve(listener: tokio::net::TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.replies.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many messages the `messages.upsert` requests received so far
    /// carried (repeats included): cheap to poll, unlike `upserts`.
    pub fn upserted_messages(&self) -> usize {
        self.shared
            .upserted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived (bounded wait).
    /// The first message of each `messages.upsert` received, in order.
    pub fn upserts(&self) -> Vec<serde_json::Value> {
        self.received()
            .iter()
            .map(Received::json)
            .filter(|b| b["event"] == "messages.upsert")
            .map(|b| b["messages"][0].clone())
            .collect()
    }

    /// Waits until `n` messages have arrived (any order); panics with what
    /// did after `within`.
    pub async fn wait_for_upserts(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.upserts();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} messages arrived: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "only {} of {n} webhook requests arrived",
                    self.received().len()
                );
            }
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body)
        && json["event"] == "messages.upsert"
    {
        let messages = json["messages"].as_array().map_or(0, Vec::len);
        shared
            .upserted
            .fetch_add(messages, std::sync::atomic::Ordering::SeqCst);
    }
    shared.received.lock().unwrap().push(Received {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    shared.arrived.notify_waiters();
    let reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Reply::Huge(size) => (StatusCode::OK, vec![b'#'; size]).into_response(),
    }
}
