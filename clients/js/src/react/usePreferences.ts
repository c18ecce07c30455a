// usePreferences: the user's notification preferences for a settings screen, over the core
// PreferencesStore through useSyncExternalStore (the store is the only copy, and `preferences`
// frames keep every tab's copy current). Loads them on first use.

import { useCallback, useEffect, useMemo, useSyncExternalStore } from "react";

import type { BelfryError } from "../core/errors.js";
import { isMuted as mutedBy, type PreferencesPatch } from "../core/preferences.js";
import type { PreferenceChannel, Preferences } from "../core/types.js";
import { useBelfryClient } from "./context.js";

export interface UsePreferencesResult {
  /** The user's preferences, with changes being saved already applied; null until loaded. */
  preferences: Preferences | null;
  loaded: boolean;
  /** The preferences are being read from the server. */
  loading: boolean;
  /** A change is being saved. */
  saving: boolean;
  /** The last failed load or save (a BelfryError; `fields` names bad values), or null. */
  error: BelfryError | null;
  /**
   * Changes some preferences and keeps the rest. Shown at once; resolves with what the server
   * stored, or rejects (and the change disappears again, and `error` says why). Ignoring the
   * promise is fine.
   */
  update: (patch: PreferencesPatch) => Promise<Preferences>;
  /** Reads them from the server again. */
  reload: () => Promise<Preferences>;
  /** Whether `type` is muted for `channel` (default `in_app`) right now; see `isMuted`. */
  isMuted: (type?: string, channel?: PreferenceChannel) => boolean;
}

const ignore = () => undefined;

export function usePreferences(): UsePreferencesResult {
  const client = useBelfryClient();
  const store = client.preferences;
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);

  useEffect(() => {
    if (!store.loaded) store.load().catch(ignore);
  }, [store]);

  const update = useCallback(
    (patch: PreferencesPatch) => {
      const saved = store.update(patch);
      saved.catch(ignore); // the failure is in `error`; awaiting callers still see it
      return saved;
    },
    [store],
  );
  const reload = useCallback(() => {
    const loaded = store.load();
    loaded.catch(ignore);
    return loaded;
  }, [store]);
  const preferences = snapshot.preferences;
  const isMuted = useCallback(
    (type?: string, channel?: PreferenceChannel) => mutedBy(preferences, { type, channel }),
    [preferences],
  );

  return useMemo(
    () => ({
      preferences,
      loaded: snapshot.loaded,
      loading: snapshot.loading,
      saving: snapshot.saving,
      error: snapshot.error,
      update,
      reload,
      isMuted,
    }),
    [snapshot, preferences, update, reload, isMuted],
  );
}
