// The catalogue of wire codes from docs/protocol.md, mirrored from the server's
// crates/belfry/src/protocol.rs. A Rust test reads this file line by line and compares it with
// the server's lists, so keep one `Name: value,` per line inside each object.

/** WebSocket close codes. 4000–4499: reconnect with backoff; 4500–4999: do not reconnect. */
export const CloseCode = {
  Normal: 1000,
  MessageTooBig: 1009,
  Internal: 4000,
  Unauthorized: 4001,
  AuthTimeout: 4002,
  Slow: 4008,
  HeartbeatTimeout: 4009,
  Shutdown: 4010,
  TooManyFrames: 4011,
  TooManyConnections: 4429,
  ProtocolError: 4500,
  UnsupportedVersion: 4501,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Error codes, in `error` frames and HTTP error bodies. */
export const ErrorCode = {
  BadRequest: "bad_request",
  Validation: "validation",
  Unauthorized: "unauthorized",
  Forbidden: "forbidden",
  NotFound: "not_found",
  Conflict: "conflict",
  MethodNotAllowed: "method_not_allowed",
  RequestTimeout: "request_timeout",
  PayloadTooLarge: "payload_too_large",
  RateLimited: "rate_limited",
  LimitExceeded: "limit_exceeded",
  Unavailable: "unavailable",
  Internal: "internal",
  BadFrame: "bad_frame",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * What a close code asks of the client. Codes outside the catalogue follow the documented
 * ranges; other standard codes (1001 going away, 1006 abnormal closure, …) are network trouble
 * and are retried.
 */
export type CloseAdvice = "reconnect" | "reconnect-now" | "refresh-token" | "stop";

export function adviceFor(code: number): CloseAdvice {
  if (code === CloseCode.Unauthorized) return "refresh-token";
  if (code === CloseCode.Slow) return "reconnect-now";
  if (code === CloseCode.MessageTooBig) return "stop";
  if (code >= 4500 && code <= 4999) return "stop";
  return "reconnect";
}
