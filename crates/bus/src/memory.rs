//! The in-memory engine, herald's default.
//!
//! Each channel keeps a bounded ring of shared messages (by count, bytes and
//! age) and a `watch` sender that wakes its subscribers. Ids are assigned
//! under the channel's lock, so the ring is always in id order. A background
//! sweeper drops expired messages and removes channels that have neither
//! messages nor subscribers, so memory does not grow with dead channel names.
//!
//! A dropped or deleted channel leaves a tombstone (its first and last id)
//! for one history age, bounded in number. A client whose cursor points into
//! the dropped history is then still told it missed messages, and a channel
//! that comes back within that time continues its ids instead of starting a
//! new run. After the tombstone is gone, a returning channel starts above
//! every id this process assigned, which a cursor reports as a gap.
//!
//! Nothing here survives a restart: a new process has a new epoch, and the
//! cursors of the old one resume with a gap.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt, ready};
use tokio::sync::watch;

use crate::{
    ChannelInfo, ChannelName, Clock, Draft, Engine, Error, Health, Message, Page, Signal, Tap,
    Taps, Watch, message::first_id_now,
};

/// What every engine is built from: the history bounds and the clock that
/// ages messages. One value, handed to whichever engine runs, so that the
/// engines behave alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Messages kept per channel. Default 100.
    pub max_messages: usize,
    /// Bytes kept per channel (data, event name and a fixed 64-byte
    /// overhead per message). Default 1 MiB.
    pub max_bytes: usize,
    /// How long a message is kept. Default 10 minutes.
    pub max_age: Duration,
    /// Where message times and ages are read. Default [`Clock::System`];
    /// tests use a [`ManualClock`](crate::ManualClock).
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_messages: 100,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(600),
            clock: Clock::System,
        }
    }
}

/// The in-memory engine. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct MemoryEngine {
    inner: Arc<Inner>,
}

/// Most tombstones kept; past it the oldest are forgotten first.
const MAX_TOMBSTONES: usize = 100_000;

struct Inner {
    epoch: u64,
    config: Config,
    channels: RwLock<Channels>,
    /// The highest id ever assigned on any channel. A new channel starts
    /// above it, so a channel deleted and created again never reuses an id
    /// that a client may still hold in a cursor.
    floor: AtomicU64,
    /// Publish order across channels (see `Message::with_order`).
    order: AtomicU64,
}

#[derive(Default)]
struct Channels {
    live: HashMap<ChannelName, Arc<Channel>>,
    tombstones: HashMap<ChannelName, Tombstone>,
}

/// What is remembered of a dropped channel.
#[derive(Clone, Copy)]
struct Tombstone {
    origin: u64,
    last: u64,
    /// Wall-clock milliseconds after which it is forgotten.
    until: u64,
}

impl Channels {
    /// The live channel `name`, created (continuing a tombstone's ids, if
    /// any) when missing.
    fn get_or_create(&mut self, name: &ChannelName) -> Arc<Channel> {
        if let Some(c) = self.live.get(name) {
            return c.clone();
        }
        let mut history = History::default();
        if let Some(t) = self.tombstones.remove(name) {
            history.origin = t.origin;
            history.last = t.last;
        }
        let channel = Arc::new(Channel::new(history));
        self.live.insert(name.clone(), channel.clone());
        channel
    }

    /// Removes a live channel, leaving a tombstone if it ever had an id.
    fn bury(&mut self, name: &ChannelName, until: u64) -> Option<Arc<Channel>> {
        let channel = self.live.remove(name)?;
        let h = channel.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.last > 0 {
            let t = Tombstone {
                origin: h.origin,
                last: h.last,
                until,
            };
            self.tombstones.insert(name.clone(), t);
        }
        drop(h);
        Some(channel)
    }

    fn forget_old_tombstones(&mut self, now: u64) {
        self.tombstones.retain(|_, t| t.until > now);
        if self.tombstones.len() > MAX_TOMBSTONES {
            let mut until: Vec<u64> = self.tombstones.values().map(|t| t.until).collect();
            let cut = until.len() - MAX_TOMBSTONES;
            let (_, &mut threshold, _) = until.select_nth_unstable(cut);
            self.tombstones.retain(|_, t| t.until >= threshold);
        }
    }
}

struct Channel {
    history: Mutex<History>,
    tx: watch::Sender<Signal>,
    /// Subscribers that take the next message from the publishing task.
    taps: Arc<Taps>,
}

#[derive(Default)]
struct History {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
    /// Position before this channel's first id; 0 until the first publish.
    origin: u64,
    /// Newest id assigned; 0 until the first publish.
    last: u64,
}

impl History {
    fn oldest(&self) -> u64 {
        self.messages.front().map_or(self.last + 1, |m| m.id)
    }

    fn prune(&mut self, config: &Config, now: u64) {
        let min_time = now.saturating_sub(config.max_age.as_millis() as u64);
        while let Some(front) = self.messages.front() {
            let over = self.messages.len() > config.max_messages
                || self.bytes > config.max_bytes
                || front.time < min_time;
            if !over {
                break;
            }
            self.bytes -= front.size();
            self.messages.pop_front();
        }
    }
}

impl MemoryEngine {
    /// A new, empty store with a fresh random epoch. Starts the sweeper on
    /// the current tokio runtime when there is one (it stops when the last
    /// clone is dropped); without a runtime, expiry happens only on access.
    pub fn new(config: Config) -> Self {
        let inner = Arc::new(Inner {
            epoch: rand::random::<u64>() >> 1,
            config,
            channels: RwLock::new(Channels::default()),
            floor: AtomicU64::new(0),
            order: AtomicU64::new(0),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let period = (inner.config.max_age / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            handle.spawn(sweep(Arc::downgrade(&inner), period));
        }
        MemoryEngine { inner }
    }

    /// The live channel, or the tombstone of a dropped one.
    fn lookup(&self, name: &ChannelName) -> Result<Arc<Channel>, Option<Tombstone>> {
        let map = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match map.live.get(name) {
            Some(c) => Ok(c.clone()),
            None => Err(map.tombstones.get(name).copied()),
        }
    }

    fn now(&self) -> u64 {
        self.inner.config.clock.now_millis()
    }

    fn tombstone_until(&self, now: u64) -> u64 {
        now.saturating_add(self.inner.config.max_age.as_millis() as u64)
    }

    /// Number of channels held in memory (with messages or subscribers).
    pub fn channel_count(&self) -> usize {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .len()
    }

    fn publish_now(&self, drafts: Vec<Draft>) -> Vec<Arc<Message>> {
        let now = self.now();
        let mut out = Vec::with_capacity(drafts.len());
        // The map's write lock is held while appending so that the sweeper
        // can never remove a channel between lookup and append.
        let mut map = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut touched: Vec<(Arc<Channel>, Vec<Arc<Message>>)> = Vec::new();
        for draft in drafts {
            let channel = map.get_or_create(&draft.channel);
            let mut h = channel.history.lock().unwrap_or_else(|e| e.into_inner());
            let id = if h.last == 0 {
                let first = first_id_now().max(self.inner.floor.load(Ordering::Relaxed) + 1);
                h.origin = first - 1;
                first
            } else {
                h.last + 1
            };
            h.last = id;
            self.inner.floor.fetch_max(id, Ordering::Relaxed);
            let order = self.inner.order.fetch_add(1, Ordering::Relaxed);
            let message =
                Arc::new(Message::new(draft, id, now, self.inner.epoch).with_order(order));
            h.bytes += message.size();
            h.messages.push_back(message.clone());
            h.prune(&self.inner.config, now);
            drop(h);
            match touched.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &channel)) {
                Some(t) => t.1.push(message.clone()),
                None => touched.push((channel, vec![message.clone()])),
            }
            out.push(message);
        }
        drop(map);
        for (channel, messages) in touched {
            // One pass over the subscribers that wait for exactly these
            // messages, then a wake-up for the others.
            channel.taps.offer(&messages);
            let last = messages.last().map_or(0, |m| m.id);
            channel.tx.send_replace(Signal { last, gone: false });
        }
        out
    }

    fn read_now(&self, name: &ChannelName, after: u64, limit: usize) -> Page {
        let channel = match self.lookup(name) {
            Ok(c) => c,
            Err(None) => return Page::default(),
            Err(Some(t)) => {
                return Page {
                    messages: Vec::new(),
                    origin: t.origin,
                    oldest: t.last + 1,
                    last: t.last,
                };
            }
        };
        let mut h = channel.history.lock().unwrap_or_else(|e| e.into_inner());
        h.prune(&self.inner.config, self.now());
        // Ids are consecutive in the ring, so the start index is arithmetic.
        let oldest = h.oldest();
        let skip = after.saturating_add(1).saturating_sub(oldest) as usize;
        let messages = h.messages.iter().skip(skip).take(limit).cloned().collect();
        Page {
            messages,
            origin: h.origin,
            oldest,
            last: h.last,
        }
    }
}

impl Channel {
    /// No retained message (after pruning) and no subscriber.
    fn is_dead(&self, config: &Config, now: u64) -> bool {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.prune(config, now);
        h.messages.is_empty() && self.tx.receiver_count() == 0 && !self.taps.prune()
    }

    fn new(history: History) -> Self {
        Channel {
            history: Mutex::new(history),
            tx: watch::Sender::new(Signal::default()),
            taps: Arc::default(),
        }
    }
}

impl Engine for MemoryEngine {
    fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>> {
        ready(Ok(self.publish_now(drafts))).boxed()
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, Error>> {
        ready(Ok(self.read_now(channel, after, limit))).boxed()
    }

    fn watch(&self, name: &ChannelName) -> Watch {
        // Most watches are on live channels: look up under the read lock
        // and take the write lock only to create one.
        if let Ok(channel) = self.lookup(name) {
            return Watch::new(channel.tx.subscribe(), None);
        }
        let mut map = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let channel = map.get_or_create(name);
        Watch::new(channel.tx.subscribe(), None)
    }

    fn attach(&self, name: &ChannelName, tap: &Arc<Tap>, pos: u64) -> bool {
        let Ok(channel) = self.lookup(name) else {
            return false;
        };
        // Under the history lock, which orders publishes: a message stored
        // after this check is offered to the tap.
        let h = channel.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.last != pos {
            return false;
        }
        channel.taps.attach(tap.clone());
        true
    }

    fn info<'a>(&'a self, name: &'a ChannelName) -> BoxFuture<'a, Result<ChannelInfo, Error>> {
        let info = match self.lookup(name) {
            Ok(channel) => {
                let mut h = channel.history.lock().unwrap_or_else(|e| e.into_inner());
                h.prune(&self.inner.config, self.now());
                ChannelInfo {
                    retained: h.messages.len(),
                    bytes: h.bytes,
                    first_id: h.messages.front().map(|m| m.id),
                    last_id: (h.last > 0).then_some(h.last),
                    subscribers: channel.tx.receiver_count(),
                }
            }
            Err(tombstone) => ChannelInfo {
                last_id: tombstone.map(|t| t.last),
                ..ChannelInfo::default()
            },
        };
        ready(Ok(info)).boxed()
    }

    fn delete<'a>(&'a self, name: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>> {
        let until = self.tombstone_until(self.now());
        let removed = self
            .inner
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .bury(name, until);
        if let Some(channel) = &removed {
            let last = channel
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .last;
            channel.tx.send_replace(Signal { last, gone: true });
            channel.taps.release();
        }
        ready(Ok(removed.is_some())).boxed()
    }

    fn health(&self) -> Health {
        Health::Up
    }

    /// Live channels: those with retained messages or subscribers.
    fn channels(&self) -> Option<usize> {
        let channels = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Some(channels.live.len())
    }
}

async fn sweep(inner: Weak<Inner>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = inner.config.clock.now_millis();
        let until = now.saturating_add(inner.config.max_age.as_millis() as u64);
        // Find the dead under the read lock; take the write lock only to
        // remove them, checking again since a publish or watch may have
        // revived one in between.
        let dead: Vec<ChannelName> = {
            let map = inner.channels.read().unwrap_or_else(|e| e.into_inner());
            map.live
                .iter()
                .filter(|(_, c)| c.is_dead(&inner.config, now))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let mut map = inner.channels.write().unwrap_or_else(|e| e.into_inner());
        for name in dead {
            if map
                .live
                .get(&name)
                .is_some_and(|c| c.is_dead(&inner.config, now))
            {
                map.bury(&name, until);
            }
        }
        map.forget_old_tombstones(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn draft(channel: &str, data: &str) -> Draft {
        Draft {
            channel: ChannelName::new(channel).unwrap(),
            event: None,
            payload: Payload::text(data.to_string()).unwrap(),
        }
    }

    fn engine(max_messages: usize, max_bytes: usize, max_age: Duration) -> MemoryEngine {
        MemoryEngine::new(Config {
            max_messages,
            max_bytes,
            max_age,
            ..Config::default()
        })
    }

    #[tokio::test]
    async fn ids_are_consecutive_and_history_is_bounded_by_count() {
        let e = engine(3, 1 << 20, Duration::from_secs(60));
        let c = ChannelName::new("c").unwrap();
        let msgs = e
            .publish((0..5).map(|i| draft("c", &i.to_string())).collect())
            .await
            .unwrap();
        for w in msgs.windows(2) {
            assert_eq!(w[1].id, w[0].id + 1);
        }
        let page = e.read(&c, 0, 100).await.unwrap();
        assert_eq!(page.messages.len(), 3);
        assert_eq!(page.oldest, msgs[2].id);
        assert_eq!(page.last, msgs[4].id);
        assert_eq!(page.origin, msgs[0].id - 1);
        let after = e.read(&c, msgs[3].id, 100).await.unwrap();
        assert_eq!(after.messages.len(), 1);
        assert_eq!(after.messages[0].id, msgs[4].id);
    }

    #[tokio::test(start_paused = true)]
    async fn history_is_bounded_by_age_and_dead_channels_are_dropped() {
        let clock = crate::ManualClock::new();
        let e = MemoryEngine::new(Config {
            max_age: Duration::from_millis(200),
            clock: Clock::Manual(clock.clone()),
            ..Config::default()
        });
        let c = ChannelName::new("c").unwrap();
        e.publish(vec![draft("c", "x")]).await.unwrap();
        assert_eq!(e.channel_count(), 1);
        clock.advance(Duration::from_millis(199));
        assert_eq!(e.read(&c, 0, 10).await.unwrap().messages.len(), 1);
        clock.advance(Duration::from_millis(2));
        assert_eq!(e.read(&c, 0, 10).await.unwrap().messages.len(), 0);
        // The sweeper ticks on (paused) tokio time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            e.channel_count(),
            0,
            "sweeper drops channels with no messages and no watchers"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watched_channels_survive_the_sweeper_and_delete_closes_watches() {
        let e = engine(100, 1 << 20, Duration::from_millis(100));
        let c = ChannelName::new("c").unwrap();
        let mut w = e.watch(&c);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(e.channel_count(), 1);
        assert_eq!(e.info(&c).await.unwrap().subscribers, 1);
        assert!(!w.mark_seen());
        assert!(e.delete(&c).await.unwrap());
        w.changed().await;
        assert!(
            w.mark_seen(),
            "delete must tell the watcher the channel is gone"
        );
        drop(w);
        assert!(!e.delete(&c).await.unwrap());
    }

    #[tokio::test]
    async fn a_recreated_channel_never_reuses_ids() {
        let e = engine(100, 1 << 20, Duration::from_secs(60));
        let c = ChannelName::new("c").unwrap();
        let first = e
            .publish(vec![draft("c", "a"), draft("c", "b")])
            .await
            .unwrap();
        e.delete(&c).await.unwrap();
        let again = e.publish(vec![draft("c", "c")]).await.unwrap();
        assert!(again[0].id > first[1].id);
    }
}
