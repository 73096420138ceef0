//! A bounded, time-limited memory of the backend hook's answers, so that a
//! page that reconnects or a poll every second does not ask the backend
//! every time.
//!
//! An answer is kept only as long as the backend said it may be
//! (`Cache-Control: max-age`), and never more than `capacity` answers are
//! kept: when full, expired answers go first, then the one closest to
//! expiring. It is a plain map behind a lock held for a lookup or an
//! insert, never across an `.await`. Failures are never cached.

use std::{collections::HashMap, hash::Hash, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Answers keyed by `K`, each until its own deadline.
pub(crate) struct Cache<K, V> {
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    /// A cache of at most `capacity` answers (0 turns caching off).
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer stored for `key`, unless it has expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (deadline, value) = entries.get(key)?;
        if *deadline > Instant::now() {
            return Some(value.clone());
        }
        entries.remove(key);
        None
    }

    /// Stores `value` for `ttl`.
    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (deadline, _)| *deadline > now);
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let soonest = entries
                .iter()
                .min_by_key(|(_, (deadline, _))| *deadline)
                .map(|(k, _)| k.clone());
            if let Some(soonest) = soonest {
                entries.remove(&soonest);
            }
        }
        entries.insert(key, (now + ttl, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn answers_live_exactly_as_long_as_allowed() {
        let cache = Cache::new(10);
        cache.insert("a", 1, MINUTE);
        tokio::time::advance(MINUTE - Duration::from_millis(1)).await;
        assert_eq!(cache.get(&"a"), Some(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.len(), 0, "an expired answer is dropped when met");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_drops_expired_answers_first_then_the_soonest_to_expire() {
        let cache = Cache::new(2);
        cache.insert("short", 1, Duration::from_secs(1));
        cache.insert("long", 2, MINUTE);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.insert("new", 3, MINUTE * 2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"long"), Some(2));
        assert_eq!(cache.get(&"new"), Some(3));

        cache.insert("newest", 4, MINUTE * 3);
        assert_eq!(cache.len(), 2, "the capacity is never exceeded");
        assert_eq!(cache.get(&"long"), None, "the soonest to expire went");
        assert_eq!(cache.get(&"new"), Some(3));
        assert_eq!(cache.get(&"newest"), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_a_key_in_a_full_cache_evicts_nothing() {
        let cache = Cache::new(2);
        cache.insert("a", 1, MINUTE);
        cache.insert("b", 2, MINUTE);
        cache.insert("a", 3, MINUTE);
        assert_eq!((cache.get(&"a"), cache.get(&"b")), (Some(3), Some(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_capacity_or_zero_ttl_caches_nothing() {
        let off = Cache::new(0);
        off.insert("a", 1, MINUTE);
        assert_eq!(off.get(&"a"), None);
        let on = Cache::new(1);
        on.insert("a", 1, Duration::ZERO);
        assert_eq!(on.get(&"a"), None);
    }
}
