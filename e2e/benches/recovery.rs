//! Recovery of many sessions from a network outage, on the real binary:
//! 100 paired sessions run in one `--headless` process inside a network
//! namespace of the bench's own, the simulator across a veth pair; the path
//! is black-holed (iptables DROP: no FIN, no RST, as Wi-Fi going off or a
//! NAT forgetting the flows) until every session has noticed, held a while
//! longer so the retries find nobody, then restored. Figures:
//! - time from the black hole to each session noticing (first, last), with
//!   the default liveness bound (`whatsapp.dead_after`, 30 s);
//! - time from restore to the first and the last session Connected again
//!   (the seed promises 60 s for one session);
//! - the most connections the simulator saw handshaking at once (the cap is
//!   `whatsapp.max_concurrent_handshakes`, 10);
//! - CPU of the process from restore until all are back.
//!
//! Needs root, iproute2 and iptables (as the network tests). Prints figures;
//! asserts none. Run: `cargo bench -p wabridge-e2e --bench recovery`

#[path = "shared/proc_stats.rs"]
mod proc_stats;
#[path = "shared/stderr_lines.rs"]
mod stderr_lines;

use proc_stats::cpu_seconds;
use stderr_lines::Lines;
use wabridge_sim::netns::NetPath;
use wabridge_sim::pairing;
use wabridge_sim::sim::Simulator;

use std::process::Stdio;
use std::time::{Duration, Instant};

use wabridge::paths::DataDir;

const SESSIONS: usize = 100;
/// How long the path stays dead after the last session noticed.
const HELD_AFTER_NOTICED: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(180);

/// How many of `lines` say each distinct reason (the text after `Status:`).
fn reasons(lines: &[(Instant, String)]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (_, line) in lines {
        let reason = line
            .split_once("Status: ")
            .map_or(line.as_str(), |(_, r)| r);
        *counts.entry(reason).or_default() += 1;
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{n} × {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Seconds from `from` to the first, the median and the last of `lines`
/// (which came in order).
fn span(from: Instant, lines: &[(Instant, String)]) -> (f64, f64, f64) {
    let secs = |i: usize| lines[i].0.duration_since(from).as_secs_f64();
    (secs(0), secs(lines.len() / 2), secs(lines.len() - 1))
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut path = NetPath::create();
    let sim = Simulator::start_on(&format!("{}:0", path.host_ip()))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let names: Vec<String> = (0..SESSIONS).map(|n| format!("WA-shop-{n:03}")).collect();
    let started = Instant::now();
    pairing::pair_many(&sim, &DataDir::new(&data), &names).await;
    println!(
        "paired {SESSIONS} sessions in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The product's defaults: backoff 5 s … 60 s, liveness bound 30 s,
    // 10 handshakes at once.
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n\n[whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n",
            sim.ws_url()
        ),
    )
    .unwrap();
    let mut command = path.command(env!("CARGO_BIN_EXE_insecure-sim-client"));
    command
        .args(["--headless", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("HOME", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // `ip netns exec` execs the program: the child's pid is wabridge's.
    let mut child = command.spawn().expect("start wabridge in the namespace");
    let lines = Lines::follow(child.stderr.take().unwrap());
    lines.first_for_each("WhatsApp Connected:", &names, WAIT);
    println!(
        "all {SESSIONS} connected {:.1}s after start",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    sim.take_handshake_peak();

    lines.skip_past();
    path.black_hole();
    let off = Instant::now();
    let noticed = lines.first_for_each("Connection closed for", &names, WAIT);
    let (first, median, last) = span(off, &noticed);
    println!(
        "black hole noticed by the first session after {first:.1}s, half after {median:.1}s, all {SESSIONS} after {last:.1}s (bound 30s): {}",
        reasons(&noticed)
    );
    std::thread::sleep(HELD_AFTER_NOTICED);

    let cpu_before = cpu_seconds(child.id());
    path.restore();
    let on = Instant::now();
    let back = lines.first_for_each("WhatsApp Connected:", &names, WAIT);
    let storm = on.elapsed();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let (first, median, last) = span(on, &back);
    println!(
        "after {:.0}s without a network: first session connected {first:.1}s after restore, half after {median:.1}s, all {SESSIONS} after {last:.1}s (the seed allows 60s)",
        on.duration_since(off).as_secs_f64()
    );
    println!(
        "handshakes at once, most seen by the simulator: {} (cap 10)",
        sim.take_handshake_peak()
    );
    println!(
        "CPU from restore to all connected: {cpu:.2}s in {:.1}s ({:.0} % of one core)",
        storm.as_secs_f64(),
        cpu / storm.as_secs_f64() * 100.0
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
