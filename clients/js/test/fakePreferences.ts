// The preferences half of FakeBelfry (test/fakeServer.ts): the defaults, and the validation of
// `PUT /v1/me/preferences` as the contract states it (400 for shapes, 422 naming bad values).

import type { Preferences } from "../src/core/types.js";

export const DEFAULT_PREFERENCES = (): Preferences => ({
  muted: false,
  mute_until: null,
  channels: { in_app: true, web_push: true },
  types: {},
});

const TYPE_NAME = /^[A-Za-z0-9._:-]{1,128}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

type Checked =
  | { preferences: Preferences }
  | { status: 400 | 422; error: { code: string; message: string; fields?: Record<string, string> } };

/** `PUT /v1/me/preferences` validation: 400 for shapes, 422 naming bad values; defaults filled. */
export function checkPreferences(body: unknown, maxTypes: number): Checked {
  const bad = (message: string): Checked => ({ status: 400, error: { code: "bad_request", message } });
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(body)) return bad("expected an object");
  const known = ["muted", "mute_until", "channels", "types"];
  const unknown = Object.keys(body).find((k) => !known.includes(k));
  if (unknown) return bad(`unknown field \`${unknown}\``);
  const p = DEFAULT_PREFERENCES();
  if (body.muted !== undefined) {
    if (typeof body.muted !== "boolean") return bad("muted: expected a boolean");
    p.muted = body.muted;
  }
  if (body.mute_until !== undefined && body.mute_until !== null && typeof body.mute_until !== "string") {
    return bad("mute_until: expected a string or null");
  }
  const channelsOf = (v: unknown, where: string): Partial<Record<"in_app" | "web_push", boolean>> | string => {
    if (!isObject(v)) return `${where}: expected an object`;
    const out: Partial<Record<"in_app" | "web_push", boolean>> = {};
    for (const [k, on] of Object.entries(v)) {
      if (k !== "in_app" && k !== "web_push") return `${where}: unknown field \`${k}\``;
      if (typeof on !== "boolean") return `${where}.${k}: expected a boolean`;
      out[k] = on;
    }
    return out;
  };
  if (body.channels !== undefined) {
    const channels = channelsOf(body.channels, "channels");
    if (typeof channels === "string") return bad(channels);
    p.channels = { ...p.channels, ...channels };
  }
  const fields: Record<string, string> = {};
  if (body.types !== undefined) {
    if (!isObject(body.types)) return bad("types: expected an object");
    for (const [name, value] of Object.entries(body.types)) {
      const channels = channelsOf(value, `types.${name}`);
      if (typeof channels === "string") return bad(channels);
      if (!TYPE_NAME.test(name)) fields[`types.${name}`] = "not a valid type name";
      p.types[name] = channels;
    }
    if (Object.keys(body.types).length > maxTypes) fields.types = `at most ${maxTypes} types`;
  }
  if (typeof body.mute_until === "string") {
    if (!RFC3339.test(body.mute_until) || Number.isNaN(Date.parse(body.mute_until))) fields.mute_until = "not an RFC 3339 time";
    p.mute_until = body.mute_until;
  }
  if (Object.keys(fields).length > 0) {
    return { status: 422, error: { code: "validation", message: "invalid preferences", fields } };
  }
  return { preferences: p };
}
