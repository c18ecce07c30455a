// Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
// [0, min(maxDelayMs, initialDelayMs * factor^n)). Jitter spreads the reconnects of thousands of
// clients after a server restart; there is deliberately no limit on the number of attempts, only
// on the delay, because a notification client should come back whenever the server does.

export interface BackoffOptions {
  /** Ceiling of the first retry's delay, in ms. Default 500. */
  initialDelayMs?: number;
  /** Largest delay, in ms. Default 15000. */
  maxDelayMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Source of randomness in [0, 1); injectable for tests. Default `Math.random`. */
  random?: () => number;
}

export class Backoff {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialDelayMs = options.initialDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 15_000;
    this.factor = options.factor ?? 2;
    this.random = options.random ?? Math.random;
    if (!(this.initialDelayMs > 0) || !(this.maxDelayMs >= this.initialDelayMs) || !(this.factor >= 1)) {
      throw new RangeError("backoff: need 0 < initialDelayMs <= maxDelayMs and factor >= 1");
    }
  }

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The upper bound of the next delay (without jitter). */
  ceiling(attempt = this.attempt): number {
    // Past ~1000 attempts the power is Infinity; min() still yields maxDelayMs.
    return Math.min(this.maxDelayMs, this.initialDelayMs * Math.pow(this.factor, attempt));
  }

  /** The delay before the next attempt, then advances. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    this.attempt += 1;
    return delay;
  }

  /** Call after a successful connection. */
  reset(): void {
    this.attempt = 0;
  }
}
