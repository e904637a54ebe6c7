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
    support::until(&mut changes, SESSION, |s| {
        s.state == SessionState::Connected
    })
    .await;
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
    support::until(&mut changes, SESSION, |s| {
        s.state == SessionState::Connected
    })
    .await;
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

/// How many rows `session` has in each of the store's tables, the empty
/// ones left out.
async fn stored_rows(pool: &pg_store::Pool, session: &str) -> Vec<(String, i64)> {
    let conn = pool.get().await.unwrap();
    let mut rows = Vec::new();
    for table in pg_store::SESSION_TABLES {
        let row = conn
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE session = $1"),
                &[&session],
            )
            .await
            .unwrap();
        let n: i64 = row.get(0);
        if n > 0 {
            rows.push((table.to_string(), n));
        }
    }
    rows
}

/// The phone unlinks a device whose credentials live in the database: the
/// 401 deletes them there (every store table of the session, nothing of
/// its lease or its cluster entry), so no host that takes the lease later
/// reconnects with dead credentials; the session pairs again on request.
/// A host whose lease moved on (or that holds none) cannot delete them.
#[tokio::test]
async fn a_logout_on_postgres_deletes_the_credentials_in_the_database() {
    use support::sim::{Action, Target};
    use wabridge::engine::backend::WaBackend;

    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let leases = wabridge::cluster::store::PgLeases { pool: pool.clone() };
    assert!(leases.add_session(&id(SESSION), None, None).await.unwrap());

    // An earlier host held the session; this one took the lease after it.
    let stale_fence = take_lease(&pool, SESSION, "host-old", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let data = DataDir::new(tmp.path().join("host-a"));
    let (engine, fence) = host(&sim, &pool, "host-a", &data).await;
    assert!(fence > stale_fence);
    let mut changes = engine.subscribe();
    let mut sim_events = sim.events();
    engine.add_session(&id(SESSION), None, None).unwrap();
    scan_first_qr(&sim, &mut changes, SESSION).await;
    let device = sim::linked_device(&mut sim_events, WAIT).await;
    support::until(&mut changes, SESSION, |s| {
        s.state == SessionState::Connected
    })
    .await;
    let before = stored_rows(&pool, SESSION).await;
    assert!(
        before.iter().any(|(t, _)| t == "wa_device") && before.len() > 1,
        "{before:?}"
    );

    // The old host, and a host holding no lease, are refused: nothing goes.
    let backend_with = |fences: FenceSource| PgBackend {
        whatsapp: backend(&sim),
        pool: pool.clone(),
        fences,
    };
    let stale = backend_with(Arc::new(move |_: &SessionId| Some(stale_fence)));
    let refused = stale.delete_credentials(&id(SESSION)).await.unwrap_err();
    assert!(refused.contains("fenced"), "{refused}");
    let none = backend_with(Arc::new(|_: &SessionId| None));
    assert!(none.delete_credentials(&id(SESSION)).await.is_err());
    // (The live session may add rows meanwhile; none may go.)
    let after = stored_rows(&pool, SESSION).await;
    for (table, n) in &before {
        assert!(
            after.iter().any(|(t, m)| t == table && m >= n),
            "{table}: {before:?} then {after:?}"
        );
    }

    // The phone removes the device: 401.
    assert!(sim.act_on(
        Target::Device(device),
        Action::Failure {
            reason: 401,
            ban_code: None,
            expire_secs: None,
        }
    ));
    support::until(&mut changes, SESSION, |s| {
        s.state == SessionState::LoggedOut
    })
    .await;
    assert_eq!(
        stored_rows(&pool, SESSION).await,
        vec![],
        "credentials deleted"
    );
    assert_eq!(
        leases.owner(&id(SESSION)).await.unwrap(),
        None,
        "the lease row stays (lapsed in this test: TTL zero)"
    );
    let conn = pool.get().await.unwrap();
    let kept = conn
        .query_one(
            "SELECT (SELECT count(*) FROM session_leases WHERE session = $1 AND fence = $2),
                    (SELECT count(*) FROM cluster_sessions WHERE id = $1)",
            &[&SESSION, &(fence as i64)],
        )
        .await
        .unwrap();
    assert_eq!(
        (kept.get::<_, i64>(0), kept.get::<_, i64>(1)),
        (1, 1),
        "the lease and the cluster's entry stay"
    );

    // Asked to reconnect, it pairs again: a new QR, from a fresh device row.
    engine
        .command(&id(SESSION), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await
                && matches!(s.state, SessionState::QrScanRequired(_))
            {
                return;
            }
        }
    })
    .await
    .expect("a new QR");
    engine.shutdown().await;
}
