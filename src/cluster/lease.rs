//! The lease rules of docs/cluster.md as pure decisions: when a host must
//! stop serving a session it holds, and which expired sessions it takes in
//! one round. The database work (renewing, taking) calls these.

use std::time::Duration;

use tokio::time::Instant;

/// How long leases last and how often they are renewed and taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a lease lasts past the database's clock at renewal.
    pub ttl: Duration,
    pub renew_every: Duration,
    /// How much earlier than the lease's end a host stops serving: the time
    /// to close sockets and the clocks' drift over one `ttl`.
    pub margin: Duration,
    pub takeover_every: Duration,
    /// Expired leases one host takes per round, so survivors share them.
    pub takeover_batch: usize,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            margin: Duration::from_secs(3),
            takeover_every: Duration::from_secs(2),
            takeover_batch: 10,
        }
    }
}

impl LeaseTimings {
    /// How long a host stopping may take to close its sessions, counted
    /// from when it stops renewing: its last renewal may be `renew_every`
    /// old, and it must be gone `margin` before the lease can end.
    pub fn stop_within(&self) -> Duration {
        self.ttl
            .saturating_sub(self.margin)
            .saturating_sub(self.renew_every)
    }

    /// Why these timings cannot keep one owner per session, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.margin.is_zero() || self.margin >= self.ttl {
            return Some(format!(
                "the margin ({:?}) must be above zero and below the lease TTL ({:?})",
                self.margin, self.ttl
            ));
        }
        // A renewal must be able to fail once and the next one still land
        // before the host has to stop serving.
        if self.renew_every * 2 > self.ttl - self.margin {
            return Some(format!(
                "renewing every {:?} leaves no room for one failed renewal: \
                 it must be at most half of TTL {:?} minus margin {:?}",
                self.renew_every, self.ttl, self.margin
            ));
        }
        if self.takeover_batch == 0 {
            return Some("the takeover batch must be at least 1".into());
        }
        None
    }
}

/// A lease this host holds, as its own monotonic clock sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    /// The counter every write for the session carries.
    pub fence: u64,
    /// The last instant this host may serve the session.
    serve_until: Instant,
}

impl HeldLease {
    /// A lease taken or renewed by a request sent at `sent` (noted before
    /// sending: the database's expiry is computed later, so it is later).
    pub fn granted(fence: u64, sent: Instant, timings: &LeaseTimings) -> Self {
        HeldLease {
            fence,
            serve_until: sent + timings.ttl - timings.margin,
        }
    }

    /// A later renewal sent at `sent` succeeded.
    pub fn renewed(self, sent: Instant, timings: &LeaseTimings) -> Self {
        let renewed = HeldLease::granted(self.fence, sent, timings);
        // Replies can land out of order; an older renewal never shortens.
        HeldLease {
            serve_until: renewed.serve_until.max(self.serve_until),
            ..renewed
        }
    }

    pub fn may_serve(&self, now: Instant) -> bool {
        now < self.serve_until
    }

    pub fn serve_until(&self) -> Instant {
        self.serve_until
    }
}

/// The expired leases this host takes this round: at most `batch`, picked
/// by `seed` so that hosts taking at the same time pick different ones.
pub fn pick_takeovers<T: Clone>(expired: &[T], batch: usize, seed: u64) -> Vec<T> {
    if expired.is_empty() {
        return Vec::new();
    }
    let start = (seed % expired.len() as u64) as usize;
    expired
        .iter()
        .cycle()
        .skip(start)
        .take(batch.min(expired.len()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_keep_one_owner() {
        assert_eq!(LeaseTimings::default().problem(), None);
    }

    #[test]
    fn a_stopping_host_is_gone_before_a_lease_renewed_just_before_can_end() {
        let t = LeaseTimings::default();
        // Renewed at 0 s, stopping starts at 5 s (just before the next
        // renewal): gone by 12 s, a margin before the lease ends at 15 s.
        assert_eq!(t.stop_within(), Duration::from_secs(7));
        assert!(t.renew_every + t.stop_within() + t.margin <= t.ttl);
    }

    #[test]
    fn timings_that_could_let_a_lease_lapse_unnoticed_are_refused() {
        let t = LeaseTimings {
            renew_every: Duration::from_secs(7),
            ..LeaseTimings::default()
        };
        assert!(t.problem().unwrap().contains("one failed renewal"));
        let t = LeaseTimings {
            margin: Duration::from_secs(15),
            ..LeaseTimings::default()
        };
        assert!(t.problem().unwrap().contains("margin"));
        let t = LeaseTimings {
            takeover_batch: 0,
            ..LeaseTimings::default()
        };
        assert!(t.problem().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_stops_serving_a_margin_before_the_lease_can_end() {
        let t = LeaseTimings::default();
        let sent = Instant::now();
        let lease = HeldLease::granted(7, sent, &t);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(lease.may_serve(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!lease.may_serve(Instant::now()), "12 s = TTL 15 - margin 3");
        assert_eq!(lease.fence, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_extend_and_a_late_reply_never_shortens() {
        let t = LeaseTimings::default();
        let first = Instant::now();
        let lease = HeldLease::granted(1, first, &t);
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = Instant::now();
        let renewed = lease.renewed(second, &t);
        assert_eq!(renewed.serve_until(), second + Duration::from_secs(12));
        // The reply to a renewal sent before `second` arrives last.
        let late = renewed.renewed(first, &t);
        assert_eq!(late.serve_until(), second + Duration::from_secs(12));
    }

    #[test]
    fn a_round_takes_at_most_the_batch_and_seeds_spread_the_picks() {
        let expired: Vec<u32> = (0..25).collect();
        let a = pick_takeovers(&expired, 10, 0);
        let b = pick_takeovers(&expired, 10, 10);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|s| !b.contains(s)), "{a:?} vs {b:?}");
        assert_eq!(pick_takeovers(&expired[..3], 10, 99).len(), 3);
        assert!(pick_takeovers::<u32>(&[], 10, 1).is_empty());
    }
}
