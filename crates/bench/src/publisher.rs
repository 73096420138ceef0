//! The publisher: one keep-alive connection that posts stamped payloads to
//! a channel, one at a time or as a batch, in each system's format.
//!
//! Each publish stamps its payloads just before sending, so the latency a
//! subscriber measures includes the publish request. The body is built in
//! a reused buffer; the one copy into `Bytes` per request is the
//! publisher's only allocation, and a publish serves every subscriber of
//! the channel. It does not pace itself: scenarios decide when to publish.

use bytes::Bytes;

use crate::{
    Error, Target,
    net::{self, Http},
    payload::{self, SIZE},
};

/// A connection that publishes.
pub struct Publisher {
    http: Http,
    target: Target,
    payloads: Vec<[u8; SIZE]>,
    body: Vec<u8>,
}

impl Publisher {
    /// Connects to the target's publish address. Fails when the
    /// connection does.
    pub async fn open(target: Target) -> Result<Publisher, Error> {
        let from = net::source(target.publish, 0, 1);
        Ok(Publisher {
            http: Http::open(target.publish, from).await?,
            target,
            payloads: Vec::new(),
            body: Vec::new(),
        })
    }

    /// Publishes sequence numbers `first..first + count` to `channel`: one
    /// message when `count` is 1, else one batch request. Fails when the
    /// request does or the gateway refuses it (a status other than its
    /// success code), or when `count` > 1 and the system has no batch.
    pub async fn publish(&mut self, channel: &str, first: u64, count: usize) -> Result<(), Error> {
        let batch = count > 1;
        if batch {
            self.target.supports_batch()?;
        }
        if self.http.is_closed() {
            let from = net::source(self.target.publish, 0, 1);
            self.http = Http::open(self.target.publish, from).await?;
        }
        self.payloads.resize(count, [0; SIZE]);
        let now = payload::now_us();
        for (i, p) in self.payloads.iter_mut().enumerate() {
            payload::encode(p, first + i as u64, now);
        }
        self.body.clear();
        let items = self
            .payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (first + i as u64, &p[..]));
        self.target
            .publish_body(&mut self.body, channel, items, batch);
        let path = self.target.publish_path(
            (!batch || self.target.system != crate::System::Herald).then_some(channel),
        );
        let ct = if self.target.publish_is_json(batch) {
            "application/json"
        } else {
            "text/plain"
        };
        let body = Bytes::copy_from_slice(&self.body);
        let status = match self.http.post(&path, ct, body.clone()).await {
            // The server closed the keep-alive connection as the request
            // went out: nothing was published, so asking again is safe.
            Err(Error::Http(e)) if e.is_closed() || e.is_canceled() => {
                let from = net::source(self.target.publish, 0, 1);
                self.http = Http::open(self.target.publish, from).await?;
                self.http.post(&path, ct, body).await?
            }
            r => r?,
        };
        if self.target.publish_ok(status) {
            Ok(())
        } else {
            Err(Error::Status(status))
        }
    }
}
