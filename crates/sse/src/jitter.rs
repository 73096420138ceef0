//! Per-stream jitter, so that streams opened together do not end together
//! and their clients do not come back together: a reconnect storm after a
//! restart would otherwise repeat itself at every lifetime's end and every
//! `retry:` delay.
//!
//! What it leaves out: the spread of ends during a drain (the server's).

use std::time::Duration;

/// The `retry:` a stream announces: 80 % to 120 % of the configured one.
pub(crate) fn retry(configured: Duration) -> Duration {
    configured.mul_f64(rand::random_range(0.8..=1.2))
}

/// A stream's lifetime: 80 % to 100 % of the configured maximum, which
/// stays a maximum.
pub(crate) fn lifetime(max: Duration) -> Duration {
    max.mul_f64(rand::random_range(0.8..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_their_range_and_differ() {
        let base = Duration::from_secs(100);
        let retries: Vec<_> = (0..200).map(|_| retry(base)).collect();
        let lifetimes: Vec<_> = (0..200).map(|_| lifetime(base)).collect();
        for r in &retries {
            assert!((Duration::from_secs(80)..=Duration::from_secs(120)).contains(r));
        }
        for l in &lifetimes {
            assert!((Duration::from_secs(80)..=base).contains(l));
        }
        let spread = |v: &[Duration]| {
            v.iter().max().unwrap().as_secs_f64() - v.iter().min().unwrap().as_secs_f64()
        };
        assert!(spread(&retries) > 10.0 && spread(&lifetimes) > 5.0);
    }
}
