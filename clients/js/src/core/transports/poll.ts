// Long-poll transport, the last resort behind proxies that break both WebSocket and SSE.
// It reads the unread count first (standing in for `hello`), then asks `GET /v1/poll` for
// notifications after the last seq it saw, again and again. Grouped items (count > 1) are
// handed on as `updated` frames, as the WebSocket and SSE would have carried them. It has no
// `state` frames: the unread count comes with every poll answer, and each poll passes the state
// version it has, so a read-state or preferences change anywhere answers at once with a newer
// one, which is handed on as a `sync` frame (the client then re-reads the first page).

import { BelfryError } from "../errors.js";
import type { HelloFrame } from "../types.js";
import type { TransportContext, TransportEvents, TransportFactory } from "./types.js";

export const pollTransport: TransportFactory = (context: TransportContext, events: TransportEvents) => {
  let ended = false;
  let opened = false;
  const AbortCtor = (globalThis as { AbortController?: typeof AbortController }).AbortController;
  const abort = AbortCtor ? new AbortCtor() : undefined;

  const finish = (end: Parameters<TransportEvents["end"]>[0]) => {
    if (ended) return;
    ended = true;
    events.end(end);
  };

  const run = async () => {
    let after = context.since;
    const counts = await context.http.unreadCount();
    if (ended) return;
    opened = true;
    events.open();
    const hello: HelloFrame = {
      type: "hello",
      v: 1,
      conn_id: "poll",
      user_id: "",
      unread_count: counts.unread_count,
      last_seq: counts.last_seq,
      heartbeat_ms: 0,
    };
    if (counts.state_version !== undefined) hello.state_version = counts.state_version;
    let stateVersion = counts.state_version;
    events.frame(hello);
    while (!ended) {
      const answer = await context.http.poll(after, context.pollTimeoutSecs, abort?.signal, stateVersion);
      if (ended) return;
      for (const notification of answer.notifications) {
        if (ended) return;
        // The server sends a grouped item (count > 1) as `updated` on the other transports.
        const type = (notification.count ?? 1) > 1 ? "updated" : "notification";
        events.frame({ type, seq: notification.seq, notification });
        after = Math.max(after, notification.seq);
      }
      after = Math.max(after, answer.last_seq);
      const version = answer.state_version;
      if (version !== undefined && stateVersion !== undefined && version > stateVersion) {
        events.frame({ type: "sync", unread_count: answer.unread_count, last_seq: after, state_version: version });
      } else {
        events.counts(answer.unread_count, after);
      }
      if (version !== undefined) stateVersion = Math.max(stateVersion ?? 0, version);
    }
  };

  run().catch((error: unknown) => {
    if (ended) return;
    const unauthorized = error instanceof BelfryError && error.code === "unauthorized";
    finish({ opened, unauthorized, error });
  });

  return {
    name: "poll",
    canSend: false,
    send() {
      throw new Error("belfry: long-poll is receive-only; read state goes over HTTP");
    },
    probe() {
      // Each poll is a fresh request; there is no idle link to check.
    },
    close() {
      if (ended) return;
      ended = true;
      abort?.abort();
    },
  };
};
