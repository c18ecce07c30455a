// A drop-in notification bell: a button with an unread badge that opens a panel listing the
// user's notifications. Every part carries a stable class (`belfry-bell`, `belfry-bell__panel`,
// …; see README) that `belfry/styles.css` styles and themes with CSS custom properties; without
// the stylesheet a few inline styles, reading the same properties, make a popup a popup (turn
// them off with `unstyled`), and every part takes extra class names. The panel stays inside the
// viewport wherever the bell sits (it shifts sideways, narrows, and opens upwards when there is
// no room below). When Belfry cannot be reached or refuses the token, the bell says so (an
// error mark, a label, a message in the panel) and `onError` is called, instead of looking like
// "no notifications". Accessible: the button says
// how many are unread and whether the panel is open, Escape and outside clicks close it (Escape
// returns focus to the button), arrow keys move between items, and new notifications are
// announced politely to screen readers. Grouped items (several events merged into one) say so
// by default: who did it ("Alice and 2 others") or how many times; muted items, which only
// history pages contain, look like read ones.

import {
  useCallback,
  useEffect,
  useId,
  useLayoutEffect,
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
import { useBelfryClient } from "../react/context.js";
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
  /** The message shown in the panel while Belfry cannot be reached or refuses the token. */
  error?: string;
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
  /**
   * Called with each error the client reports (Belfry unreachable, the page's origin refused,
   * the token refused, a failed action). The bell shows its error state by itself while it is
   * not connected after an error.
   */
  onError?: (error: Error) => void;
  /** The panel's text while Belfry cannot be reached. Default "Notifications are unavailable". */
  errorText?: ReactNode;
}

/** Keeps `margin` px between the panel and the viewport's edges. */
const VIEWPORT_MARGIN = 8;

/** Stable class names of every part, styled by `belfry/styles.css`. */
export const bellClasses = {
  root: "belfry-bell",
  button: "belfry-bell__button",
  badge: "belfry-bell__badge",
  errorMark: "belfry-bell__error-mark",
  panel: "belfry-bell__panel",
  header: "belfry-bell__header",
  title: "belfry-bell__title",
  markAll: "belfry-bell__mark-all",
  list: "belfry-bell__list",
  item: "belfry-bell__item",
  itemUnread: "belfry-bell__item--unread",
  itemMuted: "belfry-bell__item--muted",
  itemButton: "belfry-bell__item-button",
  group: "belfry-bell__group",
  time: "belfry-bell__time",
  empty: "belfry-bell__empty",
  loadMore: "belfry-bell__load-more",
  error: "belfry-bell__error",
} as const;

const join = (...names: (string | undefined | false)[]) => names.filter(Boolean).join(" ") || undefined;

const styles: Record<"root" | "button" | "badge" | "errorMark" | "panel" | "list" | "srOnly", CSSProperties> = {
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
    background: "var(--belfry-badge-bg, #d93025)",
    color: "var(--belfry-badge-fg, #fff)",
  },
  errorMark: {
    position: "absolute",
    bottom: "-0.3em",
    right: "-0.3em",
    width: "1.1em",
    height: "1.1em",
    borderRadius: "50%",
    fontSize: "0.7em",
    lineHeight: "1.1em",
    textAlign: "center",
    fontWeight: 700,
    background: "var(--belfry-error, #b3261e)",
    color: "#fff",
  },
  panel: {
    position: "absolute",
    right: 0,
    top: "calc(100% + 0.5em)",
    zIndex: 1000,
    width: "22em",
    maxWidth: `calc(100vw - ${2 * VIEWPORT_MARGIN}px)`,
    maxHeight: "28em",
    overflowY: "auto",
    boxSizing: "border-box",
    background: "var(--belfry-surface, #fff)",
    color: "var(--belfry-text, #111)",
    border: "1px solid var(--belfry-border, #ddd)",
    borderRadius: "var(--belfry-radius, 0.5em)",
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

/** Where the panel goes: a sideways shift (px) and whether it opens above the button. */
interface Placement {
  shift: number;
  above: boolean;
}

/**
 * Measures the open panel and moves it inside the viewport: shifted sideways by what sticks out
 * (after its width was capped to the viewport's), and above the button when it does not fit
 * below but fits (better) above.
 */
function place(panel: HTMLElement, button: HTMLElement, current: Placement): Placement {
  const rect = panel.getBoundingClientRect();
  const width = document.documentElement.clientWidth || window.innerWidth;
  const height = window.innerHeight;
  const left = rect.left - current.shift;
  const right = rect.right - current.shift;
  let shift = 0;
  if (right > width - VIEWPORT_MARGIN) shift = width - VIEWPORT_MARGIN - right;
  if (left + shift < VIEWPORT_MARGIN) shift = VIEWPORT_MARGIN - left;
  const anchor = button.getBoundingClientRect();
  const roomBelow = height - anchor.bottom;
  const roomAbove = anchor.top;
  const above = rect.height + VIEWPORT_MARGIN > roomBelow && roomAbove > roomBelow;
  return { shift: Math.round(shift), above };
}
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
    onError,
    errorText = "Notifications are unavailable",
  } = props;
  const client = useBelfryClient();
  const { notifications, unreadCount, hasMore, loadingMore, markRead, markSeen, markAllRead, loadMore, status } =
    useNotifications();
  const [open, setOpen] = useState(false);
  const [placement, setPlacement] = useState<Placement>({ shift: 0, above: false });
  // The last error reported while not connected (Belfry down, this page's origin or the token
  // refused), until the next connection. Errors while connected (a failed action, the notice of
  // an SSE stream ending at its token's expiry) do not make the bell look broken.
  const [error, setError] = useState<Error | null>(null);
  const failed = error !== null && status !== "connected";
  const [now, setNow] = useState(() => Date.now());
  const rootRef = useRef<HTMLDivElement>(null);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const panelRef = useRef<HTMLDivElement>(null);
  const panelId = useId();
  const titleId = useId();
  const style = (key: keyof typeof styles) => (unstyled ? undefined : styles[key]);

  const onErrorRef = useRef(onError);
  onErrorRef.current = onError;
  useEffect(
    () =>
      client.on("error", (e) => {
        if (client.getSnapshot().status !== "connected") setError(e);
        onErrorRef.current?.(e);
      }),
    [client],
  );
  useEffect(() => {
    if (status === "connected") setError(null);
  }, [status]);

  // Keep the open panel on screen, now and when the window changes size or scrolls.
  useLayoutEffect(() => {
    if (!open || unstyled) return;
    const update = () => {
      const panel = panelRef.current;
      const button = buttonRef.current;
      if (!panel || !button) return;
      setPlacement((current) => {
        const next = place(panel, button, current);
        return next.shift === current.shift && next.above === current.above ? current : next;
      });
    };
    update();
    window.addEventListener("resize", update);
    window.addEventListener("scroll", update, true);
    return () => {
      window.removeEventListener("resize", update);
      window.removeEventListener("scroll", update, true);
    };
  }, [open, unstyled, notifications.length, failed]);

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

  // The name holds the badge's visible text outside parentheses, so voice control users can say
  // what they see (WCAG 2.5.3; axe's label-content-name-mismatch ignores parenthesised text).
  const shown = badgeText(unreadCount, maxBadgeCount);
  const buttonLabel = failed
    ? `${label} (unavailable)`
    : unreadCount === 0
      ? label
      : shown === String(unreadCount)
        ? `${label}, ${unreadCount} unread`
        : `${label}, ${shown} unread (${unreadCount})`;
  const panelStyle: CSSProperties | undefined = unstyled
    ? undefined
    : {
        ...styles.panel,
        ...(placement.shift !== 0 ? { transform: `translateX(${placement.shift}px)` } : {}),
        ...(placement.above ? { top: "auto", bottom: "calc(100% + 0.5em)" } : {}),
      };

  return (
    <div
      ref={rootRef}
      className={join(bellClasses.root, cn.root)}
      style={style("root")}
      onKeyDown={onKeyDown}
      onBlur={onBlur}
      data-state={failed ? "error" : status}
    >
      <button
        ref={buttonRef}
        type="button"
        className={join(bellClasses.button, cn.button)}
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
          <span className={join(bellClasses.badge, cn.badge)} style={style("badge")} aria-hidden="true" data-testid="belfry-badge">
            {badgeText(unreadCount, maxBadgeCount)}
          </span>
        )}
        {failed && (
          <span className={bellClasses.errorMark} style={style("errorMark")} aria-hidden="true" data-testid="belfry-error-mark">
            !
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
          className={join(bellClasses.panel, cn.panel)}
          style={panelStyle}
          data-testid="belfry-panel"
          data-placement={placement.above ? "above" : "below"}
        >
          <div className={join(bellClasses.header, cn.header)}>
            <h2 id={titleId} className={join(bellClasses.title, cn.title)} style={unstyled ? undefined : { fontSize: "1em", margin: "0.5em" }}>
              {label}
            </h2>
            <button
              type="button"
              className={join(bellClasses.markAll, cn.markAll)}
              data-testid="belfry-mark-all"
              disabled={unreadCount === 0}
              onClick={() => markAllRead()}
            >
              Mark all read
            </button>
          </div>
          {failed && (
            <p role="alert" className={join(bellClasses.error, cn.error)} data-testid="belfry-error">
              {errorText}
              <span className={bellClasses.time}> ({error.message})</span>
            </p>
          )}
          {notifications.length === 0 ? (
            !failed && <p className={join(bellClasses.empty, cn.empty)}>{emptyText}</p>
          ) : (
            <ul role="list" className={join(bellClasses.list, cn.list)} style={style("list")}>
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
                    className={join(
                      bellClasses.item,
                      cn.item,
                      unread && bellClasses.itemUnread,
                      unread && cn.itemUnread,
                      muted && bellClasses.itemMuted,
                      muted && cn.itemMuted,
                    )}
                    data-testid="belfry-item"
                    data-unread={unread ? "true" : "false"}
                    data-muted={muted ? "true" : undefined}
                    data-count={(n.count ?? 1) > 1 ? String(n.count) : undefined}
                  >
                    <button
                      type="button"
                      className={join(bellClasses.itemButton, cn.itemButton)}
                      data-belfry-item-button=""
                      onClick={activate}
                      style={unstyled ? undefined : { display: "block", width: "100%", textAlign: "left", fontWeight: unread ? 600 : 400 }}
                    >
                      {unread && <span style={styles.srOnly}>Unread: </span>}
                      {renderItem ? renderItem(n, { unread, muted, relativeTime, markRead: () => markRead([n.id]) }) : defaultContent(n, join(bellClasses.group, cn.group))}{" "}
                      <time className={join(bellClasses.time, cn.time)} dateTime={at} title={new Date(at).toLocaleString(locale)}>
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
              className={join(bellClasses.loadMore, cn.loadMore)}
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
