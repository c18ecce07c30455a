// Endpoint URLs from the `url` option: an absolute http(s) URL of the Belfry server, possibly
// with a path prefix behind a reverse proxy, or a path ("" or "/belfry") on the page's origin.

export type Query = Record<string, string | number | undefined>;

function base(url: string): string {
  let absolute = url;
  if (!/^(https?|wss?):\/\//i.test(url)) {
    const here = (globalThis as { location?: { href?: string } }).location?.href;
    if (!here) throw new Error(`belfry: url "${url}" is relative and there is no page location to resolve it against`);
    absolute = new URL(url || "/", here).toString();
  }
  return absolute.replace(/\/+$/, "");
}

function withQuery(url: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${url}?${text}` : url;
}

export function httpUrl(url: string, path: string, query?: Query): string {
  return withQuery(base(url).replace(/^ws(s?):/i, "http$1:") + path, query);
}

export function wsUrl(url: string, path: string, query?: Query): string {
  return withQuery(base(url).replace(/^http(s?):/i, "ws$1:") + path, query);
}
