//! Sessions paired through the simulator, in-process, as the phone would
//! pair them: the setup of every test and benchmark that needs a linked
//! device rather than the pairing itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use wabridge::cluster::manager::LeaseStore;
use wabridge::cluster::store::PgLeases;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::{FenceSource, PgBackend, WhatsAppBackend};
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
        media_store: None,
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

/// `pair_many`, and which device each session became: it returns once
/// every one is Connected and its device has uploaded its pre-keys, so
/// people can write to it at once.
pub async fn pair_many_mapped(
    sim: &Simulator,
    data: &DataDir,
    names: &[String],
) -> BTreeMap<String, u32> {
    let policy = BackoffPolicy {
        base: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    pair_on(Engine::new(backend(sim), data.clone(), policy), sim, names).await
}

/// Adds `names` to `engine`, pairs them all (`scan_and_map_devices`) and
/// stops it; returns each session's device.
async fn pair_on(engine: Engine, sim: &Simulator, names: &[String]) -> BTreeMap<String, u32> {
    let mut changes = engine.subscribe();
    let mut events = sim.events();
    for name in names {
        engine
            .add_session(&SessionId::parse(name).unwrap(), None, None)
            .unwrap();
    }
    let devices = scan_and_map_devices(sim, &mut changes, &mut events, names).await;
    engine.shutdown().await;
    devices
}

/// Pairs `names` straight into a cluster's database (migrated), as the
/// hosts would find them: each is added to `cluster_sessions` with
/// `webhook` (token `erp`), paired through an in-process engine on
/// `PgBackend` (its writes fenced by a lease taken for the pairing), and
/// left with that lease expired, so the next host to start takes it. Its
/// scratch folder is `scratch`. Returns which device each session is, once
/// all are Connected and have uploaded their pre-keys (people can write to
/// them).
pub async fn pair_into_database(
    sim: &Simulator,
    leases: &PgLeases,
    names: &[String],
    webhook: &str,
    scratch: &std::path::Path,
) -> BTreeMap<String, u32> {
    let mut fences = HashMap::new();
    for name in names {
        let id = SessionId::parse(name).unwrap();
        leases
            .add_session(&id, Some(webhook), Some("erp"))
            .await
            .unwrap();
        // A lease that lapses at once: the pairing's writes carry its
        // fence, and the hosts may take it as soon as they start.
        let fence = leases.take(&id, "pairing", Duration::ZERO).await.unwrap();
        fences.insert(id, fence.expect("a new lease"));
    }
    let fences: FenceSource = Arc::new(move |id: &SessionId| fences.get(id).copied());
    let engine = Engine::new(
        PgBackend {
            whatsapp: backend(sim),
            pool: leases.pool.clone(),
            fences,
        },
        DataDir::new(scratch),
        BackoffPolicy {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        },
    );
    pair_on(engine, sim, names).await
}

/// Has the phone scan the first QR code of each connection of `names`
/// once (as `scan_until_connected`), and follows the simulator's `events`
/// (subscribed before the sessions were added) to say which device each
/// session became; returns once every one is Connected and its device has
/// uploaded its pre-keys.
async fn scan_and_map_devices(
    sim: &Simulator,
    changes: &mut broadcast::Receiver<EngineEvent>,
    events: &mut broadcast::Receiver<SimEvent>,
    names: &[String],
) -> BTreeMap<String, u32> {
    // The phone links the connection whose QR it scanned (the QR names the
    // connection).
    let mut by_conn: HashMap<u64, String> = HashMap::new();
    let mut devices = BTreeMap::new();
    let mut connected = HashSet::new();
    let mut uploads = HashSet::new();
    while connected.len() < names.len()
        || devices.len() < names.len()
        || !devices.values().all(|d| uploads.contains(d))
    {
        tokio::select! {
            Ok(event) = changes.recv() => {
                let EngineEvent::SessionChanged(s) = event else { continue };
                if !names.iter().any(|name| name == s.id.as_str()) {
                    continue;
                }
                match &s.state {
                    SessionState::QrScanRequired(offer) if offer.index == 1 => {
                        let conn = offer
                            .payload
                            .trim_start_matches("2@sim-ref-")
                            .split('-')
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                            .expect("the simulator's QR names its connection");
                        // Once per connection: a snapshot can repeat the
                        // same code, and a second scan would link a second
                        // device.
                        if by_conn.insert(conn, s.id.to_string()).is_none() {
                            sim.scan(&offer.payload);
                        }
                    }
                    SessionState::Connected => {
                        connected.insert(s.id.to_string());
                    }
                    _ => {}
                }
            }
            Ok(event) = events.recv() => match event {
                SimEvent::Paired { conn, device, .. } => {
                    if let Some(name) = by_conn.get(&conn) {
                        devices.insert(name.clone(), u32::from(device));
                    }
                }
                SimEvent::PreKeysUploaded { device, .. } => {
                    uploads.insert(device);
                }
                _ => {}
            },
        }
    }
    devices
}
