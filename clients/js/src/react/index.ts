// React bindings for Belfry: a provider sharing one connection per page, hooks over the core
// store, and a drop-in notification bell.
export { BelfryProvider, type BelfryProviderProps } from "./BelfryProvider.js";
export { useBelfryClient } from "./context.js";
export { useBelfrySnapshot, useNotifications, type UseNotificationsResult } from "./useNotifications.js";
export { useUnreadCount } from "./useUnreadCount.js";
export { useConnectionState } from "./useConnectionState.js";
export { useRoom, type UseRoomOptions, type UseRoomResult } from "./useRoom.js";
export { usePreferences, type UsePreferencesResult } from "./usePreferences.js";
export {
  NotificationBell,
  bellClasses,
  type NotificationBellClassNames,
  type NotificationBellProps,
  type RenderItemHelpers,
} from "../components/NotificationBell.js";
export { formatRelativeTime } from "../components/relativeTime.js";
