//! The engine contract ([`herald_bus::testing`]) on the Redis engine, in
//! real time, against a real `redis-server` started for each test. Every
//! store a test asks for is a key prefix of its own on that server, so it
//! has its own epoch, as a separate Redis would.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use futures::future::BoxFuture;
use herald_bus::{Config, Engine, testing::Factory};
use support::RedisServer;

/// Redis engines on one server, each under a new prefix.
struct Stores {
    redis: RedisServer,
    made: AtomicUsize,
}

impl Factory for Stores {
    fn engine(&self, config: Config) -> BoxFuture<'_, Arc<dyn Engine>> {
        let prefix = format!("herald{}:", self.made.fetch_add(1, Ordering::Relaxed));
        Box::pin(async move {
            Arc::new(support::engine(&self.redis, &prefix, config).await) as Arc<dyn Engine>
        })
    }
}

fn stores() -> Option<Stores> {
    Some(Stores {
        redis: support::redis()?,
        made: AtomicUsize::new(0),
    })
}

herald_bus::contract_tests!(stores(), real_time);
