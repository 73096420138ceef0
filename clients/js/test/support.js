// Shared parts of the browser tests: the real herald binary on free ports,
// a TCP proxy in front of its public listener that the tests control, a
// static server for the pages (another origin than herald), a publisher,
// and headless Chromium.
//
// Needs env HERALD_BIN (the herald binary), /usr/bin/chromium (or
// CHROMIUM) and the dev dependency playwright-core. When one is missing the
// tests skip loudly, unless CI=true, where they fail.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe } from "node:test";
import { Proxy } from "./proxy.js";

export { Proxy };

export const here = path.dirname(fileURLToPath(import.meta.url));
export const clientDir = path.resolve(here, "..");
export const repoDir = path.resolve(clientDir, "../..");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// npm runs the tests in clients/js; a relative HERALD_BIN means the caller's directory.
const HERALD_BIN = process.env.HERALD_BIN && path.resolve(process.env.INIT_CWD ?? process.cwd(), process.env.HERALD_BIN);

/** Why the browser tests cannot run here, or null. */
export async function missing() {
  if (!HERALD_BIN || !existsSync(HERALD_BIN)) return "HERALD_BIN is not set to the herald binary";
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (apt-get install chromium)`;
  try {
    await import("playwright-core");
  } catch {
    return "playwright-core is missing (npm ci --prefix clients/js)";
  }
  return null;
}

/** The `skip` option of a test: a message when it must skip, failing under CI=true. */
export async function skipUnlessReady() {
  const why = await missing();
  if (!why) return false;
  if (process.env.CI === "true") throw new Error(`browser tests cannot run: ${why}`);
  console.error(`\n*** SKIPPING browser tests: ${why} ***\n`);
  return `SKIPPED: ${why}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `f()` is truthy, polling; fails with `what` after `ms`. */
export async function until(f, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The real herald binary on two free ports. `restart()` keeps the ports. */
export class Herald {
  static async start(args = []) {
    const h = new Herald();
    h.publicPort = await freePort();
    h.internalPort = await freePort();
    h.args = args;
    await h.spawn();
    return h;
  }

  async spawn() {
    this.proc = spawn(
      HERALD_BIN,
      [
        "--public-addr", `127.0.0.1:${this.publicPort}`,
        "--internal-addr", `127.0.0.1:${this.internalPort}`,
        "--history-messages", "1000",
        "--drain-timeout", "1",
        ...this.args,
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "warn" } },
    );
    this.proc.stderr.on("data", () => {});
    await until(async () => {
      try {
        return (await fetch(`${this.internal}/healthz`)).ok;
      } catch {
        return false;
      }
    }, 15000, "herald to start");
  }

  get internal() {
    return `http://127.0.0.1:${this.internalPort}`;
  }

  async stop() {
    if (!this.proc || this.proc.exitCode != null) return;
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGKILL");
    await exited;
  }

  async restart() {
    await this.stop();
    await this.spawn();
  }

  /** Publishes `texts` to `channel` in one batch; returns their ids. */
  async publish(channel, texts) {
    const res = await fetch(`${this.internal}/publish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: texts.map((data) => ({ channel, data })) }),
    });
    if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${await res.text()}`);
    return (await res.json()).messages.map((m) => m.id);
  }

  /** Live subscriptions to `channel` (held long polls, streams, sockets). */
  async subscribers(channel) {
    const res = await fetch(`${this.internal}/channels/${channel}`);
    return res.ok ? (await res.json()).subscribers : 0;
  }

  async deleteChannel(channel) {
    const res = await fetch(`${this.internal}/channels/${channel}`, { method: "DELETE" });
    return res.json();
  }
}

/** Serves the client, the test page and the demo from another origin than herald. */
export async function staticServer(routes = {}) {
  const files = {
    "/herald.js": path.join(clientDir, "herald.js"),
    "/page.html": path.join(here, "page.html"),
    ...routes,
  };
  const types = { ".js": "text/javascript", ".html": "text/html", ".css": "text/css" };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, "http://x").pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    // A route is a file, or a function that returns a page.
    const page = typeof file === "function";
    const type = page ? "text/html" : (types[path.extname(file)] ?? "application/octet-stream");
    res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
    res.end(page ? file() : readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

export async function launch() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}

/**
 * Everything one test file needs: herald, the proxy, the static server and
 * a browser; `page()` opens the test page, whose `start(options)` subscribes
 * and records into `window.log`.
 */
export async function rig(heraldArgs = []) {
  const herald = await Herald.start(heraldArgs);
  const proxy = await Proxy.start(herald.publicPort);
  const site = await staticServer();
  const browser = await launch();
  return {
    herald,
    proxy,
    site,
    browser,
    async page() {
      const page = await browser.newPage();
      page.on("pageerror", (e) => console.error("page error:", e));
      await page.goto(`${site.url}/page.html`);
      return page;
    },
    async close() {
      await browser.close();
      proxy.close();
      site.close();
      await herald.stop();
    },
  };
}

/**
 * A suite of tests sharing one rig (herald started with `heraldArgs`);
 * `body(r)` declares the tests, and `r` is filled in before they run.
 * Skips loudly (fails under CI=true) when the browser tests cannot run.
 */
export async function suite(name, heraldArgs, body) {
  const skip = await skipUnlessReady();
  describe(name, { skip }, () => {
    const r = {};
    before(async () => Object.assign(r, await rig(heraldArgs)));
    after(() => r.close?.());
    body(r);
  });
}

/** Subscribes on the test page; returns when it is connected. */
export async function subscribe(page, baseUrl, channels, options = {}, subOptions = {}) {
  await page.evaluate(
    ([baseUrl, channels, options, subOptions]) => window.start(baseUrl, channels, options, subOptions),
    [baseUrl, channels, options, subOptions],
  );
  await until(() => page.evaluate(() => window.log.connected), 15000, "the subscription to connect");
}

export const log = (page) => page.evaluate(() => window.log);

/** Asserts that `got` holds exactly the messages `ids`, in order, each once. */
export function exactly(got, ids) {
  const gotIds = got.map((m) => m.id);
  const counts = new Map();
  for (const id of gotIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  const dups = [...counts].filter(([, n]) => n > 1).length;
  const lost = ids.filter((id) => !counts.has(id)).length;
  if (dups || lost || gotIds.join() !== ids.join()) {
    throw new Error(`got ${gotIds.length} of ${ids.length}: ${lost} lost, ${dups} repeated, order ${gotIds.join() === ids.join() ? "kept" : "broken"}`);
  }
}
