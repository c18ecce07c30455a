// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, describe, expect, it } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import { BelfryProvider, usePreferences } from "../src/react/index.js";
import { FakeBelfry } from "./fakeServer.js";
import { setup, until } from "./helpers.js";

const clients: BelfryClient[] = [];
afterEach(() => {
  cleanup();
  for (const c of clients.splice(0)) c.stop();
});

function Settings() {
  const { preferences, loading, saving, error, update, isMuted } = usePreferences();
  if (!preferences) return <p data-testid="state">{loading ? "loading" : "not loaded"}</p>;
  return (
    <div>
      <p data-testid="state">{saving ? "saving" : "idle"}</p>
      <label>
        <input
          type="checkbox"
          checked={!isMuted("post.liked")}
          onChange={(e) => void update({ types: { "post.liked": { in_app: e.target.checked } } })}
        />
        Likes in the app
      </label>
      <label>
        <input type="checkbox" checked={preferences.muted} onChange={(e) => void update({ muted: e.target.checked })} />
        Mute everything
      </label>
      <button type="button" onClick={() => void update({ mute_until: "soon" })}>
        Bad time
      </button>
      {error && <p role="alert">{`${error.code}: ${Object.keys(error.fields ?? {}).join(",")}`}</p>}
    </div>
  );
}

function mount(client: BelfryClient, strict = false) {
  const tree = (
    <BelfryProvider client={client}>
      <Settings />
    </BelfryProvider>
  );
  return render(strict ? <StrictMode>{tree}</StrictMode> : tree);
}

const likes = () => screen.getByLabelText("Likes in the app") as HTMLInputElement;

describe("usePreferences", () => {
  it("loads the preferences once on mount, also under StrictMode", async () => {
    const { server, client } = setup();
    clients.push(client);
    server.user("alice").preferences = {
      muted: false,
      mute_until: null,
      channels: { in_app: true, web_push: true },
      types: { "post.liked": { in_app: false } },
    };
    mount(client, true);
    expect(screen.getByTestId("state").textContent).toBe("loading");
    await waitFor(() => expect(likes().checked).toBe(false));
    expect(server.requests.filter((r) => r.path === "/v1/me/preferences")).toHaveLength(1);
  });

  it("update shows the change at once, saves it, and the server keeps it", async () => {
    const { server, client } = setup();
    clients.push(client);
    mount(client);
    await waitFor(() => expect(likes().checked).toBe(true));

    fireEvent.click(likes());
    expect(likes().checked).toBe(false);
    expect(screen.getByTestId("state").textContent).toBe("saving");
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("idle"));
    expect(server.user("alice").preferences?.types).toEqual({ "post.liked": { in_app: false } });
    expect(likes().checked).toBe(false);
  });

  it("follows a change made in another tab, through the preferences frame", async () => {
    const server = new FakeBelfry();
    const here = setup({ server });
    const there = setup({ server });
    clients.push(here.client, there.client);
    here.client.start();
    there.client.start();
    mount(here.client);
    await until("connected", () => here.client.status === "connected" && there.client.status === "connected");
    await waitFor(() => expect((screen.getByLabelText("Mute everything") as HTMLInputElement).checked).toBe(false));

    await act(() => there.client.updatePreferences({ muted: true }));
    await waitFor(() => expect((screen.getByLabelText("Mute everything") as HTMLInputElement).checked).toBe(true));
    expect(likes().checked).toBe(false); // muted everything: likes are muted too
  });

  it("shows a refused change's error with its fields and takes the change back", async () => {
    const { client } = setup();
    clients.push(client);
    mount(client);
    await waitFor(() => expect(screen.getByTestId("state").textContent).toBe("idle"));
    fireEvent.click(screen.getByText("Bad time"));
    expect(await screen.findByRole("alert")).toHaveProperty("textContent", "validation: mute_until");
    expect(screen.getByTestId("state").textContent).toBe("idle");
    expect(client.preferences.getSnapshot().preferences?.mute_until).toBeNull();
  });
});
