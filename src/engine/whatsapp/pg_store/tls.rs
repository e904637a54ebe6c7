//! The TLS side of the connection to the cluster database: rustls set up to
//! check what the settings ask for ([`TlsChecks`]), over
//! tokio-postgres-rustls (which also gives SCRAM its channel binding,
//! `tls-server-end-point`), and a handshake that fails told in a sentence
//! that names the host and the problem.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::{ClientIdentity, SslMode};

/// The CA certificates a server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Roots {
    /// A PEM file (`sslrootcert`, `[cluster] database_ca`).
    File(PathBuf),
    /// The system's trust store (rustls-native-certs: /etc/ssl/certs on
    /// Debian, `SSL_CERT_FILE` if set). The same store the operator already
    /// keeps for the host (an internal CA added with update-ca-certificates
    /// is found here), where a list compiled into the binary
    /// (webpki-roots) would hold only public CAs and age with the build.
    System,
}

impl Roots {
    pub(super) fn named(&self) -> String {
        match self {
            Roots::File(path) => format!("the CA in {}", path.display()),
            Roots::System => "the system's CA certificates".to_string(),
        }
    }
}

/// What the TLS handshake checks of the server's certificate.
#[derive(Debug, Clone)]
pub(super) enum TlsChecks {
    /// Nothing (`prefer`, `require` without a CA): the link is encrypted,
    /// whoever answers.
    Nothing,
    /// The chain up to one of these roots, not the name (`verify-ca`, or
    /// `prefer`/`require` with a CA).
    Chain(Roots),
    /// The chain and the host name (`verify-full`).
    ChainAndName(Roots),
}

/// The certificates of a PEM CA file, or what is wrong with it.
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certificates(path, "CA file")?;
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "the CA file {} holds a certificate that cannot be a CA: {e}",
                path.display()
            )
        })?;
    }
    Ok(certs)
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A client certificate chain and its key, or what is wrong with them. The
/// key's bytes never appear in a message.
pub(super) fn read_client_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_certificates(&identity.cert, "client certificate")?;
    let bytes = std::fs::read(&identity.key)
        .map_err(|e| format!("cannot read the client key {}: {e}", identity.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        format!(
            "the client key {} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            identity.key.display()
        )
    })?;
    Ok((chain, key))
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for cert in read_ca_file(path)? {
                store.add(cert).map_err(|e| e.to_string())?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _unusable) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "this system has no CA certificates to check the database's certificate against{why}: \
                     install them (Debian: ca-certificates), or give the database's CA with \
                     sslrootcert in the URL or [cluster] database_ca"
                ));
            }
        }
    }
    Ok(store)
}

/// The process's rustls provider (app.rs installs ring), or ring when none
/// was installed (tests, tools).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// tokio-postgres' TLS maker: rustls configured for the checks, and
/// handshake errors turned into [`HandshakeFailed`].
#[derive(Clone)]
pub(super) struct Connector {
    tls: MakeRustlsConnect,
    about: Arc<About>,
}

/// What a failure message needs to say which check failed.
struct About {
    mode: SslMode,
    checks: TlsChecks,
}

impl Connector {
    /// Reads the certificates the checks need (CA file or the system's
    /// store, client certificate); errors are sentences naming the file.
    pub(super) fn new(
        checks: &TlsChecks,
        client: Option<&ClientIdentity>,
        mode: SslMode,
    ) -> Result<Connector, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?;
        let builder = match checks {
            TlsChecks::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked { provider })),
            TlsChecks::Chain(roots) => {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly {
                        roots: Arc::new(root_store(roots)?),
                        provider,
                    }))
            }
            TlsChecks::ChainAndName(roots) => builder.with_root_certificates(root_store(roots)?),
        };
        let mut config = match client {
            Some(identity) => {
                let (chain, key) = read_client_identity(identity)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "the client certificate {} and the key {} cannot be used together: {e}",
                        identity.cert.display(),
                        identity.key.display()
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        // PostgreSQL 17's direct TLS (sslnegotiation=direct) requires it;
        // servers that negotiate the old way accept it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector {
            tls: MakeRustlsConnect::new(config),
            about: Arc::new(About {
                mode,
                checks: checks.clone(),
            }),
        })
    }
}

type RustlsConnect<S> = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Handshake<RustlsConnect<S>>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Handshake {
            inner: <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(&mut self.tls, host)?,
            host: host.to_string(),
            about: self.about.clone(),
        })
    }
}

/// One handshake with `host`.
pub(super) struct Handshake<T> {
    inner: T,
    host: String,
    about: Arc<About>,
}

impl<S, T> TlsConnect<S> for Handshake<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = HandshakeFailed;
    type Future = Pin<Box<dyn Future<Output = Result<T::Stream, HandshakeFailed>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let Handshake { inner, host, about } = self;
        let handshake = inner.connect(stream);
        Box::pin(async move {
            handshake
                .await
                .map_err(|e| HandshakeFailed::new(&host, &about, e.into()))
        })
    }
}

/// A TLS handshake with the database that failed, in a sentence: the host,
/// what was checked and what did not pass. It holds no URL, so no password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeFailed(String);

impl HandshakeFailed {
    fn new(host: &str, about: &About, error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        let mode = about.mode.as_str();
        let roots = match &about.checks {
            TlsChecks::Nothing => "nothing".to_string(),
            TlsChecks::Chain(roots) | TlsChecks::ChainAndName(roots) => roots.named(),
        };
        let rustls_error = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let sentence = match rustls_error {
            Some(rustls::Error::InvalidCertificate(problem)) => match problem {
                CertificateError::UnknownIssuer => format!(
                    "the certificate of {host} is not trusted: it is not signed by {} \
                     (sslmode={mode}); name the CA that signed it in sslrootcert or \
                     [cluster] database_ca",
                    signers(&about.checks)
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "the certificate of {host} is not issued for that name (sslmode={mode} \
                     checks it): {problem}; connect by a name it lists, or use sslmode=verify-ca \
                     to check only that it is signed by {roots}"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the certificate of {host} has expired: {problem}")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!(
                        "the certificate of {host} is not valid yet: {problem}; check this host's clock"
                    )
                }
                other => format!(
                    "the certificate of {host} is refused (checked against {roots}, \
                     sslmode={mode}): {other}"
                ),
            },
            Some(other) => {
                format!("the TLS handshake with {host} failed (sslmode={mode}): {other}")
            }
            None => format!("the TLS handshake with {host} failed (sslmode={mode}): {error}"),
        };
        HandshakeFailed(sentence)
    }
}

/// Who may sign the server's certificate, for "it is not signed by …".
fn signers(checks: &TlsChecks) -> String {
    match checks {
        TlsChecks::Chain(Roots::System) | TlsChecks::ChainAndName(Roots::System) => {
            "any of the system's CA certificates".to_string()
        }
        TlsChecks::Chain(roots) | TlsChecks::ChainAndName(roots) => roots.named(),
        TlsChecks::Nothing => "a CA (none is checked)".to_string(),
    }
}

/// `prefer`/`require` without a CA, libpq's meaning: encrypted against
/// whoever listens, not checked against whoever answers. The handshake's
/// signatures are still verified (the server holds the key of the
/// certificate it shows); the certificate itself is taken as it is.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the certificate must chain to one of `roots` and be valid
/// now; the name it was issued for is not compared with the host's (a
/// private CA that signs only database servers makes that enough).
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
