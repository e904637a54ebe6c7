//! The adapter's half of `engine::liveness`: pings WhatsApp over the live
//! connection on tokio's monotonic clock and returns once nothing has
//! answered for the bound. (whatsapp-rust 0.7.0 has a keepalive of its own,
//! but its dead-socket check reads the wall clock and fires only after
//! 20 s plus up to 30 s between checks.)

use std::time::Duration;

use tokio::time::Instant;
use whatsapp_rust::prelude::Client;
use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;

use crate::engine::backend::{EventSink, WaEvent};
use crate::engine::liveness::Liveness;

/// Resolves with how long the connection has been silent, once that is
/// `liveness.dead_after` or more; never while it answers. Each answer is
/// told to `events` (views show how fresh the link is).
pub(super) async fn until_silent(
    client: &Client,
    liveness: Liveness,
    events: &EventSink,
) -> Duration {
    let mut last_answer = Instant::now();
    loop {
        tokio::time::sleep(liveness.probe_every).await;
        // Before login (the handshake, pairing) there is nobody to ping;
        // those stages have timeouts of their own.
        if !client.is_logged_in() {
            last_answer = Instant::now();
            continue;
        }
        let ping = KeepaliveSpec::with_timeout(liveness.probe_every);
        if client.execute(ping).await.is_ok() {
            last_answer = Instant::now();
            let _ = events.send(WaEvent::Answered);
        }
        if let Some(silent_for) = liveness.dead(last_answer.into_std(), Instant::now().into_std()) {
            return silent_for;
        }
    }
}
