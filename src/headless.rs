//! Headless mode (systemd): the engine with no dashboard. Log lines go to
//! stderr (set up in `logging`); a pairing QR is printed to stderr and saved
//! as `qr.svg` in the session's folder until the session connects.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::broadcast::error::RecvError;

use crate::engine::{Engine, EngineEvent, SessionSnapshot, SessionState};
use crate::paths::{self, DataDir, SessionId};
use crate::qr::QrMatrix;

const QR_FILE: &str = "qr.svg";

/// Shows pairing codes until `shutdown` resolves.
pub async fn run(engine: Engine, data: DataDir, shutdown: impl std::future::Future<Output = ()>) {
    let mut events = engine.subscribe();
    let mut printer = PairingPrinter {
        data,
        shown: HashMap::new(),
    };
    // Sessions that were already waiting for a scan before we subscribed.
    for snapshot in engine.snapshots() {
        printer.show(&snapshot);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = events.recv() => match event {
                Ok(EngineEvent::SessionChanged(snapshot)) => printer.show(&snapshot),
                Ok(EngineEvent::SessionRemoved(id)) => {
                    printer.shown.remove(&id);
                }
                Ok(EngineEvent::Message(_) | EngineEvent::Backlog { .. }) => {}
                Err(RecvError::Lagged(_)) => {
                    for snapshot in engine.snapshots() {
                        printer.show(&snapshot);
                    }
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}

/// Prints each pairing code once, however often its session's snapshot
/// changes while it is on offer.
struct PairingPrinter {
    data: DataDir,
    /// The code last printed per session.
    shown: HashMap<SessionId, String>,
}

impl PairingPrinter {
    fn qr_path(&self, snapshot: &SessionSnapshot) -> PathBuf {
        self.data.session_dir(&snapshot.id).join(QR_FILE)
    }

    fn first_time(&mut self, snapshot: &SessionSnapshot, code: &str) -> bool {
        let previous = self.shown.insert(snapshot.id.clone(), code.to_string());
        previous.as_deref() != Some(code)
    }

    fn show(&mut self, snapshot: &SessionSnapshot) {
        match &snapshot.state {
            SessionState::QrScanRequired(offer) if self.first_time(snapshot, &offer.payload) => {
                self.print_qr(snapshot, &offer.payload, offer.index)
            }
            SessionState::PairingCode { code, .. } if self.first_time(snapshot, code) => {
                eprintln!(
                    "\nPairing code for session {}: {code}\nEnter it on the phone: WhatsApp > Linked Devices > Link with phone number instead\n",
                    snapshot.id
                );
            }
            SessionState::Connected | SessionState::LoggedOut => {
                self.shown.remove(&snapshot.id);
                let _ = std::fs::remove_file(self.qr_path(snapshot));
            }
            _ => {}
        }
    }

    fn print_qr(&self, snapshot: &SessionSnapshot, payload: &str, index: u8) {
        let matrix = match QrMatrix::encode(payload) {
            Ok(matrix) => matrix,
            Err(e) => {
                tracing::error!("cannot encode the QR code of {}: {e}", snapshot.id);
                return;
            }
        };
        let path = self.qr_path(snapshot);
        if let Err(e) = paths::write_private_file(&path, matrix.to_svg().as_bytes()) {
            tracing::error!("cannot save {}: {e}", path.display());
        }
        eprintln!(
            "\nScan with WhatsApp > Linked Devices > Link a device, for session {} (code {index} of 6, also saved as {}):\n{}",
            snapshot.id,
            path.display(),
            matrix.to_ansi()
        );
    }
}
