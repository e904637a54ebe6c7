//! The real binary: config errors, the data-dir lock, the seed's log lines on
//! an unreachable server, and a clean exit on SIGTERM, also mid-connect.

use crate::support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::process::{Running, free_port, wabridge, write_config};

const SOON: Duration = Duration::from_secs(20);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_bad_config_names_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[backoff]\nbase = \"5s\"\nmaximum = \"60s\"\n").unwrap();
    let out = wabridge(&["--headless", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(config.to_str().unwrap()), "{err}");
    assert!(err.contains("line 3, key `backoff.maximum`"), "{err}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = wabridge(&["--headless", "--config", "/nonexistent/wabridge.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent/wabridge.toml"),
        "{err}"
    );
}

#[test]
fn a_hostile_declared_session_id_is_refused_before_touching_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        "ws://127.0.0.1:1/ws/chat",
        "[[sessions]]\nid = \"../../escape\"\n",
    );
    let data = tmp.path().join("data");
    let out = wabridge(&[
        "--headless",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key `sessions.id`"));
    assert!(!tmp.path().join("escape").exists());
    assert!(!data.exists(), "nothing written for a bad config");
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let data = file.join("data");
    let out = wabridge(&["--headless", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not usable"), "{err}");
}

#[test]
fn a_second_instance_on_the_same_data_dir_names_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &format!("ws://127.0.0.1:{}/ws/chat", free_port()),
        "",
    );
    let data = tmp.path().join("data");
    let args = [
        "--headless",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut first = Running::spawn(wabridge(&args));
    first.expect_line("started with 0 session(s)", SOON);

    let out = wabridge(&args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already using data dir"), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");

    assert!(first.terminate(SOON).success());
}

#[test]
fn an_unreachable_server_backs_off_on_schedule_and_keeps_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &format!("ws://127.0.0.1:{}/ws/chat", free_port()),
        "[[sessions]]\nid = \"WA-Test_1\"\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_token = \"s3cret-token\"\n",
    );
    let data = tmp.path().join("data");
    let mut running = Running::spawn(wabridge(&[
        "--headless",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    running.expect_line("Connection closed for WA-Test_1. Status: 408.", SOON);
    running.expect_line(
        "Attempting to reconnect WA-Test_1 (attempt 1) in 0.1s with existing credentials...",
        SOON,
    );
    running.expect_line(
        "Attempting to reconnect WA-Test_1 (attempt 2) in 0.2s",
        SOON,
    );
    running.expect_line(
        "Attempting to reconnect WA-Test_1 (attempt 4) in 0.4s",
        SOON,
    );
    assert!(running.terminate(SOON).success());

    let session = data.join("sessions/WA-Test_1");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&session), 0o700);
    assert_eq!(mode(&session.join("whatsapp.db")), 0o600);
    assert_eq!(mode(&session.join("session.json")), 0o600);
    let log_dir = data.join("logs");
    let log = std::fs::read_dir(&log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Attempting to reconnect WA-Test_1 (attempt 1)"),
        "{text}"
    );
    let everything = format!("{}\n{text}", running.seen.join("\n"));
    assert!(
        !everything.contains("s3cret-token"),
        "the webhook token leaked into a log"
    );
}

#[test]
fn sigterm_mid_connect_exits_cleanly_and_keeps_the_session() {
    // Accepts the TCP connection and never answers: the client is stuck in
    // the WebSocket/Noise handshake when the signal arrives.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &format!("ws://127.0.0.1:{port}/ws/chat"),
        "[[sessions]]\nid = \"s1\"\n",
    );
    let data = tmp.path().join("data");
    let mut running = Running::spawn(wabridge(&[
        "--headless",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]));
    let (_socket, _) = silent.accept().unwrap();
    running.expect_line("started with 1 session(s)", SOON);
    let status = running.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    running.expect_line(
        "shutting down: disconnecting sessions (credentials kept)",
        SOON,
    );
    assert!(data.join("sessions/s1/whatsapp.db").exists());
}

#[test]
fn a_cluster_database_out_of_reach_stops_the_start_without_showing_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        tmp.path(),
        "ws://127.0.0.1:1/ws/chat",
        &format!(
            "[cluster]\ndatabase_url = \"postgres://wabridge:s3cret-pw@127.0.0.1:{port}/wabridge\"\nnode = \"host-a\"\n"
        ),
    );
    let data = tmp.path().join("data");
    let out = wabridge(&[
        "--headless",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cluster database postgres://wabridge:***@127.0.0.1:{port}/wabridge"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    let logs: String = std::fs::read_dir(data.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect();
    assert!(!logs.contains("s3cret-pw"), "{logs}");
}
