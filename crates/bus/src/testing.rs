//! The bus's subscription and delivery contract, written once and run
//! against every engine: per-channel order with no duplicates and no holes,
//! cursors that resume exactly where they were taken, gaps that are reported
//! instead of skipped, paging, waiting and cancel-safety, deletion, bounded
//! memory under a slow subscriber, adding and removing channels, and expiry
//! by age.
//!
//! Each test is a public async function taking a [`Factory`] that builds a
//! [`Bus`] over a fresh store; [`contract_tests!`](crate::contract_tests)
//! stamps out one `#[tokio::test]` per function for a factory. The memory
//! engine runs them on paused tokio time, a remote engine in real time
//! (paused time would fire timeouts while a reply is on the wire), so every
//! test holds in both: waits are bounded below, never above, and age moves
//! with a [`ManualClock`], not with tokio time.
//!
//! What it leaves out: engine internals (each engine tests its own) and
//! anything a transport does with a batch. Every test asserts exact ids and
//! counts, so none of them can pass on an empty result. Available with the
//! `testing` feature.

use std::{slice::from_ref, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::time::{Instant, timeout};

use crate::{
    Batch, Bus, ChannelName, Clock, Config, Cursor, Draft, Engine, Error, ManualClock,
    MemoryEngine, Message, Payload, Published, Start, Subscription,
};

/// Builds the engines a contract test runs on.
pub trait Factory: Send + Sync {
    /// A new engine on a store of its own (so with its own epoch), built
    /// from `config`.
    fn engine(&self, config: Config) -> BoxFuture<'_, Arc<dyn Engine>>;

    /// A bus over [`engine`](Factory::engine).
    fn bus(&self, config: Config) -> BoxFuture<'_, Bus> {
        Box::pin(async move { Bus::from_shared(self.engine(config).await) })
    }

    /// Lets the engine's own housekeeping run once the clock moved (the
    /// memory engine's sweeper). Does nothing by default.
    fn sweep(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The memory engine. Its [`sweep`](Factory::sweep) waits 11 s of tokio
/// time, so run it on paused time (as [`contract_tests!`](crate::contract_tests)
/// does).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory;

impl Factory for Memory {
    fn engine(&self, config: Config) -> BoxFuture<'_, Arc<dyn Engine>> {
        Box::pin(async move { Arc::new(MemoryEngine::new(config)) as Arc<dyn Engine> })
    }

    fn sweep(&self) -> BoxFuture<'_, ()> {
        // The sweeper ticks at most every 5 s.
        Box::pin(tokio::time::sleep(Duration::from_secs(11)))
    }
}

/// Stamps out one `#[tokio::test]` per contract test, each running on the
/// factory `$factory` gives: an expression of type `Option<impl Factory>`,
/// where `None` skips the test (the expression says why, loudly). The second
/// argument is `paused` (tokio time paused: for in-process engines) or
/// `real_time` (for engines that talk to another process).
///
/// ```text
/// herald_bus::contract_tests!(Some(herald_bus::testing::Memory), paused);
/// ```
#[macro_export]
macro_rules! contract_tests {
    ($factory:expr, paused) => {
        $crate::contract_tests!(@all $factory, (start_paused = true));
    };
    ($factory:expr, real_time) => {
        $crate::contract_tests!(@all $factory, ());
    };
    (@all $factory:expr, $time:tt) => {
        $crate::contract_tests!(@each $factory, $time, [
            history_is_bounded_by_bytes,
            a_publish_is_visible_to_the_next_read_on_the_same_bus,
            subscribers_see_every_message_once_in_order_amid_interleaved_reads,
            reading_from_now_returns_nothing_and_its_cursor_resumes_exactly_after,
            start_last_returns_the_n_most_recent_retained_per_channel_without_a_gap,
            a_cursor_older_than_the_retained_history_gets_what_is_retained_and_one_gap,
            a_cursor_from_another_epoch_replays_everything_retained_with_a_gap,
            a_foreign_position_inside_the_current_id_range_is_not_trusted,
            malformed_cursor_text_is_an_invalid_cursor_error,
            one_cursor_resumes_several_channels_each_in_its_own_order,
            small_limits_over_several_channels_lose_and_repeat_nothing,
            a_long_history_is_read_in_pages_of_the_limit,
            next_waits_for_a_publish_and_then_returns_it,
            dropping_a_waiting_next_loses_and_repeats_nothing,
            deleting_a_channel_ends_it_for_subscribers_who_continue_on_the_others,
            channel_info_counts_live_subscriptions,
            a_slow_subscriber_gets_a_gap_and_the_retained_history_and_memory_stays_bounded,
            a_subscription_adds_and_removes_channels,
            a_poller_learns_of_a_delete_as_a_gap,
            channels_merge_in_publish_order_within_a_millisecond,
            expired_history_is_dropped_and_the_channel_keeps_its_last_id,
            an_expired_channel_still_reports_what_a_returning_client_missed,
            an_epoch_change_during_a_read_delivers_the_new_messages_once_with_one_gap,
            a_poll_that_meets_a_new_epoch_answers_it_once_with_a_gap,
            reading_several_channels_at_once_agrees_with_reading_each,
            a_subscription_reads_all_its_channels_in_one_engine_call,
        ]);
        $crate::contract_tests!(@each $factory, (flavor = "multi_thread", worker_threads = 4), [
            a_concurrent_publisher_and_subscriber_agree_on_the_sequence,
        ]);
    };
    (@each $factory:expr, $time:tt, [$($name:ident,)*]) => {
        $(
            #[::tokio::test $time]
            async fn $name() {
                let Some(factory) = $factory else { return };
                $crate::testing::$name(&factory).await;
            }
        )*
    };
}

// ---- helpers ---------------------------------------------------------------

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).expect("test channel names are valid")
}

fn draft(channel: &ChannelName, data: &str) -> Draft {
    Draft {
        channel: channel.clone(),
        event: None,
        payload: Payload::text(data.to_string()).expect("test data is UTF-8"),
    }
}

fn config(max_messages: usize) -> Config {
    Config {
        max_messages,
        ..Config::default()
    }
}

/// Publishes `n` messages on `channel` in one call; the data names the
/// channel and the message's rank in this call.
async fn publish(bus: &Bus, channel: &ChannelName, n: usize) -> Vec<Published> {
    let drafts = (0..n)
        .map(|i| draft(channel, &format!("{channel}#{i}")))
        .collect();
    let published = bus.publish(drafts).await.expect("publish");
    assert_eq!(published.len(), n, "publish answers one entry per draft");
    published
}

/// Publishes `n` messages on `channel` and answers the stored messages.
async fn publish_messages(bus: &Bus, channel: &ChannelName, n: usize) -> Vec<Arc<Message>> {
    publish(bus, channel, n)
        .await
        .into_iter()
        .map(|p| p.message)
        .collect()
}

/// Publishes `drafts` in one call and answers the stored messages.
async fn publish_drafts(bus: &Bus, drafts: Vec<Draft>) -> Vec<Arc<Message>> {
    let published = bus.publish(drafts).await.expect("publish");
    published.into_iter().map(|p| p.message).collect()
}

/// What identifies a delivered message: channel, id and data.
fn keys(messages: &[Arc<Message>]) -> Vec<(String, u64, String)> {
    messages
        .iter()
        .map(|m| (m.channel.to_string(), m.id, m.payload.as_str().to_string()))
        .collect()
}

fn ids(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

/// The messages of one channel, in delivery order.
fn on(messages: &[Arc<Message>], channel: &ChannelName) -> Vec<Arc<Message>> {
    messages
        .iter()
        .filter(|m| &m.channel == channel)
        .cloned()
        .collect()
}

fn assert_strictly_increasing(messages: &[Arc<Message>]) {
    for w in messages.windows(2) {
        assert!(
            w[1].id > w[0].id,
            "ids must strictly increase: {} then {}",
            w[0].id,
            w[1].id
        );
    }
}

fn assert_no_gap(batch: &Batch) {
    assert!(batch.gaps.is_empty(), "unexpected gap: {:?}", batch.gaps);
    assert!(batch.gone.is_empty(), "unexpected gone: {:?}", batch.gone);
}

/// `Bus::read` with a generous limit.
async fn read(bus: &Bus, channels: &[ChannelName], start: Start) -> Batch {
    bus.read(channels, &start, 10_000).await.expect("read")
}

/// Reads `channels` from `cursor` in pages of `limit`, resuming from each
/// returned cursor until a page is empty, with no gap; answers the page
/// sizes and the messages.
async fn read_pages(
    bus: &Bus,
    channels: &[ChannelName],
    mut cursor: Cursor,
    limit: usize,
) -> (Vec<usize>, Vec<Arc<Message>>) {
    let (mut sizes, mut got) = (Vec::new(), Vec::new());
    // Bounded, so that a reader that stops advancing fails instead of hanging.
    for _ in 0..20 {
        let batch = bus
            .read(channels, &Start::From(cursor), limit)
            .await
            .expect("read");
        assert_no_gap(&batch);
        cursor = batch.cursor;
        if batch.messages.is_empty() {
            return (sizes, got);
        }
        sizes.push(batch.messages.len());
        got.extend(batch.messages);
    }
    panic!("the reader kept finding messages after 20 pages");
}

/// A cursor at the current end of `channels`.
async fn cursor_now(bus: &Bus, channels: &[ChannelName]) -> Cursor {
    let batch = read(bus, channels, Start::Now).await;
    assert!(batch.is_empty(), "Start::Now reads nothing: {batch:?}");
    batch.cursor
}

/// `Subscription::next`, failing the test instead of hanging.
async fn next(sub: &mut Subscription, limit: usize) -> Batch {
    timeout(Duration::from_secs(5), sub.next(limit))
        .await
        .expect("Subscription::next should have had something to deliver")
}

/// The next batch of `sub` holds exactly `expected`, with no gap.
async fn expect_next(sub: &mut Subscription, limit: usize, expected: &[Arc<Message>]) {
    let batch = next(sub, limit).await;
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(expected));
}

/// Asserts that `Subscription::next` has nothing to deliver. Dropping the
/// timed-out future also exercises cancel-safety.
async fn assert_pending(sub: &mut Subscription) {
    if let Ok(batch) = timeout(Duration::from_millis(200), sub.next(10_000)).await {
        panic!("expected nothing to deliver, got {batch:?}");
    }
}

// ---- order -----------------------------------------------------------------

/// Subscribers see every message once in order amid interleaved reads.
pub async fn subscribers_see_every_message_once_in_order_amid_interleaved_reads(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let c = ch("orders");
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();

    let sizes = [1usize, 7, 3, 13, 2, 9, 5, 11];
    let mut published: Vec<Arc<Message>> = Vec::new();
    let mut received: Vec<Arc<Message>> = Vec::new();
    let mut round = 0;
    while published.len() < 500 {
        let n = sizes[round % sizes.len()].min(500 - published.len());
        round += 1;
        let batch = publish_messages(&bus, &c, n).await;
        if let Some(prev) = published.last() {
            assert!(batch[0].id > prev.id, "ids increase across publishes");
        }
        assert_strictly_increasing(&batch);
        published.extend(batch);

        // Two small reads per publish keep the backlog well inside the
        // retained history (100), so no gap is allowed.
        for _ in 0..2 {
            let backlog = published.len() - received.len();
            if backlog == 0 {
                break;
            }
            let batch = next(&mut sub, 4).await;
            assert_no_gap(&batch);
            assert_eq!(
                batch.messages.len(),
                backlog.min(4),
                "a read returns min(limit, backlog)"
            );
            received.extend(batch.messages.iter().cloned());
            let last = received.last().unwrap().id;
            assert_eq!(batch.cursor.position(&c), Some((last, false)));
        }
    }
    while received.len() < published.len() {
        let batch = next(&mut sub, 4).await;
        assert_no_gap(&batch);
        assert!(!batch.messages.is_empty());
        received.extend(batch.messages.iter().cloned());
    }

    assert_eq!(published.len(), 500);
    assert_strictly_increasing(&published);
    assert_eq!(
        keys(&received),
        keys(&published),
        "exact sequence: no duplicate, no hole"
    );
    assert_eq!(
        sub.cursor().position(&c),
        Some((published.last().unwrap().id, false))
    );
    assert_pending(&mut sub).await;
}

/// A concurrent publisher and subscriber agree on the sequence.
pub async fn a_concurrent_publisher_and_subscriber_agree_on_the_sequence(f: &dyn Factory) {
    let bus = f.bus(config(1000)).await;
    let c = ch("race");
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();

    let publisher = {
        let (bus, c) = (bus.clone(), c.clone());
        tokio::spawn(async move {
            // Exactly 500, in calls of 1 to 3 messages.
            let mut all = Vec::new();
            for i in 0.. {
                let n = (1 + i % 3).min(500 - all.len());
                if n == 0 {
                    break;
                }
                all.extend(publish_messages(&bus, &c, n).await);
                tokio::task::yield_now().await;
            }
            assert_eq!(all.len(), 500);
            all
        })
    };

    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < 500 {
        let batch = timeout(deadline - Instant::now(), sub.next(7))
            .await
            .expect("the subscriber must keep up with the publisher");
        assert_no_gap(&batch);
        assert!(batch.messages.len() <= 7);
        received.extend(batch.messages.iter().cloned());
    }
    let published = publisher.await.unwrap();
    assert_eq!(received.len(), published.len());
    assert_strictly_increasing(&published);
    assert_eq!(keys(&received), keys(&published));
}

/// A stored message is visible to the very next read on the same bus, also
/// while the channel has subscribers (whose engine may cache what they are
/// notified of, and be notified after the publish answered).
pub async fn a_publish_is_visible_to_the_next_read_on_the_same_bus(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let c = ch("visible");
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();
    let mut cursor = cursor_now(&bus, from_ref(&c)).await;
    for _ in 0..50 {
        let sent = publish_messages(&bus, &c, 1).await;
        let batch = read(&bus, from_ref(&c), Start::From(cursor)).await;
        assert_no_gap(&batch);
        assert_eq!(keys(&batch.messages), keys(&sent));
        cursor = batch.cursor;
        let batch = next(&mut sub, 10).await;
        assert_eq!(keys(&batch.messages), keys(&sent));
    }
}

// ---- starting points ---------------------------------------------------------

/// Reading from now returns nothing and its cursor resumes exactly after.
pub async fn reading_from_now_returns_nothing_and_its_cursor_resumes_exactly_after(
    f: &dyn Factory,
) {
    let bus = f.bus(Config::default()).await;
    let c = ch("now");
    let before = publish_messages(&bus, &c, 5).await;

    let now = read(&bus, from_ref(&c), Start::Now).await;
    assert!(now.messages.is_empty() && now.gaps.is_empty() && now.gone.is_empty());
    assert_eq!(now.cursor.epoch(), bus.epoch());
    assert_eq!(now.cursor.position(&c), Some((before[4].id, false)));

    let since = publish_messages(&bus, &c, 7).await;
    // The cursor travels as text, as it does through every transport.
    let cursor = Cursor::parse(&now.cursor.to_string()).unwrap();
    let batch = read(&bus, from_ref(&c), Start::From(cursor)).await;
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(&since));

    let again = read(&bus, from_ref(&c), Start::From(batch.cursor.clone())).await;
    assert!(again.is_empty(), "nothing new since: {again:?}");
    assert_eq!(again.cursor.position(&c), Some((since[6].id, false)));

    // A published message's cursor resumes right after it.
    let p = publish(&bus, &c, 3).await;
    let after_first = read(&bus, from_ref(&c), Start::From(p[0].cursor.clone())).await;
    assert_no_gap(&after_first);
    assert_eq!(
        ids(&after_first.messages),
        vec![p[1].message.id, p[2].message.id]
    );

    // On a channel that has never had a message, "now" is before its first.
    let fresh = ch("fresh");
    let cursor = cursor_now(&bus, from_ref(&fresh)).await;
    let first = publish_messages(&bus, &fresh, 3).await;
    let batch = read(&bus, from_ref(&fresh), Start::From(cursor)).await;
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(&first));
}

/// Start last returns the n most recent retained per channel without a gap.
pub async fn start_last_returns_the_n_most_recent_retained_per_channel_without_a_gap(
    f: &dyn Factory,
) {
    let bus = f.bus(config(100)).await;
    let (a, b, c) = (ch("a"), ch("b"), ch("c"));
    let on_a = publish_messages(&bus, &a, 10).await;
    let on_b = publish_messages(&bus, &b, 2).await;

    let batch = read(&bus, &[a.clone(), b.clone()], Start::Last(3)).await;
    assert_no_gap(&batch);
    assert_eq!(batch.messages.len(), 5);
    assert_eq!(keys(&on(&batch.messages, &a)), keys(&on_a[7..]));
    assert_eq!(
        keys(&on(&batch.messages, &b)),
        keys(&on_b),
        "fewer than n: all of them"
    );

    // More asked than retained: everything retained, still no gap.
    let on_c = publish_messages(&bus, &c, 150).await;
    let batch = read(&bus, from_ref(&c), Start::Last(1000)).await;
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(&on_c[50..]));

    // Last(0) is "now".
    let batch = read(&bus, from_ref(&c), Start::Last(0)).await;
    assert!(batch.is_empty());
    let more = publish_messages(&bus, &c, 1).await;
    let resumed = read(&bus, from_ref(&c), Start::From(batch.cursor)).await;
    assert_no_gap(&resumed);
    assert_eq!(keys(&resumed.messages), keys(&more));

    // A subscription from Last(n) delivers those n, then what comes next.
    let mut sub = bus.subscribe(from_ref(&a), &Start::Last(2)).await.unwrap();
    expect_next(&mut sub, 100, &on_a[8..]).await;
    let newer = publish_messages(&bus, &a, 1).await;
    expect_next(&mut sub, 100, &newer).await;
    assert_pending(&mut sub).await;
}

// ---- gaps ------------------------------------------------------------------

/// A cursor older than the retained history gets what is retained and one gap.
pub async fn a_cursor_older_than_the_retained_history_gets_what_is_retained_and_one_gap(
    f: &dyn Factory,
) {
    let bus = f.bus(config(100)).await;
    let c = ch("gap");
    let early = publish(&bus, &c, 10).await;
    let cursor = early[9].cursor.clone();
    let never = cursor_now(&bus, &[ch("gap2")]).await;

    let later = publish_messages(&bus, &c, 150).await;
    assert_eq!(bus.info(&c).await.unwrap().retained, 100);

    let batch = bus
        .read(from_ref(&c), &Start::From(cursor.clone()), 1000)
        .await
        .unwrap();
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert!(batch.gone.is_empty());
    assert!(batch.has_gap());
    assert_eq!(batch.messages.len(), 100);
    assert_eq!(keys(&batch.messages), keys(&later[50..]));

    let resumed = read(&bus, from_ref(&c), Start::From(batch.cursor.clone())).await;
    assert!(resumed.is_empty(), "the gap is reported once: {resumed:?}");
    let one = publish_messages(&bus, &c, 1).await;
    let resumed = read(&bus, from_ref(&c), Start::From(resumed.cursor)).await;
    assert_no_gap(&resumed);
    assert_eq!(keys(&resumed.messages), keys(&one));

    // A subscription from the same old cursor sees the same thing.
    let mut sub = bus
        .subscribe(from_ref(&c), &Start::From(cursor))
        .await
        .unwrap();
    let batch = next(&mut sub, 1000).await;
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert_eq!(batch.messages.len(), 100);
    assert_eq!(keys(&batch.messages[..99]), keys(&later[51..]));
    assert_eq!(keys(&batch.messages[99..]), keys(&one));
    assert_pending(&mut sub).await;

    // A "now" taken before a channel's first message is before its first
    // id: 150 published over a history of 100 is a gap too.
    let c2 = ch("gap2");
    let on_c2 = publish_messages(&bus, &c2, 150).await;
    let batch = read(&bus, from_ref(&c2), Start::From(never)).await;
    assert_eq!(batch.gaps, vec![c2.clone()]);
    assert_eq!(keys(&batch.messages), keys(&on_c2[50..]));
}

/// A cursor from another epoch replays everything retained with a gap.
pub async fn a_cursor_from_another_epoch_replays_everything_retained_with_a_gap(f: &dyn Factory) {
    let old = f.bus(config(100)).await;
    let new = f.bus(config(100)).await;
    assert_ne!(old.epoch(), new.epoch(), "each store has its own epoch");
    let (c, big) = (ch("epoch"), ch("epoch-big"));

    let from_old = publish(&old, &c, 3).await;
    let old_cursor = Cursor::combine([
        from_old[2].cursor.clone(),
        publish(&old, &big, 1).await[0].cursor.clone(),
    ])
    .unwrap();
    // A foreign cursor is not malformed: it parses.
    let old_cursor = Cursor::parse(&old_cursor.to_string()).unwrap();
    assert_eq!(old_cursor.epoch(), old.epoch());

    let on_new = publish_messages(&new, &c, 5).await;
    let batch = read(&new, from_ref(&c), Start::From(old_cursor.clone())).await;
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert_eq!(keys(&batch.messages), keys(&on_new));
    assert_eq!(
        batch.cursor.epoch(),
        new.epoch(),
        "the answer carries the new epoch"
    );
    assert_eq!(batch.cursor.position(&c), Some((on_new[4].id, false)));

    let resumed = read(&new, from_ref(&c), Start::From(batch.cursor)).await;
    assert!(resumed.is_empty(), "no second gap: {resumed:?}");

    // Only what is retained comes back, and a subscription behaves alike.
    let on_big = publish_messages(&new, &big, 150).await;
    let mut sub = new
        .subscribe(from_ref(&big), &Start::From(old_cursor))
        .await
        .unwrap();
    let batch = next(&mut sub, 1000).await;
    assert_eq!(batch.gaps, vec![big.clone()]);
    assert_eq!(keys(&batch.messages), keys(&on_big[50..]));
    assert_pending(&mut sub).await;
}

/// A foreign position inside the current id range is not trusted.
pub async fn a_foreign_position_inside_the_current_id_range_is_not_trusted(f: &dyn Factory) {
    // Ids start at the wall clock in microseconds, so a foreign cursor's
    // position usually lies outside this store's ids and would look like a
    // gap anyway. Put it inside them, where trusting it would silently skip
    // messages: only the epoch can tell.
    let roomy = Config {
        max_messages: 1_000_000,
        max_bytes: 1 << 30,
        ..Config::default()
    };
    let new = f.bus(roomy.clone()).await;
    let old = f.bus(roomy).await;
    let c = ch("inside");
    let mut on_new = publish_messages(&new, &c, 1).await;
    let foreign = publish(&old, &c, 1).await.remove(0);
    let inside = foreign.message.id;
    assert!(inside >= on_new[0].id, "the second store's ids start later");
    let more = usize::try_from(inside - on_new[0].id).unwrap() + 5;
    on_new.extend(publish_messages(&new, &c, more).await);
    assert!(on_new[0].id <= inside && inside < on_new.last().unwrap().id);

    let batch = read(&new, from_ref(&c), Start::From(foreign.cursor.clone())).await;
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert_eq!(keys(&batch.messages), keys(&on_new));

    // A same-epoch cursor combined with it keeps the foreign position stale.
    let here = cursor_now(&new, &[ch("elsewhere")]).await;
    let combined = Cursor::combine([here, foreign.cursor]).unwrap();
    assert_eq!(combined.position(&c), Some((inside, true)));
    let batch = read(&new, from_ref(&c), Start::From(combined)).await;
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert_eq!(keys(&batch.messages), keys(&on_new));
}

/// Malformed cursor text is an invalid cursor error.
pub async fn malformed_cursor_text_is_an_invalid_cursor_error(f: &dyn Factory) {
    // A well-formed cursor naming one channel, to damage below.
    let bus = f.bus(Config::default()).await;
    let bus_epoch_cursor = publish(&bus, &ch("x"), 1).await[0].cursor.to_string();
    assert!(Cursor::parse(&bus_epoch_cursor).is_ok());

    let mut bad: Vec<String> = [
        "",
        "!!!",
        "not a cursor",
        "a b",
        "AAAA", // version 0
        "AgE",  // version 2
        "AYA",  // version 1, epoch cut short
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    bad.push("A".repeat(10_000));
    bad.push(format!("{bus_epoch_cursor}="));
    bad.push(format!("{bus_epoch_cursor}*"));
    for cut in 1..=3 {
        // Cut inside the last position.
        bad.push(bus_epoch_cursor[..bus_epoch_cursor.len() - cut].to_string());
    }
    for text in &bad {
        match Cursor::parse(text) {
            Err(e @ Error::InvalidCursor(_)) => assert!(e.is_client_error()),
            other => panic!("{text:?} should be an invalid cursor, got {other:?}"),
        }
    }
}

// ---- several channels -----------------------------------------------------------

/// One cursor resumes several channels each in its own order.
pub async fn one_cursor_resumes_several_channels_each_in_its_own_order(f: &dyn Factory) {
    let bus = f.bus(config(100)).await;
    let (a, b) = (ch("a"), ch("b"));
    let both = [a.clone(), b.clone()];
    let cursor = cursor_now(&bus, &both).await;

    // Interleaved in one publish, then more of one channel.
    let drafts = (0..10)
        .flat_map(|i| [draft(&a, &format!("a{i}")), draft(&b, &format!("b{i}"))])
        .collect();
    let first = publish_drafts(&bus, drafts).await;
    let extra = publish_messages(&bus, &a, 5).await;
    let (sent_a, sent_b) = ([on(&first, &a), extra].concat(), on(&first, &b));

    let batch = read(&bus, &both, Start::From(cursor)).await;
    assert_no_gap(&batch);
    assert_eq!(batch.messages.len(), 25);
    assert_eq!(keys(&on(&batch.messages, &a)), keys(&sent_a));
    assert_eq!(keys(&on(&batch.messages, &b)), keys(&sent_b));

    // The one returned cursor resumes both.
    let new_a = publish_messages(&bus, &a, 3).await;
    let new_b = publish_messages(&bus, &b, 2).await;
    let text = batch.cursor.to_string();
    let resumed = read(&bus, &both, Start::From(Cursor::parse(&text).unwrap())).await;
    assert_no_gap(&resumed);
    assert_eq!(resumed.messages.len(), 5);
    assert_eq!(keys(&on(&resumed.messages, &a)), keys(&new_a));
    assert_eq!(keys(&on(&resumed.messages, &b)), keys(&new_b));

    // Per-channel cursors combined resume both too.
    assert!(Cursor::combine(Vec::new()).is_none());
    let ca = cursor_now(&bus, from_ref(&a)).await;
    let cb = cursor_now(&bus, from_ref(&b)).await;
    let new_a = publish_messages(&bus, &a, 4).await;
    let new_b = publish_messages(&bus, &b, 6).await;
    let combined = Cursor::combine([ca, cb]).unwrap();
    let resumed = read(&bus, &both, Start::From(combined)).await;
    assert_no_gap(&resumed);
    assert_eq!(resumed.messages.len(), 10);
    assert_eq!(keys(&on(&resumed.messages, &a)), keys(&new_a));
    assert_eq!(keys(&on(&resumed.messages, &b)), keys(&new_b));

    // A subscription on both gets both, and its cursor resumes both.
    let mut sub = bus.subscribe(&both, &Start::Now).await.unwrap();
    let new_b = publish_messages(&bus, &b, 2).await;
    let new_a = publish_messages(&bus, &a, 3).await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let batch = next(&mut sub, 100).await;
        assert_no_gap(&batch);
        got.extend(batch.messages.iter().cloned());
    }
    assert_eq!(got.len(), 5);
    assert_eq!(keys(&on(&got, &a)), keys(&new_a));
    assert_eq!(keys(&on(&got, &b)), keys(&new_b));
    assert_pending(&mut sub).await;
    let later_b = publish_messages(&bus, &b, 1).await;
    let resumed = read(&bus, &both, Start::From(sub.cursor())).await;
    assert_no_gap(&resumed);
    assert_eq!(keys(&resumed.messages), keys(&later_b));
}

/// Small limits over several channels lose and repeat nothing.
pub async fn small_limits_over_several_channels_lose_and_repeat_nothing(f: &dyn Factory) {
    let bus = f.bus(config(100)).await;
    let (a, b, c) = (ch("a"), ch("b"), ch("c"));
    let all = [a.clone(), b.clone(), c.clone()];
    let cursor = cursor_now(&bus, &all).await;
    let mut sub = bus.subscribe(&all, &Start::Now).await.unwrap();

    let drafts = (0..12)
        .flat_map(|i| {
            let mut d = vec![draft(&a, &format!("a{i}"))];
            if i % 4 != 3 {
                d.push(draft(&b, &format!("b{i}")));
            }
            d
        })
        .collect();
    let sent = publish_drafts(&bus, drafts).await;
    let sent_c = publish_messages(&bus, &c, 4).await;
    assert_eq!(sent.len(), 21);

    // Through Bus::read, resuming from each returned cursor.
    let (sizes, got) = read_pages(&bus, &all, cursor, 4).await;
    assert_eq!(sizes, [4, 4, 4, 4, 4, 4, 1]);
    for (channel, expected) in [
        (&a, on(&sent, &a)),
        (&b, on(&sent, &b)),
        (&c, sent_c.clone()),
    ] {
        assert_eq!(
            keys(&on(&got, channel)),
            keys(&expected),
            "channel {channel}"
        );
    }

    // Through a subscription.
    let mut got = Vec::new();
    while got.len() < 25 {
        let batch = next(&mut sub, 4).await;
        assert_no_gap(&batch);
        assert!(batch.messages.len() <= 4);
        got.extend(batch.messages.iter().cloned());
    }
    assert_eq!(got.len(), 25);
    for (channel, expected) in [(&a, on(&sent, &a)), (&b, on(&sent, &b)), (&c, sent_c)] {
        assert_eq!(
            keys(&on(&got, channel)),
            keys(&expected),
            "channel {channel}"
        );
    }
    assert_pending(&mut sub).await;
}

// ---- paging ----------------------------------------------------------------

/// A long history is read in pages of the limit.
pub async fn a_long_history_is_read_in_pages_of_the_limit(f: &dyn Factory) {
    let bus = f.bus(config(5000)).await;
    let c = ch("pages");
    let start = cursor_now(&bus, from_ref(&c)).await;
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..5 {
        sent.extend(publish_messages(&bus, &c, 500).await);
    }
    assert_eq!(sent.len(), 2500);
    assert_eq!(bus.info(&c).await.unwrap().retained, 2500);

    let (sizes, got) = read_pages(&bus, from_ref(&c), start, 1000).await;
    assert_eq!(sizes, [1000, 1000, 500]);
    for w in got.windows(2) {
        assert_eq!(w[1].id, w[0].id + 1, "contiguous ids");
    }
    assert_eq!(keys(&got), keys(&sent));

    let mut sizes = Vec::new();
    let mut got = Vec::new();
    while got.len() < 2500 {
        let batch = next(&mut sub, 1000).await;
        assert_no_gap(&batch);
        sizes.push(batch.messages.len());
        got.extend(batch.messages);
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(keys(&got), keys(&sent));
    assert_pending(&mut sub).await;
}

// ---- waiting and cancellation ------------------------------------------------------

/// Next waits for a publish and then returns it.
pub async fn next_waits_for_a_publish_and_then_returns_it(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let c = ch("wait");
    publish(&bus, &c, 3).await;
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();

    assert!(
        timeout(Duration::from_millis(300), sub.next(10))
            .await
            .is_err(),
        "next must wait while there is nothing new"
    );

    let started = Instant::now();
    let publisher = {
        let (bus, c) = (bus.clone(), c.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            publish_messages(&bus, &c, 2).await
        })
    };
    let batch = timeout(Duration::from_secs(10), sub.next(10))
        .await
        .expect("woken by the publish");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "returned before the publish"
    );
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(&publisher.await.unwrap()));
    assert_pending(&mut sub).await;
}

/// Dropping a waiting next loses and repeats nothing.
pub async fn dropping_a_waiting_next_loses_and_repeats_nothing(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let (a, b) = (ch("a"), ch("b"));
    let mut sub = bus
        .subscribe(&[a.clone(), b.clone()], &Start::Now)
        .await
        .unwrap();

    // Several futures dropped mid-wait, by a timeout and by a select.
    for _ in 0..3 {
        assert!(
            timeout(Duration::from_millis(100), sub.next(10))
                .await
                .is_err()
        );
    }
    tokio::select! {
        biased;
        batch = sub.next(10) => panic!("nothing was published: {batch:?}"),
        () = tokio::task::yield_now() => {}
    }

    let sent = publish_messages(&bus, &a, 1).await;
    let batch = next(&mut sub, 10).await;
    assert_no_gap(&batch);
    assert_eq!(keys(&batch.messages), keys(&sent), "arrives once");
    assert_pending(&mut sub).await;

    // Published while no next() is running, with one created and dropped
    // unpolled in between.
    let sent_b = publish_messages(&bus, &b, 3).await;
    drop(sub.next(10));
    expect_next(&mut sub, 10, &sent_b).await;
    assert_pending(&mut sub).await;
}

// ---- deletion and subscriber counts -------------------------------------------------

/// Deleting a channel ends it for subscribers who continue on the others.
pub async fn deleting_a_channel_ends_it_for_subscribers_who_continue_on_the_others(
    f: &dyn Factory,
) {
    let bus = f.bus(Config::default()).await;
    let (a, b) = (ch("a"), ch("b"));
    let mut sub = bus
        .subscribe(&[a.clone(), b.clone()], &Start::Now)
        .await
        .unwrap();
    let old_a = publish_messages(&bus, &a, 2).await;
    let batch = next(&mut sub, 10).await;
    assert_eq!(keys(&batch.messages), keys(&old_a));

    assert!(bus.delete(&a).await.unwrap(), "the channel existed");
    let batch = next(&mut sub, 10).await;
    assert_eq!(batch.gone, vec![a.clone()]);
    assert!(batch.messages.is_empty() && batch.gaps.is_empty());
    assert!(batch.has_gap());
    assert_eq!(
        batch.cursor.position(&a),
        None,
        "a is no longer part of the cursor"
    );
    assert_eq!(sub.len(), 1);
    assert_eq!(sub.channels().cloned().collect::<Vec<_>>(), vec![b.clone()]);
    assert_eq!(bus.info(&a).await.unwrap().retained, 0);

    let new_b = publish_messages(&bus, &b, 2).await;
    expect_next(&mut sub, 10, &new_b).await;

    // A channel of the same name published again is a new channel this
    // subscription no longer follows, and its ids are above the old ones.
    let new_a = publish_messages(&bus, &a, 1).await;
    assert!(new_a[0].id > old_a[1].id);
    assert_pending(&mut sub).await;
    assert!(bus.delete(&a).await.unwrap());
    assert!(!bus.delete(&a).await.unwrap(), "already deleted");
    assert_pending(&mut sub).await;
}

/// Channel info counts live subscriptions.
pub async fn channel_info_counts_live_subscriptions(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let (a, b) = (ch("a"), ch("b"));
    let subscribers = async |c: &ChannelName| bus.info(c).await.unwrap().subscribers;
    assert_eq!(subscribers(&a).await, 0);

    let one = bus.subscribe(from_ref(&a), &Start::Now).await.unwrap();
    assert_eq!(subscribers(&a).await, 1);
    let two = bus
        .subscribe(&[a.clone(), b.clone()], &Start::Last(5))
        .await
        .unwrap();
    assert_eq!((subscribers(&a).await, subscribers(&b).await), (2, 1));

    // Reading is not subscribing.
    read(&bus, from_ref(&a), Start::Last(5)).await;
    assert_eq!(subscribers(&a).await, 2);

    drop(one);
    assert_eq!((subscribers(&a).await, subscribers(&b).await), (1, 1));
    drop(two);
    assert_eq!((subscribers(&a).await, subscribers(&b).await), (0, 0));
}

/// The byte bound holds like the count bound: the oldest messages go first,
/// and the retained bytes are counted as [`Message::size`] says.
pub async fn history_is_bounded_by_bytes(f: &dyn Factory) {
    let bus = f
        .bus(Config {
            max_bytes: 3 * (64 + 10),
            ..Config::default()
        })
        .await;
    let c = ch("bytes");
    let drafts = (0..5).map(|i| draft(&c, &format!("{i:010}"))).collect();
    let sent = bus.publish(drafts).await.unwrap();
    let info = bus.info(&c).await.unwrap();
    assert_eq!((info.retained, info.bytes), (3, 3 * 74));
    assert_eq!(info.first_id, Some(sent[2].message.id));
    let batch = read(&bus, from_ref(&c), Start::Last(10)).await;
    let sent: Vec<_> = sent.into_iter().map(|p| p.message).collect();
    assert_eq!(keys(&batch.messages), keys(&sent[2..]));
}

// ---- slow subscribers and memory -------------------------------------------------------

/// A slow subscriber gets a gap and the retained history and memory stays bounded.
pub async fn a_slow_subscriber_gets_a_gap_and_the_retained_history_and_memory_stays_bounded(
    f: &dyn Factory,
) {
    let bus = f.bus(config(100)).await;
    let c = ch("slow");
    publish(&bus, &c, 5).await;
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();

    let mut sent = Vec::new();
    for _ in 0..10 {
        sent.extend(publish_messages(&bus, &c, 100).await);
    }
    assert_eq!(sent.len(), 1000);

    let info = bus.info(&c).await.unwrap();
    assert_eq!(
        info.retained, 100,
        "history is bounded whatever the subscriber does"
    );
    assert_eq!(
        info.bytes,
        sent[900..].iter().map(|m| m.size()).sum::<usize>()
    );
    assert_eq!(info.first_id, Some(sent[900].id));
    assert_eq!(info.last_id, Some(sent[999].id));
    assert_eq!(info.subscribers, 1);

    let batch = next(&mut sub, 10_000).await;
    assert_eq!(batch.gaps, vec![c.clone()]);
    assert!(batch.gone.is_empty());
    assert_eq!(batch.messages.len(), 100);
    assert_eq!(keys(&batch.messages), keys(&sent[900..]));
    assert_eq!(batch.cursor.position(&c), Some((sent[999].id, false)));
    assert_pending(&mut sub).await;

    let one = publish_messages(&bus, &c, 1).await;
    expect_next(&mut sub, 10_000, &one).await;
}

// ---- adding and removing channels -----------------------------------------------------

/// A subscription adds and removes channels.
pub async fn a_subscription_adds_and_removes_channels(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let (a, b, c) = (ch("a"), ch("b"), ch("c"));
    let names = |sub: &Subscription| sub.channels().cloned().collect::<Vec<_>>();

    let mut sub = bus.empty_subscription();
    assert!(sub.is_empty());
    assert_eq!(sub.len(), 0);
    assert_pending(&mut sub).await;

    publish(&bus, &a, 2).await;
    sub.add(from_ref(&a), &Start::Now).await.unwrap();
    assert_eq!((sub.len(), names(&sub)), (1, vec![a.clone()]));
    assert_eq!(bus.info(&a).await.unwrap().subscribers, 1);
    assert_pending(&mut sub).await;

    let new_a = publish_messages(&bus, &a, 1).await;
    let old_b = publish_messages(&bus, &b, 1).await;
    let batch = next(&mut sub, 10).await;
    assert_no_gap(&batch);
    assert_eq!(
        keys(&batch.messages),
        keys(&new_a),
        "only subscribed channels"
    );

    // Adding from now skips b's earlier message; a is not added twice and
    // keeps its position, so Last(n) does not replay it.
    sub.add(&[b.clone(), a.clone(), c.clone()], &Start::Now)
        .await
        .unwrap();
    sub.add(from_ref(&a), &Start::Last(100)).await.unwrap();
    assert_eq!(sub.len(), 3);
    assert_eq!(names(&sub), vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(bus.info(&a).await.unwrap().subscribers, 1);
    assert_pending(&mut sub).await;
    assert_eq!(sub.cursor().position(&b), Some((old_b[0].id, false)));

    let new_b = publish_messages(&bus, &b, 1).await;
    expect_next(&mut sub, 10, &new_b).await;

    assert_eq!(sub.remove(&[a.clone(), ch("never")]), vec![a.clone()]);
    assert_eq!(sub.remove(from_ref(&a)), Vec::<ChannelName>::new());
    assert_eq!((sub.len(), names(&sub)), (2, vec![b.clone(), c.clone()]));
    assert_eq!(sub.cursor().position(&a), None);
    assert_eq!(bus.info(&a).await.unwrap().subscribers, 0);
    publish(&bus, &a, 1).await;
    assert_pending(&mut sub).await;

    let new_c = publish_messages(&bus, &c, 2).await;
    let batch = next(&mut sub, 10).await;
    assert_eq!(keys(&batch.messages), keys(&new_c));

    assert_eq!(
        sub.remove(&[b.clone(), c.clone()]),
        vec![b.clone(), c.clone()]
    );
    assert!(sub.is_empty());
    assert_eq!(bus.info(&b).await.unwrap().subscribers, 0);
    publish(&bus, &b, 1).await;
    assert_pending(&mut sub).await;
}

// ---- expiry ----

/// A poller learns of a delete as a gap.
pub async fn a_poller_learns_of_a_delete_as_a_gap(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let c = ch("deleted");
    let before = cursor_now(&bus, from_ref(&c)).await;
    publish(&bus, &c, 3).await;
    assert!(bus.delete(&c).await.unwrap());
    let batch = bus
        .read(from_ref(&c), &Start::From(before), 10)
        .await
        .unwrap();
    assert!(batch.messages.is_empty());
    assert_eq!(batch.gaps, std::slice::from_ref(&c));
}

/// One batch shares one publish millisecond; merging channels must still
/// follow publish order.
pub async fn channels_merge_in_publish_order_within_a_millisecond(f: &dyn Factory) {
    let bus = f.bus(Config::default()).await;
    let (a, b) = (ch("a"), ch("b"));
    let both = [a.clone(), b.clone()];
    let start = cursor_now(&bus, &both).await;
    let draft = |c: &ChannelName, d: &str| Draft {
        channel: c.clone(),
        event: None,
        payload: Payload::text(d.to_string()).unwrap(),
    };
    bus.publish(vec![
        draft(&b, "b1"),
        draft(&a, "a1"),
        draft(&b, "b2"),
        draft(&a, "a2"),
    ])
    .await
    .unwrap();
    let batch = read(&bus, &both, Start::From(start)).await;
    let data: Vec<&str> = batch.messages.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(data, ["b1", "a1", "b2", "a2"]);
}

// ---- expiry ------------------------------------------------------------------

/// The history age of the expiry tests: long enough that no store's own
/// timers act during a test; the manual clock crosses it instead.
const AGE: Duration = Duration::from_secs(60);

/// A configuration aging messages by `clock`.
fn aging(clock: &ManualClock) -> Config {
    Config {
        max_age: AGE,
        clock: Clock::Manual(clock.clone()),
        ..Config::default()
    }
}

/// History older than the age bound is dropped whether or not the channel
/// is watched, and an expired channel still knows its last id.
pub async fn expired_history_is_dropped_and_the_channel_keeps_its_last_id(f: &dyn Factory) {
    let clock = ManualClock::new();
    let bus = f.bus(aging(&clock)).await;
    let (kept, dead) = (ch("kept"), ch("dead"));
    let on_dead = publish_messages(&bus, &dead, 3).await;
    publish(&bus, &kept, 1).await;
    let sub = bus.subscribe(from_ref(&kept), &Start::Now).await.unwrap();

    clock.advance(AGE);
    assert_eq!(bus.info(&dead).await.unwrap().retained, 3, "not older yet");
    clock.advance(Duration::from_millis(1));
    f.sweep().await;
    let info = bus.info(&kept).await.unwrap();
    assert_eq!((info.retained, info.subscribers), (0, 1));
    let info = bus.info(&dead).await.unwrap();
    assert_eq!(
        (info.retained, info.bytes, info.subscribers, info.first_id),
        (0, 0, 0, None)
    );
    assert_eq!(info.last_id, Some(on_dead[2].id), "the last id is kept");
    assert!(
        read(&bus, from_ref(&dead), Start::Last(10))
            .await
            .is_empty()
    );
    drop(sub);
    f.sweep().await;
    assert_eq!(bus.info(&kept).await.unwrap().subscribers, 0);
}

/// A client that saw nothing of a channel's first run (position before its
/// first message) and comes back after that run expired must still be told
/// it missed messages, also once the channel lives again; a client that saw
/// everything is not.
pub async fn an_expired_channel_still_reports_what_a_returning_client_missed(f: &dyn Factory) {
    let clock = ManualClock::new();
    let bus = f.bus(aging(&clock)).await;
    let c = ch("quiet");
    let before = cursor_now(&bus, from_ref(&c)).await;
    let seen = publish(&bus, &c, 2).await;
    let mid = bus.cursor_after(&seen[0].message);
    clock.advance(AGE + Duration::from_millis(1));
    f.sweep().await;

    // While the channel has no history: both cursors missed something.
    for cursor in [&before, &mid] {
        let batch = bus
            .read(from_ref(&c), &Start::From(cursor.clone()), 10)
            .await
            .unwrap();
        assert!(batch.messages.is_empty());
        assert_eq!(batch.gaps, from_ref(&c));
    }
    // A cursor that saw everything missed nothing.
    let last = bus.cursor_after(&seen[1].message);
    let batch = bus
        .read(from_ref(&c), &Start::From(last.clone()), 10)
        .await
        .unwrap();
    assert!(batch.gaps.is_empty());

    // The channel comes back: ids continue, and only the clients that
    // missed messages are told so.
    let again = publish(&bus, &c, 1).await;
    assert_eq!(again[0].message.id, seen[1].message.id + 1);
    let batch = bus
        .read(from_ref(&c), &Start::From(before), 10)
        .await
        .unwrap();
    assert_eq!(batch.gaps, from_ref(&c));
    assert_eq!(ids(&batch.messages), [again[0].message.id]);
    let batch = bus
        .read(from_ref(&c), &Start::From(last), 10)
        .await
        .unwrap();
    assert!(batch.gaps.is_empty());
    assert_eq!(ids(&batch.messages), [again[0].message.id]);
}

// ---- an epoch that changes under a read -------------------------------------

/// A store that is replaced while a read is under way: it answers `old`'s
/// epoch until a read finds it armed, and from that read on (that read
/// included) everything is `new`'s. This is what a remote engine sees when
/// its store loses its data between the reader's epoch check and its read.
struct Replaced {
    old: Arc<dyn Engine>,
    new: Arc<dyn Engine>,
    armed: std::sync::atomic::AtomicBool,
    replaced: std::sync::atomic::AtomicBool,
}

impl Replaced {
    /// Two fresh stores of `f`, not yet armed.
    async fn over(f: &dyn Factory) -> Arc<Self> {
        use std::sync::atomic::AtomicBool;
        Arc::new(Replaced {
            old: f.engine(Config::default()).await,
            new: f.engine(Config::default()).await,
            armed: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
        })
    }

    fn store(&self) -> &Arc<dyn Engine> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.replaced.load(SeqCst) {
            &self.new
        } else {
            &self.old
        }
    }
}

impl Engine for Replaced {
    fn epoch(&self) -> u64 {
        self.store().epoch()
    }

    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>> {
        self.store().publish(drafts)
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::Page, Error>> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.armed.load(SeqCst) {
            self.replaced.store(true, SeqCst);
        }
        self.store().read(channel, after, limit)
    }

    fn watch(&self, channel: &ChannelName) -> crate::Watch {
        self.store().watch(channel)
    }

    fn info<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<crate::ChannelInfo, Error>> {
        self.store().info(channel)
    }

    fn delete<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>> {
        self.store().delete(channel)
    }

    fn health(&self) -> crate::Health {
        self.store().health()
    }
}

/// The epoch changes between a read's epoch check and its engine read: the
/// new store's messages are delivered once, with one gap, not once against
/// the old positions and again with a gap at the next read.
pub async fn an_epoch_change_during_a_read_delivers_the_new_messages_once_with_one_gap(
    f: &dyn Factory,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let engine = Replaced::over(f).await;
    let bus = Bus::from_shared(engine.clone());
    let c = ch("c");
    let mut sub = bus.subscribe(from_ref(&c), &Start::Now).await.unwrap();
    let old = publish_messages(&bus, &c, 2).await;
    assert_eq!(keys(&next(&mut sub, 100).await.messages), keys(&old));

    // The replacing store already holds messages (published through other
    // instances) by the time the reader meets it.
    let drafts = (0..3).map(|i| draft(&c, &format!("new#{i}"))).collect();
    let new = engine.new.publish(drafts).await.unwrap();
    assert_ne!(engine.new.epoch(), engine.old.epoch());
    engine.armed.store(true, SeqCst);

    let batch = next(&mut sub, 100).await;
    assert_eq!(keys(&batch.messages), keys(&new));
    assert_eq!(batch.gaps, from_ref(&c), "the lost history is one gap");
    assert_eq!(batch.cursor.epoch(), engine.new.epoch());
    let again = sub.poll(100).await.unwrap();
    assert!(again.is_empty(), "nothing twice, no second gap: {again:?}");

    let later = publish_messages(&bus, &c, 1).await;
    expect_next(&mut sub, 100, &later).await;
}

/// A short poll that meets a new epoch mid-read never answers the new
/// epoch's messages against the old cursor: its cursor makes the next poll
/// report the gap and deliver them, once.
pub async fn a_poll_that_meets_a_new_epoch_answers_it_once_with_a_gap(f: &dyn Factory) {
    use std::sync::atomic::Ordering::SeqCst;
    let engine = Replaced::over(f).await;
    let bus = Bus::from_shared(engine.clone());
    let c = ch("c");
    publish_messages(&bus, &c, 2).await;
    let at = read(&bus, from_ref(&c), Start::Last(10)).await.cursor;
    let drafts = (0..3).map(|i| draft(&c, &format!("new#{i}"))).collect();
    let new = engine.new.publish(drafts).await.unwrap();
    engine.armed.store(true, SeqCst);

    let first = read(&bus, from_ref(&c), Start::From(at)).await;
    assert_eq!(keys(&first.messages), keys(&new));
    assert_eq!(first.gaps, from_ref(&c));
    let second = read(&bus, from_ref(&c), Start::From(first.cursor)).await;
    assert!(
        second.is_empty(),
        "nothing twice, no second gap: {second:?}"
    );
}

// ---- several channels in one read -------------------------------------------

/// [`Engine::read_many`] answers, for each channel, what [`Engine::read`]
/// answers: same messages, same history bounds, in the order asked, for
/// channels with history, with none and never published.
pub async fn reading_several_channels_at_once_agrees_with_reading_each(f: &dyn Factory) {
    let engine = f.engine(config(5)).await;
    let bus = Bus::from_shared(engine.clone());
    let (a, b, never) = (ch("many-a"), ch("many-b"), ch("many-never"));
    publish(&bus, &a, 8).await;
    publish(&bus, &b, 2).await;
    let last_a = engine.read(&a, 0, 0).await.unwrap().last;
    for limit in [0, 1, 3, 10] {
        let wanted = vec![
            (a.clone(), 0),
            (never.clone(), 0),
            (b.clone(), 1),
            (a.clone(), last_a - 2),
        ];
        let pages = engine.read_many(&wanted, limit).await.unwrap();
        assert_eq!(pages.len(), wanted.len());
        for ((channel, after), many) in wanted.iter().zip(&pages) {
            let one = engine.read(channel, *after, limit).await.unwrap();
            assert_eq!(
                (ids(&many.messages), many.origin, many.oldest, many.last),
                (ids(&one.messages), one.origin, one.oldest, one.last),
                "{channel} after {after}, limit {limit}"
            );
            assert!(many.messages.iter().all(|m| &m.channel == channel));
        }
    }
    assert!(engine.read_many(&[], 10).await.unwrap().is_empty());
}

/// Counts the engine calls a subscription makes.
struct Counting {
    inner: Arc<dyn Engine>,
    reads: std::sync::atomic::AtomicUsize,
    read_manys: std::sync::atomic::AtomicUsize,
}

impl Engine for Counting {
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    fn publish(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Message>>, Error>> {
        self.inner.publish(drafts)
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<crate::Page, Error>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read(channel, after, limit)
    }

    fn read_many<'a>(
        &'a self,
        reads: &'a [(ChannelName, u64)],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<crate::Page>, Error>> {
        self.read_manys
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_many(reads, limit)
    }

    fn watch(&self, channel: &ChannelName) -> crate::Watch {
        self.inner.watch(channel)
    }

    fn info<'a>(
        &'a self,
        channel: &'a ChannelName,
    ) -> BoxFuture<'a, Result<crate::ChannelInfo, Error>> {
        self.inner.info(channel)
    }

    fn delete<'a>(&'a self, channel: &'a ChannelName) -> BoxFuture<'a, Result<bool, Error>> {
        self.inner.delete(channel)
    }

    fn health(&self) -> crate::Health {
        self.inner.health()
    }
}

/// Subscribing to several channels, and each read of them, is one engine
/// call, not one per channel: the engine decides how few round trips that
/// takes.
pub async fn a_subscription_reads_all_its_channels_in_one_engine_call(f: &dyn Factory) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let engine = Arc::new(Counting {
        inner: f.engine(config(10)).await,
        reads: AtomicUsize::new(0),
        read_manys: AtomicUsize::new(0),
    });
    let bus = Bus::from_shared(engine.clone());
    let channels: Vec<ChannelName> = (0..8).map(|i| ch(&format!("one-call-{i}"))).collect();
    for c in &channels {
        publish(&bus, c, 3).await;
    }
    let mut sub = bus.subscribe(&channels, &Start::Last(2)).await.unwrap();
    assert_eq!(
        (engine.reads.load(SeqCst), engine.read_manys.load(SeqCst)),
        (0, 1),
        "one call resolves every channel's start"
    );
    let batch = next(&mut sub, 100).await;
    assert_eq!(batch.messages.len(), 16);
    assert_no_gap(&batch);
    assert_eq!(
        (engine.reads.load(SeqCst), engine.read_manys.load(SeqCst)),
        (0, 2),
        "one call reads every channel"
    );
}
