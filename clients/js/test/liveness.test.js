// Dead connections found by heartbeats: the proxy silences the open
// connections without closing them; the client notices by the missing pong
// (WebSocket) or the missing heartbeat (SSE) and reconnects, losing nothing.

import assert from "node:assert/strict";
import { test } from "node:test";
import { exactly, log, subscribe, suite, until } from "./support.js";

const OPTIONS = { backoff: { base: 200, cap: 2000 }, ping: 1000, pongTimeout: 1000, idleTimeout: 2500 };

await suite("liveness", ["--sse-heartbeat", "1"], (r) => {

  for (const transport of ["ws", "sse"]) {
    test(`a silent ${transport} connection is replaced`, async () => {
      const page = await r.page();
      const channel = `live-${transport}`;
      await subscribe(page, r.proxy.url, [channel], { ...OPTIONS, transports: [transport] });
      const ids = await r.herald.publish(channel, ["before"]);
      await until(async () => (await log(page)).messages.length === 1, 5000, "the first message");
      r.proxy.freeze();
      ids.push(...(await r.herald.publish(channel, ["while silent"])));
      await until(async () => (await log(page)).messages.length === 2, 10000, "the message, over a new connection");
      const { messages, states } = await log(page);
      exactly(messages, ids);
      assert.ok(states.some((s) => s.state === "waiting" && s.reason === "lost"), "no reconnect after a lost connection");
      await page.close();
    });
  }
});
