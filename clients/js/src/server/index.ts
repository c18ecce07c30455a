// belfry/server: the backend side for Node (and any runtime with fetch and Web Crypto): the
// backend API with idempotency keys and retries, and the tokens browsers present to Belfry.
// The same rules as the Python package (clients/python): a key per call unless given, reused
// on every retry; jittered retries on network errors, 429 and 503, honouring Retry-After.
// Never import this from browser code: it holds the API key and the JWT secret.

import { BelfryError } from "../core/errors.js";

export { BelfryError };

export interface BelfryServerOptions {
  /** Belfry's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** A backend API key (`auth.api_keys`). */
  apiKey: string;
  /** How many times a failed call is tried again. Default 3. */
  retries?: number;
  /** Per attempt, in milliseconds. Default 10 000. */
  timeoutMs?: number;
  /** First backoff ceiling (doubling, full jitter), ms. Default 200. */
  backoffMs?: number;
  /** A `Retry-After` longer than this (seconds) fails at once instead. Default 30. */
  maxRetryAfterSecs?: number;
  fetch?: typeof fetch;
  random?: () => number;
}

export interface NewNotification {
  recipients: string[];
  type: string;
  data?: Record<string, unknown>;
  group_key?: string;
  actor?: string;
  idempotency_key?: string;
  /** RFC 3339 text or a Date, in the future. */
  expires_at?: string | Date;
}

export interface NotificationRef {
  id: string;
  user_id: string;
  seq: number;
  muted?: boolean;
}

export interface NotifyResult {
  notifications: NotificationRef[];
  replayed: boolean;
  /** The idempotency key that was sent. */
  idempotency_key: string;
}

export type NotifyOptions = Omit<NewNotification, "recipients" | "type" | "data">;

const RETRY_ALWAYS = new Set([429, 503]);
const RETRY_IF_IDEMPOTENT = new Set([502, 504]);

function withKey(n: NewNotification): Record<string, unknown> {
  const { expires_at, ...rest } = n;
  return {
    ...rest,
    idempotency_key: n.idempotency_key ?? globalThis.crypto.randomUUID(),
    ...(expires_at === undefined ? {} : { expires_at: expires_at instanceof Date ? expires_at.toISOString() : expires_at }),
  };
}

function retryAfterSecs(value: string | null): number | undefined {
  if (value === null) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/** A Belfry backend client. */
export class BelfryServer {
  private readonly base: string;
  private readonly o: Required<Omit<BelfryServerOptions, "url" | "apiKey" | "fetch">> & { fetch: typeof fetch };

  constructor(private readonly options: BelfryServerOptions) {
    if (!options.apiKey) throw new TypeError("belfry/server: apiKey is required");
    this.base = options.url.replace(/\/+$/, "");
    this.o = {
      retries: options.retries ?? 3,
      timeoutMs: options.timeoutMs ?? 10_000,
      backoffMs: options.backoffMs ?? 200,
      maxRetryAfterSecs: options.maxRetryAfterSecs ?? 30,
      random: options.random ?? Math.random,
      fetch: options.fetch ?? ((...args) => globalThis.fetch(...args)),
    };
  }

  /** Notify one or many users; durable when it resolves. */
  async notify(recipients: string[], type: string, data?: Record<string, unknown>, options: NotifyOptions = {}): Promise<NotifyResult> {
    const body = withKey({ recipients, type, data, ...options });
    const raw = await this.call<{ notifications: NotificationRef[]; replayed?: boolean }>("POST", "/v1/notifications", body, true);
    return { notifications: raw.notifications, replayed: raw.replayed ?? false, idempotency_key: body.idempotency_key as string };
  }

  /** Many notifications in one request, all or nothing; each item gets its own key. */
  async notifyMany(items: NewNotification[]): Promise<NotifyResult[]> {
    const bodies = items.map(withKey);
    const raw = await this.call<{ results: { notifications: NotificationRef[]; replayed?: boolean }[] }>(
      "POST", "/v1/notifications/batch", { notifications: bodies }, true,
    );
    return raw.results.map((r, i) => ({ notifications: r.notifications, replayed: r.replayed ?? false, idempotency_key: bodies[i]!.idempotency_key as string }));
  }

  /** Send `data` to the members of `room` connected now. Not resent after an ambiguous failure. */
  async roomMessage(room: string, data: unknown): Promise<void> {
    await this.call("POST", `/v1/rooms/${encodeURIComponent(room)}/messages`, { data }, false);
  }

  getPreferences(userId: string): Promise<Record<string, unknown>> {
    return this.call("GET", `/v1/users/${encodeURIComponent(userId)}/preferences`, undefined, true);
  }

  setPreferences(userId: string, preferences: Record<string, unknown>): Promise<Record<string, unknown>> {
    return this.call("PUT", `/v1/users/${encodeURIComponent(userId)}/preferences`, preferences, true);
  }

  private async call<T>(method: string, path: string, body: unknown, idempotent: boolean): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.o.fetch(this.base + path, {
          method,
          headers: { Authorization: `Bearer ${this.options.apiKey}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
      } catch (cause) {
        // fetch does not say whether the request left; only idempotent calls are resent.
        if (!idempotent || attempt >= this.o.retries) {
          throw new BelfryError("network", `${method} ${path} failed after ${attempt + 1} attempt(s)`, { cause });
        }
        await this.sleep(this.jittered(attempt));
        continue;
      }
      const text = await response.text();
      const json: unknown = text ? JSON.parse(text) : null;
      if (response.ok) return json as T;
      const error = BelfryError.fromBody(response.status, json);
      const retryable = RETRY_ALWAYS.has(response.status) || (idempotent && RETRY_IF_IDEMPOTENT.has(response.status));
      const after = retryAfterSecs(response.headers.get("retry-after"));
      if (!retryable || attempt >= this.o.retries || (after !== undefined && after > this.o.maxRetryAfterSecs)) throw error;
      await this.sleep(after === undefined ? this.jittered(attempt) : after * 1000 * (1 + 0.1 * this.o.random()));
    }
  }

  private jittered(attempt: number): number {
    return this.o.random() * Math.min(5_000, this.o.backoffMs * 2 ** attempt);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

// ---- tokens ----------------------------------------------------------------------------------

export interface TokenOptions {
  /** Lifetime in seconds. Default 900. */
  ttlSecs?: number;
  /** HS256 secret (`auth.jwt_secret`). */
  secret?: string;
  /** Or a PKCS#8 PEM private key: RSA → RS256, EC P-256 → ES256 (give `algorithm`). */
  privateKey?: string;
  algorithm?: "HS256" | "RS256" | "ES256";
  audience?: string;
  issuer?: string;
  kid?: string;
}

export interface UserTokenOptions extends TokenOptions {
  /** Room patterns the user may join and publish to (`"doc:42"`, `"todo:*"`, `"*"`). */
  rooms?: string[];
  /** Room patterns the user may join read-only. */
  roomsRead?: string[];
}

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array | string): string {
  const raw = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const b of raw) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function pemBody(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

async function sign(claims: Record<string, unknown>, o: TokenOptions): Promise<string> {
  const alg = o.algorithm ?? (o.privateKey ? undefined : "HS256");
  if (!alg) throw new TypeError("belfry/server: give `algorithm` (RS256 or ES256) with a private key");
  const header = { alg, typ: "JWT", ...(o.kid ? { kid: o.kid } : {}) };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const subtle = globalThis.crypto.subtle;
  let signature: ArrayBuffer;
  if (alg === "HS256") {
    if (!o.secret) throw new TypeError("belfry/server: HS256 needs `secret`");
    const key = await subtle.importKey("raw", encoder.encode(o.secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    signature = await subtle.sign("HMAC", key, encoder.encode(input));
  } else {
    if (!o.privateKey) throw new TypeError(`belfry/server: ${alg} needs \`privateKey\``);
    const params = alg === "RS256" ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", namedCurve: "P-256" };
    const key = await subtle.importKey("pkcs8", pemBody(o.privateKey), params, false, ["sign"]);
    // ECDSA in Web Crypto signs as r || s, which is exactly the JWS form.
    signature = await subtle.sign(alg === "RS256" ? "RSASSA-PKCS1-v1_5" : { name: "ECDSA", hash: "SHA-256" }, key, encoder.encode(input));
  }
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

function baseClaims(userId: string, o: TokenOptions): Record<string, unknown> {
  if (!/^[^\s\x00-\x1f\x7f]{1,128}$/u.test(userId)) throw new TypeError(`belfry/server: bad user id ${JSON.stringify(userId)}`);
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: userId,
    iat: now,
    exp: now + (o.ttlSecs ?? 900),
    ...(o.audience ? { aud: o.audience } : {}),
    ...(o.issuer ? { iss: o.issuer } : {}),
  };
}

/** A token for a user's browser, with exactly the claims Belfry reads (`sub`, `exp`, `iat`, rooms). */
export function userToken(userId: string, options: UserTokenOptions): Promise<string> {
  const claims = baseClaims(userId, options);
  if (options.rooms?.length) claims.rooms = options.rooms;
  if (options.roomsRead?.length) claims.rooms_read = options.roomsRead;
  return sign(claims, options);
}

/** A ticket that lets `userId` join one room (the `token` of a `join` frame). */
export function roomToken(userId: string, room: string, options: TokenOptions & { publish?: boolean }): Promise<string> {
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(room)) throw new TypeError(`belfry/server: bad room name ${JSON.stringify(room)}`);
  const claims = { ...baseClaims(userId, options), room, ...(options.publish ? { publish: true } : {}) };
  return sign(claims, options);
}
