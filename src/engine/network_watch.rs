//! Notices when WhatsApp's server can be reached again, for the sessions
//! waiting out a network failure. Without it they would learn only when
//! one of their own retries happens to get through: up to a minute after
//! the path is back, or longer while their attempts sit in the kernel's SYN
//! resends. While any session waits on the network, one cheap probe (a TCP
//! connect to the server, no handshake) runs twice a second for the whole
//! process; when it gets through after failing, every waiting session hears
//! "reachable" and retries within its spread half second. A probe that
//! always gets through (the failures are not the path's) wakes nobody.
//! When the kernel reports a link, address or route change (netlink, on
//! Linux), the probe runs at once instead of at the next tick: a cable
//! plugged back in or Wi-Fi rejoined is tried the moment it happens.

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
    // The OS reported a change since the path was last found up (for the
    // log: what brought the sessions back).
    let mut os_changed = false;
    // A probe lost in a dead path takes its whole time: the next one starts
    // right after it, not a period later.
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut os_changes = os_network_changes();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            Some(()) = os_changes.recv() => os_changed = true,
        }
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if waiting.0.load(Ordering::SeqCst) == 0 {
            (was_down, os_changed) = (false, false);
            continue;
        }
        let up = backend.server_reachable(PROBE_EVERY).await;
        // A report that came while the probe ran counts: the link coming up
        // both answers a probe under way and makes the kernel report it.
        os_changed |= drained(&mut os_changes);
        if up && was_down {
            let cause = if os_changed {
                " (the OS reported a network change)"
            } else {
                ""
            };
            tracing::info!(
                "WhatsApp's server can be reached again{cause}; waking the sessions waiting for the network"
            );
            // Nobody listening (all reconnected meanwhile) is fine.
            let _ = reachable.send(());
        }
        was_down = !up;
        os_changed &= !up;
    }
}

/// Whether any report is waiting (taking them all).
fn drained(changes: &mut tokio::sync::mpsc::Receiver<()>) -> bool {
    let mut any = false;
    while changes.try_recv().is_ok() {
        any = true;
    }
    any
}

/// Link, address and route changes the kernel reports, one `()` each (a
/// burst may be one); never anything where netlink is not there.
fn os_network_changes() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(target_os = "linux")]
    match netlink::subscribe() {
        Ok(socket) => {
            tokio::spawn(netlink::forward(socket, tx));
        }
        Err(e) => tracing::warn!("cannot watch the OS's network changes (netlink): {e}"),
    }
    #[cfg(not(target_os = "linux"))]
    drop(tx);
    rx
}

#[cfg(target_os = "linux")]
mod netlink {
    use netlink_sys::protocols::NETLINK_ROUTE;
    use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

    /// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE |
    /// RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE` (linux/rtnetlink.h).
    const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;

    pub(super) fn subscribe() -> std::io::Result<TokioSocket> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().bind(&SocketAddr::new(0, GROUPS))?;
        Ok(socket)
    }

    /// Every notification becomes one `()` (dropped while one is waiting:
    /// a probe covers them all). Ends when the watch is gone.
    pub(super) async fn forward(socket: TokioSocket, changes: tokio::sync::mpsc::Sender<()>) {
        loop {
            tokio::select! {
                received = socket.recv_from_full() => if let Err(e) = received {
                    tracing::warn!("netlink: {e}; no longer watching the OS's network changes");
                    return;
                },
                () = changes.closed() => return,
            }
            let _ = changes.try_send(());
        }
    }
}
