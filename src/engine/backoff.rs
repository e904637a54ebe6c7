//! The one backoff schedule, as a pure function: attempt n waits
//! `base * 2^(n-1)`, capped at `max` (5s, 10s, 20s, 40s, 60s, 60s, ...), for
//! reconnects and for webhook retries, each with jitter, so sessions that
//! failed together (a network outage) do not retry together.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl BackoffPolicy {
    /// Wait before reconnect attempt `attempt` (1-based; 0 is treated as 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// `delay(attempt)` shortened by up to `jitter` of itself (0.2 = up to a
    /// fifth), by an amount `seed` picks: never longer than the schedule.
    pub fn jittered_delay(&self, attempt: u32, jitter: f64, seed: u64) -> Duration {
        let delay = self.delay(attempt);
        delay.saturating_sub(delay.mul_f64((seed % 1000) as f64 / 1000.0 * jitter.clamp(0.0, 1.0)))
    }
}

/// Share of a reconnect delay added to it at most.
pub const RECONNECT_JITTER: f64 = 0.2;

impl BackoffPolicy {
    /// Wait before reconnect attempt `attempt` of session `id`: the
    /// schedule plus up to a fifth of it. The amount depends on the session
    /// and the attempt only: sessions spread out, and one session's waits
    /// are the same every run (tests stay exact).
    pub fn reconnect_delay(&self, attempt: u32, id: &str) -> Duration {
        let delay = self.delay(attempt);
        delay + delay.mul_f64(RECONNECT_JITTER * stable_fraction(id, attempt))
    }
}

/// A number in [0, 1) that `key` and `salt` pick, the same every time
/// (FNV-1a): spreads sessions without a random source.
pub fn stable_fraction(key: &str, salt: u32) -> f64 {
    let hash = key
        .bytes()
        .chain(salt.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    (hash % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn follows_the_seed_schedule() {
        let secs: Vec<u64> = (1..=8).map(|n| seed().delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60, 60, 60]);
    }

    #[test]
    fn reconnects_keep_the_schedule_plus_at_most_a_fifth_spread_over_sessions() {
        for attempt in 1..=6 {
            let delays: Vec<Duration> = (0..100)
                .map(|n| seed().reconnect_delay(attempt, &format!("shop-{n}")))
                .collect();
            let scheduled = seed().delay(attempt);
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            assert!(
                *min >= scheduled && *max <= scheduled.mul_f64(1.2),
                "attempt {attempt}"
            );
            // 100 sessions fall on (nearly) the whole width, not on one instant.
            assert!(
                *max - *min > scheduled.mul_f64(0.15),
                "attempt {attempt}: {min:?}..{max:?}"
            );
        }
        assert_eq!(
            seed().reconnect_delay(3, "shop"),
            seed().reconnect_delay(3, "shop"),
            "the same every time"
        );
    }

    #[test]
    fn attempt_zero_waits_like_the_first() {
        assert_eq!(seed().delay(0), Duration::from_secs(5));
    }

    #[test]
    fn huge_attempts_stay_capped_without_overflow() {
        for n in [31, 32, 64, 1000, u32::MAX] {
            assert_eq!(seed().delay(n), Duration::from_secs(60), "attempt {n}");
        }
    }

    #[test]
    fn honours_configured_base_and_cap() {
        let fast = BackoffPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(25),
        };
        let ms: Vec<u128> = (1..=4).map(|n| fast.delay(n).as_millis()).collect();
        assert_eq!(ms, [10, 20, 25, 25]);
    }
}
