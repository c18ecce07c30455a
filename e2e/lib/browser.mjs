// Launches Debian's chromium through playwright-core: headless, no sandbox (CI runs as root),
// no background networking (the machine has no outside network), and a fresh profile
// (--user-data-dir) for every context, so two contexts are two independent browsers.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export async function launchContext() {
  const userDataDir = mkdtempSync(join(tmpdir(), "belfry-chromium-"));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 800 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}
