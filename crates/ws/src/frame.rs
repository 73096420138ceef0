//! The WebSocket protocol's frames: parsing what a client sends, and
//! building what the server sends.
//!
//! Every frame is a JSON object in a text frame with a `type`; a client may
//! add a `ref` (any string) that the server echoes in its reply. This module
//! is pure: it knows nothing of sockets, subscriptions or limits other than
//! the ones it is handed. The `message` frame is built here too, once per
//! message and shared by every connection (see [`message`]).

use std::{collections::HashSet, fmt::Write as _};

use bytes::Bytes;
use herald_bus::{ChannelName, Cursor, Encoding, Message, Start};
use herald_http::{Code, Error, message_fields, write_json_str};
use serde_json::{Map, Value};

/// A client frame's operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Add channels, starting at `start`; `token`, when given, is checked
    /// for them and becomes the connection's token.
    Subscribe {
        channels: Vec<ChannelName>,
        start: Start,
        token: Option<String>,
    },
    /// Replace the connection's token (a refresh, before or after
    /// `expired`).
    Auth { token: String },
    /// Remove channels.
    Unsubscribe { channels: Vec<ChannelName> },
    /// Application-level ping; answered with `pong`.
    Ping,
}

/// A parsed client frame: the `ref` to echo (when one could be read) and
/// the operation or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFrame {
    pub reference: Option<String>,
    pub op: Result<Op, Error>,
}

/// What a client frame may ask for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Caps `last` (the transports' `max-messages`).
    pub max_last: usize,
    /// Longest `channels` list (the connection's subscription limit): a
    /// longer one is refused before its names are parsed or compared.
    pub max_channels: usize,
}

/// The frame parser for fuzz targets, which call it directly instead of
/// through a socket: the `ref` it read, and the channels a `subscribe` or
/// `unsubscribe` names (none for the other operations) or the refusal's
/// code. Panics if a `subscribe` asks for more than `max_last`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_parse(
    text: &str,
    max_last: usize,
    max_channels: usize,
) -> (Option<String>, Result<Vec<String>, Code>) {
    let frame = parse(
        text,
        Bounds {
            max_last,
            max_channels,
        },
    );
    let names =
        |channels: Vec<ChannelName>| channels.iter().map(|c| c.as_str().to_owned()).collect();
    let op = match frame.op {
        Ok(Op::Subscribe {
            channels, start, ..
        }) => {
            if let Start::Last(n) = start {
                assert!(n <= max_last, "last={n} over its cap {max_last}");
            }
            Ok(names(channels))
        }
        Ok(Op::Unsubscribe { channels }) => Ok(names(channels)),
        Ok(Op::Auth { .. } | Op::Ping) => Ok(Vec::new()),
        Err(e) => Err(e.code()),
    };
    (frame.reference, op)
}

/// Parses a client text frame. Never fails: a bad frame is an [`Error`] to
/// answer. Linear in the frame's size.
pub(crate) fn parse(text: &str, bounds: Bounds) -> ClientFrame {
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return ClientFrame {
                reference: None,
                op: Err(Error::new(
                    Code::InvalidJson,
                    "a frame must be a JSON object",
                )),
            };
        }
        Err(e) => {
            return ClientFrame {
                reference: None,
                op: Err(Error::new(Code::InvalidJson, e.to_string())),
            };
        }
    };
    let (reference, bad_ref) = match object.get("ref") {
        None | Some(Value::Null) => (None, false),
        Some(Value::String(s)) => (Some(s.clone()), false),
        Some(_) => (None, true),
    };
    let op = if bad_ref {
        Err(Error::new(Code::InvalidFrame, "ref must be a string"))
    } else {
        operation(&object, bounds)
    };
    ClientFrame { reference, op }
}

fn operation(o: &Map<String, Value>, bounds: Bounds) -> Result<Op, Error> {
    let kind = match o.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::new(Code::InvalidFrame, "type must be a string")),
        None => return Err(Error::new(Code::InvalidFrame, "a frame needs a type")),
    };
    match kind {
        "subscribe" => Ok(Op::Subscribe {
            channels: channel_list(o, bounds.max_channels)?,
            start: start(o, bounds.max_last)?,
            token: token(o)?,
        }),
        "auth" => Ok(Op::Auth {
            token: token(o)?
                .ok_or_else(|| Error::new(Code::InvalidFrame, "an auth frame needs a token"))?,
        }),
        "unsubscribe" => Ok(Op::Unsubscribe {
            channels: channel_list(o, bounds.max_channels)?,
        }),
        "ping" => Ok(Op::Ping),
        other => Err(Error::new(
            Code::UnknownType,
            format!("unknown frame type {other:?}; expected subscribe, unsubscribe, auth or ping"),
        )),
    }
}

/// `token`: absent, or a non-empty string.
fn token(o: &Map<String, Value>) -> Result<Option<String>, Error> {
    match o.get("token") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if !t.is_empty() => Ok(Some(t.clone())),
        Some(_) => Err(Error::new(
            Code::InvalidFrame,
            "token must be a non-empty string",
        )),
    }
}

/// `channels`: a non-empty list of at most `max` channel names, duplicates
/// dropped (in one pass: a hostile list costs its length, not its square).
fn channel_list(o: &Map<String, Value>, max: usize) -> Result<Vec<ChannelName>, Error> {
    let Some(Value::Array(items)) = o.get("channels") else {
        return Err(Error::new(
            Code::InvalidFrame,
            "channels must be a list of channel names",
        ));
    };
    if items.is_empty() {
        return Err(Error::new(Code::InvalidFrame, "channels must not be empty"));
    }
    if items.len() > max {
        return Err(too_many(max));
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut out: Vec<ChannelName> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(Error::new(
                Code::InvalidFrame,
                "channels must be a list of channel names",
            ));
        };
        if seen.insert(name.as_str()) {
            out.push(ChannelName::new(name)?);
        }
    }
    Ok(out)
}

/// The refusal of a subscription over `max` channels.
pub(crate) fn too_many(max: usize) -> Error {
    Error::new(
        Code::TooManySubscriptions,
        format!("at most {max} channels per connection"),
    )
}

/// `since` (one cursor or a list, combined) or `last` (a count, capped);
/// neither means "from now".
fn start(o: &Map<String, Value>, max_last: usize) -> Result<Start, Error> {
    let since = o.get("since").filter(|v| !v.is_null());
    let last = o.get("last").filter(|v| !v.is_null());
    match (since, last) {
        (Some(_), Some(_)) => Err(Error::new(
            Code::InvalidFrame,
            "give either since or last, not both",
        )),
        (Some(Value::String(c)), None) => Ok(Start::From(Cursor::parse(c)?)),
        (Some(Value::Array(list)), None) => {
            let mut cursors = Vec::with_capacity(list.len());
            for c in list {
                let Value::String(c) = c else {
                    return Err(Error::new(
                        Code::InvalidFrame,
                        "since must be a cursor or a list of cursors",
                    ));
                };
                cursors.push(Cursor::parse(c)?);
            }
            Cursor::combine(cursors)
                .map(Start::From)
                .ok_or_else(|| Error::new(Code::InvalidFrame, "since must not be an empty list"))
        }
        (Some(_), None) => Err(Error::new(
            Code::InvalidFrame,
            "since must be a cursor or a list of cursors",
        )),
        (None, Some(n)) => n
            .as_u64()
            .map(|n| Start::Last(usize::try_from(n).unwrap_or(usize::MAX).min(max_last)))
            .ok_or_else(|| Error::new(Code::InvalidFrame, "last must be a non-negative integer")),
        (None, None) => Ok(Start::Now),
    }
}

/// Starts a server frame: `{"type":"<kind>"` plus `,"ref":..` when the
/// client gave one. The caller appends fields and the closing brace.
fn open(kind: &str, reference: Option<&str>) -> String {
    let mut out = String::with_capacity(96);
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push('"');
    if let Some(r) = reference {
        out.push_str(",\"ref\":");
        write_json_str(&mut out, r);
    }
    out
}

fn push_channels<'a>(out: &mut String, channels: impl IntoIterator<Item = &'a ChannelName>) {
    out.push_str(",\"channels\":[");
    for (i, c) in channels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(out, c.as_str());
    }
    out.push(']');
}

/// `{"type":"subscribed","ref":..,"channels":[..],"cursor":".."}`.
pub(crate) fn subscribed(
    reference: Option<&str>,
    channels: &[ChannelName],
    cursor: &Cursor,
) -> Bytes {
    let mut out = open("subscribed", reference);
    push_channels(&mut out, channels);
    let _ = write!(out, ",\"cursor\":\"{cursor}\"}}");
    Bytes::from(out)
}

/// `{"type":"unsubscribed","ref":..,"channels":[..]}`.
pub(crate) fn unsubscribed(reference: Option<&str>, channels: &[ChannelName]) -> Bytes {
    let mut out = open("unsubscribed", reference);
    push_channels(&mut out, channels);
    out.push('}');
    Bytes::from(out)
}

/// Why a `gap` frame is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapReason {
    /// Messages were missed: the position was older than the retained
    /// history (or from another store). Delivery continues from the oldest
    /// retained message.
    History,
    /// The channels were deleted and are no longer subscribed.
    Deleted,
}

/// `{"type":"gap","channels":[..],"reason":"history"|"deleted"}`.
pub(crate) fn gap(channels: &[ChannelName], reason: GapReason) -> Bytes {
    let mut out = open("gap", None);
    push_channels(&mut out, channels);
    out.push_str(match reason {
        GapReason::History => ",\"reason\":\"history\"}",
        GapReason::Deleted => ",\"reason\":\"deleted\"}",
    });
    Bytes::from(out)
}

/// `{"type":"error","ref":..,"code":"..","message":".."}` (plus
/// `"request_id"` for a server error), by the same rule as an HTTP error
/// answer ([`Error::report`]): a server error's detail is logged, never
/// sent.
pub(crate) fn error(reference: Option<&str>, e: &Error) -> Bytes {
    let mut out = open("error", reference);
    out.push(',');
    e.report().write_fields(&mut out);
    out.push('}');
    Bytes::from(out)
}

/// An `error` frame about one channel (`"channel":".."` added): a channel
/// the connection's credentials may not read.
pub(crate) fn channel_error(reference: Option<&str>, channel: &ChannelName, e: &Error) -> Bytes {
    let mut out = open("error", reference);
    out.push_str(",\"channel\":");
    write_json_str(&mut out, channel.as_str());
    out.push(',');
    e.report().write_fields(&mut out);
    out.push('}');
    Bytes::from(out)
}

/// `{"type":"expired"}`: the connection's token expired; delivery waits
/// for an `auth` frame with a fresh one.
pub(crate) fn expired() -> Bytes {
    Bytes::from_static(br#"{"type":"expired"}"#)
}

/// `{"type":"authorized","ref":..}`: an `auth` frame's token was accepted.
pub(crate) fn authorized(reference: Option<&str>) -> Bytes {
    let mut out = open("authorized", reference);
    out.push('}');
    Bytes::from(out)
}

/// `{"type":"pong","ref":..}`.
pub(crate) fn pong(reference: Option<&str>) -> Bytes {
    let mut out = open("pong", reference);
    out.push('}');
    Bytes::from(out)
}

/// `{"type":"message","channel":..,"id":..,"event":..,"data":..,"time":..,
/// "cursor":".."}`, cached in the message: built by the first connection
/// that sends it, shared by all the others. The cursor resumes the
/// message's channel right after it ([`Cursor::after`]), the same for every
/// connection, so it belongs in the shared frame.
struct MessageFrame;

impl Encoding for MessageFrame {
    fn encode(m: &Message) -> Bytes {
        let mut out = String::with_capacity(m.payload.len() + 160);
        out.push_str("{\"type\":\"message\",");
        message_fields(&mut out, m);
        let _ = write!(out, ",\"cursor\":\"{}\"}}", Cursor::after(m));
        Bytes::from(out)
    }
}

/// The `message` frame of `m`, encoded once per message (not per
/// connection).
pub(crate) fn message(m: &Message) -> Bytes {
    m.encoded::<MessageFrame>()
}

/// A `message` frame as it goes on the wire: the WebSocket header (a final
/// text frame, unmasked, as a server sends it: RFC 6455, 5.2) and the
/// payload, cached in the message for the publishing task to write as it
/// is to every connection.
pub(crate) fn wire(m: &Message) -> Bytes {
    m.encoded::<WireFrame>()
}

struct WireFrame;

impl Encoding for WireFrame {
    fn encode(m: &Message) -> Bytes {
        let payload = message(m);
        let len = payload.len();
        let mut out = Vec::with_capacity(len + 10);
        out.push(0x81);
        match len {
            0..=125 => out.push(len as u8),
            126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&payload);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{Bus, Config, Draft, Payload};
    use proptest::prelude::*;

    fn ch(n: &str) -> ChannelName {
        ChannelName::new(n).unwrap()
    }

    fn bounds(max_last: usize) -> Bounds {
        Bounds {
            max_last,
            max_channels: 100,
        }
    }

    fn code(text: &str) -> &'static str {
        parse(text, bounds(1000)).op.unwrap_err().code().as_str()
    }

    #[test]
    fn subscribe_forms() {
        let f = parse(
            r#"{"type":"subscribe","channels":["a","b","a"],"ref":"r1"}"#,
            bounds(10),
        );
        assert_eq!(f.reference.as_deref(), Some("r1"));
        assert_eq!(
            f.op,
            Ok(Op::Subscribe {
                channels: vec![ch("a"), ch("b")],
                start: Start::Now,
                token: None,
            })
        );
        let f = parse(
            r#"{"type":"subscribe","channels":["a"],"last":5000}"#,
            bounds(10),
        );
        assert_eq!(
            f.op,
            Ok(Op::Subscribe {
                channels: vec![ch("a")],
                start: Start::Last(10),
                token: None,
            })
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","channels":["a"]}"#, bounds(10)).op,
            Ok(Op::Unsubscribe {
                channels: vec![ch("a")]
            })
        );
        assert_eq!(
            parse(r#"{"type":"ping","extra":1}"#, bounds(10)).op,
            Ok(Op::Ping)
        );
    }

    #[test]
    fn a_list_longer_than_the_limit_is_refused_before_it_is_read() {
        let few = Bounds {
            max_last: 10,
            max_channels: 2,
        };
        let refused = |text: &str| parse(text, few).op.unwrap_err().code().as_str();
        // Three names, one of them invalid: the length is checked first.
        assert_eq!(
            refused(r#"{"type":"subscribe","channels":["a","b","c d"]}"#),
            "too_many_subscriptions"
        );
        assert_eq!(
            refused(r#"{"type":"unsubscribe","channels":["a","a","a"]}"#),
            "too_many_subscriptions"
        );
        // At the limit, duplicates are dropped.
        assert_eq!(
            parse(r#"{"type":"subscribe","channels":["a","a"]}"#, few).op,
            Ok(Op::Subscribe {
                channels: vec![ch("a")],
                start: Start::Now,
                token: None,
            })
        );
        // A big list of distinct names is handled in one pass.
        let names: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
        let text = serde_json::json!({"type":"subscribe","channels":names}).to_string();
        let many = Bounds {
            max_last: 10,
            max_channels: 20_000,
        };
        let Ok(Op::Subscribe { channels, .. }) = parse(&text, many).op else {
            panic!("refused");
        };
        assert_eq!(channels.len(), 20_000);
    }

    #[test]
    fn tokens_ride_on_subscribe_and_auth_frames() {
        let f = parse(
            r#"{"type":"subscribe","channels":["a"],"token":"t1"}"#,
            bounds(10),
        );
        let Ok(Op::Subscribe { token, .. }) = f.op else {
            panic!("not a subscribe")
        };
        assert_eq!(token.as_deref(), Some("t1"));
        let f = parse(r#"{"type":"auth","token":"t2","ref":"r"}"#, bounds(10));
        assert_eq!(f.op, Ok(Op::Auth { token: "t2".into() }));
        assert_eq!(f.reference.as_deref(), Some("r"));
        for bad in [
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":""}"#,
            r#"{"type":"auth","token":7}"#,
            r#"{"type":"subscribe","channels":["a"],"token":["t"]}"#,
        ] {
            assert_eq!(code(bad), "invalid_frame", "{bad}");
        }
    }

    #[test]
    fn auth_frames_from_the_server_are_json() {
        let e = Error::new(Code::Forbidden, "not allowed to read b");
        let v: Value = serde_json::from_slice(&channel_error(Some("r"), &ch("b"), &e)).unwrap();
        assert_eq!(
            (
                v["type"].as_str(),
                v["code"].as_str(),
                v["channel"].as_str()
            ),
            (Some("error"), Some("forbidden"), Some("b"))
        );
        assert_eq!(v["ref"], "r");
        let v: Value = serde_json::from_slice(&expired()).unwrap();
        assert_eq!(v["type"], "expired");
        let v: Value = serde_json::from_slice(&authorized(Some("x"))).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["ref"].as_str()),
            (Some("authorized"), Some("x"))
        );
    }

    #[tokio::test]
    async fn since_takes_one_cursor_or_a_list() {
        let bus = Bus::memory(Config::default());
        let published = bus
            .publish(
                ["a", "b"]
                    .iter()
                    .map(|c| Draft {
                        channel: ch(c),
                        event: None,
                        payload: Payload::text("x").unwrap(),
                    })
                    .collect(),
            )
            .await
            .unwrap();
        let (ca, cb) = (&published[0].cursor, &published[1].cursor);
        let one = format!(r#"{{"type":"subscribe","channels":["a"],"since":"{ca}"}}"#);
        assert_eq!(
            parse(&one, bounds(10)).op,
            Ok(Op::Subscribe {
                channels: vec![ch("a")],
                start: Start::From(ca.clone()),
                token: None,
            })
        );
        let two = format!(r#"{{"type":"subscribe","channels":["a","b"],"since":["{ca}","{cb}"]}}"#);
        let Ok(Op::Subscribe {
            start: Start::From(c),
            ..
        }) = parse(&two, bounds(10)).op
        else {
            panic!("not a subscribe from a cursor");
        };
        assert_eq!(c.position(&ch("a")), Some((published[0].message.id, false)));
        assert_eq!(c.position(&ch("b")), Some((published[1].message.id, false)));
    }

    #[test]
    fn bad_frames_have_codes() {
        assert_eq!(code("not json"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_json");
        assert_eq!(code(r#"{"channels":["a"]}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":7}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"publish"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"subscribe"}"#), "invalid_frame");
        assert_eq!(
            code(r#"{"type":"subscribe","channels":[]}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":[1]}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":["a b"]}"#),
            "invalid_channel"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":["a"],"since":"!!"}"#),
            "invalid_cursor"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":["a"],"since":[]}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":["a"],"last":-1}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","channels":["a"],"last":1,"since":"x"}"#),
            "invalid_frame"
        );
        let f = parse(r#"{"type":"nope","ref":"k"}"#, bounds(10));
        assert_eq!(f.reference.as_deref(), Some("k"), "ref is echoed on errors");
        assert_eq!(code(r#"{"type":"ping","ref":3}"#), "invalid_frame");
    }

    #[tokio::test]
    async fn server_frames_are_json() {
        let r = Error::new(Code::InvalidJson, "bad \"quote\"");
        let cursor = Bus::memory(Config::default())
            .subscribe(&[ch("a")], &Start::Now)
            .await
            .unwrap()
            .cursor();
        for (bytes, kind) in [
            (subscribed(Some("x"), &[ch("a")], &cursor), "subscribed"),
            (unsubscribed(None, &[ch("a"), ch("b")]), "unsubscribed"),
            (gap(&[ch("a")], GapReason::Deleted), "gap"),
            (error(Some("\n"), &r), "error"),
            (pong(None), "pong"),
        ] {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["type"], kind);
        }
        let v: Value = serde_json::from_slice(&error(Some("\n"), &r)).unwrap();
        assert_eq!(v["ref"], "\n");
        assert_eq!(v["message"], "bad \"quote\"");
    }

    #[tokio::test]
    async fn message_frame_is_built_once_and_carries_the_cursor() {
        let bus = Bus::memory(Config::default());
        let p = bus
            .publish(vec![Draft {
                channel: ch("news"),
                event: None,
                payload: Payload::json(r#"{"k":1}"#).unwrap(),
            }])
            .await
            .unwrap();
        let a = message(&p[0].message);
        let b = message(&p[0].message);
        assert_eq!(a.as_ptr(), b.as_ptr(), "shared, not re-encoded");
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["channel"], "news");
        assert_eq!(v["data"]["k"], 1);
        assert_eq!(v["cursor"], p[0].cursor.to_string());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z!. ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("channels".to_string()),
                        Just("since".to_string()),
                        Just("last".to_string()),
                        Just("ref".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever a client sends, parsing answers (never panics), and a
        /// refusal carries one of the documented codes.
        #[test]
        fn parse_never_panics_and_refusals_have_known_codes(text in ".{0,200}") {
            if let Err(r) = parse(&text, bounds(100)).op {
                prop_assert!(["invalid_json", "invalid_frame", "unknown_type", "invalid_channel", "invalid_cursor"].contains(&r.code().as_str()), "{}", r.code());
            }
        }

        /// Structured (JSON) input: same guarantees, and a valid `ref` is
        /// always echoed, whatever else is wrong.
        #[test]
        fn json_frames_parse_or_refuse(v in json_value()) {
            let text = v.to_string();
            let f = parse(&text, bounds(100));
            if let Some(Value::String(r)) = v.get("ref") {
                prop_assert_eq!(f.reference.as_deref(), Some(r.as_str()));
            }
            match f.op {
                Ok(Op::Subscribe { channels, start, .. }) => {
                    prop_assert_eq!(v["type"].as_str(), Some("subscribe"));
                    prop_assert!(!channels.is_empty());
                    if let Start::Last(n) = start { prop_assert!(n <= 100); }
                }
                Ok(Op::Unsubscribe { channels }) => {
                    prop_assert_eq!(v["type"].as_str(), Some("unsubscribe"));
                    prop_assert!(!channels.is_empty());
                }
                Ok(Op::Ping) => prop_assert_eq!(v["type"].as_str(), Some("ping")),
                Ok(Op::Auth { .. }) => prop_assert_eq!(v["type"].as_str(), Some("auth")),
                Err(r) => prop_assert!(["invalid_json", "invalid_frame", "unknown_type", "invalid_channel", "invalid_cursor"].contains(&r.code().as_str())),
            }
        }

        /// Valid subscribe frames built from any channel names round-trip.
        #[test]
        fn valid_subscribes_round_trip(names in prop::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..8), last in 0u64..5000, r in "\\PC{0,10}") {
            let v = serde_json::json!({"type":"subscribe","channels":names,"last":last,"ref":r});
            let f = parse(&v.to_string(), bounds(1000));
            prop_assert_eq!(f.reference.as_deref(), Some(r.as_str()));
            let Ok(Op::Subscribe { channels, start, .. }) = f.op else { return Err(TestCaseError::fail("refused")) };
            let mut want: Vec<&str> = Vec::new();
            for n in &names { if !want.contains(&n.as_str()) { want.push(n) } }
            prop_assert_eq!(channels.iter().map(ChannelName::as_str).collect::<Vec<_>>(), want);
            prop_assert_eq!(start, Start::Last((last as usize).min(1000)));
        }
    }
}
