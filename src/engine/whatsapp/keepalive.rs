//! The adapter's half of `engine::liveness`: pings WhatsApp over the live
//! connection on tokio's monotonic clock and returns once nothing has
//! answered for the bound. (whatsapp-rust 0.7.0 has a keepalive of its own,
//! but its dead-socket check reads the wall clock and fires only after
//! 20 s plus up to 30 s between checks.)

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use whatsapp_rust::prelude::Client;
use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;

use crate::engine::backend::{EventSink, WaEvent};
use crate::engine::liveness::Liveness;

/// Resolves with how long the connection has been silent, as soon as that
/// reaches `liveness.dead_after` (to the moment, not at the next ping); never
/// while it answers. A ping goes out every `probe_every`, one at a time,
/// each given until the next one is due. Each answer is told to `events`
/// (views show how fresh the link is).
pub(super) async fn until_silent(
    client: &Client,
    liveness: Liveness,
    events: &EventSink,
) -> Duration {
    let mut last_answer = Instant::now();
    let mut next_ping = last_answer + liveness.probe_every;
    let mut in_flight = None;
    loop {
        let logged_in = client.is_logged_in();
        tokio::select! {
            _ = sleep_until(next_ping) => {
                next_ping += liveness.probe_every;
                // Before login (the handshake, pairing) there is nobody to
                // ping; those stages have timeouts of their own.
                if !client.is_logged_in() {
                    last_answer = Instant::now();
                } else if in_flight.is_none() {
                    let ping = KeepaliveSpec::with_timeout(liveness.probe_every);
                    in_flight = Some(Box::pin(client.execute(ping)));
                }
            }
            answer = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                if answer.is_ok() {
                    last_answer = Instant::now();
                    let _ = events.send(WaEvent::Answered);
                }
            }
            _ = sleep_until(last_answer + liveness.dead_after), if logged_in => {
                let now = Instant::now();
                if let Some(silent_for) = liveness.dead(last_answer.into_std(), now.into_std()) {
                    return silent_for;
                }
            }
        }
    }
}
