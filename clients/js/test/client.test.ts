import { afterEach, describe, expect, it, vi } from "vitest";

import { BelfryClient } from "../src/core/client.js";
import { CloseCode } from "../src/core/codes.js";
import type { ClientFrame, Notification } from "../src/core/types.js";
import { FakeBelfry } from "./fakeServer.js";
import { flush, sentOfType, setup, until, type Setup } from "./helpers.js";

let running: BelfryClient[] = [];

function start(s: Setup): Setup {
  running.push(s.client);
  s.client.start();
  return s;
}

afterEach(() => {
  for (const client of running) client.stop();
  running = [];
  vi.useRealTimers();
});

const connected = (client: BelfryClient) => () => client.status === "connected";
const titles = (client: BelfryClient) => client.getSnapshot().notifications.map((n) => n.data.title);

describe("starting", () => {
  it("loads the first page over HTTP, then connects live with since = the page's last_seq", async () => {
    const server = new FakeBelfry();
    server.notify("alice", "post.liked", { title: "one" });
    server.notify("alice", "post.liked", { title: "two" });
    const { client } = start(setup({ server }));

    await until("connected", connected(client));

    expect(server.requests[0]).toMatchObject({ method: "GET", path: "/v1/me/notifications" });
    const auth = server.lastSocket().sent[0] as Extract<ClientFrame, { type: "auth" }>;
    expect(auth).toMatchObject({ type: "auth", since: 2 });
    expect(server.lastSocket().url).not.toContain("token=");
    expect(titles(client)).toEqual(["two", "one"]);
    expect(client.getSnapshot().unreadCount).toBe(2);
  });

  it("layers live notifications on top, newest first, counting them as unread", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    const seen: Notification[] = [];
    client.on("notification", (n) => seen.push(n));

    server.notify("alice", "comment.created", { title: "first" });
    server.notify("alice", "comment.created", { title: "second" });
    await until("two notifications", () => client.getSnapshot().notifications.length === 2);

    expect(titles(client)).toEqual(["second", "first"]);
    expect(client.getSnapshot().unreadCount).toBe(2);
    expect(seen.map((n) => n.seq)).toEqual([1, 2]);
  });

  it("reads no platform global before start()", () => {
    const fetch = vi.fn();
    const client = new BelfryClient({ url: "http://x", getToken: async () => "t", fetch });
    expect(client.status).toBe("disconnected");
    expect(fetch).not.toHaveBeenCalled();
  });
});

describe("resuming", () => {
  it("reconnects with since = the highest seq seen and shows each notification once", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    await until("connected", connected(client));
    server.notify("alice", "x", { title: "before" });
    await until("one notification", () => client.getSnapshot().notifications.length === 1);

    server.closeSockets(CloseCode.Shutdown);
    await until("reconnecting", () => client.status === "connecting");
    server.notify("alice", "x", { title: "missed 1" });
    server.notify("alice", "x", { title: "missed 2" });
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await until("three notifications", () => client.getSnapshot().notifications.length === 3);

    expect(server.sockets).toHaveLength(2);
    expect(server.lastSocket().sent[0]).toMatchObject({ type: "auth", since: 1 });
    expect(titles(client)).toEqual(["missed 2", "missed 1", "before"]);
    expect(client.getSnapshot().unreadCount).toBe(3);
  });

  it("ignores a notification that arrives twice (same id and seq)", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    const n = server.notify("alice", "x", { title: "once" });
    await until("delivered", () => client.getSnapshot().notifications.length === 1);
    const events: Notification[] = [];
    client.on("notification", (x) => events.push(x));

    server.broadcast("alice", { type: "notification", seq: n.seq, notification: n });
    server.broadcast("alice", { type: "notification", seq: n.seq, notification: { ...n, id: "another-id" } });
    await flush();

    expect(titles(client)).toEqual(["once"]);
    expect(client.getSnapshot().unreadCount).toBe(1);
    expect(events).toEqual([]);
  });

  it("refetches the first page after a reconnect to pick up read state changed meanwhile", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    server.notify("alice", "x", { title: "a" });
    await until("connected", connected(client));
    await until("listed", () => client.getSnapshot().notifications.length === 1);

    server.ws = "refuse";
    server.closeSockets(1006);
    await until("disconnected", () => client.status === "connecting");
    server.change("alice", "read", "all"); // another device, while this page is away
    server.ws = "accept";
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await until("read state reconciled", () => client.getSnapshot().notifications[0]?.read_at != null);

    expect(client.getSnapshot().unreadCount).toBe(0);
  });

  it("starts over when the server's data was reset (hello.last_seq below what the page saw)", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    server.notify("alice", "x", { title: "old" });
    server.notify("alice", "x", { title: "old 2" });
    await until("connected", connected(client));
    await until("listed", () => client.getSnapshot().notifications.length === 2);

    server.user("alice").notifications = [];
    server.user("alice").lastSeq = 0;
    server.closeSockets(CloseCode.Shutdown);
    await until("reconnecting", () => client.status === "connecting");
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await until("list cleared", () => client.getSnapshot().notifications.length === 0);
    server.notify("alice", "x", { title: "new" });
    await until("new one listed", () => client.getSnapshot().notifications.length === 1);
    expect(titles(client)).toEqual(["new"]);
  });
});

describe("outgoing commands", () => {
  it("queues frames while disconnected and flushes them in order after hello", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    const a = server.notify("alice", "x", { title: "a" });
    const b = server.notify("alice", "x", { title: "b" });
    await until("connected", connected(client));

    server.ws = "refuse";
    server.closeSockets(1006);
    await until("disconnected", () => client.status !== "connected");
    const done = [client.markRead([a.id]), client.markAllRead(), client.markUnread([b.id])];
    await flush();
    // Applied locally at once.
    expect(client.getSnapshot().notifications.find((n) => n.id === b.id)?.read_at).toBeNull();
    expect(client.getSnapshot().unreadCount).toBe(1);

    server.ws = "accept";
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await Promise.all(done);

    const sent = server.lastSocket().sent.filter((f) => f.type.startsWith("mark_"));
    expect(sent.map((f) => f.type)).toEqual(["mark_read", "mark_all_read", "mark_unread"]);
    expect(sent[0]).toMatchObject({ ids: [a.id] });
    expect(server.unreadCount("alice")).toBe(1);
    await until("count from state frames", () => client.getSnapshot().unreadCount === 1);
  });

  it("never shows the stale count or read state of a hello that predates queued commands", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    const a = server.notify("alice", "x");
    server.notify("alice", "x");
    await until("connected", connected(client));
    server.ws = "refuse";
    server.closeSockets(1006);
    await until("disconnected", () => client.status !== "connected");
    void client.markAllRead();
    const counts: number[] = [];
    const readState: (string | null | undefined)[] = [];
    client.subscribe(() => {
      counts.push(client.getSnapshot().unreadCount);
      readState.push(client.getSnapshot().notifications.find((n) => n.id === a.id)?.read_at);
    });

    server.ws = "accept";
    server.holdFrames = true; // the server is slow to apply the queued mark_all_read
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await flush(500);
    server.releaseFrames();
    await until("applied on the server", () => server.unreadCount("alice") === 0);
    await flush(500);

    expect(new Set(counts)).toEqual(new Set([0]));
    expect(readState.every((r) => typeof r === "string")).toBe(true);
    expect(server.requests.filter((r) => r.path === "/v1/me/notifications")).toHaveLength(2);
  });

  it("sends commands at once when connected and resolves on ack", async () => {
    const { server, client } = start(setup());
    const a = server.notify("alice", "x");
    await until("connected", connected(client));
    await client.markRead([a.id]);
    expect(sentOfType(server.lastSocket().sent, "mark_read")).toHaveLength(1);
    expect(server.unreadCount("alice")).toBe(0);
  });

  it("rejects a command the server refuses, and reports it", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.code));
    const socket = server.lastSocket();
    const receive = socket["receive"].bind(socket);
    socket["receive"] = (frame: ClientFrame) => {
      if (frame.type === "mark_read") socket.deliver({ type: "error", ref: frame.ref, code: "validation", message: "too many ids" });
      else receive(frame);
    };
    await expect(client.markRead(["x"])).rejects.toMatchObject({ code: "validation" });
    expect(errors).toContain("validation");
  });

  it("splits more than 1000 ids into several frames", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    const ids = Array.from({ length: 2500 }, (_, i) => `id-${i}`);
    await client.markRead(ids);
    expect(sentOfType(server.lastSocket().sent, "mark_read").map((f) => (f as { ids: string[] }).ids.length)).toEqual([
      1000, 1000, 500,
    ]);
  });
});

describe("tokens", () => {
  it("refreshes the token ~30 s before it expires and hands it to the open socket", async () => {
    vi.useFakeTimers();
    const s = start(setup({ ttlSecs: 120 }));
    const { server, client } = s;
    await until("connected", connected(client));
    expect(s.tokenCalls()).toBe(1);

    await vi.advanceTimersByTimeAsync(89_000);
    expect(s.tokenCalls()).toBe(1);
    await vi.advanceTimersByTimeAsync(2_000);
    await until("refreshed", () => s.tokenCalls() === 2);
    await until("auth frame sent", () => sentOfType(server.lastSocket().sent, "auth").length === 2);

    expect(server.sockets).toHaveLength(1);
    expect(client.status).toBe("connected");
  });

  it("on 4001 fetches one fresh token and reconnects once", async () => {
    vi.useFakeTimers();
    const s = start(setup());
    const { server, client } = s;
    await until("connected", connected(client));

    server.closeSockets(CloseCode.Unauthorized, "token expired");
    await until("reconnected", () => server.sockets.length === 2 && client.status === "connected");
    await flush();

    expect(s.tokenCalls()).toBe(2);
    expect(server.sockets).toHaveLength(2);
  });

  it("does not storm when the server keeps refusing tokens: each retry waits for backoff", async () => {
    vi.useFakeTimers();
    const server = new FakeBelfry();
    const s = start(setup({ server, backoff: { initialDelayMs: 1_000, maxDelayMs: 8_000, random: () => 0.999 } }));
    await until("connected", connected(s.client));
    const verify = server.verify.bind(server);
    server.verify = (token) => (token?.endsWith(".fake") && server.sockets.length === 1 ? verify(token) : null);
    // HTTP keeps working for the probe, only live connections are refused.
    server.closeSockets(CloseCode.Unauthorized);
    await until("second socket", () => server.sockets.length === 2);
    await flush(500);

    // The immediate retry was refused before hello: no third attempt without the timer.
    expect(server.sockets).toHaveLength(2);
    expect(s.tokenCalls()).toBe(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(server.sockets).toHaveLength(3);
    expect(s.tokenCalls()).toBe(3);
    // Then 2 s, 4 s, 8 s, 8 s…: one attempt and one token per delay.
    await vi.advanceTimersByTimeAsync(2_000 + 4_000);
    expect(server.sockets).toHaveLength(5);
    expect(s.tokenCalls()).toBe(5);
  });
});

describe("close codes", () => {
  it.each([CloseCode.ProtocolError, CloseCode.UnsupportedVersion, CloseCode.MessageTooBig, 4999])(
    "stops for good on %i",
    async (code) => {
      vi.useFakeTimers();
      const { server, client } = start(setup());
      await until("connected", connected(client));
      const errors: (number | undefined)[] = [];
      client.on("error", (e) => errors.push(e.closeCode));

      server.closeSockets(code);
      await until("stopped", () => client.status === "disconnected");
      await vi.advanceTimersByTimeAsync(10 * 60_000);

      expect(server.sockets).toHaveLength(1);
      expect(errors).toEqual([code]);
      expect(client.getSnapshot().error).toMatchObject({ code: "closed", closeCode: code });
    },
  );

  it.each([CloseCode.Internal, CloseCode.HeartbeatTimeout, CloseCode.Shutdown, CloseCode.TooManyConnections, 4499, 1006])(
    "reconnects after a backoff on %i",
    async (code) => {
      vi.useFakeTimers();
      const { server, client } = start(setup());
      await until("connected", connected(client));
      server.closeSockets(code);
      await until("reconnecting", () => client.status === "connecting");
      await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
      await until("connected again", connected(client));
      expect(server.sockets).toHaveLength(2);
    },
  );

  it("reconnects at once after 4008 (slow)", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    server.closeSockets(CloseCode.Slow);
    await until("reconnected without any timer", () => server.sockets.length === 2 && client.status === "connected");
  });
});

describe("backoff", () => {
  it("keeps retrying with growing, capped delays and no limit on attempts", async () => {
    vi.useFakeTimers();
    const delays: number[] = [];
    const server = new FakeBelfry();
    const s = start(setup({ server, backoff: { initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0.999 } }));
    await until("connected", connected(s.client));
    server.httpDown = true;
    server.closeSockets(1006);
    for (let i = 0; i < 60; i += 1) {
      const before = server.sockets.length;
      await until("waiting for the next attempt", () => s.client["retryTimer"] !== undefined);
      const started = Date.now();
      while (server.sockets.length === before) await vi.advanceTimersByTimeAsync(50);
      delays.push(Date.now() - started);
    }
    expect(server.sockets.length).toBe(61);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 800]);
    expect(Math.max(...delays)).toBe(1_000);

    server.httpDown = false;
    await vi.advanceTimersByTimeAsync(1_000);
    await until("connected at last", connected(s.client));
  });
});

describe("heartbeat", () => {
  it("reconnects when no pong comes back in time", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup({ pingIntervalMs: 20_000, pongTimeoutMs: 5_000 }));
    await until("connected", connected(client));
    await vi.advanceTimersByTimeAsync(20_000);
    expect(sentOfType(server.lastSocket().sent, "ping")).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(client.status).toBe("connected"); // pong answered

    server.answerPongs = false;
    await vi.advanceTimersByTimeAsync(20_000 + 5_000);
    expect(server.sockets[0]!.readyState).toBe(3);
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("reconnected", () => server.sockets.length === 2 && client.status === "connected");
  });
});

describe("transports", () => {
  it("falls back to SSE when the WebSocket cannot connect, and sends read state over HTTP", async () => {
    const server = new FakeBelfry();
    server.ws = "refuse";
    const { client } = start(setup({ server, transports: ["websocket", "sse", "poll"] }));
    await until("connected", connected(client));
    expect(client.transportName).toBe("sse");
    expect(server.streams[0]!.url).toMatch(/\/v1\/sse\?token=.+&since=0/);

    const n = server.notify("alice", "x", { title: "over sse" });
    await until("delivered", () => client.getSnapshot().notifications.length === 1);
    await client.markRead([n.id]);

    expect(server.requests.some((r) => r.method === "POST" && r.path === "/v1/me/notifications/read")).toBe(true);
    await until("count from the state event", () => client.getSnapshot().unreadCount === 0);
  });

  it("resumes an SSE stream that broke with since = the last seq it saw", async () => {
    vi.useFakeTimers();
    const server = new FakeBelfry();
    const { client } = start(setup({ server, transports: ["sse"] }));
    await until("connected", connected(client));
    server.notify("alice", "x", { title: "one" });
    await until("delivered", () => client.getSnapshot().notifications.length === 1);

    server.dropStreams();
    await until("reconnecting", () => client.status === "connecting");
    server.notify("alice", "x", { title: "two" });
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    await until("caught up", () => client.getSnapshot().notifications.length === 2);

    expect(server.streams).toHaveLength(2);
    expect(new URL(server.streams[1]!.url).searchParams.get("since")).toBe("1");
    expect(titles(client)).toEqual(["two", "one"]);
    expect(client.getSnapshot().unreadCount).toBe(2);
  });

  it("falls back to long-poll when neither WebSocket nor SSE can connect", async () => {
    const server = new FakeBelfry();
    server.ws = "refuse";
    server.sse = "refuse";
    const { client } = start(setup({ server, transports: ["websocket", "sse", "poll"] }));
    await until("connected", connected(client));
    expect(client.transportName).toBe("poll");

    server.notify("alice", "x", { title: "polled" });
    await until("delivered", () => client.getSnapshot().notifications.length === 1);
    expect(client.getSnapshot().unreadCount).toBe(1);
    const polls = server.requests.filter((r) => r.path === "/v1/poll");
    expect(polls[0]!.query.get("after")).toBe("0");
  });

  it("uses the next transport when the platform has no WebSocket at all", async () => {
    const server = new FakeBelfry();
    const { client } = start(
      setup({ server, transports: ["websocket", "sse"], WebSocket: undefined }),
    );
    await until("connected", connected(client));
    expect(client.transportName).toBe("sse");
  });

  it("does not fall back while the server itself is down", async () => {
    vi.useFakeTimers();
    const server = new FakeBelfry();
    const { client } = start(setup({ server, transports: ["websocket", "sse"] }));
    await until("connected", connected(client));
    server.httpDown = true;
    server.closeSockets(1006);
    await vi.advanceTimersByTimeAsync(5_000);
    server.httpDown = false;
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", connected(client));
    expect(client.transportName).toBe("websocket");
    expect(server.streams).toHaveLength(0);
  });
});

describe("state frames", () => {
  it("a read in one tab updates the count and read_at in another", async () => {
    const server = new FakeBelfry();
    const tab1 = start(setup({ server })).client;
    const tab2 = start(setup({ server })).client;
    const a = server.notify("alice", "x");
    server.notify("alice", "x");
    await until("both connected", () => tab1.status === "connected" && tab2.status === "connected");
    await until("both counted", () => tab2.getSnapshot().unreadCount === 2 && tab1.getSnapshot().unreadCount === 2);

    await tab1.markRead([a.id]);
    await until("tab 2 sees the read", () => tab2.getSnapshot().unreadCount === 1);
    expect(tab2.getSnapshot().notifications.find((n) => n.id === a.id)?.read_at).not.toBeNull();

    await tab2.markAllRead();
    await until("tab 1 sees all read", () => tab1.getSnapshot().unreadCount === 0);
    expect(tab1.getSnapshot().notifications.every((n) => n.read_at !== null)).toBe(true);
  });
});

describe("state versions", () => {
  it("drops a state frame at or below the newest version it has: a late copy never wins", async () => {
    const { server, client } = start(setup());
    const a = server.notify("alice", "x");
    server.notify("alice", "x");
    await until("connected", connected(client));
    await until("counted", () => client.getSnapshot().unreadCount === 2);

    server.broadcast("alice", { type: "state", change: "read", ids: [a.id], all: false, unread_count: 1, last_seq: 2, version: 3 });
    await until("the read applied", () => client.getSnapshot().unreadCount === 1);
    // A copy held up in another node's queue during a broker outage, now arriving late.
    server.broadcast("alice", { type: "state", change: "unread", ids: [a.id], all: false, unread_count: 2, last_seq: 2, version: 2 });
    server.broadcast("alice", { type: "state", change: "read", ids: [], all: false, unread_count: 1, last_seq: 2, version: 3 });
    const b = server.notify("alice", "x");
    await until("the next notification", () => client.getSnapshot().notifications.some((n) => n.id === b.id));

    expect(client.getSnapshot().unreadCount).toBe(2);
    expect(client.getSnapshot().notifications.find((n) => n.id === a.id)?.read_at).not.toBeNull();
  });

  it("on sync takes the server's count and preferences and re-reads the first page", async () => {
    const { server, client } = start(setup());
    const a = server.notify("alice", "x");
    await until("connected", connected(client));
    await until("listed", () => client.getSnapshot().notifications.length === 1);
    const pages = server.requests.filter((r) => r.path === "/v1/me/notifications").length;

    // Read on another node; its `state` frame was lost between nodes.
    server.user("alice").notifications[0]!.read_at = new Date().toISOString();
    server.broadcast("alice", { type: "sync", unread_count: 0, last_seq: 1, state_version: 5, preferences: { muted: true, mute_until: null, channels: { in_app: true, web_push: true }, types: {} } });
    await until("read state reconciled", () => client.getSnapshot().notifications[0]?.read_at != null);

    expect(client.getSnapshot().unreadCount).toBe(0);
    expect(server.requests.filter((r) => r.path === "/v1/me/notifications").length).toBe(pages + 1);
    expect(client.getSnapshot().notifications[0]?.id).toBe(a.id);
    // Older versions after the sync are stale.
    server.broadcast("alice", { type: "state", change: "unread", ids: [a.id], all: false, unread_count: 1, last_seq: 1, version: 4 });
    const b = server.notify("alice", "x");
    await until("the next notification", () => client.getSnapshot().notifications.some((n) => n.id === b.id));
    expect(client.getSnapshot().unreadCount).toBe(1);
  });
});

describe("pagination", () => {
  it("loads older pages by cursor until there are no more", async () => {
    const server = new FakeBelfry();
    for (let i = 1; i <= 45; i += 1) server.notify("alice", "x", { title: `n${i}` });
    const { client } = start(setup({ server, pageSize: 20 }));
    await until("connected", connected(client));
    expect(client.getSnapshot().notifications).toHaveLength(20);
    expect(client.getSnapshot().hasMore).toBe(true);

    await client.loadMore();
    await client.loadMore();
    const seqs = client.getSnapshot().notifications.map((n) => n.seq);
    expect(seqs).toHaveLength(45);
    expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
    expect(client.getSnapshot().hasMore).toBe(false);
    await client.loadMore(); // nothing left: no request
    expect(server.requests.filter((r) => r.query.has("cursor"))).toHaveLength(2);
  });
});
