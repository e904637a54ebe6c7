//! A stuck ERP shows in every view: the session's snapshot carries its
//! webhook backlog (what the outbox still holds, from before a restart too,
//! and every change after), so `/sessions` shows it, `/metrics` has its
//! gauges and `/health` says "degraded" once the oldest delivery is old.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use support::fake_backend::FakeBackend;
use support::receiver::{Receiver, Reply};
use wabridge::api::{ApiState, router};
use wabridge::engine::{Engine, EngineEvent};
use wabridge::paths::{DataDir, SessionId};
use wabridge::session_files::{SessionFiles, SessionSettings};
use wabridge::webhook::deliver::{DeliverySettings, now_ms};
use wabridge::webhook::hub::WebhookHub;
use wabridge::webhook::outbox::Outbox;

async fn get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// An engine on a scripted backend forwarding through a webhook hub whose
/// retries start at `retry_base`.
fn engine_with_hub(data: &DataDir, retry_base: Duration) -> (Engine, Arc<WebhookHub>) {
    let settings = DeliverySettings {
        retry_base,
        ..DeliverySettings::default()
    };
    let hooks = WebhookHub::open(data, settings).unwrap();
    let engine = Engine::with_webhooks(
        FakeBackend::default(),
        data.clone(),
        support::fast_policy(),
        Some(hooks.clone()),
    );
    (engine, hooks)
}

#[tokio::test]
async fn a_stuck_erp_shows_in_sessions_metrics_and_health() {
    support::install_tls();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let id = SessionId::parse("WA-1").unwrap();
    // The ERP has been down for ten minutes and still is.
    let erp = Receiver::start().await;
    erp.script((0..1000).map(|_| Reply::Status(503)));
    SessionFiles::new(&data, &id)
        .save_settings(&SessionSettings {
            webhook_url: Some(erp.url()),
            ..SessionSettings::default()
        })
        .unwrap();
    {
        std::fs::create_dir_all(data.root().join("outbox")).unwrap();
        let outbox = Outbox::open(&data.root().join("outbox/outbox.db")).unwrap();
        let ten_minutes_ago = now_ms() - 600_000;
        outbox
            .enqueue(
                "WA-1",
                Some("k1"),
                br#"{"event":"messages.upsert"}"#,
                ten_minutes_ago,
            )
            .unwrap();
    }

    let (engine, _hooks) = engine_with_hub(&data, Duration::from_millis(20));
    let mut changes = engine.subscribe();
    engine.start_saved().unwrap();
    let router = router(ApiState::new(engine.clone(), String::new()));

    let (_, sessions) = get(&router, "/sessions").await;
    let sessions: Value = serde_json::from_str(&sessions).unwrap();
    let webhook = &sessions["sessions"][0]["webhook"];
    assert!(webhook["pending"].as_u64().unwrap() >= 1, "{sessions}");
    assert!(
        webhook["oldestAgeSeconds"].as_u64().unwrap() >= 600,
        "{sessions}"
    );

    let (_, health) = get(&router, "/health").await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");

    let (_, metrics) = get(&router, "/metrics").await;
    let gauge = |name: &str| -> u64 {
        let prefix = format!("{name}{{session=\"WA-1\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(gauge("wabridge_webhook_backlog") >= 1);
    assert!(gauge("wabridge_webhook_oldest_age_seconds") >= 600);
    assert_eq!(gauge("wabridge_webhook_dead_letters"), 0);

    // The session connects while the ERP is down: its connection.update
    // queues behind the old message, and the count follows.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(EngineEvent::Backlog { backlog, .. }) = changes.recv().await
                && backlog.pending == 2
            {
                return;
            }
        }
    })
    .await
    .expect("the backlog grows to 2");
    assert_eq!(engine.snapshot(&id).unwrap().backlog.unwrap().pending, 2);
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics.contains("wabridge_webhook_backlog{session=\"WA-1\"} 2"),
        "{metrics}"
    );
    engine.shutdown().await;
}

/// Deleting a session drops what its ERP never took: a new session of the
/// same id starts with an empty backlog, and its webhook never receives the
/// old session's deliveries.
#[tokio::test]
async fn a_deleted_sessions_backlog_does_not_outlive_it() {
    support::install_tls();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let id = SessionId::parse("WA-1").unwrap();
    let down = Receiver::start().await;
    down.script((0..1000).map(|_| Reply::Status(503)));
    let (engine, hooks) = engine_with_hub(&data, Duration::from_secs(60));
    let mut changes = engine.subscribe();
    engine
        .add_session(&id, Some(down.url()), Some("erp".into()))
        .unwrap();
    // Its "Connected" waits for the ERP that is down.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(EngineEvent::Backlog { backlog, .. }) = changes.recv().await
                && backlog.pending >= 1
            {
                return;
            }
        }
    })
    .await
    .expect("a delivery waits");

    engine.delete_session(&id).await.unwrap();
    assert_eq!(hooks.backlog(&id).pending, 0, "nothing of it lingers");

    let erp = Receiver::start().await;
    engine
        .add_session(&id, Some(erp.url()), Some("erp".into()))
        .unwrap();
    let first = erp.wait_for(1, Duration::from_secs(20)).await;
    assert!(
        !down.received().is_empty(),
        "the old session did try its ERP"
    );
    let old_ids: Vec<String> = down
        .received()
        .iter()
        .filter_map(|r| r.header("x-wabridge-delivery"))
        .collect();
    let new_id = first[0].header("x-wabridge-delivery").unwrap();
    assert!(!old_ids.contains(&new_id), "{new_id} is a fresh delivery");
    engine.shutdown().await;
}
