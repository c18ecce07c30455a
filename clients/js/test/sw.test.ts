// The service worker (sw/belfry-sw.js) run in a vm context with a stand-in `self`: what it
// shows for a push. The real thing in Chromium is covered by the browser tests (e2e/).
import { readFileSync } from "node:fs";
import { runInNewContext } from "node:vm";

import { describe, expect, it } from "vitest";

const SOURCE = readFileSync(new URL("../sw/belfry-sw.js", import.meta.url), "utf8");

interface Shown {
  title: string;
  options: { body: string; tag: string; data: Record<string, unknown> };
}

/** Loads the worker; `windows` are the open pages, each answering "seen?" with `seen`. */
function worker(windows: { seen: boolean }[] = []) {
  const listeners = new Map<string, (event: unknown) => void>();
  const shown: Shown[] = [];
  const told: unknown[] = [];
  const clients = windows.map((w) => ({
    visibilityState: "visible",
    url: "http://app.test/",
    postMessage(message: { type: string }, ports?: MessagePort[]) {
      if (message.type === "belfry:seen?") ports?.[0]?.postMessage({ seen: w.seen });
      else told.push(message);
    },
  }));
  const self = {
    addEventListener: (type: string, listener: (event: unknown) => void) => listeners.set(type, listener),
    registration: {
      showNotification: async (title: string, options: Shown["options"]) => void shown.push({ title, options }),
    },
    clients: { matchAll: async () => clients },
    location: { origin: "http://app.test" },
  };
  runInNewContext(SOURCE, { self, MessageChannel, setTimeout, clearTimeout, URL, console });
  const push = async (payload: unknown) => {
    let done: Promise<unknown> = Promise.resolve();
    listeners.get("push")!({ data: { json: () => payload }, waitUntil: (p: Promise<unknown>) => (done = p) });
    await done;
  };
  return { push, shown, told };
}

const usual = (extra: Record<string, unknown> = {}) => ({
  v: 1,
  id: "n-9",
  seq: 9,
  user_id: "7",
  type: "comment.created",
  group_key: "post:1:comments",
  created_at: "2026-11-22T21:04:05.123Z",
  data: { actor_name: "Alice", preview: "Nice post!" },
  data_truncated: false,
  ...extra,
});

describe("the service worker", () => {
  it("shows a digest as “N new notifications” with the latest one's text", async () => {
    const sw = worker();
    await sw.push({ v: 1, digest: true, user_id: "7", count: 5, latest: usual() });
    expect(sw.shown).toHaveLength(1);
    expect(sw.shown[0]!.title).toBe("5 new notifications");
    expect(sw.shown[0]!.options.body).toContain("Nice post!");
    expect(sw.shown[0]!.options.tag).toBe("belfry-digest");
    expect(sw.shown[0]!.options.data).toMatchObject({ url: "/", digest: true });
  });

  it("skips a digest whose latest notification a visible page already showed", async () => {
    const sw = worker([{ seen: true }]);
    await sw.push({ v: 1, digest: true, user_id: "7", count: 3, latest: usual() });
    expect(sw.shown).toHaveLength(0);
    expect(sw.told).toContainEqual({ type: "belfry:push", id: "n-9", digest: true, shown: false });
  });

  it("names a grouped item's actors", async () => {
    const sw = worker();
    await sw.push(usual({ count: 3, actors: ["Cy", "Bob", "Alice"], actor_count: 3 }));
    expect(sw.shown[0]!.title).toBe("Cy and 2 others: comment.created");
  });

  it("still shows a usual push by itself, tagged by its group", async () => {
    const sw = worker([{ seen: false }]);
    await sw.push(usual());
    expect(sw.shown).toHaveLength(1);
    expect(sw.shown[0]!.title).not.toMatch(/new notifications/);
    expect(sw.shown[0]!.options).toMatchObject({ body: "Nice post!", tag: "post:1:comments" });
  });
});
