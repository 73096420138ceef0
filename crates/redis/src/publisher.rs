//! Publishes that arrive together share one script call.
//!
//! Every publish on an instance is queued to one task, which sends one
//! publish script at a time: when a call comes back, everything queued while
//! it was in flight goes out in the next call, in queue order. An idle
//! instance therefore sends a lone publish at once (no waiting for company),
//! and a busy one sends fewer, larger calls: Redis parses one command, runs
//! one script and reads the epoch, the clock and the counters once for all
//! of them, and the instance writes and reads one command instead of many.
//! Each publish still gets its own answer (its messages, with their ids) or
//! its own copy of the error.
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

use std::sync::Arc;

use herald_bus::{Draft, Error as BusError, Message};
use tokio::sync::{mpsc, oneshot};

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

/// The queue's sending side, held by the engine.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Job>,
}

impl Queue {
    /// A queue and its receiving end, for [`run`].
    pub(crate) fn new() -> (Queue, Jobs) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue { tx }, Jobs { rx })
    }

    /// Queues `drafts` and waits for the call that carries them. Fails as
    /// the call does, or when the engine stopped.
    pub(crate) async fn publish(&self, drafts: Vec<Draft>) -> Answer {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let stopped = || BusError::Unavailable("redis: the engine stopped".into());
        let (answer, rx) = oneshot::channel();
        self.tx
            .send(Job { drafts, answer })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The queue's receiving side, owned by the publishing task.
pub(crate) struct Jobs {
    rx: mpsc::UnboundedReceiver<Job>,
}

impl Jobs {
    /// The next call's publishes: waits for one, then takes what else is
    /// queued now, within the bounds. `None` once the engine is gone.
    async fn next(&mut self) -> Option<Vec<Job>> {
        let first = self.rx.recv().await?;
        let (mut drafts, mut bytes) = (first.drafts.len(), data_bytes(&first.drafts));
        let mut jobs = vec![first];
        while drafts < MAX_DRAFTS && bytes < MAX_BYTES {
            let Ok(job) = self.rx.try_recv() else { break };
            drafts += job.drafts.len();
            bytes += data_bytes(&job.drafts);
            jobs.push(job);
        }
        Some(jobs)
    }
}

/// Sends the queued publishes, one call at a time, until the engine is
/// dropped (the task is aborted then, or the queue closes).
pub(crate) async fn run(shared: Arc<Shared>, mut jobs: Jobs) {
    while let Some(batch) = jobs.next().await {
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
    async fn calls(sizes: &[(usize, usize)]) -> Vec<usize> {
        let (queue, mut jobs) = Queue::new();
        for &(n, size) in sizes {
            let (answer, _) = oneshot::channel();
            queue
                .tx
                .send(Job {
                    drafts: drafts(n, size),
                    answer,
                })
                .unwrap();
        }
        drop(queue);
        let mut out = Vec::new();
        while let Some(batch) = jobs.next().await {
            out.push(batch.iter().map(|j| j.drafts.len()).sum());
        }
        out
    }

    #[tokio::test]
    async fn a_call_takes_queued_publishes_up_to_the_draft_bound() {
        assert_eq!(calls(&[(1, 10); 2500]).await, [1000, 1000, 500]);
        assert_eq!(
            calls(&[(3, 10); 500]).await,
            [1002, 498],
            "never splits one"
        );
    }

    #[tokio::test]
    async fn a_call_takes_queued_publishes_up_to_the_byte_bound() {
        // 10 × 100 KiB stay under 1 MiB; the 11th crosses it.
        assert_eq!(calls(&[(1, 100 * 1024); 20]).await, [11, 9]);
    }

    #[tokio::test]
    async fn a_publish_over_the_bounds_still_goes_in_one_call() {
        assert_eq!(calls(&[(1500, 10), (1, 10)]).await, [1500, 1]);
        assert_eq!(calls(&[(1, 2 * MAX_BYTES), (1, 10)]).await, [1, 1]);
        assert_eq!(
            calls(&[(1, 10), (1500, 10), (1, 10)]).await,
            [1501, 1],
            "the publish that crosses a bound goes whole"
        );
    }
}
