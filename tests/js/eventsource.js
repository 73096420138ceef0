// An independent EventSource client for herald's end-to-end tests: the npm
// `eventsource` package, which reconnects by itself and sends Last-Event-ID,
// exactly as a browser does. Nothing here knows herald's wire format.
//
// Usage: node tests/js/eventsource.js <url> <count> <timeout-ms>
//
// Prints one JSON object per line on stdout:
//   {"open":n,"received":k}   the n-th (re)connection opened after k messages
//   {"gap":{...}}             a herald.gap event's data
//   {"messages":[...],"opens":n}  once <count> messages arrived (exit 0)
//   {"timeout":k,"opens":n}   when <timeout-ms> passed first (exit 2)
//   {"expired":{...}}         a herald.expired event's data
//
// With HERALD_AUTH_JWT_SECRET set, every (re)connection carries a freshly
// minted HS256 token in the `token` query parameter, for the channels in
// HERALD_TOKEN_CHANNELS (comma-separated) and valid HERALD_TOKEN_SECONDS
// (default 60): the way a page hands EventSource a short-lived token.
import { EventSource } from "eventsource";
import jwt from "jsonwebtoken";

const [url, count, timeoutMs] = process.argv.slice(2);
const want = Number(count);
const messages = [];
let opens = 0;

const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

const secret = process.env.HERALD_AUTH_JWT_SECRET;
const withToken = (input) => {
  const u = new URL(input);
  u.searchParams.set(
    "token",
    jwt.sign(
      { sub: "e2e", channels: (process.env.HERALD_TOKEN_CHANNELS ?? "").split(",") },
      secret,
      { algorithm: "HS256", expiresIn: Number(process.env.HERALD_TOKEN_SECONDS ?? 60) },
    ),
  );
  return u;
};
const es = secret
  ? new EventSource(url, { fetch: (input, init) => fetch(withToken(input), init) })
  : new EventSource(url);
es.addEventListener("open", () => {
  opens += 1;
  print({ open: opens, received: messages.length });
});
es.addEventListener("herald.gap", (e) => print({ gap: JSON.parse(e.data) }));
es.addEventListener("herald.expired", (e) => print({ expired: JSON.parse(e.data) }));
es.addEventListener("message", (e) => {
  messages.push(e.data);
  if (messages.length === want) {
    es.close();
    print({ messages, opens });
    process.exit(0);
  }
});

setTimeout(() => {
  es.close();
  print({ timeout: messages.length, opens });
  process.exit(2);
}, Number(timeoutMs));
