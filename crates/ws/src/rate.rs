//! The token bucket that bounds how often one connection may ask for work
//! that costs engine reads (`subscribe` and `unsubscribe` frames).
//!
//! Pure arithmetic on tokio's clock, so that it is tested on paused time.
//! It decides nothing about what happens to a frame over the limit: the
//! connection answers it.

use std::time::Duration;

use tokio::time::Instant;

/// A bucket of `burst` tokens refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Tokens now, in millionths, so that refills need no floating point.
    micros: u64,
    /// Refill per second, in tokens.
    rate: u64,
    /// Capacity, in millionths of a token.
    cap: u64,
    /// When `micros` was last brought up to date.
    at: Instant,
}

const ONE: u64 = 1_000_000;

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let cap = u64::from(burst.max(1)) * ONE;
        Bucket {
            micros: cap,
            rate: u64::from(rate),
            cap,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one; answers whether there was.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        let refill =
            (elapsed.as_micros().min(u128::from(u64::MAX)) as u64).saturating_mul(self.rate);
        self.micros = self.micros.saturating_add(refill).min(self.cap);
        if self.micros >= ONE {
            self.micros -= ONE;
            true
        } else {
            false
        }
    }

    /// How long until the next token, for the client's information.
    pub(crate) fn wait(&self) -> Duration {
        if self.micros >= ONE || self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros((ONE - self.micros).div_ceil(self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let mut b = Bucket::new(10, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take(), "the burst is spent");
        assert_eq!(b.wait(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(!b.take());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.take(), "one token per 100 ms at 10/s");
        assert!(!b.take());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take(), "a long rest refills the burst, no more");
    }
}
