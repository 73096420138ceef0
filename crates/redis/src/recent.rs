//! The local cache of a watched channel's recent messages, filled from
//! notifications, so that one notification is read by every local
//! subscriber without a Redis round trip each.
//!
//! Invariant: the cached ids are consecutive, and a cache only ever holds
//! messages received on the current pub/sub connection (it is cleared when
//! the connection drops or the epoch changes). A read is served from it only
//! when its position lies inside the cached run; anything older, and any
//! position past the newest cached id, goes to Redis. What it leaves out:
//! deciding when to read Redis to fill a hole (the engine does that).

use std::{collections::VecDeque, sync::Arc};

use herald_bus::{Message, Page};

/// A consecutive run of a channel's newest messages.
#[derive(Default)]
pub(crate) struct Recent {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
    /// The channel's origin as the last notification told it.
    origin: u64,
}

impl Recent {
    /// Id of the newest cached message.
    pub(crate) fn last(&self) -> Option<u64> {
        self.messages.back().map(|m| m.id)
    }

    /// Appends `message` if it follows the newest cached one; otherwise the
    /// cache restarts with it. Keeps within the history bounds by count and
    /// bytes (age is applied when reading).
    pub(crate) fn push(&mut self, origin: u64, message: Arc<Message>, bounds: &herald_bus::Config) {
        if self.last().is_some_and(|last| last + 1 != message.id) {
            self.clear();
        }
        self.origin = origin;
        self.bytes += message.size();
        self.messages.push_back(message);
        while self.messages.len() > bounds.max_messages || self.bytes > bounds.max_bytes {
            self.pop();
        }
    }

    /// The page of a reader already at `after`, past the newest cached id
    /// (it read Redis ahead of the notifications): nothing new for it yet.
    pub(crate) fn ahead(&self, after: u64) -> Option<Page> {
        Some(Page {
            messages: Vec::new(),
            origin: self.origin,
            oldest: self.messages.front()?.id,
            last: after,
        })
    }

    /// Appends `message` only if it is the next id after a non-empty run
    /// (a message this instance published, known before its notification);
    /// answers whether it did. An empty cache is left to the notifications,
    /// which start a run only on the current pub/sub connection.
    pub(crate) fn follow(&mut self, message: &Arc<Message>, bounds: &herald_bus::Config) -> bool {
        if self.last().is_none_or(|last| last + 1 != message.id) {
            return false;
        }
        let origin = self.origin;
        self.push(origin, message.clone(), bounds);
        true
    }

    pub(crate) fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }

    fn pop(&mut self) {
        if let Some(m) = self.messages.pop_front() {
            self.bytes -= m.size();
        }
    }

    /// Up to `limit` messages after `after`, if the cache covers that
    /// position: `after` is at most the newest cached id and at least the
    /// one before the oldest still in age.
    pub(crate) fn page(&mut self, after: u64, limit: usize, min_time: u64) -> Option<Page> {
        while self.messages.front().is_some_and(|m| m.time < min_time) {
            self.pop();
        }
        let oldest = self.messages.front()?.id;
        let last = self.last()?;
        if after + 1 < oldest || after > last {
            return None;
        }
        let skip = (after + 1 - oldest) as usize;
        Some(Page {
            messages: self
                .messages
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
            origin: self.origin,
            oldest,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{ChannelName, Draft, Payload};

    fn msg(id: u64, time: u64) -> Arc<Message> {
        let draft = Draft {
            channel: ChannelName::new("c").unwrap(),
            event: None,
            payload: Payload::text("x").unwrap(),
        };
        Arc::new(Message::new(draft, id, time, 1))
    }

    fn bounds(max_messages: usize) -> herald_bus::Config {
        herald_bus::Config {
            max_messages,
            ..herald_bus::Config::default()
        }
    }

    #[test]
    fn serves_only_positions_inside_the_run() {
        let mut r = Recent::default();
        for id in 10..15 {
            r.push(9, msg(id, 100), &bounds(3));
        }
        assert_eq!(
            r.page(11, 10, 0).map(|p| p.oldest),
            Some(12),
            "bounded by count"
        );
        let p = r.page(12, 10, 0).unwrap();
        assert_eq!(
            p.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            [13, 14]
        );
        assert_eq!((p.origin, p.last), (9, 14));
        assert!(r.page(14, 10, 0).unwrap().messages.is_empty());
        assert!(r.page(10, 10, 0).is_none(), "older than the run: ask Redis");
        assert!(r.page(15, 10, 0).is_none(), "newer than the run: ask Redis");
        assert!(r.page(13, 10, 101).is_none(), "expired by age");
    }

    #[test]
    fn published_messages_only_extend_a_run() {
        let mut r = Recent::default();
        assert!(!r.follow(&msg(5, 0), &bounds(10)), "no run to extend");
        r.push(4, msg(5, 0), &bounds(10));
        assert!(!r.follow(&msg(5, 0), &bounds(10)), "already cached");
        assert!(!r.follow(&msg(7, 0), &bounds(10)), "6 is still on its way");
        assert!(r.follow(&msg(6, 0), &bounds(10)));
        let p = r.page(4, 10, 0).unwrap();
        assert_eq!(
            (p.messages.len(), p.origin, p.oldest, p.last),
            (2, 4, 5, 6),
            "keeps the origin the notifications told"
        );
    }

    #[test]
    fn a_reader_past_the_run_is_told_nothing_new() {
        let mut r = Recent::default();
        assert!(r.ahead(7).is_none(), "no run, no answer");
        r.push(4, msg(5, 0), &bounds(10));
        let p = r.ahead(7).unwrap();
        assert_eq!((p.messages.len(), p.origin, p.oldest, p.last), (0, 4, 5, 7));
    }

    #[test]
    fn a_hole_restarts_the_run() {
        let mut r = Recent::default();
        r.push(0, msg(1, 0), &bounds(10));
        r.push(0, msg(3, 0), &bounds(10));
        assert!(r.page(1, 10, 0).is_none());
        assert_eq!(r.page(2, 10, 0).unwrap().messages.len(), 1);
    }
}
