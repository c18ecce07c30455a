// The demo's shared todo list in real browsers: two users edit one list live through the room
// `todo:demo`, a late tab catches up, and presence lists each user once however many tabs.
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

/** Opens the blog as `user`, then the todo page with one click, and waits until it is in the room. */
async function openTodo(context, user) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${user}] page error:`, e.message));
  await page.goto(`${belfry.url}/?user=${user}`);
  await page.getByTestId("current-user").waitFor();
  await page.getByTestId("nav-todo").click();
  await waitFor(`${user}'s todo page to join the room`, async () =>
    (await page.getByTestId("room-status").getAttribute("data-status")) === "joined",
  );
  return page;
}

/** The member names a page lists now, read atomically in the page. */
async function members(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="room-member"]')].map((m) => m.textContent.trim()),
  );
}

/** The todo items a page shows now: text and done state. */
async function todos(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="todo-item"]')].map((li) => ({
      text: li.querySelector(".todo-text")?.textContent ?? "",
      done: li.getAttribute("data-done") === "true",
    })),
  );
}

async function waitForMembers(page, expected, what) {
  await waitFor(what, async () => JSON.stringify(await members(page)) === JSON.stringify(expected));
}

async function add(page, text) {
  await page.getByTestId("todo-input").fill(text);
  await page.getByTestId("todo-add").click();
}

test("Alice and Bob edit one todo list live, and each user is listed once however many tabs", async () => {
  const alice = await openTodo(aliceBrowser, "alice");
  const bob = await openTodo(bobBrowser, "bob");
  assert.match(alice.url(), /[?&]page=todo/);
  await waitForMembers(alice, ["Alice", "Bob"], "alice to see both members");
  await waitForMembers(bob, ["Alice", "Bob"], "bob to see both members");

  // Alice adds, Bob sees it without a reload.
  await add(alice, "milk");
  await waitFor("bob to see milk", async () =>
    JSON.stringify(await todos(bob)) === JSON.stringify([{ text: "milk", done: false }]),
  );

  // Bob ticks it off, Alice sees it done.
  await bob.getByTestId("todo-item").filter({ hasText: "milk" }).getByTestId("todo-toggle").click();
  await waitFor("alice to see milk done", async () =>
    JSON.stringify(await todos(alice)) === JSON.stringify([{ text: "milk", done: true }]),
  );

  // A second tab of Alice's catches up with the list and is not a third member for Bob.
  const aliceTab2 = await openTodo(aliceBrowser, "alice");
  await waitFor("alice's second tab to get the list from the others", async () =>
    JSON.stringify(await todos(aliceTab2)) === JSON.stringify([{ text: "milk", done: true }]),
  );
  await waitForMembers(aliceTab2, ["Alice", "Bob"], "alice's second tab to see both members");
  // Bob's connection got any presence for that tab before this tab's own message, so once Bob
  // shows "bread", his member list is settled.
  await add(aliceTab2, "bread");
  await waitFor("bob to see bread", async () => (await todos(bob)).some((t) => t.text === "bread"));
  await waitFor("alice's first tab to see bread", async () => (await todos(alice)).some((t) => t.text === "bread"));
  assert.deepEqual(await members(bob), ["Alice", "Bob"]);
  await bob.screenshot({ path: join(ARTIFACTS, "todo-live.png") });

  // Removing works the same way, and closing one of Alice's tabs keeps her in the room.
  await bob.getByTestId("todo-item").filter({ hasText: "bread" }).getByTestId("todo-remove").click();
  await waitFor("alice's tabs to see bread removed", async () =>
    !(await todos(alice)).some((t) => t.text === "bread") && !(await todos(aliceTab2)).some((t) => t.text === "bread"),
  );
  await aliceTab2.close();
  await add(alice, "eggs");
  await waitFor("bob to see eggs", async () => (await todos(bob)).some((t) => t.text === "eggs"));
  assert.deepEqual(await members(bob), ["Alice", "Bob"]);

  // When Alice's last tab goes, Bob sees her leave.
  await alice.close();
  await waitForMembers(bob, ["Bob"], "bob to see alice leave");
  await bob.close();
});

test("after a server restart both pages join the room again, keep the list, and stay live", async () => {
  const alice = await openTodo(aliceBrowser, "alice");
  const bob = await openTodo(bobBrowser, "bob");
  await add(alice, "tea");
  await waitFor("bob to see tea", async () => (await todos(bob)).some((t) => t.text === "tea"));

  // The server keeps no room state: the pages must notice, join again, and carry the list.
  await belfry.stop();
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    await waitFor(`${who}'s page to notice the room is gone`, async () =>
      (await page.getByTestId("room-status").getAttribute("data-status")) !== "joined",
    );
  }
  await belfry.start();
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    await waitFor(`${who}'s page to join again`, async () =>
      (await page.getByTestId("room-status").getAttribute("data-status")) === "joined",
    );
  }
  await waitForMembers(alice, ["Alice", "Bob"], "alice to see both members again");
  await waitForMembers(bob, ["Alice", "Bob"], "bob to see both members again");

  await add(bob, "jam");
  await waitFor("alice to see jam after the restart", async () =>
    (await todos(alice)).map((t) => t.text).join(",") === "tea,jam",
  );
  assert.deepEqual((await todos(bob)).map((t) => t.text), ["tea", "jam"]);
  await alice.close();
  await bob.close();
});
