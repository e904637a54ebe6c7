//! Test support for the product's own integration tests: the shared test kit
//! (`wabridge-sim`), with child processes bound to the product binary.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use wabridge_sim::{
    baileys, fake_backend, log_capture, pairing, receiver, screen, sim, small_disk, tmux,
};

use std::time::Duration;

use wabridge::engine::backoff::BackoffPolicy;
use wabridge::paths::SessionId;

/// A reconnect schedule fast enough for tests on the real clock: 10 ms,
/// 20 ms, then 40 ms between attempts.
pub fn fast_policy() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(10),
        max: Duration::from_millis(40),
    }
}

pub fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// rustls' provider, which reqwest and the WhatsApp client need; installing
/// it again (another test did) is fine.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A decrypted text message as the library hands it to the engine, from
/// the sender `lookups` describes.
pub fn incoming_message(
    id: &str,
    lookups: wabridge::engine::phone::Lookups,
    text: &str,
) -> wabridge::engine::backend::IncomingMessage {
    wabridge::engine::backend::IncomingMessage {
        push_name: Some("Asha".into()),
        timestamp: 1_764_000_000,
        ..wabridge::engine::backend::IncomingMessage::new(
            id.into(),
            lookups.sender.to_string(),
            wabridge::engine::phone::resolve(&lookups),
            text.into(),
        )
    }
}

/// Child processes of the product `wabridge` binary, which checks the
/// server's certificate chain like the copy a user installs.
pub mod process {
    use std::path::Path;
    use std::process::Command;

    pub use wabridge_sim::process::*;

    pub const BINARY: &str = env!("CARGO_BIN_EXE_wabridge");

    pub fn wabridge(args: &[&str]) -> Command {
        command(BINARY, args)
    }

    pub fn headless(config: &Path, data: &Path) -> Command {
        headless_command(BINARY, config, data)
    }
}
