//! Replays the old Node bridge's request/response pairs
//! (tests/fixtures/old-bridge, ARCHITECTURE.md) against wabridge's router: an
//! ERP client written for the old bridge sees the same answers.

use crate::support;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use tower::ServiceExt;

use support::fake_backend::{Conn, FakeBackend};
use wabridge::api::{ApiState, router};
use wabridge::engine::Engine;
use wabridge::engine::backend::WaEvent;
use wabridge::paths::DataDir;

/// Does `actual` match the fixture's `expected` (placeholders allowed,
/// extra object keys allowed)? Returns the path of the first mismatch.
fn mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::String(p), v) if p == "<string>" => (!v.is_string()).then(|| path.to_string()),
        (Value::String(p), v) if p == "<number>" => (!v.is_number()).then(|| path.to_string()),
        (Value::String(p), v) if p == "<object>" => (!v.is_object()).then(|| path.to_string()),
        (Value::String(p), v) if p == "<png-data-url>" => {
            let ok = v
                .as_str()
                .is_some_and(|s| s.starts_with("data:image/png;base64,iVBOR"));
            (!ok).then(|| path.to_string())
        }
        (Value::Object(e), Value::Object(a)) => {
            e.iter().find_map(|(key, value)| match a.get(key) {
                Some(actual) => mismatch(value, actual, &format!("{path}.{key}")),
                None => Some(format!("{path}.{key} (missing)")),
            })
        }
        (e, a) => (e != a).then(|| path.to_string()),
    }
}

#[tokio::test]
async fn the_old_bridges_exchanges_replay_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    backend.script(
        "WA-New_Shop",
        [Conn::Stays(vec![WaEvent::QrCode {
            payload: "2@compat,noise,identity,adv,1".into(),
            valid_for: Duration::from_secs(60),
        }])],
    );
    let policy = support::fast_policy();
    let engine = Engine::new(backend, DataDir::new(tmp.path().join("data")), policy);
    let mut state = ApiState::new(engine, String::new());
    state.start_wait = Duration::from_secs(5);
    let app = router(state);

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old-bridge");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "fixtures missing in {}", dir.display());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let exchange: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let request = &exchange["request"];
        let method: Method = request["method"].as_str().unwrap().parse().unwrap();
        let mut builder = Request::builder()
            .method(method)
            .uri(request["path"].as_str().unwrap());
        let body = match request.get("body") {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = app
            .clone()
            .oneshot(builder.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let actual: Value = serde_json::from_slice(&bytes).unwrap();
        let expected = &exchange["response"];
        assert_eq!(
            u64::from(status),
            expected["status"].as_u64().unwrap(),
            "{name}: {actual}"
        );
        if let Some(path) = mismatch(&expected["body"], &actual, "body") {
            panic!(
                "{name}: {path} differs\nexpected {}\nactual   {actual}",
                expected["body"]
            );
        }
    }
}

#[test]
fn the_matcher_can_fail() {
    let expected = serde_json::json!({"status": "Connected", "n": "<number>"});
    assert_eq!(
        mismatch(
            &expected,
            &serde_json::json!({"status": "Connected", "n": 1}),
            "b"
        ),
        None
    );
    assert!(
        mismatch(
            &expected,
            &serde_json::json!({"status": "Connecting", "n": 1}),
            "b"
        )
        .is_some()
    );
    assert!(
        mismatch(
            &expected,
            &serde_json::json!({"status": "Connected", "n": "1"}),
            "b"
        )
        .is_some()
    );
    assert!(mismatch(&expected, &serde_json::json!({"status": "Connected"}), "b").is_some());
}
