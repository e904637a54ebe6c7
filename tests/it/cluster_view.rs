//! The whole cluster on every host, against a real PostgreSQL: each host
//! reports the sessions it serves into `cluster_sessions` only under the
//! lease it holds (a host whose lease moved on writes nothing over the new
//! owner's report), every host reads who serves what and in which state
//! (marking old reports, reports from a node that no longer serves the
//! session, and sessions with no host), a view whose database is gone says
//! so, and the API lists the other hosts' sessions with their node.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::fake_backend::{Conn, FakeBackend, connected};
use support::id;
use wabridge::cluster::manager::LeaseStore;
use wabridge::cluster::status::{self, FenceSource, Report, ReportedStatus, StatusReporter};
use wabridge::cluster::store::PgLeases;
use wabridge::cluster::view::{self, ClusterSnapshot, ClusterView};
use wabridge::engine::whatsapp::pg_store::{self, Pool};
use wabridge::engine::{Engine, SessionSnapshot};
use wabridge::nats::subject::NO_OWN_PREFIX_IN_CLUSTER;
use wabridge::paths::DataDir;
use wabridge_sim::postgres::TestPostgres;

const LEASE: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(20);
const STALE_AFTER: Duration = Duration::from_secs(6);

async fn database() -> (TestPostgres, Pool, PgLeases) {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool: pool.clone() };
    (server, pool, leases)
}

/// The fences a host holds, changeable by the test.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<BTreeMap<String, u64>>>);

impl Held {
    fn source(&self) -> FenceSource {
        let held = self.0.clone();
        Arc::new(move |id: &wabridge::paths::SessionId| {
            held.lock().unwrap().get(id.as_str()).copied()
        })
    }

    fn hold(&self, session: &str, fence: u64) {
        self.0.lock().unwrap().insert(session.into(), fence);
    }
}

/// A session's row: (status_node, status as JSON, status_at in µs since
/// the epoch).
async fn row(pool: &Pool, session: &str) -> (Option<String>, Option<Value>, Option<i64>) {
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT status_node, status::text,
                    (extract(epoch FROM status_at) * 1000000)::bigint
               FROM cluster_sessions WHERE id = $1",
            &[&session],
        )
        .await
        .unwrap();
    let status: Option<String> = row.get(1);
    (
        row.get(0),
        status.map(|s| serde_json::from_str(&s).unwrap()),
        row.get(2),
    )
}

async fn db_now_micros(pool: &Pool) -> i64 {
    let conn = pool.get().await.unwrap();
    conn.query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[])
        .await
        .unwrap()
        .get(0)
}

/// Polls `check` until it gives a value; panics after `WAIT`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An engine on the scripted backend whose sessions connect and stay.
fn engine_serving(tmp: &tempfile::TempDir, sessions: &[&str]) -> Engine {
    let backend = FakeBackend::default();
    let engine = Engine::new(
        backend.clone(),
        DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    for name in sessions {
        backend.script(name, [Conn::Stays(vec![connected()])]);
        engine
            .add_session(
                &id(name),
                Some("https://erp/hook".into()),
                Some("s3cret".into()),
            )
            .unwrap();
    }
    engine
}

#[tokio::test]
async fn a_host_reports_only_the_sessions_whose_lease_it_holds_at_its_fence() {
    let (_server, pool, leases) = database().await;
    for name in ["a", "b", "c"] {
        leases
            .add_session(&id(name), Some("https://erp/hook"), Some("s3cret"))
            .await
            .unwrap();
    }
    let held = Held::default();
    for name in ["a", "c"] {
        let fence = leases.take(&id(name), "host-a", LEASE).await.unwrap();
        held.hold(name, fence.unwrap());
    }
    // `b` is host-b's: host-a runs it too (say, a moment before it stops)
    // but holds no fence for it.
    leases.take(&id("b"), "host-b", LEASE).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_serving(&tmp, &["a", "b", "c"]);
    let _reporter = StatusReporter::start(
        status::PgReports {
            pool: pool.clone(),
            node: "host-a".into(),
        },
        engine.clone(),
        held.source(),
        Duration::from_millis(300),
    );

    let (node, report, _) = eventually("a's report, Connected", || async {
        let row = row(&pool, "a").await;
        (row.1.as_ref()?["state"] == "Connected").then_some(row)
    })
    .await;
    assert_eq!(node.as_deref(), Some("host-a"));
    let report = report.unwrap();
    assert_eq!(report["status"], "Connected");
    assert_eq!(report["phone"], "15551234567");
    assert_eq!(report["has_webhook"], true);
    let text = report.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("erp/hook"),
        "no webhook settings in a report: {text}"
    );
    assert_eq!(row(&pool, "b").await.1, None, "no fence, no report");

    // host-a's lease on `a` ends and host-b takes it (fence 2) and reports;
    // host-a has not noticed: it still holds fence 1.
    leases
        .renew("host-a", &[(id("a"), 1)], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        leases.take(&id("a"), "host-b", LEASE).await.unwrap(),
        Some(2)
    );
    let theirs = ReportedStatus {
        state: "Disconnected".into(),
        status: "Disconnected".into(),
        ..ReportedStatus::of(&SessionSnapshot::new(id("a")), wabridge::engine::now())
    };
    let written = status::write(
        &pool,
        "host-b",
        &[Report {
            session: id("a"),
            fence: 2,
            status: theirs,
        }],
    )
    .await
    .unwrap();
    assert_eq!(written, vec![id("a")]);
    // A write at the old fence, or by a node that does not hold the lease,
    // lands nowhere.
    let stale = Report {
        session: id("a"),
        fence: 1,
        status: ReportedStatus::of(&engine.snapshot(&id("a")).unwrap(), wabridge::engine::now()),
    };
    assert!(
        status::write(&pool, "host-a", std::slice::from_ref(&stale))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        status::write(
            &pool,
            "host-c",
            &[Report {
                fence: 2,
                ..stale.clone()
            }]
        )
        .await
        .unwrap()
        .is_empty()
    );

    // The reporter's refreshes write `a` (fence 1) with `c` in one
    // statement: once `c` was refreshed after the takeover, host-a tried,
    // and host-b's report is still there.
    let taken = db_now_micros(&pool).await;
    for _ in 0..2 {
        let since = row(&pool, "c").await.2.unwrap().max(taken);
        eventually("c refreshed", || async {
            (row(&pool, "c").await.2? > since).then_some(())
        })
        .await;
    }
    let (node, report, _) = row(&pool, "a").await;
    assert_eq!(node.as_deref(), Some("host-b"));
    assert_eq!(report.unwrap()["state"], "Disconnected");
    assert_eq!(row(&pool, "b").await.1, None);
    engine.shutdown().await;
}

/// One write the reporter made: when (since the start) and what.
type Written = (Duration, Vec<Report>);

/// Records each write (when, on the paused clock, and what) and accepts
/// every report.
#[derive(Clone)]
struct Recorder {
    writes: Arc<Mutex<Vec<Written>>>,
    start: tokio::time::Instant,
}

impl status::ReportSink for Recorder {
    async fn write(&self, reports: &[Report]) -> anyhow::Result<Vec<wabridge::paths::SessionId>> {
        let at = tokio::time::Instant::now() - self.start;
        self.writes.lock().unwrap().push((at, reports.to_vec()));
        Ok(reports.iter().map(|r| r.session.clone()).collect())
    }
}

impl Recorder {
    /// (seconds since the start, session, state) of every report written.
    fn written_states(&self) -> Vec<(f64, String, String)> {
        let writes = self.writes.lock().unwrap();
        writes
            .iter()
            .flat_map(|(at, reports)| {
                reports.iter().map(move |r| {
                    (
                        (at.as_secs_f64() * 10.0).round() / 10.0,
                        r.session.to_string(),
                        r.status.state.clone(),
                    )
                })
            })
            .collect()
    }

    fn times(&self) -> Vec<Duration> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .map(|(at, _)| *at)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn changes_are_written_at_most_once_a_second_and_every_session_is_refreshed() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = FakeBackend::default();
    // `a` connects and drops twice, then stays: a burst of changes.
    backend.script(
        "a",
        [
            Conn::connects_then_drops(),
            Conn::connects_then_drops(),
            Conn::Stays(vec![connected()]),
        ],
    );
    backend.script("b", [Conn::Stays(vec![connected()])]);
    backend.script("other", [Conn::Stays(vec![connected()])]);
    let engine = Engine::new(
        backend.clone(),
        DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    let held = Held::default();
    held.hold("a", 1);
    held.hold("b", 1);
    let sink = Recorder {
        writes: Arc::default(),
        start: tokio::time::Instant::now(),
    };
    let _reporter = StatusReporter::start(
        sink.clone(),
        engine.clone(),
        held.source(),
        Duration::from_secs(5),
    );
    for name in ["a", "b", "other"] {
        engine.add_session(&id(name), None, None).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(11_500)).await;
    let times = sink.times();
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_secs(1)),
        "at most one write a second: {times:?}"
    );
    let writes = sink.written_states();
    assert!(
        writes.iter().all(|(_, session, _)| session != "other"),
        "no fence, no report: {writes:?}"
    );
    // The first round writes both as they start; the burst that follows
    // (connected, dropped, retried, twice) is one write a second later,
    // of how it ended; then nothing changes, and both are written again
    // every 5 s all the same.
    let of = |name: &str| {
        writes
            .iter()
            .filter(|(_, s, _)| s == name)
            .map(|(at, _, state)| (*at, state.as_str()))
            .collect::<Vec<_>>()
    };
    let expected = [
        (0.0, "Connecting"),
        (1.0, "Connected"),
        (5.0, "Connected"),
        (10.0, "Connected"),
    ];
    assert_eq!(of("a"), expected, "{writes:?}");
    assert_eq!(of("b"), expected, "{writes:?}");
    assert!(
        backend.run_times("a").len() >= 3,
        "a really went through its burst"
    );

    // A new fence (the lease was taken again) is a change: written at once.
    held.hold("b", 2);
    engine
        .command(&id("b"), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let b2 = sink.writes.lock().unwrap().last().unwrap().1.clone();
    assert!(
        b2.iter().any(|r| r.session == id("b") && r.fence == 2),
        "{b2:?}"
    );
    engine.shutdown().await;
}

/// Sets a session's lease and report directly: `lease` (owner, seconds it
/// has left: negative = expired), `report` (node, JSON, seconds ago).
async fn place(
    pool: &Pool,
    session: &str,
    lease: Option<(&str, i64)>,
    report: Option<(&str, Value, i64)>,
    logged_out: bool,
) {
    let conn = pool.get().await.unwrap();
    conn.execute(
        "INSERT INTO cluster_sessions (id, logged_out) VALUES ($1, $2)",
        &[&session, &logged_out],
    )
    .await
    .unwrap();
    if let Some((owner, left)) = lease {
        conn.execute(
            "INSERT INTO session_leases (session, owner, expires_at, fence)
             VALUES ($1, $2, now() + make_interval(secs => $3), 1)",
            &[&session, &owner, &(left as f64)],
        )
        .await
        .unwrap();
    }
    if let Some((node, status, ago)) = report {
        conn.execute(
            "UPDATE cluster_sessions
                SET status = $2::text::jsonb, status_node = $3,
                    status_at = now() - make_interval(secs => $4)
              WHERE id = $1",
            &[&session, &status.to_string(), &node, &(ago as f64)],
        )
        .await
        .unwrap();
    }
}

fn reported(state: &str, status: &str) -> Value {
    json!({ "state": state, "status": status, "phone": "15551234567", "attempt": 0 })
}

#[tokio::test]
async fn every_host_reads_who_serves_each_session_and_says_what_it_does_not_know() {
    let (_server, pool, _) = database().await;
    let connected = reported("Connected", "Connected");
    place(
        &pool,
        "fresh",
        Some(("host-a", 60)),
        Some(("host-a", connected.clone(), 1)),
        false,
    )
    .await;
    place(
        &pool,
        "old",
        Some(("host-b", 60)),
        Some(("host-b", connected.clone(), 60)),
        false,
    )
    .await;
    place(
        &pool,
        "moved",
        Some(("host-b", 60)),
        Some(("host-a", connected.clone(), 1)),
        false,
    )
    .await;
    place(
        &pool,
        "orphan",
        Some(("host-a", -5)),
        Some(("host-a", connected.clone(), 8)),
        false,
    )
    .await;
    place(&pool, "new", None, None, false).await;
    place(&pool, "unlinked", None, None, true).await;
    let retrying = json!({
        "state": "Disconnected", "status": "Disconnected", "attempt": 3,
        "next_retry_in_ms": 30_000,
        "last_close": { "status": 408, "description": "connection lost" },
    });
    place(
        &pool,
        "retrying",
        Some(("host-b", 60)),
        Some(("host-b", retrying, 10)),
        false,
    )
    .await;
    place(
        &pool,
        "unreadable",
        Some(("host-b", 60)),
        Some(("host-b", json!({"v": 9}), 1)),
        false,
    )
    .await;

    let sessions = view::read(&pool, STALE_AFTER).await.unwrap();
    let now = wabridge::engine::now();
    let snapshot = ClusterSnapshot {
        node: "host-a".into(),
        sessions,
        read_at: Some(now),
        error: None,
    };
    let get = |name: &str| snapshot.get(&id(name)).unwrap();

    let fresh = get("fresh");
    assert_eq!(fresh.owner.as_deref(), Some("host-a"));
    assert_eq!((fresh.status(), fresh.state()), ("Connected", "Connected"));
    assert_eq!(fresh.stale, None);
    assert_eq!(fresh.phone(), Some("15551234567"));

    let old = get("old");
    assert_eq!(old.status(), "Connected");
    assert_eq!(old.stale.as_deref(), Some("host-b last reported 1m ago"));

    // Taken over by host-b, which has not reported yet: host-a's words are
    // not shown as host-b's.
    let moved = get("moved");
    assert_eq!(moved.owner.as_deref(), Some("host-b"));
    assert_eq!(moved.status(), "Connecting");
    assert_eq!(moved.stale.as_deref(), Some("no report from host-b yet"));
    assert_eq!(moved.phone(), Some("15551234567"));

    for name in ["orphan", "new"] {
        let waiting = get(name);
        assert_eq!(waiting.owner, None, "{name}");
        assert_eq!(
            (waiting.status(), waiting.state()),
            ("waiting for a host", "No Host")
        );
    }
    assert_eq!(get("unlinked").status(), "Logged Out");

    // The countdown is the reporter's, less the report's age.
    let retrying = get("retrying").owners_report().unwrap();
    assert_eq!(retrying.attempt, 3);
    let left = retrying.next_retry_at.unwrap() - now;
    assert!(
        left > Duration::from_secs(18) && left <= Duration::from_secs(20),
        "{left:?}"
    );
    let age = now - get("retrying").reported_at.unwrap();
    assert!(
        age >= Duration::from_secs(10) && age < Duration::from_secs(12),
        "{age:?}"
    );

    // A report this version cannot read is none, not a guess.
    let unreadable = get("unreadable");
    assert_eq!(unreadable.report, None);
    assert_eq!(unreadable.status(), "Connecting");
    assert!(unreadable.stale.is_some());

    assert_eq!(
        snapshot.nodes(),
        vec![("host-a".to_string(), 1), ("host-b".to_string(), 4)]
    );
    let waiting: Vec<&str> = snapshot.without_host().map(|s| s.id.as_str()).collect();
    assert_eq!(waiting, ["new", "orphan"]);
}

#[tokio::test]
async fn a_view_whose_database_is_gone_says_so_and_keeps_the_last_read() {
    let (server, pool, _) = database().await;
    place(
        &pool,
        "shop",
        Some(("host-b", 60)),
        Some(("host-b", reported("Connected", "Connected"), 0)),
        false,
    )
    .await;
    let view = ClusterView::start(
        pool.clone(),
        "host-a".into(),
        Duration::from_millis(100),
        STALE_AFTER,
    );
    let mut snapshots = view.subscribe();
    let read = tokio::time::timeout(
        WAIT,
        snapshots.wait_for(|s| s.read_at.is_some() && s.sessions.len() == 1),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(read.error, None);
    assert_eq!(read.sessions[0].owner.as_deref(), Some("host-b"));

    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let gone_at = Instant::now();
    let down = tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.error.is_some()))
        .await
        .expect("the view says the database is gone")
        .unwrap()
        .clone();
    let error = down.error.unwrap();
    assert!(
        error.starts_with("cannot read the cluster's sessions: "),
        "{error}"
    );
    assert_eq!(down.sessions, read.sessions, "the last read is kept");
    assert!(
        down.read_at.unwrap() <= gone_at,
        "and says when it was read"
    );
    assert!(
        !error.contains("postgres://"),
        "no connection string on screen: {error}"
    );
}

/// GET `path` on `router`: (status, JSON or text).
async fn get(router: &axum::Router, path: &str) -> (axum::http::StatusCode, Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn every_hosts_api_lists_the_whole_cluster_with_each_sessions_node() {
    let (server, pool, leases) = database().await;
    // `a` runs here (host-a); `b` on host-b, Connected; `c` on no host.
    place(&pool, "a", Some(("host-a", 60)), None, false).await;
    place(
        &pool,
        "b",
        Some(("host-b", 60)),
        Some(("host-b", reported("Connected", "Connected"), 0)),
        false,
    )
    .await;
    place(&pool, "c", Some(("host-b", -30)), None, false).await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_serving(&tmp, &["a"]);
    let view = ClusterView::start(
        pool.clone(),
        "host-a".into(),
        Duration::from_millis(100),
        STALE_AFTER,
    );
    let mut snapshots = view.subscribe();
    let mut state = wabridge::api::ApiState::new(engine.clone(), String::new());
    state.cluster = Some(wabridge::cluster::control::ClusterControl {
        node: "host-a".into(),
        leases,
        take_now: Arc::new(|| {}),
    });
    state.cluster_view = Some(view.subscribe());
    let router = wabridge::api::router(state);
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.read_at.is_some()))
        .await
        .unwrap()
        .unwrap();
    let mut watch = engine.watch(&id("a")).unwrap();
    watch
        .wait_for(|s| s.state == wabridge::engine::SessionState::Connected)
        .await
        .unwrap();

    let (_, list) = get(&router, "/sessions").await;
    let sessions = list["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c"], "{list}");
    // Served here: as alone, plus the node.
    assert_eq!(sessions[0]["node"], "host-a");
    assert_eq!(sessions[0]["status"], "Connected");
    assert!(sessions[0].get("remote").is_none(), "{list}");
    // Served by host-b: its report, its node.
    assert_eq!(sessions[1]["node"], "host-b");
    assert_eq!(sessions[1]["remote"], true);
    assert_eq!(sessions[1]["status"], "Connected");
    assert_eq!(sessions[1]["phone"], "15551234567");
    assert_eq!(sessions[1]["stale"], false);
    assert_eq!(sessions[1]["reportedBy"], "host-b");
    // Nobody's.
    assert_eq!(sessions[2]["node"], Value::Null);
    assert_eq!(sessions[2]["status"], "waiting for a host");
    assert_eq!(list["cluster"]["withoutHost"], json!(["c"]));

    // The old bridge's status answer is unchanged for a local session; a
    // remote one answers with its host's word and node, not 404.
    assert_eq!(
        get(&router, "/sessions/a/status").await.1,
        json!({ "status": "Connected" })
    );
    let (code, b) = get(&router, "/sessions/b/status").await;
    assert_eq!(code, axum::http::StatusCode::OK);
    assert_eq!(
        b,
        json!({ "status": "Connected", "node": "host-b", "remote": true, "stale": false, "staleReason": null })
    );
    let (_, b) = get(&router, "/sessions/b").await;
    assert_eq!(b["qr"], Value::Null);
    assert_eq!(b["node"], "host-b");
    assert_eq!(
        get(&router, "/sessions/c/status").await.1["status"],
        "waiting for a host"
    );
    assert_eq!(
        get(&router, "/sessions/nope/status").await.0,
        axum::http::StatusCode::NOT_FOUND
    );

    // /health keeps its fields (this host's sessions) and adds the cluster.
    let (_, health) = get(&router, "/health").await;
    assert_eq!(health["status"], "degraded", "c has no host: {health}");
    assert_eq!(health["node"], "host-a");
    assert_eq!(health["sessions"]["total"], 1);
    assert_eq!(health["sessions"]["connected"], 1);
    assert_eq!(
        health["cluster"]["nodes"],
        json!([{ "node": "host-a", "sessions": 1 }, { "node": "host-b", "sessions": 1 }])
    );
    assert_eq!(health["cluster"]["withoutHost"], json!(["c"]));
    assert_eq!(health["cluster"]["error"], Value::Null);

    let (_, metrics) = get(&router, "/metrics").await;
    let metrics = metrics.as_str().unwrap();
    for line in [
        "wabridge_session_node{session=\"a\",node=\"host-a\"} 1",
        "wabridge_session_node{session=\"b\",node=\"host-b\"} 1",
        "wabridge_session_node{session=\"c\",node=\"\"} 0",
        "wabridge_cluster_node_sessions{node=\"host-a\"} 1",
        "wabridge_cluster_node_sessions{node=\"host-b\"} 1",
        "wabridge_cluster_sessions_without_host 1",
        "wabridge_cluster_view_up 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    // The database goes: what is shown of the others is marked stale,
    // with why, and /health and /metrics say so.
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.error.is_some()))
        .await
        .unwrap()
        .unwrap();
    let (_, list) = get(&router, "/sessions").await;
    let b = &list["sessions"][1];
    assert_eq!(b["stale"], true, "{list}");
    assert!(
        b["staleReason"]
            .as_str()
            .unwrap()
            .starts_with("cannot read the cluster's sessions"),
        "{list}"
    );
    assert_eq!(list["sessions"][0]["status"], "Connected", "local: live");
    let (_, health) = get(&router, "/health").await;
    assert!(health["cluster"]["error"].is_string(), "{health}");
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wabridge_cluster_view_up 0")
    );
    engine.shutdown().await;
}

/// A session's cluster row: (webhook_url, logged_out, settings_version).
async fn settings(pool: &Pool, session: &str) -> Option<(Option<String>, bool, i64)> {
    let conn = pool.get().await.unwrap();
    conn.query_opt(
        "SELECT webhook_url, logged_out, settings_version FROM cluster_sessions WHERE id = $1",
        &[&session],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test]
async fn the_dashboards_new_sessions_and_webhooks_go_through_the_cluster() {
    let (_server, pool, leases) = database().await;
    // `here` runs on host-a; `remote` on host-b, logged out there.
    place(&pool, "here", Some(("host-a", 60)), None, false).await;
    place(&pool, "remote", Some(("host-b", 60)), None, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_serving(&tmp, &["here"]);
    let view = ClusterView::start(
        pool.clone(),
        "host-a".into(),
        Duration::from_millis(100),
        STALE_AFTER,
    );
    let mut snapshots = view.subscribe();
    tokio::time::timeout(WAIT, snapshots.wait_for(|s| s.sessions.len() == 2))
        .await
        .unwrap()
        .unwrap();
    let (_logs, log_rx) = tokio::sync::mpsc::channel(1);
    let console = wabridge::console::Console::start(engine.clone(), log_rx, 10);
    console.show_cluster(view.subscribe());
    let nudges = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = nudges.clone();
    console.act_through_cluster(wabridge::cluster::control::ClusterControl {
        node: "host-a".into(),
        leases,
        take_now: Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
    });
    let (notices, mut notice) = tokio::sync::mpsc::channel(4);
    let ask = |request| console.execute_detached(request, notices.clone());

    // `a`: the new session is the cluster's, and this host's lease manager
    // is asked to take it now; nothing runs it before a lease is held.
    ask(wabridge::console::wire::Request::AddSession {
        session: id("new-shop"),
    });
    let added = eventually("new-shop in the cluster", || async {
        settings(&pool, "new-shop").await
    })
    .await;
    assert_eq!(added, (None, false, 0));
    assert_eq!(nudges.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(engine.snapshot(&id("new-shop")).is_none());

    // `w` on host-b's session: saved for host-b to apply, the operator told
    // so, and its logout kept (a webhook is not a start).
    ask(wabridge::console::wire::Request::SetWebhook {
        session: id("remote"),
        url: "https://erp.example/new-hook".into(),
        token: None,
    });
    let answer = tokio::time::timeout(WAIT, notice.recv()).await.unwrap();
    assert_eq!(
        answer.as_deref(),
        Some("remote: saved; host-b serves it and applies it within seconds")
    );
    assert_eq!(
        settings(&pool, "remote").await,
        Some((Some("https://erp.example/new-hook".into()), true, 1))
    );

    // `w` on the session served here: at once, and in the cluster's row.
    ask(wabridge::console::wire::Request::SetWebhook {
        session: id("here"),
        url: "https://erp.example/here".into(),
        token: Some("t0ken".into()),
    });
    let row = eventually("here's new webhook in the cluster", || async {
        settings(&pool, "here")
            .await
            .filter(|(url, ..)| url.is_some())
    })
    .await;
    assert_eq!(row, (Some("https://erp.example/here".into()), false, 1));
    let files = wabridge::session_files::SessionFiles::new(
        &DataDir::new(tmp.path().join("data")),
        &id("here"),
    );
    assert_eq!(
        files.load_settings().unwrap().webhook_url.as_deref(),
        Some("https://erp.example/here")
    );

    // `n`: no host of a cluster sends to NATS yet; nothing is saved.
    ask(wabridge::console::wire::Request::SetNatsSubject {
        session: id("here"),
        subject: "erp.acme".into(),
    });
    let answer = tokio::time::timeout(WAIT, notice.recv()).await.unwrap();
    assert_eq!(
        answer.as_deref(),
        Some(format!("here: {}", NO_OWN_PREFIX_IN_CLUSTER).as_str())
    );
    assert_eq!(files.load_settings().unwrap().nats_subject, None);
    engine.shutdown().await;
}
