// Read-state commands (mark_read, mark_all_read, …) waiting to reach the server, in the order the
// user issued them. A command stays here until the server confirms it (`ack` on the WebSocket, a
// 2xx over HTTP), so one sent just before a connection dropped is sent again after the next
// `hello`. The commands are idempotent, so sending one twice is harmless; losing one is not.

import { BelfryError } from "./errors.js";
import type { ChangeResult } from "./http.js";
import type { ClientFrame, Command } from "./types.js";

interface Entry {
  command: Command;
  ref: number;
  /** Sent on the current connection and not yet confirmed. */
  inFlight: boolean;
  resolve(): void;
  reject(error: BelfryError): void;
}

export class Outbox {
  private entries: Entry[] = [];
  private waiters: (() => void)[] = [];
  private httpFlushing = false;

  constructor(private readonly nextRef: () => number) {}

  get size(): number {
    return this.entries.length;
  }

  /** Queues a command; the promise settles when the server has applied or refused it. */
  push(command: Command): Promise<void> {
    let resolve!: () => void;
    let reject!: (error: BelfryError) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Callers may fire and forget (errors also reach the client's `error` event); this keeps a
    // refusal from surfacing as an unhandled rejection while still rejecting for those who await.
    done.catch(() => undefined);
    this.entries.push({ command, ref: this.nextRef(), inFlight: false, resolve, reject });
    return done;
  }

  /** Sends every command not yet sent on this connection, in order, as WebSocket frames. */
  flushFrames(send: (frame: ClientFrame) => void): void {
    for (const entry of this.entries) {
      if (entry.inFlight) continue;
      send({ ...entry.command, ref: entry.ref } as ClientFrame);
      entry.inFlight = true;
    }
  }

  /**
   * Sends the commands over HTTP one at a time, in order. Stops (keeping the rest) at the first
   * network failure; a refusal by the server rejects that command and moves on.
   */
  async flushHttp(
    send: (command: Command) => Promise<ChangeResult>,
    applied: (result: ChangeResult) => void,
  ): Promise<void> {
    if (this.httpFlushing) return;
    this.httpFlushing = true;
    try {
      while (this.entries.length > 0) {
        const entry = this.entries[0]!;
        entry.inFlight = true;
        try {
          applied(await send(entry.command));
          this.settle(entry.ref);
        } catch (error) {
          const failure = error instanceof BelfryError ? error : new BelfryError("network", String(error));
          if (failure.code === "network") {
            entry.inFlight = false;
            return;
          }
          this.settle(entry.ref, failure);
        }
      }
    } finally {
      this.httpFlushing = false;
    }
  }

  /** The server confirmed (`ack`) or refused (`error`) the command with this ref. */
  settle(ref: number, error?: BelfryError): boolean {
    const index = this.entries.findIndex((e) => e.ref === ref);
    if (index < 0) return false;
    const [entry] = this.entries.splice(index, 1);
    if (error) entry!.reject(error);
    else entry!.resolve();
    if (this.entries.length === 0) this.wake();
    return true;
  }

  /** The connection ended: whatever was in flight must be sent again on the next one. */
  connectionLost(): void {
    for (const entry of this.entries) entry.inFlight = false;
  }

  /** Resolves once nothing is waiting (at once when empty). */
  drained(): Promise<void> {
    if (this.entries.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The client stopped: every waiting command is refused. */
  rejectAll(error: BelfryError): void {
    const entries = this.entries;
    this.entries = [];
    for (const entry of entries) entry.reject(error);
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
