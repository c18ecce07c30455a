// The wire shapes of protocol version 1 (docs/protocol.md). Unknown fields are allowed on every
// server object: the protocol grows by adding fields, so nothing here is exhaustive on purpose.

/** A notification, as returned by `GET /v1/me/notifications` and carried in `notification` frames. */
export interface Notification<Data = Record<string, unknown>> {
  /** UUIDv7, globally unique. */
  id: string;
  /** Per-user sequence number, strictly increasing in commit order. */
  seq: number;
  user_id: string;
  /** The app's event type, e.g. `comment.created`. */
  type: string;
  data: Data;
  /** App-chosen; events with the same key may be merged into one item (see `count`). */
  group_key?: string | null;
  /** When the item was first stored (its first event). */
  created_at: string;
  /** When the last event was merged into it; null (or absent from older servers) if never. */
  updated_at?: string | null;
  /** Events merged into this item: 1 when ungrouped (absent from older servers: read it as 1). */
  count?: number;
  /** Distinct actors of the merged events, most recent first, at most 10 listed. */
  actors?: string[];
  /** Distinct actors merged so far (>= `actors.length`). */
  actor_count?: number;
  /**
   * True when it was stored while the user's preferences muted it. Muted items are stored
   * already read, never sent live, and only show up in history pages.
   */
  muted?: boolean;
  seen_at: string | null;
  read_at: string | null;
  archived_at: string | null;
  expires_at: string | null;
}

/** What a `state` frame says changed. */
export type StateChange = "read" | "unread" | "seen" | "archived" | "deleted";

export interface HelloFrame {
  type: "hello";
  v: number;
  conn_id: string;
  user_id: string;
  unread_count: number;
  /** The user's highest stored seq when the connection opened. */
  last_seq: number;
  /** The user's state version when the connection opened (absent from servers before it). */
  state_version?: number;
  heartbeat_ms: number;
}

export interface NotificationFrame {
  type: "notification";
  seq: number;
  notification: Notification;
}

/**
 * A grouped item changed: an event was merged into it (live, or found by a resume catch-up). It
 * carries the whole item at its new `seq`. Never changes the unread count.
 */
export interface UpdatedFrame {
  type: "updated";
  seq: number;
  notification: Notification;
}

/** The user's preferences changed (from any tab, device or the backend API). No seq. */
export interface PreferencesFrame {
  type: "preferences";
  preferences: Preferences;
  /** The user's state version this change took. */
  version?: number;
}

export interface StateFrame {
  type: "state";
  change: StateChange;
  ids: string[];
  all: boolean;
  /** With `all`: every notification with `seq <= up_to_seq` is read. */
  up_to_seq?: number;
  unread_count: number;
  /** The user's highest seq when the count was taken. */
  last_seq?: number;
  /** The user's state version this change took; a frame not above the last one seen is stale. */
  version?: number;
}

/**
 * The connection's read state or preferences may be stale (a change was lost on the way): the
 * store's state now. The SDK sets the count and preferences and re-reads the first page.
 */
export interface SyncFrame {
  type: "sync";
  unread_count: number;
  last_seq: number;
  state_version: number;
  /** Absent when a long-poll answer stands in for the frame: the SDK then reloads them. */
  preferences?: Preferences;
}

export interface PongFrame {
  type: "pong";
  ref?: number;
}

export interface AckFrame {
  type: "ack";
  ref: number;
}

export interface ErrorFrame {
  type: "error";
  ref?: number;
  code: string;
  message: string;
}

/** Reply to `join`: the room's users now, each once however many tabs they have open. */
export interface JoinedFrame {
  type: "joined";
  room: string;
  members: string[];
  ref?: number;
}

/** A user arrived in (their first tab) or left (their last tab) a room. */
export interface PresenceFrame {
  type: "presence";
  room: string;
  event: "join" | "leave";
  user_id: string;
}

/** A room message from another connection (never the one that published it) or the backend. */
export interface RoomMessageFrame<Data = unknown> {
  type: "message";
  room: string;
  id: string;
  /** The sending user; absent when the app backend sent it. */
  from?: string;
  /** When the server received it (RFC 3339). */
  at: string;
  data: Data;
}

export type ServerFrame =
  | HelloFrame
  | NotificationFrame
  | UpdatedFrame
  | PreferencesFrame
  | StateFrame
  | SyncFrame
  | JoinedFrame
  | PresenceFrame
  | RoomMessageFrame
  | PongFrame
  | AckFrame
  | ErrorFrame;

export type ClientFrame =
  | { type: "auth"; token: string; since?: number; ref?: number }
  | { type: "ping"; ref?: number }
  | { type: "mark_read"; ids: string[]; ref?: number }
  | { type: "mark_unread"; ids: string[]; ref?: number }
  | { type: "mark_seen"; ids: string[]; ref?: number }
  | { type: "mark_all_read"; ref?: number }
  | { type: "join"; room: string; token?: string; ref?: number }
  | { type: "leave"; room: string; ref?: number }
  | { type: "publish"; room: string; data: unknown; ref?: number };

/** Commands a user can issue on their notifications; queued while disconnected. */
export type Command =
  | { type: "mark_read"; ids: string[] }
  | { type: "mark_unread"; ids: string[] }
  | { type: "mark_seen"; ids: string[] }
  | { type: "mark_all_read" };

/** `GET /v1/me/notifications` */
export interface NotificationPage {
  notifications: Notification[];
  next_cursor: string | null;
  unread_count: number;
  last_seq: number;
  /** The user's state version (absent from servers before it). */
  state_version?: number;
}

/** `GET /v1/poll` */
export interface PollResponse {
  notifications: Notification[];
  last_seq: number;
  unread_count: number;
  /** The user's state version; passed back as `state_version` (absent from servers before it). */
  state_version?: number;
}

/** A delivery channel a preference can switch off. */
export type PreferenceChannel = "in_app" | "web_push";

/** Per-type overrides: a missing channel inherits `Preferences.channels`. */
export type TypePreferences = Partial<Record<PreferenceChannel, boolean>>;

/** `GET /v1/me/preferences`: what the user wants delivered, and how. */
export interface Preferences {
  /** Global mute: nothing live, nothing pushed (still stored, as muted). */
  muted: boolean;
  /** Muted until then (RFC 3339), then automatically unmuted; null when not set. */
  mute_until: string | null;
  /** Defaults for every type. */
  channels: Record<PreferenceChannel, boolean>;
  /** Per type name, e.g. `{"post.liked": {"in_app": false}}`. */
  types: Record<string, TypePreferences>;
}

/** The body of every HTTP error answer. */
export interface ErrorBody {
  error: { code: string; message: string; fields?: Record<string, string> };
}

export type TransportName = "websocket" | "sse" | "poll";

/**
 * The connection's state machine:
 * `disconnected` (not started, stopped, or stopped for good after a terminal close code)
 * → `connecting` (loading, opening a transport, or waiting for the next attempt)
 * → `connected` (a `hello` arrived; live updates flow)
 * and `offline` while the browser reports no network (no attempts are made).
 */
export type ConnectionStatus = "disconnected" | "connecting" | "connected" | "offline";

/** Minimal shapes of the platform constructors the client uses, so tests can inject fakes. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  addEventListener(type: string, listener: (ev: { data: string; lastEventId?: string }) => void): void;
  close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

export type FetchLike = (input: string, init?: {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}) => Promise<{ ok: boolean; status: number; json(): Promise<unknown>; text(): Promise<string> }>;
