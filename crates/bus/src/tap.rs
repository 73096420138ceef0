//! Delivery in one pass: the publishing task writes a new message straight
//! to the sockets of the subscribers that are waiting for exactly it.
//!
//! Why: at light load the cost of a delivery is dominated by what happens
//! around the write. Waking one task per subscriber, each of which then
//! locks the history, reads it, builds a batch and writes, costs about as
//! much again as the write itself. A subscriber that has written
//! everything before and waits on one channel needs none of that: the next
//! message is the one it will send, already encoded and shared.
//!
//! How: such a subscription hands the engine a [`Tap`] (its position and
//! its transport's [`Outlet`]) once it is caught up. The engine keeps the
//! taps of each channel in [`Taps`] and, after storing a message and
//! releasing its locks, offers it to each tap in turn. A tap takes the
//! message only if its id is the very next one and the outlet can write
//! all of it now, without waiting; otherwise (the socket would block, the
//! transport is busy writing something of its own, an id was skipped) the
//! tap lets go of the channel and wakes its subscription's task, which
//! reads the history from the tap's position as it always did. The task
//! path stays the one that handles gaps, slow readers, deleted channels and
//! everything else; the tap is only ever a shortcut past it, so order, no
//! duplicates and the gap signal hold as before.
//!
//! Left out: subscriptions on several channels (their order across
//! channels is the task path's merge) and engines that do not offer taps
//! (their subscriptions keep waiting on watches; see
//! [`Engine::attach`](crate::Engine::attach)).

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::Message;

/// What an [`Outlet`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// All of it was written.
    All,
    /// Part of it was written; the outlet keeps the rest, and the
    /// subscriber's task must write it before anything else.
    Part,
    /// Nothing was written (the socket would block, or is in use).
    Nothing,
}

/// A subscriber's socket, as the publishing task sees it. Implemented by
/// transports.
pub trait Outlet: Send + Sync + 'static {
    /// Writes `message` in the transport's framing if that can be done now,
    /// without waiting. Called from the publishing side, at most once at a
    /// time per outlet, in id order.
    fn send(&self, message: &Arc<Message>) -> Sent;

    /// Writes a run of consecutive messages, as many as can be written now,
    /// and answers how many were taken (written, or begun with the rest
    /// kept) and how the last one taken went: [`Sent::All`] when all of
    /// them went whole. An outlet that can write several frames in one
    /// system call should; the default sends them one by one.
    fn send_many(&self, messages: &[Arc<Message>]) -> (usize, Sent) {
        one_by_one(self, messages)
    }
}

/// [`Outlet::send_many`] made of [`Outlet::send`]s: until one is not
/// taken whole.
fn one_by_one<O: Outlet + ?Sized>(outlet: &O, messages: &[Arc<Message>]) -> (usize, Sent) {
    for (i, m) in messages.iter().enumerate() {
        match outlet.send(m) {
            Sent::All => {}
            Sent::Part => return (i + 1, Sent::Part),
            Sent::Nothing => return (i, Sent::Nothing),
        }
    }
    (messages.len(), Sent::All)
}

/// What an outlet writes at once: the encodings of the first messages of a
/// run, as many as fit in 64 KiB together (the first always). A single
/// message's bytes are its shared encoding, with nothing allocated (the
/// common case at light load, once per subscriber); several are copied
/// together.
pub struct Run {
    /// The bytes to write.
    pub bytes: Bytes,
    /// How many messages went in.
    pub count: usize,
}

impl Run {
    /// The most bytes of a run that an outlet writes at once.
    pub const LIMIT: usize = 64 * 1024;

    /// The run of `messages` in the encoding `encode` gives.
    pub fn of(messages: &[Arc<Message>], encode: impl Fn(&Message) -> Bytes) -> Run {
        let mut messages = messages.iter();
        let Some(first) = messages.next() else {
            return Run {
                bytes: Bytes::new(),
                count: 0,
            };
        };
        let first = encode(first);
        let mut all: Option<BytesMut> = None;
        let mut count = 1;
        for m in messages {
            let part = encode(m);
            let size = all.as_ref().map_or(first.len(), BytesMut::len);
            if size + part.len() > Run::LIMIT {
                break;
            }
            let all = all.get_or_insert_with(|| {
                let mut all = BytesMut::with_capacity(((size + part.len()) * 2).min(Run::LIMIT));
                all.extend_from_slice(&first);
                all
            });
            all.extend_from_slice(&part);
            count += 1;
        }
        let bytes = all.map_or(first, BytesMut::freeze);
        Run { bytes, count }
    }
}

/// One subscription's attachment to one channel: where it stands, and the
/// outlet that takes the channel's next messages while it is attached.
pub struct Tap {
    state: Mutex<State>,
    /// Woken when the tap lets go.
    detached: Notify,
}

struct State {
    /// Id of the last message written (by the task before attaching, then
    /// by the publishing task).
    pos: u64,
    /// `None` once the tap has let go; then it takes nothing more.
    outlet: Option<Arc<dyn Outlet>>,
}

impl Tap {
    pub(crate) fn new(pos: u64, outlet: Arc<dyn Outlet>) -> Arc<Tap> {
        Arc::new(Tap {
            state: Mutex::new(State {
                pos,
                outlet: Some(outlet),
            }),
            detached: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers `messages` (one channel's, in id order); answers whether the
    /// tap is still attached.
    fn offer(&self, messages: &[Arc<Message>]) -> bool {
        let mut state = self.lock();
        let State { pos, outlet } = &mut *state;
        let Some(out) = outlet.as_deref() else {
            return false;
        };
        // Skip what the task wrote before it attached.
        let fresh = messages.partition_point(|m| m.id <= *pos);
        let mut rest = &messages[fresh..];
        while !rest.is_empty() {
            // Only the run that continues from the position: after a
            // skipped id, the task must read.
            let run = rest
                .iter()
                .enumerate()
                .take_while(|(i, m)| m.id == *pos + 1 + *i as u64)
                .count();
            let (taken, sent) = match run {
                0 => (0, Sent::Nothing),
                _ => out.send_many(&rest[..run]),
            };
            *pos += taken as u64;
            rest = &rest[taken..];
            if sent != Sent::All || taken == 0 {
                *outlet = None;
                drop(state);
                self.detached.notify_one();
                return false;
            }
        }
        true
    }

    /// Lets go of the channel (the subscription's own decision) and answers
    /// the position reached.
    pub(crate) fn detach(&self) -> u64 {
        let mut state = self.lock();
        state.outlet = None;
        state.pos
    }

    /// The position reached so far.
    pub(crate) fn pos(&self) -> u64 {
        self.lock().pos
    }

    /// Waits until the tap has let go, then answers the position reached.
    /// Cancel-safe: a wake-up that came while nobody waited is kept.
    pub(crate) async fn until_detached(&self) -> u64 {
        loop {
            let notified = self.detached.notified();
            {
                let state = self.lock();
                if state.outlet.is_none() {
                    return state.pos;
                }
            }
            notified.await;
        }
    }
}

/// The taps of one channel, for an engine to keep beside the channel's
/// history (in an `Arc`: a pass runs on a task of its own).
///
/// A pass is not made by the publishing request itself: new messages wait
/// in `pending` and one task per channel writes them, after the requests
/// already ready to run have had their turn. At light load that is at once
/// and one message a pass; when publishes come faster than a pass takes,
/// the messages that arrived meanwhile go out together, in one write per
/// subscriber, so that the channel keeps up instead of falling behind one
/// pass per message.
#[derive(Default)]
pub struct Taps {
    /// The taps offered to, held by the pass for its whole length.
    list: Mutex<Vec<Arc<Tap>>>,
    /// Taps attached since the last pass: kept apart so that attaching
    /// never waits for a pass to end.
    incoming: Mutex<Vec<Arc<Tap>>>,
    /// Messages stored and not yet offered, in id order.
    pending: Mutex<Vec<Arc<Message>>>,
    /// A pass is scheduled or under way.
    scheduled: AtomicBool,
}

impl Taps {
    /// Adds a tap. The engine must call this under the same lock that
    /// orders its publishes, having checked that the channel's newest id is
    /// the tap's position; a message stored after that is then offered to
    /// the tap, and one stored before is skipped by it.
    pub fn attach(&self, tap: Arc<Tap>) {
        lock(&self.incoming).push(tap);
    }

    /// Hands one channel's new messages (in id order, after those handed
    /// before) to the taps: a pass on a task of its own offers them, with
    /// whatever else arrives before it runs. Without a tokio runtime the
    /// pass is made here. Call it once the engine's own locks are released.
    pub fn offer(self: &Arc<Self>, messages: &[Arc<Message>]) {
        lock(&self.pending).extend_from_slice(messages);
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.clone().passes());
            }
            // No runtime to yield to: passes here, without pauses, until
            // nothing is pending (a message handed over meanwhile by
            // another thread saw the pass scheduled and left it here).
            Err(_) => loop {
                let batch = self.take();
                if !batch.is_empty() {
                    self.offer_range(&batch, 0, usize::MAX);
                    continue;
                }
                self.scheduled.store(false, Ordering::Release);
                if lock(&self.pending).is_empty() || self.scheduled.swap(true, Ordering::AcqRel) {
                    return;
                }
            },
        }
    }

    /// Passes until nothing is pending. Each pass offers its batch to
    /// [`CHUNK`] taps at a time and lets the rest of the runtime run in
    /// between (reading publishes among them): what arrives meanwhile
    /// joins the batch for the taps not yet offered to, and the next pass
    /// brings it to the others.
    async fn passes(self: Arc<Self>) {
        let mut carry: Vec<Arc<Message>> = Vec::new();
        loop {
            // Behind the requests that are ready now: their messages join.
            tokio::task::yield_now().await;
            let mut batch = std::mem::take(&mut carry);
            batch.extend(self.take());
            if batch.is_empty() {
                self.scheduled.store(false, Ordering::Release);
                // A message that came after the take and saw the pass still
                // scheduled is this task's to offer.
                if lock(&self.pending).is_empty() || self.scheduled.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let mut at = 0;
            while let Some(next) = self.offer_range(&batch, at, CHUNK) {
                at = next;
                tokio::task::yield_now().await;
                let more = self.take();
                if !more.is_empty() {
                    carry.extend_from_slice(&more);
                    batch.extend(more);
                }
            }
        }
    }

    /// The pending messages, in id order (publishes on several threads may
    /// hand theirs over in another order than they were stored).
    fn take(&self) -> Vec<Arc<Message>> {
        let mut batch = std::mem::take(&mut *lock(&self.pending));
        batch.sort_unstable_by_key(|m| m.id);
        batch
    }

    /// Offers `batch` to up to `count` taps from index `at`, dropping those
    /// that let go; answers where to go on, if any tap is left.
    fn offer_range(&self, batch: &[Arc<Message>], at: usize, count: usize) -> Option<usize> {
        let mut list = lock(&self.list);
        list.append(&mut lock(&self.incoming));
        let mut i = at;
        let end = at.saturating_add(count);
        while i < list.len() && i < end {
            if list[i].offer(batch) {
                i += 1;
            } else {
                // Order among taps does not matter.
                list.swap_remove(i);
            }
        }
        (i < list.len()).then_some(i)
    }

    /// Lets every tap go (the channel was deleted): each subscription's
    /// task takes over and finds out.
    pub fn release(&self) {
        let mut list = lock(&self.list);
        list.append(&mut lock(&self.incoming));
        for tap in list.drain(..) {
            tap.lock().outlet = None;
            tap.detached.notify_one();
        }
    }

    /// Drops the taps whose subscriptions let go; answers whether any may
    /// be left (without waiting: during a pass, yes).
    pub fn prune(&self) -> bool {
        let Ok(mut list) = self.list.try_lock() else {
            return true;
        };
        list.append(&mut lock(&self.incoming));
        list.retain(|tap| tap.lock().outlet.is_some());
        !list.is_empty()
    }
}

/// Taps offered to between two pauses of a pass.
const CHUNK: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use futures::FutureExt;

    use super::*;
    use crate::{Bus, ChannelName, Config, Draft, Payload, Start};

    /// An outlet that answers what it is told to and records what it took.
    #[derive(Default)]
    struct Recorder {
        answer: Mutex<Vec<Sent>>,
        taken: Mutex<Vec<u64>>,
        /// The length of each run offered at once.
        runs: Mutex<Vec<usize>>,
    }

    impl Recorder {
        fn answer(&self, sent: Sent) {
            self.answer.lock().unwrap().push(sent);
        }
        fn taken(&self) -> Vec<u64> {
            self.taken.lock().unwrap().clone()
        }
    }

    impl Outlet for Recorder {
        fn send_many(&self, messages: &[Arc<Message>]) -> (usize, Sent) {
            self.runs.lock().unwrap().push(messages.len());
            one_by_one(self, messages)
        }

        fn send(&self, m: &Arc<Message>) -> Sent {
            let sent = self.answer.lock().unwrap().pop().unwrap_or(Sent::All);
            if sent != Sent::Nothing {
                self.taken.lock().unwrap().push(m.id);
            }
            sent
        }
    }

    fn c() -> ChannelName {
        ChannelName::new("c").unwrap()
    }

    async fn publish(bus: &Bus, n: usize) -> Vec<u64> {
        let drafts = (0..n)
            .map(|i| Draft {
                channel: c(),
                event: None,
                payload: Payload::text(i.to_string()).unwrap(),
            })
            .collect();
        let published = bus.publish(drafts).await.unwrap();
        settle().await;
        published.iter().map(|p| p.message.id).collect()
    }

    /// A subscription on a channel that has ids (a fresh channel's first id
    /// is the engine's, so it is never tapped), caught up and waiting with
    /// its tap attached.
    async fn tapped() -> (Bus, Arc<Recorder>, crate::Subscription) {
        let bus = Bus::memory(Config::default());
        publish(&bus, 1).await;
        let outlet = Arc::new(Recorder::default());
        let mut sub = bus.subscribe(&[c()], &Start::Now).await.unwrap();
        sub.deliver_through(outlet.clone());
        assert!(sub.next(10).now_or_never().is_none());
        (bus, outlet, sub)
    }

    /// A message of `size` payload bytes, with id `id`.
    fn sized(id: u64, size: usize) -> Arc<Message> {
        let draft = Draft {
            channel: c(),
            event: None,
            payload: Payload::text("x".repeat(size)).unwrap(),
        };
        Arc::new(Message::new(draft, id, 0, 1))
    }

    /// The payload, as an encoding that shares its bytes.
    fn payload(m: &Message) -> Bytes {
        Bytes::copy_from_slice(m.payload.as_str().as_bytes())
    }

    #[test]
    fn a_run_of_one_message_is_its_own_bytes_and_several_fill_at_most_the_limit() {
        assert_eq!(Run::of(&[], payload).count, 0);
        // One message: its encoding itself, not a copy.
        let one = sized(1, 10);
        let shared = Bytes::from_static(b"shared");
        let run = Run::of(std::slice::from_ref(&one), |_| shared.clone());
        assert_eq!((run.count, run.bytes.as_ptr()), (1, shared.as_ptr()));
        // Four quarters fill the limit exactly; a fifth waits for the next.
        let quarter = Run::LIMIT / 4;
        let five: Vec<_> = (1..=5).map(|id| sized(id, quarter)).collect();
        let run = Run::of(&five, payload);
        assert_eq!((run.count, run.bytes.len()), (4, Run::LIMIT));
        // A first message over the limit still goes, alone.
        let big = [sized(1, Run::LIMIT + 1), sized(2, 1)];
        let run = Run::of(&big, payload);
        assert_eq!((run.count, run.bytes.len()), (1, Run::LIMIT + 1));
    }

    /// Lets the channel's pass (a task of its own) run.
    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_caught_up_subscriber_is_written_to_by_the_publisher() {
        let bus = Bus::memory(Config::default());
        // A channel that has ids (a fresh one's first id is the engine's).
        publish(&bus, 1).await;
        let outlet = Arc::new(Recorder::default());
        let mut sub = bus.subscribe(&[c()], &Start::Now).await.unwrap();
        sub.deliver_through(outlet.clone());
        // Nothing to read: the subscription attaches and waits.
        assert!(sub.next(10).now_or_never().is_none());
        let ids = publish(&bus, 3).await;
        assert_eq!(outlet.taken(), ids, "written in one pass, in order");
        assert!(
            sub.next(10).now_or_never().is_none(),
            "nothing for the task"
        );
        assert_eq!(
            sub.cursor().position(&c()).map(|p| p.0),
            Some(ids[2]),
            "the cursor follows the tap"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_outlet_cannot_take_is_read_by_the_task_once() {
        let (bus, outlet, mut sub) = tapped().await;
        // The second message would block: the tap lets go before it.
        outlet.answer(Sent::Nothing);
        outlet.answer(Sent::All);
        let ids = publish(&bus, 3).await;
        assert_eq!(outlet.taken(), ids[..1]);
        let batch = sub.next(10).await;
        assert_eq!(ids_of(&batch), ids[1..], "no loss, no duplicate");
        // Caught up again: the next publish goes through the outlet.
        assert!(sub.next(10).now_or_never().is_none());
        let more = publish(&bus, 1).await;
        assert_eq!(outlet.taken(), [&ids[..1], &more[..]].concat());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_begun_by_the_outlet_is_not_read_again() {
        let (bus, outlet, mut sub) = tapped().await;
        outlet.answer(Sent::Part);
        let ids = publish(&bus, 2).await;
        assert_eq!(outlet.taken(), ids[..1], "the first was begun");
        // The task is handed the rest: the second message, not the first.
        let batch = sub.next(10).await;
        assert_eq!(ids_of(&batch), ids[1..]);
    }

    fn ids_of(batch: &crate::Batch) -> Vec<u64> {
        batch.messages.iter().map(|m| m.id).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_channel_wakes_the_task_which_reports_it() {
        let (bus, _, mut sub) = tapped().await;
        bus.delete(&c()).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(1), sub.next(10))
            .await
            .expect("woken");
        assert_eq!(batch.gone, [c()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_without_ids_is_read_by_the_task() {
        let bus = Bus::memory(Config::default());
        let outlet = Arc::new(Recorder::default());
        let mut sub = bus.subscribe(&[c()], &Start::Now).await.unwrap();
        sub.deliver_through(outlet.clone());
        assert!(sub.next(10).now_or_never().is_none());
        let first = publish(&bus, 1).await;
        assert_eq!(ids_of(&sub.next(10).await), first);
        assert!(sub.next(10).now_or_never().is_none());
        let second = publish(&bus, 1).await;
        assert_eq!(outlet.taken(), second, "attached once it had an id");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_behind_is_not_attached_until_it_has_read() {
        let bus = Bus::memory(Config::default());
        let ids = publish(&bus, 2).await;
        let outlet = Arc::new(Recorder::default());
        let mut sub = bus.subscribe(&[c()], &Start::Last(2)).await.unwrap();
        sub.deliver_through(outlet.clone());
        assert_eq!(ids_of(&sub.next(10).await), ids);
        assert!(outlet.taken().is_empty());
        assert!(sub.next(10).now_or_never().is_none());
        let more = publish(&bus, 1).await;
        assert_eq!(outlet.taken(), more);
    }

    #[tokio::test(start_paused = true)]
    async fn detaching_stops_the_outlet_and_the_task_reads_instead() {
        let (bus, outlet, mut sub) = tapped().await;
        sub.detach();
        let ids = publish(&bus, 1).await;
        assert!(outlet.taken().is_empty());
        assert_eq!(ids_of(&sub.next(10).await), ids);
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_that_come_before_the_pass_go_out_together() {
        // The subscription stays attached for as long as it lives.
        let (bus, outlet, _sub) = tapped().await;
        // Three publishes before the pass runs: one run of three.
        let mut ids = Vec::new();
        for i in 0..3 {
            let draft = Draft {
                channel: c(),
                event: None,
                payload: Payload::text(i.to_string()).unwrap(),
            };
            ids.push(bus.publish(vec![draft]).await.unwrap()[0].message.id);
        }
        assert!(outlet.taken().is_empty(), "the pass has not run yet");
        settle().await;
        assert_eq!(outlet.taken(), ids);
        assert_eq!(*outlet.runs.lock().unwrap(), [3]);
    }

    #[test]
    fn a_skipped_id_lets_go_without_writing() {
        let outlet = Arc::new(Recorder::default());
        let tap = Tap::new(5, outlet.clone());
        let m = |id| {
            let draft = Draft {
                channel: c(),
                event: None,
                payload: Payload::text("x").unwrap(),
            };
            Arc::new(Message::new(draft, id, 0, 1))
        };
        assert!(tap.offer(&[m(5), m(6)]), "5 was written before, 6 is next");
        assert!(!tap.offer(&[m(8)]), "7 is missing: the task must read it");
        assert_eq!(outlet.taken(), [6]);
        assert_eq!(tap.pos(), 6);
    }
}
