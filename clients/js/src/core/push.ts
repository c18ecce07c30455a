// Web Push from the page's side: subscribing the browser, and answering the service worker
// (sw/belfry-sw.js) when it asks whether a pushed notification was already shown live, so the
// user never sees the same notification twice. Nothing here runs at import time.

/** What the service worker asks of the page. */
interface SeenQuery {
  type: "belfry:seen?";
  id: string;
}

function isSeenQuery(data: unknown): data is SeenQuery {
  return (
    typeof data === "object" &&
    data !== null &&
    (data as { type?: unknown }).type === "belfry:seen?" &&
    typeof (data as { id?: unknown }).id === "string"
  );
}

/**
 * Answers the Belfry service worker's "have you shown <id>?" questions from `store` (anything
 * with `has(id)`, such as `client.store`). Returns a function that stops answering.
 */
export function answerServiceWorker(
  store: { has(id: string): boolean },
  container: ServiceWorkerContainer | undefined = globalThis.navigator?.serviceWorker,
): () => void {
  if (!container) return () => {};
  const onMessage = (event: MessageEvent) => {
    if (!isSeenQuery(event.data)) return;
    event.ports[0]?.postMessage({ seen: store.has(event.data.id) });
  };
  container.addEventListener("message", onMessage);
  return () => container.removeEventListener("message", onMessage);
}

function decodeKey(base64url: string): Uint8Array {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export interface EnablePushOptions {
  /** Base URL of Belfry, e.g. https://belfry.example.com. */
  url: string;
  /** The user's token. */
  getToken: () => Promise<string>;
  /** The registration of a service worker that imports sw/belfry-sw.js. */
  registration: ServiceWorkerRegistration;
  /** Injected fetch (defaults to the global). */
  fetch?: typeof fetch;
}

/**
 * Asks the browser for a push subscription with Belfry's VAPID key and saves it for the
 * current user. Call it from a user gesture: browsers require one for the permission prompt.
 */
export async function enablePush(options: EnablePushOptions): Promise<PushSubscription> {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const base = options.url.replace(/\/+$/, "");
  const keyResponse = await doFetch(`${base}/v1/push/vapid-public-key`);
  if (!keyResponse.ok) throw new Error(`push is not available (HTTP ${keyResponse.status})`);
  const { public_key } = (await keyResponse.json()) as { public_key: string };
  const subscription = await options.registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: decodeKey(public_key) as BufferSource,
  });
  const saved = await doFetch(`${base}/v1/me/push-subscriptions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await options.getToken()}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(subscription.toJSON()),
  });
  if (!saved.ok) throw new Error(`saving the push subscription failed (HTTP ${saved.status})`);
  return subscription;
}
