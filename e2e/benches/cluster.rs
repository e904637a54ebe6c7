//! The cluster on PostgreSQL (issue #16) against a single host on SQLite,
//! in one run, on one machine: real processes (the release build of
//! `insecure-sim-client`, the binary the e2e suite runs against the
//! loopback simulator), a real PostgreSQL server (`TestPostgres`, on
//! 127.0.0.1, fsync off), webhook receivers on 127.0.0.1 answering 200.
//!
//! 1. **Failover** (`cluster/failover.rs`): 100 sessions paired into the
//!    database, two cluster hosts started together share them by lease;
//!    the one serving more is killed with SIGKILL. Printed: the lease
//!    timings, how many each host served, then the time from the kill to
//!    the first, median, 95th-percentile and last of the killed host's
//!    sessions logging "WhatsApp Connected" on the survivor. Read it
//!    against the TTL: the dead host's leases expire between TTL − renew
//!    interval and TTL after the kill (they were renewed together, at some
//!    moment of the last interval); the survivor then takes at most
//!    `takeover_batch` of them per round, so the last one comes about
//!    (sessions ÷ batch) rounds after the first. Run with the default
//!    timings (TTL 15 s, 10 per 2 s round) and again with the e2e test's
//!    short ones (TTL 6 s, 2 per 1 s round). It fails if a session never
//!    connects on the survivor, if the simulator ever held two logins of
//!    one device at once (printed: the most it saw, which must be 1), or
//!    if any connection was shown a QR code.
//! 2. **Forwarding rate** (`cluster/backends.rs`): 20 sessions on one host
//!    alone on SQLite, and 20 others on one cluster host on PostgreSQL
//!    (the cluster's only host). The simulator sends 2,000 Signal-encrypted
//!    texts spread evenly over the sessions (5 people each), all sessions
//!    at once; messages/s from the first send to the last message at the
//!    receiver (one message per POST, the default). Every message must
//!    reach the receiver (it fails otherwise); repeats are counted. "sent
//!    in" says how long the simulator itself took to encrypt and send
//!    them: when it is close to the total, the simulator was the limit.
//!    Then the backlog drain: the same count arrives while the receiver is
//!    down (each acknowledged to WhatsApp once it is in the host's outbox:
//!    the SQLite file, or the database), then the receiver comes back;
//!    messages/s from its return to the last message. Webhook retries run
//!    every 200 ms to 1 s here, so the drain starts within a second.
//! 3. **The API hop** (`cluster/api_hop.rs`, in the default-timings
//!    failover, before the kill; `api-hop` alone runs that failover too): `/sessions/send` asked of the host
//!    serving the session and of the other host, which forwards it;
//!    latency one at a time and sends/s 4 at a time.
//! 4. **Memory per session**: VmRSS of the wabridge process, idle 5 s,
//!    with 0 sessions and with the 20 Connected, for both backends, and
//!    the KiB each extra session costs. The PostgreSQL server's memory is
//!    not in the host's: it is printed apart, as the PSS of all its
//!    processes together (postmaster, workers, one backend per pooled
//!    connection), with 0 and 20 sessions, and in the failover with 100.
//!
//! Figures are printed, not asserted: the machine may be busy.
//!
//! Run: `cargo bench -p wabridge-e2e --bench cluster` (about 7 minutes on
//! 2 cores after the build: pairing 100 sessions is about 2 of them).
//! Knobs, for shorter runs:
//! - `CLUSTER_BENCH_SESSIONS=100`: sessions in the failover;
//! - `CLUSTER_BENCH_BACKEND_SESSIONS=20`: sessions per backend for the
//!   forwarding and memory parts;
//! - `CLUSTER_BENCH_MESSAGES=2000`: messages per forwarding run;
//! - `CLUSTER_BENCH_API_SENDS=200`: sends each way in the API hop;
//! - `CLUSTER_BENCH_PARTS=failover,failover-short,api-hop,memory,forwarding,drain`:
//!   the parts to run (default: all); e.g. `failover` alone.

#[path = "cluster/api_hop.rs"]
mod api_hop;
#[path = "cluster/backends.rs"]
mod backends;
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/host.rs"]
mod host;
#[path = "cluster/postgres_server.rs"]
mod postgres_server;
#[path = "shared/proc_stats.rs"]
mod proc_stats;
#[path = "shared/stderr_lines.rs"]
mod stderr_lines;

use std::time::{Duration, Instant};

use wabridge::cluster::lease::LeaseTimings;
use wabridge::cluster::store::PgLeases;
use wabridge::engine::whatsapp::pg_store;
use wabridge_sim::pairing;
use wabridge_sim::postgres::TestPostgres;
use wabridge_sim::receiver::Receiver;
use wabridge_sim::sim::Simulator;

/// The parts of the run `CLUSTER_BENCH_PARTS` picks.
pub struct Parts {
    pub failover: bool,
    pub api_hop: bool,
    pub failover_short: bool,
    pub memory: bool,
    pub forwarding: bool,
    pub drain: bool,
}

impl Parts {
    fn from_env() -> Parts {
        let list = std::env::var("CLUSTER_BENCH_PARTS")
            .unwrap_or_else(|_| "failover,failover-short,api-hop,memory,forwarding,drain".into());
        let parts: Vec<&str> = list.split(',').map(str::trim).collect();
        let known = [
            "failover",
            "failover-short",
            "api-hop",
            "memory",
            "forwarding",
            "drain",
        ];
        if let Some(unknown) = parts.iter().find(|p| !p.is_empty() && !known.contains(p)) {
            panic!("CLUSTER_BENCH_PARTS: unknown part {unknown:?}; known: {known:?}");
        }
        Parts {
            failover: parts.contains(&"failover"),
            api_hop: parts.contains(&"api-hop"),
            failover_short: parts.contains(&"failover-short"),
            memory: parts.contains(&"memory"),
            forwarding: parts.contains(&"forwarding"),
            drain: parts.contains(&"drain"),
        }
    }

    fn backends(&self) -> bool {
        self.memory || self.forwarding || self.drain
    }
}

/// A count from 1 to `max` from the environment, or `default`.
fn knob(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => panic!("{name}={value:?}: expected a count from 1 to {max}"),
        },
        Err(_) => default,
    }
}

/// The e2e failover test's timings (`e2e/tests/e2e/cluster.rs`).
const SHORT: LeaseTimings = LeaseTimings {
    ttl: Duration::from_secs(6),
    renew_every: Duration::from_secs(2),
    margin: Duration::from_secs(2),
    takeover_every: Duration::from_secs(1),
    takeover_batch: 2,
};

#[tokio::main]
async fn main() {
    let run = Instant::now();
    let failover_sessions = knob("CLUSTER_BENCH_SESSIONS", 100, 999);
    let api_sends = knob("CLUSTER_BENCH_API_SENDS", 200, 100_000);
    let parts = Parts::from_env();
    let work = backends::Workload {
        sessions: knob("CLUSTER_BENCH_BACKEND_SESSIONS", 20, 999),
        messages: knob("CLUSTER_BENCH_MESSAGES", 2000, 1_000_000),
        parts: &parts,
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let url = server.url();
    let pool = pg_store::pool_from_url(&url).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool };
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = backends::Cluster {
        leases: &leases,
        url: &url,
        port: server.port(),
        paired: Default::default(),
    };

    if parts.backends() {
        println!(
            "one host per backend: {} sessions, {} messages",
            work.sessions, work.messages
        );
        let sqlite = backends::sqlite(&sim, tmp.path(), &work).await;
        let postgres = backends::postgres(&sim, &mut cluster, tmp.path(), &work).await;
        backends::print(&work, &sqlite, &postgres);
    }

    if parts.failover || parts.failover_short || parts.api_hop {
        // The sessions paired above stay; the failover adds the rest.
        let have = cluster.paired.len();
        if failover_sessions > have {
            let names = backends::names("pg", have..failover_sessions);
            let receiver = Receiver::start().await;
            let started = Instant::now();
            let devices = pairing::pair_into_database(
                &sim,
                &leases,
                &names,
                &receiver.url(),
                &tmp.path().join("failover-pairing"),
            )
            .await;
            println!();
            println!(
                "paired {} more sessions into the database in {:.1}s",
                names.len(),
                started.elapsed().as_secs_f64()
            );
            cluster.paired.extend(devices);
        }
        let db = failover::Database {
            url: &url,
            port: server.port(),
            devices: &cluster.paired,
        };
        if parts.failover || parts.api_hop {
            failover::measure(
                &sim,
                &db,
                tmp.path(),
                LeaseTimings::default(),
                "default timings",
                parts.api_hop.then_some(api_sends),
            )
            .await;
        }
        if parts.failover_short {
            let label = "the e2e test's timings";
            failover::measure(&sim, &db, tmp.path(), SHORT, label, None).await;
        }
    }
    println!();
    println!("whole run: {:.0}s", run.elapsed().as_secs_f64());
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Seconds from `from` to the first, the median, the 95th percentile and
/// the last of `lines` (which came in order).
fn spread(from: Instant, lines: &[(Instant, String)]) -> (f64, f64, f64, f64) {
    let secs = |i: usize| lines[i].0.duration_since(from).as_secs_f64();
    let n = lines.len();
    let p95 = (n * 95).div_ceil(100).saturating_sub(1);
    (secs(0), secs(n / 2), secs(p95), secs(n - 1))
}
