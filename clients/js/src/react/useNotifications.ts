// React hooks over the core store, all through useSyncExternalStore: the store is the only copy
// of the state, so every component (and every tab, through `state` frames) agrees.

import { useCallback, useMemo, useSyncExternalStore } from "react";

import type { NotificationsSnapshot } from "../core/store.js";
import type { ConnectionStatus, Notification } from "../core/types.js";
import { useBelfryClient } from "./context.js";

/** The whole store snapshot (immutable; re-renders when anything in it changes). */
export function useBelfrySnapshot(): NotificationsSnapshot {
  const client = useBelfryClient();
  return useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
}

export interface UseNotificationsResult {
  /** Newest first. */
  notifications: readonly Notification[];
  unreadCount: number;
  status: ConnectionStatus;
  /** True once the first page is loaded. */
  loaded: boolean;
  hasMore: boolean;
  loadingMore: boolean;
  error: Error | null;
  markRead: (ids: string | readonly string[]) => void;
  markUnread: (ids: string | readonly string[]) => void;
  markSeen: (ids: string | readonly string[]) => void;
  markAllRead: () => void;
  loadMore: () => void;
}

const ignore = () => undefined;
const asList = (ids: string | readonly string[]) => (typeof ids === "string" ? [ids] : ids);

/**
 * The user's notifications, unread count and connection status, plus the actions on them. The
 * actions return nothing: failures land in `error` (and the client's `error` event), and the
 * list snaps back to the server's state.
 */
export function useNotifications(): UseNotificationsResult {
  const client = useBelfryClient();
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  const markRead = useCallback((ids: string | readonly string[]) => void client.markRead(asList(ids)).catch(ignore), [client]);
  const markUnread = useCallback((ids: string | readonly string[]) => void client.markUnread(asList(ids)).catch(ignore), [client]);
  const markSeen = useCallback((ids: string | readonly string[]) => void client.markSeen(asList(ids)).catch(ignore), [client]);
  const markAllRead = useCallback(() => void client.markAllRead().catch(ignore), [client]);
  const loadMore = useCallback(() => void client.loadMore().catch(ignore), [client]);
  return useMemo(
    () => ({
      notifications: snapshot.notifications,
      unreadCount: snapshot.unreadCount,
      status: snapshot.status,
      loaded: snapshot.loaded,
      hasMore: snapshot.hasMore,
      loadingMore: snapshot.loadingMore,
      error: snapshot.error,
      markRead,
      markUnread,
      markSeen,
      markAllRead,
      loadMore,
    }),
    [snapshot, markRead, markUnread, markSeen, markAllRead, loadMore],
  );
}
