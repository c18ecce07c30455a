import { afterEach, describe, expect, it, vi } from "vitest";

import { formatActors } from "../src/core/actors.js";
import type { BelfryClient } from "../src/core/client.js";
import { CloseCode } from "../src/core/codes.js";
import { BelfryError } from "../src/core/errors.js";
import { DEFAULT_PREFERENCES, PreferencesStore, applyPreferencesPatch, isMuted } from "../src/core/preferences.js";
import type { Preferences, TransportName } from "../src/core/types.js";
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

const prefs = (extra: Partial<Preferences> = {}): Preferences => ({
  muted: false,
  mute_until: null,
  channels: { in_app: true, web_push: true },
  types: {},
  ...extra,
});

/** A promise to settle by hand. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A PreferencesStore whose requests the test answers one by one. */
function manualStore() {
  const gets: ReturnType<typeof deferred<Preferences>>[] = [];
  const puts: { body: Preferences; answer: ReturnType<typeof deferred<Preferences>> }[] = [];
  const store = new PreferencesStore({
    get: () => {
      const d = deferred<Preferences>();
      gets.push(d);
      return d.promise;
    },
    put: (body) => {
      const d = deferred<Preferences>();
      puts.push({ body, answer: d });
      return d.promise;
    },
  });
  return { store, gets, puts };
}

describe("preferences over HTTP", () => {
  it("getPreferences reads GET /v1/me/preferences (the defaults when never set) into the store", async () => {
    const { server, client } = setup();
    expect(client.preferences.getSnapshot()).toMatchObject({ preferences: null, loaded: false, loading: false });

    const loading = client.getPreferences();
    expect(client.preferences.getSnapshot().loading).toBe(true);
    await expect(loading).resolves.toEqual(DEFAULT_PREFERENCES);

    const request = server.requests.find((r) => r.path === "/v1/me/preferences")!;
    expect(request.method).toBe("GET");
    expect(request.headers.authorization).toMatch(/^Bearer /);
    expect(client.preferences.getSnapshot()).toMatchObject({ preferences: DEFAULT_PREFERENCES, loaded: true, loading: false, error: null });
  });

  it("setPreferences PUTs the whole object and shows what the server stored", async () => {
    const { server, client } = setup();
    const wanted = prefs({ mute_until: "2030-01-01T08:00:00Z", types: { "post.liked": { in_app: false } } });

    await expect(client.setPreferences(wanted)).resolves.toEqual(wanted);

    const put = server.requests.find((r) => r.method === "PUT")!;
    expect(put).toMatchObject({ path: "/v1/me/preferences", body: wanted });
    expect(put.headers["content-type"]).toBe("application/json");
    expect(server.user("alice").preferences).toEqual(wanted);
    expect(client.preferences.getSnapshot().preferences).toEqual(wanted);
  });

  it("updatePreferences changes some fields and keeps the others", async () => {
    const { server, client } = setup();
    server.user("alice").preferences = prefs({ muted: true, types: { "comment.created": { web_push: false } } });

    await client.updatePreferences({ types: { "post.liked": { in_app: false } }, channels: { web_push: false } });

    expect(server.user("alice").preferences).toEqual(
      prefs({
        muted: true,
        channels: { in_app: true, web_push: false },
        types: { "comment.created": { web_push: false }, "post.liked": { in_app: false } },
      }),
    );
  });

  it("a 422 rejects with the server's fields, shows the error, and takes the change back", async () => {
    const { server, client } = setup();
    await client.getPreferences();
    const seen: (Preferences | null)[] = [];
    client.preferences.subscribe(() => seen.push(client.preferences.getSnapshot().preferences));

    const refused = client.updatePreferences({ mute_until: "tomorrow", types: { "no spaces": { in_app: false } } });
    const error = await refused.then(
      () => null,
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(BelfryError);
    expect(error).toMatchObject({
      code: "validation",
      status: 422,
      fields: { mute_until: expect.any(String), "types.no spaces": expect.any(String) },
    });
    const snapshot = client.preferences.getSnapshot();
    expect(snapshot.error).toBe(error);
    expect(snapshot.saving).toBe(false);
    expect(snapshot.preferences).toEqual(DEFAULT_PREFERENCES);
    expect(seen.some((p) => p?.mute_until === "tomorrow")).toBe(true); // it was shown meanwhile
    expect(server.user("alice").preferences).toBeNull();
  });

  it("a 400 for an unknown field and a 422 for too many types come through as BelfryErrors", async () => {
    const { server, client } = setup();
    server.maxPreferenceTypes = 2;
    await expect(client.setPreferences({ quiet: true } as Partial<Preferences>)).rejects.toMatchObject({ code: "bad_request", status: 400 });
    const tooMany = { a: { in_app: false }, b: { in_app: false }, c: { in_app: false } };
    await expect(client.setPreferences({ types: tooMany })).rejects.toMatchObject({ code: "validation", fields: { types: expect.any(String) } });
  });

  it("a refused load is in the snapshot's error and rejects", async () => {
    const { server, client } = setup();
    server.preferencesDown = true;
    await expect(client.getPreferences()).rejects.toMatchObject({ code: "unavailable", status: 503 });
    expect(client.preferences.getSnapshot()).toMatchObject({ loaded: false, loading: false, error: { code: "unavailable" } });

    server.preferencesDown = false;
    await client.getPreferences();
    expect(client.preferences.getSnapshot().error).toBeNull();
  });

  it("a change made before anything was loaded is applied to the server's value", async () => {
    const { server, client } = setup();
    server.user("alice").preferences = prefs({ muted: true });
    await client.updatePreferences({ channels: { web_push: false } });
    expect(server.user("alice").preferences).toMatchObject({ muted: true, channels: { in_app: true, web_push: false } });
  });
});

describe.each<TransportName>(["websocket", "sse"])("preferences frames over %s", (transport) => {
  it("a change in another tab, or from the backend, reaches this tab's store", async () => {
    const server = new FakeBelfry();
    const here = started({ server, transports: [transport] });
    const there = started({ server });
    await until("both connected", () => here.client.status === "connected" && there.client.status === "connected");
    await there.client.getPreferences();
    const gets = () => server.requests.filter((r) => r.path === "/v1/me/preferences" && r.method === "GET").length;
    const getsBefore = gets();
    let changes = 0;
    here.client.preferences.subscribe(() => (changes += 1));

    await there.client.updatePreferences({ types: { "post.liked": { in_app: false } } });
    await until("this tab sees it", () => here.client.preferences.getSnapshot().preferences?.types["post.liked"]?.in_app === false);
    expect(here.client.preferences.getSnapshot().loaded).toBe(true);
    expect(changes).toBeGreaterThan(0);

    server.setPreferences("alice", prefs({ muted: true }));
    await until("the backend's change too", () => here.client.preferences.getSnapshot().preferences?.muted === true);
    expect(here.client.preferences.getSnapshot().preferences?.types).toEqual({});
    expect(gets()).toBe(getsBefore); // frames only: this tab never asked
  });
});

describe("preferences and reconnecting", () => {
  it("reads them again after a reconnect, since frames sent meanwhile were missed", async () => {
    vi.useFakeTimers();
    const { server, client } = started();
    await until("connected", () => client.status === "connected");
    await client.getPreferences();

    server.ws = "refuse";
    server.closeSockets(1006);
    await until("disconnected", () => client.status !== "connected");
    server.setPreferences("alice", prefs({ muted: true })); // no connection hears it
    await flush();
    expect(client.preferences.getSnapshot().preferences?.muted).toBe(false);

    server.ws = "accept";
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", () => client.status === "connected");
    await until("read again", () => client.preferences.getSnapshot().preferences?.muted === true);
  });

  it("does not read them after a reconnect when nobody asked for them", async () => {
    vi.useFakeTimers();
    const { server, client } = started();
    await until("connected", () => client.status === "connected");
    server.closeSockets(CloseCode.Shutdown);
    await until("reconnecting", () => client.status === "connecting");
    await vi.advanceTimersByTimeAsync(client["backoff"].maxDelayMs);
    await until("connected again", () => client.status === "connected");
    await flush(200);
    expect(server.requests.some((r) => r.path === "/v1/me/preferences")).toBe(false);
  });
});

describe("PreferencesStore ordering", () => {
  it("a GET answered after a frame does not undo the frame", async () => {
    const { store, gets } = manualStore();
    const loading = store.load();
    store.receive(prefs({ muted: true }));
    gets[0]!.resolve(prefs());
    await loading;
    expect(store.getSnapshot().preferences?.muted).toBe(true);
  });

  it("a PUT answered after a frame does not undo the frame", async () => {
    const { store, puts } = manualStore();
    store.receive(prefs());
    const saving = store.update({ muted: true });
    store.receive(prefs({ muted: true, channels: { in_app: false, web_push: true } })); // ours, then another tab's
    puts[0]!.answer.resolve(prefs({ muted: true }));
    await saving;
    expect(store.getSnapshot().preferences?.channels.in_app).toBe(false);
  });

  it("sends one write at a time; changes made meanwhile leave together, on the server's latest value", async () => {
    const { store, puts } = manualStore();
    store.receive(prefs());
    const first = store.update({ muted: true });
    const second = store.update({ types: { a: { in_app: false } } });
    const third = store.update({ types: { b: { web_push: false } } });
    await flush();
    expect(puts).toHaveLength(1);
    expect(store.getSnapshot()).toMatchObject({
      saving: true,
      preferences: { muted: true, types: { a: { in_app: false }, b: { web_push: false } } },
    });

    puts[0]!.answer.resolve(prefs({ muted: true, channels: { in_app: true, web_push: false } })); // the server added one
    await first;
    await until("the second write", () => puts.length === 2);
    expect(puts[1]!.body).toEqual(
      prefs({ muted: true, channels: { in_app: true, web_push: false }, types: { a: { in_app: false }, b: { web_push: false } } }),
    );
    puts[1]!.answer.resolve(puts[1]!.body);
    await Promise.all([second, third]);
    expect(store.getSnapshot().saving).toBe(false);
  });

  it("shows a change at once and drops it again when the write fails", async () => {
    const { store, puts } = manualStore();
    store.receive(prefs());
    const saving = store.update({ muted: true });
    expect(store.getSnapshot()).toMatchObject({ saving: true, preferences: { muted: true } });
    puts[0]!.answer.reject(new BelfryError("unavailable", "down", { status: 503 }));
    await expect(saving).rejects.toMatchObject({ code: "unavailable" });
    expect(store.getSnapshot()).toMatchObject({ saving: false, preferences: { muted: false }, error: { code: "unavailable" } });
  });

  it("keeps fields it does not know when writing back", async () => {
    const { store, puts } = manualStore();
    store.receive({ ...prefs(), quiet_hours: { from: "22:00" } } as Preferences);
    void store.update({ muted: true });
    await flush();
    expect(puts[0]!.body).toMatchObject({ muted: true, quiet_hours: { from: "22:00" } });
  });
});

describe("applyPreferencesPatch", () => {
  it("merges channels and types, removes overrides given null, and leaves the base alone", () => {
    const base = prefs({ types: { a: { in_app: false, web_push: false }, b: { in_app: false } } });
    const next = applyPreferencesPatch(base, {
      mute_until: new Date("2030-01-01T00:00:00Z"),
      channels: { in_app: false },
      types: { a: { in_app: null }, b: null, c: { web_push: true } },
    });
    expect(next).toEqual(
      prefs({
        mute_until: "2030-01-01T00:00:00.000Z",
        channels: { in_app: false, web_push: true },
        types: { a: { web_push: false }, c: { web_push: true } },
      }),
    );
    expect(base.types.b).toEqual({ in_app: false });
  });
});

describe("isMuted", () => {
  const now = Date.parse("2026-06-01T12:00:00Z");

  it("is false for nothing set or nothing loaded", () => {
    expect(isMuted(prefs(), { type: "post.liked", now })).toBe(false);
    expect(isMuted(null, { type: "post.liked", now })).toBe(false);
  });

  it("follows the global mute and mute_until while it is ahead", () => {
    expect(isMuted(prefs({ muted: true }), { now })).toBe(true);
    expect(isMuted(prefs({ mute_until: "2026-06-01T13:00:00Z" }), { type: "x", now })).toBe(true);
    expect(isMuted(prefs({ mute_until: "2026-06-01T11:00:00Z" }), { type: "x", now })).toBe(false);
  });

  it("takes the type's channel, else the default channel", () => {
    const p = prefs({ channels: { in_app: true, web_push: false }, types: { "post.liked": { in_app: false }, "comment.created": { web_push: true } } });
    expect(isMuted(p, { type: "post.liked", now })).toBe(true);
    expect(isMuted(p, { type: "post.liked", channel: "web_push", now })).toBe(true); // inherited
    expect(isMuted(p, { type: "comment.created", channel: "web_push", now })).toBe(false);
    expect(isMuted(p, { type: "comment.created", now })).toBe(false);
    expect(isMuted(p, { type: "other", channel: "web_push", now })).toBe(true);
    expect(isMuted(p, { now })).toBe(false); // no type: the global mute only
  });
});

describe("formatActors", () => {
  it.each([
    [{ actors: ["Alice"], actor_count: 1, count: 1 }, "Alice"],
    [{ actors: ["Alice", "Bob"], actor_count: 2, count: 2 }, "Alice and Bob"],
    [{ actors: ["Alice", "Bob"], actor_count: 2, count: 5 }, "Alice and Bob"],
    [{ actors: ["Alice", "Bob", "Carol"], actor_count: 3, count: 3 }, "Alice and 2 others"],
    [{ actors: ["Alice", "Bob", "Carol", "Dan"], actor_count: 4, count: 4 }, "Alice and 3 others"],
    [{ actors: ["Alice"], actor_count: 2, count: 2 }, "Alice and 1 other"],
    [{ actors: Array.from({ length: 10 }, (_, i) => `A${i}`), actor_count: 25, count: 30 }, "A0 and 24 others"],
    [{ actors: [], actor_count: 0, count: 1 }, "Someone"],
    [{ actors: [], actor_count: 0, count: 4 }, "4 people"],
    [{}, "Someone"],
  ])("%j → %s", (n, expected) => {
    expect(formatActors(n)).toBe(expected);
  });

  it("takes other words", () => {
    const words = { and: " et ", others: (k: number) => `${k} autres`, someone: "Quelqu’un", people: (k: number) => `${k} personnes` };
    expect(formatActors({ actors: ["Alice", "Bob", "Carol"], actor_count: 3 }, words)).toBe("Alice et 2 autres");
    expect(formatActors({ count: 3 }, words)).toBe("3 personnes");
  });
});
