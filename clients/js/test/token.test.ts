import { describe, expect, it, vi } from "vitest";

import { TokenSource, jwtTimes } from "../src/core/token.js";

const jwt = (claims: object) =>
  `${Buffer.from("{}").toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;

describe("tokens", () => {
  it("reads exp from a JWT, and null from anything else", () => {
    expect(jwtTimes(jwt({ exp: 100, iat: 40 }))).toEqual({ exp: 100_000, iat: 40_000 });
    expect(jwtTimes("opaque-token").exp).toBeNull();
    expect(jwtTimes("a.!!!.c").exp).toBeNull();
  });

  it("shares one getToken call between concurrent callers and caches the result", async () => {
    let calls = 0;
    const source = new TokenSource(async () => `${++calls}`);
    const [a, b] = await Promise.all([source.get(), source.get()]);
    expect([a, b, await source.get(), calls]).toEqual(["1", "1", "1", 1]);
    source.invalidate();
    expect(await source.get()).toBe("2");
  });

  it("plans the refresh 30 s before exp, at half-life for short tokens, never for expired ones", async () => {
    let now = 1_000_000;
    let claims: object = {};
    const source = new TokenSource(async () => jwt(claims), { now: () => now });
    claims = { exp: now / 1000 + 3600 };
    await source.refresh();
    expect(source.msUntilRefresh()).toBe(3_570_000);
    claims = { exp: now / 1000 + 20 };
    await source.refresh();
    expect(source.msUntilRefresh()).toBe(10_000);
    claims = { exp: now / 1000 - 5 };
    await source.refresh();
    expect(source.msUntilRefresh()).toBeNull();
  });

  it("fetches a new token when the cached one is about to expire", async () => {
    let now = 0;
    const fetch = vi.fn(async () => jwt({ exp: now / 1000 + 60 }));
    const source = new TokenSource(fetch, { now: () => now });
    await source.get();
    now = 29_000;
    await source.get();
    expect(fetch).toHaveBeenCalledTimes(1);
    now = 30_000;
    await source.get();
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("refuses an empty token", async () => {
    const source = new TokenSource(async () => "");
    await expect(source.get()).rejects.toThrow(/non-empty/);
  });
});
