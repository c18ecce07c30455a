import type { ConnectionStatus as Status } from "belfry";
import { useConnectionState } from "belfry/react";

// Only the connected state contains the word "connected", so a check for it cannot be fooled
// by "disconnected".
const LABELS: Record<Status, string> = {
  connected: "Connected",
  connecting: "Connecting…",
  offline: "Offline",
  disconnected: "Stopped",
};

export function ConnectionStatus() {
  const status = useConnectionState();
  return (
    <span className={`status status-${status}`} data-testid="connection-status" data-status={status} role="status">
      {LABELS[status]}
    </span>
  );
}
