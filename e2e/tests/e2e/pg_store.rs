//! The real client on the PostgreSQL store (`PgBackend`) instead of the
//! session's SQLite file: a session paired through the simulator receives
//! and sends encrypted messages, and after its host stopped, another host with a data
//! dir of its own takes the lease over and carries on with the same linked
//! device (no QR) and the same Signal sessions, from the database alone.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::pairing::{backend, scan_first_qr};
use support::receiver::Receiver;
use support::sim::{self, Addressing, Person, SimEvent, Simulator};
use tokio::sync::broadcast;
use wabridge::engine::backend::Outgoing;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::pg_store::{self, PgStore, take_lease};
use wabridge::engine::whatsapp::{FenceSource, PgBackend};
use wabridge::engine::{Engine, EngineEvent, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;
use wabridge_sim::postgres::TestPostgres;
use whatsapp_rust::store::traits::{DeviceStore, ProtocolStore};

const WAIT: Duration = Duration::from_secs(40);
const SESSION: &str = "shop";

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// An engine whose sessions live in the database, as `host` with `data`
/// for its own files (settings, outbox); the fence of its lease on the
/// session.
async fn host(sim: &Simulator, pool: &pg_store::Pool, host: &str, data: &DataDir) -> (Engine, u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No lease manager yet: the lease lapses at once, so the next host may
    // take it over once this one stopped; the fence still guards writes.
    let fence = take_lease(pool, SESSION, host, Duration::ZERO)
        .await
        .unwrap()
        .expect("the lease is free");
    let fences: FenceSource = Arc::new(move |_: &SessionId| Some(fence));
    let backend = PgBackend {
        whatsapp: backend(sim),
        pool: pool.clone(),
        fences,
    };
    let hooks = WebhookHub::open(data, DeliverySettings::default()).unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    (
        Engine::with_webhooks(backend, data.clone(), policy, Some(hooks)),
        fence,
    )
}

/// Sends `text` to Ben through `engine`; his phone decrypts it.
async fn reply(sim: &Simulator, engine: &Engine, text: &str) {
    let mut sim_events = sim.events();
    let sent = engine
        .send(
            &id(SESSION),
            Outgoing {
                to: "447700900123@s.whatsapp.net".into(),
                text: text.into(),
                media: None,
            },
        )
        .await
        .unwrap();
    let received = sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { id, .. } if *id == sent.id),
    )
    .await;
    let SimEvent::MessageToPerson { to, text: got, .. } = received else {
        unreachable!()
    };
    assert_eq!((to.as_str(), got.as_str()), ("447700900123", text));
}

async fn wait_connected(changes: &mut broadcast::Receiver<EngineEvent>) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await
                && s.state == SessionState::Connected
            {
                return;
            }
        }
    })
    .await
    .expect("Connected");
}

#[tokio::test]
async fn a_session_on_postgres_pairs_receives_and_moves_to_another_host() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let asha = Person::asha();

    // Host A pairs the session and receives a message.
    let data_a = DataDir::new(tmp.path().join("host-a"));
    let (engine, fence_a) = host(&sim, &pool, "host-a", &data_a).await;
    let mut changes = engine.subscribe();
    let mut sim_events = sim.events();
    engine
        .add_session(&id(SESSION), Some(receiver.url()), Some("erp".into()))
        .unwrap();
    scan_first_qr(&sim, &mut changes, SESSION).await;
    let device = sim::linked_device(&mut sim_events, WAIT).await;
    wait_connected(&mut changes).await;
    let first = sim
        .send_text(device, &asha, Addressing::LidWithPn, "order 42 please")
        .await
        .unwrap();
    let got = receiver.wait_for_upserts(1, WAIT).await;
    assert_eq!(got[0]["id"], first);
    assert_eq!(got[0]["text"], "order 42 please");
    assert_eq!(got[0]["from"], "919075167132");
    let ben = Person::ben();
    sim.add_person(&ben).await;
    reply(&sim, &engine, "Your order ships today").await;
    engine.shutdown().await;

    // What the client wrote is in the database, under the session.
    let stored = PgStore::open(pool.clone(), SESSION, fence_a);
    let linked = stored.load().await.unwrap().expect("the linked device");
    assert!(linked.pn.is_some() && linked.account.is_some());
    let asha_lid = stored.get_lid_mapping("260477250707536").await.unwrap();
    assert_eq!(asha_lid.unwrap().phone_number, "919075167132");

    // Host B, with nothing of A's on disk, takes the lease over: the same
    // device connects without a QR, and the next message (a Signal `msg`
    // on the ratchet A stored, without the number on the stanza) decrypts
    // and resolves through the mappings A stored.
    let data_b = DataDir::new(tmp.path().join("host-b"));
    let (engine, fence_b) = host(&sim, &pool, "host-b", &data_b).await;
    assert!(fence_b > fence_a);
    let mut changes = engine.subscribe();
    engine
        .add_session(&id(SESSION), Some(receiver.url()), Some("erp".into()))
        .unwrap();
    wait_connected(&mut changes).await;
    let second = sim
        .send_text(device, &asha, Addressing::LidHidden, "and a receipt")
        .await
        .unwrap();
    let got = receiver.wait_for_upserts(2, WAIT).await;
    let m = got
        .iter()
        .find(|m| m["id"] == second)
        .unwrap_or_else(|| panic!("{second} not delivered: {got:?}"));
    assert_eq!(m["text"], "and a receipt");
    assert_eq!(
        m["from"], "919075167132",
        "from the mappings in the database"
    );

    // Host A's store is fenced now.
    assert!(
        stored
            .put_lid_mapping(&asha_lid_entry())
            .await
            .is_err_and(|e| pg_store::is_fenced(&e))
    );
    engine.shutdown().await;
}

fn asha_lid_entry() -> whatsapp_rust::store::traits::LidPnMappingEntry {
    whatsapp_rust::store::traits::LidPnMappingEntry {
        lid: "260477250707536".into(),
        phone_number: "0".into(),
        created_at: 0,
        updated_at: 0,
        learning_source: "stale host".into(),
    }
}
