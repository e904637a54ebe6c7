//! TLS to the cluster database, against a real PostgreSQL with `ssl = on`
//! and a certificate a CA made for the test signed (for `localhost`,
//! 127.0.0.1 and db.example): each `sslmode` does what libpq users expect,
//! PostgreSQL itself reports our connection as TLS (`pg_stat_ssl`), every
//! refusal says what is wrong and never the password, the store works over
//! it, and the binary logs the mode it uses.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::process::{Running, headless, wabridge, write_config};
use wabridge::engine::whatsapp::pg_store::{self, Database, PgStore, Pool, SslMode, take_lease};
use wabridge_sim::postgres::{Issued, Setup, TestCa, TestPostgres};
use wacore::store::traits::SignalStore;

const PASSWORD: &str = "s3cret-pw";

/// A server with TLS on, the CA that signed its certificate, and that CA's
/// PEM file.
struct TlsServer {
    server: TestPostgres,
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsServer {
    /// A URL to this server by `host` (the name TLS checks), with the
    /// password (which trust authentication ignores, so a message that
    /// shows it can be caught) and `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
            self.server.port()
        )
    }

    /// A CA file of another CA, which did not sign the server's certificate.
    fn wrong_ca_file(&self) -> PathBuf {
        TestCa::new("Some other CA").write(&self.dir.path().join("other-ca.pem"))
    }
}

async fn tls_server() -> TlsServer {
    let ca = TestCa::new("wabridge test CA");
    let issued = ca.server(&["localhost", "127.0.0.1", "db.example"]);
    start_tls(ca, issued).await
}

async fn start_tls(ca: TestCa, issued: Issued) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let server = tokio::task::spawn_blocking(move || {
        TestPostgres::start_with(Setup {
            tls: Some(&issued),
            ..Setup::default()
        })
    })
    .await
    .unwrap();
    TlsServer {
        server,
        ca_file,
        dir,
    }
}

fn query_with_ca(mode: &str, ca: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", ca.display())
}

/// What PostgreSQL says of the connection serving our queries: TLS or
/// not, and the protocol.
async fn ssl_of_our_backend(pool: &Pool) -> (bool, Option<String>) {
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn open(url: &str, ca: Option<&Path>) -> anyhow::Result<Pool> {
    Database::parse(url, ca)?.open().await
}

/// An error's whole text, checked for the password.
fn refusal(result: anyhow::Result<Pool>) -> String {
    let err = format!("{:#}", result.expect_err("the connection is refused"));
    assert!(!err.contains(PASSWORD), "the password shows: {err}");
    err
}

#[tokio::test]
async fn verify_full_with_the_ca_connects_over_tls_by_address_and_by_name() {
    let tls = tls_server().await;
    for host in ["127.0.0.1", "localhost"] {
        let url = tls.url(host, &query_with_ca("verify-full", &tls.ca_file));
        let pool = open(&url, None).await.unwrap();
        let (ssl, version) = ssl_of_our_backend(&pool).await;
        assert!(ssl, "{host}: PostgreSQL sees a plaintext connection");
        assert_eq!(version.as_deref(), Some("TLSv1.3"), "{host}");
    }
    // The CA given in the config instead of the URL: verify-full by
    // default, whatever the host.
    let pool = open(&tls.url("127.0.0.1", ""), Some(&tls.ca_file))
        .await
        .unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
}

#[tokio::test]
async fn a_certificate_not_signed_by_the_given_ca_is_refused_naming_the_ca() {
    let tls = tls_server().await;
    let wrong = tls.wrong_ca_file();
    let err = refusal(
        open(
            &tls.url("127.0.0.1", &query_with_ca("verify-full", &wrong)),
            None,
        )
        .await,
    );
    assert!(
        err.contains("the certificate of 127.0.0.1 is not trusted")
            && err.contains(&format!("the CA in {}", wrong.display()))
            && err.contains("sslmode=verify-full"),
        "{err}"
    );
    // verify-ca checks the same chain.
    let err = refusal(
        open(
            &tls.url("127.0.0.1", &query_with_ca("verify-ca", &wrong)),
            None,
        )
        .await,
    );
    assert!(err.contains("is not trusted"), "{err}");
    // Without a CA, verify-full checks against the system's store, which
    // does not hold the test CA.
    let err = refusal(open(&tls.url("localhost", "sslmode=verify-full"), None).await);
    assert!(
        err.contains("the certificate of localhost is not trusted")
            && err.contains("the system's CA certificates"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_full_refuses_a_name_the_certificate_does_not_list_and_verify_ca_does_not_check_it()
{
    let tls = tls_server().await;
    // The name is what TLS checks; hostaddr is where the bytes go.
    let host = "wrong.example";
    let query = |mode| format!("hostaddr=127.0.0.1&{}", query_with_ca(mode, &tls.ca_file));
    let err = refusal(open(&tls.url(host, &query("verify-full")), None).await);
    assert!(
        err.contains("the certificate of wrong.example is not issued for that name")
            && err.contains("localhost"),
        "{err}"
    );
    let pool = open(&tls.url(host, &query("verify-ca")), None)
        .await
        .unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
}

#[tokio::test]
async fn a_remote_host_is_checked_by_default_and_a_local_one_is_encrypted_when_offered() {
    let tls = tls_server().await;
    // db.example (reached at 127.0.0.1): another machine as far as the
    // URL says, so verify-full against the system's store by default.
    let remote = tls.url("db.example", "hostaddr=127.0.0.1");
    let database = Database::parse(&remote, None).unwrap();
    assert_eq!(database.mode(), SslMode::VerifyFull);
    let err = refusal(database.open().await);
    assert!(err.contains("not trusted"), "{err}");
    // With its CA it connects, checked.
    let pool = open(&remote, Some(&tls.ca_file)).await.unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
    // On this machine: prefer, so TLS since the server offers it.
    let local = Database::parse(&tls.url("127.0.0.1", ""), None).unwrap();
    assert_eq!(local.mode(), SslMode::Prefer);
    let pool = local.open().await.unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
}

#[tokio::test]
async fn disable_connects_in_plaintext_to_a_server_that_offers_tls() {
    let tls = tls_server().await;
    let pool = open(&tls.url("127.0.0.1", "sslmode=disable"), None)
        .await
        .unwrap();
    assert_eq!(ssl_of_our_backend(&pool).await, (false, None));
}

#[tokio::test]
async fn require_against_a_server_without_tls_is_refused_clearly() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let url = |query: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?{query}",
            server.port()
        )
    };
    for mode in ["require", "verify-full"] {
        let err = refusal(open(&url(&format!("sslmode={mode}")), None).await);
        assert!(
            err.contains(&format!(
                "the database at 127.0.0.1:{} refused TLS (sslmode={mode})",
                server.port()
            )) && err.contains("ssl = off"),
            "{err}"
        );
    }
    // require without a CA encrypts without checking: a server with TLS
    // and a certificate nobody here trusts is fine.
    let tls = tls_server().await;
    let pool = open(&tls.url("127.0.0.1", "sslmode=require"), None)
        .await
        .unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
}

#[tokio::test]
async fn migrations_and_the_store_work_over_tls() {
    let tls = tls_server().await;
    let url = tls.url("localhost", &query_with_ca("verify-full", &tls.ca_file));
    let pool = open(&url, None).await.unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let fence = take_lease(&pool, "WA-shop-001", "host-a", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lease is free");
    let store = PgStore::open(pool.clone(), "WA-shop-001", fence);
    let address = "5511987650001@c.us.0";
    store.put_identity(address, [7; 32]).await.unwrap();
    store.put_session(address, &[9; 40]).await.unwrap();
    pool.close();

    // A new pool, new TLS connections: what was written reads back.
    let pool = pg_store::pool_from_url(&url).unwrap();
    let store = PgStore::open(pool.clone(), "WA-shop-001", fence);
    assert_eq!(store.load_identity(address).await.unwrap(), Some([7; 32]));
    assert_eq!(
        store.get_session(address).await.unwrap().as_deref(),
        Some(&[9u8; 40][..])
    );
    assert!(ssl_of_our_backend(&pool).await.0);
}

/// SCRAM over TLS binds the authentication to the server's certificate
/// (SCRAM-SHA-256-PLUS, `tls-server-end-point`): with
/// `channel_binding=require` the connection fails unless our TLS offers it.
#[tokio::test]
async fn scram_authentication_is_bound_to_the_tls_channel() {
    let ca = TestCa::new("wabridge test CA");
    let issued = ca.server(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let server = tokio::task::spawn_blocking(move || {
        TestPostgres::start_with(Setup {
            tls: Some(&issued),
            password: Some(PASSWORD),
            ..Setup::default()
        })
    })
    .await
    .unwrap();
    let url = |password: &str, query: &str| {
        format!(
            "postgres://postgres:{password}@localhost:{}/postgres?{query}",
            server.port()
        )
    };
    let bound = query_with_ca("verify-full", &ca_file) + "&channel_binding=require";
    let pool = open(&url(PASSWORD, &bound), None).await.unwrap();
    assert!(ssl_of_our_backend(&pool).await.0);
    // Plaintext cannot bind anything.
    let err = format!(
        "{:#}",
        open(
            &url(PASSWORD, "sslmode=disable&channel_binding=require"),
            None
        )
        .await
        .unwrap_err()
    );
    assert!(!err.contains(PASSWORD), "{err}");
    // A refused certificate does not show the password either, which is
    // now a real one.
    let wrong = TestCa::new("other").write(&dir.path().join("other.pem"));
    let err = format!(
        "{:#}",
        open(&url(PASSWORD, &query_with_ca("verify-full", &wrong)), None)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("not trusted") && !err.contains(PASSWORD),
        "{err}"
    );
}

/// A server that asks for a client certificate (`hostssl … cert`) gets
/// ours from `sslcert`/`sslkey`; without one it refuses.
#[tokio::test]
async fn a_client_certificate_is_given_with_sslcert_and_sslkey() {
    let ca = TestCa::new("wabridge test CA");
    let issued = ca.server(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let (cert, key) = ca.client("postgres").write(dir.path(), "client");
    let server = tokio::task::spawn_blocking(move || {
        TestPostgres::start_with(Setup {
            tls: Some(&issued),
            client_ca: Some(&ca),
            ..Setup::default()
        })
    })
    .await
    .unwrap();
    let url = |query: &str| {
        format!(
            "postgres://postgres@localhost:{}/postgres?{}&{query}",
            server.port(),
            query_with_ca("verify-full", &ca_file)
        )
    };
    let pool = open(
        &url(&format!(
            "sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        )),
        None,
    )
    .await
    .unwrap();
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("/CN=postgres")
    );
    let err = format!("{:#}", open(&url(""), None).await.unwrap_err());
    assert!(err.contains("certificate"), "{err}");
    // A key file that is not there is named before any connection.
    let err = Database::parse(
        &url(&format!(
            "sslcert={}&sslkey=/nowhere/client.key",
            cert.display()
        )),
        None,
    )
    .unwrap()
    .pool()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot read the client key /nowhere/client.key"),
        "{err}"
    );
}

/// The binary logs the TLS mode at start, and stops on a certificate it
/// does not trust with a sentence that says so, without the password.
#[tokio::test]
async fn wabridge_logs_the_databases_tls_and_stops_on_a_certificate_it_does_not_trust() {
    let tls = tls_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cluster = |ca: &Path| {
        format!(
            "[cluster]\ndatabase_url = \"{}\"\ndatabase_ca = \"{}\"\nnode = \"host-a\"\n",
            tls.url("localhost", ""),
            ca.display()
        )
    };
    let config = write_config(
        tmp.path(),
        "ws://127.0.0.1:1/ws/chat",
        &cluster(&tls.ca_file),
    );
    let mut running = Running::spawn(headless(&config, &data));
    let line = running.expect_line(
        "TLS, certificate chain checked against the CA in",
        Duration::from_secs(30),
    );
    assert!(
        line.contains(&format!(
            "cluster database postgres://postgres:***@localhost:{}/postgres",
            tls.server.port()
        )) && line.contains("and its name (sslmode=verify-full, the default when a CA is given)"),
        "{line}"
    );
    running.expect_line("cluster node host-a", Duration::from_secs(30));
    running.terminate(Duration::from_secs(30));
    assert!(!running.seen.join("\n").contains(PASSWORD));

    let wrong = tls.wrong_ca_file();
    let config = write_config(tmp.path(), "ws://127.0.0.1:1/ws/chat", &cluster(&wrong));
    let out = tokio::task::spawn_blocking(move || {
        wabridge(&[
            "--headless",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the certificate of localhost is not trusted")
            && err.contains(&wrong.display().to_string()),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}
