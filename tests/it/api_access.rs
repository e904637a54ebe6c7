//! Who may call the HTTP API, on a real loopback port through `api::serve`:
//! DNS rebinding (a foreign `Host`) and cross-site `Origin`s are refused,
//! `/health` says only the overall status to a caller without the token,
//! `api.allow_from` clients need no token, a client that never finishes its
//! headers is cut off, and media sends read their bodies a few at a time.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::fake_backend::FakeBackend;
use wabridge::api::{AccessPolicy, ApiState, router, serve};
use wabridge::config::IpRange;
use wabridge::engine::Engine;
use wabridge::paths::DataDir;

struct Served {
    addr: SocketAddr,
    _tmp: tempfile::TempDir,
}

async fn serve_with(access: impl FnOnce(SocketAddr) -> AccessPolicy) -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        FakeBackend::default(),
        DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState::with_access(engine, access(addr));
    tokio::spawn(serve(listener, router(state), std::future::pending()));
    Served { addr, _tmp: tmp }
}

fn loopback(token: &str) -> impl FnOnce(SocketAddr) -> AccessPolicy {
    let token = token.to_string();
    move |addr| AccessPolicy {
        token,
        listen: Some(addr),
        ..AccessPolicy::default()
    }
}

/// One HTTP/1.1 request with exactly these header lines; the status and the
/// JSON body (or the raw text) of the answer.
async fn raw(addr: SocketAddr, request_line: &str, headers: &[&str], body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{request_line} HTTP/1.1\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (status, value)
}

#[tokio::test]
async fn a_foreign_host_is_refused_as_dns_rebinding_and_loopback_names_pass() {
    let api = serve_with(loopback("")).await;
    let port = api.addr.port();
    let (status, body) = raw(api.addr, "GET /sessions", &["Host: attacker.example"], "").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("DNS rebinding"),
        "{body}"
    );
    // What the rebinding page would do next is refused the same way.
    let (status, _) = raw(
        api.addr,
        "DELETE /sessions/WA-1",
        &[&format!("Host: attacker.example:{port}")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_string(),
    ] {
        let (status, body) = raw(api.addr, "GET /sessions", &[&format!("Host: {host}")], "").await;
        assert_eq!(status, 200, "{host}: {body}");
    }
}

#[tokio::test]
async fn a_name_or_an_address_in_allowed_hosts_passes() {
    let api = serve_with(|addr| AccessPolicy {
        // The address: how a cluster's other hosts name this one
        // (`[cluster] api_url`) while it listens on 0.0.0.0.
        allowed_hosts: vec!["bridge.erp.internal".to_string(), "10.0.0.5".to_string()],
        listen: Some(addr),
        ..AccessPolicy::default()
    })
    .await;
    for (host, want) in [
        ("bridge.erp.internal:3000", 200),
        ("10.0.0.5:3000", 200),
        ("10.0.0.6:3000", 403),
    ] {
        let (status, body) = raw(api.addr, "GET /sessions", &[&format!("Host: {host}")], "").await;
        assert_eq!(status, want, "{host}: {body}");
    }
}

#[tokio::test]
async fn a_cross_site_origin_is_refused_even_with_a_loopback_host() {
    let api = serve_with(loopback("")).await;
    let host = format!("Host: 127.0.0.1:{}", api.addr.port());
    let body = r#"{"sessionId":"WA-1","receiver":"15550001111","message":"hi"}"#;
    let (status, answer) = raw(
        api.addr,
        "POST /sessions/send",
        &[
            &host,
            "Origin: https://attacker.example",
            "Content-Type: text/plain",
        ],
        body,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("cross-site"));
    // The dashboard of this machine's own browser tab is not cross-site.
    let (status, _) = raw(
        api.addr,
        "GET /sessions",
        &[
            &host,
            &format!("Origin: http://localhost:{}", api.addr.port()),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn with_a_token_health_tells_a_stranger_only_the_overall_status() {
    let api = serve_with(loopback("s3cret")).await;
    let host = format!("Host: 127.0.0.1:{}", api.addr.port());
    let (status, health) = raw(api.addr, "GET /health", &[&host], "").await;
    assert_eq!(status, 200);
    assert_eq!(health, serde_json::json!({"status": "healthy"}));
    let (status, health) = raw(
        api.addr,
        "GET /health",
        &[&host, "Authorization: Bearer s3cret"],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(health["sessions"]["details"].is_array(), "{health}");
    let (status, _) = raw(api.addr, "GET /sessions", &[&host], "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn allow_from_clients_need_no_token_and_others_still_do() {
    let range = |s: &str| IpRange::try_from(s.to_string()).unwrap();
    let allowed = serve_with(|addr| AccessPolicy {
        token: "s3cret".to_string(),
        allow_from: vec![range("127.0.0.0/8")],
        listen: Some(addr),
        ..AccessPolicy::default()
    })
    .await;
    let host = format!("Host: 127.0.0.1:{}", allowed.addr.port());
    let (status, _) = raw(allowed.addr, "GET /sessions", &[&host], "").await;
    assert_eq!(status, 200);

    let elsewhere = serve_with(|addr| AccessPolicy {
        token: "s3cret".to_string(),
        allow_from: vec![range("10.1.0.0/16")],
        listen: Some(addr),
        ..AccessPolicy::default()
    })
    .await;
    let host = format!("Host: 127.0.0.1:{}", elsewhere.addr.port());
    let (status, _) = raw(elsewhere.addr, "GET /sessions", &[&host], "").await;
    assert_eq!(status, 401);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let api = serve_with(loopback("")).await;
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    stream
        .write_all(b"GET /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stays open for a slow client");
    let waited = started.elapsed();
    assert!(
        waited >= wabridge::api::HEADER_READ_TIMEOUT && waited < Duration::from_secs(30),
        "cut off after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn media_sends_read_their_bodies_a_few_at_a_time() {
    let api = serve_with(loopback("")).await;
    let head = |length: usize| {
        format!(
            "POST /sessions/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // Senders that announced a large body and are still uploading it.
    let mut stalled = Vec::new();
    for _ in 0..wabridge::api::CONCURRENT_SENDS {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        stream.write_all(head(50_000_000).as_bytes()).await.unwrap();
        stream.write_all(b"{\"sessionId\":").await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = r#"{"sessionId":"WA-1","receiver":"15550001111","message":"hi"}"#;
    let next = tokio::spawn({
        let addr = api.addr;
        async move {
            let headers = ["Host: 127.0.0.1", "Content-Type: application/json"];
            raw(addr, "POST /sessions/send", &headers, body).await
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!next.is_finished(), "a fifth send waits for its turn");
    drop(stalled.pop());
    let (status, answer) = tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .expect("its turn comes when a sender goes away")
        .unwrap();
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"], "Session not found");
}
