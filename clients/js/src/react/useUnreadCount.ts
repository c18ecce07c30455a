import { useCallback, useSyncExternalStore } from "react";

import { useBelfryClient } from "./context.js";

/** Just the unread count: re-renders only when the count changes. */
export function useUnreadCount(): number {
  const client = useBelfryClient();
  const read = useCallback(() => client.getSnapshot().unreadCount, [client]);
  return useSyncExternalStore(client.subscribe, read, read);
}
