//! The JSON envelope shared by short and long polling, and the message
//! fields that the WebSocket frame embeds.
//!
//! A message's JSON object is built once per message and cached in the
//! message ([`herald_bus::Message::encoded`]), so a publish read by ten
//! thousand pollers is serialised once. The most common answer, one message
//! that resumes right after itself (every long poll a publish releases, every
//! short poll that was one message behind), is a function of that message
//! alone, so the whole envelope is cached in the message too: a herd of
//! waiters on one channel shares one body instead of each encoding its
//! cursor and copying the message into a body of its own.

use bytes::Bytes;
use herald_bus::{Batch, Cursor, Encoding, Message};

/// `{"channel":..,"id":..,"event":..,"data":..,"time":..}`, cached per
/// message.
struct MessageJson;

impl Encoding for MessageJson {
    fn encode(m: &Message) -> Bytes {
        let mut s = String::with_capacity(m.payload.len() + 96);
        s.push('{');
        message_fields(&mut s, m);
        s.push('}');
        Bytes::from(s)
    }
}

/// `{"messages":[message],"cursor":"<after message>","gap":false}`, cached
/// per message: the answer of [`only_message`].
struct OneMessageJson;

impl Encoding for OneMessageJson {
    fn encode(m: &Message) -> Bytes {
        let cursor = Cursor::after(m).to_string();
        envelope(&[m.encoded::<MessageJson>()], &cursor, false, &[])
    }
}

/// The message of a batch whose answer depends on that message alone: it
/// is the batch's only message, nothing was missed or deleted, and the
/// batch's cursor is the one right after it (a subscription to that one
/// channel). `None` for any other batch.
pub fn only_message(batch: &Batch) -> Option<&Message> {
    match batch.messages.as_slice() {
        [m] if !batch.has_gap() && batch.cursor == Cursor::after(m) => Some(m),
        _ => None,
    }
}

/// Appends `"channel":..,"id":..,"event":..,"data":..,"time":..` (no
/// braces) to `out`. `data` is embedded as a JSON value when the message was
/// published as JSON, as a string otherwise; `event` is null when unset.
pub fn message_fields(out: &mut String, m: &Message) {
    use std::fmt::Write;
    out.push_str("\"channel\":");
    write_json_str(out, m.channel.as_str());
    let _ = write!(out, ",\"id\":{},\"event\":", m.id);
    match &m.event {
        Some(e) => write_json_str(out, e.as_str()),
        None => out.push_str("null"),
    }
    out.push_str(",\"data\":");
    if m.payload.is_json() {
        out.push_str(m.payload.as_str());
    } else {
        write_json_str(out, m.payload.as_str());
    }
    let _ = write!(out, ",\"time\":{}", m.time);
}

/// `{"messages":[...],"cursor":"...","gap":bool}`, plus `"gaps":[...]`
/// naming the channels that missed messages and `"gone":[...]` naming
/// deleted channels, each only when not empty.
pub fn batch_json(batch: &Batch) -> Bytes {
    if let Some(m) = only_message(batch) {
        return m.encoded::<OneMessageJson>();
    }
    let frames: Vec<Bytes> = batch
        .messages
        .iter()
        .map(|m| m.encoded::<MessageJson>())
        .collect();
    let lists = [("gaps", &batch.gaps[..]), ("gone", &batch.gone[..])];
    envelope(&frames, &batch.cursor.to_string(), batch.has_gap(), &lists)
}

/// The envelope of encoded messages, a cursor, the gap flag and the named
/// channel lists (each written only when not empty).
fn envelope(
    frames: &[Bytes],
    cursor: &str,
    gap: bool,
    lists: &[(&str, &[herald_bus::ChannelName])],
) -> Bytes {
    let len = frames.iter().map(|f| f.len() + 1).sum::<usize>() + cursor.len() + 64;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"messages\":[");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b"],\"cursor\":\"");
    out.extend_from_slice(cursor.as_bytes());
    out.extend_from_slice(b"\",\"gap\":");
    out.extend_from_slice(if gap { b"true" } else { b"false" });
    for (key, list) in lists {
        if list.is_empty() {
            continue;
        }
        let mut field = format!(",\"{key}\":[");
        for (i, c) in list.iter().enumerate() {
            if i > 0 {
                field.push(',');
            }
            write_json_str(&mut field, c.as_str());
        }
        field.push(']');
        out.extend_from_slice(field.as_bytes());
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; writing into a String
    // cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{Bus, ChannelName, Config, Draft, EventName, Payload, Start};

    #[tokio::test]
    async fn envelope_is_valid_json_with_text_and_json_data() {
        let bus = Bus::memory(Config::default());
        let c = ChannelName::new("c").unwrap();
        bus.publish(vec![
            Draft {
                channel: c.clone(),
                event: None,
                payload: Payload::text("a \"quoted\"\nline").unwrap(),
            },
            Draft {
                channel: c.clone(),
                event: Some(EventName::new("ev").unwrap()),
                payload: Payload::json("{\"k\":[1,2]}").unwrap(),
            },
        ])
        .await
        .unwrap();
        let batch = bus.read(&[c], &Start::Last(10), 10).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&batch_json(&batch)).unwrap();
        assert_eq!(v["messages"][0]["data"], "a \"quoted\"\nline");
        assert_eq!(v["messages"][0]["event"], serde_json::Value::Null);
        assert_eq!(v["messages"][1]["data"]["k"][1], 2);
        assert_eq!(v["messages"][1]["event"], "ev");
        assert_eq!(v["gap"], false);
        assert!(v["cursor"].is_string());
    }

    #[tokio::test]
    async fn a_one_message_answer_is_shared_and_equals_the_general_envelope() {
        let bus = Bus::memory(Config::default());
        let (a, b) = (
            ChannelName::new("a").unwrap(),
            ChannelName::new("b").unwrap(),
        );
        let only_a = std::slice::from_ref(&a);
        let before = bus.read(only_a, &Start::Now, 10).await.unwrap().cursor;
        let draft = |c: &ChannelName| Draft {
            channel: c.clone(),
            event: None,
            payload: Payload::json("[1]").unwrap(),
        };
        bus.publish(vec![draft(&a)]).await.unwrap();
        let from = Start::From(before);
        let one = bus.read(only_a, &from, 10).await.unwrap();
        let again = bus.read(only_a, &from, 10).await.unwrap();
        assert!(only_message(&one).is_some());
        let (x, y) = (batch_json(&one), batch_json(&again));
        assert_eq!(x.as_ptr(), y.as_ptr(), "one encoding for every reader");
        let frames = [one.messages[0].encoded::<MessageJson>()];
        assert_eq!(x, envelope(&frames, &one.cursor.to_string(), false, &[]));
        let v: serde_json::Value = serde_json::from_slice(&x).unwrap();
        assert_eq!(v["messages"][0]["data"][0], 1);
        assert_eq!(v["cursor"], one.cursor.to_string());
        // Two channels: the cursor covers both, so the answer is not the
        // message's alone.
        let both = bus
            .read(&[a.clone(), b], &Start::Last(1), 10)
            .await
            .unwrap();
        assert_eq!(both.messages.len(), 1);
        assert!(only_message(&both).is_none());
        let v: serde_json::Value = serde_json::from_slice(&batch_json(&both)).unwrap();
        assert_eq!(v["cursor"], both.cursor.to_string());
        // A gap is told, never served from the shared answer.
        let mut gapped = one.clone();
        gapped.gaps.push(a);
        assert!(only_message(&gapped).is_none());
        let v: serde_json::Value = serde_json::from_slice(&batch_json(&gapped)).unwrap();
        assert_eq!(
            (v["gap"].as_bool(), v["gaps"][0].as_str()),
            (Some(true), Some("a"))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_round_trips_through_the_envelope(data in "\\PC*", event in "[^\\p{Cc}]{1,20}") {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let bus = Bus::memory(Config::default());
                let c = ChannelName::new("p").unwrap();
                let event = EventName::new(&event).ok();
                let draft = Draft { channel: c.clone(), event: event.clone(), payload: Payload::text(data.clone()).unwrap() };
                bus.publish(vec![draft]).await.unwrap();
                let batch = bus.read(&[c], &Start::Last(1), 1).await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&batch_json(&batch)).unwrap();
                assert_eq!(v["messages"][0]["data"].as_str().unwrap(), data);
                match event {
                    Some(e) => assert_eq!(v["messages"][0]["event"].as_str().unwrap(), e.as_str()),
                    None => assert!(v["messages"][0]["event"].is_null()),
                }
            });
        }
    }
}
