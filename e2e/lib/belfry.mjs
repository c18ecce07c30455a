// Starts and stops the real `belfry demo` binary for browser tests: a fresh data directory, a
// free loopback port (kept across restarts so open pages can reconnect), readiness by polling
// /readyz with a deadline.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..", "..");
const BIN = process.env.BELFRY_BIN ?? join(ROOT, "target", "debug", "belfry");

export const DEADLINE_MS = 15_000;

export async function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor(what, check, deadlineMs = DEADLINE_MS) {
  const end = Date.now() + deadlineMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

export class Belfry {
  /** `config`: extra lines for belfry.toml, appended after the test defaults. */
  constructor({ config = [] } = {}) {
    this.extraConfig = config;
    this.dir = mkdtempSync(join(tmpdir(), "belfry-e2e-"));
    this.configFile = join(this.dir, "belfry.toml");
    this.child = null;
    this.log = "";
  }

  async start() {
    if (!this.port) {
      this.port = await freePort();
      writeFileSync(
        this.configFile,
        [
          `listen = "127.0.0.1:${this.port}"`,
          `database_url = "sqlite://${join(this.dir, "belfry.db")}"`,
          "[auth]",
          `secrets_file = "${join(this.dir, "secrets.toml")}"`,
          "[ws]",
          "heartbeat_interval_secs = 5",
          ...this.extraConfig,
          "",
        ].join("\n"),
      );
    }
    // The server reads every BELFRY_* variable as configuration and refuses unknown ones (such as
    // BELFRY_BIN): it gets the environment without them, its settings from the file.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("BELFRY_")),
    );
    this.child = spawn(BIN, ["--config", this.configFile, "demo"], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    this.child.stdout.on("data", (d) => (this.log += d));
    this.child.stderr.on("data", (d) => (this.log += d));
    await waitFor("belfry to be ready", async () => {
      const r = await fetch(`${this.url}/readyz`);
      return r.ok;
    });
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The API key the demo generated on first start (development secrets). */
  apiKey() {
    const text = readFileSync(join(this.dir, "secrets.toml"), "utf8");
    return text.match(/"(bk_[0-9a-f]+)"/)[1];
  }

  /** The backend API's notify; `extra` adds request fields such as `group_key` and `actor`. */
  async notify(user, type, data, extra = {}) {
    const r = await fetch(`${this.url}/v1/notifications`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.apiKey()}`, "content-type": "application/json" },
      body: JSON.stringify({ recipients: [user], type, data, ...extra }),
    });
    if (r.status !== 201) throw new Error(`notify answered ${r.status}: ${await r.text()}`);
    return r.json();
  }

  /** A user token from the demo's sign-in endpoint. */
  async token(user) {
    const r = await fetch(`${this.url}/demo/api/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: user }),
    });
    return (await r.json()).token;
  }

  /** Marks all of `user`'s notifications read through the client API. */
  async markAllRead(user) {
    const r = await fetch(`${this.url}/v1/me/notifications/read-all`, {
      method: "POST",
      headers: { authorization: `Bearer ${await this.token(user)}` },
    });
    if (!r.ok) throw new Error(`read-all answered ${r.status}`);
  }

  /** `user`'s preferences, through the client API (`GET /v1/me/preferences`). */
  async preferences(user) {
    const r = await fetch(`${this.url}/v1/me/preferences`, {
      headers: { authorization: `Bearer ${await this.token(user)}` },
    });
    if (!r.ok) throw new Error(`GET preferences answered ${r.status}`);
    return r.json();
  }

  /** Replaces `user`'s preferences (`PUT /v1/me/preferences`; `{}` restores the defaults). */
  async setPreferences(user, preferences) {
    const r = await fetch(`${this.url}/v1/me/preferences`, {
      method: "PUT",
      headers: { authorization: `Bearer ${await this.token(user)}`, "content-type": "application/json" },
      body: JSON.stringify(preferences),
    });
    if (!r.ok) throw new Error(`PUT preferences answered ${r.status}: ${await r.text()}`);
    return r.json();
  }

  /** `user`'s first page of notifications (`GET /v1/me/notifications`), muted ones included. */
  async notifications(user) {
    const r = await fetch(`${this.url}/v1/me/notifications?limit=100`, {
      headers: { authorization: `Bearer ${await this.token(user)}` },
    });
    if (!r.ok) throw new Error(`GET notifications answered ${r.status}`);
    return (await r.json()).notifications;
  }

  /** Graceful stop (SIGTERM), waiting for the process to exit. */
  async stop() {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
}
