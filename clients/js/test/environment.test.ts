// @vitest-environment jsdom
// The browser signals: no attempts while offline, reconnect at once on `online` and when the page
// becomes visible again.
import { afterEach, describe, expect, it, vi } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import { flush, setup, until } from "./helpers.js";

const clients: BelfryClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.stop();
  vi.useRealTimers();
});

function goOnline(online: boolean) {
  vi.spyOn(navigator, "onLine", "get").mockReturnValue(online);
  window.dispatchEvent(new Event(online ? "online" : "offline"));
}

describe("browser environment", () => {
  it("makes no attempt while the browser is offline and connects as soon as it is online", async () => {
    vi.spyOn(navigator, "onLine", "get").mockReturnValue(false);
    const { server, client } = setup();
    clients.push(client);
    client.start();
    await flush();
    expect(client.status).toBe("offline");
    expect(server.requests).toHaveLength(0);

    goOnline(true);
    await until("connected", () => client.status === "connected");
  });

  it("pauses a pending retry when the network goes away, and resumes on `online`", async () => {
    vi.useFakeTimers();
    const { server, client } = setup();
    clients.push(client);
    client.start();
    await until("connected", () => client.status === "connected");

    server.closeSockets(1006);
    await until("waiting to retry", () => client.status === "connecting" && client["retryTimer"] !== undefined);
    goOnline(false);
    expect(client.status).toBe("offline");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.sockets).toHaveLength(1);

    goOnline(true);
    await until("connected again", () => client.status === "connected");
    expect(server.sockets).toHaveLength(2);
  });

  it("skips the rest of the backoff when the page becomes visible", async () => {
    vi.useFakeTimers();
    const { server, client } = setup({ backoff: { initialDelayMs: 10_000, maxDelayMs: 10_000, random: () => 0.99 } });
    clients.push(client);
    client.start();
    await until("connected", () => client.status === "connected");
    server.closeSockets(4000);
    await until("waiting to retry", () => client["retryTimer"] !== undefined);

    vi.spyOn(document, "visibilityState", "get").mockReturnValue("visible");
    document.dispatchEvent(new Event("visibilitychange"));
    await until("connected without waiting", () => client.status === "connected");
    expect(server.sockets).toHaveLength(2);
  });

  it("checks a live WebSocket with a ping when the page becomes visible", async () => {
    const { server, client } = setup();
    clients.push(client);
    client.start();
    await until("connected", () => client.status === "connected");
    vi.spyOn(document, "visibilityState", "get").mockReturnValue("visible");
    document.dispatchEvent(new Event("visibilitychange"));
    await until("ping sent", () => server.lastSocket().sent.some((f) => f.type === "ping"));
  });

  it("stops listening to the page once stopped", async () => {
    const { server, client } = setup();
    client.start();
    await until("connected", () => client.status === "connected");
    client.stop();
    goOnline(false);
    goOnline(true);
    await flush();
    expect(client.status).toBe("disconnected");
    expect(server.sockets).toHaveLength(1);
  });
});
