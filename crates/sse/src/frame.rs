//! The SSE wire format: how a message, a gap, the opening and a heartbeat
//! become bytes.
//!
//! A message is one event: `id:` (a cursor), `event:` (omitted when the
//! message has none, so that the browser's `onmessage` fires) and its data
//! as `data:` lines, split on every line ending the EventSource spec
//! recognises (CRLF, LF, CR), so that what the browser reassembles equals
//! what was published. The bytes are built once per message and cached in
//! the message ([`Message::encoded`]): the whole event for single-channel
//! streams (whose id, [`Cursor::after`], is the same for every
//! subscriber), the `event:`/`data:` part for multi-channel streams (whose
//! id is each stream's own position, written per stream by the stream).
//!
//! This module does not decide when to write or which id a multi-channel
//! event carries; that is the stream's job.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use herald_bus::{ChannelName, Cursor, Encoding, Message};
use herald_http::write_json_str;

/// Event type of herald's gap signal. Publishers cannot use it: names
/// starting with [`herald_bus::RESERVED_EVENT_PREFIX`] are refused.
pub(crate) const GAP_EVENT: &str = "herald.gap";

/// Event type sent when the subscriber's token expires, just before the
/// stream ends.
pub(crate) const EXPIRED_EVENT: &str = "herald.expired";

/// The heartbeat: a comment line, which every client ignores but which
/// keeps proxies and NATs from closing an idle stream and makes a write
/// fail on a dead connection.
pub(crate) const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Why a gap event was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Messages were missed: the position was older than the retained
    /// history, or from another epoch.
    History,
    /// The channels were deleted and are no longer part of the stream.
    Deleted,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::History => "history",
            Reason::Deleted => "deleted",
        }
    }
}

/// The first frame of every stream, written at once so that proxies pass
/// the headers on and the browser fires `open`: a comment and the
/// reconnection delay.
pub(crate) fn opening(retry: Duration) -> Bytes {
    Bytes::from(format!(": ok\nretry: {}\n\n", retry.as_millis()))
}

/// `id: {id}\nevent: herald.gap\ndata: {"channels":[..],"reason":".."}\n\n`.
pub(crate) fn gap(id: &str, channels: &[ChannelName], reason: Reason) -> Bytes {
    let mut data = String::from("{\"channels\":[");
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_json_str(&mut data, c.as_str());
    }
    data.push_str("],\"reason\":\"");
    data.push_str(reason.as_str());
    data.push_str("\"}");
    let mut out = BytesMut::with_capacity(data.len() + id.len() + 40);
    put_event(&mut out, Some(id), Some(GAP_EVENT), &data);
    out.freeze()
}

/// `id: {cursor}\nevent: herald.expired\ndata: {"cursor":"{cursor}"}\n\n`:
/// the token that allowed the stream expired. The id is where the stream
/// stands, so a reconnect (with a fresh token) resumes exactly there.
pub(crate) fn expired(cursor: &Cursor) -> Bytes {
    let id = cursor.to_string();
    let mut data = String::from("{\"cursor\":");
    write_json_str(&mut data, &id);
    data.push('}');
    let mut out = BytesMut::with_capacity(data.len() + id.len() + 40);
    put_event(&mut out, Some(&id), Some(EXPIRED_EVENT), &data);
    out.freeze()
}

/// Appends the `id:` line of a multi-channel event.
pub(crate) fn put_id(out: &mut BytesMut, id: impl std::fmt::Display) {
    // Writing into a BytesMut cannot fail.
    let _ = writeln!(out, "id: {id}");
}

/// The `event:`/`data:` lines and the blank line of `m`'s event, cached per
/// message: multi-channel streams put their own `id:` line in front.
pub(crate) fn fields(m: &Message) -> Bytes {
    m.encoded::<Fields>()
}

/// The whole events of `messages` for a single-channel stream, each cached
/// per message and shared by every single-channel stream of the channel;
/// the id is [`Cursor::after`] the message.
pub(crate) fn single(messages: &[Arc<Message>], out: &mut Vec<Bytes>) {
    out.extend(messages.iter().map(|m| whole(m)));
}

/// One message's event on a single-channel stream, id and all: the same
/// bytes for every stream of the channel.
pub(crate) fn whole(m: &Message) -> Bytes {
    m.encoded::<Whole>()
}

/// `id:` + `event:` + `data:` lines + blank line.
struct Whole;

impl Encoding for Whole {
    fn encode(m: &Message) -> Bytes {
        encode(Some(&Cursor::after(m).to_string()), m)
    }
}

/// `event:` + `data:` lines + blank line.
struct Fields;

impl Encoding for Fields {
    fn encode(m: &Message) -> Bytes {
        encode(None, m)
    }
}

fn encode(id: Option<&str>, m: &Message) -> Bytes {
    let data = m.payload.as_str();
    let event = m.event.as_ref().map(|e| e.as_str());
    // Each line costs its `data: ` prefix and a LF; count line ends roughly.
    let lines = 1 + data.bytes().filter(|&b| b == b'\n' || b == b'\r').count();
    let len = data.len()
        + lines * 7
        + id.map_or(0, |i| i.len() + 5)
        + event.map_or(0, |e| e.len() + 8)
        + 1;
    let mut out = BytesMut::with_capacity(len);
    put_event(&mut out, id, event, data);
    out.freeze()
}

fn put_event(out: &mut BytesMut, id: Option<&str>, event: Option<&str>, data: &str) {
    if let Some(id) = id {
        put_field(out, "id", id);
    }
    if let Some(event) = event {
        put_field(out, "event", event);
    }
    put_data(out, data);
    out.put_u8(b'\n');
}

/// Appends `data` as `data:` lines, split on CRLF, LF and CR (the line ends
/// of the SSE spec). Empty data gives one `data:` line, so that the event
/// still fires, with empty data.
pub(crate) fn put_data(out: &mut BytesMut, data: &str) {
    let mut rest = data.as_bytes();
    loop {
        let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            put_field(out, "data", rest);
            return;
        };
        put_field(out, "data", &rest[..at]);
        let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
        rest = &rest[at + if crlf { 2 } else { 1 }..];
    }
}

/// `name: value\n`, or `name:\n` for an empty value. The space is always
/// written before a value because the reader strips exactly one, so a value
/// that starts with a space keeps it.
fn put_field(out: &mut BytesMut, name: &str, value: impl AsRef<[u8]>) {
    let value = value.as_ref();
    out.put_slice(name.as_bytes());
    if value.is_empty() {
        out.put_slice(b":\n");
    } else {
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_u8(b'\n');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use herald_bus::{Config, Draft, EventName, Payload, Start};
    use proptest::prelude::*;

    /// One event as the EventSource spec dispatches it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Event {
        pub(crate) id: String,
        pub(crate) event: String,
        pub(crate) data: String,
    }

    /// What a spec-conforming reader makes of a stream: the dispatched
    /// events and the last `retry:` value.
    #[derive(Debug, Default)]
    pub(crate) struct Parsed {
        pub(crate) events: Vec<Event>,
        pub(crate) retry: Option<u64>,
        pub(crate) comments: usize,
    }

    /// The EventSource spec's "interpret an event stream", written from the
    /// spec (html.spec.whatwg.org, server-sent events, section 9.2.6), independently of
    /// the encoder above.
    pub(crate) fn parse(stream: &str) -> Parsed {
        let mut p = Parsed::default();
        let (mut data, mut event, mut last_id) = (String::new(), String::new(), String::new());
        let mut rest = stream;
        while !rest.is_empty() {
            // An unterminated last line is discarded, as at end of stream.
            let Some(end) = rest.find(['\r', '\n']) else {
                break;
            };
            let line = &rest[..end];
            let skip = if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            };
            rest = &rest[end + skip..];
            if line.is_empty() {
                if data.is_empty() {
                    event.clear();
                    continue;
                }
                if data.ends_with('\n') {
                    data.pop();
                }
                p.events.push(Event {
                    id: last_id.clone(),
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        std::mem::take(&mut event)
                    },
                    data: std::mem::take(&mut data),
                });
                continue;
            }
            if line.starts_with(':') {
                p.comments += 1;
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match name {
                "event" => event = value.to_string(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => last_id = value.to_string(),
                "retry" if value.bytes().all(|b| b.is_ascii_digit()) => {
                    p.retry = value.parse().ok();
                }
                _ => {}
            }
        }
        p
    }

    /// What a browser hands the page for published `data`: every line end
    /// becomes LF.
    pub(crate) fn as_received(data: &str) -> String {
        data.replace("\r\n", "\n").replace('\r', "\n")
    }

    fn message(event: Option<&str>, data: &str) -> Message {
        Message::new(
            Draft {
                channel: ChannelName::new("c").unwrap(),
                event: event.map(|e| EventName::new(e).unwrap()),
                payload: Payload::text(data.to_string()).unwrap(),
            },
            7,
            0,
            1,
        )
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn line_ends_become_data_lines() {
        let m = message(None, "a\r\nb\rc\n\ndata\n");
        assert_eq!(
            text(&fields(&m)),
            "data: a\ndata: b\ndata: c\ndata:\ndata: data\ndata:\n\n"
        );
        assert_eq!(text(&fields(&message(None, ""))), "data:\n\n");
        assert_eq!(
            text(&fields(&message(Some("ev"), " x"))),
            "event: ev\ndata:  x\n\n"
        );
    }

    #[test]
    fn gap_event_is_json_and_reserved() {
        let chans = [
            ChannelName::new("a").unwrap(),
            ChannelName::new("b").unwrap(),
        ];
        let g = gap("CUR", &chans, Reason::Deleted);
        let p = parse(text(&g));
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].id, "CUR");
        assert_eq!(p.events[0].event, GAP_EVENT);
        let v: serde_json::Value = serde_json::from_str(&p.events[0].data).unwrap();
        assert_eq!(v["channels"], serde_json::json!(["a", "b"]));
        assert_eq!(v["reason"], "deleted");
        assert!(GAP_EVENT.starts_with(herald_bus::RESERVED_EVENT_PREFIX));
    }

    #[test]
    fn opening_sets_retry_and_dispatches_nothing() {
        let p = parse(text(&opening(Duration::from_millis(2500))));
        assert_eq!(p.retry, Some(2500));
        assert!(p.events.is_empty());
        assert_eq!(p.comments, 1);
        assert_eq!(parse(std::str::from_utf8(HEARTBEAT).unwrap()).comments, 1);
    }

    #[tokio::test]
    async fn single_channel_events_are_built_once_and_carry_cursor_after() {
        let bus = herald_bus::Bus::memory(Config::default());
        let c = ChannelName::new("c").unwrap();
        let p = bus
            .publish(vec![Draft {
                channel: c.clone(),
                event: None,
                payload: Payload::text("hi").unwrap(),
            }])
            .await
            .unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        single(&[p[0].message.clone()], &mut a);
        single(&[p[0].message.clone()], &mut b);
        assert_eq!(a[0].as_ptr(), b[0].as_ptr(), "one encoding, shared");
        let ev = &parse(text(&a[0])).events[0];
        assert_eq!(ev.id, p[0].cursor.to_string());
        let cursor = herald_bus::Cursor::parse(&ev.id).unwrap();
        let after = bus.read(&[c], &Start::From(cursor), 10).await.unwrap();
        assert!(after.messages.is_empty() && !after.has_gap());
    }

    proptest! {
        #[test]
        fn data_round_trips_through_a_spec_reader(
            data in "(\r|\n|\r\n|:| |data|x|é|\u{2028})*",
            event in proptest::option::of("[a-z :]{1,10}"),
        ) {
            let m = message(event.as_deref(), &data);
            let bytes = fields(&m);
            let mut whole = BytesMut::new();
            put_id(&mut whole, "ID");
            whole.put_slice(&bytes);
            let p = parse(text(&whole.freeze()));
            prop_assert_eq!(p.events.len(), 1);
            let ev = &p.events[0];
            prop_assert_eq!(&ev.data, &as_received(&data));
            prop_assert_eq!(&ev.id, "ID");
            prop_assert_eq!(ev.event.as_str(), event.as_deref().unwrap_or("message"));
        }

        #[test]
        fn any_text_round_trips(data in any::<String>()) {
            let p = parse(text(&fields(&message(None, &data))));
            prop_assert_eq!(p.events.len(), 1);
            prop_assert_eq!(&p.events[0].data, &as_received(&data));
        }
    }
}
