import type { ErrorBody } from "./types.js";

/**
 * An error from Belfry or from reaching it. `code` is an `ErrorCode` from the server's catalogue
 * (`unauthorized`, `validation`, …), or `network` when no answer came back at all, or `closed`
 * when a connection ended with a terminal close code (then `closeCode` says which).
 */
export class BelfryError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  readonly fields: Record<string, string> | undefined;
  readonly closeCode: number | undefined;

  constructor(
    code: string,
    message: string,
    extra: { status?: number; fields?: Record<string, string>; closeCode?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "BelfryError";
    this.code = code;
    this.status = extra.status;
    this.fields = extra.fields;
    this.closeCode = extra.closeCode;
  }

  /** `error` itself when it is a BelfryError, else an `internal` one that keeps it as `cause`. */
  static from(error: unknown): BelfryError {
    if (error instanceof BelfryError) return error;
    return new BelfryError("internal", error instanceof Error ? error.message : String(error), { cause: error });
  }

  /** Builds the error for a non-2xx HTTP answer from its JSON body (when it has one). */
  static fromBody(status: number, body: unknown): BelfryError {
    const error = (body as Partial<ErrorBody> | null)?.error;
    if (error && typeof error.code === "string") {
      return new BelfryError(error.code, error.message ?? error.code, { status, fields: error.fields });
    }
    return new BelfryError(status === 401 ? "unauthorized" : "internal", `HTTP ${status}`, { status });
  }
}
