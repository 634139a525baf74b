//! Small pure pieces of the load generators: latency percentiles, the
//! randomness of a browser's timers (jitter, backoff, churn), and which
//! browsers speak HTTP/2.

use std::time::Duration;

/// The `q` quantile (0.0-1.0) of `sorted` by nearest rank; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A small, fast, seedable generator (SplitMix64): each simulated browser
/// has its own, so no lock is shared and a run can be repeated.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1), like JavaScript's `Math.random`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `period` moved by up to `share` of itself either way (0.1: +-10 %),
    /// so browsers started together drift apart instead of pinging in step.
    pub fn jittered(&mut self, period: Duration, share: f64) -> Duration {
        period.mul_f64(1.0 + share * (2.0 * self.next_f64() - 1.0))
    }

    /// The web app's retry delay after `attempt` failures in a row
    /// (web/src/backoff.ts): full jitter under a cap that starts at `base`
    /// and doubles, never above `max`.
    pub fn backoff(&mut self, attempt: u32, base: Duration, max: Duration) -> Duration {
        let cap = base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(max);
        cap.mul_f64(self.next_f64())
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// Whether browser `index` is one of the `share` (0.0-1.0) chosen ones,
/// spread evenly over the indexes (and so over the start phases): exactly
/// `round(share * n)` of the first `n`, give or take one.
pub fn evenly_chosen(index: usize, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    ((index + 1) as f64 * share).floor() > (index as f64 * share).floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn jitter_stays_within_its_share_and_spreads() {
        let mut rng = Rng::new(1);
        let period = Duration::from_secs(60);
        let delays: Vec<Duration> = (0..10_000).map(|_| rng.jittered(period, 0.1)).collect();
        assert!(
            delays
                .iter()
                .all(|delay| (54.0..=66.0).contains(&delay.as_secs_f64()))
        );
        assert!(delays.iter().any(|delay| delay.as_secs_f64() < 55.0));
        assert!(delays.iter().any(|delay| delay.as_secs_f64() > 65.0));
    }

    #[test]
    fn backoff_doubles_its_cap_up_to_the_interval() {
        let mut rng = Rng::new(2);
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(10));
        for _ in 0..1000 {
            assert!(rng.backoff(1, base, max) < Duration::from_secs(1));
            assert!(rng.backoff(3, base, max) < Duration::from_secs(4));
            assert!(rng.backoff(40, base, max) < max);
        }
    }

    #[test]
    fn the_chosen_share_is_exact_and_spread() {
        let chosen = |n: usize, share: f64| (0..n).filter(|i| evenly_chosen(*i, share)).count();
        assert_eq!(chosen(10_000, 0.0), 0);
        assert_eq!(chosen(10_000, 1.0), 10_000);
        assert_eq!(chosen(10_000, 0.25), 2_500);
        assert_eq!(chosen(3, 0.5), 1);
        // Every fourth, not the first quarter.
        assert_eq!(chosen(100, 0.25), 25);
        assert!((0..4).filter(|i| evenly_chosen(*i, 0.25)).count() == 1);
    }
}
