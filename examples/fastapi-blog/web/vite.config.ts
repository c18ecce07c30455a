// The blog's page, built into dist/ and served by the FastAPI app. The SDK comes from source
// (../../../clients/js/src), as in demo/, so nothing needs publishing first; `dedupe` keeps one React.
import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

const sdk = (path: string) => fileURLToPath(new URL(`../../../clients/js/src/${path}`, import.meta.url));

export default defineConfig({
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: [
      { find: /^belfry\/react$/, replacement: sdk("react/index.ts") },
      { find: /^belfry$/, replacement: sdk("core/index.ts") },
    ],
    dedupe: ["react", "react-dom"],
  },
  build: { outDir: "dist", emptyOutDir: true },
});
