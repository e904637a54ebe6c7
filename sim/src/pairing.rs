//! Sessions paired through the simulator, in-process, as the phone would
//! pair them: the setup of every test and benchmark that needs a linked
//! device rather than the pairing itself.

use std::time::Duration;

use tokio::sync::broadcast;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::WhatsAppBackend;
use wabridge::engine::{Engine, EngineEvent, SessionState};
use wabridge::paths::{DataDir, SessionId};

use super::sim::{self, SimEvent, Simulator};

/// The WhatsApp Web version every test pins (no version fetch offline).
pub const VERSION: (u32, u32, u32) = (2, 3000, 1015901307);

/// The real client's backend, pointed at the simulator.
pub fn backend(sim: &Simulator) -> WhatsAppBackend {
    WhatsAppBackend {
        ws_url: sim.ws_url(),
        version: Some(VERSION),
        media_cap: 1 << 20,
        http: Some(sim.media_http()),
        liveness: Default::default(),
    }
}

/// Waits for `name`'s first QR code among `changes` and has the phone scan it.
pub async fn scan_first_qr(
    sim: &Simulator,
    changes: &mut broadcast::Receiver<EngineEvent>,
    name: &str,
) {
    loop {
        if let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await
            && s.id.as_str() == name
            && let SessionState::QrScanRequired(offer) = &s.state
        {
            assert!(sim.scan(&offer.payload), "the QR names a live connection");
            return;
        }
    }
}

/// Pairs `name` over `data` (with `webhook` saved in its settings), waits
/// until the device has uploaded its pre-keys, and stops the engine, so a
/// process started later finds a linked session. Returns the device.
pub async fn pair_and_stop(
    sim: &Simulator,
    data: &DataDir,
    name: &str,
    webhook: Option<&str>,
) -> u32 {
    let policy = BackoffPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    let engine = Engine::new(backend(sim), data.clone(), policy);
    let mut changes = engine.subscribe();
    let mut events = sim.events();
    engine
        .add_session(
            &SessionId::parse(name).unwrap(),
            webhook.map(str::to_string),
            webhook.map(|_| "erp".to_string()),
        )
        .unwrap();
    scan_first_qr(sim, &mut changes, name).await;
    let uploaded = sim::wait_for(&mut events, Duration::from_secs(60), |e| {
        matches!(e, SimEvent::PreKeysUploaded { .. })
    })
    .await;
    engine.shutdown().await;
    match uploaded {
        SimEvent::PreKeysUploaded { device, .. } => device,
        _ => unreachable!(),
    }
}

/// Pairs every session of `names` at once, as many phones scanning as many
/// screens, and stops them once all are connected.
pub async fn pair_many(sim: &Simulator, data: &DataDir, names: &[String]) {
    let policy = BackoffPolicy {
        base: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    let engine = Engine::new(backend(sim), data.clone(), policy);
    let mut changes = engine.subscribe();
    for name in names {
        engine
            .add_session(&SessionId::parse(name).unwrap(), None, None)
            .unwrap();
    }
    scan_until_connected(sim, &mut changes, names).await;
    engine.shutdown().await;
}

/// Has the phone scan the first QR code of each connection of `names`
/// among `changes`, each code once, until every one of them is Connected.
/// A snapshot repeats its code whenever anything else in it changes (the
/// pairing itself, a webhook set): a code scanned again while its
/// connection lives would link a second device.
pub async fn scan_until_connected(
    sim: &Simulator,
    changes: &mut broadcast::Receiver<EngineEvent>,
    names: &[String],
) {
    let mut scanned = std::collections::HashSet::new();
    let mut connected = std::collections::HashSet::new();
    while connected.len() < names.len() {
        let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await else {
            continue;
        };
        if !names.iter().any(|name| name == s.id.as_str()) {
            continue;
        }
        match &s.state {
            SessionState::QrScanRequired(offer)
                if offer.index == 1 && scanned.insert(offer.payload.clone()) =>
            {
                sim.scan(&offer.payload);
            }
            SessionState::Connected => {
                connected.insert(s.id.clone());
            }
            _ => {}
        }
    }
}
