//! Runs a build of the wabridge application as a child process and follows
//! its stderr line by line. Each test crate names its own binary: the product
//! `wabridge` where the server's certificate must be checked, the insecure
//! simulator client where the test talks to the simulator.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub seen: Vec<String>,
}

pub fn command(binary: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command.args(args);
    // Never read the developer's own config or data.
    command.env("HOME", std::env::temp_dir().join("wabridge-test-home"));
    command.env(
        "XDG_CONFIG_HOME",
        std::env::temp_dir().join("wabridge-test-home/config"),
    );
    command.env(
        "XDG_DATA_HOME",
        std::env::temp_dir().join("wabridge-test-home/data"),
    );
    command
}

/// `<binary> --headless` on `config` and `data`, as systemd runs it.
pub fn headless_command(binary: &str, config: &Path, data: &Path) -> Command {
    command(
        binary,
        &[
            "--headless",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

/// A loopback port nothing listens on now (free to bind, or to find closed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a config that points at `ws_url` with a pinned version and fast
/// backoff; `extra` is appended verbatim.
pub fn write_config(dir: &Path, ws_url: &str, extra: &str) -> std::path::PathBuf {
    write_config_with_backoff(dir, ws_url, ("100ms", "400ms"), extra)
}

/// `write_config` with the backoff's base and cap given, e.g. the seed's
/// `("5s", "60s")`.
pub fn write_config_with_backoff(
    dir: &Path,
    ws_url: &str,
    (base, max): (&str, &str),
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n\n[backoff]\nbase = \"{base}\"\nmax = \"{max}\"\n\n[whatsapp]\nws_url = \"{ws_url}\"\nversion = \"2.3000.1015901307\"\n\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A config for watching the dashboard: a free API port and a backoff
/// slow enough (30 s, then 60 s) to read a countdown off the screen.
pub fn write_dashboard_config(dir: &Path, ws_url: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:{}\"\n\n[backoff]\nbase = \"30s\"\nmax = \"60s\"\n\n[whatsapp]\nws_url = \"{ws_url}\"\nversion = \"2.3000.1015901307\"\n",
            free_port()
        ),
    )
    .unwrap();
    path
}

impl Running {
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wabridge");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stderr line (also kept in `seen`), if one comes in `within`.
    pub fn next_line(&mut self, within: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(within).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// How many stderr lines read so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Reads stderr until `needle` has appeared `times` times; panics with
    /// everything seen after `within`.
    pub fn until_seen(&mut self, needle: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count(needle) < times {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not seen {times} time(s) within {within:?}:\n{}",
                self.seen.join("\n")
            );
            let _ = self.next_line(Duration::from_millis(200));
        }
    }

    /// Reads stderr for `duration` (into `seen`).
    pub fn read_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            let _ = self.next_line(Duration::from_millis(200));
        }
    }

    /// Waits for a stderr line containing `needle`; panics with everything
    /// seen so far after `within`.
    pub fn expect_line(&mut self, needle: &str, within: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit (at most `within`).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect what it printed on the way out.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "wabridge did not exit within {within:?} of SIGTERM; saw:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's libfaketime (package `faketime`, which `.ci/run` installs), to
/// run a binary under a wall clock the test moves.
pub fn libfaketime() -> std::path::PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1"))
        .find(|lib| lib.exists());
    found.expect("libfaketime is missing: install Debian's faketime package (bash .ci/run does)")
}

/// Runs `command` under libfaketime with the wall clock offset read from
/// `offset_file` at every reading (write "+1h" to it to step the clock);
/// the monotonic clock is the real one.
pub fn with_movable_wall_clock(command: &mut Command, offset_file: &Path) {
    std::fs::write(offset_file, "+0\n").unwrap();
    command
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", offset_file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
}
