// FakeBelfry: an in-memory Belfry for unit tests, speaking protocol v1 (docs/protocol.md)
// through injected platform constructors instead of sockets.
//
//   const server = new FakeBelfry();
//   const client = new BelfryClient({ url: server.url, getToken: async () => server.token("alice"), ...server.platform });
//   server.notify("alice", "comment.created", { preview: "hi" });
//
// `server.platform` is `{ WebSocket, EventSource, fetch }` bound to this server. Everything is
// delivered through microtasks, never timers, so tests run with real or fake timers alike and
// wait with `until(...)` (test/helpers.ts) instead of sleeping.
//
// Knobs a test can turn: `ws` / `sse` ("accept" | "refuse": refuse = the connection never opens,
// as behind a proxy that blocks it), `httpDown` (every fetch rejects, as when the server is
// down), `answerPongs`, `holdFrames` (client frames wait until `releaseFrames()`, as on a slow
// server), `revoke(token)`. Inspect `sockets` (each with its `sent` frames, parsed),
// `streams`, `requests`, and `user(id)` for the stored inbox.
//
// Grouping, mute and preferences follow /work/contract-issue7.md (docs/protocol.md): a
// `notify(user, type, data, { groupKey, actor })` whose group's newest item is still unread,
// unarchived, not muted and younger than `groupingWindowSecs` (default 3600; 0 = off) is merged
// into it (`count`, `actors`, `actor_count`, `updated_at`, a new seq; the item moves to the end
// of the inbox, which stays in seq order) and sent as an `updated` frame; otherwise a new item is
// stored. A notification the user's preferences mute (`muted`, `mute_until` ahead, or the type's
// `in_app` off) is stored read with `muted: true`, never merged, never sent live, not in resume
// catch-up nor in poll answers; only history pages list it. A resume catch-up sends items with
// `count > 1` as `updated`. `GET`/`PUT /v1/me/preferences` validate like the server (400 for
// unknown fields and wrong types, 422 with `fields` for bad type names, more than
// `maxPreferenceTypes` types, a `mute_until` that is not RFC 3339); every stored change, and
// `setPreferences(user, p)` (the backend API), sends a `preferences` frame to every connection of
// the user (the validation lives in test/fakePreferences.ts). Knobs: `preferencesDown` (those
// two routes answer 503, as when the store is down), `groupingWindowSecs`, `maxPreferenceTypes`.
//
// Rooms follow docs/protocol.md: `join` answers `joined` with the users present (each once),
// presence is per user (`join` for a user's first connection, `leave` for their last, never sent
// to the connection that caused it), and a `publish` reaches every other connection in the room,
// the sender's other tabs included; only the publishing connection is left out. Nothing survives
// a connection. Knobs: `roomAccess(user, room)` ("publish" | "read" | null; everything is
// allowed by default), `maxRoomMessageBytes`; `roomToken(...)` mints a room ticket that a `join`
// may carry. Inspect `roomMembers(room)`; `publishToRoom(room, data)` is the backend API.
//
// Extending it: a new server frame is a method that builds the object and calls
// `this.broadcast(user, frame)`; a new client frame is a `case` in `FakeSocket.receive`; a new
// HTTP route is a `case` in `route()`. Keep the behaviour the docs promise (ordering, `since`,
// state frames to every connection of the user) and nothing more, and prefer a knob over a
// subclass when a test needs the server to misbehave.

import type {
  ClientFrame,
  EventSourceLike,
  FetchLike,
  Notification,
  Preferences,
  ServerFrame,
  StateChange,
  WebSocketLike,
} from "../src/core/types.js";
import { DEFAULT_PREFERENCES, checkPreferences } from "./fakePreferences.js";

type Behaviour = "accept" | "refuse";

interface Inbox {
  /** Oldest first: always in seq order (a merged item moves to the end). */
  notifications: Notification[];
  lastSeq: number;
  preferences: Preferences | null;
}

/** Options of a notify request (`group_key`, `actor`). */
export interface NotifyOptions {
  groupKey?: string;
  actor?: string;
}


interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: unknown;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

let idCounter = 0;

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

export class FakeBelfry {
  readonly url = "http://belfry.test";
  ws: Behaviour = "accept";
  sse: Behaviour = "accept";
  httpDown = false;
  answerPongs = true;
  holdFrames = false;
  roomAccess: (user: string, room: string) => "publish" | "read" | null = () => "publish";
  maxRoomMessageBytes = 16 * 1024;
  groupingWindowSecs = 3600;
  maxPreferenceTypes = 200;
  preferencesDown = false;
  private readonly rooms = new Map<string, Set<FakeSocket>>();
  private held: (() => void)[] = [];
  readonly sockets: FakeSocket[] = [];
  readonly streams: FakeEventSource[] = [];
  readonly requests: Request[] = [];
  private readonly inboxes = new Map<string, Inbox>();
  private readonly revoked = new Set<string>();
  private readonly pollWaiters = new Set<{ user: string; wake: () => void }>();
  private tokenCounter = 0;

  /** The platform constructors and fetch, bound to this server, for BelfryClient options. */
  readonly platform: {
    WebSocket: new (url: string) => WebSocketLike;
    EventSource: new (url: string) => EventSourceLike;
    fetch: FetchLike;
  };

  constructor() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const server = this;
    this.platform = {
      WebSocket: class extends FakeSocket {
        constructor(url: string) {
          super(server, url);
        }
      },
      EventSource: class extends FakeEventSource {
        constructor(url: string) {
          super(server, url);
        }
      },
      fetch: (input, init) => this.fetch(input, init),
    };
  }

  // ---- tokens ---------------------------------------------------------------------------------

  /** A JWT-shaped token for `user` (unsigned; this server only checks `sub`, `exp`, revocation). */
  token(user: string, ttlSecs = 3600): string {
    this.tokenCounter += 1;
    const now = Math.floor(Date.now() / 1000);
    return `${base64url({ alg: "none" })}.${base64url({ sub: user, exp: now + ttlSecs, iat: now, n: this.tokenCounter })}.fake`;
  }

  /** Lets the client frames held back by `holdFrames` reach the server, in order. */
  releaseFrames(): void {
    this.holdFrames = false;
    for (const run of this.held.splice(0)) run();
  }

  /** Runs `receive` now, or later when frames are held. */
  schedule(receive: () => void): void {
    if (this.holdFrames) this.held.push(receive);
    else queueMicrotask(receive);
  }

  revoke(token: string): void {
    this.revoked.add(token);
  }

  /** A room token, as an app backend mints one: it opens `room` for `user`. */
  roomToken(user: string, room: string, publish = true, ttlSecs = 3600): string {
    this.tokenCounter += 1;
    const now = Math.floor(Date.now() / 1000);
    return `${base64url({ alg: "none" })}.${base64url({ sub: user, exp: now + ttlSecs, room, publish, n: this.tokenCounter })}.fake`;
  }

  /** The user a token is valid for, or null. */
  verify(token: string | null | undefined): string | null {
    return this.claims(token)?.sub ?? null;
  }

  private claims(token: string | null | undefined): { sub: string; room?: string; publish?: boolean } | null {
    if (!token || this.revoked.has(token)) return null;
    try {
      const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as {
        sub?: string;
        exp?: number;
        room?: string;
        publish?: boolean;
      };
      if (!claims.sub || !claims.exp || claims.exp * 1000 <= Date.now()) return null;
      return { sub: claims.sub, room: claims.room, publish: claims.publish };
    } catch {
      return null;
    }
  }

  // ---- the inbox ------------------------------------------------------------------------------

  user(id: string): Inbox {
    let inbox = this.inboxes.get(id);
    if (!inbox) {
      inbox = { notifications: [], lastSeq: 0, preferences: null };
      this.inboxes.set(id, inbox);
    }
    return inbox;
  }

  /**
   * Stores a notification and sends it to the user's live connections, like POST
   * /v1/notifications: merged into its group's item (an `updated` frame) or stored as a new one
   * (a `notification` frame), or stored muted and sent nowhere. Returns the stored item.
   */
  notify(user: string, type: string, data: Record<string, unknown> = {}, options: NotifyOptions = {}): Notification {
    const inbox = this.user(user);
    const now = new Date();
    const muted = this.mutes(user, type, now.getTime());
    const group = options.groupKey ?? null;
    const newest = group === null ? undefined : [...inbox.notifications].reverse().find((n) => n.group_key === group);
    const mergeable =
      !muted &&
      newest !== undefined &&
      newest.read_at === null &&
      newest.archived_at === null &&
      newest.muted !== true &&
      now.getTime() - Date.parse(newest.created_at) < this.groupingWindowSecs * 1000;
    inbox.lastSeq += 1;
    let notification: Notification;
    if (mergeable) {
      const known = newest.actors ?? [];
      const actor = options.actor;
      notification = {
        ...newest,
        seq: inbox.lastSeq,
        type,
        data,
        expires_at: null,
        updated_at: now.toISOString(),
        count: (newest.count ?? 1) + 1,
        actors: actor === undefined ? known : [actor, ...known.filter((a) => a !== actor)].slice(0, 10),
        actor_count: (newest.actor_count ?? 0) + (actor !== undefined && !known.includes(actor) ? 1 : 0),
      };
      inbox.notifications = inbox.notifications.filter((n) => n.id !== newest.id);
    } else {
      idCounter += 1;
      const createdAt = now.toISOString();
      notification = {
        id: `0190a000-0000-7000-8000-${String(idCounter).padStart(12, "0")}`,
        seq: inbox.lastSeq,
        user_id: user,
        type,
        data,
        group_key: group,
        created_at: createdAt,
        updated_at: null,
        count: 1,
        actors: options.actor === undefined ? [] : [options.actor],
        actor_count: options.actor === undefined ? 0 : 1,
        muted,
        seen_at: null,
        read_at: muted ? createdAt : null,
        archived_at: null,
        expires_at: null,
      };
    }
    inbox.notifications.push(notification);
    if (muted) return notification;
    this.broadcast(user, this.itemFrame(notification));
    for (const waiter of [...this.pollWaiters]) if (waiter.user === user) waiter.wake();
    return notification;
  }

  /** How a stored item travels: `updated` once it is grouped (count > 1), else `notification`. */
  itemFrame(notification: Notification): ServerFrame {
    const type = (notification.count ?? 1) > 1 ? "updated" : "notification";
    return { type, seq: notification.seq, notification };
  }

  /** The contract's rule: not delivered live when muted now or `in_app` is off for the type. */
  private mutes(user: string, type: string, now: number): boolean {
    const p = this.user(user).preferences ?? DEFAULT_PREFERENCES();
    if (p.muted) return true;
    if (p.mute_until !== null && Date.parse(p.mute_until) > now) return true;
    return !(p.types[type]?.in_app ?? p.channels.in_app);
  }

  /** The backend API (`PUT /v1/users/{id}/preferences`): stores them and tells every connection. */
  setPreferences(user: string, preferences: Preferences): Preferences {
    const stored = JSON.parse(JSON.stringify(preferences)) as Preferences;
    this.user(user).preferences = stored;
    this.broadcast(user, { type: "preferences", preferences: stored });
    return stored;
  }

  unreadCount(user: string): number {
    return this.user(user).notifications.filter((n) => n.read_at === null && n.archived_at === null).length;
  }

  /** Applies a read-state change and sends the `state` frame to every connection of the user. */
  change(user: string, change: StateChange, ids: string[] | "all"): number {
    const inbox = this.user(user);
    const now = new Date().toISOString();
    let changed = 0;
    for (const n of inbox.notifications) {
      if (ids !== "all" && !ids.includes(n.id)) continue;
      if (change === "read" && n.read_at === null) (n.read_at = now), changed++;
      if (change === "unread" && n.read_at !== null) (n.read_at = null), changed++;
      if (change === "seen" && n.seen_at === null) (n.seen_at = now), changed++;
    }
    const all = ids === "all";
    this.broadcast(user, {
      type: "state",
      change,
      ids: all ? [] : ids,
      all,
      ...(all ? { up_to_seq: inbox.lastSeq } : {}),
      unread_count: this.unreadCount(user),
    });
    return changed;
  }

  // ---- connections ----------------------------------------------------------------------------

  /** Open sockets and streams of `user`. */
  live(user: string): (FakeSocket | FakeEventSource)[] {
    return [...this.sockets, ...this.streams].filter((c) => c.user === user && c.readyState === OPEN);
  }

  broadcast(user: string, frame: ServerFrame): void {
    for (const connection of this.live(user)) connection.deliver(frame);
  }

  /** Closes every open WebSocket with `code` (a server restart is 4010; a network drop 1006). */
  closeSockets(code: number, reason = ""): void {
    for (const socket of this.sockets) if (socket.readyState === OPEN) socket.serverClose(code, reason);
  }

  /** Ends every open SSE stream as a network failure would. */
  dropStreams(): void {
    for (const stream of this.streams) if (stream.readyState === OPEN) stream.fail();
  }

  /** The frames a client sent on its most recent socket. */
  lastSocket(): FakeSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error("no socket was opened");
    return socket;
  }

  /** hello, then (with `since`) every stored notification after it, oldest first. */
  openingFrames(user: string, since: number | undefined): ServerFrame[] {
    const inbox = this.user(user);
    const frames: ServerFrame[] = [
      {
        type: "hello",
        v: 1,
        conn_id: `c${this.sockets.length + this.streams.length}`,
        user_id: user,
        unread_count: this.unreadCount(user),
        last_seq: inbox.lastSeq,
        heartbeat_ms: 25_000,
      },
    ];
    if (since !== undefined) {
      for (const n of inbox.notifications) {
        if (n.seq > since && n.muted !== true) frames.push(this.itemFrame(n));
      }
    }
    return frames;
  }

  // ---- rooms ----------------------------------------------------------------------------------

  /** The users in `room` now, each once, sorted (what `joined` lists). */
  roomMembers(room: string): string[] {
    return [...new Set([...(this.rooms.get(room) ?? [])].map((s) => s.user!))].sort();
  }

  /** The backend API (`POST /v1/rooms/{room}/messages`): a message with no `from`, to everyone. */
  publishToRoom(room: string, data: unknown): void {
    this.sendToRoom(room, this.roomMessage(room, undefined, data), null);
  }

  /** Handles a room frame from `socket`; returns the reply. */
  roomFrame(socket: FakeSocket, frame: Extract<ClientFrame, { type: "join" | "leave" | "publish" }>): ServerFrame {
    const ref = frame.ref;
    const refuse = (code: string, message: string): ServerFrame => ({ type: "error", ref, code, message });
    const user = socket.user!;
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(frame.room)) return refuse("validation", "room: bad name");
    const members = this.rooms.get(frame.room) ?? new Set<FakeSocket>();
    switch (frame.type) {
      case "join": {
        let access = this.roomAccess(user, frame.room);
        if (frame.token !== undefined) {
          const ticket = this.claims(frame.token);
          if (!ticket) return refuse("unauthorized", "room token: invalid");
          if (ticket.sub !== user) return refuse("forbidden", "room token is for another user");
          access = ticket.room === frame.room ? (ticket.publish ? "publish" : "read") : null;
        }
        if (!access) return refuse("forbidden", `may not join \`${frame.room}\``);
        if (!members.has(socket)) {
          const arrived = !this.roomMembers(frame.room).includes(user);
          members.add(socket);
          this.rooms.set(frame.room, members);
          socket.roomAccess.set(frame.room, access);
          if (arrived) this.sendToRoom(frame.room, { type: "presence", room: frame.room, event: "join", user_id: user }, socket);
        }
        return { type: "joined", room: frame.room, members: this.roomMembers(frame.room), ref };
      }
      case "leave":
        if (!members.has(socket)) return refuse("not_found", `not in \`${frame.room}\``);
        this.leaveRoom(socket, frame.room);
        return { type: "ack", ref: ref! };
      case "publish": {
        const access = members.has(socket) ? socket.roomAccess.get(frame.room) : undefined;
        if (!access) return refuse("forbidden", `join \`${frame.room}\` before publishing`);
        if (access !== "publish") return refuse("forbidden", `read-only in \`${frame.room}\``);
        const size = JSON.stringify(frame.data).length;
        if (size > this.maxRoomMessageBytes) return refuse("payload_too_large", `message is ${size} bytes`);
        this.sendToRoom(frame.room, this.roomMessage(frame.room, user, frame.data), socket);
        return { type: "ack", ref: ref! };
      }
    }
  }

  /** Takes `socket` out of `room` (or of every room), telling the rest who left. */
  leaveRoom(socket: FakeSocket, room?: string): void {
    for (const name of room === undefined ? [...this.rooms.keys()] : [room]) {
      const members = this.rooms.get(name);
      if (!members?.delete(socket)) continue;
      socket.roomAccess.delete(name);
      if (members.size === 0) this.rooms.delete(name);
      if (!this.roomMembers(name).includes(socket.user!)) {
        this.sendToRoom(name, { type: "presence", room: name, event: "leave", user_id: socket.user! }, null);
      }
    }
  }

  private roomMessage(room: string, from: string | undefined, data: unknown): ServerFrame {
    idCounter += 1;
    return { type: "message", room, id: `m${idCounter}`, ...(from ? { from } : {}), at: new Date().toISOString(), data };
  }

  private sendToRoom(room: string, frame: ServerFrame, except: FakeSocket | null): void {
    for (const socket of this.rooms.get(room) ?? []) if (socket !== except) socket.deliver(frame);
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  private async fetch(input: string, init: Parameters<FetchLike>[1] = {}): ReturnType<FetchLike> {
    const url = new URL(input);
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const request: Request = {
      method: init.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers,
      body: init.body ? JSON.parse(init.body) : undefined,
    };
    this.requests.push(request);
    await Promise.resolve();
    if (this.httpDown) throw new TypeError("fetch failed");
    const token = headers.authorization?.replace(/^Bearer /, "") ?? url.searchParams.get("token");
    const user = this.verify(token);
    if (!user) return respond(401, { error: { code: "unauthorized", message: "invalid token" } });
    return this.route(user, request, init.signal);
  }

  private async route(user: string, request: Request, signal?: AbortSignal): ReturnType<FetchLike> {
    const inbox = this.user(user);
    const key = `${request.method} ${request.path}`;
    const ids = (request.body as { ids?: string[] } | undefined)?.ids ?? [];
    switch (key) {
      case "GET /v1/me/notifications": {
        const limit = Number(request.query.get("limit") ?? 20);
        const cursor = request.query.get("cursor");
        const before = cursor ? Number(cursor) : Infinity;
        const page = inbox.notifications
          .filter((n) => n.seq < before && n.archived_at === null)
          .sort((a, b) => b.seq - a.seq)
          .slice(0, limit)
          .map((n) => ({ ...n }));
        return respond(200, {
          notifications: page,
          next_cursor: page.length === limit ? String(page.at(-1)!.seq) : null,
          unread_count: this.unreadCount(user),
          last_seq: inbox.lastSeq,
        });
      }
      case "GET /v1/me/unread-count":
        return respond(200, { unread_count: this.unreadCount(user), last_seq: inbox.lastSeq });
      case "POST /v1/me/notifications/read":
      case "POST /v1/me/notifications/unread":
      case "POST /v1/me/notifications/seen": {
        const change = request.path.split("/").at(-1) as StateChange;
        const changed = this.change(user, change, ids);
        return respond(200, { changed, unread_count: this.unreadCount(user) });
      }
      case "POST /v1/me/notifications/read-all": {
        const changed = this.change(user, "read", "all");
        return respond(200, { changed, unread_count: this.unreadCount(user) });
      }
      case "GET /v1/poll": {
        const after = Number(request.query.get("after") ?? 0);
        const newer = () => inbox.notifications.filter((n) => n.seq > after && n.muted !== true).slice(0, 100);
        if (newer().length === 0) {
          await new Promise<void>((resolve, reject) => {
            const waiter = { user, wake: () => (this.pollWaiters.delete(waiter), resolve()) };
            this.pollWaiters.add(waiter);
            signal?.addEventListener("abort", () => {
              this.pollWaiters.delete(waiter);
              reject(new DOMException("aborted", "AbortError"));
            });
          });
        }
        const found = newer();
        return respond(200, {
          notifications: found,
          last_seq: found.at(-1)?.seq ?? after,
          unread_count: this.unreadCount(user),
        });
      }
      case "GET /v1/me/preferences":
        if (this.preferencesDown) return respond(503, { error: { code: "unavailable", message: "store down" } });
        return respond(200, inbox.preferences ?? DEFAULT_PREFERENCES());
      case "PUT /v1/me/preferences": {
        if (this.preferencesDown) return respond(503, { error: { code: "unavailable", message: "store down" } });
        const checked = checkPreferences(request.body, this.maxPreferenceTypes);
        if ("status" in checked) return respond(checked.status, { error: checked.error });
        return respond(200, this.setPreferences(user, checked.preferences));
      }
      default:
        return respond(404, { error: { code: "not_found", message: `no route ${key}` } });
    }
  }
}

function respond(status: number, body: unknown): Awaited<ReturnType<FetchLike>> {
  return {
    ok: status >= 200 && status < 300,
    status,
    json: async () => JSON.parse(JSON.stringify(body)),
    text: async () => JSON.stringify(body),
  };
}

/** A WebSocket connected to a FakeBelfry. `sent` holds the client's frames, parsed. */
export class FakeSocket implements WebSocketLike {
  readyState = CONNECTING;
  onopen: WebSocketLike["onopen"] = null;
  onmessage: WebSocketLike["onmessage"] = null;
  onclose: WebSocketLike["onclose"] = null;
  onerror: WebSocketLike["onerror"] = null;
  readonly sent: ClientFrame[] = [];
  user: string | null = null;
  closedWith: number | null = null;
  /** The rooms this connection is in, with its access. */
  readonly roomAccess = new Map<string, "publish" | "read">();

  constructor(
    private readonly server: FakeBelfry,
    readonly url: string,
  ) {
    server.sockets.push(this);
    const refuse = server.ws === "refuse" || server.httpDown;
    queueMicrotask(() => {
      if (this.readyState !== CONNECTING) return;
      if (refuse) {
        this.readyState = CLOSED;
        this.onerror?.({});
        this.onclose?.({ code: 1006, reason: "", wasClean: false });
        return;
      }
      this.readyState = OPEN;
      this.onopen?.({});
    });
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("InvalidStateError: socket is not open");
    const frame = JSON.parse(data) as ClientFrame;
    this.sent.push(frame);
    // The opening `auth` is never held, so a connection can open while commands wait.
    if (frame.type === "auth" && this.user === null) queueMicrotask(() => this.receive(frame));
    else this.server.schedule(() => this.receive(frame));
  }

  close(code = 1000): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.closedWith = code;
    this.server.leaveRoom(this);
    queueMicrotask(() => this.onclose?.({ code, reason: "", wasClean: true }));
  }

  /** The server sends a frame. */
  deliver(frame: ServerFrame): void {
    if (this.readyState !== OPEN) return;
    const data = JSON.stringify(frame);
    queueMicrotask(() => {
      if (this.readyState === OPEN) this.onmessage?.({ data });
    });
  }

  /** The server closes the connection with `code`. */
  serverClose(code: number, reason = ""): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.closedWith = code;
    this.server.leaveRoom(this);
    queueMicrotask(() => this.onclose?.({ code, reason, wasClean: code !== 1006 }));
  }

  private receive(frame: ClientFrame): void {
    if (this.readyState !== OPEN) return;
    const server = this.server;
    if (this.user === null) {
      if (frame.type !== "auth") return this.serverClose(4500, "protocol error");
      const user = server.verify(frame.token);
      if (!user) return this.serverClose(4001, "unauthorized");
      this.user = user;
      for (const f of server.openingFrames(user, frame.since)) this.deliver(f);
      return;
    }
    const ack = () => frame.ref !== undefined && this.deliver({ type: "ack", ref: frame.ref });
    switch (frame.type) {
      case "ping":
        if (server.answerPongs) this.deliver({ type: "pong", ref: frame.ref });
        return;
      case "auth":
        if (server.verify(frame.token) === this.user) ack();
        else this.deliver({ type: "error", ref: frame.ref, code: "unauthorized", message: "bad token" });
        return;
      case "mark_read":
      case "mark_unread":
      case "mark_seen":
        server.change(this.user, frame.type.slice(5) as StateChange, frame.ids);
        ack();
        return;
      case "mark_all_read":
        server.change(this.user, "read", "all");
        ack();
        return;
      case "join":
      case "leave":
      case "publish":
        this.deliver(server.roomFrame(this, frame));
        return;
    }
  }
}

/** An EventSource connected to a FakeBelfry. */
export class FakeEventSource implements EventSourceLike {
  readyState = CONNECTING;
  onopen: EventSourceLike["onopen"] = null;
  onerror: EventSourceLike["onerror"] = null;
  user: string | null = null;
  private readonly listeners = new Map<string, ((ev: { data: string }) => void)[]>();

  constructor(
    private readonly server: FakeBelfry,
    readonly url: string,
  ) {
    server.streams.push(this);
    const query = new URL(url).searchParams;
    const user = server.verify(query.get("token"));
    const since = query.has("since") ? Number(query.get("since")) : undefined;
    const refuse = server.sse === "refuse" || server.httpDown || !user;
    queueMicrotask(() => {
      if (this.readyState !== CONNECTING) return;
      if (refuse) {
        // A refused EventSource (401, blocked) gives up: CLOSED, then `error`.
        this.readyState = 2;
        this.onerror?.({});
        return;
      }
      this.readyState = OPEN;
      this.user = user;
      this.onopen?.({});
      for (const f of server.openingFrames(user!, since)) this.deliver(f);
    });
  }

  addEventListener(type: string, listener: (ev: { data: string }) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close(): void {
    this.readyState = 2;
  }

  deliver(frame: ServerFrame): void {
    if (this.readyState !== OPEN) return;
    const data = JSON.stringify(frame);
    queueMicrotask(() => {
      if (this.readyState !== OPEN) return;
      for (const listener of this.listeners.get(frame.type) ?? []) listener({ data });
    });
  }

  /** The stream breaks (the browser would retry; the SDK closes it and reconnects itself). */
  fail(): void {
    this.readyState = CONNECTING;
    queueMicrotask(() => this.onerror?.({}));
  }
}
