// The backend of herald's demo: publishes a counter to the channel "demo"
// on herald's internal listener, serves the page, and puts one TCP proxy in
// front of herald per transport so that the page's buttons can cut each
// transport's connections. No dependencies; Node 20 or later.
//
//   HERALD_PUBLIC    herald's public listener    (http://127.0.0.1:8080)
//   HERALD_INTERNAL  herald's internal listener  (http://127.0.0.1:8081)
//   DEMO_PORT        this page                   (3000)
//   DEMO_INTERVAL    ms between two publishes    (250)

import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Proxy } from "../../clients/js/test/proxy.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const PUBLIC = new URL(process.env.HERALD_PUBLIC ?? "http://127.0.0.1:8080");
const INTERNAL = process.env.HERALD_INTERNAL ?? "http://127.0.0.1:8081";
const PORT = Number(process.env.DEMO_PORT ?? 3000);
const INTERVAL = Number(process.env.DEMO_INTERVAL ?? 250);
const CHANNEL = "demo";
const TRANSPORTS = ["ws", "sse", "longpoll", "poll"];

const proxies = {};
for (const t of TRANSPORTS) proxies[t] = await Proxy.start(Number(PUBLIC.port || 80), 0, PUBLIC.hostname);

// The counter: n goes up only when herald took the message, so a page that
// sees n jump has lost a message, and one that sees n twice has a repeat.
const stats = { published: 0, failed: 0, paused: false };
async function publishNext() {
  if (stats.paused) return;
  try {
    const res = await fetch(`${INTERNAL}/publish/${CHANNEL}`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: String(stats.published + 1),
    });
    if (res.status === 202) stats.published += 1;
    else stats.failed += 1;
  } catch {
    stats.failed += 1;
  }
}
// The publish in flight, if any: /pause answers only once it has settled,
// so that the count it reports is the last message there will be.
let publishing = null;
setInterval(async () => {
  if (publishing) return;
  publishing = publishNext();
  await publishing;
  publishing = null;
}, INTERVAL);

const files = {
  "/": [path.join(here, "index.html"), "text/html"],
  "/herald.js": [path.join(here, "../../clients/js/herald.js"), "text/javascript"],
};

const server = http.createServer((req, res) => {
  const json = (body) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  const url = new URL(req.url, "http://demo");
  if (req.method === "GET" && files[url.pathname]) {
    const [file, type] = files[url.pathname];
    res.writeHead(200, { "content-type": type, "cache-control": "no-store" }).end(readFileSync(file));
  } else if (req.method === "GET" && url.pathname === "/config") {
    json({ channel: CHANNEL, gateways: Object.fromEntries(TRANSPORTS.map((t) => [t, proxies[t].url])) });
  } else if (req.method === "GET" && url.pathname === "/stats") {
    json(stats);
  } else if (req.method === "POST" && url.pathname.startsWith("/cut/") && proxies[url.pathname.slice(5)]) {
    json({ dropped: proxies[url.pathname.slice(5)].cut() });
  } else if (req.method === "POST" && (url.pathname === "/pause" || url.pathname === "/resume")) {
    stats.paused = url.pathname === "/pause";
    Promise.resolve(publishing).then(() => json(stats));
  } else {
    res.writeHead(404).end();
  }
});
server.listen(PORT, "127.0.0.1", () => {
  console.log(`demo: open http://127.0.0.1:${PORT} (herald at ${PUBLIC.origin}, publishing to ${INTERNAL})`);
});
