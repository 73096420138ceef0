//! An engine wrapper that counts failed engine operations
//! (`herald_engine_errors_total`) and otherwise passes everything through.
//!
//! Only engines that can fail are wrapped (Redis): the memory engine never
//! fails, and wrapping it would add an allocation to every read on the
//! fan-out path for nothing. Engines an embedder builds and hands over in a
//! bus ([`Herald::with_bus`](crate::Herald::with_bus)) are not counted.

use std::sync::Arc;

use futures::{FutureExt, future::BoxFuture};
use herald_bus::{
    ChannelInfo, ChannelName, Draft, Engine, Error, Health, Message, Page, Tap, Watch,
};
use prometheus_client::metrics::counter::Counter;

/// `inner`, with its failures counted in `errors`.
pub(crate) struct Counted<E> {
    pub(crate) inner: E,
    pub(crate) errors: Counter,
}

impl<E: Engine> Counted<E> {
    fn count<'a, T: Send + 'a>(
        &self,
        op: BoxFuture<'a, Result<T, Error>>,
    ) -> BoxFuture<'a, Result<T, Error>> {
        let errors = self.errors.clone();
        op.inspect(move |r| {
            if r.as_ref().is_err_and(|e| !e.is_client_error()) {
                errors.inc();
            }
        })
        .boxed()
    }
}

impl<E: Engine> Engine for Counted<E> {
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>> {
        self.count(self.inner.publish(drafts))
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, Error>> {
        self.count(self.inner.read(channel, after, limit))
    }

    fn read_many<'a>(
        &'a self,
        reads: &'a [(ChannelName, u64)],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Page>, Error>> {
        self.count(self.inner.read_many(reads, limit))
    }

    fn watch(&self, channel: &ChannelName) -> Watch {
        self.inner.watch(channel)
    }

    fn attach(&self, channel: &ChannelName, tap: &Arc<Tap>, pos: u64) -> bool {
        self.inner.attach(channel, tap, pos)
    }

    fn info<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<ChannelInfo, Error>> {
        self.count(self.inner.info(channel))
    }

    fn delete<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>> {
        self.count(self.inner.delete(channel))
    }

    fn health(&self) -> Health {
        self.inner.health()
    }

    fn channels(&self) -> Option<usize> {
        self.inner.channels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{Bus, Config, MemoryEngine, Payload};

    /// An engine whose store is gone.
    struct Down;

    impl Engine for Down {
        fn epoch(&self) -> u64 {
            1
        }
        fn publish(&self, _: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>> {
            async { Err(Error::Unavailable("down".into())) }.boxed()
        }
        fn read<'a>(
            &'a self,
            _: &'a ChannelName,
            _: u64,
            _: usize,
        ) -> BoxFuture<'a, Result<Page, Error>> {
            async { Err(Error::Unavailable("down".into())) }.boxed()
        }
        fn watch(&self, c: &ChannelName) -> Watch {
            MemoryEngine::new(Config::default()).watch(c)
        }
        fn info<'a>(&'a self, _: &'a ChannelName) -> BoxFuture<'a, Result<ChannelInfo, Error>> {
            async { Err(Error::Unavailable("down".into())) }.boxed()
        }
        fn delete<'a>(&'a self, _: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>> {
            async { Ok(false) }.boxed()
        }
        fn health(&self) -> Health {
            Health::Down("down".into())
        }
    }

    #[tokio::test]
    async fn failures_are_counted_successes_are_not() {
        let errors = Counter::default();
        let channel = ChannelName::new("a").unwrap();
        let draft = || Draft {
            channel: channel.clone(),
            event: None,
            payload: Payload::text("x").unwrap(),
        };
        let down = Bus::new(Counted {
            inner: Down,
            errors: errors.clone(),
        });
        assert!(down.publish(vec![draft()]).await.is_err());
        assert!(down.info(&channel).await.is_err());
        assert!(!down.delete(&channel).await.unwrap());
        assert_eq!(errors.get(), 2);
        let up = Bus::new(Counted {
            inner: MemoryEngine::new(Config::default()),
            errors: errors.clone(),
        });
        up.publish(vec![draft()]).await.unwrap();
        assert_eq!(errors.get(), 2);
        assert_eq!(up.channels(), Some(1));
    }
}
