// A drop-in notification bell: a button with an unread badge that opens a panel listing the
// user's notifications. Unstyled apart from the few inline styles that make a popup a popup
// (turn those off with `unstyled`); every part takes a class name. Accessible: the button says
// how many are unread and whether the panel is open, Escape and outside clicks close it (Escape
// returns focus to the button), arrow keys move between items, and new notifications are
// announced politely to screen readers. Grouped items (several events merged into one) say so
// by default: who did it ("Alice and 2 others") or how many times; muted items, which only
// history pages contain, look like read ones.

import {
  useCallback,
  useEffect,
  useId,
  useRef,
  useState,
  type CSSProperties,
  type FocusEvent,
  type KeyboardEvent,
  type ReactNode,
} from "react";

import { formatActors } from "../core/actors.js";
import { isUnread } from "../core/store.js";
import type { Notification } from "../core/types.js";
import { useNotifications } from "../react/useNotifications.js";
import { formatRelativeTime } from "./relativeTime.js";

export interface NotificationBellClassNames {
  root?: string;
  button?: string;
  badge?: string;
  panel?: string;
  header?: string;
  title?: string;
  markAll?: string;
  list?: string;
  item?: string;
  itemUnread?: string;
  /** Added to `item` for a muted notification (stored while the user muted it; always read). */
  itemMuted?: string;
  itemButton?: string;
  /** The default content's "Alice and 2 others" / "×3" part of a grouped item. */
  group?: string;
  time?: string;
  empty?: string;
  loadMore?: string;
}

export interface RenderItemHelpers {
  unread: boolean;
  /** Stored while the user muted it (`notification.muted`); such items are read. */
  muted: boolean;
  /** "2 min. ago", from `updated_at` (the latest merged event) or else `created_at`. */
  relativeTime: string;
  markRead: () => void;
}

export interface NotificationBellProps {
  /**
   * Renders one notification's content from its `type` and `data` (the default shows
   * `data.title`, `data.message` or the type, and for a grouped item its actors or count).
   * Grouped items carry `count`, `actors` and `actor_count`; `formatActors(n)` words them.
   */
  renderItem?: (notification: Notification, helpers: RenderItemHelpers) => ReactNode;
  /** Called when an item is activated, after it is marked read. */
  onItemClick?: (notification: Notification) => void;
  classNames?: NotificationBellClassNames;
  /** Drop the minimal inline positioning styles. */
  unstyled?: boolean;
  /** Accessible name of the button and panel. Default "Notifications". */
  label?: string;
  /** The button's content. Default: a bell icon. */
  icon?: ReactNode;
  emptyText?: ReactNode;
  /** Counts above this show as "99+" (with the default 99). */
  maxBadgeCount?: number;
  /** Locale for relative times; the browser's by default. */
  locale?: string;
  /** Mark the listed notifications seen when the panel opens. Default true. */
  markSeenOnOpen?: boolean;
}

const styles: Record<"root" | "button" | "badge" | "panel" | "list" | "srOnly", CSSProperties> = {
  root: { position: "relative", display: "inline-block" },
  button: { position: "relative" },
  badge: {
    position: "absolute",
    top: "-0.4em",
    right: "-0.4em",
    minWidth: "1.4em",
    padding: "0 0.3em",
    borderRadius: "0.7em",
    fontSize: "0.75em",
    lineHeight: "1.4em",
    textAlign: "center",
    background: "#d93025",
    color: "#fff",
  },
  panel: {
    position: "absolute",
    right: 0,
    top: "calc(100% + 0.5em)",
    zIndex: 1000,
    width: "22em",
    maxHeight: "28em",
    overflowY: "auto",
    background: "#fff",
    color: "#111",
    border: "1px solid #ddd",
    borderRadius: "0.5em",
    boxShadow: "0 4px 16px rgba(0,0,0,.12)",
  },
  list: { listStyle: "none", margin: 0, padding: 0 },
  srOnly: {
    position: "absolute",
    width: 1,
    height: 1,
    margin: -1,
    padding: 0,
    overflow: "hidden",
    clip: "rect(0 0 0 0)",
    whiteSpace: "nowrap",
    border: 0,
  },
};

const BellIcon = () => (
  <svg aria-hidden="true" focusable="false" width="1.25em" height="1.25em" viewBox="0 0 24 24" fill="currentColor">
    <path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z" />
  </svg>
);

function defaultContent(n: Notification, groupClass: string | undefined): ReactNode {
  const data = (n.data ?? {}) as Record<string, unknown>;
  const text = ([data.title, data.message, data.body].find((v) => typeof v === "string") as string | undefined) ?? n.type;
  const count = n.count ?? 1;
  if (count <= 1) return text;
  const named = (n.actors ?? []).length > 0;
  return (
    <>
      {text}{" "}
      <span className={groupClass} data-testid="belfry-item-group">
        {named ? (
          `(${formatActors(n)})`
        ) : (
          <>
            <span aria-hidden="true">×{count}</span>
            <span style={styles.srOnly}>({count} times)</span>
          </>
        )}
      </span>
    </>
  );
}

/** "3", or "99+" above `max`. */
export function badgeText(count: number, max = 99): string {
  return count > max ? `${max}+` : String(count);
}

export function NotificationBell(props: NotificationBellProps) {
  const {
    renderItem,
    onItemClick,
    classNames: cn = {},
    unstyled = false,
    label = "Notifications",
    icon,
    emptyText = "No notifications yet",
    maxBadgeCount = 99,
    locale,
    markSeenOnOpen = true,
  } = props;
  const { notifications, unreadCount, hasMore, loadingMore, markRead, markSeen, markAllRead, loadMore } =
    useNotifications();
  const [open, setOpen] = useState(false);
  const [now, setNow] = useState(() => Date.now());
  const rootRef = useRef<HTMLDivElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const panelRef = useRef<HTMLDivElement>(null);
  const panelId = useId();
  const titleId = useId();
  const style = (key: keyof typeof styles) => (unstyled ? undefined : styles[key]);

  const close = useCallback((returnFocus: boolean) => {
    setOpen(false);
    if (returnFocus) buttonRef.current?.focus();
  }, []);

  // Outside clicks close the panel (focus stays where the user clicked); Escape closes it from
  // anywhere on the page and returns focus to the button.
  useEffect(() => {
    if (!open) return;
    const onPointerDown = (event: Event) => {
      if (rootRef.current && !rootRef.current.contains(event.target as Node)) close(false);
    };
    const onKey = (event: globalThis.KeyboardEvent) => {
      if (event.key === "Escape") close(true);
    };
    document.addEventListener("mousedown", onPointerDown);
    document.addEventListener("touchstart", onPointerDown);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onPointerDown);
      document.removeEventListener("touchstart", onPointerDown);
      document.removeEventListener("keydown", onKey);
    };
  }, [open, close]);

  // While open: focus the panel, keep relative times fresh, and mark what is shown as seen.
  useEffect(() => {
    if (!open) return;
    panelRef.current?.focus();
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, [open]);

  useEffect(() => {
    if (!open || !markSeenOnOpen) return;
    const unseen = notifications.filter((n) => n.seen_at == null).map((n) => n.id);
    if (unseen.length > 0) markSeen(unseen);
  }, [open, markSeenOnOpen, notifications, markSeen]);

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (!open || !["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) return;
    const items = Array.from(panelRef.current?.querySelectorAll<HTMLElement>("[data-belfry-item-button]") ?? []);
    if (items.length === 0) return;
    event.preventDefault();
    const at = items.indexOf(document.activeElement as HTMLElement);
    const next =
      event.key === "Home" ? 0
      : event.key === "End" ? items.length - 1
      : event.key === "ArrowDown" ? (at + 1) % items.length
      : (at <= 0 ? items.length : at) - 1;
    items[next]?.focus();
  };

  // Focus leaving the whole widget (Tab past the last item) closes it like an outside click.
  const onBlur = (event: FocusEvent<HTMLDivElement>) => {
    const next = event.relatedTarget as Node | null;
    if (open && next && rootRef.current && !rootRef.current.contains(next)) close(false);
  };

  const buttonLabel = unreadCount > 0 ? `${label} (${unreadCount} unread)` : label;

  return (
    <div ref={rootRef} className={cn.root} style={style("root")} onKeyDown={onKeyDown} onBlur={onBlur}>
      <button
        ref={buttonRef}
        type="button"
        className={cn.button}
        style={style("button")}
        aria-label={buttonLabel}
        aria-expanded={open}
        aria-haspopup="dialog"
        aria-controls={open ? panelId : undefined}
        data-testid="belfry-bell"
        onClick={() => setOpen((o) => !o)}
      >
        {icon ?? <BellIcon />}
        {unreadCount > 0 && (
          <span className={cn.badge} style={style("badge")} aria-hidden="true" data-testid="belfry-badge">
            {badgeText(unreadCount, maxBadgeCount)}
          </span>
        )}
      </button>
      <span role="status" style={styles.srOnly}>
        {unreadCount > 0 ? `${unreadCount} unread notification${unreadCount === 1 ? "" : "s"}` : ""}
      </span>
      {open && (
        <div
          ref={panelRef}
          id={panelId}
          role="dialog"
          aria-labelledby={titleId}
          tabIndex={-1}
          className={cn.panel}
          style={style("panel")}
          data-testid="belfry-panel"
        >
          <div className={cn.header}>
            <h2 id={titleId} className={cn.title} style={unstyled ? undefined : { fontSize: "1em", margin: "0.5em" }}>
              {label}
            </h2>
            <button
              type="button"
              className={cn.markAll}
              data-testid="belfry-mark-all"
              disabled={unreadCount === 0}
              onClick={() => markAllRead()}
            >
              Mark all read
            </button>
          </div>
          {notifications.length === 0 ? (
            <p className={cn.empty}>{emptyText}</p>
          ) : (
            <ul role="list" className={cn.list} style={style("list")}>
              {notifications.map((n) => {
                const muted = n.muted === true;
                const unread = isUnread(n, now);
                const at = n.updated_at ?? n.created_at;
                const relativeTime = formatRelativeTime(at, { now, locale });
                const activate = () => {
                  if (unread) markRead([n.id]);
                  onItemClick?.(n);
                };
                return (
                  <li
                    key={n.id}
                    className={[cn.item, unread ? cn.itemUnread : undefined, muted ? cn.itemMuted : undefined].filter(Boolean).join(" ") || undefined}
                    data-testid="belfry-item"
                    data-unread={unread ? "true" : "false"}
                    data-muted={muted ? "true" : undefined}
                    data-count={(n.count ?? 1) > 1 ? String(n.count) : undefined}
                  >
                    <button
                      type="button"
                      className={cn.itemButton}
                      data-belfry-item-button=""
                      onClick={activate}
                      style={unstyled ? undefined : { display: "block", width: "100%", textAlign: "left", fontWeight: unread ? 600 : 400 }}
                    >
                      {unread && <span style={styles.srOnly}>Unread: </span>}
                      {renderItem ? renderItem(n, { unread, muted, relativeTime, markRead: () => markRead([n.id]) }) : defaultContent(n, cn.group)}{" "}
                      <time className={cn.time} dateTime={at} title={new Date(at).toLocaleString(locale)}>
                        {relativeTime}
                      </time>
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
          {hasMore && (
            <button
              type="button"
              className={cn.loadMore}
              data-testid="belfry-load-more"
              disabled={loadingMore}
              onClick={() => loadMore()}
            >
              {loadingMore ? "Loading…" : "Show older"}
            </button>
          )}
        </div>
      )}
    </div>
  );
}
