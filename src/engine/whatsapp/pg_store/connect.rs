//! How this host reaches the cluster database: the URL's TLS settings as
//! libpq users write them (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`),
//! their defaults, and the connection pool built on them.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and verifies
//! nothing itself, so these keys are taken out of the URL here, before
//! tokio-postgres parses the rest, and the TLS checks they ask for are made
//! by our rustls configuration ([`super::tls`]).
//!
//! # Defaults
//!
//! Without `sslmode`:
//! - a CA given (`sslrootcert` or `[cluster] database_ca`): `verify-full`;
//! - every host on this machine (127.0.0.0/8, ::1, `localhost`, a Unix
//!   socket): `prefer`, as libpq does: TLS if the server offers it,
//!   unchecked, else plaintext. The bytes never leave the machine;
//! - otherwise `verify-full` against the system's CA certificates. A
//!   cluster's database is on another machine, and what crosses that link is
//!   the database password and every session's Signal keys: encryption that
//!   does not check whom it talks to gives them to anyone who can answer in
//!   the server's place (a spoofed DNS name, an ARP or BGP hijack), so the
//!   safe default checks the certificate and its name, and an operator who
//!   wants less says so in the URL.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;

use super::tls::{self, Roots, TlsChecks};

/// How many connections one process keeps to the database, shared by all
/// its sessions.
const POOL_SIZE: usize = 16;

/// A store call fails, rather than hangs, when the database cannot be
/// reached (the library reports the store error; the session backs off).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a call waits for a free connection of the pool.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The URL keys handled here rather than by tokio-postgres.
const OUR_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode`, all five values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS if the server offers it, else plaintext; the certificate is
    /// checked only when a CA is given (as libpq does).
    Prefer,
    /// TLS or no connection; the certificate is checked only when a CA is
    /// given, and then like `verify-ca` (libpq's rule).
    Require,
    /// TLS, the certificate's chain checked; not its name.
    VerifyCa,
    /// TLS, the certificate's chain and its name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Which setting a [`SettingsError`] is about, so the config can name its
/// key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// The database URL (including its `sslrootcert`, `sslcert`, `sslkey`).
    Url,
    /// The CA file given beside the URL (`[cluster] database_ca`).
    CaFile,
}

/// A database URL or CA setting that cannot be used; the message never
/// contains the URL's password.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    pub setting: Setting,
    pub message: String,
}

fn url_error(message: impl Into<String>) -> SettingsError {
    SettingsError {
        setting: Setting::Url,
        message: message.into(),
    }
}

/// A client certificate and its key (`sslcert`, `sslkey`).
#[derive(Debug, Clone)]
pub(super) struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the cluster database is and how to reach it: the parsed URL
/// without the TLS keys, and what TLS must check. Made by
/// [`Database::parse`] without touching any file; [`Database::pool`] reads
/// the certificates.
#[derive(Debug, Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    mode: SslMode,
    /// Why this mode: `None` when the URL says it.
    defaulted: Option<&'static str>,
    checks: TlsChecks,
    /// The setting that named the CA, for errors about its file.
    roots_setting: Setting,
    client: Option<ClientIdentity>,
    /// Every host is a Unix socket: PostgreSQL has no TLS there, and
    /// libpq ignores `sslmode`.
    unix_only: bool,
}

impl Database {
    /// Parses a `postgres://` URL; `ca_file` is a CA given beside it
    /// (`[cluster] database_ca`), used when the URL has no `sslrootcert`.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Database, SettingsError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(url_error(
                "it is not a PostgreSQL URL (it must start with postgres:// or postgresql://)",
            ));
        }
        let (rest, ours) = take_our_keys(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| url_error(format!("it is not a PostgreSQL URL: {}", with_causes(&e))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let get = |key: &str| {
            ours.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let explicit = match get("sslmode") {
            Some(value) => Some(SslMode::parse(value).ok_or_else(|| {
                url_error(format!(
                    "sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            })?),
            None => None,
        };
        let in_url = get("sslrootcert");
        if let (Some(in_url), Some(in_config)) = (in_url, ca_file)
            && Path::new(in_url) != in_config
        {
            return Err(SettingsError {
                setting: Setting::CaFile,
                message: format!(
                    "names a CA, and the database URL names another (sslrootcert={in_url}); keep one"
                ),
            });
        }
        let (roots, roots_setting) = match (in_url, ca_file) {
            (Some(""), _) => return Err(url_error("sslrootcert is empty")),
            (Some("system"), _) => (Some(Roots::System), Setting::Url),
            (Some(path), _) => (Some(Roots::File(PathBuf::from(path))), Setting::Url),
            (None, Some(path)) => (Some(Roots::File(path.to_path_buf())), Setting::CaFile),
            (None, None) => (None, Setting::Url),
        };
        let client = match (get("sslcert"), get("sslkey")) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                Some(ClientIdentity {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                })
            }
            (None, None) => None,
            _ => {
                return Err(url_error(
                    "sslcert and sslkey go together: give both (a client certificate and its key) or neither",
                ));
            }
        };
        let (mode, defaulted) = match explicit {
            Some(mode) => (mode, None),
            None if roots.is_some() => {
                (SslMode::VerifyFull, Some("the default when a CA is given"))
            }
            None if on_this_machine(&config) => (
                SslMode::Prefer,
                Some("the default for a database on this machine"),
            ),
            None => (
                SslMode::VerifyFull,
                Some("the default for a database on another machine"),
            ),
        };
        // libpq's rule: the system's store holds every public CA, so
        // checking only the chain against it would accept any certificate
        // anyone can buy; only the name makes it mean something.
        if matches!(roots, Some(Roots::System)) && mode != SslMode::VerifyFull {
            return Err(url_error(format!(
                "sslmode `{}` may not be used with sslrootcert=system (use verify-full)",
                mode.as_str()
            )));
        }
        let checks = match (mode, roots) {
            (SslMode::Disable, _) => TlsChecks::Nothing,
            (SslMode::Prefer | SslMode::Require, None) => TlsChecks::Nothing,
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(roots)) => {
                TlsChecks::Chain(roots)
            }
            (SslMode::VerifyCa, None) => TlsChecks::Chain(Roots::System),
            (SslMode::VerifyFull, roots) => TlsChecks::ChainAndName(roots.unwrap_or(Roots::System)),
        };
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| !matches!(host, Host::Tcp(_)));
        // Nothing to check, and no file to read, where no TLS is made.
        let (checks, client) = if unix_only || mode == SslMode::Disable {
            (TlsChecks::Nothing, None)
        } else {
            (checks, client)
        };
        config.ssl_mode(match mode {
            _ if unix_only => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(Database {
            config,
            mode,
            defaulted,
            checks,
            roots_setting,
            client,
            unix_only,
        })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// What the connection to the database is, for the log at start, e.g.
    /// "TLS, certificate chain checked against the CA in /etc/wabridge/ca.pem
    /// and its name (sslmode=verify-full, the default when a CA is given)".
    pub fn tls_summary(&self) -> String {
        let why = match self.defaulted {
            Some(why) => format!("sslmode={}, {why}", self.mode.as_str()),
            None => format!("sslmode={}", self.mode.as_str()),
        };
        if self.unix_only {
            return format!(
                "plaintext over a Unix socket: PostgreSQL has no TLS there, and the bytes stay on this machine ({why} does not apply)"
            );
        }
        let checked = match &self.checks {
            TlsChecks::Nothing => "server certificate not checked".to_string(),
            TlsChecks::Chain(roots) => format!(
                "certificate chain checked against {}, not its name",
                roots.named()
            ),
            TlsChecks::ChainAndName(roots) => format!(
                "certificate chain checked against {} and its name",
                roots.named()
            ),
        };
        let client = match &self.client {
            Some(identity) => format!(", client certificate {}", identity.cert.display()),
            None => String::new(),
        };
        match self.mode {
            SslMode::Disable => format!("plaintext, no TLS ({why})"),
            SslMode::Prefer => {
                format!("TLS if the server offers it ({checked}{client}), else plaintext ({why})")
            }
            _ => format!("TLS, {checked}{client} ({why})"),
        }
    }

    /// Reads the files the settings name (CA, client certificate and key)
    /// without connecting: the checks a config load makes. The system's CA
    /// store is not read here.
    pub fn check_files(&self) -> Result<(), SettingsError> {
        let setting = self.roots_setting;
        if let TlsChecks::Chain(Roots::File(path)) | TlsChecks::ChainAndName(Roots::File(path)) =
            &self.checks
        {
            tls::read_ca_file(path).map_err(|message| SettingsError { setting, message })?;
        }
        if let Some(identity) = &self.client {
            tls::read_client_identity(identity).map_err(url_error)?;
        }
        Ok(())
    }

    /// Has the server end any transaction of this pool's connections that
    /// sits idle for longer than `limit`, releasing its row locks.
    ///
    /// Why: every fenced write holds its session's lease row `FOR SHARE`
    /// until it commits, and a takeover waits for that. A host frozen or
    /// cut off between a write's statements (a paused VM, a SIGSTOP, a
    /// network partition: its connection stays open on the server) would
    /// hold the row, and so its sessions, for as long as its TCP connection
    /// lives; hours. With the lease TTL as the limit, no write outlives the
    /// lease that fences it by more than one renewal period. An
    /// `idle_in_transaction_session_timeout` the URL's `options` sets
    /// itself wins.
    pub fn transactions_end_within(mut self, limit: std::time::Duration) -> Database {
        let ours = format!(
            "-c idle_in_transaction_session_timeout={}",
            limit.as_millis().max(1)
        );
        // PostgreSQL applies `-c` settings in order: the URL's come after.
        let options = match self.config.get_options() {
            Some(theirs) if !theirs.is_empty() => format!("{ours} {theirs}"),
            _ => ours,
        };
        self.config.options(&options);
        self
    }

    /// A connection pool, shared by every session of the process. Reads the
    /// certificates now (a missing file is an error here, not at the first
    /// query); connects only when a connection is first asked for.
    pub fn pool(&self) -> Result<Pool, SettingsError> {
        let setting = self.roots_setting;
        let connector = tls::Connector::new(&self.checks, self.client.as_ref(), self.mode)
            .map_err(|message| SettingsError { setting, message })?;
        let manager = Manager::from_config(
            self.config.clone(),
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| url_error(format!("cannot make a connection pool: {e}")))
    }

    /// [`Database::pool`] and one connection made at once, so that a
    /// database out of reach, a server without TLS or a certificate that is
    /// not trusted stops the start with a sentence that says which.
    pub async fn open(&self) -> anyhow::Result<Pool> {
        let pool = self.pool()?;
        match pool.get().await {
            Ok(_) => Ok(pool),
            Err(e) => Err(anyhow::anyhow!(self.explain(&e))),
        }
    }

    /// A failed connection in one sentence, without the password.
    fn explain(&self, error: &deadpool_postgres::PoolError) -> String {
        use deadpool_postgres::PoolError;
        let postgres = match error {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => {
                return format!(
                    "no connection to {} within {}s",
                    self.hosts(),
                    CONNECT_TIMEOUT.as_secs()
                );
            }
            other => return format!("cannot connect to {}: {other}", self.hosts()),
        };
        let cause = std::error::Error::source(postgres);
        if let Some(failed) = cause.and_then(|c| c.downcast_ref::<tls::HandshakeFailed>()) {
            return failed.to_string();
        }
        // tokio-postgres' own words when the server answers "no" to TLS.
        if cause.is_some_and(|c| c.to_string() == "server does not support TLS") {
            return format!(
                "the database at {} refused TLS (sslmode={}): the server runs with ssl = off. \
                 Turn ssl on in its postgresql.conf (with a certificate), or, only on a network \
                 you trust, set sslmode=prefer or sslmode=disable in the URL",
                self.hosts(),
                self.mode.as_str()
            );
        }
        format!(
            "cannot connect to {}: {}",
            self.hosts(),
            with_causes(postgres)
        )
    }

    /// `host:port` of every host, for messages (never the user or password).
    fn hosts(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                    Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A pool for a `postgres://` URL with its TLS settings (see the module
/// doc). Connects lazily; see [`Database::open`] to connect at once.
pub fn pool_from_url(database_url: &str) -> anyhow::Result<Pool> {
    let database =
        Database::parse(database_url, None).map_err(|e| anyhow::anyhow!("database_url {e}"))?;
    Ok(database.pool()?)
}

/// An error and the errors under it, "a: b: c" (tokio-postgres shows only
/// its kind, "db error", and keeps what the server said underneath).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut layer = error.source();
    while let Some(inner) = layer {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        layer = inner.source();
    }
    text
}

/// The URL without [`OUR_KEYS`], and those keys' percent-decoded values in
/// the order written.
fn take_our_keys(url: &str) -> Result<(String, Vec<(String, String)>), SettingsError> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|s| s.into_owned())
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key).unwrap_or_default();
        if OUR_KEYS.contains(&key.as_str()) {
            let value = decode(value)
                .map_err(|_| url_error(format!("the value of {key} is not valid UTF-8")))?;
            ours.push((key, value));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((rest, ours))
}

/// Whether every host the URL names is this machine: a loopback address,
/// `localhost` or a Unix socket (and every `hostaddr` a loopback address).
/// No host at all means libpq's Unix socket.
fn on_this_machine(config: &tokio_postgres::Config) -> bool {
    let host_is_local = |host: &Host| match host {
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name.eq_ignore_ascii_case("localhost.")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    };
    config.get_hosts().iter().all(host_is_local)
        && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Database {
        Database::parse(url, None).unwrap()
    }

    #[test]
    fn a_database_on_this_machine_defaults_to_prefer_and_any_other_to_verify_full() {
        for local in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres://u@127.0.0.2/db",
            "postgres://u@%2Frun%2Fpostgresql/db",
        ] {
            assert_eq!(parse(local).mode(), SslMode::Prefer, "{local}");
        }
        for remote in [
            "postgres://u:pw@db.internal:5432/db",
            "postgres://u@10.0.0.5/db",
            "postgres://u@127.0.0.1,db.internal/db",
            // The name is what TLS checks; the address says nothing about it.
            "postgres://u@db.internal/db?hostaddr=127.0.0.1",
        ] {
            let database = parse(remote);
            assert_eq!(database.mode(), SslMode::VerifyFull, "{remote}");
            assert!(
                database.tls_summary().contains("system's CA certificates"),
                "{}",
                database.tls_summary()
            );
        }
    }

    #[test]
    fn a_ca_makes_verify_full_the_default_and_require_checks_the_chain() {
        let database =
            Database::parse("postgres://u@127.0.0.1/db", Some(Path::new("/ca.pem"))).unwrap();
        assert_eq!(database.mode(), SslMode::VerifyFull);
        let summary = database.tls_summary();
        assert!(summary.contains("/ca.pem and its name"), "{summary}");
        let database = parse("postgres://u@db/x?sslmode=require&sslrootcert=%2Fetc%2Fca.pem");
        let summary = database.tls_summary();
        assert!(
            summary.contains("checked against the CA in /etc/ca.pem, not its name"),
            "{summary}"
        );
        let summary = parse("postgres://u@db/x?sslmode=require").tls_summary();
        assert!(summary.contains("not checked"), "{summary}");
    }

    #[test]
    fn every_libpq_mode_is_read_and_others_are_refused_without_the_password() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let database = parse(&format!(
                "postgres://u@db/x?sslmode={mode}&application_name=a"
            ));
            assert_eq!(database.mode().as_str(), mode);
        }
        let err = Database::parse("postgres://u:s3cret@db/x?sslmode=verify_full", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode `verify_full` is not one of"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = Database::parse("postgres://u:s3cret@db/x?sslcert=/c.pem", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslcert and sslkey go together"), "{err}");
        let err = Database::parse(
            "postgres://u:s3cret@db/x?sslmode=require&sslrootcert=system",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("use verify-full"), "{err}");
        let err = Database::parse("postgres://u:s3cret@db/x?bogus=1", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_ca_in_the_url_and_another_in_the_config_is_refused_naming_the_config() {
        let err = Database::parse(
            "postgres://u@db/x?sslrootcert=/a.pem",
            Some(Path::new("/b.pem")),
        )
        .unwrap_err();
        assert_eq!(err.setting, Setting::CaFile);
        assert!(err.message.contains("sslrootcert=/a.pem"), "{err}");
        // The same file in both places is fine.
        Database::parse(
            "postgres://u@db/x?sslrootcert=/a.pem",
            Some(Path::new("/a.pem")),
        )
        .unwrap();
    }

    #[test]
    fn what_can_be_shown_of_a_database_never_holds_its_password() {
        let database = parse("postgres://u:s3cret@db.internal/x?sslmode=require&password=s3cret");
        for shown in [
            format!("{database:?}"),
            database.tls_summary(),
            database.hosts(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn tokio_postgres_sees_the_url_without_our_keys() {
        let (rest, ours) = take_our_keys(
            "postgres://u:p@db/x?sslmode=verify-ca&connect_timeout=3&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db/x?connect_timeout=3");
        assert_eq!(
            ours,
            vec![
                ("sslmode".to_string(), "verify-ca".to_string()),
                ("sslrootcert".to_string(), "/ca.pem".to_string())
            ]
        );
    }

    #[test]
    fn a_unix_socket_has_no_tls_whatever_the_mode() {
        let summary = parse("postgres://u@%2Frun%2Fpg/x?sslmode=verify-full").tls_summary();
        assert!(summary.contains("Unix socket"), "{summary}");
    }
}
