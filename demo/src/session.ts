// Who is signed in, per tab: `?user=<id>` in the URL wins (tests and shared links use it), then
// sessionStorage, which survives a reload but not a new tab, so two tabs can be two users.
// The URL is kept in step with the choice so a reload or a copied link keeps the same user.
// `?page=todo` picks the shared todo list instead of the blog, the same way.

const KEY = "belfry-demo:user";

export function initialUserId(): string | null {
  const fromUrl = new URLSearchParams(window.location.search).get("user");
  if (fromUrl) {
    sessionStorage.setItem(KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(KEY);
}

export function rememberUserId(id: string | null): void {
  if (id) sessionStorage.setItem(KEY, id);
  else sessionStorage.removeItem(KEY);
  const url = new URL(window.location.href);
  if (id) url.searchParams.set("user", id);
  else url.searchParams.delete("user");
  window.history.replaceState(null, "", url);
}

/** The pages of the demo, chosen by `?page=` (the blog when absent). */
export type Page = "blog" | "todo";

export function currentPage(): Page {
  return new URLSearchParams(window.location.search).get("page") === "todo" ? "todo" : "blog";
}

/** The URL of `page`, keeping the other parameters (the signed-in user). */
export function pageUrl(page: Page): string {
  const url = new URL(window.location.href);
  if (page === "blog") url.searchParams.delete("page");
  else url.searchParams.set("page", page);
  return `${url.pathname}${url.search}${url.hash}`;
}
