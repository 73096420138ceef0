//! The throwaway `redis-server` now lives in the test kit
//! (crates/testkit/src/redis.rs). This path stays only because the Redis
//! engine's tests include the fixture from here; once they name the kit's
//! file, this file goes.

#[path = "../../crates/testkit/src/redis.rs"]
mod fixture;

pub use fixture::*;
