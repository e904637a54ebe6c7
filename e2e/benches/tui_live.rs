//! The dashboard of the real binary in a real terminal (tmux):
//! - start: spawn to the first frame listing 100 saved sessions;
//! - idle CPU: 100 sessions counting down to their next retry, over 30 s;
//! - key latency: `?` pressed until the help shows (and a key until it
//!   goes), while the simulator pushes 2,000 encrypted messages/s at it.
//!
//! Prints figures; asserts none. Needs tmux.
//! Run: `cargo bench -p wabridge-e2e --bench tui_live`

use wabridge_sim::pairing;
use wabridge_sim::sim;
use wabridge_sim::tmux;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sim::{Addressing, Person, Simulator};
use tmux::Tmux;
use wabridge::paths::DataDir;

const IDLE_WINDOW: Duration = Duration::from_secs(30);
const FLOOD_PER_SECOND: u64 = 2000;
const KEY_SAMPLES: usize = 20;

fn command(config: &Path, data: &Path, home: &Path) -> String {
    format!(
        "exec env HOME={} TERM=xterm-256color {} --config {} --data-dir {}",
        home.display(),
        env!("CARGO_BIN_EXE_insecure-sim-client"),
        config.display(),
        data.display()
    )
}

fn write_config(dir: &Path, ws_url: &str, backoff: &str) -> std::path::PathBuf {
    let path = dir.join(format!("config-{}.toml", backoff.replace(' ', "")));
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[backoff]\nbase = \"{backoff}\"\nmax = \"{backoff}\"\n[whatsapp]\nws_url = \"{ws_url}\"\nversion = \"2.3000.1015901307\"\n"
        ),
    )
    .unwrap();
    path
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that closes the command name: 14 and 15 overall.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    start_and_idle(tmp.path());
    key_latency_under_flood(tmp.path()).await;
}

/// 100 saved sessions whose server is unreachable: each shows a 60 s
/// countdown, so the screen ticks once a second and nothing else happens.
fn start_and_idle(tmp: &Path) {
    let data = tmp.join("idle");
    for n in 0..100 {
        std::fs::create_dir_all(data.join("sessions").join(format!("WA-shop-{n:03}"))).unwrap();
    }
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(tmp, &format!("ws://127.0.0.1:{closed_port}/ws/chat"), "60s");
    let started = Instant::now();
    let tmux = Tmux::start("bench-idle", &command(&config, &data, tmp), 160, 60);
    let mut first_frame = None;
    while first_frame.is_none() {
        if tmux.capture(false).contains("100 sessions") {
            first_frame = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!(
        "start: first frame with 100 saved sessions after {:.0} ms (tmux start included)",
        first_frame.unwrap().as_secs_f64() * 1000.0
    );
    // Let every session reach its countdown.
    std::thread::sleep(Duration::from_secs(3));
    let pid = tmux.pid();
    let before = cpu_ticks(pid);
    std::thread::sleep(IDLE_WINDOW);
    let used = cpu_ticks(pid) - before;
    let share = used as f64 / clock_ticks_per_second() as f64 / IDLE_WINDOW.as_secs_f64();
    println!(
        "idle: 100 sessions counting down for {}s used {:.2}% of a core",
        IDLE_WINDOW.as_secs(),
        share * 100.0
    );
}

async fn key_latency_under_flood(tmp: &Path) {
    let sim = Simulator::start().await.unwrap();
    let data = DataDir::new(tmp.join("flood"));
    let device = pairing::pair_and_stop(&sim, &data, "shop", None).await;
    let config = write_config(tmp, &sim.ws_url(), "5s");
    let tmux = Tmux::start("bench-keys", &command(&config, data.root(), tmp), 160, 50);
    let tmux = Arc::new(tmux);
    {
        let tmux = tmux.clone();
        tokio::task::spawn_blocking(move || tmux.until_shows("● Connected"))
            .await
            .unwrap();
    }

    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn({
        let (sim, flooding, sent) = (sim.clone(), flooding.clone(), sent.clone());
        async move {
            let person = Person::asha();
            // Two messages every millisecond.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while flooding.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..FLOOD_PER_SECOND / 1000 {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    let _ = sim
                        .send_text(
                            device,
                            &person,
                            Addressing::LidWithPn,
                            &format!("flood {n}"),
                        )
                        .await;
                }
            }
        }
    });
    let flood_started = Instant::now();

    let samples = {
        let tmux = tmux.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(2));
            let mut samples = Vec::new();
            for _ in 0..KEY_SAMPLES {
                samples.push(key_to_screen(&tmux, "?", |s| s.contains("Help ·")));
                samples.push(key_to_screen(&tmux, "Escape", |s| !s.contains("Help ·")));
            }
            samples
        })
        .await
        .unwrap()
    };
    flooding.store(false, Ordering::Relaxed);
    let _ = flood.await;
    let rate = sent.load(Ordering::Relaxed) as f64 / flood_started.elapsed().as_secs_f64();
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "keys under a flood of {rate:.0} msg/s: median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} presses (screen polled by tmux capture)",
        ms[ms.len() / 2],
        ms[ms.len() * 9 / 10],
        ms[ms.len() - 1],
        ms.len()
    );
}

/// Time from sending `key` until the screen satisfies `shown`, polling the
/// screen as fast as tmux answers.
fn key_to_screen(tmux: &Tmux, key: &str, shown: impl Fn(&str) -> bool) -> Duration {
    let pressed = Instant::now();
    tmux.keys(&[key]);
    while !shown(&tmux.capture(false)) {
        assert!(
            pressed.elapsed() < Duration::from_secs(30),
            "{key} had no effect"
        );
    }
    pressed.elapsed()
}
