// The demo blog in real browsers: the bell lights up live, read state syncs across tabs, and a
// page rides out a server restart without missing or repeating a notification.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

import { Belfry, waitFor } from "../lib/belfry.mjs";
import { launchContext } from "../lib/browser.mjs";

const ARTIFACTS = resolve(import.meta.dirname, "..", "artifacts");

let belfry;
let aliceBrowser;
let bobBrowser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  belfry = await new Belfry().start();
  aliceBrowser = await launchContext();
  bobBrowser = await launchContext();
});

after(async () => {
  await aliceBrowser?.close();
  await bobBrowser?.close();
  await belfry?.stop();
});

async function openAs(context, user) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto(`${belfry.url}/?user=${user}`);
  await page.getByTestId("current-user").waitFor();
  await waitFor(`${user}'s page to connect`, async () =>
    /^connected$/i.test(((await page.getByTestId("connection-status").textContent()) ?? "").trim()),
  );
  return page;
}

/** The badge's text now, "" when there is no badge (read atomically in the page). */
async function badge(page) {
  return page.evaluate(
    () => document.querySelector('[data-testid="belfry-badge"]')?.textContent?.trim() ?? "",
  );
}

async function waitForBadge(page, expected, what) {
  await waitFor(what, async () => (await badge(page)) === expected);
}

test("a comment by Bob lights Alice's bell in another browser without a reload", async () => {
  const alice = await openAs(aliceBrowser, "alice");
  const bob = await openAs(bobBrowser, "bob");
  assert.equal(await badge(alice), "");

  await bob.getByTestId("comment-input-1").fill("Lovely post, Alice!");
  await bob.getByTestId("comment-submit-1").click();

  await waitForBadge(alice, "1", "alice's badge to show 1");
  await alice.getByTestId("belfry-bell").click();
  const item = alice.getByTestId("belfry-item").first();
  await item.waitFor();
  const text = await item.textContent();
  assert.match(text, /Bob/);
  assert.match(text, /Lovely post/);
  await alice.screenshot({ path: join(ARTIFACTS, "bell-open.png") });
  await alice.keyboard.press("Escape");
  await alice.close();
  await bob.close();
});

test("marking all read in one tab clears the badge in Alice's other tab", async () => {
  const tab1 = await openAs(aliceBrowser, "alice");
  const tab2 = await openAs(aliceBrowser, "alice");
  await belfry.markAllRead("alice");
  await waitForBadge(tab1, "", "tab 1 to start with no unread");
  await waitForBadge(tab2, "", "tab 2 to start with no unread");
  await belfry.notify("alice", "post.liked", {
    post_id: 1, post_title: "Hello, Belfry", actor_id: "carol", actor_name: "Carol",
  });
  await waitForBadge(tab1, "1", "tab 1 to count the like");
  await waitForBadge(tab2, "1", "tab 2 to count the like");

  await tab1.getByTestId("belfry-bell").click();
  await tab1.getByTestId("belfry-mark-all").click();

  await waitForBadge(tab2, "", "tab 2's badge to clear");
  await waitForBadge(tab1, "", "tab 1's badge to clear");
  await tab1.close();
  await tab2.close();
});

test("after a server restart the page reconnects by itself and shows every missed notification once", async () => {
  await belfry.markAllRead("alice");
  const alice = await openAs(aliceBrowser, "alice");
  await waitForBadge(alice, "", "no unread before the restart");
  await alice.getByTestId("belfry-bell").click();
  const before = await alice.getByTestId("belfry-item").count();
  await alice.keyboard.press("Escape");

  await belfry.stop();
  await waitFor("the page to notice the server is gone", async () =>
    !/^connected$/i.test(((await alice.getByTestId("connection-status").textContent()) ?? "").trim()),
  );
  await belfry.start();
  const titles = ["missed one", "missed two", "missed three"];
  for (const preview of titles) {
    await belfry.notify("alice", "comment.created", {
      post_id: 1, post_title: "Hello, Belfry", actor_id: "bob", actor_name: "Bob", preview,
    });
  }

  await waitForBadge(alice, "3", "the badge to count the three missed notifications");
  await alice.getByTestId("belfry-bell").click();
  await waitFor("the three missed items to be listed", async () =>
    (await alice.getByTestId("belfry-item").count()) === before + 3,
  );
  const texts = await alice.getByTestId("belfry-item").allTextContents();
  for (const preview of titles) {
    assert.equal(texts.filter((t) => t.includes(preview)).length, 1, `${preview} exactly once`);
  }
  await alice.close();
});

test("the service worker shows a push the page did not show, and skips one it already showed live", async () => {
  await aliceBrowser.grantPermissions(["notifications"], { origin: belfry.url });
  const page = await openAs(aliceBrowser, "alice");
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const cdp = await aliceBrowser.newCDPSession(page);
  const registrations = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (event) => registrations.push(...event.registrations));
  await cdp.send("ServiceWorker.enable");
  const registration = await waitFor("the service worker registration", () =>
    registrations.find((r) => r.scopeURL.startsWith(belfry.url) && !r.isDeleted),
  );
  const deliver = (payload) =>
    cdp.send("ServiceWorker.deliverPushMessage", {
      origin: belfry.url,
      registrationId: registration.registrationId,
      data: JSON.stringify(payload),
    });
  const pushLog = () => page.evaluate(() => window.__belfryPushes ?? []);
  const shownCount = () =>
    page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length);

  // A push for a notification this page never saw (say, stored while it was closed): shown.
  await deliver({
    v: 1, id: "pushed-only", seq: 9_999, user_id: "alice", type: "comment.created", group_key: null,
    created_at: new Date().toISOString(), data: { actor_name: "Bob", preview: "seen by push" },
    data_truncated: false,
  });
  await waitFor("the push to be shown", async () => (await pushLog()).some((p) => p.id === "pushed-only" && p.shown));
  assert.equal(await shownCount(), 1);

  // A notification the page showed live, then pushed as well: the worker leaves it out.
  const stored = await belfry.notify("alice", "post.liked", {
    post_id: 1, post_title: "Hello, Belfry", actor_id: "carol", actor_name: "Carol",
  });
  const id = stored.notifications[0].id;
  await waitFor("the page to show it live", async () => (await badge(page)) !== "");
  await deliver({
    v: 1, id, seq: stored.notifications[0].seq, user_id: "alice", type: "post.liked", group_key: null,
    created_at: new Date().toISOString(), data: {}, data_truncated: false,
  });
  await waitFor("the worker to decide", async () => (await pushLog()).some((p) => p.id === id));
  assert.deepEqual((await pushLog()).find((p) => p.id === id), { id, shown: false });
  assert.equal(await shownCount(), 1, "no second system notification");
  await page.close();
});
