// A web app on its own origin (a second loopback port) using the built SDK and the stock bell
// with only belfry/styles.css, against Belfry on another port: with the page's origin in
// `http.cors_allowed_origins` the bell loads history, lights live and marks read; without it the
// browser refuses Belfry's answers and the bell shows its error state; a WebSocket from the
// foreign page is refused (403). And the open panel stays on screen at either edge and at 390 px.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import { Belfry, freePort, waitFor } from "../lib/belfry.mjs";
import { launchContext } from "../lib/browser.mjs";
import { startSdkPage } from "../lib/sdkPage.mjs";

const ARTIFACTS = resolve(import.meta.dirname, "..", "artifacts");
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

let allowed; // Belfry that lists the page's origin
let closed; // Belfry that does not
let page; // the app's server, on its own origin
let browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const pagePort = await freePort();
  const origin = `http://127.0.0.1:${pagePort}`;
  allowed = await new Belfry({ config: ["[http]", `cors_allowed_origins = ["${origin}"]`] }).start();
  closed = await new Belfry().start();
  page = await startSdkPage(pagePort, allowed);
  assert.equal(page.origin, origin);
  browser = await launchContext();
});

after(async () => {
  await browser?.close();
  await page?.close();
  await allowed?.stop();
  await closed?.stop();
});

async function open(belfry, user, query = {}) {
  const tab = await browser.newPage();
  tab.on("pageerror", (e) => console.error(`[${user}] page error:`, e.message));
  await tab.goto(page.url({ belfry: belfry.url, user, ...query }));
  await tab.getByTestId("belfry-bell").waitFor();
  return tab;
}

const state = (tab) => tab.evaluate(() => document.querySelector(".belfry-bell")?.getAttribute("data-state"));
const badge = (tab) =>
  tab.evaluate(() => document.querySelector('[data-testid="belfry-badge"]')?.textContent?.trim() ?? "");

async function axeViolations(tab) {
  await tab.addScriptTag({ path: AXE });
  return tab.evaluate(async () => {
    const result = await window.axe.run(document);
    return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
}

test("with the page's origin configured, the bell on another origin loads history, lights live and marks read", async () => {
  await allowed.notify("alice", "comment.created", { title: "Earlier comment" });
  await allowed.notify("alice", "comment.created", { title: "Another earlier one" });
  const tab = await open(allowed, "alice");
  await waitFor("the bell to connect across origins", async () => (await state(tab)) === "connected");
  await waitFor("the history's unread count", async () => (await badge(tab)) === "2");

  await allowed.notify("alice", "post.liked", { title: "Live like" });
  await waitFor("the live notification to light the bell", async () => (await badge(tab)) === "3");

  assert.deepEqual(await axeViolations(tab), [], "axe, bell closed and lit");
  await tab.getByTestId("belfry-bell").click();
  const items = tab.getByTestId("belfry-item");
  await waitFor("three items in the panel", async () => (await items.count()) === 3);
  assert.match((await items.first().textContent()) ?? "", /Live like/);
  assert.deepEqual(await axeViolations(tab), [], "axe, bell open");
  await tab.screenshot({ path: join(ARTIFACTS, "cross-origin-open.png") });

  await tab.getByTestId("belfry-mark-all").click();
  await waitFor("the badge to clear", async () => (await badge(tab)) === "");
  await waitFor("the server to have them all read", async () =>
    (await allowed.notifications("alice")).every((n) => n.read_at !== null),
  );
  assert.deepEqual(await tab.evaluate(() => window.belfryErrors), []);
  await tab.close();
});

test("without the page's origin configured, the browser refuses Belfry's answers and the bell shows its error state", async () => {
  await closed.notify("alice", "comment.created", { title: "Never seen" });
  const tab = await open(closed, "alice");
  await waitFor("the bell's error state", async () => (await state(tab)) === "error");
  const bell = tab.getByTestId("belfry-bell");
  assert.equal(await bell.getAttribute("aria-label"), "Notifications (unavailable)");
  assert.ok(await tab.getByTestId("belfry-error-mark").isVisible());
  const errors = await tab.evaluate(() => window.belfryErrors);
  assert.ok(errors.length > 0, "onError was called");
  assert.match(errors[0], /cors_allowed_origins/);
  await bell.click();
  const alert = tab.getByTestId("belfry-error");
  assert.match((await alert.textContent()) ?? "", /Notifications are unavailable/);
  assert.equal(await tab.getByTestId("belfry-item").count(), 0);
  await tab.screenshot({ path: join(ARTIFACTS, "cross-origin-refused.png") });

  // The page's own WebSocket to that Belfry: the handshake carries the page's Origin and is
  // refused before any upgrade (the browser only sees a failed connection; the log says why).
  const wsUrl = `${closed.url.replace("http", "ws")}/v1/ws`;
  const opened = await tab.evaluate(
    (url) =>
      new Promise((done) => {
        const ws = new WebSocket(url);
        ws.onopen = () => done(true);
        ws.onerror = () => done(false);
      }),
    wsUrl,
  );
  assert.equal(opened, false);
  await waitFor("the refusal in Belfry's log", async () =>
    closed.log.includes("websocket handshake from a foreign origin refused") && closed.log.includes(page.origin),
  );
  await tab.close();
});

for (const [name, viewport, position] of [
  ["at the left edge", { width: 1100, height: 800 }, "left"],
  ["at the right edge", { width: 1100, height: 800 }, "right"],
  ["390 px wide", { width: 390, height: 800 }, "right"],
  ["390 px wide, at the left", { width: 390, height: 800 }, "left"],
]) {
  test(`the stock bell's open panel is fully on screen ${name}`, async () => {
    for (let i = 0; i < 3; i += 1) await allowed.notify("bob", "comment.created", { title: `Note ${i}` });
    const tab = await open(allowed, "bob", { position });
    await tab.setViewportSize(viewport);
    await waitFor("bob's badge", async () => (await badge(tab)) !== "");
    await tab.getByTestId("belfry-bell").click();
    const panel = tab.getByTestId("belfry-panel");
    await panel.waitFor();
    // The placement settles in a layout effect; read it once it is stable.
    let box;
    await waitFor("the panel to be inside the viewport", async () => {
      box = await panel.boundingBox();
      return box && box.x >= 0 && box.y >= 0 && box.x + box.width <= viewport.width && box.y + box.height <= viewport.height;
    });
    const markAll = await tab.getByTestId("belfry-mark-all").boundingBox();
    assert.ok(markAll.x >= 0 && markAll.x + markAll.width <= viewport.width, `"Mark all read" reachable: ${JSON.stringify(markAll)}`);
    await tab.screenshot({ path: join(ARTIFACTS, `bell-${position}-${viewport.width}.png`) });
    await tab.close();
  });
}
