import { describe, expect, it } from "vitest";

import { NotificationStore } from "../src/core/store.js";
import type { Notification } from "../src/core/types.js";

let nextId = 0;
function n(seq: number, extra: Partial<Notification> = {}): Notification {
  nextId += 1;
  return {
    id: `id-${seq}-${nextId}`,
    seq,
    user_id: "alice",
    type: "x",
    data: {},
    created_at: "2026-01-01T00:00:00Z",
    seen_at: null,
    read_at: null,
    archived_at: null,
    expires_at: null,
    ...extra,
  };
}

const page = (notifications: Notification[], extra: { unread_count?: number; last_seq?: number; next_cursor?: string | null } = {}) => ({
  notifications,
  next_cursor: extra.next_cursor ?? null,
  unread_count: extra.unread_count ?? notifications.filter((x) => !x.read_at).length,
  last_seq: extra.last_seq ?? Math.max(0, ...notifications.map((x) => x.seq)),
});

describe("NotificationStore", () => {
  it("keeps the list newest first and drops duplicates by id and by seq", () => {
    const store = new NotificationStore();
    const a = n(1);
    store.addNotification(n(2));
    store.addNotification(a);
    store.addNotification(n(3));
    expect(store.addNotification(a)).toBe(false);
    expect(store.addNotification({ ...n(3), id: "other" })).toBe(false);
    expect(store.getSnapshot().notifications.map((x) => x.seq)).toEqual([3, 2, 1]);
  });

  it("does not count twice what an authoritative count already included", () => {
    const store = new NotificationStore();
    store.applyFirstPage(page([n(1), n(2)]), { counts: true });
    expect(store.getSnapshot().unreadCount).toBe(2);
    // hello after a reconnect: 4 unread up to seq 4, then the two missed ones are replayed.
    store.setUnreadCount(4, 4);
    store.addNotification(n(3));
    store.addNotification(n(4));
    expect(store.getSnapshot().unreadCount).toBe(4);
    store.addNotification(n(5));
    expect(store.getSnapshot().unreadCount).toBe(5);
  });

  it("counts a live notification that a reconciling page listed first", () => {
    const store = new NotificationStore();
    store.applyFirstPage(page([n(1)]), { counts: true });
    const late = n(2);
    store.applyFirstPage(page([late, n(1)]), { counts: false });
    store.addNotification(late);
    expect(store.getSnapshot().unreadCount).toBe(2);
    expect(store.getSnapshot().notifications).toHaveLength(2);
  });

  it("applies state frames: read, unread, seen, read-all up to a seq, archived and deleted", () => {
    const store = new NotificationStore();
    const [a, b, c] = [n(1), n(2), n(3)];
    store.applyFirstPage(page([c, b, a]), { counts: true });
    store.applyState({ type: "state", change: "read", ids: [a.id], all: false, unread_count: 2 });
    expect(store.get(a.id)?.read_at).not.toBeNull();
    expect(store.getSnapshot().unreadCount).toBe(2);
    store.applyState({ type: "state", change: "unread", ids: [a.id], all: false, unread_count: 3 });
    expect(store.get(a.id)?.read_at).toBeNull();
    store.applyState({ type: "state", change: "seen", ids: [b.id], all: false, unread_count: 3 });
    expect(store.get(b.id)?.seen_at).not.toBeNull();
    store.applyState({ type: "state", change: "read", ids: [], all: true, up_to_seq: 2, unread_count: 1 });
    expect([a, b, c].map((x) => store.get(x.id)?.read_at != null)).toEqual([true, true, false]);
    store.applyState({ type: "state", change: "archived", ids: [a.id], all: false, unread_count: 1 });
    store.applyState({ type: "state", change: "deleted", ids: [b.id], all: false, unread_count: 1 });
    expect(store.getSnapshot().notifications.map((x) => x.id)).toEqual([c.id]);
    expect(store.getSnapshot().unreadCount).toBe(1);
  });

  it("ignores a state change kind it does not know, except for the count", () => {
    const store = new NotificationStore();
    store.applyFirstPage(page([n(1)]), { counts: true });
    store.applyState({ type: "state", change: "teleported" as never, ids: [], all: false, unread_count: 7 });
    expect(store.getSnapshot().unreadCount).toBe(7);
    expect(store.getSnapshot().notifications).toHaveLength(1);
  });

  it("produces immutable snapshots: same object until something changes", () => {
    const store = new NotificationStore();
    const a = n(1);
    store.applyFirstPage(page([a]), { counts: true });
    const before = store.getSnapshot();
    expect(store.getSnapshot()).toBe(before);
    store.setStatus("connecting");
    const after = store.getSnapshot();
    expect(after).not.toBe(before);
    expect(after.notifications).toBe(before.notifications);
    store.markReadLocally([a.id]);
    expect(store.getSnapshot().notifications).not.toBe(before.notifications);
    expect(before.notifications[0]!.read_at).toBeNull();
    expect(store.getSnapshot().unreadCount).toBe(0);
  });

  it("notifies subscribers once per change and not for no-ops", () => {
    const store = new NotificationStore();
    let calls = 0;
    const off = store.subscribe(() => (calls += 1));
    store.setStatus("connecting");
    store.setStatus("connecting");
    store.markReadLocally(["nothing"]);
    expect(calls).toBe(1);
    off();
    store.setStatus("connected");
    expect(calls).toBe(1);
  });

  it("keeps older pages when the first page is reconciled, and drops what vanished from it", () => {
    const store = new NotificationStore();
    const items = Array.from({ length: 6 }, (_, i) => n(i + 1));
    store.applyFirstPage(page([items[5]!, items[4]!, items[3]!], { next_cursor: "4", last_seq: 6 }), { counts: true });
    store.applyOlderPage(page([items[2]!, items[1]!, items[0]!]));
    // items[4] was deleted meanwhile; the new first page shows 6, 4, 3.
    store.applyFirstPage(page([items[5]!, items[3]!, items[2]!], { next_cursor: "3", last_seq: 6 }), { counts: false });
    expect(store.getSnapshot().notifications.map((x) => x.seq)).toEqual([6, 4, 3, 2, 1]);
    expect(store.getSnapshot().hasMore).toBe(false);
  });

  it("treats expired notifications as read for the count", () => {
    const store = new NotificationStore();
    store.setUnreadCount(0, 0);
    store.addNotification(n(1, { expires_at: "2000-01-01T00:00:00Z" }));
    expect(store.getSnapshot().unreadCount).toBe(0);
  });
});
