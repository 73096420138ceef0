// Every browser snippet of README.md and docs/protocol.md, pasted as written
// into a page with only the host changed, keeps delivering across a gateway
// restart (during which the proxy answers 502) and a network error. The
// snippets run side by side, each in its own tab, through the same events.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { repoDir, rig, skipUnlessReady, sleep, staticServer, until } from "./support.js";

const skip = await skipUnlessReady();

/** The ```js blocks of a document that run in a browser. */
function snippets(file) {
  const text = readFileSync(path.join(repoDir, file), "utf8");
  return [...text.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((m) => m[1])
    .filter((code) => /fetch\(|EventSource|WebSocket|Herald/.test(code))
    .map((code, i) => ({ name: `${file} #${i + 1}`, code }));
}

const ALL = [...snippets("README.md"), ...snippets("docs/protocol.md")];

describe("documentation snippets", { skip }, () => {
  let r, site;
  const printed = ALL.map(() => []);
  before(async () => {
    r = await rig();
    site = await staticServer(Object.fromEntries(ALL.map((s, i) => [`/snippet${i}.html`, () => page(s.code)])));
    for (const [i] of ALL.entries()) {
      const tab = await r.browser.newPage();
      tab.on("console", (m) => printed[i].push(m.text()));
      tab.on("pageerror", (e) => printed[i].push(`page error: ${e.message}`));
      await tab.goto(`${site.url}/snippet${i}.html`);
    }
    // Let every snippet reach the gateway before publishing.
    await sleep(1500);
  });
  after(async () => {
    site?.close();
    await r?.close();
  });

  function page(code) {
    const host = new URL(r.proxy.url).host;
    const pasted = code
      .replaceAll("https://push.example.com", `http://${host}`)
      .replaceAll("wss://push.example.com", `ws://${host}`)
      .replaceAll("http://127.0.0.1:8080", `http://${host}`);
    return `<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports":{"herald-client":"/herald.js"}}</script>
<script type="module">\n${pasted}\n</script>`;
  }

  /** Waits until every snippet printed `word`. */
  function everyPrinted(word) {
    return until(
      () => printed.every((lines) => lines.some((line) => line.includes(word))),
      45000,
      `"${word}" from ${ALL.filter((_, i) => !printed[i].some((l) => l.includes(word))).map((s) => s.name).join(", ")}`,
    );
  }

  test("the documents hold the five browser snippets", () => {
    assert.equal(ALL.length, 5, ALL.map((s) => s.name).join(", "));
  });

  test("every snippet survives a restart and a network error", async () => {
    const tag = `t${Date.now()}`;
    await r.herald.publish("news", [`${tag}-first`]);
    await everyPrinted(`${tag}-first`);

    // A restart: herald is away for 4 s, while the proxy answers 502.
    await r.herald.stop();
    await sleep(4000);
    await r.herald.spawn();
    await sleep(500);
    await r.herald.publish("news", [`${tag}-after-restart`]);
    await everyPrinted(`${tag}-after-restart`);

    // A network error: every connection is dropped and refused for 3 s.
    r.proxy.down = true;
    r.proxy.cut();
    await sleep(3000);
    r.proxy.down = false;
    await r.herald.publish("news", [`${tag}-after-network-error`]);
    await everyPrinted(`${tag}-after-network-error`);
  });
});
