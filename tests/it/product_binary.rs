//! The product binary never skips the WhatsApp server's certificate check,
//! whichever cargo command built it: run against the loopback simulator,
//! whose certificate chain is self-made (zero signatures), every `wabridge`
//! in `target/` refuses it. A normal build connects, sees the chain fail, and
//! reports "server certificate invalid" in the log and in `/sessions`, backing
//! off without ever showing a QR; a build that got the library's bypass
//! compiled in (e.g. by `cargo test --workspace`) refuses to start at all.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::pairing::VERSION;
use support::process::{BINARY, Running, free_port, headless_command};
use support::sim::Simulator;

const WAIT: Duration = Duration::from_secs(40);

/// The binary this test run built, plus any other `wabridge` in `target/`
/// (a `cargo build --release` or `cargo bench` leaves one there).
fn product_binaries() -> Vec<PathBuf> {
    let built = PathBuf::from(BINARY);
    let target = built.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut binaries = vec![built.clone()];
    for profile in ["debug", "release"] {
        let other = target.join(profile).join("wabridge");
        if other.exists() && !binaries.contains(&other) {
            binaries.push(other);
        }
    }
    binaries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wabridge_binary_refuses_the_simulators_certificate() {
    support::install_tls();
    let sim = Simulator::start().await.unwrap();
    for binary in product_binaries() {
        refuses(&binary, &sim).await;
    }
}

async fn refuses(binary: &Path, sim: &Simulator) {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tmp.path().join("config.toml");
    let (major, minor, patch) = VERSION;
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[backoff]\nbase = \"100ms\"\nmax = \"400ms\"\n\
             [whatsapp]\nws_url = \"{}\"\nversion = \"{major}.{minor}.{patch}\"\n\
             [[sessions]]\nid = \"shop\"\n",
            sim.ws_url()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");

    // A build with the bypass compiled in must not even start.
    let guard = Command::new(binary).arg("--version").output().unwrap();
    if guard.status.code() == Some(3) {
        let said = String::from_utf8_lossy(&guard.stderr);
        assert!(
            said.contains("does not check WhatsApp's server certificate"),
            "{}: {said}",
            binary.display()
        );
        return;
    }

    let command = headless_command(binary.to_str().unwrap(), &config, &data);
    let mut running = tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(command);
        running.expect_line("server certificate invalid", WAIT);
        // It keeps backing off with the same words, never offering a QR.
        running.expect_line("Attempting to reconnect shop (attempt 2)", WAIT);
        running
    })
    .await
    .unwrap();
    let closes: Vec<_> = running
        .seen
        .iter()
        .filter(|l| l.contains("Connection closed for shop"))
        .cloned()
        .collect();
    assert!(
        closes
            .iter()
            .all(|l| l.contains("Status: 495") && l.contains("the connection may be intercepted")),
        "{}: {closes:#?}",
        binary.display()
    );
    assert!(
        !running.seen.iter().any(|l| l.contains("QR code")),
        "{} offered a QR for a server it could not verify:\n{}",
        binary.display(),
        running.seen.join("\n")
    );

    let sessions: Value = reqwest::get(format!("http://127.0.0.1:{port}/sessions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shop = &sessions["sessions"][0];
    assert!(
        shop.to_string().contains("server certificate invalid"),
        "/sessions says why: {shop}"
    );
    let status = tokio::task::spawn_blocking(move || running.terminate(WAIT))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
