//! The Redis engine against a real `redis-server` (each test starts its own
//! on a free port): two engines on one Redis behave as one bus — one order,
//! shared history and bounds, gaps, epochs, deletes that reach every
//! instance, keys that expire, and what happens while Redis is down.
//!
//! What it leaves out: HTTP (the end-to-end tests in tests/redis.rs run two
//! herald binaries).

mod support;

use std::{sync::Arc, time::Duration};

use herald_bus::{
    Batch, Bus, ChannelName, Draft, Error, Health, Message, Payload, Start, Subscription,
};
use herald_redis::{Config, RedisEngine};
use support::{RedisServer, redis};
use tokio::time::{Instant, sleep, timeout};

async fn bus(redis: &RedisServer, bounds: herald_bus::Config) -> Bus {
    Bus::new(support::engine(redis, "herald:", bounds).await)
}

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn draft(channel: &ChannelName, data: &str) -> Draft {
    Draft {
        channel: channel.clone(),
        event: None,
        payload: Payload::text(data.to_string()).unwrap(),
    }
}

async fn publish(bus: &Bus, channel: &ChannelName, data: &str) -> Arc<Message> {
    let mut out = bus
        .publish(vec![draft(channel, data)])
        .await
        .expect("publish");
    out.remove(0).message
}

async fn next(sub: &mut Subscription) -> Batch {
    timeout(Duration::from_secs(5), sub.next(1000))
        .await
        .expect("a batch within 5 s")
}

/// Collects `n` messages from `sub`, failing on any gap.
async fn collect(sub: &mut Subscription, n: usize) -> Vec<Arc<Message>> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = next(sub).await;
        assert!(!batch.has_gap(), "no gap expected: {:?}", batch.gaps);
        got.extend(batch.messages);
    }
    got
}

fn data(messages: &[Arc<Message>]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.payload.as_str().to_string())
        .collect()
}

fn assert_consecutive(messages: &[Arc<Message>]) {
    for w in messages.windows(2) {
        assert_eq!(w[1].id, w[0].id + 1, "ids are consecutive");
    }
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances on `redis`, a subscriber to channel `c` on the second
/// that already received one message published on the first.
async fn two_instances_and_a_subscriber(
    redis: &RedisServer,
) -> (Bus, Bus, ChannelName, Subscription) {
    let (a, b) = (
        bus(redis, default_bounds()).await,
        bus(redis, default_bounds()).await,
    );
    let c = ch("c");
    let mut sub = b
        .subscribe(std::slice::from_ref(&c), &Start::Now)
        .await
        .unwrap();
    publish(&a, &c, "first").await;
    assert_eq!(data(&collect(&mut sub, 1).await), ["first"]);
    (a, b, c, sub)
}

fn default_bounds() -> herald_bus::Config {
    herald_bus::Config::default()
}

#[tokio::test]
async fn two_instances_share_one_order_and_history() {
    let Some(redis) = redis() else { return };
    let (a, b) = (
        bus(&redis, default_bounds()).await,
        bus(&redis, default_bounds()).await,
    );
    assert_eq!(a.epoch(), b.epoch(), "the epoch lives in Redis");
    let c = ch("c");
    let mut on_a = a
        .subscribe(std::slice::from_ref(&c), &Start::Now)
        .await
        .unwrap();
    let mut on_b = b
        .subscribe(std::slice::from_ref(&c), &Start::Now)
        .await
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..60 {
        let via = if i % 2 == 0 { &a } else { &b };
        sent.push(publish(via, &c, &i.to_string()).await);
    }
    assert_consecutive(&sent);
    let expected: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    for sub in [&mut on_a, &mut on_b] {
        let got = collect(sub, 60).await;
        assert_eq!(data(&got), expected);
        assert_eq!(got[0].id, sent[0].id);
        assert_consecutive(&got);
    }
    // Either instance reads the same history, and a cursor from one
    // resumes on the other.
    let from_a = a
        .read(std::slice::from_ref(&c), &Start::Last(10), 100)
        .await
        .unwrap();
    let from_b = b
        .read(std::slice::from_ref(&c), &Start::Last(10), 100)
        .await
        .unwrap();
    assert_eq!(data(&from_a.messages), data(&from_b.messages));
    assert_eq!(from_a.messages.len(), 10);
    let cursor = a.cursor_after(&sent[49]);
    let rest = b
        .read(std::slice::from_ref(&c), &Start::From(cursor), 100)
        .await
        .unwrap();
    assert_eq!(data(&rest.messages), expected[50..]);
    assert!(!rest.has_gap());
}

#[tokio::test]
async fn delete_on_one_instance_ends_subscriptions_on_all_and_ids_are_never_reused() {
    let Some(redis) = redis() else { return };
    let (a, b) = (
        bus(&redis, default_bounds()).await,
        bus(&redis, default_bounds()).await,
    );
    let (c, other) = (ch("c"), ch("other"));
    let mut sub = b
        .subscribe(&[c.clone(), other.clone()], &Start::Now)
        .await
        .unwrap();
    let first = publish(&a, &c, "a").await;
    assert_eq!(data(&collect(&mut sub, 1).await), ["a"]);
    assert_eq!(b.info(&c).await.unwrap().subscribers, 1);
    assert!(a.delete(&c).await.unwrap());
    let batch = next(&mut sub).await;
    assert_eq!(batch.gone, std::slice::from_ref(&c));
    assert_eq!(sub.channels().collect::<Vec<_>>(), [&other]);
    let again = publish(&a, &c, "b").await;
    assert!(
        again.id > first.id,
        "a recreated channel starts above every id"
    );
    publish(&a, &other, "still here").await;
    assert_eq!(data(&collect(&mut sub, 1).await), ["still here"]);
    assert!(!a.delete(&ch("never")).await.unwrap(), "nothing to delete");
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_a_new_epoch_and_subscribers_see_a_gap() {
    let Some(redis) = redis() else { return };
    let (a, b, c, mut sub) = two_instances_and_a_subscriber(&redis).await;
    let old = b.epoch();
    redis.command(&["FLUSHALL"]);
    wait_until("both instances see the new epoch", || {
        a.epoch() != old && a.epoch() == b.epoch()
    })
    .await;
    publish(&a, &c, "after").await;
    let batch = next(&mut sub).await;
    assert_eq!(
        batch.gaps,
        std::slice::from_ref(&c),
        "lost history is a gap, never silent"
    );
    assert_eq!(data(&batch.messages), ["after"]);
    assert_eq!(batch.cursor.epoch(), a.epoch());
}

#[tokio::test]
async fn while_redis_is_down_publish_fails_and_health_is_down_then_delivery_resumes() {
    let Some(mut redis) = redis() else { return };
    let (a, b, c, mut sub) = two_instances_and_a_subscriber(&redis).await;
    redis.kill();
    let err = a.publish(vec![draft(&c, "lost")]).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(matches!(a.health(), Health::Down(_)));
    wait_until("b notices", || matches!(b.health(), Health::Down(_))).await;
    // The subscriber waits through the outage; the gap may come in a batch
    // of its own, before the message.
    let waiting = tokio::spawn(async move {
        let mut seen = next(&mut sub).await;
        while seen.messages.is_empty() {
            let more = next(&mut sub).await;
            seen.gaps.extend(more.gaps);
            seen.messages.extend(more.messages);
        }
        seen
    });
    sleep(Duration::from_millis(300)).await;
    redis.restart();
    wait_until("both healthy", || {
        a.health() == Health::Up && b.health() == Health::Up
    })
    .await;
    publish(&a, &c, "two").await;
    let batch = waiting.await.unwrap();
    assert_eq!(
        batch.gaps,
        std::slice::from_ref(&c),
        "the empty Redis is a new epoch"
    );
    assert_eq!(data(&batch.messages), ["two"]);
}

#[tokio::test]
async fn keys_expire_once_nobody_watches_and_the_history_is_old() {
    let Some(redis) = redis() else { return };
    let b = bus(
        &redis,
        herald_bus::Config {
            max_age: Duration::from_secs(1),
            ..default_bounds()
        },
    )
    .await;
    let c = ch("c");
    let sub = b
        .subscribe(std::slice::from_ref(&c), &Start::Now)
        .await
        .unwrap();
    let first = publish(&b, &c, "x").await;
    assert_eq!(
        redis.keys("herald:*"),
        [
            "herald:epoch",
            "herald:floor",
            "herald:log:c",
            "herald:meta:c",
            "herald:order"
        ]
    );
    // Key expiry is Redis's own timer (PEXPIRE), which no injected clock
    // moves, so this waits for real.
    // Watched: the messages expire but the id sequence is kept alive.
    sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        redis.keys("herald:*"),
        [
            "herald:epoch",
            "herald:floor",
            "herald:meta:c",
            "herald:order"
        ]
    );
    assert_eq!(publish(&b, &c, "y").await.id, first.id + 1);
    drop(sub);
    // The metadata outlives the messages by one history age (a tombstone).
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.keys("herald:*").len() > 3 {
        assert!(
            Instant::now() < deadline,
            "keys left: {:?}",
            redis.keys("*")
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        redis.keys("*"),
        ["herald:epoch", "herald:floor", "herald:order"]
    );
    assert!(
        publish(&b, &c, "z").await.id > first.id + 1,
        "the floor holds"
    );
}

#[tokio::test]
async fn an_unreachable_redis_fails_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        url: format!("redis://127.0.0.1:{port}"),
        ..Config::default()
    };
    let err = RedisEngine::connect(&config, default_bounds()).await.err();
    assert!(matches!(err, Some(herald_redis::Error::Unreachable(_))));
    let config = Config {
        url: "nonsense://".into(),
        ..Config::default()
    };
    let err = RedisEngine::connect(&config, default_bounds()).await.err();
    assert!(matches!(err, Some(herald_redis::Error::InvalidUrl(_))));
}

/// A message stored without its notification (as if Redis pub/sub dropped
/// it): the next notification skips its id, and the instance reads the
/// missing one from history before waking its subscribers, who get both,
/// in order, with no gap.
#[tokio::test]
async fn a_notification_that_skips_an_id_is_filled_from_history() {
    let Some(redis) = redis() else { return };
    let (a, _b, c, mut sub) = two_instances_and_a_subscriber(&redis).await;
    // Store one message by hand, the way the publish script does, but
    // without PUBLISHing its notification.
    let stored = redis.command(&["LINDEX", "herald:log:c", "-1"]);
    let fields: Vec<&str> = stored[0].splitn(5, '\n').collect();
    let (last, time): (u64, &str) = (fields[0].parse().unwrap(), fields[1]);
    let order = &redis.command(&["INCR", "herald:order"])[0];
    let hidden = format!("{}\n{time}\n70\n{order}\n0\n\nhidden", last + 1);
    redis.command(&["RPUSH", "herald:log:c", &hidden]);
    redis.command(&["HSET", "herald:meta:c", "last", &(last + 1).to_string()]);
    redis.command(&["HINCRBY", "herald:meta:c", "bytes", "70"]);

    let visible = publish(&a, &c, "visible").await;
    assert_eq!(visible.id, last + 2, "the hidden message took an id");
    let got = collect(&mut sub, 2).await;
    assert_eq!(data(&got), ["hidden", "visible"]);
    assert_eq!(got[0].id, last + 1);
    assert_consecutive(&got);
}

/// One publish order for every channel: a batch to b, a, b, a comes back
/// in that order through a subscription to a and b on another instance,
/// although its messages share one millisecond.
#[tokio::test]
async fn channels_merge_in_publish_order_across_instances() {
    let Some(redis) = redis() else { return };
    let (a, b) = (
        bus(&redis, default_bounds()).await,
        bus(&redis, default_bounds()).await,
    );
    let both = [ch("a"), ch("b")];
    let mut sub = b.subscribe(&both, &Start::Now).await.unwrap();
    let start = b.read(&both, &Start::Now, 10).await.unwrap().cursor;
    let sent = a
        .publish(vec![
            draft(&both[1], "b1"),
            draft(&both[0], "a1"),
            draft(&both[1], "b2"),
            draft(&both[0], "a2"),
        ])
        .await
        .unwrap();
    let orders: Vec<u64> = sent.iter().map(|p| p.message.order()).collect();
    assert!(orders.windows(2).all(|w| w[1] == w[0] + 1), "{orders:?}");
    // From history (a read) and from notifications (a subscription).
    let read = b.read(&both, &Start::From(start), 10).await.unwrap();
    assert_eq!(data(&read.messages), ["b1", "a1", "b2", "a2"]);
    let mut live = Vec::new();
    while live.len() < 4 {
        live.extend(next(&mut sub).await.messages);
    }
    // Live batches may split anywhere; each channel's order holds.
    let live = data(&live);
    let on = |p: &str| -> Vec<&str> {
        live.iter()
            .map(String::as_str)
            .filter(|d| d.starts_with(p))
            .collect()
    };
    assert_eq!((on("a"), on("b")), (vec!["a1", "a2"], vec!["b1", "b2"]));
}

/// Script calls Redis ran since the last `CONFIG RESETSTAT`.
fn script_calls(redis: &RedisServer) -> u64 {
    command_calls(redis, "evalsha") + command_calls(redis, "eval")
}

/// Calls of Redis command `name` (scripts' own calls included) since the
/// last `CONFIG RESETSTAT`.
fn command_calls(redis: &RedisServer, name: &str) -> u64 {
    let prefix = format!("cmdstat_{name}:calls=");
    redis
        .command(&["INFO", "commandstats"])
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(|l| {
            l.strip_prefix(&prefix)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn a_subscription_reads_its_channels_in_one_script_call() {
    let Some(redis) = redis() else { return };
    let bus = bus(&redis, herald_bus::Config::default()).await;
    let channels: Vec<ChannelName> = (0..20).map(|i| ch(&format!("round-{i}"))).collect();
    for c in &channels {
        publish(&bus, c, "x").await;
    }
    redis.command(&["CONFIG", "RESETSTAT"]);
    let mut sub = bus.subscribe(&channels, &Start::Last(1)).await.unwrap();
    let batch = sub.poll(100).await.unwrap();
    assert_eq!(batch.messages.len(), 20);
    // Two reads of 20 channels: one call each (and perhaps the monitor's
    // epoch check), not one per channel.
    let calls = script_calls(&redis);
    assert!((2..=3).contains(&calls), "{calls} script calls");
}

/// Pub/sub connections subscribed to some channel (one per instance with
/// subscribers).
fn subscribed_instances(redis: &RedisServer) -> usize {
    redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"])[0]
        .lines()
        .filter(|l| !l.contains(" sub=0 "))
        .count()
}

/// Subscribes `bus`, the only instance with subscribers, to `channel`
/// and waits until its pub/sub connection has subscribed on Redis.
async fn subscribed(redis: &RedisServer, bus: &Bus, channel: &ChannelName) -> Subscription {
    let sub = bus
        .subscribe(std::slice::from_ref(channel), &Start::Now)
        .await
        .unwrap();
    wait_until("the instance subscribed", || {
        subscribed_instances(redis) == 1
    })
    .await;
    sub
}

/// An engine that checks Redis only once a minute, so that the monitor's
/// own script calls stay out of a count.
async fn quiet_engine(redis: &RedisServer) -> RedisEngine {
    let config = Config {
        url: redis.url(),
        check_interval: Duration::from_secs(60),
        ..Config::default()
    };
    RedisEngine::connect(&config, default_bounds())
        .await
        .expect("connect")
}

/// Publishes queued while a call is in flight go out together in the next
/// one: of twenty publishes at once the first goes alone and the nineteen
/// queued behind it share the next call (two script calls, not twenty), and
/// each still gets its own messages, ids following the queue order.
#[tokio::test]
async fn concurrent_publishes_share_one_script_call() {
    let Some(redis) = redis() else { return };
    let bus = Bus::new(quiet_engine(&redis).await);
    let (c, d) = (ch("c"), ch("d"));
    publish(&bus, &c, "warm-up").await;
    redis.command(&["CONFIG", "RESETSTAT"]);
    let sends = (0..20).map(|i| {
        let to = if i % 4 == 3 { &d } else { &c };
        let drafts = vec![draft(to, &format!("{i}a")), draft(to, &format!("{i}b"))];
        bus.publish(drafts)
    });
    let answers = futures::future::join_all(sends).await;
    // The publish script runs INCRBY once per call (the monitor's epoch
    // check, also a script, does not).
    assert_eq!(
        command_calls(&redis, "incrby"),
        2,
        "two script calls for 20 publishes"
    );
    let mut on_c = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let got: Vec<Arc<Message>> = answer.unwrap().into_iter().map(|p| p.message).collect();
        assert_eq!(
            data(&got),
            [format!("{i}a"), format!("{i}b")],
            "its own messages"
        );
        assert_consecutive(&got);
        if i % 4 != 3 {
            on_c.extend(got);
        }
    }
    assert_consecutive(&on_c);
    let read = bus
        .read(std::slice::from_ref(&c), &Start::Last(100), 100)
        .await
        .unwrap();
    assert_eq!(data(&read.messages)[1..], data(&on_c)[..]);
}

/// A message this instance publishes goes into its cache and wakes its
/// subscribers as soon as Redis answers the publish: they never read it
/// back from Redis, even when its notification comes later.
#[tokio::test]
async fn subscribers_on_the_publishing_instance_never_read_redis() {
    let Some(redis) = redis() else { return };
    let bus = Bus::new(quiet_engine(&redis).await);
    let c = ch("c");
    let mut sub = subscribed(&redis, &bus, &c).await;
    publish(&bus, &c, "first").await;
    assert_eq!(data(&collect(&mut sub, 1).await), ["first"]);

    redis.command(&["CONFIG", "RESETSTAT"]);
    let mut got = Vec::new();
    for round in 0..50 {
        let sends = (0..3).map(|i| bus.publish(vec![draft(&c, &format!("{round}.{i}"))]));
        for answer in futures::future::join_all(sends).await {
            answer.unwrap();
        }
        got.extend(collect(&mut sub, 3).await);
    }
    assert_eq!(got.len(), 150);
    assert_consecutive(&got);
    // The read script asks for each channel's `last` with HGET; the
    // publish script does not use HGET.
    assert_eq!(command_calls(&redis, "hget"), 0, "no read reached Redis");
}

/// Two instances publish to one channel at once while subscribers on both
/// read: messages reach each instance's cache both from its own publishes'
/// answers and from notifications, and every subscriber gets every message
/// once, in id order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_from_both_instances_at_once_reach_every_subscriber_once_in_order() {
    let Some(redis) = redis() else { return };
    let (a, b) = (
        bus(&redis, default_bounds()).await,
        bus(&redis, default_bounds()).await,
    );
    let c = ch("c");
    let per_instance = 300;
    let mut readers = Vec::new();
    for on in [&a, &a, &b, &b] {
        let mut sub = on
            .subscribe(std::slice::from_ref(&c), &Start::Now)
            .await
            .unwrap();
        readers.push(tokio::spawn(async move {
            collect(&mut sub, 2 * per_instance).await
        }));
    }
    wait_until("both instances subscribed", || {
        subscribed_instances(&redis) == 2
    })
    .await;
    let mut writers = Vec::new();
    for (name, on) in [("a", a.clone()), ("b", b.clone())] {
        let c = c.clone();
        writers.push(tokio::spawn(async move {
            // Four publishers per instance, so that calls carry several.
            let sends = (0..4).map(|p| {
                let (on, c) = (on.clone(), c.clone());
                async move {
                    for i in (p..per_instance).step_by(4) {
                        publish(&on, &c, &format!("{name}{i}")).await;
                    }
                }
            });
            futures::future::join_all(sends).await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut seen = None;
    for r in readers {
        let got = r.await.unwrap();
        assert_eq!(got.len(), 2 * per_instance);
        assert_consecutive(&got);
        let got = data(&got);
        for name in ["a", "b"] {
            for p in 0..4 {
                let one: Vec<&String> = got
                    .iter()
                    .filter(|d| {
                        d.strip_prefix(name)
                            .and_then(|n| n.parse::<usize>().ok())
                            .is_some_and(|n| n % 4 == p)
                    })
                    .collect();
                let want: Vec<String> = (p..per_instance)
                    .step_by(4)
                    .map(|i| format!("{name}{i}"))
                    .collect();
                assert_eq!(
                    one,
                    want.iter().collect::<Vec<_>>(),
                    "each publisher's order"
                );
            }
        }
        match &seen {
            None => seen = Some(got),
            Some(first) => assert_eq!(first, &got, "one order on both instances"),
        }
    }
}

/// The pub/sub connection is pinged every check interval; while it is
/// subscribed Redis answers `["pong", ""]`, which must count as alive (taken
/// for a failure, it dropped the connection, every cache and every
/// subscriber's position in the cache at every check).
#[tokio::test]
async fn a_subscribed_pub_sub_connection_survives_its_pings() {
    let Some(redis) = redis() else { return };
    let bus = bus(&redis, default_bounds()).await;
    let c = ch("c");
    let _sub = subscribed(&redis, &bus, &c).await;
    // Connections Redis accepted so far (each of these questions is one).
    let connections = || -> u64 {
        redis.command(&["INFO", "stats"])[0]
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    let before = connections();
    // Five check intervals (100 ms in these tests).
    sleep(Duration::from_millis(500)).await;
    assert_eq!(connections(), before + 1, "no reconnection");
    assert_eq!(bus.health(), Health::Up);
}

/// Records what the publishing side wrote to it; takes everything.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<u64>>);

impl herald_bus::Outlet for Recorder {
    fn send(&self, m: &Arc<Message>) -> herald_bus::Sent {
        self.0.lock().unwrap().push(m.id);
        herald_bus::Sent::All
    }
}

#[tokio::test]
async fn a_caught_up_subscriber_is_written_to_as_messages_reach_the_cache() {
    let Some(redis) = redis() else { return };
    let (a, b, c, mut sub) = two_instances_and_a_subscriber(&redis).await;
    let outlet = Arc::new(Recorder::default());
    sub.deliver_through(outlet.clone());
    // Caught up: the subscription hands the channel to the engine and waits.
    let waiting = tokio::spawn(async move {
        let batch = sub.next(1000).await;
        (sub, batch)
    });
    sleep(Duration::from_millis(100)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&a, &c, &format!("a{i}")).await.id);
        // From the subscriber's own instance too.
        ids.push(publish(&b, &c, &format!("b{i}")).await.id);
    }
    wait_until("every message written through the outlet", || {
        outlet.0.lock().unwrap().len() == ids.len()
    })
    .await;
    assert_eq!(*outlet.0.lock().unwrap(), ids, "once each, in order");
    assert!(!waiting.is_finished(), "nothing was left for the task");
    waiting.abort();
}
