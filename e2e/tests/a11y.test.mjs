// The demo in Chromium, checked by axe-core (injected into the page) and by its layout: no axe
// violation on the blog and todo pages, signed out and in, with the bell closed and open; the
// header is one row at 1280 px and at most two at 390 px; one popover at a time.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

import { Belfry, waitFor } from "../lib/belfry.mjs";
import { launchContext } from "../lib/browser.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

let belfry;
let browser;

before(async () => {
  belfry = await new Belfry().start();
  browser = await launchContext();
});

after(async () => {
  await browser?.close();
  await belfry?.stop();
});

async function violations(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => {
    const result = await window.axe.run(document);
    return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
}

async function openAs(user, query = {}) {
  const page = await browser.newPage();
  await page.goto(`${belfry.url}/?${new URLSearchParams({ ...(user ? { user } : {}), ...query })}`);
  if (user) {
    await page.getByTestId("current-user").waitFor();
    await waitFor("the page to connect", async () =>
      /^connected$/i.test(((await page.getByTestId("connection-status").textContent()) ?? "").trim()),
    );
  } else {
    await page.getByTestId("signin-alice").waitFor();
  }
  return page;
}

test("axe finds nothing on the demo's pages, with the bell closed, lit and open", async () => {
  const signedOut = await openAs(null);
  assert.deepEqual(await violations(signedOut), [], "blog, signed out");
  await signedOut.close();

  await belfry.notify("alice", "comment.created", { post_id: 1, actor_name: "Bob", preview: "Nice" });
  const page = await openAs("alice");
  await waitFor("the badge", async () => (await page.getByTestId("belfry-badge").count()) === 1);
  assert.deepEqual(await violations(page), [], "blog, bell lit and closed");
  await page.getByTestId("belfry-bell").click();
  await page.getByTestId("belfry-panel").waitFor();
  assert.deepEqual(await violations(page), [], "blog, bell open");
  await page.keyboard.press("Escape");
  await page.getByTestId("settings-toggle").click();
  await page.getByTestId("settings-panel").waitFor();
  await page.getByTestId("pref-muted").waitFor();
  assert.deepEqual(await violations(page), [], "blog, settings open");
  await page.close();

  const todo = await openAs("alice", { page: "todo" });
  assert.deepEqual(await violations(todo), [], "todo");
  await todo.close();
});

test("one popover at a time, and settings closes on a page change", async () => {
  const page = await openAs("alice");
  await page.getByTestId("settings-toggle").click();
  await page.getByTestId("settings-panel").waitFor();
  await page.getByTestId("belfry-bell").click();
  await page.getByTestId("belfry-panel").waitFor();
  assert.equal(await page.getByTestId("settings-panel").count(), 0, "opening the bell closes settings");
  await page.getByTestId("settings-toggle").click();
  await page.getByTestId("settings-panel").waitFor();
  assert.equal(await page.getByTestId("belfry-panel").count(), 0, "opening settings closes the bell");
  await page.getByTestId("nav-todo").click();
  await waitFor("settings to close on the todo tab", async () => (await page.getByTestId("settings-panel").count()) === 0);
  // By keyboard too (no pointer event outside the panel).
  await page.getByTestId("settings-toggle").click();
  await page.getByTestId("settings-panel").waitFor();
  await page.getByTestId("nav-blog").press("Enter");
  await waitFor("settings to close on the blog tab", async () => (await page.getByTestId("settings-panel").count()) === 0);
  await page.close();
});

test("the mute checkbox sits next to its label", async () => {
  const page = await openAs("alice");
  await page.getByTestId("settings-toggle").click();
  const box = await page.getByTestId("pref-muted").boundingBox();
  const label = await page.getByText("Mute all notifications").boundingBox();
  assert.ok(box.width < 30, `the checkbox is ${box.width} px wide`);
  assert.ok(label.x - (box.x + box.width) < 24, `gap between checkbox and label: ${label.x - (box.x + box.width)} px`);
  await page.close();
});

for (const [width, maxRows] of [
  [1280, 1],
  [390, 2],
]) {
  test(`the header takes at most ${maxRows} row(s) at ${width} px`, async () => {
    const page = await openAs("alice");
    await page.setViewportSize({ width, height: 800 });
    // Children whose boxes overlap vertically share a row.
    const rows = await page.evaluate(() => {
      const boxes = [...document.querySelector(".site-header").children]
        .map((c) => c.getBoundingClientRect())
        .filter((b) => b.height > 0)
        .sort((a, b) => a.top - b.top);
      let count = 0;
      let bottom = -Infinity;
      for (const b of boxes) {
        if (b.top >= bottom - 1) count += 1;
        bottom = Math.max(bottom, b.bottom);
      }
      return count;
    });
    await page.screenshot({ path: new URL(`../artifacts/header-${width}.png`, import.meta.url).pathname });
    assert.ok(rows <= maxRows, `${rows} rows at ${width} px`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, "no horizontal scrolling");
    await page.close();
  });
}
