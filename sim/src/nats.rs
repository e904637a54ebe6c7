//! A real NATS server with JetStream for one test: Debian's `nats-server`
//! on 127.0.0.1 at a free port, its store in a fresh temporary folder,
//! killed and removed on drop.
//!
//! The test can stop it gracefully ([`TestNats::stop`], SIGTERM), crash it
//! ([`TestNats::kill`], SIGKILL) and start it again on the same port and
//! store ([`TestNats::start_again`]), which is what a client's reconnect and
//! the stream's duplicate window are tested against.
//!
//! [`TestNats::start_with`] can turn TLS on with a certificate a
//! [`TestCa`] made for the test, and ask for a user and password.
//!
//! Unlike PostgreSQL, nats-server runs as root as it does as anyone else, so
//! it always runs as the test's own user.
//!
//! Everything here blocks (std::process); async tests call it through
//! `tokio::task::spawn_blocking`.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use crate::postgres::{Issued, TestCa};

/// How long a start may take before the test fails (a busy CI machine; the
/// server is ready in about 10 ms here).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a graceful stop may take.
const STOP_WITHIN: Duration = Duration::from_secs(20);

pub struct TestNats {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The command line, the same for every start.
    args: Vec<OsString>,
    child: Option<Child>,
    /// Drains the running server's stderr until it closes.
    drain: Option<std::thread::JoinHandle<()>>,
    /// Every line the server printed, over all its starts.
    output: Arc<Mutex<Vec<String>>>,
}

/// How [`TestNats::start_with`] sets the server up; the default is
/// [`TestNats::start`]'s: plaintext, anyone may connect.
#[derive(Default)]
pub struct Setup<'a> {
    /// TLS with this certificate and key (`--tls`); the server then
    /// refuses plaintext clients.
    pub tls: Option<&'a Issued>,
    /// Clients must give this user and password (`--user`, `--pass`).
    pub user_and_password: Option<(&'a str, &'a str)>,
}

impl TestNats {
    /// The user and password of [`start_tls_with_password`](TestNats::start_tls_with_password).
    pub const USER: &str = "bridge";
    pub const PASSWORD: &str = "s3cret";

    /// Starts, off the async runtime, a server with TLS (a certificate of
    /// `ca` for 127.0.0.1 and localhost) whose clients must log in as
    /// [`USER`](TestNats::USER) with [`PASSWORD`](TestNats::PASSWORD).
    pub async fn start_tls_with_password(ca: &TestCa) -> TestNats {
        let issued = ca.server(&["127.0.0.1", "localhost"]);
        tokio::task::spawn_blocking(move || {
            TestNats::start_with(Setup {
                tls: Some(&issued),
                user_and_password: Some((TestNats::USER, TestNats::PASSWORD)),
            })
        })
        .await
        .expect("the server's start did not panic")
    }

    /// Starts a server with JetStream and waits until it is ready.
    pub fn start() -> TestNats {
        TestNats::start_with(Setup::default())
    }

    /// Starts a server set up as `setup` says and waits until it is ready.
    pub fn start_with(setup: Setup<'_>) -> TestNats {
        let bin = binary();
        let dir = tempfile::Builder::new()
            .prefix("wabridge-nats-")
            .tempdir()
            .expect("a temporary folder for nats-server");
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        // The port is picked by binding port 0; the server takes it a moment
        // later (another process taking it in between fails the start). It
        // stays the server's port across start_again.
        let port = crate::process::free_port();
        let mut args: Vec<OsString> = vec!["-js".into(), "-sd".into(), store.into_os_string()];
        args.extend(["-a", "127.0.0.1", "-p"].map(OsString::from));
        args.push(port.to_string().into());
        if let Some(issued) = setup.tls {
            let (cert, key) = issued.write(dir.path(), "server");
            args.push("--tls".into());
            args.push("--tlscert".into());
            args.push(cert.into_os_string());
            args.push("--tlskey".into());
            args.push(key.into_os_string());
        }
        if let Some((user, password)) = setup.user_and_password {
            args.extend(["--user", user, "--pass", password].map(OsString::from));
        }
        let mut server = TestNats {
            dir,
            bin,
            port,
            args,
            child: None,
            drain: None,
            output: Arc::default(),
        };
        server.run();
        server
    }

    /// `nats://127.0.0.1:<port>` (with TLS on, the client upgrades the
    /// connection when the server asks it to).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store (`-sd`): streams live in
    /// `jetstream/$G/streams/<NAME>/` under it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Everything the server printed so far (over all its starts).
    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Whether the server process is running (started and not yet stopped
    /// or killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A graceful stop: SIGTERM, then waits for the exit (the server
    /// answers what it has in flight and closes its store first).
    pub fn stop(&mut self) -> ExitStatus {
        let child = self
            .child
            .as_mut()
            .expect("stop(): the server is not running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("`kill` runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_WITHIN;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                self.join_drain();
                panic!(
                    "nats-server did not exit within {STOP_WITHIN:?} of SIGTERM; it said:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        self.join_drain();
        status
    }

    /// Freezes the server (SIGSTOP): its connections stay open and what a
    /// client sends waits in the kernel, unanswered, as behind a stalled
    /// link. [`resume`](TestNats::resume) lets it go on.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT): it reads what waited.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("the server is not running")
            .id()
            .to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("`kill` runs");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// A crash: SIGKILL, then waits for the exit.
    pub fn kill(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("kill(): the server is not running");
        child.kill().expect("SIGKILL nats-server");
        let _ = child.wait();
        self.join_drain();
    }

    /// Starts the server again after [`stop`](TestNats::stop) or
    /// [`kill`](TestNats::kill): same port, same store, same setup; waits
    /// until it is ready.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again(): the server is still running; stop() or kill() it first"
        );
        self.run();
    }

    /// Spawns the server and waits for "Server is ready" on its stderr,
    /// which a thread keeps draining afterwards so the server never blocks
    /// on a full pipe.
    fn run(&mut self) {
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        let stderr = child.stderr.take().unwrap();
        let output = Arc::clone(&self.output);
        let (ready_tx, ready) = mpsc::channel();
        let drain = std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                let is_ready = text.contains("Server is ready");
                output.lock().unwrap().push(text);
                if is_ready {
                    let _ = ready_tx.send(());
                }
            }
            // ready_tx drops here: a wait still going learns the server
            // closed its stderr (it exited) without getting ready.
        });
        self.child = Some(child);
        self.drain = Some(drain);
        match ready.recv_timeout(READY_WITHIN) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.kill();
                panic!(
                    "nats-server was not ready within {READY_WITHIN:?} ({} {}); it said:\n{}",
                    self.bin.display(),
                    self.describe_args(),
                    self.log()
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = match self.child.take().map(|mut child| child.wait()) {
                    Some(Ok(status)) => status.to_string(),
                    _ => "no exit status".to_string(),
                };
                self.join_drain();
                panic!(
                    "nats-server exited before it was ready ({status}; {} {}); it said:\n{}",
                    self.bin.display(),
                    self.describe_args(),
                    self.log()
                );
            }
        }
    }

    fn join_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }

    fn describe_args(&self) -> String {
        self.args
            .iter()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_drain();
        // The TempDir removes the store.
    }
}

/// Debian's `nats-server`: the one on PATH, else /usr/sbin/nats-server
/// (PATH may lack /usr/sbin for a non-root user).
pub fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .find(|candidate| is_file(candidate))
        })
        .unwrap_or_default();
    match on_path {
        Some(found) => found,
        None if is_file(Path::new("/usr/sbin/nats-server")) => "/usr/sbin/nats-server".into(),
        None => panic!(
            "nats-server is not installed (not on PATH nor at /usr/sbin/nats-server): install \
             Debian's nats-server package (`apt-get install nats-server`; `bash .ci/run` does)"
        ),
    }
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file())
}
