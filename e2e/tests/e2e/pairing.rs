//! The test kit's pairing (`sim::pairing`): each session it pairs ends
//! with exactly one linked device, however often its snapshots repeat the
//! QR code it scanned.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use support::pairing::{backend, scan_until_connected};
use support::sim::{SimEvent, Simulator};
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Engine, EngineEvent, SessionState};
use wabridge::paths::{DataDir, SessionId};

#[tokio::test]
async fn pairing_many_links_one_device_per_session_though_snapshots_repeat_the_code() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    let engine = Engine::new(backend(&sim), DataDir::new(tmp.path()), policy);
    let names: Vec<String> = (0..3).map(|i| format!("shop{i}")).collect();
    let mut changes = engine.subscribe();

    // A view changes something else of a session showing a QR code (its
    // webhook): its next snapshot shows the same code again.
    let mut seen = engine.subscribe();
    let repeater = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut repeated = std::collections::HashSet::new();
            while let Ok(event) = seen.recv().await {
                if let EngineEvent::SessionChanged(s) = event
                    && let SessionState::QrScanRequired(offer) = &s.state
                    && repeated.insert(offer.payload.clone())
                {
                    let url = Some("http://127.0.0.1:9/hook".to_string());
                    let _ = engine.add_session(&s.id, url, None);
                }
            }
        }
    });
    // Every device the phone links, by the connection it linked on.
    let linked = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<u64, Vec<u16>>::new()));
    let mut events = sim.events();
    let counter = tokio::spawn({
        let linked = linked.clone();
        async move {
            while let Ok(event) = events.recv().await {
                if let SimEvent::Paired { conn, device, .. } = event {
                    linked.lock().unwrap().entry(conn).or_default().push(device);
                }
            }
        }
    });

    for name in &names {
        engine
            .add_session(&SessionId::parse(name).unwrap(), None, None)
            .unwrap();
    }
    tokio::time::timeout(
        Duration::from_secs(90),
        scan_until_connected(&sim, &mut changes, &names),
    )
    .await
    .expect("every session Connected");
    // A second scan would have been answered by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.shutdown().await;
    repeater.abort();
    counter.abort();
    let linked = linked.lock().unwrap().clone();
    assert_eq!(
        linked.values().map(Vec::len).sum::<usize>(),
        names.len(),
        "one device per session: {linked:?}"
    );
    assert!(linked.values().all(|d| d.len() == 1), "{linked:?}");
}
