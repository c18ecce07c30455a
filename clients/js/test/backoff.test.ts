import { describe, expect, it } from "vitest";

import { Backoff } from "../src/core/backoff.js";

describe("Backoff", () => {
  it("doubles the ceiling per attempt up to the cap", () => {
    const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0.999999 });
    const delays = Array.from({ length: 8 }, () => b.next());
    expect(delays).toEqual([99, 199, 399, 799, 999, 999, 999, 999]);
  });

  it("jitters over the whole range [0, ceiling)", () => {
    const b = new Backoff({ initialDelayMs: 500, maxDelayMs: 15_000 });
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const ceiling = b.ceiling(attempt);
      const samples = Array.from({ length: 400 }, () => {
        const probe = new Backoff({ initialDelayMs: 500, maxDelayMs: 15_000 });
        for (let i = 0; i < attempt; i += 1) probe.next();
        return probe.next();
      });
      expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...samples)).toBeLessThan(ceiling);
      // Full jitter: some retries go early, some late (not all clustered at the ceiling).
      expect(samples.some((d) => d < ceiling / 4)).toBe(true);
      expect(samples.some((d) => d > (ceiling * 3) / 4)).toBe(true);
    }
    expect(new Backoff({ random: () => 0 }).next()).toBe(0);
  });

  it("has no limit on attempts and stays finite far beyond overflow", () => {
    const b = new Backoff({ initialDelayMs: 500, maxDelayMs: 15_000, random: () => 0.5 });
    for (let i = 0; i < 5_000; i += 1) {
      const d = b.next();
      expect(Number.isFinite(d)).toBe(true);
      expect(d).toBeLessThanOrEqual(15_000);
    }
    expect(b.attempts).toBe(5_000);
    expect(b.ceiling()).toBe(15_000);
    b.reset();
    expect(b.ceiling()).toBe(500);
  });

  it("rejects nonsense options", () => {
    expect(() => new Backoff({ initialDelayMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ initialDelayMs: 100, maxDelayMs: 50 })).toThrow(RangeError);
  });
});
