// The demo page, built into dist/ and embedded in the `belfry` binary, which serves it at `/`
// next to the API (same origin, so the page talks to Belfry at `location.origin`).
//
// The SDK is used from source (../clients/js/src) rather than as a built package, so a clean
// clone builds with nothing but `npm ci && npm run build` here, in any order relative to the SDK.
// `dedupe` makes the SDK's own `import "react"` resolve to this app's copy: two Reacts on one
// page would break hooks.
import { fileURLToPath } from "node:url";

import { defineConfig, searchForWorkspaceRoot } from "vite";

const sdk = (path: string) => fileURLToPath(new URL(`../clients/js/src/${path}`, import.meta.url));
const belfry = process.env.BELFRY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  esbuild: { jsx: "automatic" },
  // The SDK's service worker is copied to dist/belfry-sw.js (served at /belfry-sw.js).
  publicDir: fileURLToPath(new URL("../clients/js/sw", import.meta.url)),
  resolve: {
    alias: [
      { find: /^belfry\/react$/, replacement: sdk("react/index.ts") },
      { find: /^belfry$/, replacement: sdk("core/index.ts") },
    ],
    dedupe: ["react", "react-dom"],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The binary serves `/` and `/assets/*` only.
    assetsDir: "assets",
    assetsInlineLimit: 0,
  },
  // `npm run dev`: the page on Vite's server, the API proxied to a running `belfry demo`.
  server: {
    fs: { allow: [searchForWorkspaceRoot(process.cwd()), sdk("")] },
    proxy: {
      "/v1": { target: belfry, ws: true },
      "/demo/api": { target: belfry },
    },
  },
});
