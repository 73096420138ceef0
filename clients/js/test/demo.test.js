// The demo in a real browser: four panes, each transport cut once, the
// gateway restarted; then every pane shows the last published counter with
// nothing lost or repeated, checked in the DOM, and a screenshot is kept.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Herald, freePort, launch, repoDir, skipUnlessReady, sleep, until } from "./support.js";

const skip = await skipUnlessReady();
const TRANSPORTS = ["ws", "sse", "longpoll", "poll"];

describe("demo", { skip }, () => {
  let herald, demo, browser, url;
  before(async () => {
    herald = await Herald.start();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    demo = spawn(process.execPath, [path.join(repoDir, "examples/demo/server.js")], {
      env: {
        ...process.env,
        HERALD_PUBLIC: `http://127.0.0.1:${herald.publicPort}`,
        HERALD_INTERNAL: herald.internal,
        DEMO_PORT: String(port),
        DEMO_INTERVAL: "100",
      },
      stdio: "inherit",
    });
    await until(() => fetch(`${url}/config`).then((r) => r.ok, () => false), 10000, "the demo backend");
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    demo?.kill();
    await herald?.stop();
  });

  test("every pane resumes after a cut and a gateway restart, nothing lost or repeated", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 760 } });
    await page.goto(url);
    const pane = (t, field) => page.locator(`#${t} .${field}`).textContent().then(Number);
    const allAbove = async (field, n) => (await Promise.all(TRANSPORTS.map((t) => pane(t, field)))).every((v) => v >= n);
    await until(() => allAbove("count", 10), 20000, "10 messages in every pane");
    for (const t of TRANSPORTS) await page.click(`#${t} .cut`);
    await sleep(1500);
    await herald.restart();
    await until(() => allAbove("gaps", 1), 30000, "every pane to hear of the restart");
    const stats = await (await fetch(`${url}/stats`)).json();
    await until(() => allAbove("last", stats.published + 10), 30000, "10 more messages in every pane");
    const last = (await (await fetch(`${url}/pause`, { method: "POST" })).json()).published;
    await until(async () => (await Promise.all(TRANSPORTS.map((t) => pane(t, "last")))).every((v) => v === last), 15000, "every pane to catch up");
    await sleep(1200); // let the published count refresh on the page
    for (const t of ["ws", "sse"]) assert.ok((await pane(t, "reconnects")) >= 1, `${t} did not reconnect`);
    for (const t of TRANSPORTS) {
      assert.equal(await pane(t, "lost"), 0, `${t} lost messages`);
      assert.equal(await pane(t, "repeated"), 0, `${t} repeated messages`);
    }
    assert.equal(Number(await page.locator("#published").textContent()), last);
    const file = process.env.HERALD_SCREENSHOT ?? path.join(os.tmpdir(), "herald-demo.png");
    await page.screenshot({ path: file, fullPage: true });
    console.log(`demo screenshot: ${file}`);
  });
});
