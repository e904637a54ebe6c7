//! Is the connection still there? WhatsApp answers a ping within seconds;
//! a link that silently vanished (Wi-Fi off, a NAT that forgot the flow, a
//! server gone half-open) answers nothing and, with no FIN or RST, the
//! socket itself never says so. The adapter pings every `probe_every` on
//! the monotonic clock (a wall-clock step or a suspend cannot fake
//! silence) and gives up on the connection once nothing has answered for
//! `dead_after`. Only pings count: quiet chats are normal at night.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often to ask.
    pub probe_every: Duration,
    /// How long without an answer means the link is gone.
    pub dead_after: Duration,
}

impl Liveness {
    /// Pings a third of the bound apart, so two may go unanswered (a lost
    /// packet, a slow server) before the third decides.
    pub fn with_bound(dead_after: Duration) -> Liveness {
        Liveness {
            probe_every: (dead_after / 3).max(Duration::from_millis(100)),
            dead_after,
        }
    }

    /// How long the link has been silent, once that is too long.
    pub fn dead(&self, last_answer: Instant, now: Instant) -> Option<Duration> {
        let silent_for = now.saturating_duration_since(last_answer);
        (silent_for >= self.dead_after).then_some(silent_for)
    }
}

impl Default for Liveness {
    /// 30 s: a black-holed link is noticed in at most half a minute, where
    /// the old bridge took minutes.
    fn default() -> Self {
        Liveness::with_bound(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_answer_and_decides_at_the_bound() {
        let liveness = Liveness::default();
        assert_eq!(liveness.probe_every, Duration::from_secs(10));
        let answered = Instant::now();
        assert_eq!(
            liveness.dead(answered, answered + Duration::from_secs(29)),
            None
        );
        assert_eq!(
            liveness.dead(answered, answered + Duration::from_secs(31)),
            Some(Duration::from_secs(31))
        );
        // An answer "from the future" (clocks read in another order) is not silence.
        assert_eq!(
            liveness.dead(answered + Duration::from_secs(1), answered),
            None
        );
    }

    #[test]
    fn a_tiny_bound_still_probes_at_a_sane_rate() {
        let liveness = Liveness::with_bound(Duration::from_millis(90));
        assert_eq!(liveness.probe_every, Duration::from_millis(100));
    }
}
