//! Memory and start-up of the real binary holding many sessions, beside the
//! old bridge's library doing the same: resident memory of one
//! `wabridge --headless` process with 0, 1, 20 and 100 paired sessions
//! connected to the loopback simulator (idle), and the time from start to all
//! of them Connected (saved credentials, no QR); then the same for one Node
//! process holding as many logged-in Baileys sockets against the same
//! simulator (`baileys_peer.mjs`), and the ratio of the two. As wabridge's
//! sessions are paired before they are measured, Baileys' devices log in
//! once, unmeasured, before theirs are (a first login uploads 812 pre-keys,
//! which Baileys then keeps cached for minutes). `live` is how many of the
//! process's logins the simulator holds after the idle period; `!` marks a
//! run where one dropped or reconnected meanwhile.
//!
//! A second table does the same with 1, 20 and 100 sessions that each
//! receive realistic content first (issue #15, `sessions_rss/content.rs`):
//! 1,000 Signal-encrypted messages from 500 people (500 Signal sessions) and
//! in 50 groups of 100 members (5,000 LID mappings), delivered through the
//! simulator; then RSS after the same idle period, how long until every
//! message was receipted, and how many reached wabridge's webhook (a
//! receiver on 127.0.0.1) or were decrypted by the peer. Every run starts
//! from fresh copies of the prepared sessions (wabridge's and Baileys').
//! Prints figures; asserts none.
//!
//! Run: `cargo bench -p wabridge-e2e --bench sessions_rss`. On 2 cores it
//! takes about 35 minutes: pairing 100 sessions ~100 s, Baileys' first
//! logins ~60 s, the idle table ~2 min, wabridge fed ~2 min; the rest is
//! Baileys decrypting 121,000 messages (~10 ms each, its one Node thread
//! busy, the simulator mostly idle).
//!
//! For shorter runs: `SESSIONS_RSS_IDLE=0` leaves out the idle table,
//! `SESSIONS_RSS_CONTENT=1,20` picks the content table's rows (`none`: no
//! table), `SESSIONS_RSS_PEER=0` leaves out Baileys, and
//! `SESSIONS_RSS_HEAPTRACK=<prefix>` runs wabridge under heaptrack, writing
//! `<prefix>-<sessions>.zst` (its RSS column then reads heaptrack's wrapper,
//! not wabridge).
//!
//! The Baileys side needs `node` and `npm` on PATH: the first run installs
//! Baileys into `target/bench-cache/baileys-peer` (from the npm registry;
//! later runs reuse it). Without them it prints why the peer was skipped and
//! reports wabridge alone.

#[path = "sessions_rss/content.rs"]
mod content;
#[path = "shared/proc_stats.rs"]
mod proc_stats;

use proc_stats::vm_rss_kib;

use wabridge_sim::pairing;
use wabridge_sim::sim;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sim::Simulator;
use wabridge::paths::DataDir;

const SESSIONS: usize = 100;
const COUNTS: [usize; 4] = [0, 1, 20, SESSIONS];
/// How long each process sits idle before its memory is read.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a measured process may take to bring all its sessions up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the Baileys peer may take to log its fresh devices in for the
/// first time (one after another, each uploading its pre-keys: about a
/// second each here).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);
const BAILEYS: &str = "baileys@7.0.0-rc14";
const BAILEYS_VERSION: &str = "7.0.0-rc14";

fn name(n: usize) -> String {
    format!("WA-shop-{n:03}")
}

/// One measured process.
struct Run {
    /// Start to all sessions open.
    elapsed: Duration,
    rss_kib: u64,
    /// Its logins the simulator holds after the idle period.
    live: usize,
    /// Every login the simulator held when all were open is the same socket
    /// after the idle period (none dropped, none reconnected).
    stayed: bool,
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
    let peer = BaileysPeer::prepare(&sim, &tmp.path().join("baileys"));
    if let Err(why) = &peer {
        println!("peer skipped: {why}");
    }
    let peer_devices = peer.as_ref().map_or(0..0, BaileysPeer::devices);

    let columns = format!(
        "{:>20}  {:>11}  {:>4} ",
        "start→all open", "RSS idle", "live"
    );
    println!(
        "{:8} │ {:<40} │ {:<40} │",
        "", "wabridge", "Baileys (one Node process)"
    );
    println!("sessions │ {columns} │ {columns} │ RSS ratio");
    let mut figures = Vec::new();
    let idle_counts = if std::env::var("SESSIONS_RSS_IDLE").as_deref() == Ok("0") {
        &[][..]
    } else {
        &COUNTS[..]
    };
    for &count in idle_counts {
        let data = tmp.path().join(format!("run-{count}"));
        copy_sessions(paired.root(), &data, count);
        let ours = run_binary(&sim, &data, tmp.path(), count, peer_devices.clone());
        let theirs = peer.as_ref().ok().map(|peer| peer.run(&sim, count));
        print_row(count, &ours, theirs.as_ref());
        if let Some(Err(why)) = &theirs {
            println!("  Baileys with {count}: {why}");
        }
        figures.push((count, ours, theirs.and_then(Result::ok)));
    }
    print_per_session(&figures);
    content::measure(&sim, &paired, tmp.path(), peer.as_ref().ok()).await;
}

fn print_row(count: usize, ours: &Run, theirs: Option<&Result<Run, String>>) {
    let side = |run: &Run| {
        format!(
            "{:>18.0}ms  {:>7.1} MiB  {:>4}{}",
            run.elapsed.as_secs_f64() * 1000.0,
            mib(run.rss_kib),
            run.live,
            if run.stayed { " " } else { "!" }
        )
    };
    let (baileys, ratio) = match theirs {
        Some(Ok(run)) => (
            side(run),
            format!("{:.2}", ours.rss_kib as f64 / run.rss_kib as f64),
        ),
        Some(Err(_)) => (format!("{:>40}", "failed"), "-".into()),
        None => (format!("{:>40}", "skipped"), "-".into()),
    };
    println!("{count:>8} │ {} │ {baileys} │ {ratio:>9}", side(ours));
    if !ours.stayed || theirs.is_some_and(|t| t.as_ref().is_ok_and(|r| !r.stayed)) {
        println!("  (!: a session dropped or reconnected during the idle period)");
    }
}

/// What one more idle session costs each side, from 1 to `SESSIONS`.
fn print_per_session(figures: &[(usize, Run, Option<Run>)]) {
    let at = |n: usize| figures.iter().find(|(c, ..)| *c == n);
    let (Some((_, ours_1, theirs_1)), Some((_, ours_n, theirs_n))) = (at(1), at(SESSIONS)) else {
        return;
    };
    let per =
        |one: &Run, many: &Run| (many.rss_kib as f64 - one.rss_kib as f64) / (SESSIONS - 1) as f64;
    let ours = per(ours_1, ours_n);
    match (theirs_1, theirs_n) {
        (Some(one), Some(many)) => {
            let theirs = per(one, many);
            println!(
                "per extra session (1 → {SESSIONS}): wabridge {ours:.0} KiB, Baileys {theirs:.0} KiB (ratio {:.2})",
                ours / theirs
            );
        }
        _ => println!("per extra session (1 → {SESSIONS}): wabridge {ours:.0} KiB"),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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
/// `peer_devices` are not wabridge's (the simulator may not have seen the
/// peer's last sockets close yet).
fn run_binary(
    sim: &Simulator,
    data: &Path,
    scratch: &Path,
    count: usize,
    peer_devices: std::ops::Range<u32>,
) -> Run {
    let config = write_config(sim, &scratch.join(format!("config-{count}.toml")), "");
    let (child, elapsed) = start_binary(data, &config, scratch, count);
    let mine = || logins(sim, |d| !peer_devices.contains(&d));
    let (rss_kib, live, stayed) = idle_and_measure(&child, mine(), mine);
    stop(child);
    Run {
        elapsed,
        rss_kib,
        live,
        stayed,
    }
}

/// A config pointing at the simulator; `sessions` is appended as it is.
fn write_config(sim: &Simulator, path: &Path, sessions: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n{sessions}",
            sim.ws_url()
        ),
    )
    .unwrap();
    path.to_path_buf()
}

/// Starts the binary on `config` and `data` and waits for `count`
/// "WhatsApp Connected" lines; returns it and how long that took.
fn start_binary(data: &Path, config: &Path, scratch: &Path, count: usize) -> (Child, Duration) {
    let started = Instant::now();
    let mut command = match std::env::var("HEAPTRACK_OUT") {
        Ok(out) => {
            let mut c = Command::new("heaptrack");
            c.args(["-o", &format!("{out}-{count}")])
                .arg(env!("CARGO_BIN_EXE_insecure-sim-client"));
            c
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_insecure-sim-client")),
    };
    let mut child = command
        .args(["--headless", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("HOME", scratch)
        // As a service runs: with RUST_BACKTRACE set (developers' shells
        // often have it), every library error resolves a backtrace and the
        // figures grow by tens of MiB (wabridge warns about it at start).
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wabridge");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end: a full pipe would stall the process.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("WhatsApp Connected:") {
                let _ = tx.send(());
            }
        }
    });
    for _ in 0..count {
        rx.recv_timeout(OPEN_TIMEOUT)
            .expect("every session connects");
    }
    (child, started.elapsed())
}

/// Lets `child` idle for `SETTLE`, then reads its RSS; `logins` says which
/// simulator connections are the child's. Returns the RSS, how many of them
/// are live at the end, and whether they are the same as `at_open` (its
/// logins when all were open).
fn idle_and_measure(
    child: &Child,
    at_open: Vec<u64>,
    logins: impl Fn() -> Vec<u64>,
) -> (u64, usize, bool) {
    std::thread::sleep(SETTLE);
    let rss = vm_rss_kib(child.id());
    let after = logins();
    (rss, after.len(), at_open == after)
}

/// Connection ids of the simulator's live logins of the devices `mine` picks.
fn logins(sim: &Simulator, mine: impl Fn(u32) -> bool) -> Vec<u64> {
    sim.live_logins()
        .into_iter()
        .filter(|&(_, device)| mine(device))
        .map(|(conn, _)| conn)
        .collect()
}

/// SIGTERM, as a service manager stops either bridge, then reaps it.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The old bridge's library, installed in a cache folder, with `SESSIONS`
/// auth folders that have logged in once (as wabridge's sessions were paired
/// before they are measured).
struct BaileysPeer {
    /// Holds `node_modules/baileys` and a copy of the script beside it: an
    /// ES module resolves `import 'baileys'` from its own folder up, not
    /// through NODE_PATH.
    dir: PathBuf,
    auth: PathBuf,
    /// Its devices are `first_device..first_device + SESSIONS`.
    first_device: u32,
}

impl BaileysPeer {
    fn prepare(sim: &Simulator, auth: &Path) -> Result<BaileysPeer, String> {
        if std::env::var("SESSIONS_RSS_PEER").as_deref() == Ok("0") {
            return Err("SESSIONS_RSS_PEER=0".into());
        }
        let (dir, node_version) = install()?;
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baileys_peer.mjs"),
            dir.join("baileys_peer.mjs"),
        )
        .map_err(|e| format!("copying the script: {e}"))?;
        let peer = BaileysPeer {
            dir,
            auth: auth.to_path_buf(),
            first_device: u32::from(sim.reserve_devices(SESSIONS as u16)),
        };
        // First logins: each device uploads its pre-keys, and Baileys keeps
        // what it generated cached for minutes; that is not an idle
        // session's memory, so this process is not measured.
        let started = Instant::now();
        let mut node = peer.spawn(&sim.ws_url(), SESSIONS, &peer.auth)?;
        let opened = node.wait_all_open(PREPARE_TIMEOUT);
        stop(node.child);
        opened.map_err(|why| format!("first logins: {why}"))?;
        println!(
            "logged {SESSIONS} Baileys devices in for the first time in {:.1}s ({BAILEYS}, node {node_version})",
            started.elapsed().as_secs_f64()
        );
        Ok(peer)
    }

    /// One Node process with the first `count` sessions, measured as
    /// wabridge is.
    fn run(&self, sim: &Simulator, count: usize) -> Result<Run, String> {
        let started = Instant::now();
        let mut node = self.spawn(&sim.ws_url(), count, &self.auth)?;
        if let Err(why) = node.wait_all_open(OPEN_TIMEOUT) {
            stop(node.child);
            return Err(why);
        }
        let elapsed = started.elapsed();
        let devices = self.devices();
        let theirs = || logins(sim, |d| devices.contains(&d));
        let (rss_kib, live, stayed) = idle_and_measure(&node.child, theirs(), theirs);
        let closes = node.closes();
        stop(node.child);
        if !closes.is_empty() {
            return Err(format!("sockets closed: {}", closes.join("; ")));
        }
        Ok(Run {
            elapsed,
            rss_kib,
            live,
            stayed,
        })
    }

    fn devices(&self) -> std::ops::Range<u32> {
        self.first_device..self.first_device + SESSIONS as u32
    }

    /// Node with the first `count` sessions of the auth folders in `auth`.
    fn spawn(&self, ws_url: &str, count: usize, auth: &Path) -> Result<NodeChild, String> {
        let mut child = Command::new("node")
            .arg("baileys_peer.mjs")
            .arg(ws_url)
            .arg(count.to_string())
            .arg(auth)
            .arg(self.first_device.to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting node: {e}"))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut tail = tail.lock().unwrap();
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        Ok(NodeChild {
            child,
            lines,
            seen: Vec::new(),
            stderr_tail,
        })
    }
}

/// The peer's process and what it has printed.
struct NodeChild {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl NodeChild {
    /// Waits for `ALL OPEN`; an error says what went wrong instead, with
    /// the sockets that closed and the end of Node's stderr.
    fn wait_all_open(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == "ALL OPEN" => return Ok(()),
                Ok(line) if line.starts_with("close ") => {
                    // It does not reconnect: ALL OPEN will not come.
                    self.seen.push(line);
                    return Err(self.failure("a socket closed before all were open"));
                }
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("not all open within {within:?}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Let the stderr reader take the last lines.
                    std::thread::sleep(Duration::from_millis(200));
                    return Err(self.failure("node exited"));
                }
            }
        }
    }

    /// `close …` lines printed so far.
    fn closes(&mut self) -> Vec<String> {
        self.seen.extend(self.lines.try_iter());
        self.seen
            .iter()
            .filter(|l| l.starts_with("close "))
            .cloned()
            .collect()
    }

    fn failure(&mut self, what: &str) -> String {
        let opened = self.seen.iter().filter(|l| l.starts_with("open ")).count();
        let closes = self.closes();
        let tail: Vec<String> = self.stderr_tail.lock().unwrap().iter().cloned().collect();
        format!(
            "{what} ({opened} open, closes: [{}]); stderr tail:\n    {}",
            closes.join("; "),
            tail.join("\n    ")
        )
    }
}

/// Baileys in `<target>/bench-cache/baileys-peer`, installed there with npm
/// unless an earlier run did; and node's version.
fn install() -> Result<(PathBuf, String), String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .ok_or("no node")?;
    let node_version = String::from_utf8_lossy(&node.stdout).trim().to_string();
    // The binary under test is `<target>/<profile>/insecure-sim-client`.
    let target = Path::new(env!("CARGO_BIN_EXE_insecure-sim-client"))
        .ancestors()
        .nth(2)
        .ok_or("no target dir")?;
    let dir = target.join("bench-cache").join("baileys-peer");
    let installed = std::fs::read_to_string(dir.join("node_modules/baileys/package.json"))
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{BAILEYS_VERSION}\"")));
    if installed {
        return Ok((dir, node_version));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Its own package.json, so that npm installs here and not into a
    // project it finds further up.
    std::fs::write(
        dir.join("package.json"),
        "{ \"name\": \"baileys-peer\", \"private\": true }\n",
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("installing {BAILEYS} with npm into {}", dir.display());
    let npm = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--legacy-peer-deps",
            BAILEYS,
            "pino",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !npm.status.success() {
        let stderr = String::from_utf8_lossy(&npm.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "npm install failed ({}): {}",
            npm.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok((dir, node_version))
}
