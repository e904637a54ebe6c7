//! The dashboard of a service that runs without one (systemd): the real
//! binary runs `--headless` against the simulator, and `attach` (or a plain
//! start on the same data dir) shows its dashboard in tmux. An operator adds
//! and pairs a session from there (by QR, or by phone code through a passkey
//! prompt), watches a dropped connection count down, reconnects it, points
//! its webhook, detaches while the service goes on forwarding, and a second
//! dashboard sees the same and re-attaches by itself after the service is
//! killed and started again.
//!
//! Needs tmux (`.ci/run` installs it).

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::process::{BINARY, Running, headless, write_dashboard_config};
use support::receiver::Receiver;
use support::screen::qr_from_screen;
use support::sim::{Action, Addressing, Person, Simulator, Target};
use support::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    sim: Simulator,
    config: PathBuf,
    data: PathBuf,
    home: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let sim = Simulator::start().await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        Setup {
            config: write_dashboard_config(tmp.path(), &sim.ws_url()),
            data: tmp.path().join("data"),
            home: tmp.path().to_path_buf(),
            sim,
            _tmp: tmp,
        }
    }

    /// The service, as systemd runs it; returns once its socket is up.
    fn service(&self) -> Running {
        let mut service = Running::spawn(headless(&self.config, &self.data));
        service.expect_line("dashboard socket on", WAIT);
        service
    }

    /// `wabridge <args>` in a tmux window of its own.
    fn dashboard(&self, name: &str, args: &str) -> Tmux {
        let command = format!(
            "env HOME={home} TERM=xterm-256color {BINARY} {args} --config {config} --data-dir {data}",
            home = self.home.display(),
            config = self.config.display(),
            data = self.data.display(),
        );
        Tmux::start(name, &command, 150, 50)
    }
}

fn attached_to(pid: u32) -> impl Fn(&str) -> bool {
    move |screen: &str| screen.contains(&format!("attached to pid {pid}"))
}

fn seconds_left(screen: &str) -> u64 {
    let at = screen.find("retry in ").unwrap() + "retry in ".len();
    screen[at..].split('s').next().unwrap().parse().unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_attaches_pairs_detaches_and_the_dashboard_survives_a_restart() {
    let setup = Setup::new().await;
    let receiver = Receiver::start().await;
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || operate(&setup, &receiver, runtime))
        .await
        .unwrap();
}

fn operate(setup: &Setup, receiver: &Receiver, runtime: tokio::runtime::Handle) {
    let sim = &setup.sim;
    let mut sim_events = sim.events();
    let mut service = setup.service();
    let pid = service.child.id();

    let first = setup.dashboard("attach-1", "attach");
    first.until("attached to the service", attached_to(pid));
    first.until_shows("No sessions yet");

    // Add a session from the attached dashboard; its QR scans off the screen.
    first.keys(&["a"]);
    first.until_shows("Session id");
    first.keys(&["shop", "Enter"]);
    first.until_shows("code 1 of 6");
    let payload = qr_from_screen(&first.capture(true))
        .unwrap_or_else(|| panic!("the QR on screen does not scan:\n{}", first.capture(false)));
    assert!(sim.scan(&payload), "the QR names a live connection");
    first.until("Connected with the phone number", |s| {
        s.contains("● Connected") && s.contains("+15551234567")
    });
    let device = runtime.block_on(support::sim::linked_device(&mut sim_events, WAIT));

    // Point its webhook at the ERP from the dashboard.
    first.keys(&["w"]);
    first.until_shows("Webhook");
    first.keys(&[&receiver.url(), "Enter"]);
    first.until("the prompt closed", |s| !s.contains("(the token stays):"));

    // The server drops the connection: attempt 1, a ticking countdown; `r`.
    assert!(sim.act_on(Target::Latest, Action::Close));
    let before = seconds_left(&first.until_shows("attempt 1 · retry in"));
    first.until("the countdown ticking", |s| {
        s.contains("retry in ") && seconds_left(s) < before
    });
    first.keys(&["r"]);
    first.until("Connected again", |s| {
        s.contains("● Connected") && !s.contains("retry in")
    });

    // A second dashboard: a plain start finds the running service and
    // attaches (saying so) instead of failing on the data dir's lock.
    let second = setup.dashboard("attach-2", "");
    let screen = second.until("the same state", |s| {
        attached_to(pid)(s) && s.contains("● Connected") && s.contains("+15551234567")
    });
    assert!(screen.contains("shop"), "{screen}");

    // `q` detaches: the window closes, the service runs on and forwards.
    first.keys(&["q"]);
    wait_until("the first dashboard's window to close", || !first.alive());
    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the service keeps running after a detach"
    );
    runtime.block_on(async {
        sim.send_text(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            "order 42 please",
        )
        .await
        .unwrap();
        let upserts = receiver.wait_for_upserts(1, WAIT).await;
        assert_eq!(upserts[0]["from"], "919075167132", "{upserts:?}");
    });
    let screen = second.until_shows("order 42 please");
    let line = screen
        .lines()
        .find(|l| l.contains("order 42 please"))
        .unwrap();
    assert!(line.contains("+919075167132"), "{screen}");

    // The service dies; the dashboard says so, then re-attaches by itself
    // to the next run, with the session reconnected from its credentials.
    let _ = service.child.kill();
    let _ = service.child.wait();
    second.until_shows("service gone, reconnecting…");
    let restarted = setup.service();
    let new_pid = restarted.child.id();
    second.until("re-attached to the new run", |s| {
        attached_to(new_pid)(s) && s.contains("● Connected") && !s.contains("service gone")
    });
    // The operator's stream is still there.
    assert!(second.capture(false).contains("order 42 please"));
    second.keys(&["q"]);
    wait_until("the second dashboard's window to close", || !second.alive());
}

/// "A B C D - E F G H" on screen → "ABCDEFGH".
fn pairing_code_on(screen: &str) -> Option<String> {
    screen.lines().find_map(|line| {
        let chars: Vec<char> = line.chars().collect();
        chars.windows(17).find_map(|w| {
            let spaced = (0..17).all(|i| match i {
                8 => w[i] == '-',
                _ if i % 2 == 1 => w[i] == ' ',
                _ => w[i].is_ascii_uppercase() || w[i].is_ascii_digit(),
            });
            spaced.then(|| w.iter().step_by(2).filter(|c| **c != '-').collect())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_dashboard_pairs_by_phone_code_through_a_passkey_prompt() {
    let setup = Setup::new().await;
    tokio::task::spawn_blocking(move || {
        let sim = &setup.sim;
        let service = setup.service();
        let dashboard = setup.dashboard("attach-code", "attach");
        dashboard.until("attached", attached_to(service.child.id()));

        dashboard.keys(&["a"]);
        dashboard.until_shows("Session id");
        dashboard.keys(&["counter", "Enter"]);
        dashboard.until_shows("code 1 of 6");
        dashboard.keys(&["p"]);
        dashboard.until_shows("Pair by phone number");
        dashboard.keys(&["+1 555 123 4567", "Enter"]);
        let screen = dashboard.until("the pairing code", |s| pairing_code_on(s).is_some());
        let code = pairing_code_on(&screen).unwrap();
        assert!(
            screen.contains("Link with phone number instead"),
            "{screen}"
        );

        // The phone wants a passkey first: the dashboard says what to do.
        assert!(sim.demand_passkey(), "a device is being linked");
        dashboard.until_shows("asks for a passkey");

        // Confirmed on the phone, the user types the code: linked.
        assert!(sim.enter_pair_code(&code), "a companion asked for a code");
        dashboard.until("Connected by code", |s| {
            s.contains("● Connected") && s.contains("+15551234567")
        });
        dashboard.keys(&["q"]);
        wait_until("the dashboard's window to close", || !dashboard.alive());
        drop(service);
    })
    .await
    .unwrap();
}
