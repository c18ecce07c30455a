// BelfryClient: one user's live connection to Belfry, as an explicit state machine.
//
//   disconnected ──start()──▶ connecting ──hello──▶ connected
//        ▲                     ▲      │                 │
//        │                     │  attempt fails   connection ends
//        │                     │      ▼           (4000–4499, network)
//        │                     └─ wait (backoff) ◀──────┘
//        └── stop(), or close code 4500–4999 / 1009, from any state
//
//   offline: while navigator.onLine is false no attempt is made; `online` reconnects at once.
//
// Invariants:
// - `resumeSeq` is the highest seq this page has received in order (the first page's `last_seq`,
//   then every notification and updated frame). It is the `since` of the next connection, so a
//   reconnect neither misses nor repeats a notification; the store drops any duplicate by id and
//   seq, and any copy of a grouped item older than the one it holds.
// - Read-state commands go through the outbox, in order, and leave it only when the server
//   confirmed them; they are applied to the store optimistically when issued.
// - Rooms (rooms.ts) are joined again after every `hello`; their frames only travel over the
//   WebSocket, and their refs come from the same counter, so an `ack` names one frame only.
// - Preferences (preferences.ts) are kept current by `preferences` frames; those are not
//   replayed either, so once loaded they are read again after every reconnect.
// - Nothing reads `window`, `navigator`, `WebSocket`, `EventSource` or `fetch` before `start()`.

import { Backoff } from "./backoff.js";
import { adviceFor } from "./codes.js";
import { Emitter } from "./emitter.js";
import { isOnline, watchEnvironment } from "./environment.js";
import { BelfryError } from "./errors.js";
import { BelfryHttp } from "./http.js";
import type { BelfryClientEvents, BelfryClientOptions } from "./options.js";
import { Outbox } from "./outbox.js";
import { PreferencesStore, type PreferencesPatch } from "./preferences.js";
import { Rooms, type Room, type RoomOptions } from "./rooms.js";
import { NotificationStore, type NotificationsSnapshot } from "./store.js";
import { TokenSource } from "./token.js";
import { pollTransport } from "./transports/poll.js";
import { sseTransport } from "./transports/sse.js";
import type { Transport, TransportEnd, TransportFactory } from "./transports/types.js";
import { webSocketTransport } from "./transports/websocket.js";
import type {
  Command,
  ConnectionStatus,
  EventSourceConstructor,
  FetchLike,
  HelloFrame,
  Notification,
  Preferences,
  ServerFrame,
  TransportName,
  WebSocketConstructor,
} from "./types.js";

export type { BelfryClientEvents, BelfryClientOptions } from "./options.js";

const TRANSPORTS: Record<TransportName, TransportFactory> = {
  websocket: webSocketTransport,
  sse: sseTransport,
  poll: pollTransport,
};

/** Most ids one `mark_*` frame or request may carry (`limits.max_ids_per_request`). */
const MAX_IDS = 1000;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const TOKEN_RETRY_MS = 5_000;

export class BelfryClient {
  /** The notifications store; React hooks read it through useSyncExternalStore. */
  readonly store = new NotificationStore();
  /** The user's preferences; loaded on first use (`getPreferences()`, `usePreferences()`). */
  readonly preferences: PreferencesStore;
  private readonly events = new Emitter<BelfryClientEvents>();
  private readonly options: BelfryClientOptions;
  private readonly order: TransportName[];
  private readonly pageSize: number;
  private readonly tokens: TokenSource;
  private readonly http: BelfryHttp;
  private readonly outbox: Outbox;
  private readonly backoff: Backoff;
  private readonly rooms: Rooms;

  private running = false;
  /** Bumped by every attempt and by stop(); async work from an older generation is dropped. */
  private generation = 0;
  private transport: Transport | null = null;
  private transportIndex = 0;
  private hadHello = false;
  private connectedBefore = false;
  private resumeSeq = 0;
  /** The newest state version seen (hello, `state`, `preferences`, `sync`). */
  private stateVersion = 0;
  private refCounter = 0;
  private authRef: number | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private unwatch: (() => void) | null = null;
  private loadingMore: Promise<void> | null = null;

  constructor(options: BelfryClientOptions) {
    if (!options || typeof options.url !== "string") throw new TypeError("belfry: `url` is required");
    if (typeof options.getToken !== "function") throw new TypeError("belfry: `getToken` is required");
    this.options = options;
    this.order = options.transports ?? ["websocket", "sse", "poll"];
    if (this.order.length === 0 || this.order.some((t) => !(t in TRANSPORTS))) {
      throw new TypeError(`belfry: transports must be a non-empty list of ${Object.keys(TRANSPORTS).join(", ")}`);
    }
    this.pageSize = Math.min(100, Math.max(1, options.pageSize ?? 20));
    this.tokens = new TokenSource(options.getToken, { refreshMarginMs: options.tokenRefreshMarginMs });
    this.http = new BelfryHttp(options.url, this.tokens, () => this.fetchFn());
    this.preferences = new PreferencesStore({
      get: () => this.http.preferences(),
      put: (preferences) => this.http.putPreferences(preferences),
    });
    this.outbox = new Outbox(() => this.nextRef());
    this.backoff = new Backoff(options.backoff);
    const noWebSocket = this.order.includes("websocket")
      ? null
      : new BelfryError("unsupported", `rooms need the WebSocket transport, and transports is [${this.order.join(", ")}]`);
    this.rooms = new Rooms(() => this.nextRef(), noWebSocket);
  }

  // ---- reading ----------------------------------------------------------------------------

  get status(): ConnectionStatus {
    return this.store.getSnapshot().status;
  }

  /** The transport of the current connection, if any. */
  get transportName(): TransportName | null {
    return this.transport?.name ?? null;
  }

  subscribe = (listener: () => void): (() => void) => this.store.subscribe(listener);

  getSnapshot = (): NotificationsSnapshot => this.store.getSnapshot();

  on<K extends keyof BelfryClientEvents>(event: K, listener: BelfryClientEvents[K]): () => void {
    return this.events.on(event, listener);
  }

  /**
   * The room `name` (the same object every time for the same name). Call `join()` on it; it is
   * joined again by itself after every reconnect. Rooms need the WebSocket transport.
   */
  room<Data = unknown>(name: string, options?: RoomOptions): Room<Data> {
    return this.rooms.room<Data>(name, options);
  }

  // ---- lifecycle --------------------------------------------------------------------------

  /** Loads the first page and connects. Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.unwatch = watchEnvironment({
      online: () => {
        this.backoff.reset();
        if (!this.transport) this.connectNow();
      },
      offline: () => {
        if (this.transport) return; // It may still work (a local server); pings will tell.
        clearTimeout(this.retryTimer);
        this.generation += 1;
        this.setStatus("offline");
      },
      visible: () => {
        if (this.transport) this.transport.probe();
        else if (this.retryTimer !== undefined) this.connectNow();
      },
    });
    this.connectNow();
  }

  /** Closes the connection and stops reconnecting. Queued commands are refused. */
  stop(): void {
    this.halt(null);
  }

  // ---- commands ---------------------------------------------------------------------------

  /** Marks notifications read, here at once and on the server as soon as it is reachable. */
  markRead(ids: readonly string[]): Promise<void> {
    const list = unique(ids);
    this.store.markReadLocally(list);
    return this.enqueueIds("mark_read", list);
  }

  markUnread(ids: readonly string[]): Promise<void> {
    const list = unique(ids);
    this.store.markUnreadLocally(list);
    return this.enqueueIds("mark_unread", list);
  }

  /** Records that the user saw these notifications (the bell was opened). */
  markSeen(ids: readonly string[]): Promise<void> {
    const list = unique(ids);
    this.store.markSeenLocally(list);
    return this.enqueueIds("mark_seen", list);
  }

  markAllRead(): Promise<void> {
    this.store.markAllReadLocally();
    return this.enqueue({ type: "mark_all_read" });
  }

  /** Loads the next older page; resolves at once when there is none. */
  loadMore(): Promise<void> {
    const cursor = this.store.nextCursor;
    if (this.loadingMore) return this.loadingMore;
    if (!cursor) return Promise.resolve();
    this.store.setLoadingMore(true);
    const loading = this.http
      .list({ limit: this.pageSize, cursor })
      .then((page) => this.store.applyOlderPage(page))
      .catch((error: unknown) => {
        throw this.report(error);
      })
      .finally(() => {
        this.loadingMore = null;
        this.store.setLoadingMore(false);
      });
    this.loadingMore = loading;
    return loading;
  }

  // ---- preferences ------------------------------------------------------------------------

  /** Reads the user's preferences from Belfry (and updates `preferences`). */
  getPreferences(): Promise<Preferences> {
    return this.preferences.load();
  }

  /**
   * Replaces the user's preferences: what `preferences` leaves out takes the server's defaults,
   * not the current values (use `updatePreferences` to change a few). Resolves with what was
   * stored; a refusal rejects with a BelfryError (`validation`, with `fields`, for bad values).
   */
  setPreferences(preferences: Partial<Preferences>): Promise<Preferences> {
    return this.preferences.set(preferences);
  }

  /** Changes some preferences, keeping the others; resolves with what was stored. */
  updatePreferences(patch: PreferencesPatch): Promise<Preferences> {
    return this.preferences.update(patch);
  }

  // ---- connecting -------------------------------------------------------------------------

  private connectNow(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (!this.running || this.transport) return;
    if (!isOnline()) {
      this.setStatus("offline");
      return;
    }
    const generation = ++this.generation;
    void this.attempt(generation);
  }

  private async attempt(generation: number): Promise<void> {
    this.setStatus("connecting");
    let token: string;
    try {
      if (!this.store.loaded) {
        const page = await this.http.list({ limit: this.pageSize });
        if (generation !== this.generation) return;
        this.store.applyFirstPage(page, { counts: true });
        this.resumeSeq = Math.max(this.resumeSeq, page.last_seq, this.store.highestSeq);
      }
      token = await this.tokens.get();
    } catch (error) {
      if (generation !== this.generation) return;
      this.report(error);
      this.retryLater();
      return;
    }
    if (generation !== this.generation) return;
    this.open(generation, token);
  }

  private open(generation: number, token: string): void {
    const name = this.order[this.transportIndex % this.order.length]!;
    let opened = false;
    let self: Transport | null = null;
    const current = () => self !== null && this.transport === self;
    const transport = TRANSPORTS[name](
      {
        url: this.options.url,
        token,
        since: this.resumeSeq,
        http: this.http,
        WebSocket: this.options.WebSocket ?? global<WebSocketConstructor>("WebSocket"),
        EventSource: this.options.EventSource ?? global<EventSourceConstructor>("EventSource"),
        pingIntervalMs: this.options.pingIntervalMs ?? 20_000,
        pongTimeoutMs: this.options.pongTimeoutMs ?? 10_000,
        pollTimeoutSecs: this.options.pollTimeoutSecs ?? 25,
        nextRef: () => this.nextRef(),
      },
      {
        open: () => {
          opened = true;
        },
        frame: (frame) => {
          if (current()) this.onFrame(frame, generation);
        },
        counts: (unread, through) => {
          if (current()) this.store.setUnreadCount(unread, through);
        },
        end: (end) => {
          if (current()) this.onEnd(end, token, generation);
        },
      },
    );
    self = transport;
    this.transport = transport;
    this.setStatus("connecting");
    this.connectTimer = setTimeout(() => {
      if (!current() || this.hadHello) return;
      transport.close();
      this.onEnd({ opened, error: new Error("no hello in time") }, token, generation);
    }, this.options.connectTimeoutMs ?? 10_000);
  }

  private onEnd(end: TransportEnd, token: string, generation: number): void {
    const name = this.transport?.name;
    const hadHello = this.hadHello;
    this.dropTransport();
    if (!this.running) return;
    if (end.code !== undefined) {
      const advice = adviceFor(end.code);
      if (advice === "stop") {
        const error = new BelfryError("closed", `the server closed the connection with ${end.code} (${end.reason || "no reason"}); not reconnecting`, { closeCode: end.code });
        this.halt(error);
        return;
      }
      if (advice === "refresh-token") {
        // One fresh token and one immediate retry; a refusal before `hello` backs off instead,
        // so a server that keeps refusing cannot cause a reconnect storm.
        this.tokens.invalidateIf(token);
        if (hadHello) this.connectNow();
        else this.retryLater();
        return;
      }
      if (advice === "reconnect-now" && hadHello) {
        this.connectNow();
        return;
      }
    }
    if (end.unauthorized) {
      this.tokens.invalidateIf(token);
      this.report(new BelfryError("unauthorized", "Belfry refused the token"));
      this.retryLater();
      return;
    }
    if (!hadHello && !end.opened) {
      void this.diagnose(name, end, token, generation);
      return;
    }
    this.retryLater();
  }

  /**
   * A transport could not connect at all. When Belfry answers over plain HTTP, the transport is
   * what fails (a proxy that breaks WebSocket or streaming): fall back to the next one at once.
   * Otherwise the server is down or refuses the token: retry the same one after a backoff.
   */
  private async diagnose(name: TransportName | undefined, end: TransportEnd, token: string, generation: number) {
    const hasNext = this.transportIndex + 1 < this.order.length;
    if (end.unsupported) {
      if (hasNext) {
        this.transportIndex += 1;
        this.connectNow();
      } else {
        this.transportIndex = 0;
        this.halt(new BelfryError("unsupported", `no usable transport (${this.order.join(", ")}) on this platform`));
      }
      return;
    }
    const verdict = await this.http.probe(token);
    if (generation !== this.generation || !this.running || this.transport) return;
    if (verdict === "unauthorized") this.tokens.invalidateIf(token);
    if (verdict === "ok" && hasNext) {
      this.report(new BelfryError("network", `${name ?? "transport"} cannot connect; trying ${this.order[this.transportIndex + 1]}`, { cause: end.error }));
      this.transportIndex += 1;
      this.connectNow();
      return;
    }
    if (verdict === "ok") this.transportIndex = 0;
    this.retryLater();
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    if (!this.running) return;
    if (!isOnline()) {
      this.setStatus("offline");
      return;
    }
    this.setStatus("connecting");
    this.retryTimer = setTimeout(() => this.connectNow(), this.backoff.next());
  }

  private dropTransport(): void {
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    this.transport?.close();
    this.transport = null;
    this.hadHello = false;
    this.authRef = null;
    this.outbox.connectionLost();
    this.rooms.disconnected();
  }

  private halt(error: BelfryError | null): void {
    this.running = false;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.dropTransport();
    this.unwatch?.();
    this.unwatch = null;
    this.outbox.rejectAll(error ?? new BelfryError("closed", "the client was stopped"));
    this.rooms.stopped(error ?? new BelfryError("closed", "the client was stopped"));
    this.setStatus("disconnected");
    if (error) this.report(error);
  }

  // ---- frames -----------------------------------------------------------------------------

  private onFrame(frame: ServerFrame, generation: number): void {
    switch (frame.type) {
      case "hello":
        this.onHello(frame, generation);
        break;
      case "notification":
      case "updated": {
        const n = frame.notification;
        if (!n || typeof n.seq !== "number" || typeof n.id !== "string") return;
        this.resumeSeq = Math.max(this.resumeSeq, n.seq);
        // A known id at a higher seq is a merge, whatever the frame is called (long-poll answers
        // carry grouped items as plain items): never counted again.
        const held = this.store.get(n.id);
        if (frame.type === "updated" || (held && n.seq > held.seq)) this.onUpdated(n);
        else if (this.store.addNotification(n)) this.events.emit("notification", n);
        break;
      }
      case "preferences":
        if (!this.admitVersion(frame.version)) return;
        if (frame.preferences && typeof frame.preferences === "object") this.preferences.receive(frame.preferences);
        break;
      case "state":
        if (!this.admitVersion(frame.version)) return;
        this.store.applyState(frame);
        this.events.emit("state", frame);
        break;
      case "sync":
        // A change was lost on the way: the server's state now, then the first page again.
        this.stateVersion = Math.max(this.stateVersion, frame.state_version);
        if (this.outbox.size === 0) this.store.setUnreadCount(frame.unread_count, frame.last_seq);
        else this.store.countedUpTo(frame.last_seq);
        if (frame.preferences && typeof frame.preferences === "object") this.preferences.receive(frame.preferences);
        else if (this.preferences.loaded) this.preferences.load().catch(() => undefined);
        void this.reconcile(generation, true);
        break;
      case "ack":
        if (frame.ref === this.authRef) this.authRef = null;
        else if (!this.rooms.settle(frame.ref)) this.outbox.settle(frame.ref);
        break;
      case "error": {
        const error = new BelfryError(frame.code, frame.message);
        if (frame.ref !== undefined && frame.ref === this.authRef) {
          this.authRef = null;
          this.tokens.invalidate();
          this.report(error);
        } else if (frame.ref === undefined || !(this.rooms.settle(frame.ref, error) || this.outbox.settle(frame.ref, error))) {
          this.report(error);
        }
        break;
      }
      default:
        // Room frames go to their room; pong is handled by the transport; unknown frame types
        // are ignored by contract.
        this.rooms.handle(frame);
        break;
    }
  }

  /**
   * Whether a `state` or `preferences` frame with this version is news: one at or below the
   * newest version seen is a late copy and is dropped (the server drops them too).
   */
  private admitVersion(version: number | undefined): boolean {
    if (version === undefined) return true;
    if (version <= this.stateVersion) return false;
    this.stateVersion = version;
    return true;
  }

  private onUpdated(n: Notification): void {
    if (this.store.applyUpdate(n)) this.events.emit("updated", n);
  }

  private onHello(frame: HelloFrame, generation: number): void {
    clearTimeout(this.connectTimer);
    this.hadHello = true;
    this.backoff.reset();
    const reconnect = this.connectedBefore;
    this.connectedBefore = true;
    let reset = false;
    if (frame.last_seq < this.resumeSeq) {
      // The server holds fewer notifications than this page has seen: its data was reset.
      this.resumeSeq = frame.last_seq;
      this.store.clear();
      reset = true;
    }
    // With commands still queued, the hello's count predates them; the `state` frames that
    // answer them carry the count to show.
    if (this.outbox.size === 0) this.store.setUnreadCount(frame.unread_count, frame.last_seq);
    else this.store.countedUpTo(frame.last_seq);
    // A new connection starts from the server's version (it may be lower after a data reset).
    if (typeof frame.state_version === "number") this.stateVersion = frame.state_version;
    this.setStatus("connected");
    this.events.emit("hello", frame);
    this.flushOutbox();
    this.joinRooms();
    this.scheduleTokenRefresh();
    if (reconnect || reset) void this.reconcile(generation, reset);
    if (reconnect && this.preferences.loaded) this.preferences.load().catch(() => undefined);
  }

  /**
   * After a reconnect: `state` frames are not replayed, so the first page is read again (once
   * the commands queued while offline are confirmed, so it reflects them).
   */
  private async reconcile(generation: number, counts: boolean): Promise<void> {
    try {
      await this.outbox.drained();
      if (generation !== this.generation) return;
      const page = await this.http.list({ limit: this.pageSize });
      if (generation !== this.generation) return;
      this.store.applyFirstPage(page, { counts });
    } catch (error) {
      if (generation === this.generation) this.report(error);
    }
  }

  private joinRooms(): void {
    const transport = this.transport;
    if (transport?.canSend) {
      this.rooms.connected({ send: (frame) => transport.send(frame) }, null);
    } else {
      const name = transport?.name ?? "this transport";
      this.rooms.connected(null, new BelfryError("unsupported", `rooms need a WebSocket connection; this one uses ${name}, which cannot send client frames`));
    }
  }

  // ---- commands, tokens -------------------------------------------------------------------

  private enqueueIds(type: "mark_read" | "mark_unread" | "mark_seen", ids: string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    const chunks: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += MAX_IDS) {
      chunks.push(this.enqueue({ type, ids: ids.slice(i, i + MAX_IDS) }));
    }
    return chunks.length === 1 ? chunks[0]! : Promise.all(chunks).then(() => undefined);
  }

  private enqueue(command: Command): Promise<void> {
    const done = this.outbox.push(command);
    done.catch((error: unknown) => {
      if (error instanceof BelfryError && error.code === "closed") return;
      this.report(error);
      // The optimistic change was refused: show the server's truth again.
      if (this.hadHello) void this.reconcile(this.generation, true);
    });
    this.flushOutbox();
    return done;
  }

  private flushOutbox(): void {
    const transport = this.transport;
    if (!transport || !this.hadHello) return;
    if (transport.canSend) {
      try {
        this.outbox.flushFrames((frame) => transport.send(frame));
      } catch {
        // The socket is closing; what was not sent goes out after the next hello.
      }
      return;
    }
    void this.outbox.flushHttp(
      (command) => this.http.command(command),
      (result) => this.store.setUnreadCount(result.unread_count),
    );
  }

  private scheduleTokenRefresh(): void {
    clearTimeout(this.refreshTimer);
    const wait = this.tokens.msUntilRefresh();
    if (wait === null) return;
    this.refreshTimer = setTimeout(() => void this.refreshToken(), Math.min(wait, MAX_TIMER_MS));
  }

  /** Refreshes the token before it expires; an open WebSocket gets it in place (`auth`). */
  private async refreshToken(): Promise<void> {
    const transport = this.transport;
    try {
      const token = await this.tokens.refresh();
      if (!transport || this.transport !== transport) return;
      if (transport.canSend) {
        this.authRef = this.nextRef();
        transport.send({ type: "auth", token, ref: this.authRef });
      }
      this.scheduleTokenRefresh();
    } catch (error) {
      if (!transport || this.transport !== transport) return;
      this.report(error);
      this.refreshTimer = setTimeout(() => void this.refreshToken(), TOKEN_RETRY_MS);
    }
  }

  // ---- small things -----------------------------------------------------------------------

  private setStatus(status: ConnectionStatus): void {
    const before = this.store.getSnapshot().status;
    this.store.setStatus(status, this.transport?.name ?? (status === "disconnected" ? null : undefined));
    if (before !== status) this.events.emit("status", status);
  }

  private report(error: unknown): BelfryError {
    const e = BelfryError.from(error);
    this.store.setError(e);
    this.events.emit("error", e);
    return e;
  }

  private nextRef(): number {
    this.refCounter += 1;
    return this.refCounter;
  }

  private fetchFn(): FetchLike {
    const f = this.options.fetch ?? global<FetchLike>("fetch");
    if (!f) throw new BelfryError("unsupported", "no fetch on this platform; pass the `fetch` option");
    return this.options.fetch ? f : (f.bind(globalThis) as FetchLike);
  }
}

function global<T>(name: string): T | undefined {
  return (globalThis as Record<string, unknown>)[name] as T | undefined;
}

function unique(ids: readonly string[]): string[] {
  return [...new Set(ids.filter((id) => typeof id === "string" && id.length > 0))];
}
