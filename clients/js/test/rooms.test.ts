import { afterEach, describe, expect, it, vi } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import { CloseCode } from "../src/core/codes.js";
import { BelfryError } from "../src/core/errors.js";
import type { RoomMessage } from "../src/core/rooms.js";
import type { ClientFrame } from "../src/core/types.js";
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
const joinedIn = (client: BelfryClient, room: string) => () => client.room(room).getSnapshot().status === "joined";
const members = (client: BelfryClient, room: string) => client.room(room).getSnapshot().members;
const framesOf = (socket: { sent: ClientFrame[] }, type: string) => sentOfType(socket.sent, type);

/** Alice and Bob, each with a started client on one server. */
function twoUsers(server = new FakeBelfry()) {
  const alice = start(setup({ server, user: "alice" })).client;
  const bob = start(setup({ server, user: "bob" })).client;
  return { server, alice, bob };
}

describe("joining", () => {
  it("joins after hello, lists the members from `joined`, then follows presence", async () => {
    const { server, alice, bob } = twoUsers();
    const room = alice.room("todo:1");
    const joined = room.join();
    expect(room.getSnapshot().status).toBe("joining");
    await joined;
    expect(room.getSnapshot()).toMatchObject({ status: "joined", members: ["alice"], error: null });
    expect(framesOf(server.sockets[0]!, "join")).toEqual([{ type: "join", room: "todo:1", ref: expect.any(Number) }]);

    const presence: string[] = [];
    room.on("presence", (event, user) => presence.push(`${event} ${user}`));
    await bob.room("todo:1").join();
    expect(members(bob, "todo:1")).toEqual(["alice", "bob"]);
    await until("alice sees bob", () => members(alice, "todo:1").length === 2);

    bob.room("todo:1").leave();
    await until("alice sees bob leave", () => members(alice, "todo:1").length === 1);
    expect(presence).toEqual(["join bob", "leave bob"]);
    expect(members(alice, "todo:1")).toEqual(["alice"]);
  });

  it("lists a user once, whatever presence says twice (presence is per user, not per tab)", async () => {
    const server = new FakeBelfry();
    const alice = start(setup({ server, user: "alice" })).client;
    const aliceTab2 = start(setup({ server, user: "alice" })).client;
    const bob = start(setup({ server, user: "bob" })).client;
    await bob.room("r").join();
    await alice.room("r").join();
    await aliceTab2.room("r").join();
    await flush();
    expect(members(bob, "r")).toEqual(["alice", "bob"]);
    expect(members(aliceTab2, "r")).toEqual(["alice", "bob"]);

    // Across nodes a join can be reported again while the user is listed; it changes nothing.
    const bobSocket = server.sockets.find((s) => s.user === "bob")!;
    bobSocket.deliver({ type: "presence", room: "r", event: "join", user_id: "alice" });
    await flush();
    expect(members(bob, "r")).toEqual(["alice", "bob"]);

    alice.room("r").leave(); // alice's other tab is still in
    const inRoom = () => server.sockets.filter((s) => s.roomAccess.has("r")).map((s) => s.user);
    await until("one alice connection left in the room", () => inRoom().length === 2);
    expect(inRoom().sort()).toEqual(["alice", "bob"]);
    await flush();
    expect(members(bob, "r")).toEqual(["alice", "bob"]);
  });

  it("a refused join puts the room in error and rejects join(); the error stays out of the client's", async () => {
    const { server, alice } = twoUsers();
    server.roomAccess = (_user, room) => (room.startsWith("public:") ? "publish" : null);
    const clientErrors: BelfryError[] = [];
    alice.on("error", (e) => clientErrors.push(e));

    const failed = alice.room("secret:1").join();
    await expect(failed).rejects.toMatchObject({ name: "BelfryError", code: "forbidden" });
    expect(alice.room("secret:1").getSnapshot()).toMatchObject({ status: "error", members: [] });
    expect(alice.room("secret:1").getSnapshot().error?.code).toBe("forbidden");
    await expect(alice.room("secret:1").publish({})).rejects.toMatchObject({ code: "forbidden" });
    expect(clientErrors).toEqual([]);

    await alice.room("public:1").join();
    expect(alice.room("public:1").getSnapshot().status).toBe("joined");
  });

  it("a room token is fetched before every join, also the automatic one after a reconnect", async () => {
    vi.useFakeTimers();
    const server = new FakeBelfry();
    server.roomAccess = () => null; // only tickets open rooms here
    const { client } = start(setup({ server }));
    let calls = 0;
    const room = client.room("doc:7", { token: async () => (calls++, server.roomToken("alice", "doc:7", false)) });
    await room.join();
    expect(calls).toBe(1);
    expect(framesOf(server.lastSocket(), "join")[0]).toMatchObject({ token: expect.stringContaining(".") });

    server.closeSockets(CloseCode.Shutdown);
    await until("rejoining", () => room.getSnapshot().status === "joining");
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("joined again", () => room.getSnapshot().status === "joined");
    expect(calls).toBe(2);

    // A read-only ticket: joined, but publishing is refused by the server.
    await expect(room.publish({ x: 1 })).rejects.toMatchObject({ code: "forbidden", message: expect.stringMatching(/read-only/) });
  });

  it("rejects a bad room name at once", () => {
    const { client } = setup();
    expect(() => client.room("has space")).toThrow(TypeError);
    expect(() => client.room("")).toThrow(/1–128/);
  });
});

describe("publishing", () => {
  it("resolves on the ack for its ref; the others get the message, the publishing connection does not", async () => {
    const server = new FakeBelfry();
    const alice = start(setup({ server, user: "alice" })).client;
    const aliceTab2 = start(setup({ server, user: "alice" })).client;
    const bob = start(setup({ server, user: "bob" })).client;
    await Promise.all([alice.room("todo:1").join(), aliceTab2.room("todo:1").join(), bob.room("todo:1").join()]);
    const got = { alice: [] as RoomMessage[], tab2: [] as RoomMessage[], bob: [] as RoomMessage[] };
    alice.room("todo:1").on("message", (m) => got.alice.push(m));
    aliceTab2.room("todo:1").on("message", (m) => got.tab2.push(m));
    bob.room("todo:1").on("message", (m) => got.bob.push(m));

    await alice.room("todo:1").publish({ op: "add", text: "milk" });
    await until("bob got it", () => got.bob.length === 1);
    await until("alice's other tab got it", () => got.tab2.length === 1);
    await flush();

    expect(got.bob[0]).toMatchObject({ room: "todo:1", from: "alice", data: { op: "add", text: "milk" } });
    // The server leaves out the publishing connection only: the same user's other tab gets it,
    // and the client must not filter it out by user.
    expect(got.tab2[0]).toMatchObject({ from: "alice" });
    expect(got.alice).toEqual([]);
    expect(bob.room("todo:1").getSnapshot().messages.map((m) => m.data)).toEqual([{ op: "add", text: "milk" }]);
    const publish = framesOf(server.sockets[0]!, "publish")[0]!;
    expect(publish).toEqual({ type: "publish", room: "todo:1", data: { op: "add", text: "milk" }, ref: expect.any(Number) });
  });

  it("rejects with a BelfryError on the error frame carrying its ref, while other publishes succeed", async () => {
    const { server, alice } = twoUsers();
    server.maxRoomMessageBytes = 100;
    const room = alice.room("todo:1");
    await room.join();
    const clientErrors: BelfryError[] = [];
    alice.on("error", (e) => clientErrors.push(e));

    const small = room.publish({ n: 1 });
    const big = room.publish({ text: "x".repeat(200) });
    const small2 = room.publish({ n: 2 });

    await expect(small).resolves.toBeUndefined();
    const error = await big.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BelfryError);
    expect(error).toMatchObject({ code: "payload_too_large" });
    await expect(small2).resolves.toBeUndefined();
    expect(room.getSnapshot().error?.code).toBe("payload_too_large");
    expect(clientErrors).toEqual([]);
  });

  it("refuses to publish to a room that was not joined", async () => {
    const { client } = start(setup());
    await until("connected", connected(client));
    await expect(client.room("todo:1").publish({})).rejects.toMatchObject({ code: "forbidden" });
  });

  it("queues a publish made while disconnected and sends it after the re-join; one in flight when the link dropped is rejected", async () => {
    vi.useFakeTimers();
    const { server, client } = start(setup());
    const room = client.room("todo:1");
    await room.join();

    server.holdFrames = true; // the next publish reaches the socket but never gets an answer
    const inFlight = room.publish({ n: "in flight" });
    await flush();
    server.closeSockets(1006);
    await until("connection lost", () => client.status === "connecting");
    await expect(inFlight).rejects.toMatchObject({ code: "network" });
    server.releaseFrames(); // to a closed socket: dropped, as the network would

    expect(room.getSnapshot().status).toBe("joining");
    const first = room.publish({ n: 1 });
    const second = room.publish({ n: 2 });
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("reconnected", connected(client));
    await Promise.all([first, second]);

    const sent = server.lastSocket().sent.filter((f) => f.type !== "ping");
    expect(sent.map((f) => f.type)).toEqual(["auth", "join", "publish", "publish"]);
    expect(framesOf(server.lastSocket(), "publish").map((f) => (f as { data: unknown }).data)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(framesOf(server.sockets[0]!, "publish")).toHaveLength(1); // never sent twice
  });

  it("rejects what is waiting when the client stops", async () => {
    const server = new FakeBelfry();
    server.ws = "refuse";
    const { client } = start(setup({ server }));
    const room = client.room("todo:1");
    const joined = room.join();
    const waiting = room.publish({ n: 1 });
    client.stop();
    await expect(joined).rejects.toMatchObject({ code: "closed" });
    await expect(waiting).rejects.toMatchObject({ code: "closed" });
  });
});

describe("reconnecting", () => {
  it("joins every held room again after each reconnect and takes the fresh member list", async () => {
    vi.useFakeTimers();
    const { server, alice, bob } = twoUsers();
    await alice.room("a").join();
    await alice.room("b").join();
    await bob.room("a").join();
    await until("alice sees bob", () => members(alice, "a").length === 2);

    server.ws = "refuse";
    server.closeSockets(CloseCode.Shutdown);
    await until("alice's rooms wait", () => alice.room("a").getSnapshot().status === "joining");
    expect(members(alice, "a")).toEqual([]); // unknown while away
    bob.room("a").leave(); // bob left while alice was away: no presence event will say so
    server.ws = "accept";
    await vi.advanceTimersByTimeAsync(alice["backoff"].maxDelayMs);
    await until("alice joined a again", joinedIn(alice, "a"));
    await until("alice joined b again", joinedIn(alice, "b"));

    const aliceSocket = server.sockets.filter((s) => s.user === "alice").at(-1)!;
    expect(framesOf(aliceSocket, "join").map((f) => (f as { room: string }).room).sort()).toEqual(["a", "b"]);
    expect(members(alice, "a")).toEqual(["alice"]);
  });
});

describe("leaving", () => {
  it("holders share one join; the room is left when the last one leaves", async () => {
    const { server, client } = start(setup());
    await until("connected", connected(client));
    const room = client.room("todo:1");
    expect(client.room("todo:1")).toBe(room);
    await Promise.all([room.join(), room.join()]);
    expect(framesOf(server.lastSocket(), "join")).toHaveLength(1);

    room.leave();
    await flush();
    expect(framesOf(server.lastSocket(), "leave")).toHaveLength(0);
    expect(room.getSnapshot().status).toBe("joined");

    room.leave();
    await until("leave sent", () => framesOf(server.lastSocket(), "leave").length === 1);
    expect(room.getSnapshot()).toMatchObject({ status: "left", members: [] });
    await until("server forgot the member", () => server.roomMembers("todo:1").length === 0);

    // Messages still in flight for a room this page left are dropped.
    server.lastSocket().deliver({ type: "message", room: "todo:1", id: "late", at: "", data: {} });
    await flush();
    expect(room.getSnapshot().messages).toEqual([]);
  });

  it("a leave followed by a join in the same task sends nothing (a StrictMode remount)", async () => {
    const { server, client } = start(setup());
    const room = client.room("todo:1");
    await room.join();
    room.leave();
    void room.join();
    await flush();
    expect(framesOf(server.lastSocket(), "leave")).toEqual([]);
    expect(framesOf(server.lastSocket(), "join")).toHaveLength(1);
    expect(room.getSnapshot().status).toBe("joined");
  });
});

describe("messages", () => {
  it("keeps the last `history` messages; backend messages have no sender", async () => {
    const { server, client } = start(setup());
    const room = client.room("feed", { history: 3 });
    await room.join();
    for (let i = 1; i <= 5; i += 1) server.publishToRoom("feed", { i });
    const last = () => room.getSnapshot().messages.at(-1)?.data as { i: number } | undefined;
    await until("five delivered", () => last()?.i === 5);
    expect(room.getSnapshot().messages.map((m) => m.data)).toEqual([{ i: 3 }, { i: 4 }, { i: 5 }]);
    expect(room.getSnapshot().messages[0]!.from).toBeNull();
  });
});

describe("transports without client frames", () => {
  it("reports `unsupported` on SSE instead of pretending to join", async () => {
    const server = new FakeBelfry();
    server.ws = "refuse";
    const { client } = start(setup({ server, transports: ["websocket", "sse"] }));
    const room = client.room("todo:1");
    const joined = room.join();
    await until("connected over sse", connected(client));
    expect(client.transportName).toBe("sse");
    await expect(joined).rejects.toMatchObject({ code: "unsupported", message: expect.stringMatching(/WebSocket/) });
    expect(room.getSnapshot().status).toBe("error");
    await expect(room.publish({})).rejects.toMatchObject({ code: "unsupported" });
  });

  it("fails at once when no configured transport can carry rooms", async () => {
    const { client } = setup({ transports: ["sse", "poll"] });
    await expect(client.room("todo:1").join()).rejects.toMatchObject({ code: "unsupported" });
    expect(client.room("todo:1").getSnapshot().status).toBe("error");
  });
});
