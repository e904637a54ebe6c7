//! Notices when WhatsApp's server can be reached again, for the sessions
//! waiting out a network failure. Without it they would learn only when
//! one of their own retries happens to get through: up to a minute after
//! the path is back, or longer while their attempts sit in the kernel's SYN
//! resends. While any session waits on the network, one cheap probe (a TCP
//! connect to the server, no handshake) runs twice a second for the whole
//! process; when it gets through after failing, every waiting session hears
//! "reachable" and retries within its spread half second. A probe that
//! always gets through (the failures are not the path's) wakes nobody.

use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;

use super::backend::WaBackend;

/// How often the server is probed while sessions wait on the network, and
/// how long each probe may take.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How many sessions wait on the network now.
#[derive(Debug, Default)]
pub(crate) struct WaitingOnNetwork(AtomicUsize);

/// One session waiting on the network, counted until dropped.
pub(crate) struct NetworkWait(std::sync::Arc<WaitingOnNetwork>);

impl NetworkWait {
    pub(crate) fn new(waiting: &std::sync::Arc<WaitingOnNetwork>) -> NetworkWait {
        waiting.0.fetch_add(1, Ordering::SeqCst);
        NetworkWait(waiting.clone())
    }
}

impl Drop for NetworkWait {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Probes while anyone waits; ends with the engine (the backend is gone).
pub(crate) async fn watch<B: WaBackend>(
    backend: Weak<B>,
    waiting: std::sync::Arc<WaitingOnNetwork>,
    reachable: broadcast::Sender<()>,
) {
    let mut was_down = false;
    // A probe lost in a dead path takes its whole time: the next one starts
    // right after it, not a period later.
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if waiting.0.load(Ordering::SeqCst) == 0 {
            was_down = false;
            continue;
        }
        let up = backend.server_reachable(PROBE_EVERY).await;
        if up && was_down {
            tracing::info!(
                "WhatsApp's server can be reached again; waking the sessions waiting for the network"
            );
            // Nobody listening (all reconnected meanwhile) is fine.
            let _ = reachable.send(());
        }
        was_down = !up;
    }
}
