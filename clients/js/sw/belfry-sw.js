/*
 * Belfry's service worker for Web Push (push payload format: docs/push.md, version 1).
 *
 * Serve it from your app's origin (e.g. /belfry-sw.js) and register it; or importScripts() it
 * from your own service worker. It:
 *  - shows a notification for each push, tagged by group_key (a newer push of a group replaces
 *    the older one); a grouped item's title names its actors ("Alice and 2 others: …");
 *  - skips a push that an open, visible page already showed live: it asks every window client
 *    "have you seen notification <id>?" (the SDK's answerServiceWorker() replies) and waits at
 *    most 300 ms for a yes;
 *  - shows a digest (several pushes the server held back and sent as one: {"digest": true,
 *    "count": 5, "latest": {…a usual payload…}}) as "5 new notifications", with the latest one's
 *    text as the body, tagged "belfry-digest" so a newer digest replaces it; a click opens "/";
 *  - on click, focuses an open window of the app (or opens one) at data.url or "/".
 * Customise the text by defining self.belfryRender = (payload) => ({ title, body, url }) (and,
 * for digests, self.belfryRenderDigest = (digest) => ({ title, body, url })) before importing
 * this file.
 */
/* eslint-env serviceworker */

const SEEN_TIMEOUT_MS = 300;

/** "Alice", "Alice and Bob", "Alice and 3 others" from a grouped payload; "" without actors. */
function groupActors(payload) {
  const names = Array.isArray(payload.actors) ? payload.actors.filter((a) => typeof a === "string" && a) : [];
  if (names.length === 0) return "";
  const total = Math.max(Number(payload.actor_count) || 0, names.length);
  if (total === 1) return names[0];
  if (total === 2 && names.length >= 2) return `${names[0]} and ${names[1]}`;
  return `${names[0]} and ${total - 1} ${total - 1 === 1 ? "other" : "others"}`;
}

function defaultRender(payload) {
  const data = payload.data || {};
  const grouped = (Number(payload.count) || 1) > 1 ? groupActors(payload) : "";
  const actor = grouped || data.actor_name || data.actor || "";
  const title = data.title || (actor ? `${actor}: ${payload.type}` : "New notification");
  const body = data.body || data.preview || data.post_title || payload.type;
  return { title, body, url: data.url || "/" };
}

function defaultRenderDigest(digest, render) {
  const count = Number(digest.count) || 0;
  const latest = digest.latest && digest.latest.v === 1 ? render(digest.latest) : null;
  const title = count === 1 ? "1 new notification" : `${count} new notifications`;
  const body = latest ? [latest.title, latest.body].filter(Boolean).join(" — ") : "";
  return { title, body, url: "/" };
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
      if (!payload || payload.v !== 1) return;
      const render = typeof self.belfryRender === "function" ? self.belfryRender : defaultRender;
      if (payload.digest === true) {
        const latestId = payload.latest && payload.latest.id;
        // A visible page that showed the newest of them live has shown the others too.
        if (latestId && (await seenByAPage(latestId))) {
          await tell({ type: "belfry:push", id: latestId, digest: true, shown: false });
          return;
        }
        const { title, body, url } =
          typeof self.belfryRenderDigest === "function"
            ? self.belfryRenderDigest(payload)
            : defaultRenderDigest(payload, render);
        await self.registration.showNotification(title, {
          body,
          tag: "belfry-digest",
          data: { id: latestId || null, url, digest: true },
        });
        await tell({ type: "belfry:push", id: latestId || null, digest: true, shown: true });
        return;
      }
      if (!payload.id) return;
      if (await seenByAPage(payload.id)) {
        await tell({ type: "belfry:push", id: payload.id, shown: false });
        return;
      }
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
