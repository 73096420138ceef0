//! The [`Bus`] handle: the one object transports and publishers hold.
//!
//! It validates nothing that types already guarantee and adds no state of
//! its own beyond the engine: order, storage and notification belong to the
//! engine, positions and gaps to the subscription.

use std::sync::Arc;

use crate::{
    ChannelInfo, ChannelName, Config, Cursor, Draft, Engine, Error, Health, MemoryEngine, Message,
    subscription::{Batch, Reader, Start, Subscription},
};

/// A handle on the event bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    engine: Arc<dyn Engine>,
}

/// A stored message and the cursor that resumes its channel right after it.
#[derive(Debug, Clone)]
pub struct Published {
    /// The stored message, with its id.
    pub message: Arc<Message>,
    /// Position right after this message in its channel.
    pub cursor: Cursor,
}

impl Bus {
    /// A bus over `engine`.
    pub fn new(engine: impl Engine) -> Self {
        Bus {
            engine: Arc::new(engine),
        }
    }

    /// A bus over a shared engine.
    pub fn from_shared(engine: Arc<dyn Engine>) -> Self {
        Bus { engine }
    }

    /// A bus over a new [`MemoryEngine`].
    pub fn memory(config: Config) -> Self {
        Bus::new(MemoryEngine::new(config))
    }

    /// The engine's current epoch.
    pub fn epoch(&self) -> u64 {
        self.engine.epoch()
    }

    /// Stores messages in order and answers once they are stored. Fails with
    /// [`Error::Unavailable`] when the engine cannot take them.
    pub async fn publish(&self, drafts: Vec<Draft>) -> Result<Vec<Published>, Error> {
        let messages = self.engine.publish(drafts).await?;
        Ok(messages
            .into_iter()
            .map(|message| Published {
                cursor: self.cursor_after(&message),
                message,
            })
            .collect())
    }

    /// The cursor that resumes `message`'s channel right after it.
    pub fn cursor_after(&self, message: &Message) -> Cursor {
        Cursor::after(message)
    }

    /// Reads what is retained after `start`, without subscribing: at most
    /// `limit` messages, and the cursor to continue from. Fails with
    /// [`Error::Unavailable`] when the engine cannot be read.
    pub async fn read(
        &self,
        channels: &[ChannelName],
        start: &Start,
        limit: usize,
    ) -> Result<Batch, Error> {
        let mut reader = Reader::new(self.engine.clone());
        reader.add(channels, start, false).await?;
        if matches!(start, Start::Now) {
            return Ok(Batch::unchanged(reader.cursor()));
        }
        reader.read(limit).await
    }

    /// Subscribes to `channels` from `start`. Fails with
    /// [`Error::Unavailable`] when the engine cannot be read.
    pub async fn subscribe(
        &self,
        channels: &[ChannelName],
        start: &Start,
    ) -> Result<Subscription, Error> {
        let mut reader = Reader::new(self.engine.clone());
        reader.add(channels, start, true).await?;
        Ok(Subscription::new(reader))
    }

    /// A subscription to no channel yet (WebSocket connections add channels
    /// as the client asks).
    pub fn empty_subscription(&self) -> Subscription {
        Subscription::new(Reader::new(self.engine.clone()))
    }

    /// A channel's retained count, ids and subscribers.
    pub async fn info(&self, channel: &ChannelName) -> Result<ChannelInfo, Error> {
        self.engine.info(channel).await
    }

    /// Drops a channel's history and ends its subscriptions. Answers whether
    /// it existed.
    pub async fn delete(&self, channel: &ChannelName) -> Result<bool, Error> {
        self.engine.delete(channel).await
    }

    /// Whether the engine can serve now.
    pub fn health(&self) -> Health {
        self.engine.health()
    }

    /// How many channels this instance holds state for, if the engine
    /// knows ([`Engine::channels`]).
    pub fn channels(&self) -> Option<usize> {
        self.engine.channels()
    }
}
