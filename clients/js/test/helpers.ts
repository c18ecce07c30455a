// Waiting without sleeping: the fake server and the client talk through microtasks, so draining
// the microtask queue is enough to let any exchange finish. `until` drains it until a condition
// holds and fails loudly (naming the condition) if it never does.

import { BelfryClient, type BelfryClientOptions } from "../src/core/client.js";
import { FakeBelfry } from "./fakeServer.js";

/** Lets every queued microtask (and the ones they queue, up to `rounds` deep) run. */
export async function flush(rounds = 100): Promise<void> {
  for (let i = 0; i < rounds; i += 1) await Promise.resolve();
}

export async function until(what: string, condition: () => boolean, rounds = 5_000): Promise<void> {
  for (let i = 0; i < rounds; i += 1) {
    if (condition()) return;
    await Promise.resolve();
  }
  throw new Error(`condition never held: ${what}`);
}

export interface Setup {
  server: FakeBelfry;
  client: BelfryClient;
  getToken: () => Promise<string>;
  tokenCalls: () => number;
}

/** A fake server and a client for `user` wired to it (not started). */
export function setup(
  options: Partial<BelfryClientOptions> & { user?: string; server?: FakeBelfry; ttlSecs?: number } = {},
): Setup {
  const { user = "alice", server = new FakeBelfry(), ttlSecs = 3600, ...rest } = options;
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    return server.token(user, ttlSecs);
  };
  const client = new BelfryClient({
    url: server.url,
    getToken,
    transports: ["websocket"],
    ...server.platform,
    ...rest,
  });
  return { server, client, getToken, tokenCalls: () => calls };
}

/** Frames of a given type a socket sent. */
export function sentOfType<T extends { type: string }>(frames: T[], type: string): T[] {
  return frames.filter((f) => f.type === type);
}
