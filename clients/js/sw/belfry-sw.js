/*
 * Belfry's service worker for Web Push (push payload format: docs/push.md, version 1).
 *
 * Serve it from your app's origin (e.g. /belfry-sw.js) and register it; or importScripts() it
 * from your own service worker. It:
 *  - shows a notification for each push, tagged by group_key (a newer push of a group replaces
 *    the older one);
 *  - skips a push that an open, visible page already showed live: it asks every window client
 *    "have you seen notification <id>?" (the SDK's answerServiceWorker() replies) and waits at
 *    most 300 ms for a yes;
 *  - on click, focuses an open window of the app (or opens one) at data.url or "/".
 * Customise the text by defining self.belfryRender = (payload) => ({ title, body, url }) before
 * importing this file.
 */
/* eslint-env serviceworker */

const SEEN_TIMEOUT_MS = 300;

function defaultRender(payload) {
  const data = payload.data || {};
  const actor = data.actor_name || data.actor || "";
  const title = data.title || (actor ? `${actor}: ${payload.type}` : "New notification");
  const body = data.body || data.preview || data.post_title || payload.type;
  return { title, body, url: data.url || "/" };
}

async function seenByAPage(id) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const visible = windows.filter((w) => w.visibilityState === "visible");
  if (visible.length === 0) return false;
  const answers = visible.map(
    (client) =>
      new Promise((resolve) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => resolve(false), SEEN_TIMEOUT_MS);
        channel.port1.onmessage = (event) => {
          clearTimeout(timer);
          resolve(Boolean(event.data && event.data.seen));
        };
        client.postMessage({ type: "belfry:seen?", id }, [channel.port2]);
      }),
  );
  return (await Promise.all(answers)).some(Boolean);
}

async function tell(message) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const client of windows) client.postMessage(message);
}

self.addEventListener("push", (event) => {
  event.waitUntil(
    (async () => {
      let payload;
      try {
        payload = event.data ? event.data.json() : null;
      } catch {
        payload = null;
      }
      if (!payload || payload.v !== 1 || !payload.id) return;
      if (await seenByAPage(payload.id)) {
        await tell({ type: "belfry:push", id: payload.id, shown: false });
        return;
      }
      const render = typeof self.belfryRender === "function" ? self.belfryRender : defaultRender;
      const { title, body, url } = render(payload);
      await self.registration.showNotification(title, {
        body,
        tag: payload.group_key || payload.id,
        data: { id: payload.id, url },
      });
      await tell({ type: "belfry:push", id: payload.id, shown: true });
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((w) => new URL(w.url).origin === url.origin);
      if (open) {
        await open.focus();
        if (open.url !== url.href && "navigate" in open) await open.navigate(url.href);
        return;
      }
      await self.clients.openWindow(url.href);
    })(),
  );
});

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
