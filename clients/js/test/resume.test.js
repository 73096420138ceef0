// Resuming from a stored cursor, deleted channels, and a restarted server.

import assert from "node:assert/strict";
import { test } from "node:test";
import { exactly, log, sleep, subscribe, suite, until } from "./support.js";

const OPTIONS = { backoff: { base: 200, cap: 2000 }, pollInterval: 300, hold: 5 };
const TRANSPORTS = ["ws", "sse", "longpoll", "poll"];

await suite("resume", [], (r) => {

  // A cursor stored on one transport resumes on the next, as a page would
  // store it in localStorage and resume after a reload.
  test("since: a stored cursor resumes right after it, on any transport", async () => {
    const channels = ["since-a", "since-b"];
    let stored = null;
    const all = [];
    for (const [i, transport] of TRANSPORTS.entries()) {
      const page = await r.page();
      await subscribe(page, r.proxy.url, channels, { ...OPTIONS, transports: [transport] }, stored ? { since: stored } : {});
      const ids = [
        ...(await r.herald.publish("since-a", [`a${i}.1`, `a${i}.2`])),
        ...(await r.herald.publish("since-b", [`b${i}`])),
      ];
      await until(async () => (await log(page)).messages.length >= 3, 10000, `3 messages on ${transport}`);
      await sleep(200);
      const { messages } = await log(page);
      exactly(messages, ids);
      all.push(...messages.map((m) => m.data));
      stored = messages.at(-1).cursor;
      // Published while no page is open: the next one resumes with them.
      await page.close();
      const missed = await r.herald.publish("since-a", [`away${i}`]);
      const next = await r.page();
      await subscribe(next, r.proxy.url, channels, { ...OPTIONS, transports: [transport] }, { since: stored });
      await until(async () => (await log(next)).messages.length >= 1, 10000, "the message published while away");
      await sleep(200);
      exactly((await log(next)).messages, missed);
      stored = (await log(next)).messages.at(-1).cursor;
      await next.close();
    }
    assert.equal(all.length, 12);
  });

  // Not the short poll: herald reports a deletion to the requests that are
  // open when it happens, and a short poll is open only for an instant.
  for (const transport of ["ws", "sse", "longpoll"]) {
    test(`a deleted channel reaches onGap (${transport})`, async () => {
      const page = await r.page();
      const [gone, kept] = [`del-${transport}`, `keep-${transport}`];
      await r.herald.publish(gone, ["exists"]);
      await subscribe(page, r.proxy.url, [gone, kept], { ...OPTIONS, transports: [transport] });
      await until(async () => (await r.herald.subscribers(gone)) > 0, 10000, "the subscription to be held");
      assert.equal((await r.herald.deleteChannel(gone)).deleted, true);
      await until(async () => (await log(page)).gaps.length >= 1, 10000, "the gap");
      const ids = await r.herald.publish(kept, ["after"]);
      await until(async () => (await log(page)).messages.length >= 1, 10000, "a message on the remaining channel");
      const { gaps, messages } = await log(page);
      assert.deepEqual(gaps, [{ channels: [gone], reason: "deleted" }]);
      exactly(messages, ids);
      assert.deepEqual(await page.evaluate(() => window.sub.channels), [kept]);
      await page.close();
    });
  }

  test("a restarted server: a history gap, then delivery goes on (every transport)", async () => {
    const pages = [];
    for (const transport of TRANSPORTS) {
      const page = await r.page();
      await subscribe(page, r.proxy.url, ["restart"], { ...OPTIONS, transports: [transport] });
      pages.push(page);
    }
    const before = await r.herald.publish("restart", ["before"]);
    for (const page of pages) await until(async () => (await log(page)).messages.length === 1, 10000, "the first message");
    await r.herald.restart();
    // The restarted server holds none of the old history: every page hears of
    // the gap once it has reconnected, then gets what is published next.
    for (const page of pages) await until(async () => (await log(page)).gaps.length >= 1, 20000, "the gap");
    const afterIds = await r.herald.publish("restart", ["after"]);
    for (const [i, page] of pages.entries()) {
      await until(async () => (await log(page)).messages.length >= 2, 20000, `the message after the restart (${TRANSPORTS[i]})`);
      const { messages, gaps } = await log(page);
      exactly(messages, [...before, ...afterIds]);
      assert.deepEqual(gaps, [{ channels: ["restart"], reason: "history" }], TRANSPORTS[i]);
      await page.close();
    }
  });
});
