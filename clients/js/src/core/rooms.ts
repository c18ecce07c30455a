// Rooms: collaborative screens over the client's WebSocket (docs/protocol.md, "Rooms").
//
// A `Room` is this page's membership in one room. `client.room(name)` returns the same object
// for the same name, and `join()`/`leave()` are counted, so several components share one
// membership; the room is left when the last holder leaves.
//
//   left ──join()──▶ joining ──joined──▶ joined
//                     ▲   │                 │
//                     │   └─ error ─▶ error │ connection lost: joined again after the next hello
//                     └─────────────────────┘
//
// Invariants:
// - The server keeps no room state across connections: every room with holders is joined again
//   after each `hello`, and that `joined` replaces the member list.
// - On a connection, a room's `join` frame goes out before any of its `publish` frames. The
//   server handles one connection's frames in order, so a publish never waits for `joined`.
// - Publishing is at most once. A message published while disconnected waits, in order, for the
//   next connection; one already sent when the connection drops is rejected with `network` and
//   never sent again, because a room message (unlike a read-state command) is not idempotent.
// - Only the WebSocket carries client frames: over SSE or long-poll a room reports an
//   `unsupported` error instead of pretending to be joined.

import { Emitter } from "./emitter.js";
import { BelfryError } from "./errors.js";
import type { ClientFrame, JoinedFrame, PresenceFrame, RoomMessageFrame, ServerFrame } from "./types.js";

/**
 * `left`: not in the room (never joined, or every holder left). `joining`: waiting for a
 * connection or for `joined`, also while reconnecting. `joined`: members and messages are live.
 * `error`: the server refused the join, or this connection cannot carry rooms (see `error`).
 */
export type RoomStatus = "left" | "joining" | "joined" | "error";

/** A message another connection (or the app backend) published to the room. */
export interface RoomMessage<Data = unknown> {
  id: string;
  room: string;
  /** The sending user; null when the app backend sent it. Your own other tabs appear here too. */
  from: string | null;
  /** When the server received it (RFC 3339). */
  at: string;
  data: Data;
}

export interface RoomSnapshot<Data = unknown> {
  readonly name: string;
  readonly status: RoomStatus;
  /** User ids in the room, each once however many tabs they have open; sorted. Empty unless joined. */
  readonly members: readonly string[];
  /** The last `history` messages received while joined, oldest first. */
  readonly messages: readonly RoomMessage<Data>[];
  /** Why the room is in `error`, or the last failed publish; cleared by the next `joined`. */
  readonly error: BelfryError | null;
}

export interface RoomOptions {
  /**
   * A room token minted by the app backend, for rooms the user's own token does not grant. A
   * function is called before every join (also the automatic ones after a reconnect), so it can
   * fetch a fresh token.
   */
  token?: string | (() => string | Promise<string>);
  /** How many received messages the snapshot keeps. Default 50; the largest any caller asks for wins. */
  history?: number;
}

export interface RoomEvents<Data = unknown> {
  message: (message: RoomMessage<Data>) => void;
  /** A user arrived (their first tab) or left (their last tab). */
  presence: (event: "join" | "leave", userId: string) => void;
  status: (status: RoomStatus) => void;
  error: (error: BelfryError) => void;
}

/** The client's current connection, as far as rooms care. */
export interface RoomLink {
  send(frame: ClientFrame): void;
}

const DEFAULT_HISTORY = 50;
const NAME = /^[A-Za-z0-9._:-]{1,128}$/;

type Pending =
  | { kind: "join"; room: Room<unknown> }
  | { kind: "leave" }
  | { kind: "publish"; room: Room<unknown>; resolve(): void; reject(error: BelfryError): void };

interface Queued {
  data: unknown;
  resolve(): void;
  reject(error: BelfryError): void;
}

/** The page's rooms, owned by a BelfryClient. */
export class Rooms {
  private readonly byName = new Map<string, Room<unknown>>();
  /** Frames sent on the current connection and not yet answered, by `ref`. */
  readonly pending = new Map<number, Pending>();
  /** The connection rooms can use now; null while disconnected or on SSE/long-poll. */
  link: RoomLink | null = null;
  /** Why the current connection cannot carry rooms, when it cannot. */
  refusal: BelfryError | null = null;
  /** Bumped by every connection and disconnection; async work from an older one is dropped. */
  epoch = 0;

  constructor(
    readonly nextRef: () => number,
    /** Non-null when no configured transport can carry rooms: every join fails with it. */
    readonly impossible: BelfryError | null,
  ) {}

  room<Data>(name: string, options: RoomOptions = {}): Room<Data> {
    if (typeof name !== "string" || !NAME.test(name)) {
      throw new TypeError(`belfry: a room name is 1–128 characters of A–Z a–z 0–9 . _ : - (got ${JSON.stringify(name)})`);
    }
    let room = this.byName.get(name);
    if (!room) {
      room = new Room<unknown>(this, name);
      this.byName.set(name, room);
    }
    room.configure(options);
    return room as Room<Data>;
  }

  /** A `hello` arrived. `link` is null when the transport cannot send (SSE, long-poll). */
  connected(link: RoomLink | null, refusal: BelfryError | null): void {
    this.epoch += 1;
    this.link = link;
    this.refusal = link ? null : refusal;
    for (const room of this.byName.values()) room.reconnected();
  }

  /** The connection ended: joins are redone after the next hello; unanswered publishes fail. */
  disconnected(): void {
    this.epoch += 1;
    this.link = null;
    this.refusal = null;
    this.failPending(
      new BelfryError("network", "the connection dropped before the server confirmed the message; it was not sent again"),
    );
    for (const room of this.byName.values()) room.connectionLost();
  }

  /** The client stopped: everything waiting is refused; holders are joined again on restart. */
  stopped(error: BelfryError): void {
    this.disconnected();
    for (const room of this.byName.values()) room.refuseWaiting(error);
  }

  /** Handles `joined`, `presence` and `message`; false for any other frame. */
  handle(frame: ServerFrame): boolean {
    switch (frame.type) {
      case "joined":
        this.byName.get(frame.room)?.onJoined(frame);
        return true;
      case "presence":
        this.byName.get(frame.room)?.onPresence(frame);
        return true;
      case "message":
        this.byName.get(frame.room)?.onMessage(frame);
        return true;
      default:
        return false;
    }
  }

  /** An `ack` or `error` for `ref`; false when the ref is not a room frame's. */
  settle(ref: number, error?: BelfryError): boolean {
    const entry = this.pending.get(ref);
    if (!entry) return false;
    this.pending.delete(ref);
    if (entry.kind === "publish") {
      if (error) {
        entry.room.noteError(error);
        entry.reject(error);
      } else {
        entry.resolve();
      }
    } else if (entry.kind === "join" && error) {
      entry.room.onJoinRefused(ref, error);
    }
    // A `leave` needs no answer: `not_found` only means the server had already forgotten it.
    return true;
  }

  private failPending(error: BelfryError): void {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) if (entry.kind === "publish") entry.reject(error);
  }
}

/** One room as this page sees it. Get it from `client.room(name)`. */
export class Room<Data = unknown> {
  private readonly events = new Emitter<RoomEvents<Data>>();
  private readonly listeners = new Set<() => void>();
  private holders = 0;
  private status: RoomStatus = "left";
  private members: string[] = [];
  private messages: RoomMessage<Data>[] = [];
  private error: BelfryError | null = null;
  private snapshot: RoomSnapshot<Data> | null = null;
  /** The largest `history` any caller asked for; DEFAULT_HISTORY when none did. */
  private history: number | null = null;
  private token: RoomOptions["token"];
  /** Publishes not yet sent on a connection, in order. */
  private queue: Queued[] = [];
  private waiters: { resolve(): void; reject(error: BelfryError): void }[] = [];
  /** The ref of this connection's `join`; a `joined` or `error` with another ref is stale. */
  private joinRef: number | null = null;
  /** The `Rooms.epoch` whose connection carried our `join` (publishes may follow it). */
  private joinedOn = -1;
  /** Bumped whenever a join starts or is abandoned, so a late room token is dropped. */
  private attempt = 0;

  /** @internal Use `client.room(name)`. */
  constructor(
    private readonly rooms: Rooms,
    readonly name: string,
  ) {}

  // ---- reading ----------------------------------------------------------------------------

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** The current immutable snapshot (the same object until something changes). */
  getSnapshot = (): RoomSnapshot<Data> => {
    this.snapshot ??= {
      name: this.name,
      status: this.status,
      members: this.members,
      messages: this.messages,
      error: this.error,
    };
    return this.snapshot;
  };

  on<K extends keyof RoomEvents<Data>>(event: K, listener: RoomEvents<Data>[K]): () => void {
    return this.events.on(event, listener);
  }

  // ---- membership -------------------------------------------------------------------------

  /**
   * Joins the room (counted: every `join()` needs its own `leave()`). Resolves once the server
   * answered `joined`; rejects when it refuses, when rooms are unsupported on this connection,
   * or when the room is left or the client stopped first. Ignoring the promise is fine: the
   * outcome is in the snapshot too.
   */
  join(): Promise<void> {
    this.holders += 1;
    if (this.status === "joined") return Promise.resolve();
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    done.catch(() => undefined);
    if (this.status !== "joining") this.begin();
    return done;
  }

  /**
   * Gives up one `join()`. When none is left, the room is left at the end of the current task,
   * so a component that unmounts and mounts again at once (React StrictMode) keeps its seat.
   */
  leave(): void {
    if (this.holders === 0) return;
    this.holders -= 1;
    if (this.holders === 0) queueMicrotask(() => this.leaveIfUnheld());
  }

  /**
   * Sends `data` (any JSON value) to the room's other connections; the server excludes only the
   * connection that published, so this user's other tabs receive it. Resolves on the server's
   * `ack`; rejects with a BelfryError on its `error` (`forbidden` for read-only access,
   * `payload_too_large`, `rate_limited`, …). While disconnected the message waits for the next
   * connection; one in flight when the connection drops is rejected with `network`.
   */
  publish(data: Data): Promise<void> {
    let done: Promise<void>;
    if (this.holders === 0 || this.status === "left") {
      done = Promise.reject(new BelfryError("forbidden", `join \`${this.name}\` before publishing`));
    } else if (this.status === "error" && this.error) {
      done = Promise.reject(this.error);
    } else {
      done = new Promise<void>((resolve, reject) => this.queue.push({ data, resolve, reject }));
      this.flush();
    }
    done.catch(() => undefined);
    return done;
  }

  // ---- driven by Rooms --------------------------------------------------------------------

  /** @internal */
  configure(options: RoomOptions): void {
    if (options.token !== undefined) this.token = options.token;
    if (options.history !== undefined) {
      this.history = Math.max(this.history ?? 0, Math.max(0, Math.floor(options.history)));
    }
  }

  /** @internal A new connection: rooms with holders join again. */
  reconnected(): void {
    if (this.holders > 0) this.begin();
  }

  /** @internal */
  connectionLost(): void {
    this.joinRef = null;
    this.joinedOn = -1;
    this.attempt += 1;
    if (this.status === "joined") {
      this.members = [];
      this.setStatus("joining");
    }
  }

  /** @internal The client stopped. */
  refuseWaiting(error: BelfryError): void {
    this.refuse(error);
  }

  /** @internal */
  onJoined(frame: JoinedFrame): void {
    if (this.status !== "joining" || (frame.ref !== undefined && frame.ref !== this.joinRef)) return;
    this.rooms.pending.delete(frame.ref ?? -1);
    this.members = [...new Set(frame.members)].sort(byCodeUnit);
    this.error = null;
    this.setStatus("joined");
    const waiters = this.waiters.splice(0);
    for (const waiter of waiters) waiter.resolve();
  }

  /** @internal */
  onJoinRefused(ref: number, error: BelfryError): void {
    if (ref !== this.joinRef || this.status !== "joining") return;
    this.fail(error);
  }

  /** @internal */
  onPresence(frame: PresenceFrame): void {
    if (this.status !== "joined") return;
    const present = this.members.includes(frame.user_id);
    if (frame.event === "join" && !present) {
      this.members = [...this.members, frame.user_id].sort(byCodeUnit);
    } else if (frame.event === "leave" && present) {
      this.members = this.members.filter((m) => m !== frame.user_id);
    } else {
      return;
    }
    this.changed();
    this.events.emit("presence", frame.event, frame.user_id);
  }

  /** @internal */
  onMessage(frame: RoomMessageFrame): void {
    if (this.status !== "joined") return;
    const message: RoomMessage<Data> = {
      id: frame.id,
      room: frame.room,
      from: frame.from ?? null,
      at: frame.at,
      data: frame.data as Data,
    };
    const history = this.history ?? DEFAULT_HISTORY;
    if (history > 0) {
      const kept = [...this.messages, message];
      this.messages = kept.length > history ? kept.slice(kept.length - history) : kept;
      this.changed();
    }
    this.events.emit("message", message);
  }

  /** @internal A publish was refused: shown in the snapshot until the next `joined`. */
  noteError(error: BelfryError): void {
    this.error = error;
    this.changed();
    this.events.emit("error", error);
  }

  // ---- the machinery ----------------------------------------------------------------------

  private begin(): void {
    this.attempt += 1;
    this.joinRef = null;
    this.joinedOn = -1;
    if (this.rooms.impossible) return this.fail(this.rooms.impossible);
    this.error = null;
    this.setStatus("joining");
    if (this.rooms.refusal) return this.fail(this.rooms.refusal);
    if (!this.rooms.link) return; // joined after the next hello
    const token = this.token;
    if (typeof token !== "function") return this.sendJoin(token);
    const attempt = this.attempt;
    const epoch = this.rooms.epoch;
    Promise.resolve()
      .then(token)
      .then(
        (fresh) => {
          if (attempt === this.attempt && epoch === this.rooms.epoch) this.sendJoin(fresh);
        },
        (error: unknown) => {
          if (attempt !== this.attempt || epoch !== this.rooms.epoch) return;
          const cause = error instanceof Error ? error.message : String(error);
          this.fail(new BelfryError("unauthorized", `could not get a room token for \`${this.name}\`: ${cause}`, { cause: error }));
        },
      );
  }

  private sendJoin(token: string | undefined): void {
    const link = this.rooms.link;
    if (!link) return;
    const ref = this.rooms.nextRef();
    try {
      link.send({ type: "join", room: this.name, ...(token ? { token } : {}), ref });
    } catch {
      return; // The socket is closing; the next hello joins again.
    }
    this.rooms.pending.set(ref, { kind: "join", room: this as Room<unknown> });
    this.joinRef = ref;
    this.joinedOn = this.rooms.epoch;
    this.flush();
  }

  /** Sends queued publishes once this connection carried our `join`. */
  private flush(): void {
    const link = this.rooms.link;
    if (!link || this.joinedOn !== this.rooms.epoch) return;
    while (this.queue.length > 0) {
      const entry = this.queue[0]!;
      const ref = this.rooms.nextRef();
      try {
        link.send({ type: "publish", room: this.name, data: entry.data, ref });
      } catch {
        return; // Still unsent: it goes out after the next join.
      }
      this.queue.shift();
      this.rooms.pending.set(ref, { kind: "publish", room: this as Room<unknown>, resolve: entry.resolve, reject: entry.reject });
    }
  }

  private leaveIfUnheld(): void {
    if (this.holders > 0 || this.status === "left") return;
    const link = this.rooms.link;
    if (link && this.joinedOn === this.rooms.epoch) {
      const ref = this.rooms.nextRef();
      try {
        link.send({ type: "leave", room: this.name, ref });
        this.rooms.pending.set(ref, { kind: "leave" });
      } catch {
        // The connection is ending, and the server leaves every room of a closed connection.
      }
    }
    if (this.joinRef !== null) this.rooms.pending.delete(this.joinRef);
    this.attempt += 1;
    this.joinRef = null;
    this.joinedOn = -1;
    this.members = [];
    this.error = null;
    this.setStatus("left");
    this.refuse(new BelfryError("closed", `left \`${this.name}\``));
  }

  private fail(error: BelfryError): void {
    this.joinRef = null;
    this.members = [];
    this.error = error;
    this.setStatus("error");
    this.events.emit("error", error);
    this.refuse(error);
  }

  /** Rejects the join waiters and the publishes not yet sent. */
  private refuse(error: BelfryError): void {
    const waiters = this.waiters.splice(0);
    const queued = this.queue.splice(0);
    for (const waiter of waiters) waiter.reject(error);
    for (const entry of queued) entry.reject(error);
  }

  private setStatus(status: RoomStatus): void {
    const changed = this.status !== status;
    this.status = status;
    this.changed();
    if (changed) this.events.emit("status", status);
  }

  private changed(): void {
    this.snapshot = null;
    for (const listener of [...this.listeners]) listener();
  }
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
