//! Cursors: opaque, URL-safe positions that the server hands out and takes
//! back.
//!
//! A cursor names a position in one or more channels at once, so that a
//! multi-channel subscription resumes with a single string, and it carries the
//! engine's epoch, so that a cursor from another store (a restarted in-memory
//! server, a Redis that lost its data) is recognised and reported as a gap
//! instead of being trusted.
//!
//! Wire form: base64url (no padding) of `version, epoch, (channel hash,
//! position)*`, with the numbers as LEB128 varints and the channel hash as 8
//! bytes (FNV-1a 64 of the name, stable across instances). Only the shortest
//! encoding of a number is accepted (no trailing zero groups, nothing past 64
//! bits), so that one position has exactly one text. A position is the
//! id of the last message seen; 0 means "before the channel's first message".
//! This module does not decide what a position means for delivery; the
//! subscription does.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{ChannelName, Error};

const VERSION: u8 = 1;
/// Longest cursor text accepted, far above what 32 channels need.
const MAX_TEXT: usize = 8 * 1024;

/// A position in one or more channels.
#[derive(Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) epoch: u64,
    /// `(channel hash, position, stale)`; `stale` marks a position that came
    /// from another epoch when cursors were combined.
    pub(crate) entries: Vec<(u64, u64, bool)>,
}

impl Cursor {
    /// A cursor with no positions yet.
    pub(crate) fn new(epoch: u64) -> Self {
        Cursor {
            epoch,
            entries: Vec::new(),
        }
    }

    /// Decodes cursor text. Fails with [`Error::InvalidCursor`] for anything
    /// this server could not have produced; never for old or foreign cursors.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidCursor(why.to_string());
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > MAX_TEXT {
            return Err(bad("too long"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad("not base64url"))?;
        let mut r = Reader(&raw);
        if r.byte().ok_or_else(|| bad("truncated"))? != VERSION {
            return Err(bad("unknown version"));
        }
        let epoch = r.varint().map_err(bad)?;
        let mut entries = Vec::new();
        while !r.0.is_empty() {
            let hash = r.u64_le().ok_or_else(|| bad("truncated"))?;
            let word = r.varint().map_err(bad)?;
            entries.push((hash, word >> 1, word & 1 == 1));
        }
        Ok(Cursor { epoch, entries })
    }

    /// Combines several cursors into one, keeping the furthest position for a
    /// channel named twice. Positions from an epoch other than the first
    /// cursor's are kept but marked stale, so that they resume with a gap.
    pub fn combine(cursors: impl IntoIterator<Item = Cursor>) -> Option<Cursor> {
        let mut iter = cursors.into_iter();
        let mut out = iter.next()?;
        for c in iter {
            let stale = c.epoch != out.epoch;
            for (hash, pos, s) in c.entries {
                out.set_entry(hash, pos, s || stale);
            }
        }
        Some(out)
    }

    /// The cursor that resumes `message`'s channel right after it, in the
    /// epoch the message was stored in.
    pub fn after(message: &crate::Message) -> Cursor {
        let mut c = Cursor::new(message.epoch());
        c.set(&message.channel, message.id);
        c
    }

    /// Moves this cursor's position in `message`'s channel to `message`
    /// (the position after it). Used to give each message of a
    /// multi-channel batch the cursor that resumes right after it.
    pub fn advance(&mut self, message: &crate::Message) {
        let hash = message.channel.stable_hash();
        match self.entries.iter_mut().find(|(k, _, _)| *k == hash) {
            Some(e) => *e = (hash, message.id, false),
            None => self.entries.push((hash, message.id, false)),
        }
    }

    /// The epoch this cursor was issued in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The position recorded for `channel`: `Some((id, stale))`, or `None`
    /// when the cursor does not name the channel.
    pub fn position(&self, channel: &ChannelName) -> Option<(u64, bool)> {
        let h = channel.stable_hash();
        self.entries
            .iter()
            .find(|(k, _, _)| *k == h)
            .map(|&(_, p, s)| (p, s))
    }

    pub(crate) fn set(&mut self, channel: &ChannelName, pos: u64) {
        self.set_entry(channel.stable_hash(), pos, false);
    }

    fn set_entry(&mut self, hash: u64, pos: u64, stale: bool) {
        match self.entries.iter_mut().find(|(k, _, _)| *k == hash) {
            Some(e) if e.2 && !stale => *e = (hash, pos, false),
            Some(e) if e.2 == stale => e.1 = e.1.max(pos),
            Some(_) => {}
            None => self.entries.push((hash, pos, stale)),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(12 + self.entries.len() * 14);
        raw.push(VERSION);
        put_varint(&mut raw, self.epoch);
        for &(hash, pos, stale) in &self.entries {
            raw.extend_from_slice(&hash.to_le_bytes());
            put_varint(&mut raw, (pos << 1) | u64::from(stale));
        }
        f.write_str(&URL_SAFE_NO_PAD.encode(raw))
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u64_le(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    /// A LEB128 number in its shortest encoding; fails with why not.
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte().ok_or("truncated")?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("number longer than 64 bits");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err("number not in its shortest encoding");
                }
                return Ok(v);
            }
        }
        Err("number longer than 64 bits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::new(s).unwrap()
    }

    #[test]
    fn round_trip() {
        let mut c = Cursor::new(42);
        c.set(&ch("a"), 7);
        c.set(&ch("b"), 1_700_000_000_000_000);
        let text = c.to_string();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let back = Cursor::parse(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.position(&ch("a")), Some((7, false)));
        assert_eq!(back.position(&ch("zz")), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "!!!", "AAAA", "AQ", &"A".repeat(9000), "AgE"] {
            assert!(
                matches!(Cursor::parse(bad), Err(Error::InvalidCursor(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn combine_keeps_furthest_and_marks_foreign_epochs() {
        let mut a = Cursor::new(1);
        a.set(&ch("x"), 5);
        let mut b = Cursor::new(1);
        b.set(&ch("x"), 9);
        b.set(&ch("y"), 3);
        let mut c = Cursor::new(2);
        c.set(&ch("z"), 4);
        let all = Cursor::combine([a, b, c]).unwrap();
        assert_eq!(all.position(&ch("x")), Some((9, false)));
        assert_eq!(all.position(&ch("y")), Some((3, false)));
        assert_eq!(all.position(&ch("z")), Some((4, true)));
    }

    /// Cursor text of version 1 whose epoch is encoded as `epoch` (raw
    /// varint bytes).
    fn with_epoch_bytes(epoch: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode([&[VERSION][..], epoch].concat())
    }

    fn is_invalid(text: &str) -> bool {
        matches!(Cursor::parse(text), Err(Error::InvalidCursor(_)))
    }

    #[test]
    fn rejects_overlong_and_padded_numbers() {
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            Cursor::parse(&with_epoch_bytes(&max)).unwrap().epoch,
            u64::MAX
        );
        // A tenth byte carrying more than the 64th bit used to lose it.
        let mut over = max;
        over[9] = 0x02;
        assert!(is_invalid(&with_epoch_bytes(&over)));
        let mut eleven = max.to_vec();
        eleven[9] = 0x81;
        eleven.push(0x00);
        assert!(is_invalid(&with_epoch_bytes(&eleven)));
        // Zero as [0x80, 0x00], one as [0x81, 0x80, 0x00].
        assert!(is_invalid(&with_epoch_bytes(&[0x80, 0x00])));
        assert!(is_invalid(&with_epoch_bytes(&[0x81, 0x80, 0x00])));
        assert_eq!(Cursor::parse(&with_epoch_bytes(&[0x00])).unwrap().epoch, 0);
    }

    proptest! {
        #[test]
        fn every_number_round_trips_in_its_shortest_encoding(v: u64) {
            let mut raw = Vec::new();
            put_varint(&mut raw, v);
            let mut r = Reader(&raw);
            prop_assert_eq!(r.varint(), Ok(v));
            prop_assert!(r.0.is_empty());
            prop_assert_eq!(Cursor::parse(&with_epoch_bytes(&raw)).unwrap().epoch, v);
        }

        #[test]
        fn padded_encodings_are_refused(v: u64, extra in 1usize..4) {
            let mut raw = Vec::new();
            put_varint(&mut raw, v);
            // Trailing zero groups: the same number, spelled longer.
            *raw.last_mut().unwrap() |= 0x80;
            raw.extend(std::iter::repeat_n(0x80, extra - 1));
            raw.push(0x00);
            prop_assert!(is_invalid(&with_epoch_bytes(&raw)));
        }

        #[test]
        fn accepted_text_is_the_one_text_of_its_cursor(raw in proptest::collection::vec(any::<u8>(), 0..48)) {
            let text = with_epoch_bytes(&raw);
            if let Ok(c) = Cursor::parse(&text) {
                prop_assert_eq!(c.to_string(), text);
            }
        }

        #[test]
        fn parse_never_panics(s in "[A-Za-z0-9_-]{0,200}") {
            let _ = Cursor::parse(&s);
        }

        #[test]
        fn round_trips_any_positions(epoch: u64, entries in proptest::collection::vec((any::<u64>(), 0u64..(1 << 62), any::<bool>()), 0..40)) {
            let c = Cursor { epoch, entries };
            prop_assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        }
    }
}
