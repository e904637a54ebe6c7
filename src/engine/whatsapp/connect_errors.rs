//! Why a connect failed, as the library says it.
//!
//! whatsapp-rust 0.7.0 reports a failed connect only in its log ("Failed to
//! connect: <error>. Will retry..."): `Client::run` returns nothing and sends
//! no event. The session's run is scoped with a task-local slot, and the log
//! bridge (`crate::logging`) hands every library error line to [`note`],
//! which keeps it in the slot of the run that logged it. Log lines are
//! emitted synchronously inside the run's poll, so the slot is the right
//! session's even with hundreds of sessions connecting at once.

use std::future::Future;
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static SLOT: Arc<Mutex<Option<String>>>;
}

/// The library's log line for a failed connect starts with this.
const FAILED_TO_CONNECT: &str = "Failed to connect: ";
/// `HandshakeError::CertVerification`'s message.
const CERTIFICATE_FAILED: &str = "Server certificate verification failed";

/// A connect that failed for a reason the supervisor reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The server's certificate chain did not verify: not WhatsApp, or a
    /// man in the middle.
    CertificateInvalid(String),
}

/// Runs `run`, returning what it logged about a failed connect, if anything.
pub async fn capture<F: Future<Output = ()>>(run: F) -> Option<ConnectFailure> {
    let slot = Arc::new(Mutex::new(None));
    SLOT.scope(slot.clone(), run).await;
    let logged = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    logged.as_deref().and_then(classify)
}

/// Called for each error-level line of the WhatsApp library; a no-op outside
/// a session's run.
pub fn note(message: &str) {
    if !message.starts_with(FAILED_TO_CONNECT) {
        return;
    }
    let _ = SLOT.try_with(|slot| {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_string());
    });
}

fn classify(logged: &str) -> Option<ConnectFailure> {
    let error = logged.strip_prefix(FAILED_TO_CONNECT)?;
    let error = error.strip_suffix(". Will retry...").unwrap_or(error);
    error
        .contains(CERTIFICATE_FAILED)
        .then(|| ConnectFailure::CertificateInvalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_certificate_failure_logged_during_the_run_is_returned() {
        let failure = capture(async {
            note("Failed to connect: Server certificate verification failed: intermediate signature failed XEdDSA verify. Will retry...");
        })
        .await;
        assert_eq!(
            failure,
            Some(ConnectFailure::CertificateInvalid(
                "Server certificate verification failed: intermediate signature failed XEdDSA verify"
                    .to_string()
            ))
        );
    }

    #[tokio::test]
    async fn other_failures_and_lines_outside_a_run_are_not_certificate_failures() {
        note("Failed to connect: Server certificate verification failed: x. Will retry...");
        let failure = capture(async {
            note("Failed to connect: failed to open transport. Will retry...");
            note("some other library error");
        })
        .await;
        assert_eq!(failure, None);
    }
}
