//! `migrate-store`, against a real PostgreSQL each test starts: the
//! Baileys fixture's linked device goes from a data dir into the database
//! and back and still decrypts what its peers sent (and they what it
//! sends), with its settings and webhook rows (delivery ids, order, dead
//! letters, tombstones); the source stops being served once the copy is
//! verified; a data dir in use, a session served in the cluster and a
//! session the target already has are refused with nothing changed on
//! either side; a dry run writes nothing; the binary says why in a
//! sentence and never shows the database's password.

use crate::fixture_device;
use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::baileys::{copy_auth, import};
use support::process::wabridge;
use wabridge::engine::whatsapp::pg_store::{self, PgStore, Pool, take_lease};
use wabridge::import::Outcome as Imported;
use wabridge::migrate_store::{self, Direction, MigrateOptions, MigrateReport, Outcome, Target};
use wabridge::paths::{DataDir, SessionId};
use wabridge::session_files::{SessionFiles, SessionSettings};
use wabridge::webhook::outbox::Outbox;
use wabridge_sim::postgres::TestPostgres;
use whatsapp_rust::prelude::SqliteStore;

const HOOK: &str = "http://127.0.0.1:9/erp";

async fn database() -> (TestPostgres, Pool) {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    (server, pool)
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// A data dir with the Baileys fixture imported under each of `ids`.
async fn imported(tmp: &Path, ids: &[&str]) -> DataDir {
    let data = DataDir::new(tmp.join("data"));
    for name in ids {
        let old = tmp.join("old").join(name);
        copy_auth(&old);
        let report = import(&data, &old, false).await;
        assert_eq!(report.sessions[0].outcome, Imported::Imported, "{report}");
    }
    data
}

fn settings(data: &DataDir, name: &str, value: SessionSettings) {
    SessionFiles::new(data, &id(name))
        .save_settings(&value)
        .unwrap();
}

fn outbox_path(data: &DataDir) -> std::path::PathBuf {
    data.root().join("outbox/outbox.db")
}

/// Webhook rows of every kind for `session`: a delivered one (its
/// tombstone), a dead letter, and three waiting ones, two of them recorded
/// as one batch, one retried. Another session's row sits beside them.
fn outbox_rows(data: &DataDir, session: &str) {
    let outbox = Outbox::open(&outbox_path(data)).unwrap();
    for (n, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let body = format!(r#"{{"sessionId":"{session}","event":"x","n":"{name}"}}"#);
        let key = format!("{session}|{name}");
        outbox
            .enqueue(session, Some(&key), body.as_bytes(), 1_000 + n as i64)
            .unwrap();
    }
    outbox.enqueue("other", None, b"{}", 1_000).unwrap();
    let delivered = outbox.head(session).unwrap().unwrap();
    outbox.ack(&[delivered.seq]).unwrap();
    let refused = outbox.head(session).unwrap().unwrap();
    outbox.bury(&[refused.seq], "HTTP 400").unwrap();
    let c = outbox.head(session).unwrap().unwrap().seq;
    // [c] and [d, e] become batches of their own, as after a 413.
    assert!(outbox.split_batch(&[c, c + 1, c + 2]).unwrap());
    outbox.retry_later(&[c], 5_000, "HTTP 500").unwrap();
}

/// `session`'s rows as (delivery id, dead, attempts, batch id, created,
/// last error), in order.
type Row = (String, i64, i64, Option<String>, i64, Option<String>);

fn sqlite_rows(path: &Path, session: &str) -> Vec<Row> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT delivery_id, dead, attempts, batch_id, created_ms, last_error
               FROM deliveries WHERE session = ?1 ORDER BY seq",
        )
        .unwrap();
    statement
        .query_map([session], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn pg_rows(pool: &Pool, session: &str) -> Vec<Row> {
    let conn = pool.get().await.unwrap();
    conn.query(
        "SELECT delivery_id, dead, attempts, batch_id, created_ms, last_error
           FROM webhook_outbox WHERE session = $1 ORDER BY seq",
        &[&session],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            i64::from(r.get::<_, i16>(1)),
            i64::from(r.get::<_, i32>(2)),
            r.get(3),
            r.get(4),
            r.get(5),
        )
    })
    .collect()
}

/// Rows per table the database holds of `session` (store, outbox,
/// cluster entry, lease), the empty ones left out.
async fn everything_of(pool: &Pool, session: &str) -> Vec<(String, i64)> {
    let conn = pool.get().await.unwrap();
    let mut out = Vec::new();
    let tables = pg_store::SESSION_TABLES
        .iter()
        .map(|t| (*t, "session"))
        .chain([
            ("webhook_outbox", "session"),
            ("session_leases", "session"),
            ("cluster_sessions", "id"),
        ]);
    for (table, column) in tables {
        let n: i64 = conn
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} = $1"),
                &[&session],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            out.push((table.to_string(), n));
        }
    }
    out
}

async fn run(
    data: &DataDir,
    url: &str,
    direction: Direction,
    sessions: &[&str],
    dry_run: bool,
) -> Result<MigrateReport, String> {
    support::install_tls();
    migrate_store::migrate(
        data,
        &Target {
            url: url.to_string(),
            ca_file: None,
        },
        &MigrateOptions {
            direction,
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            dry_run,
        },
    )
    .await
}

fn outcome(report: &MigrateReport, session: &str) -> Outcome {
    report
        .sessions
        .iter()
        .find(|s| s.id == session)
        .unwrap_or_else(|| panic!("{session} not in the report:\n{report}"))
        .outcome
}

fn reason(report: &MigrateReport, session: &str) -> String {
    let s = report.sessions.iter().find(|s| s.id == session).unwrap();
    s.reason.clone().unwrap_or_default()
}

/// Two copies of the fixture's device ("front", "back") and a logged-out
/// session with no credentials ("gone") go into the database. "front" is
/// checked there, untouched, with the fixture's device checks on a
/// `PgStore`; "back" and "gone" come back into a fresh data dir, where
/// "back" passes the same checks on SQLite. Settings and webhook rows
/// (ids, kinds, attempts, batches, order) come back as they left.
#[tokio::test]
async fn sessions_go_to_the_database_and_back_with_everything_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["front", "back"]).await;
    settings(
        &data,
        "back",
        SessionSettings {
            webhook_url: Some(HOOK.into()),
            webhook_token: Some("erp-s3cret".into()),
            logged_out: false,
            nats_subject: None,
            reject_calls: true,
            call_reply: Some("please write".into()),
            ..SessionSettings::default()
        },
    );
    settings(
        &data,
        "gone",
        SessionSettings {
            webhook_url: Some(HOOK.into()),
            webhook_token: None,
            logged_out: true,
            nats_subject: None,
            ..SessionSettings::default()
        },
    );
    outbox_rows(&data, "back");
    // Two events its NATS target has not published: not copied, said.
    let nats = Outbox::open(&data.root().join("outbox/nats.db")).unwrap();
    for n in 0..2 {
        nats.enqueue("back", None, b"{}", 1_000 + n).unwrap();
    }
    let rows_before = sqlite_rows(&outbox_path(&data), "back");
    assert_eq!(
        rows_before.iter().map(|r| r.1).collect::<Vec<_>>(),
        [2, 1, 0, 0, 0],
        "a tombstone, a dead letter, three waiting"
    );
    let other_before = sqlite_rows(&outbox_path(&data), "other");
    let (server, pool) = database().await;

    let report = run(&data, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    for name in ["back", "front", "gone"] {
        assert_eq!(outcome(&report, name), Outcome::Copied, "{report}");
    }
    let text = report.to_string();
    assert!(
        text.contains("device 15550001111:7@s.whatsapp.net"),
        "{text}"
    );
    assert!(text.contains("migrated-to-db-"), "{text}");
    assert!(!text.contains("erp-s3cret"), "{text}");
    assert!(
        text.contains("2 NATS event(s) not yet published and 0 NATS dead letter(s) stay behind"),
        "{text}"
    );
    assert_eq!(
        text.matches("NATS event(s)").count(),
        1,
        "only back has any: {text}"
    );
    // The data dir serves none of them any more; nothing was deleted.
    assert!(data.saved_sessions().unwrap().is_empty());
    let aside: Vec<String> = std::fs::read_dir(data.sessions_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(aside.len(), 3, "{aside:?}");
    let back_aside = aside.iter().find(|n| n.starts_with("back.")).unwrap();
    let kept = data.sessions_dir().join(back_aside);
    assert!(kept.join("whatsapp.db").exists());
    assert_eq!(
        sqlite_rows(&kept.join("webhook-outbox.db"), "back"),
        rows_before
    );
    assert!(sqlite_rows(&outbox_path(&data), "back").is_empty());
    assert_eq!(sqlite_rows(&outbox_path(&data), "other"), other_before);
    // The webhook rows are the cluster's now, the same ones.
    assert_eq!(pg_rows(&pool, "back").await, rows_before);
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT webhook_url, webhook_token, logged_out FROM cluster_sessions WHERE id = 'gone'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, bool>(2)
        ),
        (Some(HOOK.to_string()), None, true)
    );

    // "front", as a host that took its lease sees it.
    let fence = take_lease(&pool, "front", "host-a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let store = PgStore::open(pool.clone(), "front", fence);
    fixture_device::is_the_linked_device(&store).await;
    fixture_device::mappings_pre_keys_and_tokens_read_back(&store).await;
    fixture_device::held_back_messages_decrypt(Arc::new(store.clone())).await;
    let scratch = tmp.path().join("peers-pg");
    std::fs::create_dir(&scratch).unwrap();
    fixture_device::peers_decrypt_what_we_encrypt(Arc::new(store), &scratch).await;

    // "back" and "gone" into a fresh data dir.
    let home = DataDir::new(tmp.path().join("home"));
    let report = run(
        &home,
        &server.url(),
        Direction::ToDir,
        &["back", "gone"],
        false,
    )
    .await
    .unwrap();
    assert_eq!(outcome(&report, "back"), Outcome::Copied, "{report}");
    assert_eq!(outcome(&report, "gone"), Outcome::Copied, "{report}");
    assert!(
        report
            .to_string()
            .contains("removed from the cluster database")
    );
    assert_eq!(home.saved_sessions().unwrap(), [id("back"), id("gone")]);
    for name in ["back", "gone"] {
        assert!(
            everything_of(&pool, name).await.is_empty(),
            "{name} is still in the cluster: {:?}",
            everything_of(&pool, name).await
        );
    }
    assert!(!everything_of(&pool, "front").await.is_empty());
    let back = SessionFiles::new(&home, &id("back"));
    assert_eq!(
        back.load_settings().unwrap(),
        SessionSettings {
            webhook_url: Some(HOOK.into()),
            webhook_token: Some("erp-s3cret".into()),
            logged_out: false,
            nats_subject: None,
            reject_calls: true,
            call_reply: Some("please write".into()),
            ..SessionSettings::default()
        },
        "its call settings went to the cluster and came back"
    );
    let gone = SessionFiles::new(&home, &id("gone"));
    assert!(gone.load_settings().unwrap().logged_out);
    assert!(!gone.has_store(), "no credentials came from nowhere");
    assert_eq!(sqlite_rows(&outbox_path(&home), "back"), rows_before);

    let sqlite = Arc::new(
        SqliteStore::new(back.store_path().to_str().unwrap())
            .await
            .unwrap(),
    );
    fixture_device::is_the_linked_device(&*sqlite).await;
    fixture_device::mappings_pre_keys_and_tokens_read_back(&*sqlite).await;
    fixture_device::held_back_messages_decrypt(sqlite.clone()).await;
    let scratch = tmp.path().join("peers-sqlite");
    std::fs::create_dir(&scratch).unwrap();
    fixture_device::peers_decrypt_what_we_encrypt(sqlite, &scratch).await;
}

/// A running wabridge holds the data dir: both directions stop before
/// touching anything, naming the holder.
#[tokio::test]
async fn a_data_dir_in_use_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["shop"]).await;
    let (server, pool) = database().await;
    let held = data.open_exclusive().unwrap();
    for direction in [Direction::ToDb, Direction::ToDir] {
        let error = run(&data, &server.url(), direction, &[], false)
            .await
            .unwrap_err();
        assert!(
            error.contains(&format!("pid {}", std::process::id()))
                && error.contains("stop it first"),
            "{error}"
        );
    }
    drop(held);
    let conn = pool.get().await.unwrap();
    let schema: bool = conn
        .query_one("SELECT to_regclass('cluster_sessions') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!schema, "the database was not even migrated");
    assert_eq!(data.saved_sessions().unwrap(), [id("shop")]);
}

/// A session whose lease a host holds is being served: neither direction
/// takes it, and nothing changes on either side.
#[tokio::test]
async fn a_session_served_in_the_cluster_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["shop"]).await;
    let (server, pool) = database().await;
    run(&data, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    let fence = take_lease(&pool, "shop", "host-a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let before = everything_of(&pool, "shop").await;

    let home = DataDir::new(tmp.path().join("home"));
    for dry_run in [true, false] {
        let report = run(&home, &server.url(), Direction::ToDir, &["shop"], dry_run)
            .await
            .unwrap();
        assert_eq!(outcome(&report, "shop"), Outcome::Refused, "{report}");
        let why = reason(&report, "shop");
        assert!(why.contains("host-a holds its lease"), "{why}");
    }
    assert!(home.saved_sessions().unwrap().is_empty());
    assert_eq!(everything_of(&pool, "shop").await, before);
    let conn = pool.get().await.unwrap();
    let lease = conn
        .query_one(
            "SELECT owner, fence FROM session_leases WHERE session = 'shop'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (lease.get::<_, String>(0), lease.get::<_, i64>(1)),
        ("host-a".to_string(), fence as i64),
        "the serving host keeps its lease"
    );

    // The other way: a data dir session whose id the cluster serves.
    let other = imported(&tmp.path().join("second"), &["shop"]).await;
    let report = run(&other, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::Refused, "{report}");
    assert_eq!(other.saved_sessions().unwrap(), [id("shop")]);
    assert_eq!(everything_of(&pool, "shop").await, before);
}

/// A session the target already has is skipped: the target keeps what it
/// had, the source is still served as before.
#[tokio::test]
async fn a_session_the_target_has_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, pool) = database().await;
    let first = imported(&tmp.path().join("first"), &["shop"]).await;
    run(&first, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    let in_db = everything_of(&pool, "shop").await;

    // Into the database: another data dir's "shop".
    let second = imported(&tmp.path().join("second"), &["shop"]).await;
    outbox_rows(&second, "shop");
    let rows = sqlite_rows(&outbox_path(&second), "shop");
    let report = run(&second, &server.url(), Direction::ToDb, &["shop"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::Skipped, "{report}");
    assert!(
        reason(&report, "shop").contains("already has a session \"shop\""),
        "{report}"
    );
    assert_eq!(everything_of(&pool, "shop").await, in_db);
    assert_eq!(second.saved_sessions().unwrap(), [id("shop")]);
    assert_eq!(sqlite_rows(&outbox_path(&second), "shop"), rows);

    // Into the data dir: "second" still has its own "shop".
    let store = std::fs::read(SessionFiles::new(&second, &id("shop")).store_path()).unwrap();
    let report = run(&second, &server.url(), Direction::ToDir, &["shop"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::Skipped, "{report}");
    assert!(
        reason(&report, "shop").contains("the data dir already has a session"),
        "{report}"
    );
    assert_eq!(
        std::fs::read(SessionFiles::new(&second, &id("shop")).store_path()).unwrap(),
        store
    );
    assert_eq!(everything_of(&pool, "shop").await, in_db);

    // A session nobody has is skipped by name.
    let report = run(&second, &server.url(), Direction::ToDir, &["nobody"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "nobody"), Outcome::Skipped);
    assert!(!report.all_copied());
}

/// A dry run reports what it would copy, in either direction, and writes
/// nothing: the database is not even given a schema, the data dir keeps
/// its folders.
#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["shop"]).await;
    outbox_rows(&data, "shop");
    let (server, pool) = database().await;
    let report = run(&data, &server.url(), Direction::ToDb, &[], true)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::WouldCopy, "{report}");
    let shop = &report.sessions[0];
    let store = shop.store.as_ref().unwrap();
    assert_eq!(
        (store["device"], store["signal_sessions"], store["prekeys"]),
        (1, 4, 26)
    );
    let outbox = shop.outbox.unwrap();
    assert_eq!(
        (outbox.waiting, outbox.dead_letters, outbox.delivered),
        (3, 1, 1)
    );
    assert!(report.to_string().starts_with("From "));
    assert!(report.to_string().contains("Dry run: nothing was written."));
    let conn = pool.get().await.unwrap();
    let schema: bool = conn
        .query_one("SELECT to_regclass('cluster_sessions') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!schema);
    assert_eq!(data.saved_sessions().unwrap(), [id("shop")]);

    // The other way, once the database has it.
    run(&data, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    let before = everything_of(&pool, "shop").await;
    let home = DataDir::new(tmp.path().join("home"));
    let report = run(&home, &server.url(), Direction::ToDir, &[], true)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::WouldCopy, "{report}");
    assert!(!home.root().exists(), "the data dir is not even created");
    assert_eq!(everything_of(&pool, "shop").await, before);
}

/// Ids in the database that are not valid session ids never become paths:
/// reported (escaped), skipped, nothing written outside the data dir.
#[tokio::test]
async fn a_hostile_id_in_the_database_stays_out_of_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, pool) = database().await;
    pg_store::migrate(&pool).await.unwrap();
    let conn = pool.get().await.unwrap();
    for hostile in ["../../escape", "a/b", ".hidden", "x\n\u{1b}[31m"] {
        conn.execute("INSERT INTO cluster_sessions (id) VALUES ($1)", &[&hostile])
            .await
            .unwrap();
    }
    let home = DataDir::new(tmp.path().join("nested/home"));
    let report = run(&home, &server.url(), Direction::ToDir, &[], false)
        .await
        .unwrap();
    assert_eq!(report.sessions.len(), 4);
    assert!(
        report
            .sessions
            .iter()
            .all(|s| s.outcome == Outcome::Skipped),
        "{report}"
    );
    let text = report.to_string();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!tmp.path().join("escape").exists());
    assert!(!tmp.path().join("nested/escape").exists());
    assert!(home.saved_sessions().unwrap().is_empty());
}

/// The binary: a refusal is a sentence and a non-zero exit, and the
/// database's password is never printed, also not in the report.
#[tokio::test]
async fn the_command_says_why_it_refused_and_never_shows_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["shop"]).await;
    let (server, pool) = database().await;
    let url = format!(
        "postgres://postgres:s3cret-pw@127.0.0.1:{}/postgres",
        server.port()
    );
    let data_arg = data.root().to_str().unwrap().to_string();
    // Blocking the test's runtime is fine: nothing else runs on it.
    let dir = data_arg.clone();
    let migrate = move |extra: &[&str]| {
        let mut args = vec!["--data-dir", &dir, "migrate-store", "--database-url", &url];
        args.extend_from_slice(extra);
        wabridge(&args).output().unwrap()
    };

    let held = data.open_exclusive().unwrap();
    let out = migrate(&["--to-db"]);
    drop(held);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is already using data dir") && err.contains("stop it first"),
        "{err}"
    );

    // Served in the cluster: refused in the report, non-zero exit.
    pg_store::migrate(&pool).await.unwrap();
    take_lease(&pool, "shop", "host-a", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let out = migrate(&["--to-db"]);
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("shop  REFUSED"), "{stdout}");
    assert!(stdout.contains("host-a holds its lease"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "postgres://postgres:***@127.0.0.1:{}",
            server.port()
        )),
        "{stdout}"
    );
    assert!(stderr.contains("some sessions were not copied"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
    assert_eq!(data.saved_sessions().unwrap(), [id("shop")]);

    // No database named anywhere: a sentence, before anything is touched.
    let out = wabridge(&["--data-dir", &data_arg, "migrate-store", "--to-db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --database-url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --help says what becomes of the source.
    let help = wabridge(&["migrate-store", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("migrated-to-db-"), "{help}");
    assert!(
        help.contains("removes the session from the cluster"),
        "{help}"
    );
}

/// A `--to-dir` cut off between renaming its copy into place and the
/// cluster's commit leaves the folder marked unconfirmed: wabridge never
/// loads or starts it (the cluster may still serve that device), and the
/// next run settles it by asking the cluster. Still listed there: the copy
/// is moved aside (kept, hidden) with its webhook rows, and the session is
/// copied again. Gone from there: the copy is the session; the mark goes.
#[tokio::test]
async fn an_interrupted_move_into_the_data_dir_is_never_loaded_and_the_next_run_settles_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, pool) = database().await;
    let source = imported(&tmp.path().join("source"), &["shop", "done", "early"]).await;
    run(&source, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    let marked = |data: &DataDir, name: &str| {
        data.session_dir(&id(name))
            .join(wabridge::paths::UNCONFIRMED_MIGRATION)
    };

    // Cut off before the commit: the cluster still has "shop".
    let data = DataDir::new(tmp.path().join("target"));
    std::fs::create_dir_all(data.session_dir(&id("shop"))).unwrap();
    std::fs::write(marked(&data, "shop"), "").unwrap();
    outbox_rows(&data, "shop");
    assert!(data.saved_sessions().unwrap().is_empty());
    let engine = wabridge::engine::Engine::new(
        support::fake_backend::FakeBackend::default(),
        data.clone(),
        support::fast_policy(),
    );
    let refused = engine.add_session(&id("shop"), None, None).unwrap_err();
    assert!(
        refused.to_string().contains("migrate-store --to-dir"),
        "{refused}"
    );
    engine.shutdown().await;

    let report = run(&data, &server.url(), Direction::ToDir, &["shop"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "shop"), Outcome::Copied, "{report}");
    assert!(everything_of(&pool, "shop").await.is_empty());
    assert!(!marked(&data, "shop").exists());
    assert_eq!(data.saved_sessions().unwrap(), [id("shop")]);
    let aside: Vec<String> = std::fs::read_dir(data.sessions_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".migrate-shop.interrupted-"))
        .collect();
    assert_eq!(aside.len(), 1, "the unconfirmed copy is kept aside");
    // Only the cluster's rows: none of the interrupted copy's "x" bodies.
    let conn = rusqlite::Connection::open(outbox_path(&data)).unwrap();
    let copied: i64 = conn
        .query_row(
            "SELECT count(*) FROM deliveries WHERE session = 'shop'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(copied, 0, "the cluster had no webhook rows for shop");

    // Cut off after the commit: the cluster let "done" go.
    let report = run(&data, &server.url(), Direction::ToDir, &["done"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "done"), Outcome::Copied, "{report}");
    std::fs::write(marked(&data, "done"), "").unwrap();
    assert_eq!(data.saved_sessions().unwrap(), [id("shop")]);
    let report = run(&data, &server.url(), Direction::ToDir, &["done"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "done"), Outcome::Copied, "{report}");
    assert!(!marked(&data, "done").exists());
    assert_eq!(data.saved_sessions().unwrap(), [id("done"), id("shop")]);

    // Cut off before the rename: its hidden folder and the webhook rows it
    // had added are cleared, and the copy runs again.
    std::fs::create_dir_all(data.sessions_dir().join(".migrate-early")).unwrap();
    outbox_rows(&data, "early");
    let report = run(&data, &server.url(), Direction::ToDir, &["early"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "early"), Outcome::Copied, "{report}");
    assert!(!data.sessions_dir().join(".migrate-early").exists());
    assert!(sqlite_rows(&outbox_path(&data), "early").is_empty());
    assert_eq!(
        data.saved_sessions().unwrap(),
        [id("done"), id("early"), id("shop")]
    );
}

/// The NATS queue does not move into a data dir: a session whose events
/// still wait there (or are dead letters) stays in the cluster, its copy
/// undone, until they are published; then it moves.
#[tokio::test]
async fn a_session_with_unpublished_nats_events_stays_in_the_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let data = imported(tmp.path(), &["back"]).await;
    let (server, pool) = database().await;
    let report = run(&data, &server.url(), Direction::ToDb, &[], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "back"), Outcome::Copied, "{report}");
    let conn = pool.get().await.unwrap();
    conn.execute(
        "INSERT INTO nats_outbox (delivery_id, session, body, created_ms, next_attempt_ms)
         VALUES ('wab-nats-1', 'back', '\\x7b7d', 1, 1)",
        &[],
    )
    .await
    .unwrap();

    let home = DataDir::new(tmp.path().join("home"));
    let report = run(&home, &server.url(), Direction::ToDir, &["back"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "back"), Outcome::Failed, "{report}");
    assert!(
        reason(&report, "back").contains("1 NATS event(s) of the session wait"),
        "{report}"
    );
    assert!(home.saved_sessions().unwrap().is_empty());
    assert!(
        !everything_of(&pool, "back").await.is_empty(),
        "the cluster keeps it"
    );

    // Published (a tombstone now): it moves, the tombstone with it.
    conn.execute(
        "UPDATE nats_outbox SET dead = 2 WHERE delivery_id = 'wab-nats-1'",
        &[],
    )
    .await
    .unwrap();
    let report = run(&home, &server.url(), Direction::ToDir, &["back"], false)
        .await
        .unwrap();
    assert_eq!(outcome(&report, "back"), Outcome::Copied, "{report}");
    let left: i64 = conn
        .query_one(
            "SELECT count(*) FROM nats_outbox WHERE session = 'back'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
