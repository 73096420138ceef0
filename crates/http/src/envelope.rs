//! The JSON envelope shared by short and long polling, and the message
//! fields that the WebSocket frame embeds.
//!
//! A message's JSON object is built once per message and cached in the
//! message ([`herald_bus::Message::encoded`]), so a publish read by ten
//! thousand pollers is serialised once.

use bytes::Bytes;
use herald_bus::{Batch, Encoding, Message};

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
    let cursor = batch.cursor.to_string();
    let frames: Vec<Bytes> = batch
        .messages
        .iter()
        .map(|m| m.encoded::<MessageJson>())
        .collect();
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
    out.extend_from_slice(if batch.has_gap() { b"true" } else { b"false" });
    for (key, list) in [("gaps", &batch.gaps), ("gone", &batch.gone)] {
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
}
