// The notifications store: the one place a page keeps notification state. Framework-free; React
// reads it through useSyncExternalStore (subscribe + getSnapshot), other code through the same
// two functions. Snapshots are immutable: every change produces a new snapshot object and new
// arrays/notification objects for what changed, so reference equality means "unchanged".
//
// Unread counting. The server's counts (page, hello, state frames) are authoritative, but they
// describe the inbox up to some seq. `countedThrough` remembers that seq, so a notification frame
// increments the count only when it is newer than what the last authoritative count included.
// This is what keeps a resumed connection (hello says 3, then the 3 missed notifications follow)
// from counting 6.
//
// Grouping. The server may merge an event into an existing unread item: the item keeps its `id`
// and gets a new, higher `seq` (the old one is gone for good). Such an item arrives as an
// `updated` frame, or, over long-poll, as an ordinary item whose id is already known. Either
// way it replaces the held copy (`applyUpdate`) and moves to its new place, and the unread count
// does not change: the server only merges into unread items, which every count already includes.
// The dedupe sets follow: `byId` points at the new copy, `seqs` loses the old seq and gains the
// new one. A copy older than the one held (a lower seq for a known id) is stale and ignored.

import type { ConnectionStatus, Notification, NotificationPage, StateFrame, TransportName } from "./types.js";

export interface NotificationsSnapshot {
  /** Newest first (by `seq`), without duplicates. */
  readonly notifications: readonly Notification[];
  readonly unreadCount: number;
  readonly status: ConnectionStatus;
  /** The transport of the current or last connection. */
  readonly transport: TransportName | null;
  /** True once the first page has been loaded. */
  readonly loaded: boolean;
  /** True while older pages exist on the server (see `loadMore`). */
  readonly hasMore: boolean;
  readonly loadingMore: boolean;
  /** The last error the client reported, cleared by the next successful connection. */
  readonly error: Error | null;
}

type Listener = () => void;

/** Unread: not read, not archived, not expired. */
export function isUnread(n: Notification, now = Date.now()): boolean {
  if (n.read_at != null || n.archived_at != null) return false;
  return n.expires_at == null || Date.parse(n.expires_at) > now;
}

export class NotificationStore {
  private items: Notification[] = [];
  private readonly byId = new Map<string, Notification>();
  private readonly seqs = new Set<number>();
  private unread = 0;
  private countedThrough = 0;
  private cursor: string | null = null;
  private pagesLoaded = 0;
  private state: Omit<NotificationsSnapshot, "notifications" | "unreadCount" | "hasMore" | "loaded"> = {
    status: "disconnected",
    transport: null,
    loadingMore: false,
    error: null,
  };
  private snapshot: NotificationsSnapshot | null = null;
  private readonly listeners = new Set<Listener>();

  /** Adds a listener called after every change; returns the unsubscribe function. */
  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** The current immutable snapshot (the same object until something changes). */
  getSnapshot = (): NotificationsSnapshot => {
    this.snapshot ??= {
      notifications: this.items,
      unreadCount: this.unread,
      hasMore: this.cursor !== null,
      loaded: this.pagesLoaded > 0,
      ...this.state,
    };
    return this.snapshot;
  };

  /** The highest seq held in the list (0 when empty). */
  get highestSeq(): number {
    return this.items.length > 0 ? this.items[0]!.seq : 0;
  }

  get nextCursor(): string | null {
    return this.cursor;
  }

  get loaded(): boolean {
    return this.pagesLoaded > 0;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get(id: string): Notification | undefined {
    return this.byId.get(id);
  }

  // ---- connection state -------------------------------------------------------------------

  setStatus(status: ConnectionStatus, transport?: TransportName | null): void {
    const next = { ...this.state, status, transport: transport === undefined ? this.state.transport : transport };
    if (status === "connected") next.error = null;
    this.setState(next);
  }

  setError(error: Error | null): void {
    this.setState({ ...this.state, error });
  }

  setLoadingMore(loadingMore: boolean): void {
    this.setState({ ...this.state, loadingMore });
  }

  // ---- server data ------------------------------------------------------------------------

  /**
   * The first page, on start or to reconcile after a reconnect. Items in the page replace local
   * copies; local items inside the page's seq range that the page lacks were deleted, archived or
   * expired meanwhile and are dropped; older local items (from `loadMore`) are kept.
   */
  applyFirstPage(page: NotificationPage, { counts }: { counts: boolean }): void {
    // A grouped item may have moved on since the page was read (an `updated` frame that arrived
    // while the request was out): the copy with the higher seq is the newer one.
    const fresh = page.notifications.map((n) => {
      const held = this.byId.get(n.id);
      return held && held.seq > n.seq ? held : n;
    });
    const oldestInPage = fresh.length > 0 ? Math.min(...fresh.map((n) => n.seq)) : Infinity;
    const pageIsEverything = page.next_cursor === null;
    const freshIds = new Set(fresh.map((n) => n.id));
    const keep = this.items.filter((n) => {
      if (freshIds.has(n.id)) return false;
      // Newer than what the page saw: arrived live after the request was answered.
      if (n.seq > page.last_seq) return true;
      if (pageIsEverything) return false;
      return n.seq < oldestInPage;
    });
    this.rebuild([...fresh, ...keep]);
    if (this.pagesLoaded <= 1) this.cursor = page.next_cursor;
    this.pagesLoaded = Math.max(this.pagesLoaded, 1);
    if (counts) {
      this.unread = Math.max(0, page.unread_count);
      this.countedThrough = page.last_seq;
    }
    this.changed();
  }

  /** An older page from `loadMore`. */
  applyOlderPage(page: NotificationPage): void {
    const older = page.notifications.filter((n) => !this.byId.has(n.id) && !this.seqs.has(n.seq));
    this.rebuild([...this.items, ...older]);
    this.cursor = page.next_cursor;
    this.pagesLoaded += 1;
    this.changed();
  }

  /**
   * A live notification. Counts it as unread when it is newer than the last authoritative count,
   * whether or not the list already holds it (a reconciling page may have brought it first).
   * Returns false for a duplicate (same id or seq), which the list ignores.
   */
  addNotification(n: Notification): boolean {
    // A known id at a higher seq is a merge (long-poll carries grouped items as plain items).
    const held = this.byId.get(n.id);
    if (held && n.seq > held.seq) return this.applyUpdate(n);
    let counted = false;
    if (n.seq > this.countedThrough) {
      this.countedThrough = n.seq;
      if (isUnread(this.byId.get(n.id) ?? n)) {
        this.unread += 1;
        counted = true;
      }
    }
    const duplicate = this.byId.has(n.id) || this.seqs.has(n.seq);
    if (!duplicate) {
      const items = this.items.slice();
      // Newest first; live notifications almost always go to the front.
      let i = 0;
      while (i < items.length && items[i]!.seq > n.seq) i += 1;
      items.splice(i, 0, n);
      this.items = items;
      this.byId.set(n.id, n);
      this.seqs.add(n.seq);
    }
    if (counted || !duplicate) this.changed();
    return !duplicate;
  }

  /**
   * A grouped item at its new seq (an `updated` frame): replaces the copy with the same id and
   * moves it to its new place, or inserts it when this page did not hold it (it was older than
   * the pages loaded). Never changes the unread count. Returns false when nothing changed: a
   * copy no newer than the one held, or a seq that another item holds.
   */
  applyUpdate(n: Notification): boolean {
    const held = this.byId.get(n.id);
    if (held && held.seq >= n.seq) return false;
    if (this.seqs.has(n.seq)) return false;
    // The count already includes this item, so it stays as it is; what it covers now reaches
    // the new seq too (the item's old seq is no longer in the inbox).
    this.countedThrough = Math.max(this.countedThrough, n.seq);
    // A read applied here but not yet confirmed (a queued `mark_read`) stays applied: the server
    // merges only into unread items, so its copy cannot know about that read yet.
    const next = held && held.read_at != null && n.read_at == null ? { ...n, read_at: held.read_at } : n;
    const items = held ? this.items.filter((x) => x.id !== n.id) : this.items.slice();
    if (held) this.seqs.delete(held.seq);
    let i = 0;
    while (i < items.length && items[i]!.seq > next.seq) i += 1;
    items.splice(i, 0, next);
    this.items = items;
    this.byId.set(next.id, next);
    this.seqs.add(next.seq);
    this.changed();
    return true;
  }

  /** The server's counts include everything up to `seq` (used when its count is not applied). */
  countedUpTo(seq: number): void {
    this.countedThrough = Math.max(this.countedThrough, seq);
  }

  /**
   * An authoritative unread count. `throughSeq` is the highest seq the count includes, when the
   * server says so (hello, page); without it the count is taken as is.
   */
  setUnreadCount(count: number, throughSeq?: number): void {
    this.unread = Math.max(0, count);
    if (throughSeq !== undefined) this.countedThrough = Math.max(this.countedThrough, throughSeq);
    this.changed();
  }

  /** A `state` frame from any tab or device of this user (or the HTTP API). */
  applyState(frame: StateFrame): void {
    const now = new Date().toISOString();
    const ids = new Set(frame.ids);
    const touches = (n: Notification) =>
      frame.all ? frame.up_to_seq === undefined || n.seq <= frame.up_to_seq : ids.has(n.id);
    switch (frame.change) {
      case "read":
        this.mapItems((n) => (touches(n) && n.read_at == null ? { ...n, read_at: now } : n));
        break;
      case "unread":
        this.mapItems((n) => (touches(n) && n.read_at != null ? { ...n, read_at: null } : n));
        break;
      case "seen":
        this.mapItems((n) => (touches(n) && n.seen_at == null ? { ...n, seen_at: now } : n));
        break;
      case "archived":
      case "deleted":
        this.rebuild(this.items.filter((n) => !touches(n)));
        break;
      default:
        // A change kind this SDK does not know yet: only the count is trusted.
        break;
    }
    if (typeof frame.unread_count === "number") this.unread = Math.max(0, frame.unread_count);
    const through = (frame as { last_seq?: unknown }).last_seq;
    if (typeof through === "number") this.countedThrough = Math.max(this.countedThrough, through);
    this.changed();
  }

  // ---- optimistic local changes -----------------------------------------------------------

  /** Marks these ids read locally and lowers the count by the ones that were unread here. */
  markReadLocally(ids: readonly string[]): void {
    const wanted = new Set(ids);
    const now = new Date().toISOString();
    let dropped = 0;
    this.mapItems((n) => {
      if (!wanted.has(n.id) || n.read_at != null) return n;
      if (isUnread(n)) dropped += 1;
      return { ...n, read_at: now };
    });
    this.unread = Math.max(0, this.unread - dropped);
    this.changed();
  }

  markAllReadLocally(): void {
    const now = new Date().toISOString();
    this.mapItems((n) => (n.read_at == null ? { ...n, read_at: now } : n));
    this.unread = 0;
    this.changed();
  }

  markUnreadLocally(ids: readonly string[]): void {
    const wanted = new Set(ids);
    let added = 0;
    this.mapItems((n) => {
      if (!wanted.has(n.id) || n.read_at == null) return n;
      const next = { ...n, read_at: null };
      if (isUnread(next)) added += 1;
      return next;
    });
    this.unread += added;
    this.changed();
  }

  markSeenLocally(ids: readonly string[]): void {
    const wanted = new Set(ids);
    const now = new Date().toISOString();
    this.mapItems((n) => (wanted.has(n.id) && n.seen_at == null ? { ...n, seen_at: now } : n));
    this.changed();
  }

  /** Forgets every notification (a different user signed in, or the server's data was reset). */
  clear(): void {
    this.rebuild([]);
    this.unread = 0;
    this.countedThrough = 0;
    this.cursor = null;
    this.pagesLoaded = 0;
    this.changed();
  }

  // ---- internals --------------------------------------------------------------------------

  private mapItems(f: (n: Notification) => Notification): void {
    let changed = false;
    const next = this.items.map((n) => {
      const m = f(n);
      if (m !== n) {
        changed = true;
        this.byId.set(m.id, m);
      }
      return m;
    });
    if (changed) this.items = next;
  }

  private rebuild(list: Notification[]): void {
    const unique: Notification[] = [];
    this.byId.clear();
    this.seqs.clear();
    for (const n of list) {
      if (this.byId.has(n.id) || this.seqs.has(n.seq)) continue;
      this.byId.set(n.id, n);
      this.seqs.add(n.seq);
      unique.push(n);
    }
    unique.sort((a, b) => b.seq - a.seq);
    this.items = unique;
  }

  private setState(next: typeof this.state): void {
    const prev = this.state;
    if (
      prev.status === next.status &&
      prev.transport === next.transport &&
      prev.loadingMore === next.loadingMore &&
      prev.error === next.error
    ) {
      return;
    }
    this.state = next;
    this.changed();
  }

  private changed(): void {
    const prev = this.snapshot;
    this.snapshot = null;
    const next = this.getSnapshot();
    if (
      prev &&
      prev.notifications === next.notifications &&
      prev.unreadCount === next.unreadCount &&
      prev.hasMore === next.hasMore &&
      prev.loaded === next.loaded &&
      prev.status === next.status &&
      prev.transport === next.transport &&
      prev.loadingMore === next.loadingMore &&
      prev.error === next.error
    ) {
      this.snapshot = prev;
      return;
    }
    for (const listener of [...this.listeners]) listener();
  }
}
