//! A real PostgreSQL server for one test: `initdb` into a fresh temporary
//! folder, `pg_ctl start` on 127.0.0.1 at a free port, stopped and removed
//! on drop. Durability is off (`fsync=off`): a test's database dies with it.
//!
//! [`TestPostgres::start_with`] can turn TLS on (`ssl = on`) with a
//! certificate a [`TestCa`] made for the test (rcgen), ask for client
//! certificates, or a password.
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

/// How [`TestPostgres::start_with`] sets the server up; the default is
/// [`TestPostgres::start`]'s: plaintext, every connection trusted.
#[derive(Default)]
pub struct Setup<'a> {
    /// `ssl = on` with this certificate and key (plaintext is still
    /// accepted, as a server with `ssl = on` does).
    pub tls: Option<&'a Issued>,
    /// Connections over TCP must be TLS with a client certificate that
    /// this CA signed, its common name the user (`hostssl … cert`).
    pub client_ca: Option<&'a TestCa>,
    /// The `postgres` user's password; connections over TCP must give it
    /// (SCRAM-SHA-256, the method channel binding needs).
    pub password: Option<&'a str>,
}

impl TestPostgres {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> TestPostgres {
        TestPostgres::start_with(Setup::default())
    }

    /// Starts a server set up as `setup` says and waits until it accepts
    /// connections.
    pub fn start_with(setup: Setup<'_>) -> TestPostgres {
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
        let mut initdb = server.command(&init);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync"]);
        match setup.password {
            Some(password) => {
                let file = server.file("password", password.as_bytes());
                initdb
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", file.display()));
            }
            None => {
                initdb.args(["-A", "trust"]);
            }
        }
        run(&mut initdb);
        if let Some(issued) = setup.tls {
            server.file("data/server.crt", issued.cert_pem.as_bytes());
            server.file("data/server.key", issued.key_pem.as_bytes());
            let mut conf =
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                    .to_string();
            if let Some(ca) = setup.client_ca {
                server.file("data/client-ca.crt", ca.cert_pem().as_bytes());
                conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
                // Over TCP only TLS with a certificate of that CA.
                server.file(
                    "data/pg_hba.conf",
                    b"local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n",
                );
            }
            append(&data.join("postgresql.conf"), &conf);
        }
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

    /// The server's log: what it said about refused connections.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Writes `bytes` at `relative` in the server's folder, readable only
    /// by the server's user (PostgreSQL refuses a key others can read).
    fn file(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(relative);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres_user {
            run(Command::new("chown").arg("postgres:").arg(&path));
        }
        path
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

/// A certificate authority made for one test (rcgen, ECDSA P-256), and the
/// certificates it signs.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA called `name` (its common name).
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA's certificate, PEM: what a client is given to trust it.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `path` and returns it.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.cert_pem()).unwrap();
        path.to_path_buf()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate for the database user `user` (its common name,
    /// which PostgreSQL's `cert` method compares with the user).
    pub fn client(&self, user: &str) -> Issued {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: rcgen::CertificateParams) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Issued {
    /// Writes the certificate and the key as `<stem>.crt` and `<stem>.key`
    /// in `dir` (the key readable by its owner only, as libpq asks).
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
