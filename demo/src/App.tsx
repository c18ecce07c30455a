import type { BelfryClientOptions } from "belfry";
import { BelfryProvider } from "belfry/react";
import { useEffect, useMemo, useState } from "react";

import { fetchToken, listUsers, tokenSource, type User } from "./api.ts";
import { Header } from "./components/Header.tsx";
import { PostList } from "./components/PostList.tsx";
import { TodoPage } from "./components/TodoPage.tsx";
import { ServiceWorkerBridge } from "./ServiceWorkerBridge.tsx";
import { currentPage, initialUserId, pageUrl, rememberUserId, type Page } from "./session.ts";

export function App() {
  const [users, setUsers] = useState<User[]>([]);
  const [userId, setUserId] = useState<string | null>(initialUserId);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [pageName, setPageName] = useState<Page>(currentPage);

  useEffect(() => {
    const onPopState = () => setPageName(currentPage());
    window.addEventListener("popstate", onPopState);
    return () => window.removeEventListener("popstate", onPopState);
  }, []);

  const navigate = (page: Page) => {
    if (page === pageName) return;
    window.history.pushState(null, "", pageUrl(page));
    setPageName(page);
  };

  useEffect(() => {
    listUsers()
      .then(setUsers)
      .catch((e: unknown) => setLoadError(`Cannot reach the demo server: ${String(e)}`));
  }, []);

  const signIn = (id: string | null) => {
    rememberUserId(id);
    setUserId(id);
  };

  // An unknown ?user= (a typo, a stale tab) signs out rather than retrying a refused token forever.
  useEffect(() => {
    if (userId && users.length > 0 && !users.some((u) => u.id === userId)) signIn(null);
  }, [users, userId]);

  const user = userId ? (users.find((u) => u.id === userId) ?? { id: userId, name: userId }) : null;
  const blogToken = useMemo(() => (userId ? tokenSource(userId) : null), [userId]);
  const options = useMemo<BelfryClientOptions | null>(
    () =>
      userId
        ? {
            url: window.location.origin,
            getToken: async () => (await fetchToken(userId)).token,
          }
        : null,
    [userId],
  );

  const page = (
    <>
      <Header users={users} user={user} onSignIn={signIn} live={options !== null} page={pageName} onNavigate={navigate} />
      <main>
        {loadError && <p role="alert" className="error">{loadError}</p>}
        {pageName === "blog" && <h1 className="page-title">Latest posts</h1>}
        {pageName === "blog" && <PostList users={users} user={user} getToken={blogToken} live={options !== null} />}
        {pageName === "todo" &&
          (user && options ? (
            <TodoPage users={users} user={user} />
          ) : (
            <p className="hint">Sign in as someone above to join the shared todo list. Open a second window as another user to edit it together.</p>
          ))}
      </main>
    </>
  );

  // One Belfry connection per tab and user: keyed by user, so switching starts over cleanly.
  return options ? (
    <BelfryProvider key={userId} options={options}>
      <ServiceWorkerBridge />
      {page}
    </BelfryProvider>
  ) : (
    page
  );
}
