//! The clock an engine reads message times and ages from.
//!
//! In production it is the system's wall clock: a message's `time` is real
//! milliseconds since the Unix epoch, and history expires by real age. Tests
//! use a [`ManualClock`], which moves only when told, so that age, expiry and
//! sweeps are tested on paused tokio time (or against a remote store) without
//! waiting for real.
//!
//! What it leaves out: timers (the sweeper's period and every wait are tokio
//! time) and ids (a new channel's first id comes from the system clock in
//! every case, since it must stay above ids handed out before a restart).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Where an engine reads the time. Cheap to clone; clones of a manual clock
/// share its time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system's wall clock. The default, and the only one for
    /// production. (The Redis engine lets Redis stamp messages with its own
    /// `TIME`, so that every instance uses one clock.)
    #[default]
    System,
    /// A clock that moves only with [`ManualClock::advance`], for tests.
    Manual(ManualClock),
}

impl Clock {
    /// Milliseconds since the Unix epoch, now.
    pub fn now_millis(&self) -> u64 {
        match self {
            Clock::System => system_millis(),
            Clock::Manual(m) => m.now_millis(),
        }
    }
}

/// A clock for tests: starts at the system's time when created and moves
/// only when [`advance`](ManualClock::advance)d.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at the system's time now.
    pub fn new() -> Self {
        ManualClock(Arc::new(AtomicU64::new(system_millis())))
    }

    /// Moves the clock (and every clone of it) forward by `by`, rounded down
    /// to the millisecond.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since the Unix epoch, as this clock stands.
    pub fn now_millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl PartialEq for ManualClock {
    /// Two manual clocks are equal when they are clones of one another.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ManualClock {}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({} ms)", self.now_millis())
    }
}

/// Milliseconds since the Unix epoch by the system clock.
fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let m = ManualClock::new();
        let clock = Clock::Manual(m.clone());
        let start = clock.now_millis();
        assert_eq!(clock.now_millis(), start);
        m.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_millis(), start + 1500);
        assert_eq!(clock, Clock::Manual(m));
        assert_ne!(clock, Clock::Manual(ManualClock::new()));
        assert_ne!(Clock::System.now_millis(), 0);
    }
}
