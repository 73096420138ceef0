// herald.js: the browser client of the herald push gateway.
//
// One subscription follows one or more channels over the first transport
// that works in the configured order (WebSocket, Server-Sent Events, long
// polling, short polling), falls back when one is refused or buffered, and
// moves back to the better one later. It keeps its position per channel and
// resumes from it on every reconnect and every transport switch, so a
// message is delivered once, in order, whatever happens to the network;
// what herald could not keep is reported through `onGap`, never skipped.
//
// Left out on purpose: publishing (a backend's job, on herald's internal
// listener), adding or removing channels on a live subscription (subscribe
// again), and any dependency: this file is the whole client.

const ALL_TRANSPORTS = ["ws", "sse", "longpoll", "poll"];

/** Defaults of every option, in milliseconds unless named otherwise. */
export const DEFAULTS = Object.freeze({
  transports: ALL_TRANSPORTS,
  backoff: Object.freeze({ base: 500, cap: 30000 }),
  // A connection up this long resets the backoff.
  healthy: 10000,
  // Time for a transport to show it works: a WebSocket `subscribed` reply,
  // an SSE stream's first bytes (herald writes them at once), an HTTP answer.
  probe: 3000,
  // Longest wait for a connection to open before it counts as refused.
  openTimeout: 10000,
  // WebSocket: application ping every `ping`, answer expected within
  // `pongTimeout`; SSE: silence (herald's heartbeat comes every 15 s) longer
  // than `idleTimeout` means a dead stream.
  ping: 15000,
  pongTimeout: 10000,
  idleTimeout: 40000,
  // Long poll hold asked of the server, in seconds; the request is given up
  // `hold + 15 s` after it was sent.
  hold: 25,
  // Short poll interval while nothing is new.
  pollInterval: 2000,
  // Time on a fallback transport before the better one is tried again;
  // doubles (up to 16x) each time the better one still fails.
  retryBetter: 60000,
});

/**
 * A connection to one herald gateway. `baseUrl` is the public listener
 * (`https://push.example.com`, or a path prefix behind a proxy).
 */
export class Herald {
  constructor(baseUrl, options = {}) {
    this.base = String(baseUrl ?? "").replace(/\/+$/, "") || location.origin;
    const o = { ...DEFAULTS, ...options };
    o.backoff = { ...DEFAULTS.backoff, ...(options.backoff ?? {}) };
    o.transports = [...(options.transports ?? DEFAULTS.transports)];
    for (const t of o.transports) {
      if (!ALL_TRANSPORTS.includes(t)) throw new TypeError(`unknown transport ${JSON.stringify(t)}`);
    }
    if (!o.transports.length) throw new TypeError("transports must name at least one transport");
    this.options = o;
    this.subs = new Set();
    this.tokenValue = null;
    this.onOnline = () => this.subs.forEach((s) => s.wake());
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /**
   * Follows `channels` (a name, a comma-separated list or an array). Returns
   * a Subscription; see herald.d.ts for the callbacks.
   */
  subscribe(channels, opts = {}) {
    const list = typeof channels === "string" ? channels.split(",") : [...channels];
    const names = [...new Set(list.map((c) => c.trim()).filter(Boolean))];
    if (!names.length) throw new TypeError("subscribe needs at least one channel");
    const sub = new Subscription(this, names, opts);
    this.subs.add(sub);
    sub.start();
    return sub;
  }

  /** Closes every subscription and stops listening for `online`. */
  close() {
    [...this.subs].forEach((s) => s.close());
    globalThis.removeEventListener?.("online", this.onOnline);
  }

  /** The subscriber token: the cached one, or a fresh one after expiry. */
  async token(expired = false) {
    const t = this.options.token;
    if (t == null) return null;
    if (typeof t !== "function") return String(t);
    if (expired || this.tokenValue == null) this.tokenValue = String(await t({ expired }));
    return this.tokenValue;
  }

  url(path, params = {}) {
    const u = new URL(this.base + path, globalThis.location?.href);
    for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, v);
    return u;
  }
}

/** One subscription: its channels, its position, its connection loop. */
class Subscription {
  constructor(herald, channels, opts) {
    this.herald = herald;
    this.o = herald.options;
    this.channels = channels;
    this.onMessage = opts.onMessage ?? (() => {});
    this.onGap = opts.onGap ?? (() => {});
    this.onStateCb = opts.onState ?? (() => {});
    this.position = new Position(channels);
    if (opts.since) this.position.apply(opts.since);
    this.transport = null;
    this.state = "connecting";
    this.closed = false;
    this.index = 0;
    this.attempt = 0;
    this.betterDelay = this.o.retryBetter;
    this.abort = null;
    this.sleeping = null;
  }

  /** The cursor that resumes every channel right after the last message delivered. */
  get cursor() {
    return this.position.encode();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.abort?.abort("closed");
    this.sleeping?.();
    this.herald.subs.delete(this);
    this.setState("closed", {});
  }

  setState(state, info) {
    this.state = state;
    try {
      this.onStateCb(state, { transport: this.transport, ...info });
    } catch (e) {
      reportLater(e);
    }
  }

  /** Ends a backoff wait at once (the browser came back online). */
  wake() {
    this.sleeping?.();
  }

  async start() {
    await null; // let subscribe() return before the first callback
    while (!this.closed) {
      const name = this.o.transports[this.index];
      this.transport = name;
      this.upSince = null;
      this.abort = new AbortController();
      this.setState("connecting", { attempt: this.attempt });
      let outcome;
      try {
        outcome = await RUNNERS[name](this, this.abort.signal);
      } catch (e) {
        outcome = this.abort.signal.aborted ? this.abort.signal.reason : "lost";
        if (!this.abort.signal.aborted) reportLater(e);
      }
      clearTimeout(this.betterTimer);
      if (this.closed || outcome === "closed") return;
      if (typeof outcome === "object") {
        this.setState("failed", { error: outcome.error });
        this.herald.subs.delete(this);
        this.closed = true;
        return;
      }
      await this.next(outcome);
    }
  }

  /** Chooses what follows a connection's end, and waits as long as it says. */
  async next(outcome) {
    const wasUp = this.upSince != null;
    if (wasUp && Date.now() - this.upSince >= this.o.healthy) this.attempt = 0;
    if (outcome === "upgrade") {
      this.upgrading = true;
      this.index = 0;
      return;
    }
    if (outcome === "expired") this.expired = true;
    if (outcome === "refused" || outcome === "buffered") {
      // Refused or buffered: is it this transport, or is the gateway away?
      if (await this.reachable()) {
        if (this.upgrading) {
          this.upgrading = false;
          this.betterDelay = Math.min(this.betterDelay * 2, this.o.retryBetter * 16);
        }
        if (this.index + 1 < this.o.transports.length) {
          this.setState("fallback", { reason: outcome });
          this.index += 1;
          return;
        }
        this.index = 0;
      }
    }
    if (outcome === "soon") {
      await this.sleep(Math.random() * this.o.backoff.base, outcome);
      return;
    }
    this.attempt += 1;
    const ceiling = Math.min(this.o.backoff.cap, this.o.backoff.base * 2 ** (this.attempt - 1));
    await this.sleep(Math.random() * ceiling, outcome);
  }

  sleep(ms, reason) {
    if (this.closed) return Promise.resolve();
    this.setState("waiting", { delay: Math.round(ms), attempt: this.attempt, reason });
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.sleeping = () => {
        this.sleeping = null;
        done();
      };
    });
  }

  async reachable() {
    try {
      const res = await fetchWithin(this.herald.url("/healthz"), {}, this.o.openTimeout);
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The connection works: reset the clocks, plan the move back to a better transport. */
  up() {
    if (this.upSince != null) return;
    this.upSince = Date.now();
    this.setState("connected", {});
    if (this.index === 0 && this.upgrading) {
      this.upgrading = false;
      this.betterDelay = this.o.retryBetter;
    }
    if (this.index > 0) {
      const ac = this.abort;
      this.betterTimer = setTimeout(() => ac.abort("upgrade"), this.betterDelay);
    }
  }

  /** Delivers a message unless it was delivered already; `cursor` is set here. */
  deliver(m) {
    if (!this.position.advance(m.channel, m.id)) return;
    const msg = {
      channel: m.channel,
      id: m.id,
      event: m.event ?? null,
      data: m.data,
      time: m.time ?? null,
      cursor: this.position.encode(),
    };
    try {
      this.onMessage(msg);
    } catch (e) {
      reportLater(e);
    }
  }

  /**
   * Reports a gap. Deleted channels leave the subscription (the next request
   * or reconnect no longer names them); with none left, it closes.
   */
  gap(channels, reason) {
    const named = channels.filter((c) => this.channels.includes(c));
    if (!named.length) return;
    try {
      this.onGap({ channels: named, reason });
    } catch (e) {
      reportLater(e);
    }
    if (reason !== "deleted") return;
    this.channels = this.channels.filter((c) => !named.includes(c));
    this.position.forget(named);
    if (!this.channels.length) queueMicrotask(() => this.close());
  }

  /** The headers of an HTTP request, with the token when there is one. */
  async headers(expired) {
    const t = await this.herald.token(expired);
    return t ? { authorization: `Bearer ${t}` } : {};
  }

  /**
   * Makes sure every channel has a position before a transport that would
   * otherwise start "now" at each reconnect: asks a short poll where now is.
   */
  async ensurePosition(signal) {
    if (this.position.complete()) return null;
    const res = await fetchWithin(
      this.herald.url(`/poll/${this.channels.join(",")}`),
      { headers: await this.headers(), signal },
      this.o.openTimeout,
    );
    const verdict = await httpVerdict(res);
    if (verdict) return verdict;
    this.position.apply((await res.json()).cursor);
    return null;
  }

  /** Applies one poll or long-poll answer. */
  applyBody(body) {
    if (body.gap) {
      const gone = body.gone ?? [];
      const missed = body.gaps ?? (gone.length ? [] : this.channels);
      if (missed.length) this.gap(missed, "history");
      if (gone.length) this.gap(gone, "deleted");
    }
    for (const m of body.messages) this.deliver(m);
    this.position.apply(body.cursor);
  }
}

// ---------------------------------------------------------------------------
// Transports. Each runs one connection until it ends and says how it ended:
// "refused" (never worked), "buffered" (opened, delivered nothing while
// herald had written), "lost" (worked, then broke), "soon" (the server asked
// to reconnect, e.g. shutting down), "expired" (token), "upgrade" (time to
// try the better transport), "closed", or `{ error }` for a refusal that
// retrying cannot fix.

const RUNNERS = { ws: runWs, sse: runSse, longpoll: runLongpoll, poll: runPoll };

async function runWs(sub, signal) {
  // Fix the starting position as early as possible even here, where the
  // `subscribed` reply would give one, so that a fallback starts from it.
  const fatal = await bestEffortPosition(sub, signal);
  if (fatal) return fatal;
  const token = await sub.herald.token(sub.expired);
  sub.expired = false;
  return new Promise((resolve) => {
    const u = sub.herald.url("/ws", { token });
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(u);
    let subscribed = false;
    let pingTimer = null;
    let pongTimer = null;
    let outcome = null;
    const openTimer = setTimeout(() => finish("refused"), sub.o.openTimeout);
    let probeTimer = null;
    function finish(o) {
      if (outcome) return;
      outcome = o;
      clearTimeout(openTimer);
      clearTimeout(probeTimer);
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      signal.removeEventListener("abort", onAbort);
      try {
        ws.close(1000);
      } catch {}
      resolve(o);
    }
    const onAbort = () => finish(signal.reason);
    signal.addEventListener("abort", onAbort);
    const send = (f) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(f));
    const subscribe = () => {
      const since = sub.position.encode();
      send({ type: "subscribe", channels: sub.channels, ref: "herald.js", ...(since ? { since } : {}) });
    };
    ws.onopen = () => {
      clearTimeout(openTimer);
      subscribe();
      probeTimer = setTimeout(() => finish("buffered"), sub.o.probe);
      // The oldest unanswered ping decides: its pong is due within pongTimeout.
      pingTimer = setInterval(() => {
        send({ type: "ping", ref: "herald.js" });
        pongTimer ??= setTimeout(() => finish("lost"), sub.o.pongTimeout);
      }, sub.o.ping);
    };
    ws.onmessage = async (e) => {
      if (outcome) return;
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      switch (f.type) {
        case "message":
          sub.deliver(f);
          sub.position.apply(f.cursor);
          break;
        case "subscribed":
          clearTimeout(probeTimer);
          sub.position.apply(f.cursor);
          subscribed = true;
          sub.up();
          break;
        case "gap":
          sub.gap(f.channels, f.reason);
          break;
        case "pong":
          clearTimeout(pongTimer);
          pongTimer = null;
          break;
        case "expired":
          send({ type: "auth", token: await sub.herald.token(true) });
          break;
        case "error":
          if (f.code === "engine_unavailable") {
            // herald answered, so nothing is buffering: ask again shortly.
            clearTimeout(probeTimer);
            setTimeout(subscribe, sub.o.backoff.base);
          }
          else if (f.code === "unauthorized") finish("expired");
          else if (f.ref === "herald.js") finish({ error: { code: f.code, message: f.message } });
          break;
      }
    };
    ws.onclose = (e) => finish(subscribed ? closeOutcome(e.code) : "refused");
  });
}

/** What a WebSocket close code means for the next connection. */
function closeOutcome(code) {
  // 1000 normal, 1001 going away (shutdown), 1012 service restart: come back
  // soon. 4408 (found dead: no pong, or not reading), 1011, 1013 (reader
  // too slow), 1006 (connection lost) and anything else: back off, then
  // resume.
  if (code === 1000 || code === 1001 || code === 1012) return "soon";
  if (code === 4001 || code === 4401) return "expired";
  return "lost";
}

async function runSse(sub, signal) {
  // Without a position the stream starts now and its first event gives one.
  const fatal = await bestEffortPosition(sub, signal);
  if (fatal) return fatal;
  const token = await sub.herald.token(sub.expired);
  sub.expired = false;
  const url = sub.herald.url(`/sse/${sub.channels.join(",")}`, { since: sub.position.encode(), token });
  const ac = new AbortController();
  const stop = () => ac.abort(signal.reason);
  signal.addEventListener("abort", stop);
  let idle = setTimeout(() => ac.abort("buffered"), sub.o.probe);
  let gotBytes = false;
  try {
    const res = await fetch(url, { signal: ac.signal, cache: "no-store", headers: { accept: "text/event-stream" } });
    const verdict = await httpVerdict(res);
    if (verdict) return verdict;
    const parser = new SseParser();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return gotBytes ? "soon" : "refused";
      clearTimeout(idle);
      idle = setTimeout(() => ac.abort("lost"), sub.o.idleTimeout);
      if (!gotBytes) {
        gotBytes = true;
        sub.up();
      }
      for (const ev of parser.push(value)) {
        const end = sseEvent(sub, ev);
        if (end) return end;
      }
    }
  } catch (e) {
    if (signal.aborted) return signal.reason;
    if (ac.signal.aborted) return ac.signal.reason;
    return gotBytes ? "lost" : "refused";
  } finally {
    clearTimeout(idle);
    signal.removeEventListener("abort", stop);
    ac.abort("done");
  }
}

/** Handles one SSE event; returns an outcome when the stream must end. */
function sseEvent(sub, ev) {
  if (ev.event === "herald.gap") {
    const { channels, reason } = JSON.parse(ev.data);
    sub.gap(channels, reason);
    if (ev.id) sub.position.apply(ev.id);
    return null;
  }
  if (ev.event === "herald.expired") {
    sub.expired = true;
    return "expired";
  }
  // The event's id is a cursor; the channel whose position moved is the
  // message's channel, and its new position is the message's id. (herald
  // gives every event an id; an event without one is not herald's.)
  if (!ev.id) return null;
  const moved = sub.position.moved(ev.id);
  if (moved) sub.deliver({ channel: moved.channel, id: moved.id, event: ev.event, data: ev.data });
  sub.position.apply(ev.id);
  return null;
}

async function runLongpoll(sub, signal) {
  return httpLoop(sub, signal, "longpoll", { timeout: sub.o.hold }, (sub.o.hold + 15) * 1000, 0);
}

async function runPoll(sub, signal) {
  return httpLoop(sub, signal, "poll", {}, sub.o.openTimeout, sub.o.pollInterval);
}

/** The request loop of long and short polling: send the cursor you got. */
async function httpLoop(sub, signal, path, params, limit, pause) {
  const early = await catching(signal, () => sub.ensurePosition(signal));
  if (early) return early;
  // A long poll answers only when there is news: the first request of a
  // connection is a short poll, so that the connection shows it works (and
  // catches up) at once.
  let first = true;
  for (;;) {
    let res;
    try {
      const [p, q] = first ? ["poll", {}] : [path, params];
      first = false;
      const url = sub.herald.url(`/${p}/${sub.channels.join(",")}`, { ...q, since: sub.position.encode() });
      res = await fetchWithin(url, { headers: await sub.headers(sub.expired), signal, cache: "no-store" }, limit);
      sub.expired = false;
      const verdict = await httpVerdict(res);
      if (verdict) return sub.upSince ? (verdict === "refused" ? "lost" : verdict) : verdict;
      const body = await res.json();
      sub.up();
      sub.applyBody(body);
      if (!body.messages.length && pause) await delay(pause, signal);
    } catch (e) {
      if (signal.aborted) return signal.reason;
      return sub.upSince ? "lost" : "refused";
    }
  }
}

/**
 * Asks where "now" is for a transport that can also start without it; only
 * a refusal that retrying cannot fix (or the end of the connection) counts.
 */
async function bestEffortPosition(sub, signal) {
  const early = await catching(signal, () => sub.ensurePosition(signal));
  if (signal.aborted) return signal.reason;
  return early && typeof early === "object" ? early : null;
}

async function catching(signal, f) {
  try {
    return await f();
  } catch {
    return signal.aborted ? signal.reason : "refused";
  }
}

/** null for a 200; else the outcome an HTTP answer means. */
async function httpVerdict(res) {
  if (res.ok) return null;
  if (res.status === 401) return "expired";
  if (res.status === 400) {
    let error = { code: "bad_request", message: `HTTP ${res.status}` };
    try {
      error = (await res.json()).error ?? error;
    } catch {}
    return { error };
  }
  // 403/404/405 mean something in the way does not route this transport.
  if (res.status === 403 || res.status === 404 || res.status === 405) return "refused";
  return "lost";
}

function fetchWithin(url, init, ms) {
  const ac = new AbortController();
  const outer = init.signal;
  const stop = () => ac.abort(outer.reason);
  outer?.addEventListener("abort", stop);
  const timer = setTimeout(() => ac.abort("timeout"), ms);
  return fetch(url, { ...init, signal: ac.signal }).finally(() => {
    clearTimeout(timer);
    outer?.removeEventListener("abort", stop);
  });
}

function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    });
  });
}

function reportLater(e) {
  setTimeout(() => {
    throw e;
  });
}

// ---------------------------------------------------------------------------
// Server-Sent Events framing (the parts herald sends: id, event, data,
// comments, retry).

class SseParser {
  constructor() {
    this.rest = "";
    this.ev = { id: null, event: null, data: [] };
  }

  push(text) {
    const out = [];
    const lines = (this.rest + text).split(/\r\n|\r|\n/);
    this.rest = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (this.ev.data.length || this.ev.event) {
          out.push({ id: this.ev.id, event: this.ev.event, data: this.ev.data.join("\n") });
        }
        this.ev = { id: null, event: null, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.ev.data.push(value);
      else if (field === "event") this.ev.event = value;
      else if (field === "id") this.ev.id = value;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// Position: the last message delivered per channel, read from and written
// as herald cursors. herald.js ships with the server and reads the cursor
// format of its version (1): base64url of a version byte, the store's epoch,
// then per channel an 8-byte FNV-1a hash of the name and a varint of
// `position << 1 | stale`. Knowing it lets the client keep one position per
// channel, resume all of them with one cursor on any transport, and tell
// which channel an SSE event belongs to.

const CURSOR_VERSION = 1;

class Position {
  constructor(channels) {
    this.epoch = null;
    this.byHash = new Map(channels.map((c) => [fnv1a(c), c]));
    this.pos = new Map(); // channel -> { id: bigint, stale: boolean }
  }

  complete() {
    return this.epoch != null && [...this.byHash.values()].every((c) => this.pos.has(c));
  }

  forget(channels) {
    for (const c of channels) {
      this.pos.delete(c);
      this.byHash.delete(fnv1a(c));
    }
  }

  /** Moves `channel` to message `id`; false when it is not past the current position. */
  advance(channel, id) {
    const big = BigInt(id);
    const cur = this.pos.get(channel);
    if (cur && big <= cur.id) return false;
    this.pos.set(channel, { id: big, stale: false });
    return true;
  }

  /** The channel and id whose position `cursor` moves forward, or null. */
  moved(cursor) {
    const c = decodeCursor(cursor);
    if (!c) return null;
    for (const [hash, { id }] of c.entries) {
      const channel = this.byHash.get(hash);
      if (!channel) continue;
      const cur = this.pos.get(channel);
      if (!cur || id > cur.id) return { channel, id: Number(id) };
    }
    return null;
  }

  /** Takes in a cursor the server handed out: every position it names. */
  apply(cursor) {
    const c = decodeCursor(cursor);
    if (!c) throw new TypeError(`not a herald cursor: ${cursor}`);
    const foreign = this.epoch != null && c.epoch !== this.epoch;
    if (foreign) for (const p of this.pos.values()) p.stale = true;
    this.epoch = c.epoch;
    for (const [hash, { id, stale }] of c.entries) {
      const channel = this.byHash.get(hash);
      if (!channel) continue;
      const cur = this.pos.get(channel);
      if (!cur || cur.stale || id > cur.id) this.pos.set(channel, { id, stale });
    }
  }

  /** One cursor resuming every channel; null before the first position. */
  encode() {
    if (this.epoch == null) return null;
    const out = [CURSOR_VERSION];
    putVarint(out, this.epoch);
    for (const [hash, channel] of this.byHash) {
      const p = this.pos.get(channel);
      if (!p) continue;
      for (let i = 0n; i < 8n; i++) out.push(Number((hash >> (8n * i)) & 0xffn));
      putVarint(out, (p.id << 1n) | (p.stale ? 1n : 0n));
    }
    return base64url(out);
  }
}

function decodeCursor(text) {
  let bytes;
  try {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (ch) => ch.charCodeAt(0));
  } catch {
    return null;
  }
  if (bytes[0] !== CURSOR_VERSION) return null;
  let at = 1;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; at < bytes.length; shift += 7n) {
      const b = bytes[at++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw new TypeError("truncated cursor");
  };
  try {
    const epoch = varint();
    const entries = new Map();
    while (at < bytes.length) {
      if (at + 8 > bytes.length) return null;
      let hash = 0n;
      for (let i = 0n; i < 8n; i++) hash |= BigInt(bytes[at++]) << (8n * i);
      const word = varint();
      entries.set(hash, { id: word >> 1n, stale: (word & 1n) === 1n });
    }
    return { epoch, entries };
  } catch {
    return null;
  }
}

function putVarint(out, v) {
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    if (v === 0n) return out.push(b);
    out.push(b | 0x80);
  }
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const FNV_PRIME = 0x100000001b3n;
const MASK64 = (1n << 64n) - 1n;

function fnv1a(name) {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(name)) h = ((h ^ BigInt(b)) * FNV_PRIME) & MASK64;
  return h;
}
