// useRoom: a room's members and messages for a component, over the core Room store. Joins on
// mount and leaves on unmount; the core counts joins, so every component using the same room
// shares one membership (and one `join` frame), and a StrictMode remount does not leave.

import { useCallback, useEffect, useMemo, useRef, useSyncExternalStore } from "react";

import type { BelfryError } from "../core/errors.js";
import type { Room, RoomMessage, RoomOptions, RoomStatus } from "../core/rooms.js";
import { useBelfryClient } from "./context.js";

export interface UseRoomOptions<Data> extends RoomOptions {
  /**
   * Called for every message received while joined, including those the bounded `messages`
   * list has already dropped. Use it to apply changes; the latest function is always called.
   */
  onMessage?: (message: RoomMessage<Data>) => void;
}

export interface UseRoomResult<Data> {
  status: RoomStatus;
  /** User ids present, each once; sorted. Empty unless joined. */
  members: readonly string[];
  /** The last `history` (default 50) messages, oldest first. */
  messages: readonly RoomMessage<Data>[];
  error: BelfryError | null;
  /** Resolves on the server's ack, rejects with a BelfryError (see `Room.publish`). */
  publish: (data: Data) => Promise<void>;
  /** The core room, for `on("presence", …)` and the like. */
  room: Room<Data>;
}

/**
 * Joins `name` while the component is mounted. `options.token` (a room token, or a function
 * returning one) is read at each join; `options.history` bounds `messages`.
 */
export function useRoom<Data = unknown>(name: string, options: UseRoomOptions<Data> = {}): UseRoomResult<Data> {
  const client = useBelfryClient();
  const { token, history, onMessage } = options;
  // A function token may be a new closure on every render; the room reads the latest one.
  const tokenRef = useRef(token);
  useEffect(() => {
    tokenRef.current = token;
  });
  const hasToken = token !== undefined;
  const room = useMemo(
    () =>
      client.room<Data>(name, {
        history,
        token: hasToken
          ? () => {
              const t = tokenRef.current;
              return typeof t === "function" ? t() : (t ?? "");
            }
          : undefined,
      }),
    [client, name, history, hasToken],
  );

  useEffect(() => {
    void room.join();
    return () => room.leave();
  }, [room]);

  const onMessageRef = useRef(onMessage);
  useEffect(() => {
    onMessageRef.current = onMessage;
  });
  useEffect(() => room.on("message", (message) => onMessageRef.current?.(message)), [room]);

  const snapshot = useSyncExternalStore(room.subscribe, room.getSnapshot, room.getSnapshot);
  const publish = useCallback((data: Data) => room.publish(data), [room]);
  return useMemo(
    () => ({
      status: snapshot.status,
      members: snapshot.members,
      messages: snapshot.messages,
      error: snapshot.error,
      publish,
      room,
    }),
    [snapshot, publish, room],
  );
}
