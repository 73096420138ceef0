//! Messages: what a publisher sends ([`Draft`]) and what the bus stores and
//! shares ([`Message`]).
//!
//! A stored message is immutable and shared by `Arc` between the history and
//! every subscriber that reads it. Transports encode it once per message, not
//! once per subscriber, through [`Message::encoded`], which caches one
//! encoding per [`Encoding`] type inside the message itself.

use std::{
    any::TypeId,
    fmt,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;

use crate::{ChannelName, Error, EventName};

/// Message data: UTF-8 text, optionally declared as JSON.
///
/// JSON data is embedded as a JSON value in JSON envelopes; text is embedded
/// as a JSON string. Both are checked on construction, so an invalid payload
/// never reaches a subscriber.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    bytes: Bytes,
    json: bool,
}

impl Payload {
    /// Text data; fails with [`Error::InvalidUtf8`] if `bytes` is not UTF-8.
    pub fn text(bytes: impl Into<Bytes>) -> Result<Self, Error> {
        let bytes = bytes.into();
        std::str::from_utf8(&bytes).map_err(|_| Error::InvalidUtf8)?;
        Ok(Payload { bytes, json: false })
    }

    /// JSON data; fails with [`Error::InvalidUtf8`] or [`Error::InvalidJson`].
    pub fn json(bytes: impl Into<Bytes>) -> Result<Self, Error> {
        let bytes = bytes.into();
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidUtf8)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| Error::InvalidJson(e.to_string()))?;
        Ok(Payload { bytes, json: true })
    }

    /// Rebuilds a payload that was validated before (read back from a store
    /// this gateway wrote). Falls back to validation if the flag lies.
    pub fn restore(bytes: Bytes, json: bool) -> Result<Self, Error> {
        if json {
            Self::json(bytes)
        } else {
            Self::text(bytes)
        }
    }

    /// The data as text.
    pub fn as_str(&self) -> &str {
        // Checked on construction.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// True when the data was published as JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for empty data.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("json", &self.json)
            .field("data", &self.as_str())
            .finish()
    }
}

/// A message as a publisher hands it to the bus, before it has an id.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Target channel.
    pub channel: ChannelName,
    /// Optional event name.
    pub event: Option<EventName>,
    /// The data.
    pub payload: Payload,
}

/// A stored message. Immutable; shared by `Arc`.
pub struct Message {
    /// The channel it was published to.
    pub channel: ChannelName,
    /// Its id: strictly increasing per channel in publish order.
    pub id: u64,
    /// Optional event name.
    pub event: Option<EventName>,
    /// The data.
    pub payload: Payload,
    /// Publish time, milliseconds since the Unix epoch.
    pub time: u64,
    /// Publish order across channels within one engine, for merging
    /// channels whose messages share a millisecond (0 when unknown).
    order: u64,
    /// The epoch of the store that assigned the id, so that the message
    /// alone yields its cursor ([`Cursor::after`](crate::Cursor::after)).
    epoch: u64,
    /// One cached encoding per [`Encoding`] type. A handful at most (one per
    /// transport wire format), so a short vector beats a map.
    frames: Mutex<Vec<(TypeId, Bytes)>>,
}

impl Message {
    /// Builds a stored message. Engines call this once they assigned the id,
    /// passing their epoch.
    pub fn new(draft: Draft, id: u64, time: u64, epoch: u64) -> Self {
        Message {
            channel: draft.channel,
            id,
            event: draft.event,
            payload: draft.payload,
            time,
            order: 0,
            epoch,
            frames: Mutex::new(Vec::new()),
        }
    }

    /// Sets the engine-wide publish order, which breaks ties between
    /// channels when a multi-channel subscription merges messages of the
    /// same millisecond.
    pub fn with_order(mut self, order: u64) -> Self {
        self.order = order;
        self
    }

    /// The engine-wide publish order (see [`Message::with_order`]); 0 when
    /// the engine sets none.
    pub fn order(&self) -> u64 {
        self.order
    }

    /// The epoch of the store that assigned the id.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Key that orders messages of different channels: publish time, then
    /// publish order.
    pub(crate) fn merge_key(&self) -> (u64, u64) {
        (self.time, self.order)
    }

    /// The message encoded by `E`, computed on first use and shared by every
    /// later caller (every subscriber of the channel).
    pub fn encoded<E: Encoding>(&self) -> Bytes {
        let key = TypeId::of::<E>();
        if let Some(b) = self.cached(key) {
            return b;
        }
        // Encode outside the lock; a racing encoder produces equal bytes.
        let bytes = E::encode(self);
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if !frames.iter().any(|(k, _)| *k == key) {
            frames.push((key, bytes.clone()));
        }
        bytes
    }

    fn cached(&self, key: TypeId) -> Option<Bytes> {
        let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        frames
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, b)| b.clone())
    }

    /// Bytes the message counts against the history's byte bound.
    pub fn size(&self) -> usize {
        self.payload.len() + self.event.as_ref().map_or(0, |e| e.as_str().len()) + 64
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("id", &self.id)
            .field("event", &self.event)
            .field("payload", &self.payload)
            .field("time", &self.time)
            .finish()
    }
}

/// A wire encoding of a single message, cached per message by
/// [`Message::encoded`]. Implemented by transports on a marker type.
pub trait Encoding: 'static {
    /// Encodes `message`. Must be a pure function of the message.
    fn encode(message: &Message) -> Bytes;
}

/// Microseconds since the Unix epoch, now: the first id of a new channel, so
/// that a channel dropped and created again never reuses an id a client may
/// still hold (see docs/architecture.md, "Ids").
pub fn first_id_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;
    impl Encoding for Upper {
        fn encode(m: &Message) -> Bytes {
            Bytes::from(m.payload.as_str().to_uppercase())
        }
    }

    fn msg(data: &str) -> Message {
        Message::new(
            Draft {
                channel: ChannelName::new("c").unwrap(),
                event: None,
                payload: Payload::text(data.to_string()).unwrap(),
            },
            1,
            0,
            7,
        )
    }

    #[test]
    fn encoding_is_cached_and_shared() {
        let m = msg("hi");
        let a = m.encoded::<Upper>();
        let b = m.encoded::<Upper>();
        assert_eq!(a, "HI");
        assert_eq!(a.as_ptr(), b.as_ptr(), "second call must reuse the bytes");
    }

    #[test]
    fn payload_validation() {
        assert_eq!(Payload::text(vec![0xff]), Err(Error::InvalidUtf8));
        assert!(matches!(Payload::json("{"), Err(Error::InvalidJson(_))));
        assert!(Payload::json("{\"a\":1}").unwrap().is_json());
    }
}
