//! Embedding herald in your own hyper service.
//!
//! The application keeps its own routes and mounts herald's subscriber
//! routes beside them on the same listener, then publishes in-process
//! through the bus handle (no HTTP round trip). [`Listener::has_path`] says
//! which paths are herald's, so the application repeats none of them. Run
//! it with
//!
//! ```sh
//! cargo run --example embed
//! curl -N http://127.0.0.1:3000/sse/ticks
//! curl 'http://127.0.0.1:3000/poll/ticks?last=5'
//! curl http://127.0.0.1:3000/
//! ```

use std::{convert::Infallible, time::Duration};

use herald::{
    Config, Herald, Listener,
    bus::{ChannelName, Draft, Payload},
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The engine the configuration names (memory by default; set
    // `engine: EngineKind::Redis` and `redis.url` to share Redis with other
    // instances).
    let herald = Herald::connect(Config::default()).await?;

    // Publish in-process: one message a second on "ticks".
    let bus = herald.bus().clone();
    tokio::spawn(async move {
        let channel = ChannelName::new("ticks").expect("valid name");
        for n in 0u64.. {
            let draft = Draft {
                channel: channel.clone(),
                event: None,
                payload: Payload::text(format!("tick {n}")).expect("utf-8"),
            };
            if let Err(e) = bus.publish(vec![draft]).await {
                eprintln!("publish failed: {e}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let listener = TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        // One herald service per connection, cloned per request.
        let subscribers = herald.public_service::<Incoming>();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let subscribers = subscribers.clone();
                async move {
                    if Listener::Public.has_path(req.uri().path()) {
                        // herald's service never fails: errors are JSON responses.
                        subscribers.oneshot(req).await
                    } else {
                        let body = Full::new("my application\n".into())
                            .map_err(|never| match never {})
                            .boxed_unsync();
                        Ok::<_, Infallible>(Response::new(body))
                    }
                }
            });
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}
