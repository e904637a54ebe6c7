//! The same workload on one host of each backend: alone on SQLite (its
//! data dir), and with `[cluster]` on PostgreSQL (the only host of the
//! cluster). For each: resident memory idle with no session and with
//! `sessions` Connected; the forwarding rate of `messages` sent by the
//! simulator and delivered to a receiver on 127.0.0.1 that answers 200;
//! and, with the receiver down, how fast the same number is taken in
//! (received, decrypted, persisted, acknowledged), then how fast it drains
//! once the receiver is back. CPU used meanwhile by the host and by the
//! PostgreSQL server.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::host::{Host, Store};
use super::proc_stats::cpu_seconds;
use super::{Parts, mib, postgres_server};
use wabridge::cluster::lease::LeaseTimings;
use wabridge::cluster::store::PgLeases;
use wabridge::paths::{DataDir, SessionId};
use wabridge_sim::pairing;
use wabridge_sim::process::free_port;
use wabridge_sim::receiver::Receiver;
use wabridge_sim::sim::{Addressing, Person, Simulator};

/// How long a host sits idle, its sessions Connected, before its memory
/// is read (as `sessions_rss`).
const SETTLE: Duration = Duration::from_secs(5);
/// How long the messages of one run may take to reach the receiver.
const DELIVERY_WAIT: Duration = Duration::from_secs(300);
/// People writing to each session: the first message of each starts a
/// Signal session (`pkmsg`), the rest continue it.
const WRITERS: u32 = 5;

/// What one backend measured (`None`: that part was not run).
#[derive(Default)]
pub struct Figures {
    pub idle_empty_kib: Option<u64>,
    pub idle_full_kib: Option<u64>,
    /// The PostgreSQL server's processes (PSS, KiB; how many) at the same
    /// two moments.
    pub server_empty: Option<(u64, usize)>,
    pub server_full: Option<(u64, usize)>,
    pub live: Option<Rate>,
    pub drain: Option<Rate>,
}

/// One run of `messages` through a host.
pub struct Rate {
    pub messages: usize,
    /// Live: first send → last message at the receiver. Drain: first
    /// message at the receiver after its return → last.
    pub delivered: Duration,
    /// Drain only: the receiver's return → its first message.
    pub first_after: Option<Duration>,
    /// First send → every message acknowledged to the simulator (each is
    /// in the host's outbox).
    pub acknowledged: Duration,
    /// How long the simulator took to send them all.
    pub sent_in: Duration,
    /// Messages that reached the receiver more than once.
    pub repeats: usize,
    /// CPU seconds over `delivered`: the host, and the PostgreSQL server
    /// (for a host on it).
    pub cpu: (f64, Option<f64>),
}

impl Rate {
    fn per_second(&self, over: Duration) -> String {
        format!("{:.0} msg/s", self.messages as f64 / over.as_secs_f64())
    }
}

/// What the CPU meters read at the start of a run.
struct CpuMeter {
    host: u32,
    host_before: f64,
    server: Option<(u16, std::collections::BTreeMap<u32, f64>)>,
}

impl CpuMeter {
    fn start(host: &Host, server_port: Option<u16>) -> CpuMeter {
        let pid = host.child.id();
        CpuMeter {
            host: pid,
            host_before: cpu_seconds(pid),
            server: server_port.map(|port| (port, postgres_server::cpu(port))),
        }
    }

    fn read(&self) -> (f64, Option<f64>) {
        (
            cpu_seconds(self.host) - self.host_before,
            self.server
                .as_ref()
                .map(|(port, before)| postgres_server::cpu_since(*port, before)),
        )
    }
}

/// The workload's size and the parts to run.
pub struct Workload<'a> {
    pub sessions: usize,
    pub messages: usize,
    pub parts: &'a Parts,
}

/// Session names of a backend: fixed width, so none contains another.
pub fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n:03}")).collect()
}

/// One host alone on SQLite.
pub async fn sqlite(sim: &Simulator, scratch: &Path, work: &Workload<'_>) -> Figures {
    let dir = scratch.join("sqlite");
    let mut figures = Figures::default();
    if work.parts.memory {
        let empty = dir.join("empty");
        let host = Host::start(
            sim,
            &empty,
            &empty.join("data"),
            Store::Sqlite {
                sessions: &[],
                webhook: "",
            },
        );
        host.until_listening().await;
        tokio::time::sleep(SETTLE).await;
        figures.idle_empty_kib = Some(host.rss_kib());
        host.stop();
    }
    let names = names("lite", 0..work.sessions);
    let data = dir.join("data");
    let started = Instant::now();
    let devices = pairing::pair_many_mapped(sim, &DataDir::new(&data), &names).await;
    println!(
        "  SQLite: paired {} sessions in {:.1}s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let devices: Vec<u32> = devices.into_values().collect();

    let receiver = Receiver::start().await;
    let host = Host::start(
        sim,
        &dir.join("live"),
        &data,
        Store::Sqlite {
            sessions: &names,
            webhook: &receiver.url(),
        },
    );
    host.until_connected(&names);
    if work.parts.memory {
        tokio::time::sleep(SETTLE).await;
        figures.idle_full_kib = Some(host.rss_kib());
    }
    if work.parts.forwarding {
        let cpu = CpuMeter::start(&host, None);
        figures.live = Some(live(sim, &devices, &receiver, work.messages, "SQLite", &cpu).await);
    }
    host.stop();

    if work.parts.drain {
        let port = free_port();
        let host = Host::start(
            sim,
            &dir.join("drain"),
            &data,
            Store::Sqlite {
                sessions: &names,
                webhook: &hook_on(port),
            },
        );
        host.until_connected(&names);
        let cpu = || CpuMeter::start(&host, None);
        figures.drain = Some(drain(sim, &devices, port, work.messages, "SQLite", cpu).await);
        host.stop();
    }
    figures
}

/// The cluster's database, and what the PostgreSQL run paired into it
/// (name → device) for the failover to reuse.
pub struct Cluster<'a> {
    pub leases: &'a PgLeases,
    pub url: &'a str,
    pub port: u16,
    pub paired: BTreeMap<String, u32>,
}

/// One cluster host on PostgreSQL, the only one: the database's sessions
/// are all its own. Pairs `work.sessions` into the database (`pg-000`…),
/// which the caller's later runs find there.
pub async fn postgres(
    sim: &Simulator,
    cluster: &mut Cluster<'_>,
    scratch: &Path,
    work: &Workload<'_>,
) -> Figures {
    let dir = scratch.join("postgres");
    let single = |name: &str| {
        let dir = dir.join(name);
        move |sim: &Simulator, url: &str| {
            Host::start(
                sim,
                &dir,
                &dir.join("data"),
                Store::Postgres {
                    url,
                    node: "single",
                    timings: LeaseTimings::default(),
                },
            )
        }
    };
    let server_port = cluster.port;
    let server_kib = move || postgres_server::memory_kib(server_port);
    let mut figures = Figures::default();
    if work.parts.memory {
        assert!(
            cluster.paired.is_empty(),
            "the empty host's database has sessions"
        );
        let host = single("empty")(sim, cluster.url);
        host.until_listening().await;
        tokio::time::sleep(SETTLE).await;
        figures.idle_empty_kib = Some(host.rss_kib());
        figures.server_empty = server_kib();
        host.stop();
    }
    let names = names("pg", 0..work.sessions);
    let receiver = Receiver::start().await;
    let started = Instant::now();
    let devices = pairing::pair_into_database(
        sim,
        cluster.leases,
        &names,
        &receiver.url(),
        &dir.join("pairing"),
    )
    .await;
    println!(
        "  PostgreSQL: paired {} sessions into the database in {:.1}s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    cluster.paired.extend(devices.clone());
    let devices: Vec<u32> = devices.into_values().collect();

    let host = single("live")(sim, cluster.url);
    host.until_connected(&names);
    if work.parts.memory {
        tokio::time::sleep(SETTLE).await;
        figures.idle_full_kib = Some(host.rss_kib());
        figures.server_full = server_kib();
    }
    if work.parts.forwarding {
        let cpu = CpuMeter::start(&host, Some(server_port));
        figures.live =
            Some(live(sim, &devices, &receiver, work.messages, "PostgreSQL", &cpu).await);
    }
    host.stop();

    if work.parts.drain {
        let port = free_port();
        // A session's webhook lives in `cluster_sessions`.
        for name in &names {
            let id = SessionId::parse(name).unwrap();
            cluster
                .leases
                .add_session(&id, Some(&hook_on(port)), None)
                .await
                .unwrap();
        }
        let host = single("drain")(sim, cluster.url);
        host.until_connected(&names);
        let cpu = || CpuMeter::start(&host, Some(server_port));
        figures.drain = Some(drain(sim, &devices, port, work.messages, "PostgreSQL", cpu).await);
        host.stop();
    }
    figures
}

fn hook_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hook")
}

/// Sends `messages` to `devices` with the receiver up: first send → last
/// message at the receiver.
async fn live(
    sim: &Simulator,
    devices: &[u32],
    receiver: &Receiver,
    messages: usize,
    label: &str,
    cpu: &CpuMeter,
) -> Rate {
    let started = Instant::now();
    let (ids, sent_in) = send(sim, devices, messages, label).await;
    let deadline = started + DELIVERY_WAIT;
    let mut acknowledged = None;
    let delivered = loop {
        if acknowledged.is_none() && all_acknowledged(sim, devices) {
            acknowledged = Some(started.elapsed());
        }
        if let (Some(done), Some(_)) = (delivered(receiver, &ids), acknowledged) {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: {} message(s) reached the receiver (repeats included) of {messages} sent, after {DELIVERY_WAIT:?}",
            receiver.upserted_messages(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Rate {
        messages,
        delivered: delivered.last.duration_since(started),
        first_after: None,
        acknowledged: acknowledged.unwrap(),
        sent_in,
        repeats: delivered.repeats,
        cpu: cpu.read(),
    }
}

/// Sends `messages` to `devices` while nothing listens on `port` (the
/// receiver is down) and waits until the host has acknowledged every one
/// to the simulator (each is in its outbox); then starts the receiver
/// there and waits for them all. `cpu` starts its meter at the return.
async fn drain(
    sim: &Simulator,
    devices: &[u32],
    port: u16,
    messages: usize,
    label: &str,
    cpu: impl FnOnce() -> CpuMeter,
) -> Rate {
    let started = Instant::now();
    let (ids, sent_in) = send(sim, devices, messages, label).await;
    let deadline = started + DELIVERY_WAIT;
    while !all_acknowledged(sim, devices) {
        assert!(
            Instant::now() < deadline,
            "{label}: not every message acknowledged after {DELIVERY_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acknowledged = started.elapsed();
    let cpu = cpu();
    let up = Instant::now();
    let receiver = Receiver::start_on(([127, 0, 0, 1], port).into()).await;
    let deadline = up + DELIVERY_WAIT;
    let delivered = loop {
        if let Some(done) = delivered(&receiver, &ids) {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: {} message(s) drained (repeats included) of {messages}, after {DELIVERY_WAIT:?}",
            receiver.upserted_messages(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Rate {
        messages,
        delivered: delivered.last.duration_since(delivered.first),
        first_after: Some(delivered.first.duration_since(up)),
        acknowledged,
        sent_in,
        repeats: delivered.repeats,
        cpu: cpu.read(),
    }
}

/// The simulator holds no message for `devices` that they have not
/// acknowledged.
fn all_acknowledged(sim: &Simulator, devices: &[u32]) -> bool {
    devices.iter().all(|&d| sim.unreceipted(d) == 0)
}

/// The simulator sends `messages` texts, spread evenly over `devices`
/// (each from one of `WRITERS` people, in turn), every device's at once;
/// returns their ids and how long sending took.
async fn send(
    sim: &Simulator,
    devices: &[u32],
    messages: usize,
    label: &str,
) -> (HashSet<String>, Duration) {
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for (slot, &device) in devices.iter().enumerate() {
        let share = messages / devices.len() + usize::from(slot < messages % devices.len());
        let sim = sim.clone();
        let label = label.to_string();
        senders.spawn(async move {
            let mut ids = Vec::with_capacity(share);
            for n in 0..share {
                let from = Person::numbered(n as u32 % WRITERS);
                let text = format!("{label} order {slot}-{n}: 3 × blue widgets, deliver Friday");
                let id = sim
                    .send_text(device, &from, Addressing::LidWithPn, &text)
                    .await
                    .unwrap_or_else(|e| panic!("sending to device {device}: {e:#}"));
                ids.push(id);
            }
            ids
        });
    }
    let mut ids = HashSet::with_capacity(messages);
    while let Some(sent) = senders.join_next().await {
        ids.extend(sent.expect("a sender"));
    }
    assert_eq!(ids.len(), messages, "message ids are unique");
    (ids, started.elapsed())
}

/// When the messages of one run reached the receiver.
struct Delivered {
    first: Instant,
    last: Instant,
    /// Messages that came more than once.
    repeats: usize,
}

/// `Some` once every message of `ids` reached `receiver`.
fn delivered(receiver: &Receiver, ids: &HashSet<String>) -> Option<Delivered> {
    // Cheap to poll; the bodies are read once all may be there.
    if receiver.upserted_messages() < ids.len() {
        return None;
    }
    let mut seen = HashSet::new();
    let mut repeats = 0;
    let mut span: Option<(Instant, Instant)> = None;
    for request in receiver.received() {
        let body = request.json();
        if body["event"] != "messages.upsert" {
            continue;
        }
        for message in body["messages"].as_array().into_iter().flatten() {
            let id = message["id"].as_str().unwrap_or_default();
            if !ids.contains(id) {
                continue;
            }
            if !seen.insert(id.to_string()) {
                repeats += 1;
            }
            let at = request.at;
            span = Some(span.map_or((at, at), |(a, b)| (a.min(at), b.max(at))));
        }
    }
    let (first, last) = span?;
    (seen.len() == ids.len()).then_some(Delivered {
        first,
        last,
        repeats,
    })
}

/// Prints the two backends side by side.
pub fn print(work: &Workload<'_>, sqlite: &Figures, postgres: &Figures) {
    let (n, m) = (work.sessions, work.messages);
    println!();
    println!(
        "{:<48} │ {:>18} │ {:>28}",
        "one host", "SQLite", "PostgreSQL (cluster of one)"
    );
    let row = |what: &str, show: &dyn Fn(&Figures) -> Option<String>| {
        let cell = |f: &Figures| show(f).unwrap_or_else(|| "-".into());
        println!("{what:<48} │ {:>18} │ {:>28}", cell(sqlite), cell(postgres));
    };
    let mib_of = |kib: Option<u64>| kib.map(|k| format!("{:.1} MiB", mib(k)));
    let secs = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    let cpu = |(host, server): (f64, Option<f64>)| match server {
        Some(server) => format!("{host:.1}s / {server:.1}s"),
        None => format!("{host:.1}s / -"),
    };
    row("wabridge RSS, idle, 0 sessions", &|f| {
        mib_of(f.idle_empty_kib)
    });
    row(
        &format!("wabridge RSS, idle, {n} sessions Connected"),
        &|f| mib_of(f.idle_full_kib),
    );
    row("  per extra session", &|f| {
        let (empty, full) = (f.idle_empty_kib?, f.idle_full_kib?);
        Some(format!(
            "{:.0} KiB",
            (full as f64 - empty as f64) / n.max(1) as f64
        ))
    });
    let server = |memory: Option<(u64, usize)>| {
        memory.map(|(kib, count)| format!("{:.1} MiB in {count} proc.", mib(kib)))
    };
    row("PostgreSQL server PSS (apart), 0 sessions", &|f| {
        server(f.server_empty)
    });
    row(
        &format!("PostgreSQL server PSS (apart), {n} sessions"),
        &|f| server(f.server_full),
    );
    row(&format!("forwarding {m} messages, receiver up"), &|f| {
        f.live.as_ref().map(|r| r.per_second(r.delivered))
    });
    row("  first send → last at the receiver", &|f| {
        f.live.as_ref().map(|r| secs(r.delivered))
    });
    row("  first send → all acknowledged to WhatsApp", &|f| {
        f.live.as_ref().map(|r| secs(r.acknowledged))
    });
    row("  the simulator sent them all in", &|f| {
        f.live.as_ref().map(|r| secs(r.sent_in))
    });
    row("  CPU meanwhile: wabridge / PostgreSQL server", &|f| {
        f.live.as_ref().map(|r| cpu(r.cpu))
    });
    row(&format!("taking in {m} messages, receiver down"), &|f| {
        f.drain.as_ref().map(|r| r.per_second(r.acknowledged))
    });
    row("  first send → all acknowledged to WhatsApp", &|f| {
        f.drain.as_ref().map(|r| secs(r.acknowledged))
    });
    row(&format!("draining those {m}, receiver back"), &|f| {
        f.drain.as_ref().map(|r| r.per_second(r.delivered))
    });
    row("  receiver back → first at the receiver", &|f| {
        f.drain.as_ref().and_then(|r| r.first_after).map(secs)
    });
    row("  first → last at the receiver", &|f| {
        f.drain.as_ref().map(|r| secs(r.delivered))
    });
    row("  CPU meanwhile: wabridge / PostgreSQL server", &|f| {
        f.drain.as_ref().map(|r| cpu(r.cpu))
    });
    row("messages delivered twice (live, drain)", &|f| {
        let repeats = |r: &Option<Rate>| r.as_ref().map_or("-".into(), |r| r.repeats.to_string());
        (f.live.is_some() || f.drain.is_some())
            .then(|| format!("{}, {}", repeats(&f.live), repeats(&f.drain)))
    });
}
