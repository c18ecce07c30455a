// The user's JWT: fetched through the app's `getToken`, cached, and refreshed a margin before its
// `exp`. Concurrent callers share one `getToken` call, so a burst of reconnects or HTTP retries
// never turns into a burst of token requests.

/** The `exp` and `iat` claims of a JWT in ms since the epoch (null when absent or unreadable). */
export function jwtTimes(token: string): { exp: number | null; iat: number | null } {
  const none = { exp: null, iat: null };
  const payload = token.split(".")[1];
  if (!payload) return none;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims = JSON.parse(globalThis.atob(padded)) as { exp?: unknown; iat?: unknown };
    const ms = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v * 1000 : null);
    return { exp: ms(claims.exp), iat: ms(claims.iat) };
  } catch {
    return none;
  }
}

/** Never refresh proactively more often than this, whatever the token says. */
const MIN_REFRESH_INTERVAL_MS = 1_000;

export interface TokenSourceOptions {
  /** Refresh this long before `exp`, in ms. Default 30000. */
  refreshMarginMs?: number;
  now?: () => number;
}

export class TokenSource {
  private token: string | null = null;
  /** When to refresh, on this machine's clock; null when the token has no usable `exp`. */
  private refreshAt: number | null = null;
  private pending: Promise<string> | null = null;
  private readonly margin: number;
  private readonly now: () => number;

  constructor(
    private readonly fetchToken: () => Promise<string>,
    options: TokenSourceOptions = {},
  ) {
    this.margin = options.refreshMarginMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** A token that is not about to expire: the cached one, or a fresh one. */
  get(): Promise<string> {
    if (this.token !== null && !this.expiringSoon()) return Promise.resolve(this.token);
    return this.refresh();
  }

  /** Fetches a fresh token (joining a fetch already under way). */
  refresh(): Promise<string> {
    if (this.pending) return this.pending;
    const pending = (async () => {
      try {
        const token = await this.fetchToken();
        if (typeof token !== "string" || token.length === 0) {
          throw new Error("belfry: getToken() must resolve to a non-empty string");
        }
        this.token = token;
        this.refreshAt = this.planRefresh(token);
        return token;
      } finally {
        this.pending = null;
      }
    })();
    this.pending = pending;
    return pending;
  }

  /** Forgets the cached token (the server refused it); the next `get` fetches a fresh one. */
  invalidate(): void {
    this.token = null;
    this.refreshAt = null;
  }

  /** Forgets the token if it is still `token` (a newer one may have arrived meanwhile). */
  invalidateIf(token: string): void {
    if (this.token === token) this.invalidate();
  }

  /** Milliseconds until the cached token should be refreshed, or null when it has no `exp`. */
  msUntilRefresh(): number | null {
    if (this.token === null || this.refreshAt === null) return null;
    return Math.max(0, this.refreshAt - this.now());
  }

  private expiringSoon(): boolean {
    return this.refreshAt !== null && this.refreshAt <= this.now();
  }

  /**
   * Refresh `margin` before `exp`, or at half the remaining time for short-lived tokens. A token
   * that already looks expired (stale, or this machine's clock is ahead of the server's) is not
   * refreshed on a timer: the server's 4001 or 401 says so, and that path refreshes once.
   */
  private planRefresh(token: string): number | null {
    const { exp } = jwtTimes(token);
    if (exp === null) return null;
    const now = this.now();
    const remaining = exp - now;
    if (remaining <= 0) return null;
    return now + Math.max(remaining - this.margin, remaining / 2, MIN_REFRESH_INTERVAL_MS);
  }
}
