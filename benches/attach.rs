//! What `wabridge attach` costs: the time from connecting to the service's
//! socket to the first full frame, with 100 sessions and 10,000 buffered
//! messages; and the service's added CPU and memory with 0, 1 and 5
//! dashboards attached while 1,000 msg/s flow. Prints figures; asserts none.
//!
//! The service is the real console and socket over an engine on the
//! scripted backend (no WhatsApp in the way); the dashboards of the second
//! part are separate processes (a few lines of python3 that read the feed
//! as fast as it comes), so the CPU counted is the service's alone.
//!
//! Run: `cargo bench --bench attach`

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use wabridge::console::wire::ServiceFrame;
use wabridge::console::{Console, LinkEvent, client, server};
use wabridge::engine::backend::IncomingMessage;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::phone::{Lookups, resolve};
use wabridge::engine::{Engine, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::tui::app::{App, Msg};
use wabridge::tui::ui;
use wabridge_sim::fake_backend::FakeBackend;

const SESSIONS: usize = 100;
const BUFFERED: usize = 10_000;
const ATTACHES: usize = 20;
const RATE: u64 = 1_000;
const ROUND: Duration = Duration::from_secs(5);
/// Linux's USER_HZ, the unit of /proc/self/stat's CPU times.
const TICKS_PER_SECOND: f64 = 100.0;

fn session(n: usize) -> SessionId {
    SessionId::parse(&format!("WA-shop-{n:03}")).unwrap()
}

fn message(n: usize) -> IncomingMessage {
    let sender = format!("4477009{:05}@s.whatsapp.net", n % 100_000);
    let from = resolve(&Lookups {
        sender: &sender,
        ..Lookups::default()
    });
    IncomingMessage {
        push_name: Some("Customer".into()),
        timestamp: 1_764_000_000 + n as i64,
        ..IncomingMessage::new(
            format!("3EB0{n:08}"),
            sender,
            from,
            format!("order #{n}: 2 boxes of tea, deliver Thursday please"),
        )
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    wabridge::paths::create_private_dir(data.root()).unwrap();
    let backend = FakeBackend::default();
    let policy = BackoffPolicy {
        base: Duration::from_secs(5),
        max: Duration::from_secs(60),
    };
    let engine = Engine::new(backend.clone(), data.clone(), policy);
    let (_logs, log_rx) = tokio::sync::mpsc::channel(16);
    let console = Console::start(engine.clone(), log_rx, BUFFERED);
    let _socket = server::serve(console.clone(), &data).unwrap();

    for n in 0..SESSIONS {
        engine.add_session(&session(n), None, None).unwrap();
    }
    for n in 0..SESSIONS {
        let mut watch = engine.watch(&session(n)).unwrap();
        watch
            .wait_for(|s| s.state == SessionState::Connected)
            .await
            .unwrap();
    }
    for n in 0..BUFFERED {
        let id = session(n % SESSIONS);
        backend.deliver(id.as_str(), &[message(n)]).await.unwrap();
    }
    while console.attach().backfill.messages.len() < BUFFERED {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bytes = serde_json::to_vec(&ServiceFrame::Backfill(console.attach().backfill))
        .unwrap()
        .len();
    println!(
        "attach → first full frame ({SESSIONS} sessions, {BUFFERED} buffered messages, backfill {:.1} MiB):",
        bytes as f64 / (1 << 20) as f64
    );
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..ATTACHES {
        times.push(first_frame(&data).await);
    }
    times.sort();
    println!(
        "  min {:.1} ms, median {:.1} ms, max {:.1} ms over {ATTACHES} attaches (goal < 150 ms)",
        ms(times[0]),
        ms(times[ATTACHES / 2]),
        ms(times[ATTACHES - 1])
    );

    println!(
        "service cost while {RATE} msg/s flow for {}s:",
        ROUND.as_secs()
    );
    let mut next = BUFFERED;
    for dashboards in [0, 1, 5] {
        let readers: Vec<_> = (0..dashboards)
            .map(|_| spawn_reader(&data.console_socket(), ROUND + Duration::from_secs(1)))
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        next = flood(&backend, next).await;
        let cpu = (cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
        let rss = rss_mib();
        let mut received = Vec::new();
        for reader in readers {
            let output = reader.wait_with_output().unwrap();
            received.push(
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0),
            );
        }
        println!(
            "  {dashboards} dashboard(s): CPU {:.1}% of a core, RSS {rss:.1} MiB; frames each dashboard read: {received:?}",
            cpu * 100.0
        );
    }
    engine.shutdown().await;
}

/// Connect, read the hello and the backfill, build the dashboard from it
/// and draw it once.
async fn first_frame(data: &DataDir) -> Duration {
    let started = Instant::now();
    let mut link = client::attach(&data.console_socket()).await.unwrap();
    let mut app = App::new(BUFFERED, true, chrono::FixedOffset::east_opt(0).unwrap());
    loop {
        match link.events.recv().await.unwrap() {
            LinkEvent::Frame(frame) => match *frame {
                ServiceFrame::Hello { service, pid, .. } => {
                    app.update(Msg::Attached { service, pid });
                }
                ServiceFrame::Backfill(backfill) => {
                    app.update(Msg::Backfill(backfill));
                    break;
                }
                _ => {}
            },
            other => panic!("{other:?}"),
        }
    }
    let mut terminal = Terminal::new(TestBackend::new(160, 50)).unwrap();
    let now = wabridge::engine::now();
    terminal.draw(|frame| ui::render(frame, &app, now)).unwrap();
    assert_eq!(app.messages.items().len(), BUFFERED);
    started.elapsed()
}

/// `RATE` messages a second for `ROUND`, spread over the sessions; returns
/// the next message number.
async fn flood(backend: &FakeBackend, mut next: usize) -> usize {
    let tick = Duration::from_millis(10);
    let per_tick = (RATE / 100) as usize;
    let mut interval = tokio::time::interval(tick);
    let end = Instant::now() + ROUND;
    while Instant::now() < end {
        interval.tick().await;
        for _ in 0..per_tick {
            let id = session(next % SESSIONS);
            backend
                .deliver(id.as_str(), &[message(next)])
                .await
                .unwrap();
            next += 1;
        }
    }
    next
}

/// A dashboard in another process: says hello, then reads every frame for
/// `duration` and prints how many it read.
fn spawn_reader(socket: &std::path::Path, duration: Duration) -> std::process::Child {
    let script = format!(
        r#"
import socket, time, json
s = socket.socket(socket.AF_UNIX)
s.connect({socket:?})
s.sendall((json.dumps({{"type": "hello", "protocol": {protocol}, "client": "bench"}}) + "\n").encode())
deadline = time.time() + {seconds}
s.settimeout(0.2)
lines = 0
while time.time() < deadline:
    try:
        chunk = s.recv(1 << 16)
    except socket.timeout:
        continue
    if not chunk:
        break
    lines += chunk.count(b"\n")
# Not counting the hello and the backfill.
print(lines - 2)
"#,
        socket = socket.display().to_string(),
        protocol = wabridge::console::wire::PROTOCOL,
        seconds = duration.as_secs_f64(),
    );
    std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// This process's user + system CPU time, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / TICKS_PER_SECOND
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}
