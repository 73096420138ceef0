//! Reading channels from a position: gap detection, multi-channel merge and
//! waiting for new messages. Written once, for every engine and transport.
//!
//! A subscriber is a list of positions (one per channel) plus, when it
//! waits, one [`Watch`] per channel. It never owns a queue: each wake-up
//! reads the shared history after its positions, so a slow subscriber costs
//! its positions and nothing more, and one that fell behind the retained
//! history is told so (a gap) and continues from the oldest retained message.

use std::{sync::Arc, time::Duration};

use futures::future::{pending, select_all};

use crate::{ChannelName, Cursor, Engine, Error, Message, Outlet, Page, Tap, Watch};

/// Where a new subscription or read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Only messages published from now on.
    Now,
    /// The `n` most recent retained messages of each channel, then new ones.
    Last(usize),
    /// After a cursor's positions. Channels the cursor does not name start
    /// now; a cursor of another epoch resumes from the oldest retained
    /// message with a gap.
    From(Cursor),
}

/// What one read produced.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Messages in per-channel id order, interleaved across channels by
    /// publish time.
    pub messages: Vec<Arc<Message>>,
    /// Channels on which messages were missed (position older than the
    /// retained history, or from another epoch).
    pub gaps: Vec<ChannelName>,
    /// Channels that were deleted; they are no longer part of the
    /// subscription.
    pub gone: Vec<ChannelName>,
    /// Position before this batch's messages, once its gaps are accounted
    /// for: resuming from it neither reports the gaps again nor misses a
    /// message of the batch. Advance it with [`Cursor::advance`] to get the
    /// position after each message of a multi-channel batch.
    pub start: Cursor,
    /// Position after this batch, covering every channel read.
    pub cursor: Cursor,
}

impl Batch {
    /// A batch with nothing in it, at `cursor` (a hold that ended with no
    /// news).
    pub fn unchanged(cursor: Cursor) -> Self {
        Batch {
            messages: Vec::new(),
            gaps: Vec::new(),
            gone: Vec::new(),
            start: cursor.clone(),
            cursor,
        }
    }

    /// True when there is nothing to tell the client.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.gaps.is_empty() && self.gone.is_empty()
    }

    /// True when messages were missed or a channel is gone.
    pub fn has_gap(&self) -> bool {
        !self.gaps.is_empty() || !self.gone.is_empty()
    }
}

/// One channel's position.
struct Slot {
    channel: ChannelName,
    /// Id of the last message seen, 0 for "before the channel's first".
    pos: u64,
    /// The position came from another epoch: report a gap at the next read.
    stale: bool,
    watch: Option<Watch>,
}

/// Positions in a set of channels, read together.
pub(crate) struct Reader {
    engine: Arc<dyn Engine>,
    epoch: u64,
    slots: Vec<Slot>,
}

struct SlotRead {
    messages: Vec<Arc<Message>>,
    gap: bool,
    /// Where the slot stands if none of `messages` is delivered.
    base: u64,
    /// The engine answered with messages of another epoch than the read's:
    /// the store changed under the read. They were dropped; the slot keeps
    /// its position and goes stale, so that the next read reports the gap
    /// once and delivers them then.
    foreign: bool,
}

impl Reader {
    pub(crate) fn new(engine: Arc<dyn Engine>) -> Self {
        let epoch = engine.epoch();
        Reader {
            engine,
            epoch,
            slots: Vec::new(),
        }
    }

    /// Adds channels (ignoring ones already present) at `start`, all or
    /// none: the positions that need the engine ("now", the last `n`) are
    /// read in one [`Engine::read_many`] call, and the channels are added
    /// only once it succeeded, so a failed or cancelled add changes nothing.
    pub(crate) async fn add(
        &mut self,
        channels: &[ChannelName],
        start: &Start,
        watch: bool,
    ) -> Result<(), Error> {
        let mut fresh: Vec<&ChannelName> = Vec::with_capacity(channels.len());
        for channel in channels {
            if !self.slots.iter().any(|s| &s.channel == channel) && !fresh.contains(&channel) {
                fresh.push(channel);
            }
        }
        // Register before resolving "now", so that nothing published in
        // between can be missed.
        let watches: Vec<Option<Watch>> = fresh
            .iter()
            .map(|c| watch.then(|| self.engine.watch(c)))
            .collect();
        let known = |channel: &ChannelName| match start {
            Start::From(c) if c.epoch() != self.epoch => {
                Some((c.position(channel).map_or(0, |p| p.0), true))
            }
            Start::From(c) => c.position(channel),
            Start::Now | Start::Last(_) => None,
        };
        let wanted: Vec<(ChannelName, u64)> = fresh
            .iter()
            .filter(|c| known(c).is_none())
            .map(|c| ((*c).clone(), 0))
            .collect();
        let mut pages = if wanted.is_empty() {
            Vec::new()
        } else {
            self.engine.read_many(&wanted, 0).await?
        }
        .into_iter();
        // Exactly: most subscriptions never grow, and every idle
        // connection carries this vector.
        self.slots.reserve_exact(fresh.len());
        for (channel, watch) in fresh.into_iter().zip(watches) {
            let (pos, stale) = match known(channel) {
                Some(p) => p,
                None => {
                    let page = pages.next().unwrap_or_default();
                    match start {
                        Start::Last(n) => {
                            let back = page.last.saturating_sub(*n as u64);
                            let first = page.oldest.saturating_sub(1).max(page.origin);
                            (back.max(first), false)
                        }
                        _ => (page.last, false),
                    }
                }
            };
            self.slots.push(Slot {
                channel: channel.clone(),
                pos,
                stale,
                watch,
            });
        }
        Ok(())
    }

    fn remove(&mut self, channels: &[ChannelName]) -> Vec<ChannelName> {
        let mut removed = Vec::new();
        self.slots.retain(|s| {
            let keep = !channels.contains(&s.channel);
            if !keep {
                removed.push(s.channel.clone());
            }
            keep
        });
        removed
    }

    pub(crate) fn cursor(&self) -> Cursor {
        let mut c = Cursor::new(self.epoch);
        for s in &self.slots {
            c.entries.push((s.channel.stable_hash(), s.pos, s.stale));
        }
        c
    }

    /// Reads up to `limit` messages after the current positions and advances
    /// them. Positions change only once every engine read succeeded, so a
    /// failed or cancelled read can simply be retried.
    ///
    /// If the epoch changes while the read is under way, the messages of the
    /// new epoch it met are not delivered against positions of the old one
    /// (they would come again, with a gap, at the next read): the read is
    /// made once more, which reports the gap and delivers them once.
    pub(crate) async fn read(&mut self, limit: usize) -> Result<Batch, Error> {
        let batch = self.read_once(limit).await?;
        if batch.is_empty() && self.slots.iter().any(|s| s.stale) {
            return self.read_once(limit).await;
        }
        Ok(batch)
    }

    async fn read_once(&mut self, limit: usize) -> Result<Batch, Error> {
        let epoch = self.engine.epoch();
        if epoch != self.epoch {
            // The store lost its data (or is another store): every position
            // is now meaningless.
            self.epoch = epoch;
            for s in &mut self.slots {
                s.stale = true;
            }
        }
        let wanted: Vec<(ChannelName, u64)> = self
            .slots
            .iter()
            .map(|s| (s.channel.clone(), if s.stale { 0 } else { s.pos }))
            .collect();
        let pages = if wanted.is_empty() {
            Vec::new()
        } else {
            self.engine.read_many(&wanted, limit).await?
        };
        if pages.len() != wanted.len() {
            return Err(Error::Unavailable(format!(
                "the engine answered {} pages for {} channels",
                pages.len(),
                wanted.len()
            )));
        }
        let mut reads = Vec::with_capacity(self.slots.len());
        for (slot, page) in self.slots.iter().zip(pages) {
            reads.push(self.read_slot(slot, page, limit).await?);
        }
        let merged = merge(&reads, limit);
        let mut gaps = Vec::new();
        for (slot, read) in self.slots.iter_mut().zip(&reads) {
            if read.foreign {
                slot.stale = true;
                continue;
            }
            if read.gap {
                gaps.push(slot.channel.clone());
            }
            slot.stale = false;
            slot.pos = read.base;
        }
        let start = self.cursor();
        for m in &merged {
            if let Some(slot) = self.slots.iter_mut().find(|s| s.channel == m.channel) {
                slot.pos = slot.pos.max(m.id);
            }
        }
        Ok(Batch {
            messages: merged,
            gaps,
            gone: Vec::new(),
            start,
            cursor: self.cursor(),
        })
    }

    /// Makes sense of `page`, what the engine answered for `slot`.
    async fn read_slot(
        &self,
        slot: &Slot,
        mut page: Page,
        limit: usize,
    ) -> Result<SlotRead, Error> {
        let after = if slot.stale { 0 } else { slot.pos };
        if page.last == 0 {
            // The channel has no messages and no id yet (never published,
            // deleted or expired and dropped). Keep the position: if the
            // channel comes back, its ids start above every earlier one and
            // the jump is reported as a gap.
            return Ok(SlotRead {
                messages: Vec::new(),
                gap: slot.stale,
                base: after,
                foreign: false,
            });
        }
        let mut gap = slot.stale;
        let mut from = if after == 0 { page.origin } else { after };
        if from > page.last {
            // A position this channel never reached: ids were reset under
            // it. Deliver what is retained and say so.
            gap = true;
            from = page.origin;
            page = self.engine.read(&slot.channel, 0, limit).await?;
        }
        if from.saturating_add(1) < page.oldest {
            gap = true;
        }
        if page.messages.iter().any(|m| m.epoch() != self.epoch) {
            return Ok(SlotRead {
                messages: Vec::new(),
                gap: false,
                base: slot.pos,
                foreign: true,
            });
        }
        Ok(SlotRead {
            messages: page.messages,
            gap,
            base: from.max(page.oldest.saturating_sub(1)),
            foreign: false,
        })
    }
}

/// Interleaves per-channel runs by publish time, keeping each channel's own
/// order, and cuts at `limit`.
fn merge(reads: &[SlotRead], limit: usize) -> Vec<Arc<Message>> {
    if let [only] = reads {
        let mut v = only.messages.clone();
        v.truncate(limit);
        return v;
    }
    let total = reads
        .iter()
        .map(|r| r.messages.len())
        .sum::<usize>()
        .min(limit);
    let mut heads = vec![0usize; reads.len()];
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let next = (0..reads.len())
            .filter(|&i| heads[i] < reads[i].messages.len())
            .min_by_key(|&i| reads[i].messages[heads[i]].merge_key());
        let Some(i) = next else { break };
        out.push(reads[i].messages[heads[i]].clone());
        heads[i] += 1;
    }
    out
}

/// A live subscription: positions plus a watch on every channel.
///
/// Created by [`Bus::subscribe`](crate::Bus::subscribe). Dropping it
/// unregisters from every channel.
pub struct Subscription {
    reader: Reader,
    /// Channels found deleted, not yet reported (kept across a failed read).
    gone: Vec<ChannelName>,
    /// Where the publishing task may write this subscription's messages
    /// itself (see [`Subscription::deliver_through`]).
    outlet: Option<Arc<dyn Outlet>>,
    /// The tap attached to the engine now, if any: while it is, the
    /// position of the (one) channel is the tap's.
    tap: Option<Arc<Tap>>,
}

impl Subscription {
    pub(crate) fn new(reader: Reader) -> Self {
        Subscription {
            reader,
            gone: Vec::new(),
            outlet: None,
            tap: None,
        }
    }

    /// Lets the publishing task write this subscription's messages straight
    /// to `outlet`, in one pass over the channel's subscribers (see the tap
    /// module, and docs/architecture.md). It does so while the subscription
    /// has exactly one channel, has delivered everything before and waits
    /// in [`next`](Subscription::next), on engines that offer it; the rest
    /// of the time, and for whatever the outlet cannot write at once, `next`
    /// reads and returns batches as usual.
    pub fn deliver_through(&mut self, outlet: Arc<dyn Outlet>) {
        self.outlet = Some(outlet);
    }

    /// Stops the publishing task from writing to the outlet until the next
    /// call of [`next`](Subscription::next) (a transport that pauses
    /// delivery, for instance while its subscriber's token is renewed).
    pub fn detach(&mut self) {
        if let Some(tap) = self.tap.take() {
            let pos = tap.detach();
            self.settle(pos);
        }
    }

    /// Takes the position the tap reached as the channel's.
    fn settle(&mut self, pos: u64) {
        if let [slot] = &mut self.reader.slots[..] {
            slot.pos = slot.pos.max(pos);
        }
    }

    /// Hands the channel to the publishing task if everything is delivered
    /// and the engine agrees; answers whether it did.
    fn attach(&mut self) -> bool {
        let Some(outlet) = &self.outlet else {
            return false;
        };
        let [slot] = &self.reader.slots[..] else {
            return false;
        };
        // A channel with no id yet: its first id is not `pos + 1` but
        // wherever the engine starts it, which the task's read works out.
        if slot.stale || slot.watch.is_none() || slot.pos == 0 {
            return false;
        }
        let tap = Tap::new(slot.pos, outlet.clone());
        if !self.reader.engine.attach(&slot.channel, &tap, slot.pos) {
            return false;
        }
        self.tap = Some(tap);
        true
    }

    /// Waits until there is something to deliver (messages, a gap or a
    /// deleted channel) and returns up to `limit` messages. Cancel-safe:
    /// dropping the future loses nothing. Never fails: while the engine is
    /// unavailable it retries with backoff, and delivery resumes from the
    /// same positions once it is back. With no channels, it waits forever.
    ///
    /// With an outlet (see [`deliver_through`](Subscription::deliver_through)),
    /// it returns when the publishing task stops writing to it, with what
    /// there is to read then, which may be nothing: the outlet may hold the
    /// rest of a message it began, for the caller to write first.
    pub async fn next(&mut self, limit: usize) -> Batch {
        // A limit of 0 could never return messages and would wait forever
        // with messages waiting.
        let limit = limit.max(1);
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some(tap) = self.tap.clone() {
                let pos = tap.until_detached().await;
                self.tap = None;
                self.settle(pos);
                let cursor = self.cursor();
                return self
                    .read_boxed(limit)
                    .await
                    .unwrap_or_else(|_| Batch::unchanged(cursor));
            }
            match self.read_boxed(limit).await {
                Ok(batch) if !batch.is_empty() => return batch,
                Ok(_) if self.attach() => {}
                Ok(_) => self.wait().await,
                Err(e) => {
                    tracing::debug!(error = %e, "subscription read failed; retrying");
                    // Boxed: a timer would take room in every waiting
                    // subscriber's future, for a retry that rarely comes.
                    let retry = Box::pin(tokio::time::sleep(backoff));
                    retry.await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// [`poll`](Subscription::poll), on the heap: a read's state is large
    /// (engine futures, pages) and a subscription that waits holds its
    /// `next` future for as long as it waits, so that state is only
    /// allocated while a read is under way, not carried by every idle
    /// subscriber.
    fn read_boxed(
        &mut self,
        limit: usize,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Batch, Error>> + Send + '_>> {
        Box::pin(self.poll(limit))
    }

    /// Reads what is there now, without waiting (the batch may be empty).
    /// Fails with [`Error::Unavailable`] when the engine cannot be read.
    pub async fn poll(&mut self, limit: usize) -> Result<Batch, Error> {
        self.detach();
        let mut gone = Vec::new();
        for s in &mut self.reader.slots {
            if let Some(w) = &mut s.watch {
                if w.mark_seen() {
                    gone.push(s.channel.clone());
                }
            }
        }
        let removed = self.reader.remove(&gone);
        self.gone.extend(removed);
        let mut batch = self.reader.read(limit).await?;
        batch.gone = std::mem::take(&mut self.gone);
        Ok(batch)
    }

    async fn wait(&mut self) {
        let mut watches: Vec<&mut Watch> = self
            .reader
            .slots
            .iter_mut()
            .filter_map(|s| s.watch.as_mut())
            .collect();
        match watches.as_mut_slice() {
            [] => pending().await,
            [one] => one.changed().await,
            many => {
                select_all(many.iter_mut().map(|w| Box::pin(w.changed()))).await;
            }
        }
    }

    /// Adds channels at `start` (channels already subscribed keep their
    /// position). Fails only if the engine cannot be read.
    pub async fn add(&mut self, channels: &[ChannelName], start: &Start) -> Result<(), Error> {
        self.detach();
        self.reader.add(channels, start, true).await
    }

    /// Removes channels; answers the ones that were subscribed.
    pub fn remove(&mut self, channels: &[ChannelName]) -> Vec<ChannelName> {
        self.detach();
        self.reader.remove(channels)
    }

    /// The subscribed channels.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.reader.slots.iter().map(|s| &s.channel)
    }

    /// Number of subscribed channels.
    pub fn len(&self) -> usize {
        self.reader.slots.len()
    }

    /// True with no channel subscribed.
    pub fn is_empty(&self) -> bool {
        self.reader.slots.is_empty()
    }

    /// The position after everything delivered so far.
    pub fn cursor(&self) -> Cursor {
        let mut cursor = self.reader.cursor();
        if let (Some(tap), [entry]) = (&self.tap, &mut cursor.entries[..]) {
            entry.1 = entry.1.max(tap.pos());
        }
        cursor
    }
}

impl Drop for Subscription {
    /// Lets go of the outlet at once, rather than at the channel's next
    /// publish.
    fn drop(&mut self) {
        self.detach();
    }
}
