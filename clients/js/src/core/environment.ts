// The browser signals the client reacts to: going offline/online and the page becoming visible
// again. Everything is looked up when called, never at import time, and absent globals (Node,
// workers, SSR) simply mean "online, always visible, no events".

interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

function global<T>(name: string): T | undefined {
  return (globalThis as Record<string, unknown>)[name] as T | undefined;
}

/** False only when the platform says so (`navigator.onLine === false`). */
export function isOnline(): boolean {
  return global<{ onLine?: boolean }>("navigator")?.onLine !== false;
}

export interface EnvironmentHandlers {
  online(): void;
  offline(): void;
  visible(): void;
}

/** Subscribes to `online`, `offline` and `visibilitychange`; returns the unsubscribe function. */
export function watchEnvironment(handlers: EnvironmentHandlers): () => void {
  const win = global<EventTargetLike>("window");
  const doc = global<EventTargetLike & { visibilityState?: string }>("document");
  const onOnline = () => handlers.online();
  const onOffline = () => handlers.offline();
  const onVisibility = () => {
    if (doc?.visibilityState === "visible") handlers.visible();
  };
  win?.addEventListener?.("online", onOnline);
  win?.addEventListener?.("offline", onOffline);
  doc?.addEventListener?.("visibilitychange", onVisibility);
  return () => {
    win?.removeEventListener?.("online", onOnline);
    win?.removeEventListener?.("offline", onOffline);
    doc?.removeEventListener?.("visibilitychange", onVisibility);
  };
}
