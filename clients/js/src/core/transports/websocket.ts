// WebSocket transport: `GET /v1/ws?v=1`, authenticated by the first frame (`auth` with the token
// and `since`) so the token never lands in a URL. Sends application-level `ping` frames and ends
// the connection when no `pong` comes back in time: browser code cannot see protocol pings, and
// a half-open TCP connection can otherwise look alive for many minutes.

import { CloseCode } from "../codes.js";
import type { ClientFrame, WebSocketLike } from "../types.js";
import { wsUrl } from "../url.js";
import { parseFrame, type TransportContext, type TransportEvents, type TransportFactory } from "./types.js";

const OPEN = 1;

export const webSocketTransport: TransportFactory = (context: TransportContext, events: TransportEvents) => {
  let socket: WebSocketLike | null = null;
  let opened = false;
  let ended = false;
  let pingTimer: ReturnType<typeof setTimeout> | undefined;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;

  const stopTimers = () => {
    clearTimeout(pingTimer);
    clearTimeout(pongTimer);
    pingTimer = pongTimer = undefined;
  };

  const finish = (end: Parameters<TransportEvents["end"]>[0]) => {
    if (ended) return;
    ended = true;
    stopTimers();
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    }
    events.end(end);
  };

  const sendRaw = (frame: ClientFrame) => {
    if (!socket || socket.readyState !== OPEN) throw new Error("belfry: the WebSocket is not open");
    socket.send(JSON.stringify(frame));
  };

  const ping = () => {
    if (ended || pongTimer !== undefined) return;
    clearTimeout(pingTimer);
    pingTimer = undefined;
    try {
      sendRaw({ type: "ping", ref: context.nextRef() });
    } catch {
      return;
    }
    pongTimer = setTimeout(() => {
      const dead = socket;
      finish({ opened: true, code: CloseCode.HeartbeatTimeout, reason: "no pong from the server" });
      dead?.close(CloseCode.Normal);
    }, context.pongTimeoutMs);
  };

  const schedulePing = () => {
    clearTimeout(pingTimer);
    if (context.pingIntervalMs > 0) pingTimer = setTimeout(ping, context.pingIntervalMs);
  };

  const Ctor = context.WebSocket;
  if (!Ctor) {
    queueMicrotask(() => finish({ opened: false, unsupported: true }));
  } else {
    try {
      socket = new Ctor(wsUrl(context.url, "/v1/ws", { v: 1 }));
    } catch (error) {
      queueMicrotask(() => finish({ opened: false, error }));
    }
  }

  if (socket) {
    socket.onopen = () => {
      opened = true;
      try {
        sendRaw({ type: "auth", token: context.token, since: context.since });
      } catch (error) {
        finish({ opened, error });
        return;
      }
      events.open();
    };
    socket.onmessage = (event) => {
      const frame = parseFrame(event.data);
      if (!frame) return;
      if (frame.type === "hello") schedulePing();
      if (frame.type === "pong" && pongTimer !== undefined) {
        clearTimeout(pongTimer);
        pongTimer = undefined;
        schedulePing();
      }
      events.frame(frame);
    };
    socket.onclose = (event) => finish({ opened, code: event.code, reason: event.reason });
    // An error is always followed by a close event, which carries what there is to know.
    socket.onerror = () => undefined;
  }

  return {
    name: "websocket",
    canSend: true,
    send: sendRaw,
    probe: ping,
    close() {
      if (ended) return;
      ended = true;
      stopTimers();
      if (socket) {
        socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
        try {
          socket.close(CloseCode.Normal);
        } catch {
          // Closing a socket that never opened may throw in some environments; it is gone anyway.
        }
      }
    },
  };
};
