//! The one Server-Sent Events reader of the tests: an open
//! `text/event-stream` read off the socket block by block, each block
//! parsed into the fields herald writes (`id`, `event`, `data`), comments
//! (heartbeats) skipped. Strict on purpose: an unknown field, a stream cut
//! mid-event or a stall fails the test.
//!
//! What it leaves out: reconnecting (a test reopens with `Last-Event-ID`
//! itself) and CR line ends (herald writes LF only). The independent
//! EventSource client is the npm package driven from tests/js.

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Longest wait for anything the server should send promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

/// One event as it appears on the wire.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field: the cursor after this event.
    pub id: Option<String>,
    /// The `event:` field: absent for messages, `herald.*` for control.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: Option<String>,
}

impl Event {
    /// The data, empty when there was none.
    pub fn data(&self) -> &str {
        self.data.as_deref().unwrap_or_default()
    }

    /// The data parsed as JSON (control events carry JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data()).unwrap()
    }
}

/// The data of each event.
pub fn datas(events: &[Event]) -> Vec<&str> {
    events.iter().map(Event::data).collect()
}

/// An open `text/event-stream`, read block by block.
pub struct Sse {
    /// The response's headers.
    pub res_headers: reqwest::header::HeaderMap,
    /// The HTTP version it was served over.
    pub version: reqwest::Version,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    /// Opens `url` (with `Last-Event-ID` when given); asserts a 200 and
    /// herald's opening block (`: ok` and `retry:`).
    pub async fn open(c: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = c.get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = tokio::time::timeout(PROMPT, req.send())
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(res.status(), 200, "{url}");
        let res_headers = res.headers().clone();
        let version = res.version();
        let mut sse = Sse {
            res_headers,
            version,
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        };
        let first = sse.block().await.expect("opening block");
        assert!(first.starts_with(": ok\nretry: "), "{first:?}");
        sse
    }

    /// The next block (the text before a blank line), `None` when the
    /// stream ended cleanly. Panics on a transport error or a stall.
    pub async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block = self.buf[..at].to_string();
                self.buf.drain(..at + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(PROMPT, self.body.next())
                .await
                .expect("the stream stalled");
            match chunk {
                None => {
                    assert!(self.buf.is_empty(), "cut mid-event: {:?}", self.buf);
                    return None;
                }
                Some(chunk) => self
                    .buf
                    .push_str(std::str::from_utf8(&chunk.expect("stream error")).unwrap()),
            }
        }
    }

    /// The next event, skipping comments (heartbeats).
    pub async fn event(&mut self) -> Event {
        loop {
            let block = self.block().await.expect("an event, not the end");
            let mut ev = Event::default();
            for line in block.split('\n') {
                if line.starts_with(':') {
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                match name {
                    "id" => ev.id = Some(value),
                    "event" => ev.event = Some(value),
                    "data" => match &mut ev.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(&value);
                        }
                        None => ev.data = Some(value),
                    },
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            if ev != Event::default() {
                return ev;
            }
        }
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.event().await);
        }
        out
    }
}
