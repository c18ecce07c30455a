import { afterEach, describe, expect, it, vi } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import { CloseCode } from "../src/core/codes.js";
import { NotificationStore } from "../src/core/store.js";
import type { Notification, TransportName } from "../src/core/types.js";
import { FakeBelfry } from "./fakeServer.js";
import { flush, setup, until } from "./helpers.js";

let running: BelfryClient[] = [];
afterEach(() => {
  for (const client of running) client.stop();
  running = [];
  vi.useRealTimers();
});

function started(options: Parameters<typeof setup>[0] = {}) {
  const s = setup(options);
  running.push(s.client);
  s.client.start();
  return s;
}

const like = (server: FakeBelfry, actor: string, post = 7) =>
  server.notify("alice", "post.liked", { post_id: post, actor_name: actor }, { groupKey: `post:${post}:likes`, actor });

const list = (client: BelfryClient) => client.getSnapshot().notifications;

let nextId = 0;
function item(seq: number, extra: Partial<Notification> = {}): Notification {
  nextId += 1;
  return {
    id: `g-${nextId}`,
    seq,
    user_id: "alice",
    type: "x",
    data: {},
    created_at: "2026-01-01T00:00:00Z",
    seen_at: null,
    read_at: null,
    archived_at: null,
    expires_at: null,
    ...extra,
  };
}

const page = (notifications: Notification[], unread: number, lastSeq: number) => ({
  notifications,
  next_cursor: null,
  unread_count: unread,
  last_seq: lastSeq,
});

describe("NotificationStore.applyUpdate", () => {
  it("replaces the item in place, moves it to its new seq and keeps the count", () => {
    const store = new NotificationStore();
    const [a, b, c] = [item(1), item(2), item(3)];
    store.applyFirstPage(page([c, b, a], 3, 3), { counts: true });

    expect(store.applyUpdate({ ...a, seq: 4, count: 2, actors: ["Bob", "Ann"] })).toBe(true);

    const snapshot = store.getSnapshot();
    expect(snapshot.notifications.map((n) => [n.id, n.seq])).toEqual([[a.id, 4], [c.id, 3], [b.id, 2]]);
    expect(snapshot.notifications[0]!.count).toBe(2);
    expect(snapshot.unreadCount).toBe(3);
    expect(store.highestSeq).toBe(4);
  });

  it("inserts an item it did not hold, without counting it", () => {
    const store = new NotificationStore();
    store.applyFirstPage(page([item(5)], 4, 5), { counts: true });
    const older = item(6, { count: 3 });
    expect(store.applyUpdate(older)).toBe(true);
    expect(store.getSnapshot().notifications.map((n) => n.id)).toEqual([older.id, expect.any(String)]);
    expect(store.getSnapshot().unreadCount).toBe(4);
  });

  it("ignores a copy that is not newer than the one held, and a seq another item holds", () => {
    const store = new NotificationStore();
    const a = item(1);
    const b = item(2);
    store.applyFirstPage(page([b, a], 2, 2), { counts: true });
    store.applyUpdate({ ...a, seq: 3, count: 2 });
    const before = store.getSnapshot();

    expect(store.applyUpdate({ ...a, seq: 3, count: 2 })).toBe(false); // the same frame again
    expect(store.applyUpdate({ ...a, seq: 2, count: 9 })).toBe(false); // stale
    expect(store.applyUpdate({ ...item(2), count: 2 })).toBe(false); // seq 2 is b's
    expect(store.addNotification({ ...a, seq: 1 })).toBe(false); // its old self
    expect(store.getSnapshot()).toBe(before);
  });

  it("frees the old seq and keeps the new one reserved", () => {
    const store = new NotificationStore();
    const a = item(1);
    store.applyFirstPage(page([a], 1, 1), { counts: true });
    store.applyUpdate({ ...a, seq: 2, count: 2 });
    // Servers never reuse a seq; this only shows what the dedupe set holds now.
    expect(store.addNotification(item(2))).toBe(false);
    expect(store.addNotification(item(1))).toBe(true);
    expect(store.getSnapshot().notifications.map((n) => n.seq)).toEqual([2, 1]);
  });

  it("does not count an update, but still counts notifications after it", () => {
    const store = new NotificationStore();
    const a = item(1);
    store.applyFirstPage(page([a], 1, 1), { counts: true });
    store.applyUpdate({ ...a, seq: 2, count: 2 });
    store.applyUpdate({ ...a, seq: 3, count: 3 });
    expect(store.getSnapshot().unreadCount).toBe(1);
    store.addNotification(item(4));
    expect(store.getSnapshot().unreadCount).toBe(2);
  });

  it("takes a known id at a higher seq given to addNotification as an update", () => {
    const store = new NotificationStore();
    const a = item(1);
    store.applyFirstPage(page([a], 1, 1), { counts: true });
    expect(store.addNotification({ ...a, seq: 2, count: 2 })).toBe(true);
    expect(store.getSnapshot().notifications).toHaveLength(1);
    expect(store.getSnapshot().notifications[0]!.seq).toBe(2);
    expect(store.getSnapshot().unreadCount).toBe(1);
  });

  it("keeps a read applied here when the server's copy predates it", () => {
    const store = new NotificationStore();
    const a = item(1);
    store.applyFirstPage(page([a], 1, 1), { counts: true });
    store.markReadLocally([a.id]);
    store.applyUpdate({ ...a, seq: 2, count: 2 });
    expect(store.get(a.id)!.read_at).not.toBeNull();
    expect(store.getSnapshot().unreadCount).toBe(0);
  });

  it("keeps the newer copy when a reconciling page is older than an update it raced", () => {
    const store = new NotificationStore();
    const a = item(1);
    store.applyFirstPage(page([a], 1, 1), { counts: true });
    store.applyUpdate({ ...a, seq: 2, count: 2 });
    store.applyFirstPage(page([a], 1, 1), { counts: false }); // read before the merge
    expect(store.getSnapshot().notifications.map((n) => [n.seq, n.count])).toEqual([[2, 2]]);
  });
});

describe.each<TransportName>(["websocket", "sse", "poll"])("grouped notifications over %s", (transport) => {
  it("an event merged into an item updates it in place, live, without changing the count", async () => {
    const { server, client } = started({ transports: [transport] });
    await until("connected", () => client.status === "connected");
    const updates: Notification[] = [];
    const added: Notification[] = [];
    client.on("updated", (n) => updates.push(n));
    client.on("notification", (n) => added.push(n));

    const first = like(server, "Ann");
    server.notify("alice", "comment.created", { preview: "hi" });
    await until("two items", () => list(client).length === 2);
    expect(client.getSnapshot().unreadCount).toBe(2);

    like(server, "Bob");
    await until("the like moved up", () => list(client)[0]?.id === first.id);
    like(server, "Cy");
    await until("count 3", () => list(client)[0]?.count === 3);

    expect(list(client)).toHaveLength(2);
    expect(list(client)[0]).toMatchObject({ id: first.id, seq: 4, count: 3, actors: ["Cy", "Bob", "Ann"], actor_count: 3 });
    expect(list(client).map((n) => n.seq)).toEqual([4, 2]);
    expect(client.getSnapshot().unreadCount).toBe(2);
    expect(server.unreadCount("alice")).toBe(2);
    expect(added.map((n) => n.id)).toHaveLength(2);
    expect(updates.map((n) => [n.id, n.count])).toEqual([[first.id, 2], [first.id, 3]]);
  });

  it("an update for an item older than the loaded pages is inserted at the top, never counted", async () => {
    const server = new FakeBelfry();
    const old = like(server, "Ann");
    for (let i = 0; i < 3; i += 1) server.notify("alice", "comment.created", { preview: `c${i}` });
    const { client } = started({ server, pageSize: 3, transports: [transport] });
    await until("connected", () => client.status === "connected");
    expect(list(client).some((n) => n.id === old.id)).toBe(false);
    expect(client.getSnapshot().unreadCount).toBe(4);
    const counts: number[] = [];
    client.subscribe(() => counts.push(client.getSnapshot().unreadCount));

    like(server, "Bob");
    await until("inserted", () => list(client)[0]?.id === old.id);
    await flush(200);
    expect(list(client)).toHaveLength(4);
    expect(list(client)[0]).toMatchObject({ count: 2, actors: ["Bob", "Ann"] });
    expect(new Set([...counts, client.getSnapshot().unreadCount])).toEqual(new Set([4]));
  });
});

describe("grouped notifications and resuming", () => {
  it("after a reconnect, hello's count stands and catch-up updated frames only move items", async () => {
    vi.useFakeTimers();
    const { server, client } = started();
    await until("connected", () => client.status === "connected");
    const group = like(server, "Ann");
    server.notify("alice", "comment.created", { preview: "one" });
    await until("two items", () => list(client).length === 2);

    server.ws = "refuse";
    server.closeSockets(1006);
    await until("disconnected", () => client.status !== "connected");
    like(server, "Bob"); // merged twice while away, plus one new item
    like(server, "Cy");
    server.notify("alice", "comment.created", { preview: "two" });
    server.ws = "accept";
    // From the hello on, every count shown is hello's: the catch-up frames change none.
    const counts: number[] = [];
    client.on("hello", (hello) => {
      counts.push(hello.unread_count);
      client.subscribe(() => counts.push(client.getSnapshot().unreadCount));
    });
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", () => client.status === "connected");
    await until("three items", () => list(client).length === 3);
    await flush(500);

    const auth = server.lastSocket().sent[0];
    expect(auth).toMatchObject({ type: "auth", since: 2 });
    expect(list(client).map((n) => [n.id === group.id, n.seq])).toEqual([[false, 5], [true, 4], [false, 2]]);
    expect(list(client)[1]!.count).toBe(3);
    expect(client.getSnapshot().unreadCount).toBe(3);
    expect(new Set(counts)).toEqual(new Set([3]));
  });

  it("resumes after an updated frame with since = its seq", async () => {
    vi.useFakeTimers();
    const { server, client } = started();
    await until("connected", () => client.status === "connected");
    like(server, "Ann");
    like(server, "Bob");
    await until("merged", () => list(client)[0]?.count === 2);

    server.closeSockets(CloseCode.Shutdown);
    await until("reconnecting", () => client.status === "connecting");
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", () => client.status === "connected");
    expect(server.lastSocket().sent[0]).toMatchObject({ type: "auth", since: 2 });
  });

  it("a muted notification is not delivered live, and the first page lists it read", async () => {
    const { server, client } = started();
    server.user("alice").preferences = {
      muted: false,
      mute_until: null,
      channels: { in_app: true, web_push: true },
      types: { "post.liked": { in_app: false } },
    };
    await until("connected", () => client.status === "connected");
    like(server, "Ann");
    server.notify("alice", "comment.created", { preview: "after" });
    await until("the comment", () => list(client).length > 0);
    await flush(200);
    expect(list(client).map((n) => n.type)).toEqual(["comment.created"]);
    expect(client.getSnapshot().unreadCount).toBe(1);

    const fresh = setup({ server });
    running.push(fresh.client);
    fresh.client.start();
    await until("second client loaded", () => fresh.client.getSnapshot().loaded);
    const muted = fresh.client.getSnapshot().notifications.find((n) => n.type === "post.liked");
    expect(muted).toMatchObject({ muted: true });
    expect(muted!.read_at).not.toBeNull();
    expect(fresh.client.getSnapshot().unreadCount).toBe(1);
  });
});
