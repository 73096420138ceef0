// Transport fallback through a proxy that refuses WebSocket upgrades and
// buffers SSE, and the move back to the better transport once it works.

import assert from "node:assert/strict";
import { test } from "node:test";
import { exactly, log, sleep, suite, until } from "./support.js";

const OPTIONS = { backoff: { base: 200, cap: 2000 }, pollInterval: 300, hold: 5 };

/** Starts a subscription and publishes `n` messages, one every `every` ms, from the moment its position is fixed. */
async function follow(r, page, channel, options, n, every) {
  await page.evaluate(([u, c, o]) => window.start(u, [c], o, {}), [r.proxy.url, channel, options]);
  await until(() => page.evaluate(() => window.sub.cursor), 10000, "a starting position");
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push(...(await r.herald.publish(channel, [`m${i}`])));
    await sleep(every);
  }
  return ids;
}

await suite("fallback", [], (r) => {

  test("WebSocket refused: falls back to SSE, nothing lost", async () => {
    r.proxy.refuseWs = true;
    r.proxy.bufferSse = false;
    const page = await r.page();
    const ids = await follow(r, page, "fb-ws", OPTIONS, 40, 50);
    await until(async () => (await log(page)).messages.length >= 40, 15000, "40 messages");
    const { messages, transport } = await log(page);
    exactly(messages, ids);
    assert.equal(transport, "sse");
    await page.close();
  });

  test("WebSocket refused and SSE buffered: ends on long polling within seconds, nothing lost", async () => {
    r.proxy.refuseWs = true;
    r.proxy.bufferSse = true;
    const page = await r.page();
    const started = Date.now();
    const ids = await follow(r, page, "fb-sse", OPTIONS, 60, 100);
    await until(async () => (await log(page)).transport === "longpoll", 15000, "long polling");
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 10, `took ${seconds} s`);
    await until(async () => (await log(page)).messages.length >= 60, 15000, "60 messages");
    const { messages, states } = await log(page);
    exactly(messages, ids);
    const fallbacks = states.filter((s) => s.state === "fallback").map((s) => `${s.transport}:${s.reason}`);
    assert.deepEqual(fallbacks, ["ws:refused", "sse:buffered"]);
    await page.close();
  });

  test("back on the better transport once it works again, nothing lost", async () => {
    r.proxy.refuseWs = true;
    r.proxy.bufferSse = true;
    const page = await r.page();
    const ids = [];
    const publishing = follow(r, page, "fb-back", { ...OPTIONS, retryBetter: 2000 }, 80, 100).then((x) => ids.push(...x));
    await until(async () => (await log(page)).transport === "longpoll", 15000, "long polling");
    r.proxy.refuseWs = false;
    r.proxy.bufferSse = false;
    await until(async () => (await log(page)).transport === "ws", 15000, "the move back to WebSocket");
    await publishing;
    await until(async () => (await log(page)).messages.length >= 80, 15000, "80 messages");
    exactly((await log(page)).messages, ids);
    await page.close();
  });
});
