// Serves a small web app that uses the built SDK (clients/js/dist, `npm run build` there) and
// belfry/styles.css from a loopback origin of its own, for cross-origin tests: the bundle is
// made with esbuild (one React, aliased), the page is `/`, and `/token` mints a user token the
// way an app backend would (here by asking the demo's token endpoint, server to server).
import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const E2E = resolve(import.meta.dirname, "..");
const SDK = resolve(E2E, "..", "clients", "js");

async function bundle() {
  const dist = join(SDK, "dist", "react", "index.js");
  if (!existsSync(dist)) throw new Error(`${dist} is missing: run \`npm run build\` in clients/js`);
  const out = mkdtempSync(join(tmpdir(), "belfry-sdk-page-"));
  await build({
    entryPoints: [join(E2E, "fixtures", "bell-page", "app.jsx")],
    bundle: true,
    format: "esm",
    jsx: "automatic",
    outdir: out,
    logLevel: "error",
    define: { "process.env.NODE_ENV": '"production"' },
    alias: {
      "belfry/react": dist,
      "belfry/styles.css": join(SDK, "styles.css"),
      belfry: join(SDK, "dist", "core", "index.js"),
      react: join(E2E, "node_modules", "react"),
      "react-dom": join(E2E, "node_modules", "react-dom"),
    },
  });
  return { js: readFileSync(join(out, "app.js")), css: readFileSync(join(out, "app.css")) };
}

const HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Belfry on another origin</title><link rel="stylesheet" href="/app.css"></head>
<body style="margin:0;font-family:sans-serif"><div id="root"></div><script type="module" src="/app.js"></script></body></html>`;

/** Starts the page's server on `port` of 127.0.0.1; `tokenFrom` is the Belfry minting tokens. */
export async function startSdkPage(port, tokenFrom) {
  const { js, css } = await bundle();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://page");
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end(HTML);
    } else if (url.pathname === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    } else if (url.pathname === "/app.css") {
      res.writeHead(200, { "content-type": "text/css" }).end(css);
    } else if (url.pathname === "/token") {
      const token = await tokenFrom.token(url.searchParams.get("user"));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return {
    origin: `http://127.0.0.1:${port}`,
    url(query) {
      return `http://127.0.0.1:${port}/?${new URLSearchParams(query)}`;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
