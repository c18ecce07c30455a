// The FastAPI blog example (examples/fastapi-blog) in real browsers, started by its own one
// command (run.sh: Belfry and the FastAPI app): a comment posted through FastAPI lights the
// author's bell and appears live in the thread another user is reading; likes are grouped, and a
// muted type is not delivered.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { freePort, waitFor } from "../lib/belfry.mjs";
import { launchContext } from "../lib/browser.mjs";

const ROOT = resolve(import.meta.dirname, "..", "..");
const RUN = join(ROOT, "examples", "fastapi-blog", "run.sh");
const ARTIFACTS = resolve(import.meta.dirname, "..", "artifacts");

let blog;
let blogUrl;
let log = "";
const browsers = {};

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Building and installing may take a while on a fresh machine; it is done before the clock runs.
  const setup = spawnSync(RUN, ["setup"], { stdio: "inherit" });
  assert.equal(setup.status, 0, "examples/fastapi-blog/run.sh setup failed");
  const port = await freePort();
  blogUrl = `http://127.0.0.1:${port}`;
  blog = spawn(RUN, [], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      BLOG_PORT: String(port),
      BLOG_BELFRY_PORT: String(await freePort()),
      BLOG_DATA: mkdtempSync(join(tmpdir(), "belfry-fastapi-blog-")),
    },
  });
  blog.stdout.on("data", (d) => (log += d));
  blog.stderr.on("data", (d) => (log += d));
  await waitFor(`the blog at ${blogUrl} (log: ${log})`, async () => (await fetch(`${blogUrl}/api/posts`)).ok, 60_000);
  for (const name of ["alice", "bob", "carol"]) browsers[name] = await launchContext();
});

after(async () => {
  for (const context of Object.values(browsers)) await context.close();
  if (blog && blog.exitCode === null) {
    const exited = new Promise((res) => blog.once("exit", res));
    process.kill(blog.pid, "SIGTERM");
    await exited;
  }
});

async function signIn(name) {
  const page = await browsers[name].newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e.message));
  await page.goto(blogUrl);
  await page.getByTestId("login-name").fill(name);
  await page.getByTestId("login-password").fill("password");
  await page.getByTestId("login-submit").click();
  await page.getByTestId("current-user").waitFor();
  await page.getByTestId("like-1").waitFor();
  return page;
}

const badge = (page) =>
  page.evaluate(() => document.querySelector('[data-testid="belfry-badge"]')?.textContent?.trim() ?? "");

test("a comment posted through FastAPI lights the author's bell and joins the live thread; likes group; mute holds", async () => {
  const alice = await signIn("alice");
  const bob = await signIn("bob");
  const carol = await signIn("carol");
  assert.equal(await badge(alice), "");
  // Carol's thread is live once her room is joined; wait for that before Bob comments.
  await waitFor("carol's thread to be live (the post's room joined)", async () =>
    (await carol.getByTestId("thread-1").textContent()) === "live",
  );

  await bob.getByTestId("comment-input-1").fill("Lovely post, Alice!");
  await bob.getByTestId("comment-submit-1").click();

  await waitFor("alice's badge to show 1", async () => (await badge(alice)) === "1");
  await alice.getByTestId("belfry-bell").click();
  assert.match(await alice.getByTestId("belfry-item").first().textContent(), /bob: Lovely post/);
  await alice.keyboard.press("Escape");
  await waitFor("the comment in carol's thread without a reload", async () =>
    /Lovely post, Alice!/.test(await carol.getByTestId("comments-1").textContent()),
  );
  await alice.screenshot({ path: join(ARTIFACTS, "fastapi-blog.png") });

  await bob.getByTestId("like-1").click();
  await waitFor("alice's badge to count the like", async () => (await badge(alice)) === "2");
  await carol.getByTestId("like-1").click();
  await alice.getByTestId("belfry-bell").click();
  await waitFor("carol's like to join bob's in one item", async () => {
    const items = await alice.getByTestId("belfry-item").allTextContents();
    return items.length === 2 && /carol/i.test(items[0]) && /bob/i.test(items[0]);
  });
  assert.equal(await badge(alice), "2", "a grouped like does not add to the count");
  await alice.keyboard.press("Escape");

  // Mute likes (a Belfry preference): Carol's like is stored muted, Bob's later comment is not.
  await alice.getByTestId("mute-likes").check();
  await waitFor("the mute to be saved", async () =>
    (await alice.getByTestId("mute-likes").isChecked()) &&
    (await alice.getByTestId("mute-likes-label").getAttribute("data-saving")) === "false",
  );
  await carol.getByTestId("like-3").click();
  await bob.getByTestId("comment-input-3").fill("Shh.");
  await bob.getByTestId("comment-submit-3").click();
  await waitFor("alice's badge to count bob's comment", async () => (await badge(alice)) === "3");
  await alice.getByTestId("belfry-bell").click();
  const items = await alice.getByTestId("belfry-item").allTextContents();
  assert.ok(items.some((t) => /bob: Shh\./.test(t)), items.join(" | "));
  assert.ok(!items.some((t) => /Likes on Quiet please/.test(t)), "the muted like was not delivered");
});
