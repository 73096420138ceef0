//! The benchmark payload: 100 ASCII bytes that carry their own sequence
//! number and send time, so that a subscriber can check every delivery
//! whatever wrapping the gateway puts around it (a JSON object, an SSE
//! `data:` line, a long-poll body).
//!
//! Layout: `~hb~` + 16 decimal digits of sequence + `~` + 16 decimal digits
//! of send time (microseconds on [`now_us`]'s clock) + `~` + `x` padding.
//! The marker `~hb~` cannot occur in a herald cursor (URL-safe base64) nor
//! in the channel names the scenarios use, and nothing in the payload needs
//! escaping in JSON, SSE or a URL. Decoding scans borrowed bytes and never
//! allocates. Clock: one monotonic epoch per process, so latency is measured
//! only where publisher and subscriber share a process (fan-out, herd,
//! publish, churn); `idle` runs subscribers in several processes and
//! measures no latency.

use std::{sync::OnceLock, time::Instant};

/// Size of every payload, in bytes.
pub const SIZE: usize = 100;

const MARKER: &[u8] = b"~hb~";
const DIGITS: usize = 16;
/// Marker, sequence, `~`, time.
const HEAD: usize = MARKER.len() + DIGITS + 1 + DIGITS;

/// Microseconds since this process's benchmark epoch (monotonic).
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_micros() as u64
}

/// Writes the payload for `seq`, sent at `sent_us`, into `out`.
pub fn encode(out: &mut [u8; SIZE], seq: u64, sent_us: u64) {
    out.fill(b'x');
    out[..MARKER.len()].copy_from_slice(MARKER);
    put_digits(&mut out[MARKER.len()..MARKER.len() + DIGITS], seq);
    out[MARKER.len() + DIGITS] = b'~';
    put_digits(&mut out[MARKER.len() + DIGITS + 1..HEAD], sent_us);
    out[HEAD] = b'~';
}

/// A fresh payload for `seq`, stamped now.
pub fn stamped(seq: u64) -> [u8; SIZE] {
    let mut out = [0; SIZE];
    encode(&mut out, seq, now_us());
    out
}

/// Calls `found(seq, sent_us)` for every payload in `bytes`, in order.
/// Answers how many it found. Truncated or malformed payloads are skipped:
/// callers hand in whole frames, events or bodies.
pub fn scan(bytes: &[u8], mut found: impl FnMut(u64, u64)) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while let Some(at) = find(rest, MARKER) {
        let p = &rest[at..];
        if p.len() < HEAD {
            break;
        }
        let seq = digits(&p[MARKER.len()..MARKER.len() + DIGITS]);
        let sent = digits(&p[MARKER.len() + DIGITS + 1..HEAD]);
        match (seq, sent) {
            (Some(seq), Some(sent)) if p[MARKER.len() + DIGITS] == b'~' => {
                found(seq, sent);
                n += 1;
                rest = &p[HEAD..];
            }
            _ => rest = &p[MARKER.len()..],
        }
    }
    n
}

/// Position of `needle` in `hay` (short needles; no allocation).
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit()
            .then(|| acc.wrapping_mul(10) + u64::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_inside_any_wrapping() {
        let a = stamped(7);
        let mut b = [0; SIZE];
        encode(&mut b, 12345678901, 42);
        assert!(a.iter().all(u8::is_ascii_graphic));
        let text = format!(
            "id: 1\ndata: {{\"data\":\"{}\"}}\n\n{}",
            std::str::from_utf8(&a).unwrap(),
            std::str::from_utf8(&b).unwrap()
        );
        let mut got = vec![];
        assert_eq!(scan(text.as_bytes(), |s, t| got.push((s, t))), 2);
        assert_eq!(got[0].0, 7);
        assert_eq!(got[1], (12345678901, 42));
    }

    #[test]
    fn truncated_and_malformed_payloads_are_skipped() {
        let a = stamped(3);
        assert_eq!(scan(&a[..HEAD - 1], |_, _| panic!("truncated")), 0);
        let mut bad = a;
        bad[6] = b'z';
        assert_eq!(scan(&bad, |_, _| panic!("malformed")), 0);
        let mut two = bad.to_vec();
        two.extend_from_slice(&a);
        assert_eq!(scan(&two, |s, _| assert_eq!(s, 3)), 1);
    }
}
