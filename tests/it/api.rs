//! The HTTP API through the router (no port) for every route, status code and
//! error string, hostile requests included; and once on a real loopback port.

use crate::support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use support::fake_backend::{Conn, FakeBackend, connected};
use wabridge::api::{ApiState, router};
use wabridge::engine::backend::WaEvent;
use wabridge::engine::{Engine, SessionState};
use wabridge::paths::{DataDir, SessionId};

struct Api {
    tmp: tempfile::TempDir,
    backend: FakeBackend,
    engine: Engine,
    router: Router,
}

fn api_with_token(token: &str) -> Api {
    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    let policy = support::fast_policy();
    let engine = Engine::new(
        backend.clone(),
        DataDir::new(tmp.path().join("data")),
        policy,
    );
    let mut state = ApiState::new(engine.clone(), token.to_string());
    state.start_wait = Duration::from_millis(500);
    Api {
        tmp,
        backend,
        engine,
        router: router(state),
    }
}

fn api() -> Api {
    api_with_token("")
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call_with(method, path, body, None).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn start(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/sessions/start",
            Some(&json!({ "sessionId": id }).to_string()),
        )
        .await
    }

    fn sessions_dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("data/sessions")
    }
}

#[tokio::test]
async fn root_and_health_keep_the_old_fields() {
    let api = api();
    api.start("WA-1").await;
    let (status, root) = api.call(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(root["status"], "running");
    assert_eq!(root["activeSessions"], 1);
    for field in ["service", "version", "uptime"] {
        assert!(root.get(field).is_some(), "{field} missing: {root}");
    }
    let (status, health) = api.call(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["sessions"]["total"], 1);
    assert_eq!(health["sessions"]["connected"], 1);
    assert_eq!(health["sessions"]["qrPending"], 0);
    assert!(health["memory"]["rss"].as_u64().unwrap() > 0);
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn health_says_degraded_while_a_session_is_down() {
    let api = api();
    api.backend
        .script("WA-1", (0..1000).map(|_| Conn::unreachable()));
    api.start("WA-1").await;
    let (status, health) = api.call(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "200 while the process serves");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["sessions"]["disconnected"], 1);
    assert_eq!(health["sessions"]["details"][0]["status"], "Disconnected");
}

#[tokio::test]
async fn start_returns_connected_or_the_qr_as_a_png_data_url() {
    let api = api();
    let (status, body) = api.start("WA-1").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "Connected"}))
    );

    api.backend.script(
        "WA-2",
        [Conn::Stays(vec![WaEvent::QrCode {
            payload: "2@abc,def,ghi,jkl,1".into(),
            valid_for: Duration::from_secs(60),
        }])],
    );
    let (status, body) = api.start("WA-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "QR Scan Required");
    assert!(
        body["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR"),
        "{body}"
    );
    let (_, info) = api.call(Method::GET, "/sessions/WA-2", None).await;
    assert_eq!(info["status"], "QR Scan Required");
    assert_eq!(info["hasWebhook"], false);
    assert!(
        info["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
}

#[tokio::test]
async fn starting_an_existing_session_never_opens_a_second_socket() {
    let api = api();
    api.start("WA-1").await;
    api.start("WA-1").await;
    let (_, body) = api.start("WA-1").await;
    assert_eq!(body["status"], "Connected");
    let opens = api
        .backend
        .count(|c| matches!(c, support::fake_backend::Call::Open(_)));
    assert_eq!(opens, 1);
}

#[tokio::test]
async fn start_saves_the_webhook_with_the_session() {
    let api = api();
    let body = json!({"sessionId": "WA-1", "webhookUrl": "http://127.0.0.1:9/hook", "webhookToken": "t0k"});
    api.call(Method::POST, "/sessions/start", Some(&body.to_string()))
        .await;
    let (_, info) = api.call(Method::GET, "/sessions/WA-1", None).await;
    assert_eq!(
        info,
        json!({"status": "Connected", "qr": null, "hasWebhook": true})
    );
    let saved = std::fs::read_to_string(api.sessions_dir().join("WA-1/session.json")).unwrap();
    assert!(saved.contains("http://127.0.0.1:9/hook"));
}

#[tokio::test]
async fn start_saves_the_nats_subject_and_an_empty_one_turns_nats_off() {
    let api = api();
    let settings = |api: &Api| {
        wabridge::session_files::SessionFiles::new(
            &DataDir::new(api.tmp.path().join("data")),
            &SessionId::parse("WA-1").unwrap(),
        )
        .load_settings()
        .unwrap()
    };
    for (given, saved) in [("erp.acme", "erp.acme"), ("", "")] {
        let body = json!({"sessionId": "WA-1", "natsSubject": given});
        let (status, _) = api
            .call(Method::POST, "/sessions/start", Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(settings(&api).nats_subject.as_deref(), Some(saved));
    }
    // A start without it keeps the session's.
    api.start("WA-1").await;
    assert_eq!(settings(&api).nats_subject.as_deref(), Some(""));
}

#[tokio::test]
async fn bad_start_requests_get_clear_400s() {
    let api = api();
    let cases = [
        ("{}", "sessionId is required"),
        (r#"{"sessionId": ""}"#, "sessionId is required"),
        (r#"{"sessionId": "../../etc"}"#, "invalid session id"),
        (r#"{"sessionId": "a/b"}"#, "invalid session id"),
        (
            r#"{"sessionId": "ok", "webhookUrl": "file:///etc/passwd"}"#,
            "webhookUrl must be",
        ),
        ("not json at all", "invalid request body"),
        (r#"{"sessionId": 42}"#, "invalid request body"),
        (
            r#"{"sessionId": "ok", "natsSubject": "erp.*"}"#,
            "natsSubject `erp.*` holds '*'",
        ),
        (
            r#"{"sessionId": "ok", "natsSubject": "erp..acme"}"#,
            "natsSubject `erp..acme` has an empty token",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = api.call(Method::POST, "/sessions/start", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{body}: {answer}"
        );
    }
    assert!(!api.tmp.path().join("etc").exists());
    assert!(api.engine.snapshots().is_empty(), "nothing started");
}

#[tokio::test]
async fn unknown_sessions_are_404_and_hostile_ids_400() {
    let api = api();
    for path in ["/sessions/nope/status", "/sessions/nope"] {
        let (status, body) = api.call(Method::GET, path, None).await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"error": "Session not found"}))
        );
    }
    let (status, _) = api.call(Method::DELETE, "/sessions/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The old bridge's DELETE /sessions/../.. deleted directories. Here the
    // encoded form reaches the handler and is refused; nothing on disk moves.
    std::fs::create_dir_all(api.tmp.path().join("data/keep-me")).unwrap();
    for path in [
        "/sessions/..%2F..",
        "/sessions/%2E%2E",
        "/sessions/a%00b",
        "/sessions/.hidden",
    ] {
        let (status, body) = api.call(Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("invalid session id")
        );
    }
    assert!(api.tmp.path().join("data/keep-me").exists());
}

#[tokio::test]
async fn delete_logs_out_and_forgets_the_session() {
    let api = api();
    api.start("WA-1").await;
    let (status, body) = api.call(Method::DELETE, "/sessions/WA-1", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "logged out"}))
    );
    assert_eq!(
        api.backend
            .count(|c| matches!(c, support::fake_backend::Call::Logout(_))),
        1
    );
    assert!(!api.sessions_dir().join("WA-1").exists());
    let (status, _) = api.call(Method::GET, "/sessions/WA-1/status", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The server never confirms the unlink in time (it answers two minutes
/// later, as a request that times out would). The DELETE still ends in
/// bounded time, the id cannot be started while it runs, and the old
/// session's late logout can never touch the new session of the same id.
#[tokio::test(start_paused = true)]
async fn a_delete_the_server_never_confirms_cannot_touch_the_next_session_of_that_id() {
    let api = api();
    api.backend
        .answer_logout_after("WA-1", Duration::from_secs(120));
    api.start("WA-1").await;
    let started = tokio::time::Instant::now();
    let (deleted, started_meanwhile) =
        tokio::join!(api.call(Method::DELETE, "/sessions/WA-1", None), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            api.start("WA-1").await
        });
    assert_eq!(deleted, (StatusCode::OK, json!({"status": "logged out"})));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the DELETE took {:?}",
        started.elapsed()
    );
    assert_eq!(
        started_meanwhile.0,
        StatusCode::CONFLICT,
        "{started_meanwhile:?}"
    );
    assert!(
        started_meanwhile.1["error"]
            .as_str()
            .unwrap()
            .contains("being deleted")
    );

    // The ERP starts the id again, with its webhook, and the phone pairs it.
    let body = json!({"sessionId": "WA-1", "webhookUrl": "http://127.0.0.1:9/hook"});
    let (status, _) = api
        .call(Method::POST, "/sessions/start", Some(&body.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Long after the old logout would have finished.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let (_, info) = api.call(Method::GET, "/sessions/WA-1", None).await;
    assert_eq!(info["status"], "Connected", "{info}");
    assert_eq!(info["hasWebhook"], true, "{info}");
    let settings = std::fs::read_to_string(api.sessions_dir().join("WA-1/session.json")).unwrap();
    assert!(!settings.contains("\"logged_out\":true"), "{settings}");
}

#[tokio::test]
async fn status_list_and_reconnect() {
    let api = api();
    api.backend
        .script("WA-1", (0..1000).map(|_| Conn::unreachable()));
    api.start("WA-1").await;
    let (_, status) = api.call(Method::GET, "/sessions/WA-1/status", None).await;
    assert_eq!(status, json!({"status": "Disconnected"}));
    let (_, list) = api.call(Method::GET, "/sessions", None).await;
    let entry = &list["sessions"][0];
    assert_eq!(entry["id"], "WA-1");
    assert!(entry["attempt"].as_u64().unwrap() >= 1);
    assert_eq!(entry["lastClose"]["status"], 408);
    let (status, body) = api
        .call(Method::POST, "/sessions/WA-1/reconnect", None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "reconnecting"}))
    );
}

#[tokio::test]
async fn a_logged_out_session_pairs_again_on_start() {
    let api = api();
    api.backend.script(
        "WA-1",
        [
            Conn::Ends(vec![
                connected(),
                WaEvent::Closed(wabridge::engine::close::CloseSignal::LoggedOut { code: 401 }),
            ]),
            Conn::Stays(vec![WaEvent::QrCode {
                payload: "2@x,y,z,w,1".into(),
                valid_for: Duration::from_secs(60),
            }]),
        ],
    );
    api.start("WA-1").await;
    let id = SessionId::parse("WA-1").unwrap();
    let mut watch = api.engine.watch(&id).unwrap();
    watch
        .wait_for(|s| s.state == SessionState::LoggedOut)
        .await
        .unwrap();
    let (_, body) = api.start("WA-1").await;
    assert_eq!(body["status"], "QR Scan Required");
}

#[tokio::test]
async fn the_token_guards_everything_but_health() {
    let api = api_with_token("s3cret");
    let (status, body) = api.call(Method::GET, "/sessions", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}))
    );
    let (status, _) = api
        .call_with(Method::GET, "/sessions", None, Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call_with(Method::GET, "/sessions", None, Some("s3cret"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes() {
    let api = api();
    let huge = format!(r#"{{"sessionId": "{}"}}"#, "a".repeat(200_000));
    let (status, _) = api.call(Method::POST, "/sessions/start", Some(&huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = api.call(Method::GET, "/nowhere", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "Not found"}))
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = api();
    api.start("WA-1").await;
    let (status, body) = api.call(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("wabridge_sessions{state=\"Connected\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wabridge_reconnect_attempt{session=\"WA-1\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn serves_on_a_real_loopback_port() {
    let api = api();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wabridge::api::serve(
        listener,
        api.router.clone(),
        std::future::pending(),
    ));
    support::install_tls();
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(format!("http://{addr}/sessions/start"))
        .json(&json!({"sessionId": "WA-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"status": "Connected"}));
}

#[tokio::test]
async fn send_text_and_media_through_the_live_connection() {
    let api = api();
    api.start("WA-1").await;
    let body = json!({"sessionId": "WA-1", "receiver": "+91 90751 67132", "message": "Your order shipped"});
    let (status, answer) = api
        .call(Method::POST, "/sessions/send", Some(&body.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "sent");
    assert!(
        answer["messageId"]
            .as_str()
            .unwrap()
            .starts_with("3EB0FAKE")
    );
    assert!(answer["timestamp"].as_i64().is_some());

    // A 2 MB document: far over the default body limit, fine for sends.
    let pdf = vec![b'%'; 2 * 1024 * 1024];
    let data = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&pdf)
    };
    let body = json!({"sessionId": "WA-1", "receiver": "120363999999999999", "message": "invoice",
        "media": {"data": data, "mimetype": "application/pdf", "filename": "invoice.pdf"}});
    let (status, answer) = api
        .call(Method::POST, "/sessions/send", Some(&body.to_string()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sends: Vec<_> = api
        .backend
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            support::fake_backend::Call::Send(_, m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(sends[0].to, "919075167132@s.whatsapp.net");
    assert_eq!(sends[0].text, "Your order shipped");
    assert_eq!(sends[1].to, "120363999999999999@g.us");
    let media = sends[1].media.as_ref().unwrap();
    assert_eq!(media.data, pdf);
    assert_eq!(media.kind, wabridge::engine::backend::MediaKind::Document);
    assert_eq!(media.filename.as_deref(), Some("invoice.pdf"));
}

#[tokio::test]
async fn send_errors_match_the_old_bridge() {
    let api = api();
    api.backend
        .script("DOWN", (0..1000).map(|_| Conn::unreachable()));
    api.start("DOWN").await;
    let body = json!({"sessionId": "DOWN", "receiver": "15551234567", "message": "hi"});
    let (status, answer) = api
        .call(Method::POST, "/sessions/send", Some(&body.to_string()))
        .await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Session not connected"})
        )
    );

    let body = json!({"sessionId": "nope", "receiver": "15551234567", "message": "hi"});
    let (status, answer) = api
        .call(Method::POST, "/sessions/send", Some(&body.to_string()))
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::NOT_FOUND, json!({"error": "Session not found"}))
    );

    for (body, expected) in [
        (
            json!({"receiver": "1"}),
            "sessionId and receiver are required",
        ),
        (
            json!({"sessionId": "DOWN", "receiver": "call me", "message": "x"}),
            "is not a phone number",
        ),
        (
            json!({"sessionId": "DOWN", "receiver": "1555"}),
            "message or media is required",
        ),
        (
            json!({"sessionId": "DOWN", "receiver": "1555", "media": {"data": "!!!"}}),
            "not base64",
        ),
    ] {
        let (status, answer) = api
            .call(Method::POST, "/sessions/send", Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn lookups_like_the_old_bridge() {
    let api = api();
    api.start("WA-1").await;
    let (status, one) = api
        .call(
            Method::POST,
            "/sessions/check-number",
            Some(r#"{"sessionId":"WA-1","phone":"+91 90751 67132"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["exists"], true);
    assert_eq!(one["jid"], "919075167132@s.whatsapp.net");
    let (_, many) = api
        .call(
            Method::POST,
            "/sessions/check-number",
            Some(r#"{"sessionId":"WA-1","phones":["15550001111","15550001110"]}"#),
        )
        .await;
    assert_eq!(many["results"][0]["exists"], true);
    assert_eq!(many["results"][1]["exists"], false);

    let (status, group) = api
        .call(
            Method::POST,
            "/sessions/group-metadata",
            Some(r#"{"sessionId":"WA-1","groupId":"120363999999999999"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{group}");
    assert_eq!(group["id"], "120363999999999999@g.us");
    assert_eq!(
        group["participants"][0],
        json!({"id": "260477250707536@lid", "phone": "919075167132", "lid": "260477250707536", "admin": true})
    );

    let (status, body) = api
        .call(
            Method::POST,
            "/sessions/subscribe-presence",
            Some(r#"{"sessionId":"WA-1","phone":"15550001111"}"#),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "subscribed"}))
    );

    // A failure of the lookup itself is a 502 with the reason, never a fake answer.
    let (status, body) = api
        .call(
            Method::POST,
            "/sessions/contact-info",
            Some(r#"{"sessionId":"WA-1","jid":"15550001111@s.whatsapp.net"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "user info unavailable");

    for (path, body, expected) in [
        (
            "/sessions/check-number",
            r#"{"sessionId":"WA-1"}"#,
            "phone or phones is required",
        ),
        (
            "/sessions/check-number",
            r#"{"sessionId":"WA-1","phone":"12"}"#,
            "7 to 15 digits",
        ),
        (
            "/sessions/group-metadata",
            r#"{"sessionId":"WA-1"}"#,
            "groupId is required",
        ),
        (
            "/sessions/contact-info",
            r#"{"phone":"1"}"#,
            "sessionId is required",
        ),
    ] {
        let (status, answer) = api.call(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn an_interrupted_offline_sync_shows_in_the_session_list() {
    let api = api();
    let cut = Conn::Ends(vec![
        connected(),
        WaEvent::OfflineSyncAnnounced { items: 6 },
        WaEvent::Closed(wabridge::engine::close::CloseSignal::SocketClosed {
            detail: "stream ended (EOF)".into(),
        }),
    ]);
    api.backend.script("WA-1", [cut]);
    // Then the network stays away: nothing finishes the sync.
    api.backend
        .script("WA-1", (0..1000).map(|_| Conn::unreachable()));
    api.start("WA-1").await;
    let list = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, list) = api.call(Method::GET, "/sessions", None).await;
            if !list["sessions"][0]["offlineSyncInterrupted"].is_null() {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the interrupted sync is shown");
    assert_eq!(
        list["sessions"][0]["offlineSyncInterrupted"],
        json!({"announced": 6})
    );
}

#[tokio::test]
async fn in_a_cluster_the_views_name_the_node_and_alone_they_do_not() {
    let alone = api();
    alone
        .backend
        .script("WA-1", [Conn::Stays(vec![connected()])]);
    alone.start("WA-1").await;
    let (_, list) = alone.call(Method::GET, "/sessions", None).await;
    assert!(list["sessions"][0].get("node").is_none(), "{list}");
    let (_, health) = alone.call(Method::GET, "/health", None).await;
    assert!(health.get("node").is_none(), "{health}");

    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    backend.script("WA-1", [Conn::Stays(vec![connected()])]);
    let engine = Engine::new(
        backend.clone(),
        DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    engine
        .add_session(&SessionId::parse("WA-1").unwrap(), None, None)
        .unwrap();
    let mut state = ApiState::new(engine.clone(), String::new());
    // A pool connects lazily: the views never touch the database.
    let pool = wabridge::engine::whatsapp::pg_store::pool_from_url(
        "postgres://wabridge@127.0.0.1:1/wabridge",
    )
    .unwrap();
    state.cluster = Some(wabridge::cluster::control::ClusterControl {
        node: "host-a".into(),
        leases: wabridge::cluster::store::PgLeases { pool },
        take_now: std::sync::Arc::new(|| {}),
    });
    let clustered = Api {
        tmp,
        backend,
        engine,
        router: router(state),
    };
    let (_, list) = clustered.call(Method::GET, "/sessions", None).await;
    assert_eq!(list["sessions"][0]["node"], "host-a", "{list}");
    let (_, health) = clustered.call(Method::GET, "/health", None).await;
    assert_eq!(health["node"], "host-a", "{health}");
    assert_eq!(
        health["sessions"]["details"][0]["node"], "host-a",
        "{health}"
    );
    let (_, metrics) = clustered.call(Method::GET, "/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wabridge_session_node{session=\"WA-1\",node=\"host-a\"} 1"),
        "{metrics}"
    );
}

/// What a host answers for a session it does not serve when it cannot
/// forward the request (`api/forward.rs`), against a real PostgreSQL: no
/// host serves it at this moment (503, `Retry-After`), its host publishes
/// no address (503 naming it), its host took the request and hung up (504:
/// it may have been carried out); an id the cluster does not know is 404.
#[tokio::test]
async fn in_a_cluster_a_request_that_cannot_be_forwarded_says_why() {
    support::install_tls();
    let server = tokio::task::spawn_blocking(wabridge_sim::postgres::TestPostgres::start)
        .await
        .unwrap();
    let pool = wabridge::engine::whatsapp::pg_store::pool_from_url(&server.url()).unwrap();
    wabridge::engine::whatsapp::pg_store::migrate(&pool)
        .await
        .unwrap();
    let leases = wabridge::cluster::store::PgLeases { pool: pool.clone() };
    let away = SessionId::parse("away").unwrap();
    leases.add_session(&away, None, None).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        FakeBackend::default(),
        DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    let mut state = ApiState::new(engine, String::new());
    state.cluster = Some(wabridge::cluster::control::ClusterControl {
        node: "host-a".into(),
        leases: leases.clone(),
        take_now: std::sync::Arc::new(|| {}),
    });
    let app = router(state);
    let reconnect = |id: &str| {
        let app = app.clone();
        let request = Request::post(format!("/sessions/{id}/reconnect"))
            .body(Body::empty())
            .unwrap();
        async move {
            let answer = app.oneshot(request).await.unwrap();
            let (status, headers) = (answer.status(), answer.headers().clone());
            let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            (
                status,
                headers,
                body["error"].as_str().unwrap_or("").to_string(),
            )
        }
    };

    let (status, headers, error) = reconnect("away").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(headers["retry-after"], "5");
    assert!(error.contains("being taken over"), "{error}");
    let (status, _, _) = reconnect("nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // host-b takes it: starting, it has published nothing yet; then, that
    // it cannot be called.
    wabridge::engine::whatsapp::pg_store::take_lease(
        &pool,
        "away",
        "host-b",
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    let (status, headers, error) = reconnect("away").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(headers["retry-after"], "5");
    assert!(
        error.contains("host-b") && error.contains("not published"),
        "{error}"
    );
    leases.register_node("host-b", None).await.unwrap();
    let (status, headers, error) = reconnect("away").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert!(headers.get("retry-after").is_none());
    assert!(
        error.contains("host-b") && error.contains("api_url"),
        "{error}"
    );

    // Its address takes the request and hangs up without an answer.
    let hangs_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = hangs_up.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = hangs_up.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut head).await;
            drop(socket);
        }
    });
    leases
        .register_node("host-b", Some(&format!("http://{address}")))
        .await
        .unwrap();
    let (status, _, error) = reconnect("away").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{error}");
    assert!(error.contains("may have been carried out"), "{error}");
}
