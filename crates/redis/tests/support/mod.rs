//! What the Redis engine's tests share: a throwaway `redis-server` (the
//! workspace's fixture), skipped loudly where there is none, and engines
//! connected to it.

// Each test file uses a part of the fixture.
#[allow(dead_code)]
#[path = "../../../testkit/src/redis.rs"]
mod redis_server;

use std::{path::Path, process::Command, time::Duration};

use herald_redis::{Config, RedisEngine};
pub use redis_server::RedisServer;

/// A fresh redis-server on a free port, or a loud skip (a failure when the
/// `CI` variable is set) without one.
pub fn redis() -> Option<RedisServer> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty() || ci == "false" || ci == "0",
            "redis-server is required in CI"
        );
        eprintln!("\n*** SKIPPED: redis-server not found on PATH ***\n");
        return None;
    }
    Some(RedisServer::start(Path::new("redis-server")))
}

/// An engine on `redis` under key prefix `prefix`, checking Redis every
/// 100 ms.
pub async fn engine(redis: &RedisServer, prefix: &str, history: herald_bus::Config) -> RedisEngine {
    let config = Config {
        url: redis.url(),
        prefix: prefix.into(),
        check_interval: Duration::from_millis(100),
        ..Config::default()
    };
    RedisEngine::connect(&config, history)
        .await
        .expect("connect")
}
