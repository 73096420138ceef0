//! Publishes that arrive together share one script call.
//!
//! An instance has at most one publish script call in flight. A publish
//! that finds none sends its call at once from its own task, so a lone
//! publish costs what it would without any queue: one round trip, and no
//! hand-off to another task (which, on a core busy with subscribers, waits
//! its turn behind all of them). Publishes that arrive while a call is in
//! flight are queued; when the call ends, a task sends everything queued in
//! one call, in queue order, and so on until the queue is empty. A busy
//! instance therefore sends fewer, larger calls: Redis parses one command,
//! runs one script and reads the epoch, the clock and the counters once for
//! all of them, and the instance writes and reads one command instead of
//! many. Each publish still gets its own answer (its messages, with their
//! ids) or its own copy of the error.
//!
//! Order: the queue is first in, first out and calls never overlap, so
//! drafts to one channel get ids in the order their publishes were queued,
//! as they would one call after another. A publish is never split across
//! calls, so a failed call leaves every publish in it with none or a prefix
//! of its drafts stored, as the [`Engine`](herald_bus::Engine) contract
//! says. A call takes queued publishes while it holds fewer than
//! [`MAX_DRAFTS`] drafts and [`MAX_BYTES`] bytes of data, so that one script
//! never holds Redis (and every other instance) up for long; a single
//! publish over those bounds (a large batch) still goes as one call.
//!
//! What it leaves out: the script itself and what a stored message means
//! locally (the engine's `store`), retries (a failed call fails its
//! publishes at once), and a bound on the queue: each queued publish is an
//! open request, so the server's connection limit bounds it.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use herald_bus::{Draft, Error as BusError, Message};
use tokio::sync::{Notify, oneshot};

use crate::engine::Shared;

/// Most drafts one call takes from the queue.
pub(crate) const MAX_DRAFTS: usize = 1000;
/// Most data bytes (payloads and event names) one call takes from the queue.
pub(crate) const MAX_BYTES: usize = 1024 * 1024;

type Answer = Result<Vec<Arc<Message>>, BusError>;

/// One publish waiting for its call.
struct Job {
    drafts: Vec<Draft>,
    answer: oneshot::Sender<Answer>,
}

/// The queue, shared by the publishing requests and the task.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Wakes the task when a call ends with publishes queued behind it.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// A call is in flight (or about to be sent by the task).
    busy: bool,
    jobs: VecDeque<Job>,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `drafts`: at once, from the caller's own task, when no call is
    /// in flight (a lone publish costs what it did without the queue: no
    /// hand-off to another task, one round trip); otherwise queued for the
    /// next call. Fails as the call does, or when the engine stopped.
    pub(crate) async fn publish(&self, shared: &Shared, drafts: Vec<Draft>) -> Answer {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let queued = {
            let mut state = self.state();
            if state.busy {
                let (answer, rx) = oneshot::channel();
                state.jobs.push_back(Job { drafts, answer });
                Err(rx)
            } else {
                state.busy = true;
                Ok(drafts)
            }
        };
        match queued {
            Ok(drafts) => {
                let _turn = Turn(self);
                shared.store(drafts).await
            }
            Err(rx) => rx
                .await
                .map_err(|_| BusError::Unavailable("redis: the engine stopped".into()))?,
        }
    }

    /// Ends a call: hands the queue to the task if publishes wait, else
    /// frees the connection for the next lone publish.
    fn ended(&self) {
        let mut state = self.state();
        if state.jobs.is_empty() {
            state.busy = false;
        } else {
            self.wake.notify_one();
        }
    }
}

/// A call sent from a publishing request; ends it even if the request is
/// dropped mid-call (a client that went away), so the queue never stalls.
struct Turn<'a>(&'a Queue);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// Takes the next call's publishes from the front of `jobs`: at least one,
/// then more while the call holds fewer than [`MAX_DRAFTS`] drafts and
/// [`MAX_BYTES`] bytes.
fn take(jobs: &mut VecDeque<Job>) -> Vec<Job> {
    let (mut drafts, mut bytes) = (0, 0);
    let mut out = Vec::new();
    while drafts < MAX_DRAFTS && bytes < MAX_BYTES {
        let Some(job) = jobs.pop_front() else { break };
        drafts += job.drafts.len();
        bytes += data_bytes(&job.drafts);
        out.push(job);
    }
    out
}

/// Sends the publishes that queued behind a call, one call at a time, until
/// the queue is empty; then waits to be woken again. Runs until the engine
/// is dropped (the task is aborted then).
pub(crate) async fn run(shared: Arc<Shared>, queue: Arc<Queue>) {
    loop {
        queue.wake.notified().await;
        loop {
            let batch = take(&mut queue.state().jobs);
            if batch.is_empty() {
                queue.ended();
                break;
            }
            send(&shared, batch).await;
        }
    }
}

/// One call for `batch`; each publish gets its own messages or error.
async fn send(shared: &Shared, batch: Vec<Job>) {
    let counts: Vec<usize> = batch.iter().map(|j| j.drafts.len()).collect();
    let mut answers = Vec::with_capacity(batch.len());
    let mut drafts = Vec::with_capacity(counts.iter().sum());
    for job in batch {
        drafts.extend(job.drafts);
        answers.push(job.answer);
    }
    match shared.store(drafts).await {
        Ok(messages) => {
            let mut messages = messages.into_iter();
            for (answer, n) in answers.into_iter().zip(counts) {
                // A publisher that gave up waiting is not an error.
                let _ = answer.send(Ok(messages.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

fn data_bytes(drafts: &[Draft]) -> usize {
    drafts
        .iter()
        .map(|d| d.payload.bytes().len() + d.event.as_ref().map_or(0, |e| e.as_str().len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use herald_bus::{ChannelName, Payload};

    use super::*;

    fn drafts(n: usize, size: usize) -> Vec<Draft> {
        let draft = Draft {
            channel: ChannelName::new("c").unwrap(),
            event: None,
            payload: Payload::text("x".repeat(size)).unwrap(),
        };
        vec![draft; n]
    }

    /// Queues each of `sizes` (drafts, bytes per draft) as one publish and
    /// answers the draft counts of the calls that take them.
    fn calls(sizes: &[(usize, usize)]) -> Vec<usize> {
        let mut jobs: VecDeque<Job> = sizes
            .iter()
            .map(|&(n, size)| Job {
                drafts: drafts(n, size),
                answer: oneshot::channel().0,
            })
            .collect();
        let mut out = Vec::new();
        loop {
            let batch = take(&mut jobs);
            if batch.is_empty() {
                return out;
            }
            out.push(batch.iter().map(|j| j.drafts.len()).sum());
        }
    }

    #[test]
    fn a_call_takes_queued_publishes_up_to_the_draft_bound() {
        assert_eq!(calls(&[(1, 10); 2500]), [1000, 1000, 500]);
        assert_eq!(calls(&[(3, 10); 500]), [1002, 498], "never splits one");
    }

    #[test]
    fn a_call_takes_queued_publishes_up_to_the_byte_bound() {
        // 10 × 100 KiB stay under 1 MiB; the 11th crosses it.
        assert_eq!(calls(&[(1, 100 * 1024); 20]), [11, 9]);
    }

    #[test]
    fn a_publish_over_the_bounds_still_goes_in_one_call() {
        assert_eq!(calls(&[(1500, 10), (1, 10)]), [1500, 1]);
        assert_eq!(calls(&[(1, 2 * MAX_BYTES), (1, 10)]), [1, 1]);
        assert_eq!(
            calls(&[(1, 10), (1500, 10), (1, 10)]),
            [1501, 1],
            "the publish that crosses a bound goes whole"
        );
    }
}
