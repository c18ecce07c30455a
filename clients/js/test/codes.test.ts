// codes.ts must say what docs/protocol.md says (the server's Rust test checks protocol.rs against
// codes.ts; this one closes the triangle with the prose).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import { CloseCode, ErrorCode, adviceFor } from "../src/core/codes.js";

const docs = fileURLToPath(new URL("../../../docs/protocol.md", import.meta.url));
const pascal = (name: string) =>
  name
    .split(/[\s_]+/)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join("");

describe.skipIf(!existsSync(docs))("codes.ts matches docs/protocol.md", () => {
  const text = existsSync(docs) ? readFileSync(docs, "utf8") : "";

  it("has every close code of the table, with the same numbers", () => {
    const rows = [...text.matchAll(/^\| (\d{4}) \| ([a-z_ ]+?) \|/gm)].map((m) => [pascal(m[2]!), Number(m[1])]);
    expect(rows.length).toBeGreaterThan(5);
    expect(Object.fromEntries(rows)).toEqual(CloseCode);
  });

  it("has every error code of the table", () => {
    const codes = [...text.matchAll(/^\| `([a-z_]+)` \| (?:\d{3}|—) \|/gm)].map((m) => m[1]);
    expect(codes.sort()).toEqual(Object.values(ErrorCode).sort());
  });

  it("keeps one `Name: value,` line per code, as the Rust comparison expects", () => {
    const source = readFileSync(fileURLToPath(new URL("../src/core/codes.ts", import.meta.url)), "utf8");
    for (const [name, value] of Object.entries(CloseCode)) expect(source).toContain(`\n  ${name}: ${value},\n`);
    for (const [name, value] of Object.entries(ErrorCode)) expect(source).toContain(`\n  ${name}: "${value}",\n`);
  });
});

describe("close code advice", () => {
  it("follows the documented ranges", () => {
    expect(adviceFor(CloseCode.Unauthorized)).toBe("refresh-token");
    expect(adviceFor(CloseCode.Slow)).toBe("reconnect-now");
    expect(adviceFor(CloseCode.Shutdown)).toBe("reconnect");
    expect(adviceFor(4321)).toBe("reconnect");
    expect(adviceFor(CloseCode.ProtocolError)).toBe("stop");
    expect(adviceFor(4777)).toBe("stop");
    expect(adviceFor(CloseCode.MessageTooBig)).toBe("stop");
    expect(adviceFor(1006)).toBe("reconnect");
  });
});
