// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";

import type { BelfryClient } from "../src/core/client.js";
import { formatActors } from "../src/core/actors.js";
import { BelfryProvider, NotificationBell, type NotificationBellProps } from "../src/react/index.js";
import type { FakeBelfry } from "./fakeServer.js";
import { setup } from "./helpers.js";

const clients: BelfryClient[] = [];
afterEach(() => {
  cleanup();
  for (const c of clients.splice(0)) c.stop();
});

async function renderBell(prepare: (server: FakeBelfry) => void, props: NotificationBellProps = {}) {
  const s = setup();
  clients.push(s.client);
  prepare(s.server);
  render(
    <div>
      <p>outside</p>
      <BelfryProvider client={s.client}>
        <NotificationBell {...props} />
      </BelfryProvider>
    </div>,
  );
  await waitFor(() => expect(s.client.status).toBe("connected"));
  return { ...s, bell: screen.getByTestId("belfry-bell") };
}

const notifyN = (count: number) => (server: FakeBelfry) => {
  for (let i = 1; i <= count; i += 1) server.notify("alice", "x", { title: `note ${i}` });
};

describe("NotificationBell", () => {
  it("names the unread count in the button's label and badge", async () => {
    const { bell } = await renderBell(notifyN(3));
    expect(bell.getAttribute("aria-label")).toBe("Notifications, 3 unread");
    expect(bell.getAttribute("aria-expanded")).toBe("false");
    expect(bell.getAttribute("aria-haspopup")).toBe("dialog");
    expect(screen.getByTestId("belfry-badge").textContent).toBe("3");
  });

  it("shows no badge and a plain label with nothing unread", async () => {
    const { bell } = await renderBell(() => undefined);
    expect(bell.getAttribute("aria-label")).toBe("Notifications");
    expect(screen.queryByTestId("belfry-badge")).toBeNull();
  });

  it("caps the badge at 99+ while the label keeps the real number", async () => {
    const { bell } = await renderBell(notifyN(150));
    expect(screen.getByTestId("belfry-badge").textContent).toBe("99+");
    expect(bell.getAttribute("aria-label")).toBe("Notifications, 99+ unread (150)");
  });

  it("opens a labelled panel listing the notifications, newest first", async () => {
    const { bell } = await renderBell(notifyN(3));
    fireEvent.click(bell);
    expect(bell.getAttribute("aria-expanded")).toBe("true");
    const panel = screen.getByTestId("belfry-panel");
    expect(screen.getByRole("dialog", { name: "Notifications" })).toBe(panel);
    expect(bell.getAttribute("aria-controls")).toBe(panel.id);
    const items = within(panel).getAllByTestId("belfry-item");
    expect(items.map((li) => li.textContent)).toEqual([
      expect.stringContaining("note 3"),
      expect.stringContaining("note 2"),
      expect.stringContaining("note 1"),
    ]);
    expect(within(panel).getByRole("list")).toBeTruthy();
  });

  it("closes on Escape and returns focus to the button", async () => {
    const { bell } = await renderBell(notifyN(1));
    fireEvent.click(bell);
    const panel = screen.getByTestId("belfry-panel");
    expect(document.activeElement).toBe(panel);
    fireEvent.keyDown(panel, { key: "Escape" });
    expect(screen.queryByTestId("belfry-panel")).toBeNull();
    expect(bell.getAttribute("aria-expanded")).toBe("false");
    expect(document.activeElement).toBe(bell);
  });

  it("closes on a click outside, but not on a click inside", async () => {
    const { bell } = await renderBell(notifyN(1));
    fireEvent.click(bell);
    fireEvent.mouseDown(screen.getByTestId("belfry-panel"));
    expect(screen.queryByTestId("belfry-panel")).not.toBeNull();
    fireEvent.mouseDown(screen.getByText("outside"));
    expect(screen.queryByTestId("belfry-panel")).toBeNull();
  });

  it("moves between items with the arrow keys and marks an item read when activated", async () => {
    const { bell, server } = await renderBell(notifyN(2));
    fireEvent.click(bell);
    const panel = screen.getByTestId("belfry-panel");
    fireEvent.keyDown(panel, { key: "ArrowDown" });
    const buttons = within(panel).getAllByRole("button").filter((b) => b.hasAttribute("data-belfry-item-button"));
    expect(document.activeElement).toBe(buttons[0]);
    fireEvent.keyDown(panel, { key: "ArrowDown" });
    expect(document.activeElement).toBe(buttons[1]);
    fireEvent.keyDown(panel, { key: "ArrowDown" });
    expect(document.activeElement).toBe(buttons[0]);
    fireEvent.keyDown(panel, { key: "End" });
    expect(document.activeElement).toBe(buttons[1]);

    act(() => buttons[1]!.click());
    await waitFor(() => expect(bell.getAttribute("aria-label")).toBe("Notifications, 1 unread"));
    await waitFor(() => expect(server.unreadCount("alice")).toBe(1));
  });

  it("'Mark all read' clears the badge here and on the server", async () => {
    const { bell, server } = await renderBell(notifyN(3));
    fireEvent.click(bell);
    fireEvent.click(screen.getByTestId("belfry-mark-all"));
    await waitFor(() => expect(screen.queryByTestId("belfry-badge")).toBeNull());
    expect(bell.getAttribute("aria-label")).toBe("Notifications");
    await waitFor(() => expect(server.unreadCount("alice")).toBe(0));
    expect((screen.getByTestId("belfry-mark-all") as HTMLButtonElement).disabled).toBe(true);
  });

  it("renders items with renderItem from their type and data, with a relative time", async () => {
    const { bell } = await renderBell(
      (server) => {
        const n = server.notify("alice", "comment.created", { actor_name: "Bob", preview: "Nice!" });
        n.created_at = new Date(Date.now() - 2 * 60_000).toISOString();
      },
      {
        renderItem: (n, { relativeTime }) =>
          n.type === "comment.created" ? `${String(n.data.actor_name)} commented: ${String(n.data.preview)} (${relativeTime})` : n.type,
      },
    );
    fireEvent.click(bell);
    const item = screen.getByTestId("belfry-item");
    expect(item.textContent).toContain("Bob commented: Nice! (2 min. ago)");
    expect(item.querySelector("time")?.getAttribute("dateTime")).toMatch(/Z$/);
  });

  it("shows a grouped item once, with who did it, and updates it in place as events merge", async () => {
    const like = (server: FakeBelfry, actor: string) =>
      server.notify("alice", "post.liked", { title: "Your post was liked" }, { groupKey: "post:1:likes", actor });
    const { bell, server } = await renderBell((server) => {
      server.notify("alice", "comment.created", { title: "A comment" });
      like(server, "Ann");
    });
    fireEvent.click(bell);
    const panel = screen.getByTestId("belfry-panel");
    expect(within(panel).getAllByTestId("belfry-item")).toHaveLength(2);
    expect(within(panel).queryByTestId("belfry-item-group")).toBeNull(); // a single event is not a group
    const button = within(panel).getAllByRole("button").find((b) => b.textContent?.includes("Your post was liked"))!;
    button.focus();

    act(() => void like(server, "Bob"));
    await waitFor(() => expect(screen.getAllByTestId("belfry-item")[0]!.getAttribute("data-count")).toBe("2"));
    expect(screen.getAllByTestId("belfry-item")[0]!.textContent).toContain("Your post was liked (Bob and Ann)");
    act(() => void like(server, "Cy"));
    await waitFor(() => expect(screen.getAllByTestId("belfry-item")[0]!.textContent).toContain("(Cy and 2 others)"));

    const items = screen.getAllByTestId("belfry-item");
    expect(items).toHaveLength(2);
    expect(items[0]!.getAttribute("data-count")).toBe("3");
    expect(items[1]!.textContent).toContain("A comment");
    expect(bell.getAttribute("aria-label")).toBe("Notifications, 2 unread");
    expect(screen.getByTestId("belfry-badge").textContent).toBe("2");
    expect(document.activeElement).toBe(within(items[0]!).getByRole("button")); // same element, moved
  });

  it("shows how many times when a grouped item names no actor, and dates it by its latest event", async () => {
    const { bell } = await renderBell((server) => {
      const first = server.notify("alice", "build.failed", { title: "Build failed" }, { groupKey: "ci" });
      first.created_at = new Date(Date.now() - 50 * 60_000).toISOString();
      server.notify("alice", "build.failed", { title: "Build failed" }, { groupKey: "ci" });
    });
    fireEvent.click(bell);
    const item = screen.getByTestId("belfry-item");
    expect(within(item).getByTestId("belfry-item-group").textContent).toBe("×2(2 times)");
    expect(item.querySelector("time")!.textContent).toBe("now");
  });

  it("passes grouped items to renderItem with their count and actors", async () => {
    const { bell } = await renderBell(
      (server) => {
        for (const actor of ["Ann", "Bob", "Cy", "Dee"]) {
          server.notify("alice", "post.liked", { post_title: "Hello" }, { groupKey: "post:1:likes", actor });
        }
      },
      { renderItem: (n) => `${formatActors(n)} liked “${String(n.data.post_title)}” (${n.count})` },
    );
    fireEvent.click(bell);
    expect(screen.getByTestId("belfry-item").textContent).toContain("Dee and 3 others liked “Hello” (4)");
    expect(screen.queryByTestId("belfry-item-group")).toBeNull(); // renderItem decides the content
  });

  it("renders a muted item from the history like a read one", async () => {
    let helpers: { unread: boolean; muted: boolean } | undefined;
    const { bell } = await renderBell(
      (server) => {
        server.user("alice").preferences = {
          muted: true,
          mute_until: null,
          channels: { in_app: true, web_push: true },
          types: {},
        };
        server.notify("alice", "post.liked", { title: "Liked while muted" });
      },
      {
        classNames: { itemMuted: "is-muted", itemUnread: "is-unread" },
        renderItem: (n, h) => {
          helpers = { unread: h.unread, muted: h.muted };
          return String(n.data.title);
        },
      },
    );
    expect(screen.queryByTestId("belfry-badge")).toBeNull();
    expect(bell.getAttribute("aria-label")).toBe("Notifications");
    fireEvent.click(bell);
    const item = screen.getByTestId("belfry-item");
    expect(item.textContent).toContain("Liked while muted");
    expect(item.getAttribute("data-unread")).toBe("false");
    expect(item.getAttribute("data-muted")).toBe("true");
    expect(item.className).toBe("belfry-bell__item belfry-bell__item--muted is-muted");
    expect(item.textContent).not.toContain("Unread:");
    expect(helpers).toEqual({ unread: false, muted: true });
  });

  it("marks the listed notifications seen when opened", async () => {
    const { bell, server } = await renderBell(notifyN(2));
    fireEvent.click(bell);
    await waitFor(() => expect(server.user("alice").notifications.every((n) => n.seen_at !== null)).toBe(true));
  });

  it("offers older notifications when there are more pages", async () => {
    const { bell } = await renderBell(notifyN(25));
    fireEvent.click(bell);
    expect(screen.getAllByTestId("belfry-item")).toHaveLength(20);
    fireEvent.click(screen.getByTestId("belfry-load-more"));
    await waitFor(() => expect(screen.getAllByTestId("belfry-item")).toHaveLength(25));
    expect(screen.queryByTestId("belfry-load-more")).toBeNull();
  });
});

describe("NotificationBell when Belfry cannot be reached", () => {
  it("shows an error state and calls onError instead of looking empty", async () => {
    const s = setup();
    clients.push(s.client);
    s.server.httpDown = true;
    const errors: Error[] = [];
    render(
      <BelfryProvider client={s.client}>
        <NotificationBell onError={(e) => errors.push(e)} />
      </BelfryProvider>,
    );
    const bell = screen.getByTestId("belfry-bell");
    await waitFor(() => expect(errors.length).toBeGreaterThan(0));
    expect(errors[0]!.message).toContain("http.cors_allowed_origins");
    await waitFor(() => expect(bell.getAttribute("aria-label")).toBe("Notifications (unavailable)"));
    expect(screen.getByTestId("belfry-error-mark")).toBeTruthy();
    expect(bell.closest(".belfry-bell")?.getAttribute("data-state")).toBe("error");
    fireEvent.click(bell);
    const alert = within(screen.getByTestId("belfry-panel")).getByRole("alert");
    expect(alert.textContent).toContain("Notifications are unavailable");
    expect(screen.queryByText("No notifications yet")).toBeNull();
  });

  it("leaves the error state once connected", async () => {
    const s = setup();
    clients.push(s.client);
    s.server.httpDown = true;
    render(
      <BelfryProvider client={s.client}>
        <NotificationBell />
      </BelfryProvider>,
    );
    const bell = screen.getByTestId("belfry-bell");
    await waitFor(() => expect(bell.getAttribute("aria-label")).toBe("Notifications (unavailable)"));
    s.server.httpDown = false;
    await waitFor(() => expect(s.client.status).toBe("connected"), { timeout: 5000 });
    expect(bell.getAttribute("aria-label")).toBe("Notifications");
    expect(screen.queryByTestId("belfry-error-mark")).toBeNull();
  });
});

describe("NotificationBell's panel placement", () => {
  it("shifts a panel that would stick out of the viewport back inside it", async () => {
    const { bell } = await renderBell(notifyN(1));
    // jsdom has no layout: the panel reports a box that starts 100 px left of the viewport.
    const original = HTMLElement.prototype.getBoundingClientRect;
    HTMLElement.prototype.getBoundingClientRect = function (this: HTMLElement) {
      if (this.dataset.testid === "belfry-panel") {
        const shift = Number(/translateX\((-?\d+)px\)/.exec(this.style.transform)?.[1] ?? 0);
        return { left: -100 + shift, right: 252 + shift, top: 40, bottom: 300, width: 352, height: 260, x: -100 + shift, y: 40, toJSON: () => ({}) } as DOMRect;
      }
      return { left: 0, right: 40, top: 0, bottom: 40, width: 40, height: 40, x: 0, y: 0, toJSON: () => ({}) } as DOMRect;
    };
    try {
      fireEvent.click(bell);
      const panel = screen.getByTestId("belfry-panel");
      await waitFor(() => expect(panel.style.transform).toBe("translateX(108px)"));
      expect(panel.getAttribute("data-placement")).toBe("below");
      expect(panel.className).toContain("belfry-bell__panel");
    } finally {
      HTMLElement.prototype.getBoundingClientRect = original;
    }
  });
});

describe("NotificationBell and errors while connected", () => {
  it("calls onError for a failed action but keeps its normal look", async () => {
    const errors: Error[] = [];
    const { bell, server } = await renderBell(notifyN(1), { onError: (e) => errors.push(e) });
    const socket = server.sockets.at(-1)!;
    act(() => socket.deliver({ type: "error", code: "unavailable", message: "store unavailable" }));
    await waitFor(() => expect(errors.map((e) => e.message)).toContain("store unavailable"));
    expect(bell.getAttribute("aria-label")).toBe("Notifications, 1 unread");
    expect(screen.queryByTestId("belfry-error-mark")).toBeNull();
  });
});
