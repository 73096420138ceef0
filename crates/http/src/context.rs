//! What every transport is handed: the bus, the subscription limits, the
//! shutdown signal and the counters.
//!
//! The shutdown token is how long-lived responses end cleanly: the server
//! cancels it when draining begins, and every held request, stream and
//! socket selects on it (long polls answer, SSE bodies end, WebSockets close
//! with 1001).
//!
//! [`Context::setup`] is the one deadline on the engine reads a request
//! makes before its hold, stream or subscription starts, so that a slow
//! store answers 503 quickly instead of holding the client past its
//! proxy's timeout. It does not bound the hold itself (each transport's own
//! settings do). A setup that is ready at once (the memory engine always
//! is) never arms the timer: a short poll pays for no timer entry.

use std::{future::Future, time::Duration};

use herald_auth::Authorizer;
use herald_bus::Bus;

use crate::Stats;
use tokio_util::sync::CancellationToken;

use crate::{Code, Error};

/// Limits shared by every subscriber transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Channels in one subscription (`/sse/a,b,c`). Default 32.
    pub max_channels: usize,
    /// Messages in one response or one batch of a stream. Default 1000.
    pub max_messages: usize,
    /// Time the engine reads before a hold, stream or subscription starts
    /// may take; past it the request is answered 503 `engine_unavailable`.
    /// Default 5 s.
    pub setup_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_channels: 32,
            max_messages: 1000,
            setup_timeout: Duration::from_secs(5),
        }
    }
}

/// Shared state of the subscriber transports. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// The event bus.
    pub bus: Bus,
    /// Subscription limits.
    pub limits: Limits,
    /// Cancelled when the server starts draining.
    pub shutdown: CancellationToken,
    /// What the transports count for `/metrics`.
    pub stats: Stats,
    /// Who may read which channels; the default lets everyone read
    /// everything.
    pub auth: Authorizer,
}

impl Context {
    /// Runs `setup` (the engine reads before a hold, stream or subscription
    /// starts) within [`Limits::setup_timeout`]. Fails with 503
    /// `engine_unavailable` when the engine fails or does not answer in
    /// time; `setup` is dropped then, so it must be cancel-safe.
    pub async fn setup<T>(
        &self,
        setup: impl Future<Output = Result<T, herald_bus::Error>>,
    ) -> Result<T, Error> {
        let limit = self.limits.setup_timeout;
        let mut setup = std::pin::pin!(setup);
        // A future must wake the waker of its latest poll, so polling once
        // with a waker that does nothing, and then under the timeout with
        // the task's, loses no wake-up.
        let now = setup
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        if let std::task::Poll::Ready(done) = now {
            return Ok(done?);
        }
        match tokio::time::timeout(limit, setup).await {
            Ok(done) => Ok(done?),
            Err(_) => Err(Error::new(
                Code::EngineUnavailable,
                format!("the engine did not answer within setup-timeout ({limit:?})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{ChannelName, Start};

    fn context(setup_timeout: Duration) -> Context {
        Context {
            bus: Bus::memory(herald_bus::Config::default()),
            limits: Limits {
                setup_timeout,
                ..Limits::default()
            },
            shutdown: CancellationToken::new(),
            stats: Default::default(),
            auth: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_setup_past_the_deadline_is_a_503_at_the_deadline() {
        let ctx = context(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        let e = ctx.setup(slow).await.unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code().as_str()),
            (503, "engine_unavailable")
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // Just in time is in time.
        let on_time = async {
            tokio::time::sleep(Duration::from_millis(4999)).await;
            Ok(7)
        };
        assert_eq!(ctx.setup(on_time).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_setup_that_answers_is_passed_through() {
        let ctx = context(Duration::from_secs(5));
        let channels = [ChannelName::new("a").unwrap()];
        let sub = ctx
            .setup(ctx.bus.subscribe(&channels, &Start::Now))
            .await
            .unwrap();
        assert_eq!(sub.len(), 1);
        let e = ctx
            .setup(async { Err::<(), _>(herald_bus::Error::Unavailable("down".into())) })
            .await
            .unwrap_err();
        assert_eq!(e.code().as_str(), "engine_unavailable");
    }
}
