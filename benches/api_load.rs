//! HTTP API under load: requests/s and latency of `GET /health` and
//! `GET /sessions` with 100 sessions, from a loopback load generator in the
//! same process (16 keep-alive connections), plus resident memory.
//! Prints figures; asserts none.
//!
//! Run: `cargo bench --bench api_load`

// The API's cost does not depend on WhatsApp: the scripted backend of the
// tests stands in, so only the HTTP layer and the engine are measured.
use wabridge_sim::fake_backend;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fake_backend::FakeBackend;
use wabridge::api::{ApiState, router, serve};
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Engine, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;

const CONNECTIONS: usize = 16;
const DURATION: Duration = Duration::from_secs(3);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let hooks = WebhookHub::open(&data, DeliverySettings::default()).unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_secs(5),
        max: Duration::from_secs(60),
    };
    let engine = Engine::with_webhooks(FakeBackend::default(), data, policy, Some(hooks));
    for n in 0..100 {
        let id = SessionId::parse(&format!("WA-shop-{n:03}")).unwrap();
        engine.add_session(&id, None, None).unwrap();
    }
    for n in 0..100 {
        let id = SessionId::parse(&format!("WA-shop-{n:03}")).unwrap();
        let mut watch = engine.watch(&id).unwrap();
        watch
            .wait_for(|s| s.state == SessionState::Connected)
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router(ApiState::new(engine, String::new())),
        std::future::pending(),
    ));
    println!("100 sessions connected; RSS {} KiB before load", rss_kib());

    for path in ["/health", "/sessions"] {
        let url = format!("http://{addr}{path}");
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (url, stop) = (url.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let response = client.get(&url).send().await.unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                    latencies.push(start.elapsed());
                }
                latencies
            }));
        }
        tokio::time::sleep(DURATION).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap());
        }
        all.sort();
        let p = |q: usize| all[(all.len() * q / 100).min(all.len() - 1)];
        println!(
            "GET {path}: {:.0} req/s over {CONNECTIONS} connections, p50 {:?}, p99 {:?}, RSS {} KiB",
            all.len() as f64 / DURATION.as_secs_f64(),
            p(50),
            p(99),
            rss_kib()
        );
    }
}
