//! The shared test kit, with child processes bound to the insecure simulator
//! client instead of the product binary.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use wabridge_sim::{
    baileys, delay_proxy, log_capture, netns, pairing, receiver, screen, sim, tmux,
};

pub mod process {
    use std::path::Path;
    use std::process::Command;

    pub use wabridge_sim::process::*;

    pub const BINARY: &str = env!("CARGO_BIN_EXE_insecure-sim-client");

    pub fn wabridge(args: &[&str]) -> Command {
        command(BINARY, args)
    }

    pub fn headless(config: &Path, data: &Path) -> Command {
        headless_command(BINARY, config, data)
    }
}

use tokio::sync::broadcast;
use wabridge::engine::{EngineEvent, SessionSnapshot};

/// How long a session may take to reach a state on the real client (a
/// debug build's key derivations included).
const SESSION_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Every change of every session, in order: waiting on these (rather than
/// on the latest snapshot) never misses a state that lasted only a moment,
/// such as attempt 1 of a 50 ms backoff.
pub type Changes = broadcast::Receiver<EngineEvent>;

/// Consumes changes until `name` matches `wanted`.
pub async fn until(
    changes: &mut Changes,
    name: &str,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    let mut last = None;
    let found = tokio::time::timeout(SESSION_WAIT, async {
        loop {
            match changes.recv().await {
                Ok(EngineEvent::SessionChanged(s)) if s.id.as_str() == name => {
                    if wanted(&s) {
                        return s;
                    }
                    last = Some(s);
                }
                Ok(_) => {}
                Err(e) => panic!("engine events: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{name} never matched; last {last:?}"))
}
