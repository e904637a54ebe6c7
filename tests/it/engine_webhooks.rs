//! Status changes reach each session's webhook in the old bridge's format,
//! once per change, through the durable outbox.

use crate::support;

use std::time::Duration;

use support::fake_backend::{Conn, FakeBackend};
use support::receiver::Receiver;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Command, Engine, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> BackoffPolicy {
    support::fast_policy()
}

fn engine(tmp: &tempfile::TempDir, backend: FakeBackend) -> Engine {
    support::install_tls();
    let data = DataDir::new(tmp.path().join("data"));
    let hooks = WebhookHub::open(
        &data,
        DeliverySettings {
            retry_base: Duration::from_millis(20),
            ..DeliverySettings::default()
        },
    )
    .unwrap();
    Engine::with_webhooks(backend, data, fast(), Some(hooks))
}

fn statuses(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn connection_updates_follow_the_session_once_per_change() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let backend = FakeBackend::default();
    backend.script("WA-1", (0..3).map(|_| Conn::unreachable()));
    let engine = engine(&tmp, backend);
    let id = SessionId::parse("WA-1").unwrap();
    engine
        .add_session(&id, Some(receiver.url()), Some("erp-token".into()))
        .unwrap();

    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        statuses(&receiver),
        ["Disconnected", "Connected"],
        "three failed attempts post one Disconnected"
    );
    let first = got[0].json();
    assert_eq!(first["sessionId"], "WA-1");
    assert_eq!(first["event"], "connection.update");
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{first}"
    );
    assert_eq!(
        got[1].header("x-webhook-token").as_deref(),
        Some("erp-token")
    );

    engine.command(&id, Command::Logout).await.unwrap();
    receiver.wait_for(3, WAIT).await;
    assert_eq!(statuses(&receiver)[2], "Logged Out");
    let snapshot = engine.snapshot(&id).unwrap();
    assert_eq!(snapshot.state, SessionState::LoggedOut);
    let backlog = engine.backlog(&id).unwrap();
    assert_eq!(backlog.dead, 0);
}

#[tokio::test]
async fn status_updates_queued_while_the_erp_is_down_arrive_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{port}/hook");
    let id = SessionId::parse("WA-1").unwrap();
    {
        let engine = engine(&tmp, FakeBackend::default());
        engine.add_session(&id, Some(url), None).unwrap();
        let mut watch = engine.watch(&id).unwrap();
        watch
            .wait_for(|s| s.state == SessionState::Connected)
            .await
            .unwrap();
        engine.shutdown().await;
        // Shutting down waits until the status is on disk.
        assert_eq!(engine.backlog(&id).unwrap().pending, 1);
    }
    // The ERP comes back on the same address; a new process delivers.
    let receiver = Receiver::start_on(port).await;
    let engine = engine(&tmp, FakeBackend::default());
    engine.start_saved().unwrap();
    receiver.wait_for(1, WAIT).await;
    assert_eq!(statuses(&receiver)[0], "Connected");
}

#[tokio::test]
async fn receipts_of_sent_messages_post_message_status() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let backend = FakeBackend::default();
    backend.script(
        "WA-1",
        [Conn::Stays(vec![
            support::fake_backend::connected(),
            wabridge::engine::backend::WaEvent::MessageStatus {
                message_ids: vec!["3EB0A".into(), "3EB0B".into()],
                status: "Delivered",
                timestamp_ms: 1_764_000_000_123,
            },
            wabridge::engine::backend::WaEvent::MessageStatus {
                message_ids: vec!["3EB0A".into()],
                status: "Read",
                timestamp_ms: 1_764_000_009_000,
            },
        ])],
    );
    let engine = engine(&tmp, backend);
    engine
        .add_session(
            &SessionId::parse("WA-1").unwrap(),
            Some(receiver.url()),
            None,
        )
        .unwrap();
    let got = receiver.wait_for(4, WAIT).await;
    let statuses: Vec<serde_json::Value> = got
        .iter()
        .map(|r| r.json())
        .filter(|b| b["event"] == "message.status")
        .collect();
    assert_eq!(
        statuses,
        [
            serde_json::json!({"sessionId": "WA-1", "event": "message.status", "messageId": "3EB0A", "status": "Delivered", "timestamp": 1_764_000_000_123i64}),
            serde_json::json!({"sessionId": "WA-1", "event": "message.status", "messageId": "3EB0B", "status": "Delivered", "timestamp": 1_764_000_000_123i64}),
            serde_json::json!({"sessionId": "WA-1", "event": "message.status", "messageId": "3EB0A", "status": "Read", "timestamp": 1_764_000_009_000i64}),
        ]
    );
}

#[tokio::test]
async fn a_session_without_a_webhook_queues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    backend.script("quiet", (0..2).map(|_| Conn::unreachable()));
    let engine = engine(&tmp, backend);
    let id = SessionId::parse("quiet").unwrap();
    let mut watch = {
        engine.add_session(&id, None, None).unwrap();
        engine.watch(&id).unwrap()
    };
    watch
        .wait_for(|s| s.state == SessionState::Connected)
        .await
        .unwrap();
    let backlog = engine.backlog(&id).unwrap();
    assert_eq!(backlog.pending, 0, "{backlog:?}");
}

/// A `session.json` that no longer parses (a crash mid-edit, a bad hand
/// edit) must not turn into "no webhook", after which every message would be
/// acked to WhatsApp and dropped: the session halts, the file is kept aside
/// and named, and nothing connects until the operator decides.
#[tokio::test]
async fn unreadable_settings_halt_the_session_instead_of_forgetting_the_webhook() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    let engine = engine(&tmp, backend.clone());
    let dir = tmp.path().join("data/sessions/WA-1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("whatsapp.db"), b"linked device").unwrap();
    std::fs::write(dir.join("session.json"), "{\"webhook_url\": \"http://erp").unwrap();
    let mut changes = engine.subscribe();
    assert_eq!(engine.start_saved().unwrap(), 1);
    let id = SessionId::parse("WA-1").unwrap();
    let halted = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(wabridge::engine::EngineEvent::SessionChanged(s)) = changes.recv().await
                && s.id == id
                && let SessionState::Halted(reason) = &s.state
            {
                return reason.clone();
            }
        }
    })
    .await
    .expect("the session halts");
    let words = halted.describe(std::time::Instant::now());
    assert!(words.contains("session settings unreadable"), "{words}");
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("session.json.unreadable-"))
        .expect("the file is kept aside");
    assert!(words.contains(&kept), "{words} names {kept}");
    assert_eq!(
        std::fs::read_to_string(dir.join(&kept)).unwrap(),
        "{\"webhook_url\": \"http://erp"
    );
    assert_eq!(
        backend.count(|c| matches!(c, support::fake_backend::Call::Open(_))),
        0,
        "nothing connected, so nothing was acked"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn has_webhook_follows_a_webhook_set_while_the_session_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let engine = engine(&tmp, FakeBackend::default());
    let id = SessionId::parse("WA-1").unwrap();
    engine.add_session(&id, None, None).unwrap();
    let mut watch = engine.watch(&id).unwrap();
    tokio::time::timeout(WAIT, watch.wait_for(|s| s.state == SessionState::Connected))
        .await
        .unwrap()
        .unwrap();
    assert!(!engine.snapshot(&id).unwrap().has_webhook);
    // The ERP calls /sessions/start again, now with its webhook.
    let started = engine.add_session(&id, Some(receiver.url()), None).unwrap();
    assert!(!started, "the running session keeps its one socket");
    assert!(engine.snapshot(&id).unwrap().has_webhook);
    engine.shutdown().await;
}
