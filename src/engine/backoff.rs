//! The one backoff schedule, as a pure function: attempt n waits
//! `base * 2^(n-1)`, capped at `max` (5s, 10s, 20s, 40s, 60s, 60s, ...), for
//! reconnects (exactly, as the seed says) and for webhook retries (with
//! jitter, so sessions that failed together do not retry together).

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
