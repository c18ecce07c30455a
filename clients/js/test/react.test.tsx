// @vitest-environment jsdom
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import {
  BelfryProvider,
  useBelfryClient,
  useConnectionState,
  useNotifications,
  useUnreadCount,
} from "../src/react/index.js";
import { FakeBelfry } from "./fakeServer.js";
import { setup } from "./helpers.js";

const clients: BelfryClient[] = [];
afterEach(() => {
  cleanup();
  for (const c of clients.splice(0)) c.stop();
});

function Inbox() {
  const { notifications, unreadCount, status, markAllRead } = useNotifications();
  return (
    <div>
      <p data-testid="status">{status}</p>
      <p data-testid="count">{unreadCount}</p>
      <ul>
        {notifications.map((n) => (
          <li key={n.id}>{String(n.data.title)}</li>
        ))}
      </ul>
      <button onClick={markAllRead}>all read</button>
    </div>
  );
}

function Badge() {
  return <span data-testid="badge">{useUnreadCount()}</span>;
}

function Status() {
  return <span data-testid="connection">{useConnectionState()}</span>;
}

describe("React hooks", () => {
  it("useNotifications renders the first page, the count, and live notifications", async () => {
    const { server, client } = setup();
    clients.push(client);
    server.notify("alice", "x", { title: "from the first page" });
    render(
      <BelfryProvider client={client}>
        <Inbox />
        <Badge />
        <Status />
      </BelfryProvider>,
    );

    expect(await screen.findByText("from the first page")).toBeTruthy();
    await waitFor(() => expect(screen.getByTestId("connection").textContent).toBe("connected"));
    server.notify("alice", "x", { title: "live" });
    expect(await screen.findByText("live")).toBeTruthy();
    expect(screen.getByTestId("count").textContent).toBe("2");
    expect(screen.getByTestId("badge").textContent).toBe("2");
    expect(screen.getAllByRole("listitem").map((li) => li.textContent)).toEqual(["live", "from the first page"]);

    act(() => screen.getByText("all read").click());
    await waitFor(() => expect(screen.getByTestId("badge").textContent).toBe("0"));
    await waitFor(() => expect(server.unreadCount("alice")).toBe(0));
  });

  it("useBelfryClient explains what is missing when there is no provider", () => {
    function Orphan() {
      useBelfryClient();
      return null;
    }
    const spy = console.error;
    console.error = () => undefined; // React logs the error boundary-less throw
    try {
      expect(() => render(<Orphan />)).toThrow(/inside <BelfryProvider>/);
    } finally {
      console.error = spy;
    }
  });

  it("a provider given options owns one connection, also under StrictMode", async () => {
    const server = new FakeBelfry();
    const options = {
      url: server.url,
      getToken: async () => server.token("alice"),
      transports: ["websocket" as const],
      ...server.platform,
    };
    const view = render(
      <StrictMode>
        <BelfryProvider options={options}>
          <Status />
        </BelfryProvider>
      </StrictMode>,
    );
    await waitFor(() => expect(screen.getByTestId("connection").textContent).toBe("connected"));
    expect(server.live("alice")).toHaveLength(1);

    view.unmount();
    await waitFor(() => expect(server.live("alice")).toHaveLength(0));
  });
});
