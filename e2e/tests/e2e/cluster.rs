//! Two real processes (`insecure-sim-client`) with `[cluster]` on one
//! PostgreSQL and one simulator, each with its own data dir and node name.
//! Sessions paired into the database are shared between them by lease; a
//! host killed with SIGKILL loses its sessions to the survivor within the
//! lease TTL and a few seconds (no QR, every message that arrived meanwhile
//! delivered, and every message the dead host had persisted but could not
//! deliver delivered by the survivor under its original delivery id, never
//! two logins of one device at once), and a host paused
//! past its leases drops its sessions on waking while the other keeps them.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pairing::{self, backend};
use support::process::{Running, free_port, headless};
use support::receiver::Receiver;
use support::sim::{Addressing, Person, Simulator};
use wabridge::cluster::manager::LeaseStore;
use wabridge::cluster::store::PgLeases;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::{FenceSource, PgBackend, pg_store};
use wabridge::engine::{Engine, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge_sim::postgres::TestPostgres;

const TTL: Duration = Duration::from_secs(6);
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// The database, the simulator and the paired sessions (id → device).
pub(crate) struct Setup {
    _server: TestPostgres,
    url: String,
    pub(crate) leases: PgLeases,
    pub(crate) sim: Simulator,
    pub(crate) devices: BTreeMap<String, u32>,
    pub(crate) tmp: tempfile::TempDir,
}

/// Pairs `count` sessions into a fresh database through an in-process
/// engine on `PgBackend` (the phone scans each QR), adds them to
/// `cluster_sessions` with `webhook`, and leaves their leases expired, so
/// the hosts started next take them.
pub(crate) async fn setup(count: usize, webhook: &str) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let url = server.url();
    let pool = pg_store::pool_from_url(&url).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool };
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..count).map(|i| format!("shop{i}")).collect();
    let devices = tokio::time::timeout(
        WAIT,
        pairing::pair_into_database(&sim, &leases, &names, webhook, &tmp.path().join("pairing")),
    )
    .await
    .expect("every session paired and its pre-keys uploaded");
    Setup {
        _server: server,
        url,
        leases,
        sim,
        devices,
        tmp,
    }
}

/// One host: the real binary with `[cluster]`, headless.
pub(crate) struct Host {
    pub(crate) node: String,
    pub(crate) port: u16,
    pub(crate) running: Running,
}

impl Host {
    pub(crate) fn start(setup: &Setup, node: &str) -> Host {
        Self::start_with(setup, node, "")
    }

    /// [`Host::start`] with `more` appended to its config (a `[nats]`
    /// section, say).
    pub(crate) fn start_with(setup: &Setup, node: &str, more: &str) -> Host {
        let dir = setup.tmp.path().join(node);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[backoff]\nbase = \"100ms\"\nmax = \"400ms\"\n\n\
                 [webhook]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n\n\
                 [whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n\n\
                 [cluster]\ndatabase_url = \"{}\"\nnode = \"{node}\"\nlease_ttl_secs = {}\n\
                 renew_every_secs = 2\nmargin_secs = 2\ntakeover_every_secs = 1\ntakeover_batch = 2\n{more}",
                setup.sim.ws_url(),
                setup.url,
                TTL.as_secs()
            ),
        )
        .unwrap();
        let running = Running::spawn(headless(&config, &dir.join("data")));
        Host {
            node: node.into(),
            port,
            running,
        }
    }

    /// The sessions this host serves, from its `/sessions` (which lists
    /// the cluster's others too, as `remote`): id → (status, node).
    pub(crate) async fn sessions(&self) -> BTreeMap<String, (String, String)> {
        let url = format!("http://127.0.0.1:{}/sessions", self.port);
        let Ok(response) = reqwest::get(&url).await else {
            return BTreeMap::new();
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            return BTreeMap::new();
        };
        body["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["remote"] != true)
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    (
                        s["status"].as_str().unwrap().to_string(),
                        s["node"].as_str().unwrap_or("").to_string(),
                    ),
                )
            })
            .collect()
    }

    pub(crate) fn connected(sessions: &BTreeMap<String, (String, String)>) -> usize {
        sessions.values().filter(|(s, _)| s == "Connected").count()
    }

    /// Reads what it printed so far.
    fn drain(&mut self) {
        while self.running.next_line(Duration::from_millis(1)).is_some() {}
    }

    fn signal(&self, signal: &str) {
        let pid = self.running.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

/// Waits until both hosts together serve all `count` sessions; the host
/// serving more (or `a` on a tie), then the other.
pub(crate) async fn busier_first<'h>(
    a: &'h mut Host,
    b: &'h mut Host,
    count: usize,
) -> (&'h mut Host, &'h mut Host) {
    let served = until_all_served(&mut [&mut *a, &mut *b], count).await;
    if served[0].len() >= served[1].len() {
        (a, b)
    } else {
        (b, a)
    }
}

/// Waits until both hosts together serve every session Connected, each on
/// its own node's name; returns what each serves.
pub(crate) async fn until_all_served(
    hosts: &mut [&mut Host],
    count: usize,
) -> Vec<BTreeMap<String, (String, String)>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut all = Vec::new();
        for host in hosts.iter() {
            all.push(host.sessions().await);
        }
        let connected: usize = all.iter().map(Host::connected).sum();
        if connected == count {
            for (host, sessions) in hosts.iter().zip(&all) {
                assert!(
                    sessions.values().all(|(_, node)| *node == host.node),
                    "{sessions:?}"
                );
            }
            return all;
        }
        if Instant::now() > deadline {
            for host in hosts.iter_mut() {
                host.drain();
            }
            panic!(
                "not all {count} sessions Connected: {all:?}\n{}",
                hosts
                    .iter()
                    .map(|h| h.running.seen.join("\n"))
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook receiver that answers 500 while told to fail and 200
/// otherwise, and records every request: (delivery id, body, answer).
#[derive(Clone, Default)]
pub(crate) struct Erp {
    failing: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<(String, serde_json::Value, u16)>>>,
    addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
}

impl Erp {
    pub(crate) async fn start() -> Erp {
        let erp = Erp::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        erp.addr.set(listener.local_addr().unwrap()).unwrap();
        let state = erp.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        let status = if state.failing.load(std::sync::atomic::Ordering::SeqCst) {
                            500
                        } else {
                            200
                        };
                        let id = headers
                            .get("x-wabridge-delivery")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let json = serde_json::from_slice(&body).unwrap_or_default();
                        state.seen.lock().unwrap().push((id, json, status));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        erp
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr.get().unwrap())
    }

    fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// The bodies of `event` received so far.
    pub(crate) fn events(&self, event: &str) -> Vec<serde_json::Value> {
        let seen = self.seen.lock().unwrap();
        let bodies = seen.iter().map(|(_, body, _)| body);
        bodies.filter(|b| b["event"] == event).cloned().collect()
    }

    /// Each message id seen in a `messages.upsert`: the delivery ids and
    /// answers of the requests that carried it, in order.
    pub(crate) fn by_message(&self) -> BTreeMap<String, Vec<(String, u16)>> {
        let mut out: BTreeMap<String, Vec<(String, u16)>> = BTreeMap::new();
        for (id, body, status) in self.seen.lock().unwrap().iter() {
            if body["event"] != "messages.upsert" {
                continue;
            }
            for message in body["messages"].as_array().into_iter().flatten() {
                out.entry(message["id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push((id.clone(), *status));
            }
        }
        out
    }

    /// Waits until every message of `ids` satisfies `done`.
    pub(crate) async fn until(
        &self,
        ids: &HashSet<String>,
        within: Duration,
        what: &str,
        done: impl Fn(&[(String, u16)]) -> bool,
    ) -> BTreeMap<String, Vec<(String, u16)>> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.by_message();
            if ids
                .iter()
                .all(|id| seen.get(id).is_some_and(|attempts| done(attempts)))
            {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "not every message {what}: {ids:?} vs {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_host_s_sessions_connect_on_the_survivor_within_the_lease() {
    const COUNT: usize = 6;
    let receiver = Erp::start().await;
    let setup = setup(COUNT, &receiver.url()).await;
    let mut a = Host::start(&setup, "host-a");
    let mut b = Host::start(&setup, "host-b");
    let (dead, survivor) = busier_first(&mut a, &mut b, COUNT).await;
    let moved: Vec<String> = dead.sessions().await.into_keys().collect();
    println!(
        "before: {} serves {}, {} serves {}",
        dead.node,
        moved.len(),
        survivor.node,
        COUNT - moved.len()
    );

    // The ERP fails while messages reach the host about to die: each is
    // persisted (in the database) and attempted under its delivery id,
    // never delivered there.
    receiver.fail(true);
    let asha = Person::asha();
    let mut stranded = HashSet::new();
    for name in &moved {
        let device = setup.devices[name];
        stranded.insert(
            setup
                .sim
                .send_text(
                    device,
                    &asha,
                    Addressing::LidWithPn,
                    &format!("before {name}"),
                )
                .await
                .unwrap(),
        );
    }
    let attempted = receiver
        .until(&stranded, WAIT, "attempted by the host about to die", |a| {
            !a.is_empty()
        })
        .await;
    let original: BTreeMap<String, String> = stranded
        .iter()
        .map(|m| (m.clone(), attempted[m][0].0.clone()))
        .collect();

    // SIGKILL: no goodbye, no release; its leases must expire.
    let killed = Instant::now();
    dead.running.child.kill().unwrap();
    let _ = dead.running.child.wait();
    // The ERP is back; only the survivor can deliver now.
    receiver.fail(false);
    // Messages that arrive while nobody serves the sessions.
    let mut sent = HashSet::new();
    for name in &moved {
        let device = setup.devices[name];
        sent.insert(
            setup
                .sim
                .send_text(device, &asha, Addressing::LidWithPn, &format!("to {name}"))
                .await
                .unwrap(),
        );
    }
    let mut saw_qr = false;
    let failover = loop {
        let sessions = survivor.sessions().await;
        saw_qr |= sessions.values().any(|(s, _)| s == "QR Scan Required");
        if Host::connected(&sessions) == COUNT {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < WAIT,
            "the survivor did not take over: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "failover of {} session(s): all Connected on {} {:.1} s after the kill (lease TTL {:?})",
        moved.len(),
        survivor.node,
        failover.as_secs_f64(),
        TTL
    );
    assert!(
        failover < TTL + Duration::from_secs(8),
        "failover took {failover:?}"
    );
    survivor.drain();
    assert!(!saw_qr, "no session asked for a QR");
    assert_eq!(survivor.running.count("code 1 of"), 0, "no QR printed");
    // Never two live logins of one device at once.
    for (name, device) in &setup.devices {
        assert_eq!(
            setup.sim.peak_logins(*device),
            1,
            "{name} (device {device}) had two logins at once"
        );
    }
    // What arrived while the dead host was gone reaches the ERP.
    let delivered = |attempts: &[(String, u16)]| attempts.iter().any(|(_, s)| *s == 200);
    receiver
        .until(&sent, Duration::from_secs(30), "delivered", delivered)
        .await;
    // What the dead host had persisted but not delivered, the survivor
    // delivers from the database, under the delivery id the dead host
    // used: one id per message, however many attempts.
    let seen = receiver
        .until(
            &stranded,
            Duration::from_secs(30),
            "left by the dead host delivered",
            delivered,
        )
        .await;
    for message in &stranded {
        let ids: HashSet<&String> = seen[message].iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            HashSet::from([&original[message]]),
            "message {message}: {:?}",
            seen[message]
        );
    }
    println!(
        "{} message(s) persisted by {} and refused by the ERP until the kill: all delivered by {} under their original delivery ids",
        stranded.len(),
        dead.node,
        survivor.node
    );
    let owners = setup.leases.owners().await.unwrap();
    assert!(
        owners
            .iter()
            .all(|(_, owner, live)| *owner == survivor.node && *live),
        "{owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_paused_past_its_leases_drops_its_sessions_on_waking() {
    const COUNT: usize = 4;
    let receiver = Receiver::start().await;
    let setup = setup(COUNT, &receiver.url()).await;
    let mut a = Host::start(&setup, "host-a");
    let mut b = Host::start(&setup, "host-b");
    let (paused, other) = busier_first(&mut a, &mut b, COUNT).await;
    let held = paused.sessions().await.len();
    assert!(held > 0);

    // SIGSTOP: its sockets stay open, it renews nothing; the other host
    // takes the leases once they expire.
    paused.signal("-STOP");
    let stopped = Instant::now();
    let deadline = stopped + WAIT;
    loop {
        if Host::connected(&other.sessions().await) == COUNT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} took nothing over",
            other.node
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} took {held} session(s) of the paused {} after {:.1} s",
        other.node,
        paused.node,
        stopped.elapsed().as_secs_f64()
    );
    let leases_before = setup.leases.owners().await.unwrap();
    let fences_before = fences(&setup).await;

    // Awake again, long after its leases ended.
    paused.signal("-CONT");
    let woke = Instant::now();
    loop {
        if paused.sessions().await.is_empty() {
            break;
        }
        assert!(
            woke.elapsed() < Duration::from_secs(10),
            "{} kept serving after waking: {:?}",
            paused.node,
            paused.sessions().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} dropped its {held} session(s) {:.2} s after waking",
        paused.node,
        woke.elapsed().as_secs_f64()
    );
    paused
        .running
        .until_seen("stopped on this host", held, Duration::from_secs(10));
    // It stays out: for two renewal periods and a takeover round more,
    // the other host keeps every session Connected on the same login, and
    // the leases (owner, fence) do not change.
    let logins_before = setup.sim.live_logins();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(Host::connected(&other.sessions().await), COUNT);
    assert!(paused.sessions().await.is_empty());
    paused.drain();
    assert_eq!(
        paused.running.count("lease taken by"),
        held,
        "the woken host took nothing back:\n{}",
        paused.running.seen.join("\n")
    );
    assert_eq!(setup.leases.owners().await.unwrap(), leases_before);
    assert_eq!(fences(&setup).await, fences_before);
    let logins_after = setup.sim.live_logins();
    for (_, device) in setup.devices.iter() {
        let now: Vec<_> = logins_after.iter().filter(|(_, d)| d == device).collect();
        assert_eq!(now.len(), 1, "device {device}: {logins_after:?}");
        assert!(
            logins_before.contains(now[0]),
            "device {device} logged in again: {logins_before:?} -> {logins_after:?}"
        );
    }
    assert!(
        setup
            .leases
            .owners()
            .await
            .unwrap()
            .iter()
            .all(|(_, owner, live)| *owner == other.node && *live)
    );
}

/// Every lease's fence, by session.
async fn fences(setup: &Setup) -> Vec<(String, i64)> {
    let conn = setup.leases.pool.get().await.unwrap();
    conn.query(
        "SELECT session, fence FROM session_leases ORDER BY session",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// `POST /sessions/start` on `host` with `body`: the JSON answer.
async fn start_session(host: &Host, body: serde_json::Value) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/sessions/start", host.port);
    let deadline = Instant::now() + WAIT;
    loop {
        // The API may not listen yet.
        if let Ok(response) = reqwest::Client::new().post(&url).json(&body).send().await {
            return response.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no API on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_started_through_the_api_pairs_on_the_host_that_takes_it() {
    let receiver = Receiver::start().await;
    let setup = setup(0, &receiver.url()).await;
    let mut a = Host::start(&setup, "host-a");
    let answer = start_session(
        &a,
        serde_json::json!({ "sessionId": "newshop", "webhookUrl": receiver.url() }),
    )
    .await;
    assert_eq!(answer["status"], "QR Scan Required", "{answer}");
    assert!(answer["qr"].as_str().unwrap().starts_with("data:image/png"));
    // The host that took the lease shows the code (here on stderr).
    let deadline = Instant::now() + WAIT;
    let payload = loop {
        if let Some(payload) = support::screen::qr_from_screen(&a.running.seen.join("\n")) {
            break payload;
        }
        assert!(Instant::now() < deadline, "no QR printed");
        let _ = a.running.next_line(Duration::from_millis(200));
    };
    assert!(setup.sim.scan(&payload));
    let deadline = Instant::now() + WAIT;
    loop {
        let sessions = a.sessions().await;
        if sessions
            .get("newshop")
            .is_some_and(|(s, _)| s == "Connected")
        {
            assert_eq!(sessions["newshop"].1, "host-a");
            break;
        }
        assert!(Instant::now() < deadline, "{sessions:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Known to the whole cluster: another host sends the caller to the
    // node that serves it.
    let b = Host::start(&setup, "host-b");
    let answer = start_session(&b, serde_json::json!({ "sessionId": "newshop" })).await;
    assert_eq!(answer["node"], "host-a", "{answer}");
    assert!(b.sessions().await.is_empty());
    let owners = setup.leases.owners().await.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].1, "host-a");

    // DELETE on the host serving it logs out and forgets it cluster-wide:
    // no host takes it again.
    let url = format!("http://127.0.0.1:{}/sessions/newshop", a.port);
    let answer: serde_json::Value = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "logged out", "{answer}");
    assert!(setup.leases.owners().await.unwrap().is_empty());
    assert!(setup.leases.takeable().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.sessions().await.is_empty() && b.sessions().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_whose_lease_ended_never_connects_again() {
    let receiver = Receiver::start().await;
    let setup = setup(1, &receiver.url()).await;
    let id = SessionId::parse("shop0").unwrap();
    let device = setup.devices["shop0"];
    let fence = setup
        .leases
        .take(&id, "in-process", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    // The fence the lease manager would hand out, switched off below.
    let held = Arc::new(std::sync::Mutex::new(Some(fence)));
    let source = held.clone();
    let fences: FenceSource = Arc::new(move |_: &SessionId| *source.lock().unwrap());
    let engine = Engine::new(
        PgBackend {
            whatsapp: backend(&setup.sim),
            pool: setup.leases.pool.clone(),
            fences,
        },
        DataDir::new(setup.tmp.path().join("in-process")),
        BackoffPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
    );
    let mut changes = engine.subscribe();
    engine.add_session(&id, None, None).unwrap();
    support::until(&mut changes, "shop0", |s| {
        s.state == SessionState::Connected
    })
    .await;

    // The lease ends; before anything stops the session, its connection
    // drops. The client does not log in again, however often it retries.
    *held.lock().unwrap() = None;
    assert!(setup.sim.act_on(
        support::sim::Target::Device(device),
        support::sim::Action::Close
    ));
    let refused = support::until(&mut changes, "shop0", |s| {
        s.last_close
            .as_ref()
            .is_some_and(|c| c.description.contains("lease"))
    })
    .await;
    assert_ne!(refused.state, SessionState::Connected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        setup.sim.live_logins().iter().all(|(_, d)| *d != device),
        "{:?}",
        setup.sim.live_logins()
    );
    engine.shutdown().await;
}
