//! `GET /readyz`, on both listeners: whether a load balancer should send
//! this instance new subscribers.
//!
//! Not ready (503, a JSON error) once a drain has begun (`draining`), so
//! that the balancer stops sending clients before their connections are
//! ended, and while the engine is unreachable (`engine_unavailable`), so
//! that clients go to an instance that can serve them. `/healthz` stays the
//! liveness check: it answers while the process runs.

use herald_bus::{Bus, Health};
use herald_http::{Body, Code, Error, json};
use http::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// The `/readyz` answer for `bus`, draining once `shutdown` is cancelled.
pub(crate) fn ready(bus: &Bus, shutdown: &CancellationToken) -> Response<Body> {
    if shutdown.is_cancelled() {
        return Error::from(Code::Draining).into_response();
    }
    match bus.health() {
        Health::Up => json(StatusCode::OK, r#"{"status":"ready"}"#),
        Health::Down(why) => Error::new(Code::EngineUnavailable, why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_until_draining() {
        let bus = Bus::memory(herald_bus::Config::default());
        let shutdown = CancellationToken::new();
        assert_eq!(ready(&bus, &shutdown).status(), StatusCode::OK);
        shutdown.cancel();
        assert_eq!(
            ready(&bus, &shutdown).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
