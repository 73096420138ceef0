// The subscriber token: where each transport carries it, and the refresh
// callback on expiry. herald's public listener does not check tokens yet;
// the proxy stands in for the check.

import assert from "node:assert/strict";
import { test } from "node:test";
import { exactly, log, subscribe, suite, until } from "./support.js";

const OPTIONS = { backoff: { base: 200, cap: 2000 }, hold: 5 };

await suite("token", [], (r) => {

  test("WebSocket upgrade and SSE carry ?token=", async () => {
    for (const transport of ["ws", "sse"]) {
      const page = await r.page();
      r.proxy.heads = [];
      await subscribe(page, r.proxy.url, ["tok"], { ...OPTIONS, transports: [transport], token: "s3cret" });
      const path = transport === "ws" ? "/ws" : "/sse/tok";
      assert.ok(r.proxy.heads.some((h) => h.startsWith(`GET ${path}?`) && h.split("\r\n")[0].includes("token=s3cret")), transport);
      await page.close();
    }
  });

  test("an expired token (401 on SSE) is refreshed through the callback", async () => {
    const page = await r.page();
    // Refuse the first token, as herald's subscriber authorization will.
    r.proxy.intercept = (head) =>
      /^GET \/sse\/[^ ]*token=first/.test(head)
        ? 'HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\naccess-control-allow-origin: *\r\nconnection: close\r\ncontent-length: 56\r\n\r\n{"error":{"code":"unauthorized","message":"expired....."}}'
        : null;
    await page.evaluate(() => {
      window.asked = [];
      window.tokenFn = async ({ expired }) => {
        window.asked.push(expired);
        return window.asked.length === 1 ? "first" : "second";
      };
    });
    await page.evaluate(
      ([u, o]) => window.start(u, ["tok2"], { ...o, token: window.tokenFn, transports: ["sse"] }, {}),
      [r.proxy.url, OPTIONS],
    );
    await until(() => page.evaluate(() => window.log.connected), 10000, "the connection with the fresh token");
    const ids = await r.herald.publish("tok2", ["hello"]);
    await until(async () => (await log(page)).messages.length === 1, 10000, "the message");
    exactly((await log(page)).messages, ids);
    assert.deepEqual(await page.evaluate(() => window.asked), [false, true]);
    r.proxy.intercept = null;
    await page.close();
  });
});
