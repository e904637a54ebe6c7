//! The real binary's dashboard in a real terminal (tmux) against the
//! loopback simulator, driven by keys as an operator would: the QR is read
//! back from the screen and scanned, the session connects, messages show
//! their sender's number (or say it is hidden), a dropped
//! connection shows its attempt and a ticking countdown, `r` reconnects at
//! once, `l` + `y` unlinks the device, `q` quits and gives the terminal back.
//!
//! Needs tmux (`.ci/run` installs it). Run alone:
//! `cargo test --locked --test tmux_e2e`

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::process::write_dashboard_config;
use support::screen::qr_from_screen;
use support::sim::{Action, Addressing, Person, Simulator, Target};
use support::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pairs_watches_a_retry_reconnects_logs_out_and_quits() {
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_dashboard_config(tmp.path(), &sim.ws_url());
    let data = tmp.path().join("data");
    let command = format!(
        "env HOME={home} TERM=xterm-256color {bin} --config {config} --data-dir {data}",
        home = tmp.path().display(),
        bin = crate::support::process::BINARY,
        config = config.display(),
        data = data.display(),
    );
    // Blocking waits run off the runtime that serves the simulator.
    let sim_for_operator = sim.clone();
    let data_for_operator = data.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        operate(&command, &sim_for_operator, &data_for_operator, runtime)
    })
    .await
    .unwrap();
}

fn operate(command: &str, sim: &Simulator, data: &Path, runtime: tokio::runtime::Handle) {
    let mut sim_events = sim.events();
    let tmux = Tmux::start("e2e", command, 150, 50);
    tmux.until_shows("No sessions yet");

    // Add a session: it asks for an id, then shows a QR to scan.
    tmux.keys(&["a"]);
    tmux.until_shows("Session id");
    tmux.keys(&["shop", "Enter"]);
    tmux.until_shows("code 1 of 6");
    let payload = qr_from_screen(&tmux.capture(true))
        .unwrap_or_else(|| panic!("the QR on screen does not scan:\n{}", tmux.capture(false)));
    assert!(payload.starts_with("2@sim-ref-"), "{payload}");

    // The phone scans it: paired, then Connected with the account's number.
    assert!(sim.scan(&payload), "the QR names a live connection");
    tmux.until("Connected with the phone number", |s| {
        s.contains("● Connected") && s.contains("+15551234567")
    });

    // People write: the stream shows the sender's number, or says plainly
    // that it is hidden.
    let device = runtime.block_on(support::sim::linked_device(&mut sim_events, WAIT));
    let asha = Person::asha();
    let carla = Person::carla();
    runtime.block_on(async {
        sim.send_text(device, &asha, Addressing::LidWithPn, "order 42 please")
            .await
            .unwrap();
        sim.send_text(device, &carla, Addressing::LidHidden, "who am I")
            .await
            .unwrap();
    });
    let stream = tmux.until("both messages in the stream", |s| {
        s.contains("order 42 please") && s.contains("who am I")
    });
    let line_with = |needle: &str| {
        stream
            .lines()
            .find(|l| l.contains(needle))
            .unwrap()
            .to_string()
    };
    assert!(
        line_with("order 42 please").contains("+919075167132"),
        "{stream}"
    );
    assert!(line_with("order 42 please").contains("Asha"), "{stream}");
    assert!(
        line_with("who am I").contains("lid:200000000000077 (number hidden)"),
        "{stream}"
    );

    // The server drops the connection: attempt 1 and a countdown that ticks.
    assert!(sim.act_on(Target::Latest, Action::Close));
    let first = tmux.until_shows("attempt 1 · retry in");
    let seconds = |screen: &str| -> u64 {
        let at = screen.find("retry in ").unwrap() + "retry in ".len();
        screen[at..].split('s').next().unwrap().parse().unwrap()
    };
    let before = seconds(&first);
    let later = tmux.until("the countdown ticking", |s| {
        s.contains("retry in ") && seconds(s) < before
    });
    assert!(seconds(&later) >= 25, "a 30 s backoff: {later}");

    // `r` skips the wait.
    tmux.keys(&["r"]);
    tmux.until("Connected again", |s| {
        s.contains("● Connected") && !s.contains("retry in")
    });

    // `l` asks first; `y` unlinks the device and deletes its credentials.
    tmux.keys(&["l"]);
    tmux.until_shows("y log out");
    tmux.keys(&["y"]);
    tmux.until_shows("Logged Out");
    let store = data.join("sessions/shop/whatsapp.db");
    assert!(!store.exists(), "credentials deleted");

    // `q` quits (nothing is mid-pairing, so no question) and the window closes.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + WAIT;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "wabridge did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}
