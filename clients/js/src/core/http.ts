// The client half of Belfry's HTTP API (`/v1/me/...`, preferences and long-poll), authenticated with the
// user's JWT. A 401 invalidates the token and retries once with a fresh one; a second 401 is
// reported, so a broken token source cannot loop.

import { BelfryError } from "./errors.js";
import type { TokenSource } from "./token.js";
import type { Command, FetchLike, NotificationPage, PollResponse, Preferences } from "./types.js";
import { httpUrl, type Query } from "./url.js";

export interface ChangeResult {
  changed: number;
  unread_count: number;
}

const COMMAND_ROUTES: Record<Command["type"], string> = {
  mark_read: "/v1/me/notifications/read",
  mark_unread: "/v1/me/notifications/unread",
  mark_seen: "/v1/me/notifications/seen",
  mark_all_read: "/v1/me/notifications/read-all",
};

export class BelfryHttp {
  constructor(
    private readonly url: string,
    private readonly tokens: TokenSource,
    private readonly fetchFn: () => FetchLike,
  ) {}

  list(query: { limit?: number; cursor?: string | null }): Promise<NotificationPage> {
    return this.request<NotificationPage>("GET", "/v1/me/notifications", {
      query: { limit: query.limit, cursor: query.cursor ?? undefined },
    });
  }

  unreadCount(): Promise<{ unread_count: number; last_seq: number; state_version?: number }> {
    return this.request("GET", "/v1/me/unread-count");
  }

  command(command: Command): Promise<ChangeResult> {
    const body = command.type === "mark_all_read" ? undefined : { ids: command.ids };
    return this.request<ChangeResult>("POST", COMMAND_ROUTES[command.type], { body });
  }

  preferences(): Promise<Preferences> {
    return this.request<Preferences>("GET", "/v1/me/preferences");
  }

  /** Stores `preferences` whole: missing top-level fields take the server's defaults. */
  putPreferences(preferences: Partial<Preferences>): Promise<Preferences> {
    return this.request<Preferences>("PUT", "/v1/me/preferences", { body: preferences });
  }

  poll(after: number, timeoutSecs: number, signal?: AbortSignal, stateVersion?: number): Promise<PollResponse> {
    const query: Record<string, number> = { after, timeout: timeoutSecs };
    if (stateVersion !== undefined) query.state_version = stateVersion;
    return this.request<PollResponse>("GET", "/v1/poll", { query, signal });
  }

  /**
   * Asks Belfry for the unread count with exactly this token, without retrying: tells a server
   * that is down from one that refuses the token from one that answers fine.
   */
  async probe(token: string): Promise<"ok" | "unauthorized" | "unreachable" | "error"> {
    try {
      const response = await this.fetchFn()(httpUrl(this.url, "/v1/me/unread-count"), {
        method: "GET",
        headers: { authorization: `Bearer ${token}`, accept: "application/json" },
      });
      if (response.ok) return "ok";
      return response.status === 401 ? "unauthorized" : "error";
    } catch {
      return "unreachable";
    }
  }

  private async request<T>(
    method: string,
    path: string,
    options: { query?: Query; body?: unknown; signal?: AbortSignal } = {},
  ): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      const token = await this.tokens.get();
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
      if (options.body !== undefined) headers["content-type"] = "application/json";
      const fetchFn = this.fetchFn();
      let response: Awaited<ReturnType<FetchLike>>;
      try {
        response = await fetchFn(httpUrl(this.url, path, options.query), {
          method,
          headers,
          body: options.body === undefined ? undefined : JSON.stringify(options.body),
          signal: options.signal,
        });
      } catch (cause) {
        if (options.signal?.aborted) throw cause;
        throw new BelfryError(
          "network",
          `${method} ${path}: no answer from Belfry at ${this.url} (it is down, or refuses this page's origin: add it to http.cors_allowed_origins)`,
          { cause },
        );
      }
      if (response.status === 401 && attempt === 0) {
        this.tokens.invalidateIf(token);
        continue;
      }
      if (response.status === 204) return undefined as T;
      const body: unknown = await response.json().catch(() => null);
      if (!response.ok) throw BelfryError.fromBody(response.status, body);
      return body as T;
    }
  }
}
