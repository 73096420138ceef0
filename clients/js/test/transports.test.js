// Each transport forced in turn, the proxy cut in the middle of a burst of
// 300 messages: all 300 arrive, once each, in order.

import { test } from "node:test";
import { exactly, log, sleep, subscribe, suite, until } from "./support.js";

const FAST = { backoff: { base: 200, cap: 2000 }, pollInterval: 300, hold: 5 };

await suite("a cut mid-burst loses and repeats nothing", [], (r) => {

  for (const transport of ["ws", "sse", "longpoll", "poll"]) {
    test(transport, async () => {
      const page = await r.page();
      const channel = `burst-${transport}`;
      await subscribe(page, r.proxy.url, [channel], { ...FAST, transports: [transport] });
      const ids = [];
      let dropped = 0;
      for (let batch = 0; batch < 30; batch++) {
        ids.push(...(await r.herald.publish(channel, Array.from({ length: 10 }, (_, i) => `m${batch * 10 + i}`))));
        if (batch === 14) {
          await until(async () => (await log(page)).messages.length > 0, 10000, "the first messages");
          dropped = r.proxy.cut();
        }
        await sleep(20);
      }
      await until(async () => (await log(page)).messages.length >= 300, 30000, "300 messages");
      await sleep(300);
      const { messages } = await log(page);
      exactly(messages, ids);
      if (messages.some((m, i) => m.data !== `m${i}`)) throw new Error("data changed");
      if (!dropped) throw new Error("the cut found no connection to drop");
      await page.close();
    });
  }
});
