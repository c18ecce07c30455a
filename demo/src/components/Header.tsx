import { NotificationBell } from "belfry/react";

import type { User } from "../api.ts";
import { describeNotification } from "../describe.ts";
import { pageUrl, type Page } from "../session.ts";
import { ConnectionStatus } from "./ConnectionStatus.tsx";
import { NotificationSettings } from "./NotificationSettings.tsx";

interface Props {
  users: User[];
  user: User | null;
  onSignIn: (id: string | null) => void;
  /** True inside a BelfryProvider (someone is signed in). */
  live: boolean;
  page: Page;
  onNavigate: (page: Page) => void;
}

const PAGES: { page: Page; label: string }[] = [
  { page: "blog", label: "Blog" },
  { page: "todo", label: "Todo" },
];

function showPost(postId: unknown) {
  const post = document.getElementById(`post-${String(postId)}`);
  if (!post) return;
  post.scrollIntoView({ behavior: "smooth", block: "center" });
  post.classList.remove("flash");
  void post.offsetWidth; // restart the highlight animation
  post.classList.add("flash");
}

export function Header({ users, user, onSignIn, live, page, onNavigate }: Props) {
  return (
    <header className="site-header">
      <div className="brand">
        <svg aria-hidden="true" focusable="false" width="1.1em" height="1.1em" viewBox="0 0 24 24" fill="currentColor">
          <path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z" />
        </svg>{" "}
        <span className="brand-name">Belfry</span> <span className="muted">demo</span>
      </div>
      <nav className="pages" aria-label="Pages">
        {PAGES.map((p) => (
          <a
            key={p.page}
            href={pageUrl(p.page)}
            data-testid={`nav-${p.page}`}
            aria-current={page === p.page ? "page" : undefined}
            onClick={(event) => {
              if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
              event.preventDefault();
              onNavigate(p.page);
            }}
          >
            {p.label}
          </a>
        ))}
      </nav>
      <nav className="switcher" aria-label="Sign in as">
        <span className="muted switcher-label" aria-hidden="true">
          Sign in as
        </span>
        {users.map((u) => (
          <button
            key={u.id}
            type="button"
            data-testid={`signin-${u.id}`}
            aria-pressed={user?.id === u.id}
            onClick={() => onSignIn(u.id)}
          >
            <span className="sr-only">Sign in as </span>
            {u.name}
          </button>
        ))}
        {user && (
          <button type="button" className="link" onClick={() => onSignIn(null)}>
            Sign out
          </button>
        )}
      </nav>
      <div className="session">
        {user ? (
          <span className="signed-in">
            <span className="wide-only">Signed in as </span>
            <strong data-testid="current-user">{user.name}</strong>
          </span>
        ) : (
          <span className="muted">Not signed in</span>
        )}
        {live ? (
          <ConnectionStatus />
        ) : (
          <span className="status" data-testid="connection-status" data-status="signed-out">
            Signed out
          </span>
        )}
        {/* Keyed by page: going to another page closes the settings panel. */}
        {live && <NotificationSettings key={page} />}
        {live && (
          <NotificationBell
            classNames={{
              root: "bell",
              button: "bell-button",
              badge: "bell-badge",
              panel: "bell-panel",
              header: "bell-header",
              title: "bell-title",
              markAll: "link",
              list: "bell-list",
              item: "bell-item",
              itemUnread: "unread",
              itemMuted: "muted-item",
              itemButton: "bell-item-button",
              time: "muted",
              empty: "bell-empty",
              loadMore: "link bell-more",
            }}
            unstyled
            renderItem={(n, { muted }) => (
              <>
                {describeNotification(n)}
                {muted && <span className="tag">muted</span>}
              </>
            )}
            onItemClick={(n) => showPost(n.data.post_id)}
            emptyText="Nothing yet. When someone likes or comments on your posts, it shows up here."
          />
        )}
      </div>
    </header>
  );
}
