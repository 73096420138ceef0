//! The pub/sub connection: SUBSCRIBE to the channels this instance watches,
//! hand every notification to the engine, and survive connection loss.
//!
//! One task owns the connection. It subscribes and unsubscribes as local
//! watchers come and go (the engine queues the changed channels and wakes
//! it), pings the connection every check interval so that a silent Redis is
//! noticed, and when the connection is lost it drops every cache (a lost
//! connection may have lost notifications), reconnects with jittered backoff,
//! subscribes to every watched channel again and then wakes all watchers,
//! who catch up from history. Behind Sentinel each reconnection asks the
//! sentinels for the primary, so a failover is followed. What it leaves out: what a notification means
//! (the engine decides).

use std::{collections::HashSet, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use herald_bus::ChannelName;
use redis::aio::{PubSub, PubSubSink};
use tokio::time::{sleep, timeout};

use crate::engine::Shared;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE command.
const CHUNK: usize = 512;
/// Most notifications handled in one turn of the task.
const DRAIN: usize = 1024;

/// Runs until the engine is dropped (the task is aborted then).
pub(crate) async fn run(shared: Arc<Shared>, first: PubSub, ping_every: Duration) {
    let limit = shared.timeout;
    let mut next = Some(first);
    let mut backoff = MIN_BACKOFF;
    loop {
        let pubsub = match next.take() {
            Some(p) => p,
            None => match timeout(limit, connect(&shared)).await {
                Ok(Ok(p)) => p,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connection timed out".into(),
                    };
                    shared.set_pubsub_down(Some(format!("redis pub/sub: {why}")));
                    sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let why = serve(&shared, pubsub, ping_every, limit, &mut backoff).await;
        tracing::warn!(reason = %why, "redis pub/sub connection lost; reconnecting");
        shared.set_pubsub_down(Some(format!("redis pub/sub: {why}")));
        shared.forget_all();
    }
}

/// A wait of up to `backoff` ("full jitter", floored at the shortest
/// backoff): instances that lost Redis together do not all come back in
/// the same instant.
fn jittered(backoff: Duration) -> Duration {
    backoff
        .mul_f64(rand::random_range(0.0..=1.0))
        .max(MIN_BACKOFF)
}

/// A new pub/sub connection to the server the target names now (behind
/// Sentinel: the current primary).
async fn connect(shared: &Shared) -> redis::RedisResult<PubSub> {
    shared.target.client().await?.get_async_pubsub().await
}

/// Serves one connection until it fails; answers why it did.
async fn serve(
    shared: &Shared,
    pubsub: PubSub,
    ping_every: Duration,
    limit: Duration,
    backoff: &mut Duration,
) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed = HashSet::new();
    // A new connection: every watched channel needs subscribing.
    let mut todo = shared.watched();
    let mut ping = tokio::time::interval(ping_every);
    ping.reset();
    let mut first = true;
    loop {
        todo.extend(shared.take_pending());
        if let Err(e) = reconcile(shared, &mut sink, &mut subscribed, &todo, limit).await {
            return e;
        }
        todo.clear();
        if first {
            first = false;
            *backoff = MIN_BACKOFF;
            shared.set_pubsub_down(None);
            // Anything published while this instance had no connection is
            // in history: wake every watcher to read it.
            shared.reset_all();
        }
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    notified(shared, msg).await;
                    // Take every notification already received before
                    // yielding: under load this task waits its turn behind
                    // every subscriber it woke, and one notification per
                    // turn would leave the caches ever further behind Redis.
                    for _ in 0..DRAIN {
                        match stream.next().now_or_never() {
                            Some(Some(msg)) => notified(shared, msg).await,
                            Some(None) => return "connection closed".into(),
                            None => break,
                        }
                    }
                }
                None => return "connection closed".into(),
            },
            () = shared.wake.notified() => {}
            _ = ping.tick() => {
                // Any answer will do: subscribed, Redis answers PING with
                // ["pong", ""], not "PONG".
                match timeout(limit, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "ping timed out".into(),
                }
            }
        }
    }
}

async fn notified(shared: &Shared, msg: redis::Msg) {
    let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
    shared.notified(msg.get_channel_name(), payload).await;
}

/// Brings the SUBSCRIBE state of `channels` in line with the local watchers.
async fn reconcile(
    shared: &Shared,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<ChannelName>,
    channels: &[ChannelName],
    limit: Duration,
) -> Result<(), String> {
    let (add, drop): (Vec<_>, Vec<_>) =
        channels.iter().cloned().partition(|c| shared.is_watched(c));
    let add: Vec<_> = add
        .into_iter()
        .filter(|c| !subscribed.contains(c))
        .collect();
    let drop: Vec<_> = drop
        .into_iter()
        .filter(|c| subscribed.contains(c))
        .collect();
    for chunk in add.chunks(CHUNK) {
        let names: Vec<String> = chunk.iter().map(|c| shared.keys.notify(c)).collect();
        command(sink.subscribe(names), limit).await?;
        subscribed.extend(chunk.iter().cloned());
        shared.subscribed(chunk);
    }
    for chunk in drop.chunks(CHUNK) {
        let names: Vec<String> = chunk.iter().map(|c| shared.keys.notify(c)).collect();
        command(sink.unsubscribe(names), limit).await?;
        for c in chunk {
            subscribed.remove(c);
        }
    }
    Ok(())
}

async fn command(
    f: impl Future<Output = redis::RedisResult<()>>,
    limit: Duration,
) -> Result<(), String> {
    match timeout(limit, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("subscribe timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_are_jittered_within_their_bound() {
        let waits: Vec<_> = (0..200).map(|_| jittered(MAX_BACKOFF)).collect();
        assert!(
            waits
                .iter()
                .all(|w| (MIN_BACKOFF..=MAX_BACKOFF).contains(w))
        );
        let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*max - *min > MAX_BACKOFF / 2, "spread over the bound");
    }
}
