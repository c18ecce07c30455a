// The framework-free core of the Belfry SDK. React bindings live in `belfry/react`.
export { BelfryClient, type BelfryClientEvents, type BelfryClientOptions } from "./client.js";
export {
  Room,
  type RoomEvents,
  type RoomMessage,
  type RoomOptions,
  type RoomSnapshot,
  type RoomStatus,
} from "./rooms.js";
export { NotificationStore, isUnread, type NotificationsSnapshot } from "./store.js";
export {
  DEFAULT_PREFERENCES,
  PreferencesStore,
  applyPreferencesPatch,
  isMuted,
  normalizePreferences,
  type PreferencesBackend,
  type PreferencesPatch,
  type PreferencesSnapshot,
} from "./preferences.js";
export { ENGLISH_ACTOR_WORDS, formatActors, type ActorWords } from "./actors.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { CloseCode, ErrorCode, adviceFor, type CloseAdvice } from "./codes.js";
export { BelfryError } from "./errors.js";
export { jwtTimes } from "./token.js";
export type * from "./types.js";
export { answerServiceWorker, enablePush, type EnablePushOptions } from "./push.js";
