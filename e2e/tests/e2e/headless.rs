//! Headless mode (systemd) pairing a session declared in the config, on the
//! real binary against the simulator: the QR printed on stderr scans, it is
//! saved as an owner-only SVG beside the session, the session connects, and
//! the SVG goes away once it is no longer needed.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::process::{Running, headless, write_config};
use support::screen::qr_from_screen;
use support::sim::Simulator;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_prints_a_scannable_qr_saves_it_and_connects() {
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &sim.ws_url(), "[[sessions]]\nid = \"shop\"\n");
    let data = tmp.path().join("data");
    let sim_for_test = sim.clone();
    tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(headless(&config, &data));
        running.expect_line("code 1 of 6", WAIT);
        // The code follows its caption on the next lines; read them back.
        let deadline = Instant::now() + WAIT;
        let payload = loop {
            let printed = running.seen.join("\n");
            if let Some(payload) = qr_from_screen(&printed) {
                break payload;
            }
            assert!(
                Instant::now() < deadline,
                "no scannable QR on stderr:\n{printed}"
            );
            let _ = running.next_line(Duration::from_millis(200));
        };
        let svg = data.join("sessions/shop/qr.svg");
        assert!(
            std::fs::read_to_string(&svg).unwrap().contains("<svg"),
            "the QR is saved as an SVG"
        );
        assert_eq!(
            std::fs::metadata(&svg).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert!(
            sim_for_test.scan(&payload),
            "the printed QR names a live connection"
        );
        running.expect_line("WhatsApp Connected: shop", WAIT);
        // The printer hears of the connection just after the log line.
        let deadline = Instant::now() + WAIT;
        while svg.exists() {
            assert!(
                Instant::now() < deadline,
                "the QR file is removed once connected"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = running.terminate(WAIT);
        assert!(status.success(), "{status:?}");
    })
    .await
    .unwrap();
}
