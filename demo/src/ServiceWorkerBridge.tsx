// Registers Belfry's service worker (Web Push) and answers its "was this shown live?" questions
// from the page's notification store, so a push never duplicates what the page already showed.
// What the worker did with each push is kept in window.__belfryPushes (the browser tests read it).
import { answerServiceWorker } from "belfry";
import { useBelfryClient } from "belfry/react";
import { useEffect } from "react";

declare global {
  interface Window {
    __belfryPushes?: { id: string; shown: boolean }[];
  }
}

export function ServiceWorkerBridge() {
  const client = useBelfryClient();
  useEffect(() => {
    const container = navigator.serviceWorker;
    if (!container) return;
    container.register("/belfry-sw.js").catch((e) => console.warn("service worker:", e));
    const stop = answerServiceWorker(client.store, container);
    const onMessage = (event: MessageEvent) => {
      if (event.data?.type === "belfry:push") {
        (window.__belfryPushes ??= []).push({ id: event.data.id, shown: event.data.shown });
      }
    };
    container.addEventListener("message", onMessage);
    return () => {
      stop();
      container.removeEventListener("message", onMessage);
    };
  }, [client]);
  return null;
}
