//! Memory and start-up of the real binary holding many sessions: resident
//! memory of one `wabridge --headless` process with 1, 20 and 100 paired
//! sessions connected to the loopback simulator (idle), and the time from
//! start to all of them Connected (saved credentials, no QR).
//! Prints figures; asserts none.
//!
//! Run: `cargo bench -p wabridge-e2e --bench sessions_rss`

use wabridge_sim::pairing;
use wabridge_sim::sim;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sim::Simulator;
use wabridge::paths::DataDir;

const SESSIONS: usize = 100;
/// How long each process sits idle before its memory is read.
const SETTLE: Duration = Duration::from_secs(5);

fn name(n: usize) -> String {
    format!("WA-shop-{n:03}")
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let paired = DataDir::new(tmp.path().join("paired"));

    let started = Instant::now();
    let names: Vec<String> = (0..SESSIONS).map(name).collect();
    pairing::pair_many(&sim, &paired, &names).await;
    println!(
        "paired {SESSIONS} sessions through the simulator in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    println!("sessions  start→all Connected  RSS idle");
    let mut figures = Vec::new();
    for count in [0, 1, 20, SESSIONS] {
        let data = tmp.path().join(format!("run-{count}"));
        copy_sessions(paired.root(), &data, count);
        let (elapsed, rss_kib) = run_binary(&sim, &data, tmp.path(), count);
        println!(
            "{count:>8}  {:>17.0}ms  {:>6.1} MiB",
            elapsed.as_secs_f64() * 1000.0,
            rss_kib as f64 / 1024.0
        );
        figures.push((count, rss_kib));
    }
    let rss = |n: usize| figures.iter().find(|(c, _)| *c == n).unwrap().1 as f64;
    println!(
        "per extra session: {:.0} KiB (1 → {SESSIONS})",
        (rss(SESSIONS) - rss(1)) / (SESSIONS - 1) as f64
    );
}

fn copy_sessions(from: &Path, to: &Path, count: usize) {
    for n in 0..count {
        let source = from.join("sessions").join(name(n));
        let target = to.join("sessions").join(name(n));
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
}

/// Starts the binary on `data`, waits for `count` "WhatsApp Connected"
/// lines, lets it idle, reads its RSS, stops it with SIGTERM.
fn run_binary(sim: &Simulator, data: &Path, scratch: &Path, count: usize) -> (Duration, u64) {
    let config = scratch.join(format!("config-{count}.toml"));
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n",
            sim.ws_url()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_insecure-sim-client"))
        .args(["--headless", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .env("HOME", scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wabridge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("WhatsApp Connected:") && tx.send(()).is_err() {
                break;
            }
        }
    });
    for _ in 0..count {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("every session connects");
    }
    let elapsed = started.elapsed();
    std::thread::sleep(SETTLE);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    (elapsed, rss)
}
