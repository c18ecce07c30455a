// What a BelfryClient is configured with and what it reports.

import type { BackoffOptions } from "./backoff.js";
import type { BelfryError } from "./errors.js";
import type {
  ConnectionStatus,
  EventSourceConstructor,
  FetchLike,
  HelloFrame,
  Notification,
  StateFrame,
  TransportName,
  WebSocketConstructor,
} from "./types.js";

export interface BelfryClientOptions {
  /** Base URL of the Belfry server, e.g. `http://127.0.0.1:8080` (or a path on this origin). */
  url: string;
  /** Returns the user's JWT. Called on connect, before the token's `exp`, and after a 4001/401. */
  getToken: () => Promise<string>;
  /** Transports in order of preference; the next is tried when one cannot connect at all. */
  transports?: TransportName[];
  /** Platform constructors, read when needed; the globals by default. */
  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;
  backoff?: BackoffOptions;
  /** Notifications per page (1–100). Default 20. */
  pageSize?: number;
  /** Refresh the token this long before it expires, ms. Default 30000. */
  tokenRefreshMarginMs?: number;
  /** WebSocket: send a `ping` frame this often, ms (0 disables). Default 20000. */
  pingIntervalMs?: number;
  /** WebSocket: reconnect when no `pong` arrives within this, ms. Default 10000. */
  pongTimeoutMs?: number;
  /** Give up on an attempt that has not received `hello` after this long, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Long-poll wait, seconds. Default 25. */
  pollTimeoutSecs?: number;
}

export interface BelfryClientEvents {
  status: (status: ConnectionStatus) => void;
  /** A notification this page had not seen, live or caught up after a reconnect. */
  notification: (notification: Notification) => void;
  /**
   * A grouped notification changed (an event was merged into it) and moved to its new `seq`:
   * replaced in the list, or added when this page did not hold it. The unread count stays.
   */
  updated: (notification: Notification) => void;
  /** Read state changed, from any tab, device or the HTTP API. */
  state: (frame: StateFrame) => void;
  hello: (frame: HelloFrame) => void;
  error: (error: BelfryError) => void;
}
