import { useCallback, useSyncExternalStore } from "react";

import type { ConnectionStatus } from "../core/types.js";
import { useBelfryClient } from "./context.js";

/** Just the connection status: `disconnected`, `connecting`, `connected` or `offline`. */
export function useConnectionState(): ConnectionStatus {
  const client = useBelfryClient();
  const read = useCallback(() => client.getSnapshot().status, [client]);
  return useSyncExternalStore(client.subscribe, read, read);
}
