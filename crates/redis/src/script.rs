//! The Lua scripts that keep each channel's ids and history consistent in
//! Redis, and the text form of a stored message.
//!
//! Every change to a channel is one script, so it is atomic and one round
//! trip: Redis runs scripts one at a time, which is what orders ids across
//! instances. Scripts take the time from Redis (`TIME`), so every instance
//! stamps and expires messages by the same clock, unless the engine runs on
//! a manual [`Clock`](herald_bus::Clock) (tests): then the engine passes its
//! time, and message times and ages follow it. Ids and key expiry
//! (`PEXPIRE`) always follow Redis's own clock.
//!
//! A stored message (a list element, also the tail of a notification) is
//! `id \n time \n size \n order \n json \n event \n data`: the scripts read
//! `time` and `size` when trimming, `order` is the engine-wide publish order
//! (one counter for every channel, so that messages of several channels merge
//! as they were published), and `data` may hold anything, newlines included.
//! What it leaves out: connections and retries (the engine's job).

use bytes::Bytes;
use herald_bus::{ChannelName, Clock, Draft, EventName, Message, Payload};
use redis::Script;

/// Helpers every script starts with.
const PRELUDE: &str = r#"
-- A number as an integer's digits ('%d': far cheaper in Redis's Lua than
-- '%.0f' or tostring, and exact for every id, time and count used here).
local function num(x) return string.format('%d', x) end

-- The epoch, created with the caller's random candidate if Redis has none
-- (first start, or a Redis that lost its data).
local function epoch_of(key, candidate)
  local e = redis.call('GET', key)
  if not e then
    redis.call('SET', key, candidate)
    e = candidate
  end
  return e
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Message time in milliseconds: the engine's clock when it passed one,
-- else Redis's.
local function clock_ms(arg, us)
  if arg ~= '' then return tonumber(arg) end
  return math.floor(us / 1000)
end

-- Drops messages from the front while the history is over a bound; answers
-- the retained count and bytes. Never creates the meta key (it would have
-- no expiry).
local function prune(meta, log, max_n, max_bytes, min_time)
  local n = redis.call('LLEN', log)
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  local changed = false
  while n > 0 do
    local front = redis.call('LINDEX', log, 0)
    local t, size = string.match(front, '^%d+\n(%d+)\n(%d+)\n')
    if n <= max_n and bytes <= max_bytes and tonumber(t) >= min_time then break end
    redis.call('LPOP', log)
    n = n - 1
    bytes = bytes - tonumber(size)
    changed = true
  end
  if n == 0 and bytes ~= 0 then
    bytes = 0
    changed = true
  end
  if changed and redis.call('EXISTS', meta) == 1 then
    redis.call('HSET', meta, 'bytes', num(bytes))
  end
  return n, bytes
end

-- One channel's page: {origin, oldest, last, bytes, {elements}} after
-- `after`, at most `limit` elements, once the history is pruned to its
-- bounds (the time only read when the channel has messages).
local function page(meta, log, after, limit, bounds)
  local last = tonumber(redis.call('HGET', meta, 'last') or '0')
  if last == 0 then return {0, 1, 0, 0, {}} end
  local now_ms = clock_ms(bounds[4], now_us())
  local n, bytes = prune(meta, log, bounds[1], bounds[2], now_ms - bounds[3])
  local origin = tonumber(redis.call('HGET', meta, 'origin'))
  local oldest = last + 1 - n
  local start = math.max(after + 1 - oldest, 0)
  local items = {}
  if limit > 0 and start < n then
    items = redis.call('LRANGE', log, start, start + limit - 1)
  end
  return {origin, oldest, last, bytes, items}
end
"#;

/// KEYS: epoch, floor, order, then meta and log of each distinct channel.
/// ARGV: candidate epoch, max messages, max bytes, max age (ms), log expiry
/// (ms), metadata expiry (ms, twice the log's: the second half is a
/// tombstone that keeps the id sequence), clock (ms, or empty for Redis's
/// `TIME`), channel count `c`, `c` notification channels, then three per
/// draft: channel number (1-based), `json flag \n event`, data.
/// Answers one string, `epoch \n time_ms \n order \n id \n id …`, one id
/// per draft: the drafts' publish orders are `order + 1`, `order + 2`, … in
/// draft order.
///
/// The script is written for Redis's Lua, where every command, number
/// formatting and table costs thousands of instructions: each channel's
/// metadata is read once per call and written once, its new messages are
/// appended with one `RPUSH`, and per message there is the element, its
/// notification and the trim of what falls out of the bounds. The result is
/// what storing the drafts one by one would leave (trimming from the front
/// after each append or once after all of them keeps the same suffix).
const PUBLISH: &str = r#"
local epoch = epoch_of(KEYS[1], ARGV[1])
local max_n, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local channels = tonumber(ARGV[8])
local now = now_us()
local now_ms = clock_ms(ARGV[7], now)
local now_s = num(now_ms)
local min_time = now_ms - tonumber(ARGV[4])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
local raised = false
local count = (#ARGV - 8 - channels) / 3
local first = redis.call('INCRBY', KEYS[3], count) - count
local order = first
-- Per channel, read on first use: last id and retained bytes, the head of
-- its notifications, and the elements to append (the retained count is
-- what the append answers).
local state, touched, ids = {}, {}, {}
for i = 9 + channels, #ARGV, 3 do
  local c = ARGV[i]
  local s = state[c]
  if not s then
    local k = tonumber(c)
    local meta, log = KEYS[2 + 2 * k], KEYS[3 + 2 * k]
    local h = redis.call('HMGET', meta, 'last', 'origin', 'bytes', 'dead')
    if h[4] then redis.call('HDEL', meta, 'dead') end
    s = {meta = meta, log = log, notify = ARGV[8 + k], items = {}, last = 0, bytes = 0}
    if h[1] then
      s.last, s.bytes = tonumber(h[1]), tonumber(h[3] or '0')
      s.head = 'm\n' .. epoch .. '\n' .. h[2] .. '\n'
    end
    state[c] = s
    touched[#touched + 1] = s
  end
  local id
  if s.last == 0 then
    id = math.max(now, floor + 1)
    s.origin = num(id - 1)
    s.head = 'm\n' .. epoch .. '\n' .. s.origin .. '\n'
  else
    id = s.last + 1
  end
  if id > floor then floor, raised = id, true end
  local kind, data = ARGV[i + 1], ARGV[i + 2]
  -- #kind is the event's length plus 2.
  local size = #data + #kind + 62
  order = order + 1
  s.last, s.last_s = id, num(id)
  local element = s.last_s .. '\n' .. now_s .. '\n' .. num(size) .. '\n' .. num(order)
    .. '\n' .. kind .. '\n' .. data
  s.items[#s.items + 1] = element
  s.bytes = s.bytes + size
  redis.call('PUBLISH', s.notify, s.head .. element)
  ids[#ids + 1] = s.last_s
end
for _, s in ipairs(touched) do
  -- Append in slices (a Lua call takes a bounded number of arguments).
  for at = 1, #s.items, 1000 do
    s.n = redis.call('RPUSH', s.log, unpack(s.items, at, math.min(at + 999, #s.items)))
  end
  -- Trim from the front: by count and bytes without looking first (LPOP
  -- answers the element, so its time and size), then by age while the
  -- front is too old. Times in a log only grow, so once a dropped message
  -- was young enough the front is too.
  local young = false
  while s.n > 0 and (s.n > max_n or s.bytes > max_bytes) do
    local t, size = string.match(redis.call('LPOP', s.log), '^%d+\n(%d+)\n(%d+)\n')
    s.n = s.n - 1
    s.bytes = s.bytes - tonumber(size)
    young = tonumber(t) >= min_time
  end
  while s.n > 0 and not young do
    local t, size = string.match(redis.call('LINDEX', s.log, 0), '^%d+\n(%d+)\n(%d+)\n')
    if tonumber(t) >= min_time then break end
    redis.call('LPOP', s.log)
    s.n = s.n - 1
    s.bytes = s.bytes - tonumber(size)
  end
  if s.n == 0 then s.bytes = 0 end
  if s.origin then
    redis.call('HSET', s.meta, 'last', s.last_s, 'bytes', num(s.bytes), 'origin', s.origin)
  else
    redis.call('HSET', s.meta, 'last', s.last_s, 'bytes', num(s.bytes))
  end
  redis.call('PEXPIRE', s.meta, ARGV[6])
  if s.n > 0 then redis.call('PEXPIRE', s.log, ARGV[5]) end
end
if raised then redis.call('SET', KEYS[2], num(floor)) end
return epoch .. '\n' .. now_s .. '\n' .. num(first) .. '\n' .. table.concat(ids, '\n')
"#;

/// KEYS: epoch, then meta and log of each channel. ARGV: candidate epoch,
/// limit, max messages, max bytes, max age (ms), clock (ms, or empty for
/// Redis's `TIME`), then the `after` of each channel.
/// Answers `{epoch, {{origin, oldest, last, bytes, {elements}}, ...}}`: one
/// page per channel, in order, so that a subscription's channels are read
/// in one round trip.
const READ: &str = r#"
local epoch = epoch_of(KEYS[1], ARGV[1])
local limit = tonumber(ARGV[2])
local bounds = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]}
local pages = {}
for i = 1, (#KEYS - 1) / 2 do
  pages[i] = page(KEYS[2 * i], KEYS[2 * i + 1], tonumber(ARGV[6 + i]), limit, bounds)
end
return {epoch, pages}
"#;

/// KEYS: epoch, meta, log. ARGV: candidate epoch, notification channel,
/// history age (ms). Drops the history and leaves the metadata as a
/// tombstone for one history age. Answers `{epoch, existed}`; a channel
/// exists if it has live metadata or some instance watches it.
const DELETE: &str = r#"
local epoch = epoch_of(KEYS[1], ARGV[1])
local existed = redis.call('EXISTS', KEYS[3]) == 1
  or (redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HEXISTS', KEYS[2], 'dead') == 0)
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'dead', '1', 'bytes', '0')
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
local told = redis.call('PUBLISH', ARGV[2], 'd\n' .. epoch)
if existed or told > 0 then return {epoch, 1} end
return {epoch, 0}
"#;

/// KEYS: epoch. ARGV: candidate epoch. Answers the epoch.
const EPOCH: &str = "return epoch_of(KEYS[1], ARGV[1])";

/// The loaded scripts (Redis caches them by hash; the client reloads them
/// after a Redis restart).
pub(crate) struct Scripts {
    pub(crate) publish: Script,
    pub(crate) read: Script,
    pub(crate) delete: Script,
    pub(crate) epoch: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            publish: script(PUBLISH),
            read: script(READ),
            delete: script(DELETE),
            epoch: script(EPOCH),
        }
    }
}

/// The clock argument of the publish and read scripts: empty for the
/// system clock (Redis uses its own `TIME`), else the clock's time in ms.
pub(crate) fn clock_arg(clock: &Clock) -> String {
    match clock {
        Clock::System => String::new(),
        Clock::Manual(m) => m.now_millis().to_string(),
    }
}

/// A fresh random epoch candidate. 63 bits, like the memory engine's.
pub(crate) fn candidate_epoch() -> String {
    (rand::random::<u64>() >> 1).to_string()
}

/// Writes the `json flag \n event` argument of `draft` into `buf`
/// (cleared first): the part of a stored message between its order and its
/// data.
pub(crate) fn draft_kind(draft: &Draft, buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(if draft.payload.is_json() { b'1' } else { b'0' });
    buf.push(b'\n');
    if let Some(event) = &draft.event {
        buf.extend_from_slice(event.as_str().as_bytes());
    }
}

/// What the publish script answers: the epoch, the time stamped on the
/// messages, the publish order before the first of them, and each draft's
/// id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) epoch: String,
    pub(crate) time: u64,
    pub(crate) first: u64,
    pub(crate) ids: Vec<u64>,
}

/// Decodes the publish script's answer (`epoch \n time \n order \n id …`).
pub(crate) fn decode_stored(reply: &[u8]) -> Result<Stored, String> {
    let mut fields = reply.split(|&b| b == b'\n');
    let mut next = || fields.next().ok_or("truncated publish answer");
    let epoch = std::str::from_utf8(next()?)
        .map_err(|_| "the epoch is not text")?
        .to_string();
    let time = number(next()?)?;
    let first = number(next()?)?;
    let ids = fields.map(number).collect::<Result<_, _>>()?;
    Ok(Stored {
        epoch,
        time,
        first,
        ids,
    })
}

/// What a notification says.
#[derive(Debug)]
pub(crate) enum Notification {
    /// A message was stored.
    Message {
        epoch: u64,
        origin: u64,
        message: Message,
    },
    /// The channel was deleted.
    Deleted { epoch: u64 },
}

/// Decodes a notification payload (`m\n epoch\n origin\n element` or
/// `d\n epoch`).
pub(crate) fn decode_notification(
    channel: &ChannelName,
    payload: Bytes,
) -> Result<Notification, String> {
    match payload.first() {
        Some(b'd') => {
            let epoch = number(&payload[payload.len().min(2)..])?;
            Ok(Notification::Deleted { epoch })
        }
        Some(b'm') => {
            let (fields, rest) = split_fields::<3>(&payload)?;
            let epoch = number(fields[1])?;
            let origin = number(fields[2])?;
            let message = decode_message(channel, payload.slice(rest..), epoch)?;
            Ok(Notification::Message {
                epoch,
                origin,
                message,
            })
        }
        _ => Err("unknown notification kind".into()),
    }
}

/// Decodes a stored message (a list element) read in `epoch`.
pub(crate) fn decode_message(
    channel: &ChannelName,
    raw: Bytes,
    epoch: u64,
) -> Result<Message, String> {
    let (fields, rest) = split_fields::<6>(&raw)?;
    let id = number(fields[0])?;
    let time = number(fields[1])?;
    let order = number(fields[3])?;
    let json = fields[4] == b"1";
    let event = match fields[5] {
        b"" => None,
        name => Some(
            std::str::from_utf8(name)
                .map_err(|e| e.to_string())
                .and_then(|s| EventName::new(s).map_err(|e| e.to_string()))?,
        ),
    };
    let payload = Payload::restore(raw.slice(rest..), json).map_err(|e| e.to_string())?;
    let draft = Draft {
        channel: channel.clone(),
        event,
        payload,
    };
    Ok(Message::new(draft, id, time, epoch).with_order(order))
}

/// The first `N` newline-terminated fields and the offset of the rest.
fn split_fields<const N: usize>(raw: &[u8]) -> Result<([&[u8]; N], usize), String> {
    let mut fields = [&raw[..0]; N];
    let mut at = 0;
    for field in &mut fields {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated stored message")?;
        *field = &raw[at..at + end];
        at += end + 1;
    }
    Ok((fields, at))
}

fn number(field: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a number: {:?}", String::from_utf8_lossy(field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_the_publish_script_writes() {
        let ch = ChannelName::new("c").unwrap();
        let raw = Bytes::from_static(b"m\n42\n99\n100\n1700000000000\n70\n5\n1\nev\n{\"a\":\n1}");
        let Notification::Message {
            epoch,
            origin,
            message,
        } = decode_notification(&ch, raw).unwrap()
        else {
            panic!("a message notification")
        };
        assert_eq!(
            (epoch, origin, message.id, message.epoch(), message.order()),
            (42, 99, 100, 42, 5)
        );
        assert_eq!(message.time, 1_700_000_000_000);
        assert_eq!(message.event.as_ref().unwrap().as_str(), "ev");
        assert!(message.payload.is_json());
        assert_eq!(message.payload.as_str(), "{\"a\":\n1}");

        let plain = decode_message(&ch, Bytes::from_static(b"7\n1\n65\n3\n0\n\n"), 1).unwrap();
        assert_eq!(
            (plain.id, plain.event.is_none(), plain.payload.as_str()),
            (7, true, "")
        );

        assert!(matches!(
            decode_notification(&ch, Bytes::from_static(b"d\n42")),
            Ok(Notification::Deleted { epoch: 42 })
        ));
        assert!(decode_message(&ch, Bytes::from_static(b"7\n1\n"), 1).is_err());
    }

    #[test]
    fn decodes_the_publish_answer() {
        assert_eq!(
            decode_stored(b"42\n1700000000000\n9\n100\n7"),
            Ok(Stored {
                epoch: "42".into(),
                time: 1_700_000_000_000,
                first: 9,
                ids: vec![100, 7],
            })
        );
        assert!(decode_stored(b"42\n1700000000000").is_err());
        assert!(decode_stored(b"42\n1700000000000\n9\n10x").is_err());
    }
}
