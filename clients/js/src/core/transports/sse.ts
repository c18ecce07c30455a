// Server-Sent Events transport: `GET /v1/sse?token=…&since=…` (EventSource cannot set headers).
// Receive-only: the client sends read-state changes over HTTP instead. The browser's own
// reconnect is not used: on any error the stream is closed and the client reconnects with a
// fresh token and its own `since`, exactly as for the other transports.

import type { EventSourceLike, ServerFrame } from "../types.js";
import { httpUrl } from "../url.js";
import { parseFrame, type TransportContext, type TransportEvents, type TransportFactory } from "./types.js";

/**
 * The frame types Belfry sends as SSE events (the `event:` field is the frame's `type`): every
 * client frame of the protocol (a server test compares this list with its `FrameKind`s).
 */
export const EVENTS: ServerFrame["type"][] = [
  "hello",
  "notification",
  "updated",
  "preferences",
  "state",
  "sync",
  "joined",
  "presence",
  "message",
  "pong",
  "ack",
  "error",
];

export const sseTransport: TransportFactory = (context: TransportContext, events: TransportEvents) => {
  let source: EventSourceLike | null = null;
  let opened = false;
  let ended = false;

  const finish = (end: Parameters<TransportEvents["end"]>[0]) => {
    if (ended) return;
    ended = true;
    if (source) {
      source.onopen = source.onerror = null;
      source.close();
    }
    events.end(end);
  };

  const Ctor = context.EventSource;
  if (!Ctor) {
    queueMicrotask(() => finish({ opened: false, unsupported: true }));
  } else {
    try {
      source = new Ctor(httpUrl(context.url, "/v1/sse", { token: context.token, since: context.since }));
    } catch (error) {
      queueMicrotask(() => finish({ opened: false, error }));
    }
  }

  if (source) {
    source.onopen = () => {
      opened = true;
      events.open();
    };
    // EventSource reports neither the status of a refused request (a 401 looks like any other
    // failure) nor why a stream broke; the client tells these apart over HTTP.
    source.onerror = () => finish({ opened });
    for (const type of EVENTS) {
      source.addEventListener(type, (event) => {
        if (ended) return;
        const frame = parseFrame(event.data);
        if (frame) events.frame(frame);
      });
    }
  }

  return {
    name: "sse",
    canSend: false,
    send() {
      throw new Error("belfry: SSE is receive-only; read state goes over HTTP");
    },
    probe() {
      // The server's `: ping` comments keep the stream alive; EventSource does not expose them.
    },
    close() {
      if (ended) return;
      ended = true;
      if (source) {
        source.onopen = source.onerror = null;
        source.close();
      }
    },
  };
};
