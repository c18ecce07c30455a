// The user's preferences (global mute, mute until, channels per type) as a framework-free store:
// `getSnapshot()` + `subscribe()`, like the notifications store. It is fed by the answers to
// `GET`/`PUT /v1/me/preferences` and by `preferences` frames, which the server sends to every
// connection of the user after any change (another tab, another device, the app's backend).
//
// Ordering. Frames arrive in the order the server stored the changes; HTTP answers race them.
// So an HTTP answer is applied only when no frame arrived after its request was sent (the frames
// already said something at least as new), and a `GET` answer also gives way to a `PUT` answer
// that came after it was sent.
//
// Writes. The server stores whole objects, so a change (`update(patch)`) is applied to the
// server's latest value at the moment it is sent, and writes go out one at a time: changes made
// while one is on its way wait and leave together in the next. Until the server answers, the
// snapshot shows them applied; a refused write is dropped from the snapshot again.

import { BelfryError } from "./errors.js";
import type { PreferenceChannel, Preferences, TypePreferences } from "./types.js";

/** What the server answers for a user who never set anything. */
export const DEFAULT_PREFERENCES: Readonly<Preferences> = Object.freeze({
  muted: false,
  mute_until: null,
  channels: Object.freeze({ in_app: true, web_push: true }),
  types: Object.freeze({}),
});

/**
 * A change to some preferences; what it leaves out stays as it is. In `types`, `null` for a
 * channel removes that override (the type inherits `channels` again), and `null` for a type
 * removes all of its overrides.
 */
export interface PreferencesPatch {
  muted?: boolean;
  /** A time (a `Date` is sent as RFC 3339) or null to clear it. */
  mute_until?: string | Date | null;
  channels?: Partial<Record<PreferenceChannel, boolean>>;
  types?: Record<string, Partial<Record<PreferenceChannel, boolean | null>> | null>;
}

export interface PreferencesSnapshot {
  /**
   * The user's preferences, with the changes still being saved applied on top; null until
   * they were loaded (`load()`, or a `preferences` frame).
   */
  readonly preferences: Preferences | null;
  /** True once the server's preferences are known. */
  readonly loaded: boolean;
  /** A `GET` is running. */
  readonly loading: boolean;
  /** A change is being saved (or waits for the one being saved). */
  readonly saving: boolean;
  /** The last failure of a load or a save; cleared by the next success. */
  readonly error: BelfryError | null;
}

/** How the store reaches the server (the client's HTTP half). */
export interface PreferencesBackend {
  get(): Promise<Preferences>;
  put(preferences: Preferences): Promise<Preferences>;
}

interface Change {
  apply: (base: Preferences) => Preferences;
  resolve: (stored: Preferences) => void;
  reject: (error: BelfryError) => void;
}

/**
 * Fills in what a server answer or frame left out with the defaults. Fields this SDK does not
 * know are kept, so writing the object back never resets a newer server's settings.
 */
export function normalizePreferences(value: unknown): Preferences {
  const v = (value && typeof value === "object" ? value : {}) as Partial<Preferences>;
  return {
    ...v,
    muted: typeof v.muted === "boolean" ? v.muted : DEFAULT_PREFERENCES.muted,
    mute_until: typeof v.mute_until === "string" ? v.mute_until : null,
    channels: { ...DEFAULT_PREFERENCES.channels, ...(v.channels && typeof v.channels === "object" ? v.channels : {}) },
    types: { ...(v.types && typeof v.types === "object" ? v.types : {}) },
  };
}

/** `base` with `patch` applied (a new object; `base` is not changed). */
export function applyPreferencesPatch(base: Preferences, patch: PreferencesPatch): Preferences {
  const mute_until =
    patch.mute_until === undefined ? base.mute_until
    : patch.mute_until instanceof Date ? patch.mute_until.toISOString()
    : patch.mute_until;
  const channels = { ...base.channels };
  for (const [channel, on] of Object.entries(patch.channels ?? {})) {
    if (typeof on === "boolean") channels[channel as PreferenceChannel] = on;
  }
  const types: Record<string, TypePreferences> = { ...base.types };
  for (const [type, change] of Object.entries(patch.types ?? {})) {
    if (change === null) {
      delete types[type];
      continue;
    }
    const own: Record<string, boolean | undefined> = { ...types[type] };
    for (const [channel, on] of Object.entries(change)) {
      if (on === null) delete own[channel];
      else if (typeof on === "boolean") own[channel] = on;
    }
    if (Object.keys(own).length === 0) delete types[type];
    else types[type] = own as TypePreferences;
  }
  return { ...base, muted: patch.muted ?? base.muted, mute_until, channels, types };
}

/**
 * True when these preferences keep a notification from the user now: globally (`muted`, or
 * `mute_until` still ahead), or, given a `type`, because that type is off for `channel`
 * (`types[type][channel]`, else `channels[channel]`). `channel` is `in_app` (live delivery) by
 * default; `web_push` asks about pushes. Null preferences (not loaded) mute nothing.
 */
export function isMuted(
  preferences: Preferences | null | undefined,
  options: { type?: string; channel?: PreferenceChannel; now?: number } = {},
): boolean {
  if (!preferences) return false;
  const { type, channel = "in_app", now = Date.now() } = options;
  if (preferences.muted) return true;
  if (preferences.mute_until != null && Date.parse(preferences.mute_until) > now) return true;
  if (type === undefined) return false;
  const on = preferences.types[type]?.[channel] ?? preferences.channels[channel] ?? true;
  return !on;
}

export class PreferencesStore {
  /** The server's latest value, as far as this page knows. */
  private confirmed: Preferences | null = null;
  private queued: Change[] = [];
  private sending: Change[] | null = null;
  private loading: Promise<Preferences> | null = null;
  private error: BelfryError | null = null;
  /** Counts `preferences` frames and `PUT` answers, to tell which HTTP answers are stale. */
  private frames = 0;
  private writes = 0;
  private snapshot: PreferencesSnapshot | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly backend: PreferencesBackend) {}

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = (): PreferencesSnapshot => {
    if (!this.snapshot) {
      let shown = this.confirmed;
      if (shown) for (const change of [...(this.sending ?? []), ...this.queued]) shown = change.apply(shown);
      this.snapshot = {
        preferences: shown,
        loaded: this.confirmed !== null,
        loading: this.loading !== null,
        saving: this.sending !== null || this.queued.length > 0,
        error: this.error,
      };
    }
    return this.snapshot;
  };

  get loaded(): boolean {
    return this.confirmed !== null;
  }

  /** Reads the preferences from the server (one request at a time); resolves with them. */
  load(): Promise<Preferences> {
    if (this.loading) return this.loading;
    const frames = this.frames;
    const writes = this.writes;
    const loading = this.backend
      .get()
      .then(
        (value) => {
          if (this.frames === frames && this.writes === writes) this.confirmed = normalizePreferences(value);
          this.error = null;
          return this.confirmed ?? normalizePreferences(value);
        },
        (error: unknown) => {
          this.error = BelfryError.from(error);
          throw this.error;
        },
      )
      .finally(() => {
        this.loading = null;
        this.changed();
      });
    this.loading = loading;
    this.changed();
    return loading;
  }

  /** Changes some preferences; resolves with what the server stored. */
  update(patch: PreferencesPatch): Promise<Preferences> {
    return this.enqueue((base) => applyPreferencesPatch(base, patch));
  }

  /** Replaces all preferences; what `preferences` leaves out takes the defaults. */
  set(preferences: Partial<Preferences>): Promise<Preferences> {
    return this.enqueue(() => normalizePreferences(preferences));
  }

  /** A `preferences` frame: the server's value after a change made anywhere. */
  receive(preferences: Preferences): void {
    this.frames += 1;
    this.confirmed = normalizePreferences(preferences);
    this.changed();
  }

  private enqueue(apply: Change["apply"]): Promise<Preferences> {
    return new Promise<Preferences>((resolve, reject) => {
      this.queued.push({ apply, resolve, reject });
      this.changed();
      this.send();
    });
  }

  private send(): void {
    if (this.sending || this.queued.length === 0) return;
    const base = this.confirmed;
    if (!base) {
      // A change applies to the server's value, so that value is needed first.
      this.load().then(
        () => this.send(),
        (error: BelfryError) => {
          for (const change of this.queued.splice(0)) change.reject(error);
          this.changed();
        },
      );
      return;
    }
    const batch = this.queued.splice(0);
    this.sending = batch;
    const frames = this.frames;
    const body = batch.reduce((value, change) => change.apply(value), base);
    this.backend
      .put(body)
      .then(
        (stored) => {
          this.writes += 1;
          if (this.frames === frames) this.confirmed = normalizePreferences(stored);
          this.error = null;
          this.sending = null;
          // The snapshot shows the answer before anyone awaiting the change resumes.
          this.changed();
          for (const change of batch) change.resolve(this.confirmed ?? normalizePreferences(stored));
        },
        (error: unknown) => {
          this.error = BelfryError.from(error);
          this.sending = null;
          this.changed();
          for (const change of batch) change.reject(this.error);
        },
      )
      .finally(() => this.send());
    this.changed();
  }

  private changed(): void {
    const prev = this.snapshot;
    this.snapshot = null;
    const next = this.getSnapshot();
    if (
      prev &&
      prev.loaded === next.loaded &&
      prev.loading === next.loading &&
      prev.saving === next.saving &&
      prev.error === next.error &&
      samePreferences(prev.preferences, next.preferences)
    ) {
      this.snapshot = prev;
      return;
    }
    for (const listener of [...this.listeners]) listener();
  }
}

function samePreferences(a: Preferences | null, b: Preferences | null): boolean {
  return a === b || (a !== null && b !== null && JSON.stringify(a) === JSON.stringify(b));
}
