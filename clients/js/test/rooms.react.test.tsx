// @vitest-environment jsdom
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { StrictMode, useState } from "react";
import { afterEach, describe, expect, it } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import type { RoomMessage } from "../src/core/rooms.js";
import { BelfryProvider, useRoom } from "../src/react/index.js";
import { FakeBelfry } from "./fakeServer.js";
import { flush, sentOfType, setup, until } from "./helpers.js";

const clients: BelfryClient[] = [];
afterEach(() => {
  cleanup();
  for (const c of clients.splice(0)) c.stop();
});

function started(server: FakeBelfry, user: string): BelfryClient {
  const { client } = setup({ server, user });
  clients.push(client);
  client.start();
  return client;
}

interface Note {
  text: string;
}

function Members({ id }: { id: string }) {
  const { members, status } = useRoom("todo:1");
  return (
    <p data-testid={`members-${id}`} data-status={status}>
      {members.join(",")}
    </p>
  );
}

function Chat({ onMessage }: { onMessage?: (m: RoomMessage<Note>) => void }) {
  const { messages, publish, error } = useRoom<Note>("todo:1", { history: 2, onMessage });
  return (
    <div>
      <ul>
        {messages.map((m) => (
          <li key={m.id}>{`${m.from}: ${m.data.text}`}</li>
        ))}
      </ul>
      <button onClick={() => void publish({ text: "hi" }).catch(() => undefined)}>say hi</button>
      <button onClick={() => void publish({ text: "x".repeat(500) }).catch(() => undefined)}>say too much</button>
      {error && <p role="alert">{error.code}</p>}
    </div>
  );
}

describe("useRoom", () => {
  it("joins on mount, shows members, presence and messages, publishes, and leaves on unmount", async () => {
    const server = new FakeBelfry();
    server.maxRoomMessageBytes = 100;
    const alice = started(server, "alice");
    const bob = started(server, "bob");
    const seen: RoomMessage<Note>[] = [];
    const view = render(
      <BelfryProvider client={alice}>
        <Members id="a" />
        <Chat onMessage={(m) => seen.push(m)} />
      </BelfryProvider>,
    );
    await waitFor(() => expect(screen.getByTestId("members-a").textContent).toBe("alice"));

    await bob.room<Note>("todo:1").join();
    await waitFor(() => expect(screen.getByTestId("members-a").textContent).toBe("alice,bob"));
    for (const text of ["one", "two", "three"]) await bob.room<Note>("todo:1").publish({ text });
    await waitFor(() => expect(screen.getAllByRole("listitem").map((li) => li.textContent)).toEqual(["bob: two", "bob: three"]));
    expect(seen.map((m) => m.data.text)).toEqual(["one", "two", "three"]); // onMessage sees every one

    const heard: string[] = [];
    bob.room<Note>("todo:1").on("message", (m) => heard.push(m.data.text));
    act(() => screen.getByText("say hi").click());
    await waitFor(() => expect(heard).toEqual(["hi"]));
    act(() => screen.getByText("say too much").click());
    await waitFor(() => expect(screen.getByRole("alert").textContent).toBe("payload_too_large"));

    view.unmount();
    await waitFor(() => expect(server.roomMembers("todo:1")).toEqual(["bob"]));
    const aliceSocket = server.sockets.find((s) => s.user === "alice")!;
    expect(sentOfType(aliceSocket.sent, "leave")).toHaveLength(1);
    await waitFor(() => expect(bob.room("todo:1").getSnapshot().members).toEqual(["bob"]));
  });

  it("several components share one join, also under StrictMode; the last one to unmount leaves", async () => {
    const server = new FakeBelfry();
    const alice = started(server, "alice");
    await until("connected", () => alice.status === "connected");
    let hideOne: () => void = () => undefined;
    let hideAll: () => void = () => undefined;
    function Page() {
      const [shown, setShown] = useState(2);
      hideOne = () => setShown(1);
      hideAll = () => setShown(0);
      return (
        <>
          {shown >= 1 && <Members id="1" />}
          {shown >= 2 && <Members id="2" />}
        </>
      );
    }
    render(
      <StrictMode>
        <BelfryProvider client={alice}>
          <Page />
        </BelfryProvider>
      </StrictMode>,
    );
    await waitFor(() => expect(screen.getByTestId("members-2").dataset.status).toBe("joined"));
    const socket = server.lastSocket();
    expect(sentOfType(socket.sent, "join")).toHaveLength(1);

    act(() => hideOne());
    await act(() => flush());
    expect(sentOfType(socket.sent, "leave")).toHaveLength(0);
    expect(screen.getByTestId("members-1").textContent).toBe("alice");

    act(() => hideAll());
    await waitFor(() => expect(sentOfType(socket.sent, "leave")).toHaveLength(1));
    await waitFor(() => expect(server.roomMembers("todo:1")).toEqual([]));
  });
});
