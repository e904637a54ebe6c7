//! The PostgreSQL store (`pg_store`), against a real server each test
//! starts (`wabridge_sim::postgres`): a paired session's state survives the
//! trip through the database and still decrypts, sessions sharing the schema
//! see only their own rows, a write by a host whose lease moved is refused,
//! and migrations may run from many hosts at once.

use crate::fixture_device;
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use support::baileys::{copy_auth, import};
use wabridge::engine::whatsapp::pg_store::{self, PgStore, Pool, SCHEMA_VERSION, take_lease};
use wabridge::import::Outcome;
use wabridge::paths::DataDir;
use wabridge_sim::postgres::TestPostgres;
use wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceStore, LidPnMappingEntry, ProtocolStore, SignalStore,
    TcTokenEntry,
};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::prelude::SqliteStore;

const LEASE: Duration = Duration::from_secs(60);

/// A server with the schema migrated, and a pool on it.
async fn database() -> (TestPostgres, Pool) {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    (server, pool)
}

/// `session`'s store for `owner`, who takes its lease.
async fn leased(pool: &Pool, session: &str, owner: &str) -> PgStore {
    let fence = take_lease(pool, session, owner, LEASE)
        .await
        .unwrap()
        .expect("the lease is free");
    PgStore::open(pool.clone(), session, fence)
}

/// The Baileys fixture imported as session "shop" into the library's own
/// SQLite store (the importer's path); returns that file.
async fn imported(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let old = tmp.path().join("old/shop");
    copy_auth(&old);
    let data = DataDir::new(tmp.path().join("data"));
    let report = import(&data, &old, false).await;
    assert_eq!(report.sessions[0].outcome, Outcome::Imported, "{report}");
    tmp.path().join("data/sessions/shop/whatsapp.db")
}

/// Every row of the SQLite store, written into `to` through the trait's
/// (batch) methods.
async fn copy_sqlite_into(path: &std::path::Path, to: &PgStore) {
    let from = SqliteStore::new(path.to_str().unwrap()).await.unwrap();
    to.save(&from.load().await.unwrap().expect("a device"))
        .await
        .unwrap();
    let db = rusqlite::Connection::open(path).unwrap();
    let rows = |sql: &str| -> Vec<(String, Vec<u8>)> {
        let mut statement = db.prepare(sql).unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let arcs = |rows: Vec<(String, Vec<u8>)>| -> Vec<(Arc<str>, Bytes)> {
        rows.into_iter()
            .map(|(a, r)| (Arc::from(a), Bytes::from(r)))
            .collect()
    };
    let sessions = arcs(rows("SELECT address, record FROM sessions"));
    assert!(!sessions.is_empty());
    to.put_sessions_batch(&sessions).await.unwrap();
    let identities: Vec<(Arc<str>, [u8; 32])> = rows("SELECT address, key FROM identities")
        .into_iter()
        .map(|(a, k)| (Arc::from(a), k.try_into().unwrap()))
        .collect();
    to.put_identities_batch(&identities).await.unwrap();
    to.put_sender_keys_batch(&arcs(rows("SELECT address, record FROM sender_keys")))
        .await
        .unwrap();
    for uploaded in [true, false] {
        let keys: Vec<(u32, Bytes)> = rows(&format!(
            "SELECT CAST(id AS TEXT), key FROM prekeys WHERE uploaded = {}",
            uploaded as u8
        ))
        .into_iter()
        .map(|(id, key)| (id.parse().unwrap(), Bytes::from(key)))
        .collect();
        to.store_prekeys_batch(&keys, uploaded).await.unwrap();
    }
    for (id, record) in rows("SELECT CAST(id AS TEXT), record FROM signed_prekeys") {
        to.store_signed_prekey(id.parse().unwrap(), &record)
            .await
            .unwrap();
    }
    to.put_lid_mappings(&from.get_all_lid_mappings().await.unwrap())
        .await
        .unwrap();
    for (_, key_id) in rows("SELECT '', key_id FROM app_state_keys") {
        let key = from.get_sync_key(&key_id).await.unwrap().unwrap();
        to.set_sync_key(&key_id, key).await.unwrap();
    }
    for jid in from.get_all_tc_token_jids().await.unwrap() {
        let token = from.get_tc_token(&jid).await.unwrap().unwrap();
        to.put_tc_token(&jid, &token).await.unwrap();
    }
}

/// The checks the import tests make on the SQLite store (`import_fixture`,
/// shared in `fixture_device`), made on a store read back from PostgreSQL
/// over a fresh pool: the same linked device, its mappings, pre-keys and
/// tokens, every held-back message decrypts, and what it encrypts the peers
/// decrypt.
#[tokio::test]
async fn a_paired_session_survives_the_round_trip_through_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = imported(&tmp).await;
    let (server, pool) = database().await;
    let written = leased(&pool, "WA-shop-001", "host-a").await;
    copy_sqlite_into(&sqlite, &written).await;
    let fence = written.fence();
    drop(written);
    pool.close();

    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    let store = PgStore::open(pool.clone(), "WA-shop-001", fence);
    fixture_device::is_the_linked_device(&store).await;
    fixture_device::mappings_pre_keys_and_tokens_read_back(&store).await;
    fixture_device::held_back_messages_decrypt(Arc::new(store.clone())).await;
    fixture_device::peers_decrypt_what_we_encrypt(Arc::new(store), tmp.path()).await;
}

fn mapping(lid: &str, phone: &str) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: phone.into(),
        created_at: 1_764_000_000,
        updated_at: 1_764_000_000,
        learning_source: "usync".into(),
    }
}

/// Two sessions write the same keys with different values: each reads back
/// its own, a third sees nothing, and a delete in one leaves the other.
#[tokio::test]
async fn sessions_sharing_the_schema_see_only_their_own_rows() {
    let (_server, pool) = database().await;
    let one = leased(&pool, "WA-shop-001", "host-a").await;
    let two = leased(&pool, "WA-shop-002", "host-a").await;
    let empty = leased(&pool, "WA-shop-003", "host-a").await;
    let address = "5511987650001@c.us.0";
    for (store, byte, phone) in [(&one, 1u8, "5511987650001"), (&two, 2u8, "5511987650002")] {
        store.put_identity(address, [byte; 32]).await.unwrap();
        store.put_session(address, &[byte; 40]).await.unwrap();
        store
            .put_sender_key("group@g.us::x", &[byte; 8])
            .await
            .unwrap();
        store
            .store_prekeys_batch(&[(7, Bytes::from(vec![byte; 16]))], false)
            .await
            .unwrap();
        store
            .put_lid_mappings(&[mapping("100000012345678", phone)])
            .await
            .unwrap();
        store
            .put_tc_token(
                "100000012345678",
                &TcTokenEntry {
                    token: vec![byte],
                    token_timestamp: 1,
                    sender_timestamp: None,
                },
            )
            .await
            .unwrap();
        let mut device = wacore::store::Device::new();
        device.push_name = format!("shop {byte}");
        store.save(&device).await.unwrap();
    }
    for (store, byte, phone) in [(&one, 1u8, "5511987650001"), (&two, 2u8, "5511987650002")] {
        let who = store.session();
        assert_eq!(
            store.load_identity(address).await.unwrap(),
            Some([byte; 32]),
            "{who}"
        );
        assert_eq!(
            store.get_session(address).await.unwrap().unwrap()[..],
            [byte; 40],
            "{who}"
        );
        assert_eq!(
            store.get_sender_key("group@g.us::x").await.unwrap(),
            Some(vec![byte; 8])
        );
        assert_eq!(
            store.load_prekey(7).await.unwrap().unwrap()[..],
            [byte; 16],
            "{who}"
        );
        let mappings = store.get_all_lid_mappings().await.unwrap();
        assert_eq!(mappings.len(), 1, "{who}");
        assert_eq!(mappings[0].phone_number, phone, "{who}");
        assert!(
            store.get_pn_mapping(phone).await.unwrap().is_some(),
            "{who}"
        );
        let token = store
            .get_tc_token("100000012345678")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(token.token, vec![byte], "{who}");
        assert_eq!(
            store.load().await.unwrap().unwrap().push_name,
            format!("shop {byte}")
        );
    }
    assert!(one.get_pn_mapping("5511987650002").await.unwrap().is_none());
    assert!(empty.load_identity(address).await.unwrap().is_none());
    assert!(empty.get_session(address).await.unwrap().is_none());
    assert!(empty.get_all_lid_mappings().await.unwrap().is_empty());
    assert!(empty.get_all_tc_token_jids().await.unwrap().is_empty());
    assert_eq!(empty.get_max_prekey_id().await.unwrap(), 0);
    assert!(!empty.exists().await.unwrap());
    assert!(
        !empty
            .has_signal_state_for_user("5511987650001")
            .await
            .unwrap()
    );
    assert!(
        one.has_signal_state_for_user("5511987650001")
            .await
            .unwrap()
    );

    one.delete_session(address).await.unwrap();
    one.delete_identity(address).await.unwrap();
    assert!(one.get_session(address).await.unwrap().is_none());
    assert!(two.get_session(address).await.unwrap().is_some());
    assert!(two.load_identity(address).await.unwrap().is_some());
}

/// After another host took the lease over, a write through the old store is
/// refused as fenced and changes nothing; reads still work, and the new
/// holder writes.
#[tokio::test]
async fn a_write_after_a_takeover_is_fenced_and_changes_nothing() {
    let (_server, pool) = database().await;
    let session = "WA-shop-001";
    // Host A's lease lapses at once, so host B may take it over.
    let fence_a = take_lease(&pool, session, "host-a", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let old = PgStore::open(pool.clone(), session, fence_a);
    old.put_session("peer@c.us.0", b"before").await.unwrap();

    let fence_b = take_lease(&pool, session, "host-b", LEASE)
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert!(fence_b > fence_a);
    assert_eq!(
        take_lease(&pool, session, "host-c", LEASE).await.unwrap(),
        None,
        "a held lease is not taken"
    );

    let refused = old.put_session("peer@c.us.0", b"after").await.unwrap_err();
    assert!(pg_store::is_fenced(&refused), "{refused:?}");
    let chain = error_chain(&refused);
    assert!(chain.contains("fenced"), "{chain}");
    assert!(old.put_identity("peer@c.us.0", [9; 32]).await.is_err());
    assert!(old.save(&wacore::store::Device::new()).await.is_err());
    assert!(old.take_sent_message("c", "m").await.is_err());

    assert_eq!(
        old.get_session("peer@c.us.0").await.unwrap().unwrap()[..],
        b"before"[..],
        "the row is unchanged and reads still work"
    );
    assert!(old.load_identity("peer@c.us.0").await.unwrap().is_none());

    let new = PgStore::open(pool.clone(), session, fence_b);
    new.put_session("peer@c.us.0", b"new holder").await.unwrap();
    assert_eq!(
        old.get_session("peer@c.us.0").await.unwrap().unwrap()[..],
        b"new holder"[..]
    );
}

/// A takeover waits for a write the old holder has in flight (the lease row
/// is held `FOR SHARE` until that write commits).
#[tokio::test]
async fn a_takeover_waits_for_the_write_in_flight() {
    let (_server, pool) = database().await;
    let session = "WA-shop-001";
    take_lease(&pool, session, "host-a", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let mut writer = pool.get().await.unwrap();
    let tx = writer.transaction().await.unwrap();
    tx.query_one(
        "SELECT fence FROM session_leases WHERE session = $1 FOR SHARE",
        &[&session],
    )
    .await
    .unwrap();
    let takeover = tokio::spawn({
        let pool = pool.clone();
        async move { take_lease(&pool, session, "host-b", LEASE).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!takeover.is_finished(), "the takeover waited for the write");
    tx.commit().await.unwrap();
    let fence = tokio::time::timeout(Duration::from_secs(10), takeover)
        .await
        .expect("the takeover goes on once the write committed")
        .unwrap();
    assert_eq!(fence, Some(2));
}

/// A host frozen in the middle of a write (a paused VM, SIGSTOP, a network
/// partition: its connection stays open, its transaction holds the lease
/// row) does not hold its session forever: a take gives up waiting after a
/// bound and says why, the server ends the frozen transaction after the
/// lease TTL the host's pool was built with, and the next take succeeds.
/// The frozen write never lands.
#[tokio::test]
async fn a_host_frozen_mid_write_does_not_hold_its_session() {
    let (server, pool) = database().await;
    let session = "WA-shop-001";
    // Longer than a take's wait (2 s), so the first take sees it frozen.
    let ttl = Duration::from_secs(5);
    let frozen_host = pg_store::Database::parse(&server.url(), None)
        .unwrap()
        .transactions_end_within(ttl)
        .pool()
        .unwrap();
    take_lease(&frozen_host, session, "host-a", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let mut writer = frozen_host.get().await.unwrap();
    let tx = writer.transaction().await.unwrap();
    tx.query_one(
        "SELECT fence FROM session_leases WHERE session = $1 FOR SHARE",
        &[&session],
    )
    .await
    .unwrap();
    tx.execute(
        "INSERT INTO wa_sessions (session, address, record) VALUES ($1, 'peer', 'frozen')",
        &[&session],
    )
    .await
    .unwrap();
    // Frozen from here: the transaction stays open and idle.

    let first = tokio::time::timeout(
        Duration::from_secs(10),
        take_lease(&pool, session, "host-b", LEASE),
    )
    .await
    .expect("a take does not wait for a frozen host without bound")
    .unwrap_err();
    assert!(
        format!("{first:#}").contains("frozen or cut off mid-write"),
        "{first:#}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let fence = loop {
        match take_lease(&pool, session, "host-b", LEASE).await {
            Ok(fence) => break fence,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the frozen write still holds the session: {e:#}"
            ),
        }
    };
    assert_eq!(fence, Some(2));
    assert!(tx.commit().await.is_err(), "the server ended it");
    let rows = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT record FROM wa_sessions WHERE session = $1",
            &[&session],
        )
        .await
        .unwrap();
    assert!(rows.is_empty(), "the frozen write never landed");
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut layer = error.source();
    while let Some(inner) = layer {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        layer = inner.source();
    }
    text
}

/// Hosts starting at once both migrate a fresh database (the advisory lock
/// serializes them, each version is applied once); migrating again changes
/// nothing; a database a newer wabridge migrated is refused.
#[tokio::test]
async fn migrations_are_idempotent_and_safe_to_run_at_once() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let first = pg_store::pool_from_url(&server.url()).unwrap();
    let second = pg_store::pool_from_url(&server.url()).unwrap();
    let (a, b) = tokio::join!(pg_store::migrate(&first), pg_store::migrate(&second));
    a.unwrap();
    b.unwrap();
    pg_store::migrate(&first).await.unwrap();
    let conn = first.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT count(*)::int, max(version) FROM wabridge_schema_version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), SCHEMA_VERSION, "each version once");
    assert_eq!(row.get::<_, i32>(1), SCHEMA_VERSION);

    conn.execute(
        "INSERT INTO wabridge_schema_version (version) VALUES ($1)",
        &[&(SCHEMA_VERSION + 1)],
    )
    .await
    .unwrap();
    let refused = pg_store::migrate(&second).await.unwrap_err().to_string();
    assert!(refused.contains("newer"), "{refused}");
}

/// One script of calls covering every method, run on the library's own
/// SQLite store and on ours: the answers must be the same (batches with
/// duplicate keys, merges, newer-wins tokens, takes, expiry sweeps).
#[tokio::test]
async fn every_method_answers_as_the_librarys_sqlite_store_does() {
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::new(tmp.path().join("ref.db").to_str().unwrap())
        .await
        .unwrap();
    let (_server, pool) = database().await;
    let ours = leased(&pool, "WA-shop-001", "host-a").await;
    let want = script(&sqlite).await;
    let got = script(&ours).await;
    for (n, (want, got)) in want.iter().zip(&got).enumerate() {
        assert_eq!(got, want, "answer {n}");
    }
    assert_eq!(got.len(), want.len());
}

async fn script(store: &dyn wacore::store::traits::Backend) -> Vec<String> {
    use wacore::appstate::processor::AppStateMutationMAC;
    use wacore::store::traits::{
        DeviceInfo, DeviceListRecord, MsgSecretEntry, PendingInboundKey, PendingInboundRow,
    };
    let mut out: Vec<String> = Vec::new();
    macro_rules! note {
        ($e:expr) => {
            out.push(format!("{} = {:?}", stringify!($e), $e))
        };
    }
    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }
    let arc = |s: &str| -> Arc<str> { Arc::from(s) };
    let bytes = |b: &[u8]| Bytes::from(b.to_vec());

    // Device.
    note!(store.exists().await.unwrap());
    note!(store.create().await.unwrap());
    note!(store.exists().await.unwrap());
    let mut device = store.load().await.unwrap().unwrap();
    device.push_name = "Shop".into();
    device.pn = Some("15550001111@s.whatsapp.net".parse().unwrap());
    device.lid = Some("100000000000001@lid".parse().unwrap());
    device.next_pre_key_id = 31;
    device.edge_routing_info = Some(vec![1, 2, 3]);
    store.save(&device).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    note!(serde_json::to_value(&loaded).unwrap() == serde_json::to_value(&device).unwrap());
    note!(*loaded.device_props == *wacore::store::device::DEVICE_PROPS);
    note!(store.create().await.is_err());

    // Identities and sessions, batches with a repeated key.
    let a = "111@c.us.0";
    let b = "111:2@c.us.0";
    store.put_identity(a, [1; 32]).await.unwrap();
    store
        .put_identities_batch(&[(arc(a), [2; 32]), (arc(b), [3; 32]), (arc(a), [4; 32])])
        .await
        .unwrap();
    note!(store.load_identity(a).await.unwrap());
    note!(store.load_identity(b).await.unwrap());
    note!(store.has_signal_state_for_user("111").await.unwrap());
    note!(store.has_signal_state_for_user("11").await.unwrap());
    store.delete_identity(a).await.unwrap();
    note!(store.load_identity(a).await.unwrap());
    store
        .put_sessions_batch(&[
            (arc(a), bytes(b"s1")),
            (arc(b), bytes(b"s2")),
            (arc(a), bytes(b"s3")),
        ])
        .await
        .unwrap();
    note!(store.get_session(a).await.unwrap());
    note!(store.has_session(b).await.unwrap());
    store.put_session(b, b"s4").await.unwrap();
    note!(store.get_session(b).await.unwrap());
    store.delete_session(b).await.unwrap();
    note!(store.has_session(b).await.unwrap());

    // Pre-keys.
    note!(store.get_max_prekey_id().await.unwrap());
    store
        .store_prekeys_batch(
            &[(1, bytes(b"p1")), (2, bytes(b"p2")), (1, bytes(b"p1b"))],
            false,
        )
        .await
        .unwrap();
    store.store_prekey(9, b"p9", true).await.unwrap();
    note!(sorted(
        store.load_prekeys_batch(&[1, 2, 3, 9]).await.unwrap()
    ));
    store.remove_prekey(2).await.unwrap();
    store.mark_prekeys_uploaded(&[1, 2]).await.unwrap();
    note!(store.load_prekey(2).await.unwrap());
    note!(store.get_max_prekey_id().await.unwrap());
    store.store_signed_prekey(2, b"sp2").await.unwrap();
    store.store_signed_prekey(1, b"sp1").await.unwrap();
    store.store_signed_prekey(1, b"sp1b").await.unwrap();
    note!(sorted(store.load_all_signed_prekeys().await.unwrap()));
    store.remove_signed_prekey(2).await.unwrap();
    note!(store.load_signed_prekey(2).await.unwrap());
    note!(sorted(store.load_all_signed_prekeys().await.unwrap()));

    // Sender keys.
    store
        .put_sender_keys_batch(&[(arc("g::x"), bytes(b"k1")), (arc("g::x"), bytes(b"k2"))])
        .await
        .unwrap();
    note!(store.get_sender_key("g::x").await.unwrap());
    store.put_sender_key("g::y", b"k3").await.unwrap();
    store.delete_sender_key("g::x").await.unwrap();
    note!(store.get_sender_key("g::x").await.unwrap());
    note!(store.get_sender_key("g::y").await.unwrap());

    // App state.
    let key = |n: u8| AppStateSyncKey {
        key_data: vec![n; 32],
        fingerprint: vec![n; 4],
        timestamp: n as i64,
    };
    note!(store.get_latest_sync_key_id().await.unwrap());
    store.set_sync_key(&[0, 2], key(2)).await.unwrap();
    store.set_sync_key(&[0, 1], key(1)).await.unwrap();
    note!(store.get_latest_sync_key_id().await.unwrap());
    note!(store.get_sync_key(&[0, 1]).await.unwrap());
    note!(store.get_sync_key(&[0, 3]).await.unwrap());
    let empty = store.get_version("regular").await.unwrap();
    note!((empty.version, empty.index_value_map.len()));
    let mut state = empty.clone();
    state.version = 7;
    state.hash = [5; 128];
    state.index_value_map.insert("i".into(), vec![1, 2]);
    store.set_version("regular", state).await.unwrap();
    let back = store.get_version("regular").await.unwrap();
    note!((
        back.version,
        back.hash,
        sorted(back.index_value_map.into_iter().collect())
    ));
    let mac = |i: u8, v: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![v; 32],
    };
    store
        .put_mutation_macs("regular", 7, &[mac(1, 1), mac(2, 2), mac(1, 3)])
        .await
        .unwrap();
    note!(store.get_mutation_mac("regular", &[1; 32]).await.unwrap());
    note!(sorted(
        store
            .get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
            .await
            .unwrap()
            .into_iter()
            .collect()
    ));
    store
        .delete_mutation_macs("regular", &[vec![1; 32]])
        .await
        .unwrap();
    note!(store.get_mutation_mac("regular", &[1; 32]).await.unwrap());
    store
        .put_mutation_macs("other", 1, &[mac(2, 9)])
        .await
        .unwrap();
    store.clear_mutation_macs("regular").await.unwrap();
    note!(store.get_mutation_mac("regular", &[2; 32]).await.unwrap());
    note!(store.get_mutation_mac("other", &[2; 32]).await.unwrap());

    // Sender-key distribution per device.
    store
        .set_sender_key_status("g1", &[("d1", true), ("d2", false), ("d1", false)])
        .await
        .unwrap();
    store
        .set_sender_key_status("g2", &[("d2", true)])
        .await
        .unwrap();
    note!(sorted(store.get_sender_key_devices("g1").await.unwrap()));
    store.delete_sender_key_device_rows(&["d2"]).await.unwrap();
    note!(sorted(store.get_sender_key_devices("g1").await.unwrap()));
    note!(sorted(store.get_sender_key_devices("g2").await.unwrap()));
    store.clear_sender_key_devices("g1").await.unwrap();
    note!(store.get_sender_key_devices("g1").await.unwrap());
    store
        .set_sender_key_status("g3", &[("d3", true)])
        .await
        .unwrap();
    store.clear_all_sender_key_devices().await.unwrap();
    note!(store.get_sender_key_devices("g3").await.unwrap());

    // LID mappings: an update keeps created_at; the newest LID for a number.
    let lid = |lid: &str, pn: &str, created: i64, updated: i64| LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: created,
        updated_at: updated,
        learning_source: format!("src{updated}"),
    };
    store
        .put_lid_mapping(&lid("L1", "P1", 10, 10))
        .await
        .unwrap();
    store
        .put_lid_mappings(&[
            lid("L1", "P1", 20, 20),
            lid("L2", "P1", 15, 30),
            lid("L2", "P1", 16, 25),
        ])
        .await
        .unwrap();
    let show = |e: Option<LidPnMappingEntry>| {
        e.map(|e| {
            (
                e.lid,
                e.phone_number,
                e.created_at,
                e.updated_at,
                e.learning_source,
            )
        })
    };
    note!(show(store.get_lid_mapping("L1").await.unwrap()));
    note!(show(store.get_lid_mapping("L2").await.unwrap()));
    note!(show(store.get_pn_mapping("P1").await.unwrap()));
    note!(show(store.get_pn_mapping("P9").await.unwrap()));
    note!(store.get_all_lid_mappings().await.unwrap().len());

    // Base keys.
    store.save_base_key(a, "m1", b"base").await.unwrap();
    note!(store.has_same_base_key(a, "m1", b"base").await.unwrap());
    note!(store.has_same_base_key(a, "m1", b"other").await.unwrap());
    store.delete_base_key(a, "m1").await.unwrap();
    note!(store.has_same_base_key(a, "m1", b"base").await.unwrap());

    // Device lists.
    let list = |user: &str, ts: i64, raw: Option<u32>| DeviceListRecord {
        user: user.into(),
        devices: vec![
            DeviceInfo::new(0, None),
            DeviceInfo::new(3, Some(2)).with_hosting(true),
        ],
        timestamp: ts,
        phash: Some(format!("h{ts}")),
        raw_id: raw,
    };
    store
        .update_device_lists(vec![
            list("u1", 1, None),
            list("u2", 2, Some(7)),
            list("u1", 3, Some(8)),
        ])
        .await
        .unwrap();
    note!(store.get_devices("u1").await.unwrap());
    store.update_device_list(list("u2", 4, None)).await.unwrap();
    note!(store.get_devices("u2").await.unwrap());
    store.delete_devices("u1").await.unwrap();
    note!(store.get_devices("u1").await.unwrap());

    // Group metadata.
    store.put_group_metadata("g@g.us", b"info1").await.unwrap();
    store.put_group_metadata("g@g.us", b"info2").await.unwrap();
    note!(store.get_group_metadata("g@g.us").await.unwrap());
    store.delete_group_metadata("g@g.us").await.unwrap();
    note!(store.get_group_metadata("g@g.us").await.unwrap());

    // Trusted-contact tokens.
    let token = |t: &[u8], ts: i64, sender: Option<i64>| TcTokenEntry {
        token: t.to_vec(),
        token_timestamp: ts,
        sender_timestamp: sender,
    };
    let show_token =
        |e: Option<TcTokenEntry>| e.map(|e| (e.token, e.token_timestamp, e.sender_timestamp));
    store
        .put_tc_token("t1", &token(b"a", 100, None))
        .await
        .unwrap();
    store
        .touch_tc_token_sender_timestamp("t1", 50)
        .await
        .unwrap();
    store
        .touch_tc_token_sender_timestamp("t1", 40)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t1").await.unwrap()));
    store
        .store_received_tc_token("t1", b"older", 90)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t1").await.unwrap()));
    store
        .store_received_tc_token("t1", b"newer", 110)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t1").await.unwrap()));
    store
        .touch_tc_token_sender_timestamp("t2", 60)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t2").await.unwrap()));
    store
        .store_received_tc_token("t2", b"real", 10)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t2").await.unwrap()));
    store
        .store_received_tc_token("t3", b"fresh", 5)
        .await
        .unwrap();
    note!(show_token(store.get_tc_token("t3").await.unwrap()));
    store
        .put_tc_token("t4", &token(b"", 1, None))
        .await
        .unwrap();
    store
        .put_tc_token("t5", &token(b"x", 1, Some(1000)))
        .await
        .unwrap();
    note!(sorted(store.get_all_tc_token_jids().await.unwrap()));
    note!(store.delete_expired_tc_tokens(50, 55).await.unwrap());
    note!(sorted(store.get_all_tc_token_jids().await.unwrap()));
    store.delete_tc_token("t1").await.unwrap();
    note!(show_token(store.get_tc_token("t1").await.unwrap()));

    // Sent messages: a take is a take.
    store.store_sent_message("c", "m1", b"one").await.unwrap();
    store
        .store_sent_message("c", "m1", b"one again")
        .await
        .unwrap();
    store.store_sent_message("c", "m2", b"two").await.unwrap();
    note!(store.take_sent_message("c", "m1").await.unwrap());
    note!(store.take_sent_message("c", "m1").await.unwrap());
    let now = wacore::time::now_secs();
    note!(
        store
            .delete_expired_sent_messages(now - 3600)
            .await
            .unwrap()
    );
    note!(store.delete_expired_sent_messages(now + 10).await.unwrap());
    note!(store.take_sent_message("c", "m2").await.unwrap());

    // Pending inbound.
    let row = |id: &'static str, message: &'static [u8]| PendingInboundRow {
        chat: "c",
        sender: "s",
        id,
        message,
    };
    store
        .store_pending_inbound_batch(&[row("i1", b"x"), row("i2", b"y"), row("i1", b"z")])
        .await
        .unwrap();
    store
        .store_pending_inbound("c", "s", "i3", b"w")
        .await
        .unwrap();
    note!(store.get_pending_inbound("c", "s", "i1").await.unwrap());
    note!(store.get_pending_inbound("c", "other", "i1").await.unwrap());
    store
        .delete_pending_inbound_batch(&[PendingInboundKey {
            chat: "c",
            sender: "s",
            id: "i1",
        }])
        .await
        .unwrap();
    store.delete_pending_inbound("c", "s", "i2").await.unwrap();
    note!(store.get_pending_inbound("c", "s", "i1").await.unwrap());
    note!(
        store
            .delete_expired_pending_inbound(now - 3600)
            .await
            .unwrap()
    );
    note!(
        store
            .delete_expired_pending_inbound(now + 10)
            .await
            .unwrap()
    );
    note!(store.get_pending_inbound("c", "s", "i3").await.unwrap());

    // Message secrets: the later deadline (0 = never) and the known parent
    // time win.
    let secret = |id: &str, n: u8, expires: i64, ts: i64| {
        let jid = |s: &str| s.parse::<wacore_binary::Jid>().unwrap();
        MsgSecretEntry::new(
            &jid("1@s.whatsapp.net"),
            &jid("2@s.whatsapp.net"),
            id,
            [n; 32],
            expires,
            ts,
        )
    };
    note!(
        store
            .put_msg_secrets(vec![
                secret("a", 1, 100, 0),
                secret("b", 2, 100, 7),
                secret("a", 3, 0, 5)
            ])
            .await
            .unwrap()
    );
    note!(
        store
            .put_msg_secrets(vec![secret("b", 4, 200, 0), secret("c", 5, 120, 0)])
            .await
            .unwrap()
    );
    let get =
        |id: &'static str| store.get_msg_secret_with_ts("1@s.whatsapp.net", "2@s.whatsapp.net", id);
    note!(get("a").await.unwrap());
    note!(get("b").await.unwrap());
    note!(store.delete_expired_msg_secrets(150).await.unwrap());
    note!(get("c").await.unwrap());
    note!(get("a").await.unwrap().is_some());
    note!(store.delete_expired_msg_secrets(250).await.unwrap());
    note!(get("b").await.unwrap());
    store
        .put_msg_secret("1@s.whatsapp.net", "2@s.whatsapp.net", "d", &[6; 32])
        .await
        .unwrap();
    note!(
        store
            .get_msg_secret("1@s.whatsapp.net", "2@s.whatsapp.net", "d")
            .await
            .unwrap()
    );
    out
}
