//! Does the runtime stay responsive while the outbox works a slow disk?
//! One `--headless` process (the simulator-accepting build of the app) holds
//! 10 paired sessions; the simulator writes 200 msg/s across them (each one
//! persisted before its ack, then forwarded to a loopback receiver), and
//! meanwhile:
//! - API: `GET /sessions` every 10 ms, p50/p99/max;
//! - keepalive: the simulator pings every connection every 100 ms
//!   (`urn:xmpp:ping`, as the real server does) and times the answer;
//! - forwarding: messages that reached the receiver per second.
//!
//! On the plain disk and with a neighbour that writes and fsyncs 4 MiB at a
//! time on the same filesystem (a busy VPS's slow disk), alternating, for
//! `ROUNDS` rounds: a shared machine's own noise moves single runs a lot, so
//! the summary is the median of the rounds' p99s.
//! Prints figures; asserts none.
//! Run: `cargo bench -p wabridge-e2e --bench slow_disk`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wabridge::paths::DataDir;
use wabridge_sim::pairing;
use wabridge_sim::process::{Running, headless_command, write_config};
use wabridge_sim::receiver::Receiver;
use wabridge_sim::sim::{Action, Addressing, Person, Simulator};

const SESSIONS: usize = 10;
const MESSAGES_PER_SECOND: u64 = 200;
const WINDOW: Duration = Duration::from_secs(10);
const ROUNDS: usize = 3;
const API_EVERY: Duration = Duration::from_millis(10);
const PING_EVERY: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let mut devices = Vec::new();
    for n in 0..SESSIONS {
        let name = format!("shop-{n}");
        devices.push(pairing::pair_and_stop(&sim, &data, &name, Some(&receiver.url())).await);
    }
    let config = write_config(tmp.path(), &sim.ws_url(), "");
    let mut running = Running::spawn(headless_command(
        env!("CARGO_BIN_EXE_insecure-sim-client"),
        &config,
        data.root(),
    ));
    let line = running.expect_line("HTTP API on http://", Duration::from_secs(30));
    let api = line
        .split("HTTP API on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    for _ in 0..SESSIONS {
        running.expect_line("WhatsApp Connected:", Duration::from_secs(60));
    }
    // Let the sessions finish their start-up chatter.
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "{SESSIONS} sessions, {MESSAGES_PER_SECOND} msg/s, {ROUNDS} rounds of {}s per disk",
        WINDOW.as_secs()
    );
    let (mut plain, mut slow) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        plain.push(
            measure(
                &format!("round {round}, plain disk"),
                &sim,
                &receiver,
                &devices,
                &api,
                None,
            )
            .await,
        );
        let neighbour = Neighbour::start(tmp.path().join("neighbour"));
        slow.push(
            measure(
                &format!("round {round}, slow disk (fsync-heavy neighbour)"),
                &sim,
                &receiver,
                &devices,
                &api,
                Some(&neighbour),
            )
            .await,
        );
        neighbour.stop();
    }
    for (label, rounds) in [("plain disk", plain), ("slow disk", slow)] {
        let median = |pick: fn(&P99s) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        println!(
            "median of {ROUNDS} rounds, {label}: API p99 {:.2} ms, keepalive ping p99 {:.2} ms",
            median(|r| r.api_ms),
            median(|r| r.ping_ms)
        );
    }
    running.terminate(Duration::from_secs(20));
}

/// One window's p99s, in milliseconds.
struct P99s {
    api_ms: f64,
    ping_ms: f64,
}

async fn measure(
    label: &str,
    sim: &Simulator,
    receiver: &Receiver,
    devices: &[u32],
    api: &str,
    neighbour: Option<&Neighbour>,
) -> P99s {
    let before = receiver.received().len();
    let _ = sim.take_ping_times();
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(send_load(
        sim.clone(),
        devices.to_vec(),
        running.clone(),
        sent.clone(),
    ));
    let pings = tokio::spawn({
        let (sim, running) = (sim.clone(), running.clone());
        async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                sim.act_on_all(Action::Ping);
            }
        }
    });
    let client = reqwest::Client::new();
    let mut api_times = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(API_EVERY);
    while started.elapsed() < WINDOW {
        tick.tick().await;
        let asked = Instant::now();
        let answer = client.get(format!("{api}/sessions")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            api_times.push(asked.elapsed());
        }
    }
    running.store(false, Ordering::Relaxed);
    let _ = load.await;
    let _ = pings.await;
    let elapsed = started.elapsed().as_secs_f64();
    // What is still on its way is counted once it arrived.
    let sent = sent.load(Ordering::Relaxed) as usize;
    let drain_started = Instant::now();
    while receiver.received().len() - before < sent && drain_started.elapsed().as_secs() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let forwarded = receiver.received().len() - before;
    let all = started.elapsed().as_secs_f64();
    let mut ping_times = sim.take_ping_times();
    println!("{label}:");
    println!("  API GET /sessions   {}", figures(&mut api_times));
    println!("  keepalive ping      {}", figures(&mut ping_times));
    println!(
        "  forwarded           {forwarded} of {sent} sent ({:.0} msg/s sent, all forwarded {:.1}s after the start)",
        sent as f64 / elapsed,
        all
    );
    if let Some(neighbour) = neighbour {
        println!(
            "  neighbour fsyncs    {:.1}/s",
            neighbour.syncs.load(Ordering::Relaxed) as f64
                / neighbour.started.elapsed().as_secs_f64()
        );
    }
    P99s {
        api_ms: p99_ms(&api_times),
        ping_ms: p99_ms(&ping_times),
    }
}

/// The p99 of samples `figures` has sorted; 0 with none.
fn p99_ms(sorted: &[Duration]) -> f64 {
    sorted
        .get(sorted.len() * 99 / 100)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// 200 msg/s spread over the sessions, from one simulated person each.
async fn send_load(
    sim: Simulator,
    devices: Vec<u32>,
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let person = Person::asha();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / MESSAGES_PER_SECOND));
    let mut n = 0usize;
    while running.load(Ordering::Relaxed) {
        tick.tick().await;
        let device = devices[n % devices.len()];
        if sim
            .send_text(device, &person, Addressing::LidWithPn, &format!("load {n}"))
            .await
            .is_ok()
        {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

fn figures(times: &mut [Duration]) -> String {
    if times.is_empty() {
        return "no samples".into();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

/// Another program on the same disk that writes and fsyncs without pause,
/// so every fsync of the outbox waits in the same queue.
struct Neighbour {
    running: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
    started: Instant,
    thread: std::thread::JoinHandle<()>,
}

impl Neighbour {
    fn start(path: PathBuf) -> Neighbour {
        let running = Arc::new(AtomicBool::new(true));
        let syncs = Arc::new(AtomicU64::new(0));
        let (flag, count) = (running.clone(), syncs.clone());
        let thread = std::thread::spawn(move || write_and_sync(&path, &flag, &count));
        Neighbour {
            running,
            syncs,
            started: Instant::now(),
            thread,
        }
    }

    fn stop(self) {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn write_and_sync(path: &Path, running: &AtomicBool, syncs: &AtomicU64) {
    let chunk = vec![0x5a_u8; 4 << 20];
    while running.load(Ordering::Relaxed) {
        let mut file = std::fs::File::create(path).unwrap();
        for _ in 0..4 {
            file.write_all(&chunk).unwrap();
            file.sync_data().unwrap();
            syncs.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = std::fs::remove_file(path);
}
