//! The storage engine abstraction: where ids are assigned, history is kept
//! and publishers' notifications come from.
//!
//! The trait is shaped for a remote store from the start: publishing and
//! reading are asynchronous and fallible, and notification is a local
//! [`Watch`] that a remote engine feeds from its own subscription to the
//! store. What an engine does not do: decide gaps, merge channels or track
//! subscriber positions. That is the [`Subscription`](crate::Subscription)'s
//! job, written once for every engine.

use std::{any::Any, sync::Arc};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::{ChannelName, Draft, Error, Message, Tap};

/// A storage engine: assigns ids, keeps bounded history, notifies watchers.
pub trait Engine: Send + Sync + 'static {
    /// The epoch of the engine's store. Cursors carry it; a cursor from
    /// another epoch is reported as a gap. May change at run time if a
    /// remote store is found to have lost its data.
    fn epoch(&self) -> u64;

    /// Stores `drafts` in order, assigning each the next id of its channel,
    /// and notifies the channels' watchers. Answers once the messages are
    /// stored. Fails with [`Error::Unavailable`] if the store cannot be
    /// reached; then none or a prefix of the batch was stored.
    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>>;

    /// Retained messages of `channel` with an id greater than `after`,
    /// oldest first, at most `limit` of them, and where the history stands.
    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, Error>>;

    /// What [`read`](Engine::read) answers for each `(channel, after)` of
    /// `reads`, in the same order, every page cut at `limit`. A subscription
    /// reads all its channels with one call, so an engine that can answer
    /// them in one round trip (a remote store) should; the default reads
    /// them one after another. Fails as `read` does.
    fn read_many<'a>(
        &'a self,
        reads: &'a [(ChannelName, u64)],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Page>, Error>> {
        Box::pin(async move {
            let mut pages = Vec::with_capacity(reads.len());
            for (channel, after) in reads {
                pages.push(self.read(channel, *after, limit).await?);
            }
            Ok(pages)
        })
    }

    /// Registers interest in `channel`: the returned [`Watch`] changes when
    /// a message is published to it and closes when it is deleted. While a
    /// watch lives, the channel counts one subscriber.
    fn watch(&self, channel: &ChannelName) -> Watch;

    /// Attaches `tap` to `channel` if the channel's newest id is `pos`, so
    /// that the channel's next messages are offered to it from the
    /// publishing task (see [`Taps`](crate::Taps)). Answers `false` when
    /// the channel moved past `pos` (read it first) or when the engine
    /// does not deliver in one pass, which is the default: subscriptions
    /// then wait on their watches.
    fn attach(&self, channel: &ChannelName, tap: &Arc<Tap>, pos: u64) -> bool {
        let _ = (channel, tap, pos);
        false
    }

    /// Retained count, ids and subscriber count of `channel`.
    fn info<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<ChannelInfo, Error>>;

    /// Drops `channel`'s history and tells its watchers it is gone. Answers
    /// whether the channel existed.
    fn delete<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>>;

    /// Whether the engine can serve now.
    fn health(&self) -> Health;

    /// How many channels this instance holds state for (the metrics'
    /// `herald_channels`), if the engine knows. Default: unknown.
    fn channels(&self) -> Option<usize> {
        None
    }
}

/// What [`Engine::read`] found.
#[derive(Debug, Clone)]
pub struct Page {
    /// Messages after the requested position, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// The position just before the channel's first id (0 when the channel
    /// has never had a message).
    pub origin: u64,
    /// Id of the oldest retained message, or `last + 1` when none is.
    pub oldest: u64,
    /// Id of the newest message ever published (0 when none).
    pub last: u64,
}

impl Default for Page {
    /// The page of a channel that never had a message.
    fn default() -> Self {
        Page {
            messages: Vec::new(),
            origin: 0,
            oldest: 1,
            last: 0,
        }
    }
}

/// A channel's state as the admin endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelInfo {
    /// Messages retained.
    pub retained: usize,
    /// Bytes retained, as counted against the byte bound.
    pub bytes: usize,
    /// Oldest retained id.
    pub first_id: Option<u64>,
    /// Newest id ever published.
    pub last_id: Option<u64>,
    /// Live subscriptions on this instance.
    pub subscribers: usize,
}

/// Engine health, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Up,
    /// Not serving; the text says why.
    Down(String),
}

/// The value a [`Watch`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signal {
    /// The newest id the engine knows of (a hint; history is the truth).
    pub last: u64,
    /// The channel was deleted.
    pub gone: bool,
}

/// One subscriber's registration on one channel. Dropping it unregisters.
pub struct Watch {
    rx: watch::Receiver<Signal>,
    /// Held for its `Drop`: a remote engine counts local interest with it.
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl Watch {
    /// Wraps a receiver; `guard` is dropped with the watch.
    pub fn new(rx: watch::Receiver<Signal>, guard: Option<Box<dyn Any + Send + Sync>>) -> Self {
        Watch { rx, _guard: guard }
    }

    /// Marks the current value seen; `true` if the channel is gone.
    pub(crate) fn mark_seen(&mut self) -> bool {
        match self.rx.has_changed() {
            Err(_) => true,
            Ok(_) => self.rx.borrow_and_update().gone,
        }
    }

    /// Waits for the next change. Returns at once if the channel is gone.
    pub(crate) async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // Closed: stay ready so that the reader notices it is gone.
        }
    }
}
