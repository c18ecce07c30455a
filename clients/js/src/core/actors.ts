// Who did it, for a grouped notification: "Alice", "Alice and Bob", "Alice and 3 others". Pure,
// so it renders the same on the server, in tests and in any framework.

import type { Notification } from "./types.js";

/** The words `formatActors` uses; pass your own to translate it. */
export interface ActorWords {
  /** Between the last two names: " and " in "Alice and Bob". */
  and: string;
  /** The rest of the actors: "3 others", "1 other". */
  others: (count: number) => string;
  /** No actor was named and there was one event. */
  someone: string;
  /** No actor was named and there were `count` events. */
  people: (count: number) => string;
}

export const ENGLISH_ACTOR_WORDS: ActorWords = {
  and: " and ",
  others: (count) => `${count} ${count === 1 ? "other" : "others"}`,
  someone: "Someone",
  people: (count) => `${count} people`,
};

/**
 * The actors of a (grouped) notification, most recent first: "Alice" (one actor), "Alice and
 * Bob" (two), "Alice and 3 others" (more; the number comes from `actor_count`, which also counts
 * actors beyond the ten listed). With no actors named it falls back to `count`: "Someone", or
 * "3 people".
 */
export function formatActors(
  notification: Pick<Notification, "actors" | "actor_count" | "count">,
  words: ActorWords = ENGLISH_ACTOR_WORDS,
): string {
  const names = (notification.actors ?? []).filter((a) => typeof a === "string" && a.length > 0);
  const total = Math.max(notification.actor_count ?? 0, names.length);
  if (names.length === 0) {
    const count = notification.count ?? 1;
    return count > 1 ? words.people(count) : words.someone;
  }
  if (total === 1) return names[0]!;
  if (total === 2 && names.length >= 2) return `${names[0]}${words.and}${names[1]}`;
  return `${names[0]}${words.and}${words.others(total - 1)}`;
}
