//! Failover of many sessions between two cluster hosts: both start on the
//! database holding the paired sessions and share them by lease; the one
//! serving more is killed with SIGKILL; the survivor takes its leases once
//! they expire and connects each session with the credentials in the
//! database. Measured from the kill to each session's "WhatsApp Connected"
//! line on the survivor. It fails if a session never connects there, if
//! any connection was shown a QR code, or if the simulator ever saw two
//! logins of one device at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::host::{Host, START_WAIT, Store};
use super::postgres_server;
use super::{mib, spread};
use wabridge::cluster::lease::LeaseTimings;
use wabridge_sim::sim::{SimEvent, Simulator};

/// The database both hosts share.
pub struct Database<'a> {
    pub url: &'a str,
    pub port: u16,
    /// Every paired session, with its device.
    pub devices: &'a BTreeMap<String, u32>,
}

/// Runs one failover with `timings` on both hosts and prints its figures
/// under `label`; first, with `api_sends`, that many sends each way for
/// the API hop's figures (`api_hop`).
pub async fn measure(
    sim: &Simulator,
    db: &Database<'_>,
    scratch: &Path,
    timings: LeaseTimings,
    label: &str,
    api_sends: Option<usize>,
) {
    let count = db.devices.len();
    println!();
    println!(
        "failover, {label} (lease TTL {}s, renewed every {}s, margin {}s, takeover every {}s × {}):",
        timings.ttl.as_secs(),
        timings.renew_every.as_secs(),
        timings.margin.as_secs(),
        timings.takeover_every.as_secs(),
        timings.takeover_batch
    );
    let qr = QrWatch::start(sim);
    let started = Instant::now();
    let hosts: Vec<Host> = ["host-a", "host-b"]
        .iter()
        .map(|node| {
            let dir = scratch.join(format!("{label}-{node}"));
            Host::start(
                sim,
                &dir,
                &dir.join("data"),
                Store::Postgres {
                    url: db.url,
                    node,
                    timings,
                },
            )
        })
        .collect();
    let served = until_all_served(&hosts, count).await;
    let server = postgres_server::memory_kib(db.port).map_or("-".into(), |(kib, n)| {
        format!("{:.1} MiB in {n} processes", mib(kib))
    });
    println!(
        "  {count} sessions Connected {:.1}s after both started: {} (RSS {}); PostgreSQL server PSS {server}",
        started.elapsed().as_secs_f64(),
        hosts
            .iter()
            .zip(&served)
            .map(|(h, s)| format!("{} {}", h.node, s.len()))
            .collect::<Vec<_>>()
            .join(", "),
        hosts
            .iter()
            .map(|h| format!("{} {:.1} MiB", h.node, mib(h.rss_kib())))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The host serving more dies.
    let mut hosts = hosts.into_iter().zip(served);
    let (first, second) = (hosts.next().unwrap(), hosts.next().unwrap());
    let ((dead, moved), (survivor, _)) = if first.1.len() >= second.1.len() {
        (first, second)
    } else {
        (second, first)
    };
    if let Some(count) = api_sends {
        super::api_hop::measure(sim, &dead, &survivor, &moved, count).await;
    }
    let dead_node = dead.node.clone();
    survivor.lines.skip_past();
    let killed = Instant::now();
    dead.kill();
    let back = survivor.until_connected(&moved);
    let (first, median, p95, last) = spread(killed, &back);
    println!(
        "  kill -9 {dead_node} ({} sessions): Connected on {} after {first:.1}s (first), {median:.1}s (median), {p95:.1}s (p95), {last:.1}s (last)",
        moved.len(),
        survivor.node
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let serving = survivor.connected().await.len();
        if serving == count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} serves {serving} of {count} sessions Connected",
            survivor.node
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Never two logins of one device at once, and no QR anywhere.
    let twice: Vec<String> = db
        .devices
        .iter()
        .filter(|&(_, &device)| sim.peak_logins(device) > 1)
        .map(|(name, device)| format!("{name} (device {device}): {}", sim.peak_logins(*device)))
        .collect();
    let peak = db
        .devices
        .values()
        .map(|&d| sim.peak_logins(d))
        .max()
        .unwrap_or(0);
    println!(
        "  most logins of one device at once, as the simulator saw them: {peak} (over all {count} devices); QR codes shown: {}",
        qr.shown()
    );
    assert!(
        twice.is_empty(),
        "two logins of one device at once: {twice:?}"
    );
    assert_eq!(qr.shown(), 0, "a connection was shown a QR code");
    survivor.stop();
}

/// Waits until the hosts together serve `count` sessions Connected, each
/// on its own node's name; returns what each serves.
async fn until_all_served(hosts: &[Host], count: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let mut all = Vec::new();
        for host in hosts {
            all.push(host.sessions().await);
        }
        let connected = |s: &BTreeMap<String, (String, String)>| -> Vec<String> {
            s.iter()
                .filter(|(_, (status, _))| status == "Connected")
                .map(|(id, _)| id.clone())
                .collect()
        };
        if all.iter().map(|s| connected(s).len()).sum::<usize>() == count {
            for (host, sessions) in hosts.iter().zip(&all) {
                assert!(
                    sessions.values().all(|(_, node)| *node == host.node),
                    "{} shows another node's sessions: {sessions:?}",
                    host.node
                );
            }
            return all.iter().map(connected).collect();
        }
        assert!(
            Instant::now() < deadline,
            "not all {count} sessions Connected: {:?}",
            all.iter().map(|s| connected(s).len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts the QR codes the simulator hands out (`QrRefsSent`) from its
/// start: a session connecting with its saved credentials never gets one.
struct QrWatch {
    shown: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl QrWatch {
    fn start(sim: &Simulator) -> QrWatch {
        let shown = Arc::new(AtomicUsize::new(0));
        let counter = shown.clone();
        let mut events = sim.events();
        let task = tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(SimEvent::QrRefsSent { .. }) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    // Events missed may have been QR codes: the run cannot
                    // say "none".
                    Err(RecvError::Lagged(n)) => panic!("missed {n} simulator events"),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        QrWatch { shown, task }
    }

    fn shown(&self) -> usize {
        assert!(!self.task.is_finished(), "the QR watch stopped");
        self.shown.load(Ordering::SeqCst)
    }
}

impl Drop for QrWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
