//! A real PostgreSQL server for one test: `initdb` into a fresh temporary
//! folder, `pg_ctl start` on 127.0.0.1 at a free port, stopped and removed
//! on drop. Durability is off (`fsync=off`): a test's database dies with it.
//!
//! initdb refuses to run as root, so as root the server runs as Debian's
//! `postgres` system user (`runuser`), in a folder handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl TestPostgres {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> TestPostgres {
        let bin = binaries();
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("wabridge-pg-")
            .tempdir()
            .expect("a temporary folder for PostgreSQL");
        if as_postgres_user {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let data = dir.path().join("data");
        let mut server = TestPostgres {
            dir,
            bin,
            port: 0,
            as_postgres_user,
        };
        let init = server.tool("initdb");
        run(server.command(&init).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        // The port is picked by binding port 0; the server takes it a moment
        // later (another process taking it in between fails the start).
        server.port = crate::process::free_port();
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log");
        let ctl = server.tool("pg_ctl");
        let started = server
            .command(&ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl runs");
        if !started.status.success() {
            panic!(
                "PostgreSQL did not start: {}\n{}",
                describe(&started),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        server.wait_until_accepting();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn wait_until_accepting(&self) {
        let ready = self.tool("pg_isready");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .command(&ready)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .output()
                .expect("pg_isready runs");
            if answer.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "PostgreSQL never accepted connections: {}",
                    describe(&answer)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let ctl = self.tool("pg_ctl");
        let _ = self
            .command(&ctl)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        // The TempDir removes the folder (root may delete the postgres
        // user's files; otherwise they are ours).
    }
}

/// The bin folder of the highest installed PostgreSQL version.
fn binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server binaries are not installed (no /usr/lib/postgresql/*/bin/initdb): \
             run `bash .ci/run`, which installs them"
        ),
    }
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("`id -u` runs");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    if !output.status.success() {
        panic!("{command:?} failed: {}", describe(&output));
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
