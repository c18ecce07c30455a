// What the client needs from a transport. A transport carries one connection attempt: it opens,
// delivers server frames, and reports its end exactly once, unless its owner closed it first
// (then it reports nothing). Reconnecting, resuming and fallback are the client's business.

import type { BelfryHttp } from "../http.js";
import type {
  ClientFrame,
  EventSourceConstructor,
  ServerFrame,
  TransportName,
  WebSocketConstructor,
} from "../types.js";

export interface TransportContext {
  /** Base URL of the Belfry server (the client's `url` option). */
  url: string;
  token: string;
  /** Resume after this seq. */
  since: number;
  http: BelfryHttp;
  WebSocket: WebSocketConstructor | undefined;
  EventSource: EventSourceConstructor | undefined;
  /** Application-level ping interval and pong deadline (WebSocket), ms; 0 disables pings. */
  pingIntervalMs: number;
  pongTimeoutMs: number;
  /** Long-poll wait, seconds. */
  pollTimeoutSecs: number;
  /** A fresh `ref` for a client frame. */
  nextRef(): number;
}

export interface TransportEnd {
  /** True when the channel itself opened (socket open, stream open, first poll answered). */
  opened: boolean;
  /** The WebSocket close code, when there was one. */
  code?: number;
  reason?: string;
  /** The server refused the credentials (HTTP 401 after a token refresh). */
  unauthorized?: boolean;
  /** The platform has no such constructor (no `WebSocket` in Node 20, say). */
  unsupported?: boolean;
  error?: unknown;
}

export interface TransportEvents {
  open(): void;
  frame(frame: ServerFrame): void;
  /** The authoritative unread count, from transports that have no `state` frames (long-poll). */
  counts(unreadCount: number, throughSeq: number): void;
  end(end: TransportEnd): void;
}

export interface Transport {
  readonly name: TransportName;
  /** True when client frames (`mark_read`, `auth`, …) can be sent over this transport. */
  readonly canSend: boolean;
  send(frame: ClientFrame): void;
  /** Checks the link at once (after the page becomes visible again), where the transport can. */
  probe(): void;
  /** Ends the connection; no `end` event follows. Idempotent. */
  close(): void;
}

export type TransportFactory = (context: TransportContext, events: TransportEvents) => Transport;

/** Parses a server frame; anything that is not an object with a string `type` is dropped. */
export function parseFrame(text: unknown): ServerFrame | null {
  if (typeof text !== "string") return null;
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === "object" && typeof (value as { type?: unknown }).type === "string") {
      return value as ServerFrame;
    }
  } catch {
    // A frame that is not JSON is ignored like an unknown frame type.
  }
  return null;
}
