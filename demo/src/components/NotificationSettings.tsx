// "Notification settings": the signed-in user's Belfry preferences, through usePreferences. A
// change shows at once and is saved by the SDK; another tab of the same user follows through the
// server's `preferences` frame. A muted notification is still stored (read, marked muted), so it
// shows up in the bell's list after a reload, but it never arrives live and is never pushed.
import type { PreferenceChannel, Preferences, PreferencesPatch } from "belfry";
import { usePreferences } from "belfry/react";
import { useEffect, useId, useRef, useState } from "react";

const TYPES: { type: string; label: string }[] = [
  { type: "post.liked", label: "Likes on my posts" },
  { type: "comment.created", label: "Comments on my posts" },
];

const CHANNELS: { channel: PreferenceChannel; label: string }[] = [
  { channel: "in_app", label: "In the app" },
  { channel: "web_push", label: "Web push" },
];

const HOUR_MS = 3_600_000;

/** The type's own setting for the channel, else the default for every type. */
function delivered(p: Preferences, type: string, channel: PreferenceChannel): boolean {
  return p.types[type]?.[channel] ?? p.channels[channel];
}

/** `mute_until` when it is still ahead, re-rendering the moment it passes. */
function useMutedUntil(muteUntil: string | null): Date | null {
  const [, setTick] = useState(0);
  const at = muteUntil ? Date.parse(muteUntil) : NaN;
  const ahead = Number.isFinite(at) && at > Date.now();
  useEffect(() => {
    if (!ahead) return;
    const timer = setTimeout(() => setTick((t) => t + 1), Math.min(at - Date.now() + 50, 2 ** 31 - 1));
    return () => clearTimeout(timer);
  }, [ahead, at]);
  return ahead ? new Date(at) : null;
}

export function NotificationSettings() {
  const { preferences, loading, saving, error, update, isMuted } = usePreferences();
  const [open, setOpen] = useState(false);
  // Whether a change made here was saved: the SDK's promise says so (the store's `saving` may
  // be true for too short a time for a render to see it).
  const [savedOnce, setSavedOnce] = useState(false);
  const buttonRef = useRef<HTMLButtonElement>(null);
  const panelId = useId();
  const titleId = useId();
  const mutedUntil = useMutedUntil(preferences?.mute_until ?? null);
  const mutedNow = isMuted();

  const change = (patch: PreferencesPatch) => {
    update(patch).then(
      () => setSavedOnce(true),
      () => undefined, // shown through `error`
    );
  };

  // One popover at a time: a click anywhere else (the bell, a page tab) closes it, and so does
  // going to another page with the browser's back and forward.
  const rootRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.key !== "Escape") return;
      setOpen(false);
      buttonRef.current?.focus();
    };
    const onPointerDown = (event: Event) => {
      if (rootRef.current && !rootRef.current.contains(event.target as Node)) setOpen(false);
    };
    const onPopState = () => setOpen(false);
    document.addEventListener("keydown", onKey);
    document.addEventListener("mousedown", onPointerDown);
    document.addEventListener("touchstart", onPointerDown);
    window.addEventListener("popstate", onPopState);
    return () => {
      document.removeEventListener("keydown", onKey);
      document.removeEventListener("mousedown", onPointerDown);
      document.removeEventListener("touchstart", onPointerDown);
      window.removeEventListener("popstate", onPopState);
    };
  }, [open]);

  const state = error ? "error" : saving ? "saving" : loading && !preferences ? "loading" : savedOnce ? "saved" : "idle";
  const statusText = {
    error: error ? `Not saved: ${error.message}` : "",
    saving: "Saving…",
    loading: "Loading…",
    saved: "Saved",
    idle: "",
  }[state];

  return (
    <div className="settings" ref={rootRef}>
      <button
        ref={buttonRef}
        type="button"
        className="settings-button"
        data-testid="settings-toggle"
        aria-expanded={open}
        aria-controls={open ? panelId : undefined}
        onClick={() => setOpen((o) => !o)}
      >
        Settings
        {mutedNow && (
          <span className="tag" data-testid="muted-indicator">
            muted
          </span>
        )}
      </button>
      {open && (
        <section id={panelId} className="settings-panel" data-testid="settings-panel" aria-labelledby={titleId}>
          <h2 id={titleId}>Notification settings</h2>
          {!preferences ? (
            <p className="muted">{error ? `Cannot load your settings: ${error.message}` : "Loading…"}</p>
          ) : (
            <>
              <label className="settings-row">
                <input
                  type="checkbox"
                  data-testid="pref-muted"
                  checked={preferences.muted}
                  onChange={(e) => change({ muted: e.target.checked })}
                />
                Mute all notifications
              </label>
              <div className="settings-row">
                {mutedUntil ? (
                  <>
                    <span data-testid="pref-mute-until">
                      Muted until {mutedUntil.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}
                    </span>
                    <button type="button" className="link" data-testid="pref-unmute" onClick={() => change({ muted: false, mute_until: null })}>
                      Unmute
                    </button>
                  </>
                ) : (
                  <button type="button" data-testid="pref-mute-hour" onClick={() => change({ mute_until: new Date(Date.now() + HOUR_MS) })}>
                    Mute for 1 hour
                  </button>
                )}
              </div>
              <table className="settings-table">
                <caption className="sr-only">Which notifications to get, and where</caption>
                <thead>
                  <tr>
                    <th scope="col">Notify me about</th>
                    {CHANNELS.map((c) => (
                      <th scope="col" key={c.channel}>
                        {c.label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {TYPES.map((t) => (
                    <tr key={t.type}>
                      <th scope="row">{t.label}</th>
                      {CHANNELS.map((c) => (
                        <td key={c.channel}>
                          <input
                            type="checkbox"
                            data-testid={`pref-${t.type}-${c.channel}`}
                            aria-label={`${t.label}: ${c.label}`}
                            checked={delivered(preferences, t.type, c.channel)}
                            onChange={(e) => change({ types: { [t.type]: { [c.channel]: e.target.checked } } })}
                          />
                        </td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
              {mutedNow && <p className="hint small">While muted, notifications are still kept (the bell lists them after a reload), but nothing arrives live or as a push.</p>}
            </>
          )}
          <p className={state === "error" ? "error small" : "muted small"} data-testid="settings-status" data-state={state} role="status">
            {statusText}
          </p>
        </section>
      )}
    </div>
  );
}
