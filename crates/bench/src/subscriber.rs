//! One subscriber: connects by its transport, follows the gateway's cursor,
//! and hands every payload it receives to a callback.
//!
//! The callback sees `(seq, sent_us)` and answers whether to go on, so the
//! same loop serves fan-out (forever), idle and herd (one message) and
//! churn (a few, then disconnect). Receiving reuses one buffer per
//! subscriber and scans borrowed bytes: on WebSocket and SSE a delivery
//! allocates nothing here. Long and short polling pay one request per
//! answer, and a request allocates its head; that is the transport's cost,
//! not the check's. The loop does not reconnect a stream that the server
//! ends: during a measurement that is an error, reported as one.

use std::{
    fmt::Write,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Target, Transport,
    net::{self, Http},
    payload::{self, find},
};

/// Where and how one subscriber subscribes.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The gateway.
    pub target: Target,
    /// The transport.
    pub transport: Transport,
    /// The channel.
    pub channel: Arc<str>,
    /// Source address of the connection.
    pub from: IpAddr,
    /// Short polling: wait between polls that found nothing.
    pub poll_interval: Duration,
    /// Long polling: hold asked of herald (`timeout=`, seconds).
    pub hold_secs: u64,
    /// Counts the requests made (polling transports), when set.
    pub requests: Option<Arc<AtomicU64>>,
}

/// Runs the subscriber until `stop` is cancelled (answers `Ok`), `on`
/// answers false (`Ok`), or the connection fails or ends (`Err`). `ready`
/// is called once the subscription is in place as far as the client can
/// tell: upgraded (herald: its `subscribed` frame received), stream
/// headers received, first poll answered, or the first long poll sent.
pub async fn run(
    spec: &Spec,
    ready: impl FnOnce(),
    stop: &CancellationToken,
    on: impl FnMut(u64, u64) -> bool,
) -> Result<(), Error> {
    spec.target.supports(spec.transport)?;
    let mut sink = Sink { on, more: true };
    let work = async {
        match spec.transport {
            Transport::Ws => ws(spec, ready, &mut sink).await,
            Transport::Sse => sse(spec, ready, &mut sink).await,
            Transport::Longpoll | Transport::Poll => polling(spec, ready, &mut sink).await,
        }
    };
    tokio::select! {
        r = work => r,
        _ = stop.cancelled() => Ok(()),
    }
}

/// The callback and whether it still wants more.
struct Sink<F> {
    on: F,
    more: bool,
}

impl<F: FnMut(u64, u64) -> bool> Sink<F> {
    /// Delivers every payload in `bytes`; answers how many.
    fn deliver(&mut self, bytes: &[u8]) -> usize {
        payload::scan(bytes, |seq, sent| {
            if self.more {
                self.more = (self.on)(seq, sent);
            }
        })
    }
}

async fn ws<F: FnMut(u64, u64) -> bool>(
    spec: &Spec,
    ready: impl FnOnce(),
    sink: &mut Sink<F>,
) -> Result<(), Error> {
    let path = spec.target.sub_path(Transport::Ws, &spec.channel);
    let mut ws = net::websocket(spec.target.sub, spec.from, &path).await?;
    // herald confirms the subscription with a frame once it is in place;
    // the peers subscribe before the upgrade answers.
    let mut ready = Some(ready);
    if spec.target.system != crate::System::Herald
        && let Some(r) = ready.take()
    {
        r();
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                if ready.is_some()
                    && find(t.as_bytes(), b"\"type\":\"subscribed\"").is_some()
                    && let Some(r) = ready.take()
                {
                    r();
                }
                sink.deliver(t.as_bytes())
            }
            Message::Binary(b) => sink.deliver(&b),
            Message::Close(_) => return Err(Error::Closed),
            _ => 0,
        };
        if !sink.more {
            let _ = ws.close(None).await;
            return Ok(());
        }
    }
    Err(Error::Closed)
}

async fn sse<F: FnMut(u64, u64) -> bool>(
    spec: &Spec,
    ready: impl FnOnce(),
    sink: &mut Sink<F>,
) -> Result<(), Error> {
    let path = spec.target.sub_path(Transport::Sse, &spec.channel);
    let mut http = Http::open(spec.target.sub, spec.from).await?;
    let accept = HeaderValue::from_static("text/event-stream");
    let res = http.get(&path, &[(header::ACCEPT, &accept)]).await?;
    if res.status() != 200 {
        return Err(Error::Status(res.status().as_u16()));
    }
    ready();
    let mut body = res.into_body();
    let mut buf = Vec::with_capacity(512);
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        // A payload never spans a line, so every complete line can go.
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            sink.deliver(&buf[..end]);
            buf.drain(..=end);
        }
        if !sink.more {
            return Ok(());
        }
    }
    Err(Error::Closed)
}

/// Long and short polling: one request per answer, the position carried
/// from one to the next as each system wants it (herald: `since=` the
/// body's cursor; nchan: `If-Modified-Since`/`If-None-Match` from the last
/// answer's `Last-Modified`/`Etag`; Pushpin: nothing, it keeps no history).
async fn polling<F: FnMut(u64, u64) -> bool>(
    spec: &Spec,
    ready: impl FnOnce(),
    sink: &mut Sink<F>,
) -> Result<(), Error> {
    let long = spec.transport == Transport::Longpoll;
    let herald = spec.target.system == crate::System::Herald;
    let base = spec.target.sub_path(spec.transport, &spec.channel);
    let mut http = Http::open(spec.target.sub, spec.from).await?;
    let mut ready = Some(ready);
    if long && let Some(r) = ready.take() {
        // A held request gives no sign that it is held.
        r();
    }
    let (mut path, mut cursor, mut buf) = (String::new(), String::new(), Vec::new());
    let mut modified: Option<HeaderValue> = None;
    let mut etag: Option<HeaderValue> = None;
    loop {
        if http.is_closed() {
            http = Http::open(spec.target.sub, spec.from).await?;
        }
        path.clear();
        path.push_str(&base);
        if herald {
            let mut sep = '?';
            if long {
                let _ = write!(path, "?timeout={}", spec.hold_secs);
                sep = '&';
            }
            if !cursor.is_empty() {
                let _ = write!(path, "{sep}since={cursor}");
            }
        }
        let mut headers = Vec::with_capacity(2);
        if let Some(v) = &modified {
            headers.push((header::IF_MODIFIED_SINCE, v));
        }
        if let Some(v) = &etag {
            headers.push((header::IF_NONE_MATCH, v));
        }
        let res = http.get(&path, &headers).await?;
        if let Some(c) = &spec.requests {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let status = res.status().as_u16();
        let found = match status {
            200 => {
                if !herald {
                    modified = res.headers().get(header::LAST_MODIFIED).cloned();
                }
                if !herald || !long {
                    etag = res.headers().get(header::ETAG).cloned();
                }
                net::read_body(res.into_body(), &mut buf).await?;
                if herald {
                    body_cursor(&buf, &mut cursor)?;
                }
                sink.deliver(&buf)
            }
            // Nothing new (poll), hold expired (long poll: herald, Pushpin
            // 204; nchan 304 or 408).
            204 | 304 | 408 => {
                res.into_body().collect().await?;
                0
            }
            s => return Err(Error::Status(s)),
        };
        if let Some(r) = ready.take() {
            r();
        }
        if !sink.more {
            return Ok(());
        }
        if !long && found == 0 {
            tokio::time::sleep(spec.poll_interval).await;
        }
    }
}

/// Copies the `"cursor":"..."` of a herald envelope into `out`.
fn body_cursor(body: &[u8], out: &mut String) -> Result<(), Error> {
    const KEY: &[u8] = b"\"cursor\":\"";
    let at = find(body, KEY).ok_or(Error::Protocol("a herald envelope without a cursor"))?;
    let rest = &body[at + KEY.len()..];
    let end = rest
        .iter()
        .position(|&b| b == b'"')
        .ok_or(Error::Protocol("an unterminated cursor"))?;
    out.clear();
    out.push_str(std::str::from_utf8(&rest[..end]).map_err(|_| Error::Protocol("cursor"))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_from_envelope() {
        let mut c = String::from("old");
        body_cursor(br#"{"messages":[],"cursor":"AbC-_1","gap":false}"#, &mut c).unwrap();
        assert_eq!(c, "AbC-_1");
        assert!(body_cursor(b"{}", &mut c).is_err());
    }
}
