//! Building the engine the configuration names, once, for the binary and
//! for embedders alike ([`Herald::connect`](crate::Herald::connect)).
//!
//! The history bounds are one value, `Config::history`, handed to whichever
//! engine runs, and the Redis settings (URL, key prefix, timeout) are one
//! value, `Config::redis`. What an engine does is its own crate's business.

use herald_bus::Bus;

use crate::{Config, EngineKind, Error};

/// A bus over the engine `config.engine` names, bounded by
/// `config.history`. Fails when the Redis engine cannot start.
pub(crate) async fn bus(config: &Config) -> Result<Bus, Error> {
    match config.engine {
        EngineKind::Memory => Ok(Bus::memory(config.history.clone())),
        EngineKind::Redis => {
            let url = config.redis.redacted_url();
            let engine = herald_redis::RedisEngine::connect(&config.redis, config.history.clone())
                .await
                .map_err(|source| Error::Engine {
                    url: url.clone(),
                    source,
                })?;
            tracing::info!(%url, "using the Redis engine");
            Ok(Bus::new(engine))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_configured_engine_is_built() {
        let memory = bus(&Config::default()).await.unwrap();
        assert!(matches!(memory.health(), herald_bus::Health::Up));
        let config = Config {
            engine: EngineKind::Redis,
            redis: herald_redis::Config {
                url: "redis://user:s3cret@127.0.0.1:1".into(),
                ..herald_redis::Config::default()
            },
            ..Config::default()
        };
        let e = bus(&config).await.err().unwrap().to_string();
        assert!(
            e.starts_with("cannot use Redis at redis://***@127.0.0.1:1"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
}
