// The gateway unreachable for 10 s: retries spaced by exponential backoff
// with full jitter, then everything published meanwhile arrives. And the
// browser coming back online reconnects at once, whatever the backoff.

import assert from "node:assert/strict";
import { test } from "node:test";
import { exactly, log, sleep, subscribe, suite, until } from "./support.js";


await suite("outage", [], (r) => {

  test("gateway unreachable for 10 s: jittered backoff, then nothing lost", async () => {
    const page = await r.page();
    const backoff = { base: 500, cap: 4000 };
    await subscribe(page, r.proxy.url, ["outage"], { backoff });
    const ids = await r.herald.publish("outage", ["before"]);
    await until(async () => (await log(page)).messages.length === 1, 5000, "the first message");

    const downAt = Date.now();
    r.proxy.down = true;
    r.proxy.cut();
    for (let i = 0; i < 10; i++) {
      ids.push(...(await r.herald.publish("outage", [`during ${i}`])));
      await sleep(1000);
    }
    r.proxy.down = false;
    await until(async () => (await log(page)).messages.length >= 11, 10000, "the messages published during the outage");
    const { messages, states, transport } = await log(page);
    exactly(messages, ids);
    assert.equal(transport, "ws", "an unreachable gateway is no reason to fall back");

    const waits = states.filter((s) => s.state === "waiting" && s.at >= downAt && s.at < downAt + 10000);
    console.log(`retries during the outage: ${waits.length}; delays ${waits.map((w) => w.delay).join(", ")} ms`);
    // Ceilings 0.5, 1, 2, 4, 4, ... s: 10 s holds at least 4 waits, and
    // each wait is under its ceiling; full jitter leaves them uneven.
    assert.ok(waits.length >= 4 && waits.length <= 40, `${waits.length} retries`);
    for (const w of waits) {
      assert.ok(w.delay <= Math.min(backoff.cap, backoff.base * 2 ** (w.attempt - 1)), JSON.stringify(w));
    }
    assert.ok(new Set(waits.map((w) => w.delay)).size > 1, "delays are all equal: no jitter");
    assert.ok(Math.max(...waits.map((w) => w.attempt)) >= 4, "the backoff never grew");
    await page.close();
  });

  test("back online: reconnects at once instead of waiting out the backoff", async () => {
    const page = await r.page();
    await subscribe(page, r.proxy.url, ["online"], { backoff: { base: 30000, cap: 60000 }, transports: ["longpoll"], hold: 2 });
    r.proxy.down = true;
    r.proxy.cut();
    await until(async () => (await log(page)).states.some((s) => s.state === "waiting"), 10000, "a backoff wait");
    // Wait until the backoff is long, then come back.
    await until(async () => (await log(page)).states.at(-1).delay > 10000, 90000, "a long backoff wait");
    r.proxy.down = false;
    const ids = await r.herald.publish("online", ["back"]);
    await page.context().setOffline(true);
    await page.context().setOffline(false);
    await until(async () => (await log(page)).messages.length === 1, 3000, "the message, well before the backoff ends");
    exactly((await log(page)).messages, ids);
    await page.close();
  });
});
