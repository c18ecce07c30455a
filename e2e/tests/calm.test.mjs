// Calm notifications (issue 7) in real browsers: likes on one post become one bell item that is
// updated in place, a type muted in the settings panel never arrives live (but is kept in the
// history), and the service worker shows a push digest as one notification.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Belfry, waitFor } from "../lib/belfry.mjs";
import { launchContext } from "../lib/browser.mjs";

let belfry;
/** Alice's browser, and one more for the others: sign-in is per tab, so Bob and Carol share it. */
let aliceBrowser;
let othersBrowser;

before(async () => {
  belfry = await new Belfry().start();
  aliceBrowser = await launchContext();
  othersBrowser = await launchContext();
});

after(async () => {
  await aliceBrowser?.close();
  await othersBrowser?.close();
  await belfry?.stop();
});

const isConnected = async (page) =>
  /^connected$/i.test(((await page.getByTestId("connection-status").textContent()) ?? "").trim());

async function openAs(context, user) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto(`${belfry.url}/?user=${user}`);
  await page.getByTestId("current-user").waitFor();
  await waitFor(`${user}'s page to connect`, () => isConnected(page));
  return page;
}

/** The badge's text now, "" when there is no badge (read atomically in the page). */
async function badge(page) {
  return page.evaluate(
    () => document.querySelector('[data-testid="belfry-badge"]')?.textContent?.trim() ?? "",
  );
}

/** The bell items whose text matches `pattern` (a regexp source), read atomically. */
async function items(page, pattern) {
  return page.evaluate((source) => {
    const re = new RegExp(source);
    return [...document.querySelectorAll('[data-testid="belfry-item"]')]
      .filter((li) => re.test(li.textContent ?? ""))
      .map((li) => ({
        text: (li.textContent ?? "").trim(),
        unread: li.getAttribute("data-unread"),
        muted: li.getAttribute("data-muted"),
        count: li.getAttribute("data-count"),
        marked: li.hasAttribute("data-e2e-mark"),
      }));
  }, pattern);
}

async function like(page, postId) {
  await page.getByTestId(`like-${postId}`).click();
  await waitFor(`the like of post ${postId} to be stored`, async () =>
    (await page.getByTestId(`like-${postId}`).getAttribute("aria-pressed")) === "true",
  );
}

test("two likes on Alice's post are one bell item, updated live in place, and the badge stays 1", async () => {
  await belfry.markAllRead("alice");
  const alice = await openAs(aliceBrowser, "alice");
  const bob = await openAs(othersBrowser, "bob");
  const carol = await openAs(othersBrowser, "carol");
  await waitFor("alice to start with no unread", async () => (await badge(alice)) === "");
  await alice.getByTestId("belfry-bell").click();
  await alice.getByTestId("belfry-panel").waitFor();
  // Track the most like items the panel ever shows, so a second one cannot slip in unseen
  // between two checks.
  await alice.evaluate(() => {
    const likes = () =>
      [...document.querySelectorAll('[data-testid="belfry-item"]')].filter((li) => /liked/.test(li.textContent ?? ""))
        .length;
    window.__maxLikeItems = likes();
    new MutationObserver(() => {
      window.__maxLikeItems = Math.max(window.__maxLikeItems, likes());
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });

  await like(bob, 1);
  await waitFor("alice's badge to show 1", async () => (await badge(alice)) === "1");
  await waitFor("Bob's like to be listed", async () => {
    const found = await items(alice, "liked");
    return found.length === 1 && /Bob liked your post “Hello, Belfry”/.test(found[0].text);
  });
  // Mark the element: an item updated in place keeps it, a replaced one would not.
  await alice.evaluate(() =>
    [...document.querySelectorAll('[data-testid="belfry-item"]')]
      .find((li) => /liked/.test(li.textContent ?? ""))
      .setAttribute("data-e2e-mark", ""),
  );

  await like(carol, 1);
  const merged = await waitFor("the like item to name both", async () => {
    const found = await items(alice, "liked");
    return found.length === 1 && /Carol and (Bob|1 other) liked your post “Hello, Belfry”/.test(found[0].text)
      ? found[0]
      : null;
  });

  assert.equal(merged.count, "2");
  assert.equal(merged.unread, "true");
  assert.ok(merged.marked, "the same list item, updated in place");
  assert.equal(await alice.evaluate(() => window.__maxLikeItems), 1, "never two like items");
  assert.equal(await badge(alice), "1");
  assert.equal((await items(alice, "")).length, 1);
  await alice.close();
  await bob.close();
  await carol.close();
});

test("likes muted in Bob's settings never arrive live, and the bell lists them after a reload", async () => {
  await belfry.setPreferences("bob", {});
  await belfry.markAllRead("bob");
  const bob = await openAs(othersBrowser, "bob");
  const carol = await openAs(othersBrowser, "carol");
  await waitFor("bob to start with no unread", async () => (await badge(bob)) === "");

  await bob.getByTestId("settings-toggle").click();
  const likesInApp = bob.getByTestId("pref-post.liked-in_app");
  await likesInApp.waitFor();
  assert.equal(await likesInApp.isChecked(), true);
  await likesInApp.click();
  await waitFor("the setting to be saved", async () =>
    (await bob.getByTestId("settings-status").getAttribute("data-state")) === "saved" &&
    !(await likesInApp.isChecked()),
  );
  const stored = await belfry.preferences("bob");
  assert.equal(stored.types?.["post.liked"]?.in_app, false);

  await like(carol, 2);
  // The comment is stored after the like, and one connection delivers in seq order: once the
  // comment is here, a like delivered live would be here too.
  await carol.getByTestId("comment-input-2").fill("Sentinel after the muted like");
  await carol.getByTestId("comment-submit-2").click();
  await waitFor("bob's badge to count the comment", async () => (await badge(bob)) === "1");
  await bob.getByTestId("belfry-bell").click();
  await waitFor("the comment to be listed", async () => (await items(bob, "Sentinel")).length === 1);
  assert.deepEqual(await items(bob, "liked"), [], "the muted like did not arrive live");

  const history = await belfry.notifications("bob");
  const mutedLike = history.find((n) => n.type === "post.liked");
  assert.ok(mutedLike, "the like is stored");
  assert.equal(mutedLike.muted, true);
  assert.notEqual(mutedLike.read_at, null);

  await bob.reload();
  await waitFor("bob's page to connect again", () => isConnected(bob));
  await bob.getByTestId("belfry-bell").click();
  const listed = await waitFor("the muted like in the history", async () => (await items(bob, "Carol liked your post"))[0]);
  assert.equal(listed.muted, "true");
  assert.equal(listed.unread, "false");
  assert.equal(await badge(bob), "1", "only the comment is unread");

  await belfry.setPreferences("bob", {});
  await bob.close();
  await carol.close();
});

test("the service worker shows a push digest as one “N new notifications”", async () => {
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
  const shown = () =>
    page.evaluate(async () =>
      (await (await navigator.serviceWorker.ready).getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag })),
    );
  const before = (await shown()).length;

  // A push handed over by CDP was once never shown under load (the cause is not known; the
  // worker may not have been running yet). The digest carries a fixed tag, so a push sent again
  // replaces its notification instead of adding one: the count check below still holds.
  const push = () => cdp.send("ServiceWorker.deliverPushMessage", {
    origin: belfry.url,
    registrationId: registration.registrationId,
    data: JSON.stringify({
      v: 1, digest: true, user_id: "alice", count: 5,
      latest: {
        v: 1, id: "digest-latest", seq: 9_999, user_id: "alice", type: "comment.created", group_key: null,
        created_at: new Date().toISOString(), data: { actor_name: "Bob", preview: "the newest of five" },
        data_truncated: false,
      },
    }),
  });
  await push();
  let pushedAt = Date.now();
  const digest = await waitFor("the digest to be shown", async () => {
    const found = (await shown()).find((n) => n.tag === "belfry-digest");
    if (!found && Date.now() - pushedAt > 3_000) {
      await push();
      pushedAt = Date.now();
    }
    return found;
  });
  assert.equal(digest.title, "5 new notifications");
  assert.match(digest.body, /the newest of five/);
  assert.equal((await shown()).length, before + 1, "one system notification for the five");
  await page.close();
});
