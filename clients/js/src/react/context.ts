import { createContext, useContext } from "react";

import type { BelfryClient } from "../core/client.js";

export const BelfryContext = createContext<BelfryClient | null>(null);
BelfryContext.displayName = "BelfryContext";

/** The page's shared client. Throws when no `<BelfryProvider>` is above the caller. */
export function useBelfryClient(): BelfryClient {
  const client = useContext(BelfryContext);
  if (!client) {
    throw new Error(
      "belfry: useBelfryClient() (and useNotifications, useUnreadCount, useConnectionState, " +
        "useRoom, usePreferences, NotificationBell) must be rendered inside <BelfryProvider>. Wrap your app, e.g. " +
        "<BelfryProvider options={{ url, getToken }}>…</BelfryProvider>, or pass an existing " +
        "client: <BelfryProvider client={client}>.",
    );
  }
  return client;
}
