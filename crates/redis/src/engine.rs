//! [`RedisEngine`]: the [`Engine`] trait over one Redis.
//!
//! Commands go through redis-rs's `ConnectionManager` (one multiplexed
//! connection, re-established on demand, no retries: a command that fails
//! fails at once, so that publish answers 503 instead of hanging). Behind
//! Sentinel the monitor asks the sentinels for the primary at every check,
//! and replaces the manager when the primary moved (a failover).
//! Notifications come on a dedicated pub/sub connection (see [`crate::pubsub`]).
//! A monitor task checks every [`Config::check_interval`] that Redis answers
//! and holds the same epoch, and keeps the metadata of locally watched
//! channels from expiring.
//!
//! Local state is one map from channel to its watchers (a `watch` sender and
//! a count) and its [`Recent`] cache. Its lock is never held across an await.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use herald_bus::{
    ChannelInfo, ChannelName, Draft, Engine, Error as BusError, Health, Message, Page, Signal, Tap,
    Taps, Watch,
};
use redis::{
    Client, ErrorKind, RedisError, ServerErrorKind,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::timeout,
};

use crate::{
    Config, Error,
    keys::Keys,
    publisher::{self, Queue},
    recent::Recent,
    script::{self, Notification, Scripts},
    target::{self, Target},
};

/// The Redis engine. Cheap to clone; clones share connections and state.
/// Dropping the last clone stops its background tasks.
#[derive(Clone)]
pub struct RedisEngine {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    /// Where publishes wait for their script call (see [`crate::publisher`]).
    queue: Arc<Queue>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// State shared by the engine handle, its tasks and every watch guard.
pub(crate) struct Shared {
    /// Where Redis is; asked again after failures behind Sentinel.
    pub(crate) target: Target,
    /// The command connection and the address it goes to. Cloned out
    /// before every command, so the lock is never held across an await.
    conn: Mutex<(ConnectionManager, String)>,
    /// [`Config::timeout`], for new connections after a failover.
    pub(crate) timeout: Duration,
    pub(crate) keys: Keys,
    scripts: Scripts,
    bounds: herald_bus::Config,
    /// The epoch last seen in Redis.
    epoch: AtomicU64,
    /// Why commands fail, while they do.
    commands_down: Mutex<Option<String>>,
    /// Why there is no pub/sub connection, while there is none.
    pubsub_down: Mutex<Option<String>>,
    channels: Mutex<HashMap<ChannelName, Local>>,
    /// Channels whose SUBSCRIBE state may need to change.
    pending: Mutex<HashSet<ChannelName>>,
    /// Wakes the pub/sub task to (un)subscribe the pending channels.
    pub(crate) wake: Notify,
}

/// One locally watched channel.
struct Local {
    tx: watch::Sender<Signal>,
    /// Local subscribers that take the next cached message from the task
    /// that caches it (herald-bus's taps): offered each message in cache
    /// order, once the map's lock is released.
    taps: Arc<Taps>,
    /// Live watches (the channel's local subscriber count).
    watchers: usize,
    recent: Recent,
    /// The newest id this instance published here. The cache serves reads
    /// only once it holds it, so that a publish is visible to the next read
    /// on the same instance even before its notification comes back.
    published: u64,
    /// The newest id this instance knows to exist here: its own publishes
    /// and what its reads from Redis answered. A reader past the cache but
    /// not past this has read Redis ahead of the notifications; it is told
    /// "nothing new" until they catch up (and wake it), instead of reading
    /// Redis again at every wake and so staying ahead for good.
    known: u64,
}

/// What a remote read found, with the byte count the info endpoint needs.
struct Remote {
    page: Page,
    bytes: usize,
}

impl RedisEngine {
    /// Connects to Redis, reads (or creates) the epoch, opens the pub/sub
    /// connection and starts the background tasks on the current tokio
    /// runtime. `history` is the bus's one engine configuration (bounds,
    /// enforced in Redis, and clock), as [`MemoryEngine::new`] takes it.
    ///
    /// [`MemoryEngine::new`]: herald_bus::MemoryEngine::new
    ///
    /// Fails with [`Error::InvalidUrl`] or, when Redis does not answer
    /// within the configured timeout, [`Error::Unreachable`]: a gateway
    /// should not start on a store it cannot reach.
    pub async fn connect(config: &Config, history: herald_bus::Config) -> Result<Self, Error> {
        let target = Target::new(config)?;
        let unreachable = |e: String| Error::Unreachable(e);
        let client = timeout(config.timeout, target.client())
            .await
            .map_err(|_| unreachable("no sentinel answered in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = manager(&client, config.timeout)
            .await
            .map_err(unreachable)?;
        let pubsub = timeout(config.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let shared = Arc::new(Shared {
            target,
            conn: Mutex::new((conn, target::address(&client))),
            timeout: config.timeout,
            keys: Keys::new(&config.prefix),
            scripts: Scripts::new(),
            bounds: history,
            epoch: AtomicU64::new(0),
            commands_down: Mutex::new(None),
            pubsub_down: Mutex::new(None),
            channels: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        let text = shared
            .fetch_epoch()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let epoch = text
            .parse()
            .map_err(|_| Error::Malformed(format!("the epoch key holds {text:?}")))?;
        shared.epoch.store(epoch, Ordering::Relaxed);
        let queue = Arc::new(Queue::new());
        let tasks = vec![
            tokio::spawn(publisher::run(shared.clone(), queue.clone())),
            tokio::spawn(crate::pubsub::run(
                shared.clone(),
                pubsub,
                config.check_interval,
            )),
            tokio::spawn(monitor(shared.clone(), config.check_interval)),
        ];
        Ok(RedisEngine {
            handle: Arc::new(Handle {
                shared,
                queue,
                tasks,
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

impl Engine for RedisEngine {
    fn epoch(&self) -> u64 {
        self.shared().epoch.load(Ordering::Relaxed)
    }

    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, BusError>> {
        self.handle.queue.publish(self.shared(), drafts).boxed()
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, BusError>> {
        async move {
            let shared = self.shared();
            if let Some(page) = shared.cached(channel, after, limit) {
                return Ok(page);
            }
            Ok(shared.read_remote(channel, after, limit).await?.page)
        }
        .boxed()
    }

    /// Pages the local cache holds are answered from it; the others are
    /// read from Redis in one script call.
    fn read_many<'a>(
        &'a self,
        reads: &'a [(ChannelName, u64)],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Page>, BusError>> {
        async move {
            let shared = self.shared();
            let mut pages: Vec<Option<Page>> = reads
                .iter()
                .map(|(channel, after)| shared.cached(channel, *after, limit))
                .collect();
            let missing: Vec<(&ChannelName, u64)> = reads
                .iter()
                .zip(&pages)
                .filter(|(_, page)| page.is_none())
                .map(|((channel, after), _)| (channel, *after))
                .collect();
            if !missing.is_empty() {
                let mut fetched = shared.read_remote_many(&missing, limit).await?.into_iter();
                for page in pages.iter_mut().filter(|p| p.is_none()) {
                    *page = fetched.next().map(|r| r.page);
                }
            }
            Ok(pages.into_iter().map(Option::unwrap_or_default).collect())
        }
        .boxed()
    }

    fn watch(&self, channel: &ChannelName) -> Watch {
        self.shared().watch(channel)
    }

    fn attach(&self, channel: &ChannelName, tap: &Arc<Tap>, pos: u64) -> bool {
        self.shared().attach(channel, tap, pos)
    }

    fn info<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<ChannelInfo, BusError>> {
        async move {
            let shared = self.shared();
            let Remote { page, bytes } = shared.read_remote(channel, 0, 0).await?;
            let retained = (page.last + 1).saturating_sub(page.oldest) as usize;
            let subscribers = shared.lock().get(channel).map_or(0, |l| l.watchers);
            Ok(ChannelInfo {
                retained,
                bytes,
                first_id: (retained > 0).then_some(page.oldest),
                last_id: (page.last > 0).then_some(page.last),
                subscribers,
            })
        }
        .boxed()
    }

    fn delete<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<bool, BusError>> {
        async move {
            let shared = self.shared();
            let keys = &shared.keys;
            let (epoch, existed): (String, u8) = shared
                .scripts
                .delete
                .key(keys.epoch())
                .key(keys.meta(channel))
                .key(keys.log(channel))
                .arg(script::candidate_epoch())
                .arg(keys.notify(channel))
                .arg(shared.bounds.max_age.as_millis() as u64)
                .invoke_async(&mut shared.conn())
                .await
                .map_err(|e| shared.failed(&e))?;
            shared.succeeded();
            shared.observe_epoch(&epoch);
            Ok(existed == 1)
        }
        .boxed()
    }

    fn health(&self) -> Health {
        let shared = self.shared();
        let why = lock(&shared.commands_down)
            .clone()
            .or_else(|| lock(&shared.pubsub_down).clone());
        why.map_or(Health::Up, Health::Down)
    }

    /// Channels with subscribers on this instance (history is in Redis).
    fn channels(&self) -> Option<usize> {
        Some(self.shared().lock().len())
    }
}

impl Shared {
    /// The command connection (a cheap clone of the shared manager).
    fn conn(&self) -> ConnectionManager {
        lock(&self.conn).0.clone()
    }

    /// Behind Sentinel: asks the sentinels for the primary and, when it
    /// moved, connects to it and sends every later command there. A
    /// failure here is logged and tried again at the next check.
    async fn follow(&self) {
        let client = match timeout(self.timeout, self.target.client()).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return tracing::warn!(error = %e, "sentinel: no primary"),
            Err(_) => return tracing::warn!("sentinel: no answer in time"),
        };
        let address = target::address(&client);
        if lock(&self.conn).1 == address {
            return;
        }
        match manager(&client, self.timeout).await {
            Ok(conn) => {
                tracing::warn!(primary = %address, "sentinel: following the new primary");
                *lock(&self.conn) = (conn, address);
            }
            Err(e) => tracing::warn!(primary = %address, error = %e, "sentinel: cannot connect"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ChannelName, Local>> {
        lock(&self.channels)
    }

    /// Records a failed command; answers the bus error to return.
    fn failed(&self, e: &dyn std::fmt::Display) -> BusError {
        let why = format!("redis: {e}");
        tracing::debug!(error = %e, "redis command failed");
        let mut down = lock(&self.commands_down);
        if down.is_none() {
            tracing::warn!(error = %e, "redis unavailable");
        }
        *down = Some(why.clone());
        BusError::Unavailable(why)
    }

    fn succeeded(&self) {
        if lock(&self.commands_down).take().is_some() {
            tracing::info!("redis available again");
        }
    }

    pub(crate) fn set_pubsub_down(&self, why: Option<String>) {
        *lock(&self.pubsub_down) = why;
    }

    /// Adopts the epoch Redis reported. If it changed (Redis lost its data,
    /// or is another Redis), every cache is dropped and every watcher woken:
    /// their next read sees the new epoch and reports a gap.
    /// Answers the epoch in force afterwards.
    fn observe_epoch(&self, text: &str) -> u64 {
        match text.parse::<u64>() {
            Ok(epoch) => self.adopt_epoch(epoch),
            Err(_) => {
                tracing::warn!(epoch = text, "ignoring a malformed epoch in Redis");
                self.epoch.load(Ordering::Relaxed)
            }
        }
    }

    fn adopt_epoch(&self, epoch: u64) -> u64 {
        let old = self.epoch.swap(epoch, Ordering::Relaxed);
        if old != epoch {
            tracing::warn!(old, new = epoch, "redis epoch changed: history was lost");
            self.reset_all();
        }
        epoch
    }

    /// Drops every cache and wakes every watcher, so that each re-reads from
    /// Redis.
    pub(crate) fn reset_all(&self) {
        for local in self.lock().values_mut() {
            local.recent.clear();
            local.published = 0;
            local.known = 0;
            local.tx.send_modify(|_| {});
        }
    }

    /// Drops every cache without waking anyone (the pub/sub connection is
    /// gone; watchers are woken once it is back).
    pub(crate) fn forget_all(&self) {
        for local in self.lock().values_mut() {
            local.recent.clear();
        }
    }

    async fn fetch_epoch(&self) -> Result<String, RedisError> {
        self.scripts
            .epoch
            .key(self.keys.epoch())
            .arg(script::candidate_epoch())
            .invoke_async(&mut self.conn())
            .await
    }

    /// Stores `drafts` with one publish script call (the publisher task
    /// calls this with every publish queued at the time) and hands the
    /// stored messages to the local cache.
    pub(crate) async fn store(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Message>>, BusError> {
        let stored = self
            .run_publish(&drafts)
            .await
            .map_err(|e| self.failed(&e))?;
        self.succeeded();
        let bad = |why: String| BusError::Unavailable(format!("redis: publish script: {why}"));
        let stored = script::decode_stored(&stored).map_err(bad)?;
        let epoch = self.observe_epoch(&stored.epoch);
        if stored.ids.len() != drafts.len() {
            return Err(bad("a wrong id count".into()));
        }
        let messages: Vec<_> = drafts
            .into_iter()
            .zip(stored.ids)
            .zip(stored.first + 1..)
            .map(|((d, id), order)| {
                Arc::new(Message::new(d, id, stored.time, epoch).with_order(order))
            })
            .collect();
        self.published(&messages);
        Ok(messages)
    }

    /// Runs the publish script on `drafts` (see script.rs for its
    /// arguments) and answers its raw reply. The command is built directly
    /// (redis-rs's script invocation would copy every argument twice), and
    /// is sent by hash, loading the script first if Redis does not know it
    /// (a restarted Redis).
    async fn run_publish(&self, drafts: &[Draft]) -> redis::RedisResult<Vec<u8>> {
        let keys = &self.keys;
        let mut channels: Vec<&ChannelName> = Vec::new();
        let mut numbers = Vec::with_capacity(drafts.len());
        let mut seen: HashMap<&ChannelName, usize> = HashMap::new();
        for d in drafts {
            let n = *seen.entry(&d.channel).or_insert_with(|| {
                channels.push(&d.channel);
                channels.len()
            });
            numbers.push(n);
        }
        let script = &self.scripts.publish;
        let mut call = redis::cmd("EVALSHA");
        call.arg(script.get_hash())
            .arg(3 + 2 * channels.len())
            .arg(keys.epoch())
            .arg(keys.floor())
            .arg(keys.order());
        for c in &channels {
            call.arg(keys.meta(c)).arg(keys.log(c));
        }
        let b = &self.bounds;
        let ttl = (b.max_age.as_millis() as u64).max(1);
        call.arg(script::candidate_epoch())
            .arg(b.max_messages)
            .arg(b.max_bytes)
            .arg(b.max_age.as_millis() as u64)
            .arg(ttl)
            .arg(2 * ttl)
            .arg(script::clock_arg(&b.clock))
            .arg(channels.len());
        for c in &channels {
            call.arg(keys.notify(c));
        }
        let mut kind = Vec::new();
        for (d, n) in drafts.iter().zip(&numbers) {
            script::draft_kind(d, &mut kind);
            call.arg(n).arg(&kind[..]).arg(&d.payload.bytes()[..]);
        }
        let mut conn = self.conn();
        match call.query_async(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await?;
                call.query_async(&mut conn).await
            }
            answer => answer,
        }
    }

    /// Reads from the local cache if it covers `after` and holds everything
    /// this instance published to the channel.
    fn cached(&self, channel: &ChannelName, after: u64, limit: usize) -> Option<Page> {
        let now = self.bounds.clock.now_millis();
        let min_time = now.saturating_sub(self.bounds.max_age.as_millis() as u64);
        let mut map = self.lock();
        let local = map.get_mut(channel)?;
        let last = local.recent.last()?;
        if last < local.published {
            return None;
        }
        if after > last && after <= local.known {
            return local.recent.ahead(after);
        }
        local.recent.page(after, limit, min_time)
    }

    /// Hands messages this instance just stored to the cache of their
    /// channel: a message that follows the cache's newest one is cached and
    /// its local watchers are woken now, without waiting for its
    /// notification (which is then a duplicate, ignored). Otherwise (the
    /// cache is empty, or a message from elsewhere is still on its way) its
    /// id is noted for [`Shared::cached`], which sends reads to Redis until
    /// the notifications have caught up.
    fn published(&self, messages: &[Arc<Message>]) {
        let mut cached: Vec<(Arc<Taps>, Vec<Arc<Message>>)> = Vec::new();
        let mut map = self.lock();
        for m in messages {
            if let Some(local) = map.get_mut(&m.channel) {
                local.published = local.published.max(m.id);
                local.known = local.known.max(m.id);
                if local.recent.follow(m, &self.bounds) {
                    local.tx.send_replace(Signal {
                        last: m.id,
                        gone: false,
                    });
                    match cached.iter_mut().find(|(t, _)| Arc::ptr_eq(t, &local.taps)) {
                        Some((_, run)) => run.push(m.clone()),
                        None => cached.push((local.taps.clone(), vec![m.clone()])),
                    }
                }
            }
        }
        drop(map);
        for (taps, run) in cached {
            taps.offer(&run);
        }
    }

    async fn read_remote(
        &self,
        channel: &ChannelName,
        after: u64,
        limit: usize,
    ) -> Result<Remote, BusError> {
        let mut pages = self.read_remote_many(&[(channel, after)], limit).await?;
        pages
            .pop()
            .ok_or_else(|| BusError::Unavailable("redis: the read script answered no page".into()))
    }

    /// Reads each `(channel, after)` from Redis, in one script call.
    async fn read_remote_many(
        &self,
        reads: &[(&ChannelName, u64)],
        limit: usize,
    ) -> Result<Vec<Remote>, BusError> {
        let keys = &self.keys;
        let b = &self.bounds;
        let mut call = self.scripts.read.key(keys.epoch());
        for (channel, _) in reads {
            call.key(keys.meta(channel)).key(keys.log(channel));
        }
        call.arg(script::candidate_epoch())
            .arg(limit)
            .arg(b.max_messages)
            .arg(b.max_bytes)
            .arg(b.max_age.as_millis() as u64)
            .arg(script::clock_arg(&b.clock));
        for (_, after) in reads {
            call.arg(after);
        }
        type Reply = (String, Vec<(u64, u64, u64, u64, Vec<Vec<u8>>)>);
        let (epoch, pages): Reply = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| self.failed(&e))?;
        self.succeeded();
        if pages.len() != reads.len() {
            return Err(BusError::Unavailable(
                "redis: the read script answered a wrong page count".into(),
            ));
        }
        let before = self.epoch.load(Ordering::Relaxed);
        let epoch = self.observe_epoch(&epoch);
        if epoch != before {
            // The caller holds positions of the old epoch; answer "no
            // history" so that it keeps them, sees the new epoch at its next
            // read and reports a gap, instead of reading new ids as old ones.
            return Ok(reads
                .iter()
                .map(|_| Remote {
                    page: Page::default(),
                    bytes: 0,
                })
                .collect());
        }
        let mut map = self.lock();
        for ((channel, _), (_, _, last, _, _)) in reads.iter().zip(&pages) {
            if let Some(local) = map.get_mut(*channel) {
                local.known = local.known.max(*last);
            }
        }
        drop(map);
        let mut out = Vec::with_capacity(reads.len());
        for ((channel, _), (origin, oldest, last, bytes, items)) in reads.iter().zip(pages) {
            let mut messages = Vec::with_capacity(items.len());
            for raw in items {
                let m = script::decode_message(channel, Bytes::from(raw), epoch).map_err(|e| {
                    BusError::Unavailable(format!("redis: bad stored message: {e}"))
                })?;
                messages.push(Arc::new(m));
            }
            out.push(Remote {
                page: Page {
                    messages,
                    origin,
                    oldest,
                    last,
                },
                bytes: bytes as usize,
            });
        }
        Ok(out)
    }

    fn watch(self: &Arc<Self>, channel: &ChannelName) -> Watch {
        let mut map = self.lock();
        let local = map.entry(channel.clone()).or_insert_with(|| {
            lock(&self.pending).insert(channel.clone());
            self.wake.notify_one();
            Local {
                tx: watch::Sender::new(Signal::default()),
                taps: Arc::default(),
                watchers: 0,
                recent: Recent::default(),
                published: 0,
                known: 0,
            }
        });
        local.watchers += 1;
        let guard = Guard {
            shared: self.clone(),
            channel: channel.clone(),
        };
        Watch::new(local.tx.subscribe(), Some(Box::new(guard)))
    }

    /// Attaches `tap` if this instance's cache of `channel` ends at `pos`:
    /// every later message reaches the cache in order, and is offered to
    /// the tap there.
    fn attach(&self, channel: &ChannelName, tap: &Arc<Tap>, pos: u64) -> bool {
        let map = self.lock();
        let Some(local) = map.get(channel) else {
            return false;
        };
        if local.recent.last() != Some(pos) || local.published > pos {
            return false;
        }
        local.taps.attach(tap.clone());
        true
    }

    fn release(&self, channel: &ChannelName) {
        let mut map = self.lock();
        let Some(local) = map.get_mut(channel) else {
            return;
        };
        local.watchers -= 1;
        if local.watchers == 0 {
            map.remove(channel);
            lock(&self.pending).insert(channel.clone());
            self.wake.notify_one();
        }
    }

    /// Takes the channels whose subscription may need to change.
    pub(crate) fn take_pending(&self) -> Vec<ChannelName> {
        lock(&self.pending).drain().collect()
    }

    /// Every locally watched channel (to subscribe again after a reconnect).
    pub(crate) fn watched(&self) -> Vec<ChannelName> {
        self.lock().keys().cloned().collect()
    }

    pub(crate) fn is_watched(&self, channel: &ChannelName) -> bool {
        self.lock().contains_key(channel)
    }

    /// The SUBSCRIBE for `channels` is confirmed: wake their watchers so
    /// that anything published before it took effect is read from Redis.
    pub(crate) fn subscribed(&self, channels: &[ChannelName]) {
        let mut map = self.lock();
        for c in channels {
            if let Some(local) = map.get_mut(c) {
                local.tx.send_modify(|_| {});
            }
        }
    }

    /// Handles one notification from the pub/sub connection.
    pub(crate) async fn notified(&self, name: &str, payload: Bytes) {
        let Some(channel) = self.keys.channel_of(name) else {
            return;
        };
        match script::decode_notification(&channel, payload) {
            Err(e) => tracing::warn!(%channel, error = %e, "ignoring a malformed notification"),
            Ok(Notification::Deleted { epoch }) => {
                self.adopt_epoch(epoch);
                self.gone(&channel);
            }
            Ok(Notification::Message {
                epoch,
                origin,
                message,
            }) => {
                self.adopt_epoch(epoch);
                let message = Arc::new(message);
                if let Some(after) = self.offer(&channel, origin, &message) {
                    self.fill(&channel, after, origin, message).await;
                }
            }
        }
    }

    /// Caches and signals `message` if it follows the cache (or the cache is
    /// empty). Answers the newest cached id when there is a hole before it.
    fn offer(&self, channel: &ChannelName, origin: u64, message: &Arc<Message>) -> Option<u64> {
        let mut map = self.lock();
        let local = map.get_mut(channel)?;
        match local.recent.last() {
            Some(last) if message.id <= last => None,
            Some(last) if message.id > last + 1 => Some(last),
            _ => {
                local.recent.push(origin, message.clone(), &self.bounds);
                local.tx.send_replace(Signal {
                    last: message.id,
                    gone: false,
                });
                let taps = local.taps.clone();
                drop(map);
                taps.offer(std::slice::from_ref(message));
                None
            }
        }
    }

    /// A notification skipped ids after `after`: read them from Redis into
    /// the cache before waking the watchers, so that their reads find the
    /// whole run locally. If the read fails the cache restarts at `message`
    /// and readers behind it go to Redis themselves.
    async fn fill(&self, channel: &ChannelName, after: u64, origin: u64, message: Arc<Message>) {
        let want = (message.id - after - 1).min(self.bounds.max_messages as u64) as usize;
        let fetched = self.read_remote(channel, after, want).await;
        let mut map = self.lock();
        let Some(local) = map.get_mut(channel) else {
            return;
        };
        if local.recent.last() == Some(after) {
            if let Ok(remote) = fetched {
                for m in remote
                    .page
                    .messages
                    .into_iter()
                    .filter(|m| m.id < message.id)
                {
                    local.recent.push(origin, m, &self.bounds);
                }
            }
        }
        let id = message.id;
        let newest = message.clone();
        if local.recent.last().is_none_or(|last| last < id) {
            local.recent.push(origin, message, &self.bounds);
        }
        local.tx.send_replace(Signal {
            last: id,
            gone: false,
        });
        // The taps take what they can of the run, in order; one that is
        // not at its start (the cache restarted) lets go, and its
        // subscriber reads.
        let run = local
            .recent
            .page(after, usize::MAX, 0)
            .map_or_else(|| vec![newest], |p| p.messages);
        let taps = local.taps.clone();
        drop(map);
        taps.offer(&run);
    }

    /// The channel was deleted: tell its watchers (their sender is dropped,
    /// closing their watches) and start afresh for later watchers.
    fn gone(&self, channel: &ChannelName) {
        let mut map = self.lock();
        let Some(local) = map.get_mut(channel) else {
            return;
        };
        local.recent.clear();
        local.known = 0;
        let old = std::mem::replace(&mut local.tx, watch::Sender::new(Signal::default()));
        old.send_modify(|s| s.gone = true);
        local.taps.release();
    }

    /// Refreshes the expiry of the metadata of watched channels, so that a
    /// quiet channel with subscribers keeps its id sequence (as it does in
    /// memory) instead of restarting with a jump that looks like a gap.
    async fn keep_alive(&self) -> Result<(), RedisError> {
        let watched = self.watched();
        if watched.is_empty() {
            return Ok(());
        }
        let ttl = 2 * self.bounds.max_age.as_millis() as u64;
        let mut pipe = redis::pipe();
        for c in &watched {
            pipe.pexpire(self.keys.meta(c), ttl as i64).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await
    }
}

/// Unregisters one watch when dropped.
struct Guard {
    shared: Arc<Shared>,
    channel: ChannelName,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.release(&self.channel);
    }
}

/// Checks Redis and its epoch every `interval` (behind Sentinel, first asks
/// the sentinels where the primary is: a demoted primary still answers
/// reads, so failed checks alone would not notice); refreshes the expiry of watched channels
/// every quarter of the history age.
async fn monitor(shared: Arc<Shared>, interval: Duration) {
    let keep_every = (shared.bounds.max_age / 4).max(Duration::from_millis(100));
    let tick_every = interval.min(keep_every);
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_keep = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if shared.target.follows_failover() {
            shared.follow().await;
        }
        match shared.fetch_epoch().await {
            Ok(epoch) => {
                shared.succeeded();
                shared.observe_epoch(&epoch);
            }
            Err(e) => {
                shared.failed(&e);
                continue;
            }
        }
        if last_keep.elapsed() >= keep_every {
            last_keep = tokio::time::Instant::now();
            if let Err(e) = shared.keep_alive().await {
                shared.failed(&e);
            }
        }
    }
}

/// A command connection to `client`'s server that fails fast: no retries,
/// `limit` per connection attempt and per reply.
async fn manager(client: &Client, limit: Duration) -> Result<ConnectionManager, String> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    timeout(
        limit * 2,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
