// The shared todo list's data, kept by every open tab and synchronised through room messages
// alone: Belfry keeps no room history, and this demo keeps no list on its backend.
//
// Every change is an operation published to the room; the server delivers it to every other
// connection (this user's other tabs too), never back to the tab that sent it, so a tab applies
// its own operations locally. Operations may arrive in different orders on different tabs, so
// merging is order-independent:
// - an item is created once, under a random id, and ordered by its Lamport stamp `added`;
// - `done` is last-writer-wins by Lamport stamp `changed` (ties broken by tab id);
// - removal wins over everything and is remembered (a tombstone), so a stale copy cannot bring
//   an item back.
// A tab that joins (or joins again after a reconnect) publishes `sync?` with what it holds; every
// tab that holds something answers `sync` with its list. Merging the same list twice changes
// nothing, so extra answers are harmless. When the last tab closes, the list is gone.
//
// One answer must fit one room message (the server's `rooms.max_message_bytes`, 16 KiB by
// default), hence the bounds on items, text and remembered removals.

export const MAX_ITEMS = 40;
export const MAX_TEXT = 80;
const MAX_TOMBSTONES = 200;

/** A Lamport stamp: [counter, tab id]. */
export type Stamp = [number, string];

export interface TodoItem {
  id: string;
  text: string;
  done: boolean;
  /** The user who added it. */
  by: string;
  added: Stamp;
  changed: Stamp;
}

export type TodoOp =
  | { op: "add"; item: TodoItem }
  | { op: "done"; id: string; done: boolean; at: Stamp }
  | { op: "remove"; id: string }
  | { op: "sync?"; items: TodoItem[]; removed: string[] }
  | { op: "sync"; items: TodoItem[]; removed: string[] };

export interface TodoState {
  items: Readonly<Record<string, TodoItem>>;
  /** Removed ids, oldest first. */
  removed: readonly string[];
}

export const emptyTodos: TodoState = { items: {}, removed: [] };

/** A tab's Lamport clock: `tick()` for its own changes, `witness()` for everything it receives. */
export class LamportClock {
  private n = 0;
  constructor(readonly tab: string) {}
  tick(): Stamp {
    this.n += 1;
    return [this.n, this.tab];
  }
  witness(stamp: Stamp): void {
    this.n = Math.max(this.n, stamp[0]);
  }
}

export function compareStamps(a: Stamp, b: Stamp): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

/** Applies an operation (ours or anyone's); the same operation twice changes nothing. */
export function applyOp(state: TodoState, op: TodoOp): TodoState {
  switch (op.op) {
    case "add":
      return mergeItems(state, [op.item], []);
    case "done": {
      const item = state.items[op.id];
      if (!item || compareStamps(op.at, item.changed) <= 0) return state;
      return { ...state, items: { ...state.items, [op.id]: { ...item, done: op.done, changed: op.at } } };
    }
    case "remove":
      return mergeItems(state, [], [op.id]);
    case "sync?":
    case "sync":
      return mergeItems(state, op.items, op.removed);
  }
}

function mergeItems(state: TodoState, incoming: readonly TodoItem[], removed: readonly string[]): TodoState {
  const gone = new Set(state.removed);
  const newlyRemoved = removed.filter((id) => !gone.has(id));
  for (const id of newlyRemoved) gone.add(id);
  let items: Record<string, TodoItem> | null = null;
  const write = () => (items ??= { ...state.items });
  for (const id of newlyRemoved) if (state.items[id]) delete write()[id];
  for (const item of incoming) {
    if (gone.has(item.id)) continue;
    const mine = (items ?? state.items)[item.id];
    if (!mine || compareStamps(item.changed, mine.changed) > 0) write()[item.id] = mine ? { ...mine, done: item.done, changed: item.changed } : item;
  }
  if (!items && newlyRemoved.length === 0) return state;
  const allRemoved = [...state.removed, ...newlyRemoved];
  return {
    items: items ?? state.items,
    removed: allRemoved.length > MAX_TOMBSTONES ? allRemoved.slice(-MAX_TOMBSTONES) : allRemoved,
  };
}

/** The list as shown: in order of creation, the same on every tab. */
export function visibleItems(state: TodoState): TodoItem[] {
  return Object.values(state.items).sort((a, b) => compareStamps(a.added, b.added));
}

export function holdsAnything(state: TodoState): boolean {
  return state.removed.length > 0 || Object.keys(state.items).length > 0;
}

/** The whole list, as a `sync?` or `sync` message. */
export function syncOp(kind: "sync?" | "sync", state: TodoState): TodoOp {
  return { op: kind, items: visibleItems(state), removed: [...state.removed] };
}

/** A short random id (crypto where available; the page may be served over plain HTTP). */
export function randomId(length = 12): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = new Uint8Array(length);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

// ---- checking what arrives: any member may publish anything to the room ----------------------

const isStamp = (v: unknown): v is Stamp =>
  Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === "string";

const isItem = (v: unknown): v is TodoItem => {
  const i = v as Partial<TodoItem> | null;
  return (
    typeof i === "object" && i !== null && typeof i.id === "string" && typeof i.text === "string" &&
    typeof i.done === "boolean" && typeof i.by === "string" && isStamp(i.added) && isStamp(i.changed)
  );
};

const isIdList = (v: unknown): v is string[] => Array.isArray(v) && v.every((id) => typeof id === "string");

/** The operation in a room message, or null when it is not one this page understands. */
export function parseOp(data: unknown): TodoOp | null {
  const d = data as Record<string, unknown> | null;
  if (typeof d !== "object" || d === null) return null;
  switch (d.op) {
    case "add":
      return isItem(d.item) ? { op: "add", item: d.item } : null;
    case "done":
      return typeof d.id === "string" && typeof d.done === "boolean" && isStamp(d.at) ? { op: "done", id: d.id, done: d.done, at: d.at } : null;
    case "remove":
      return typeof d.id === "string" ? { op: "remove", id: d.id } : null;
    case "sync?":
    case "sync":
      return Array.isArray(d.items) && d.items.every(isItem) && isIdList(d.removed)
        ? { op: d.op, items: d.items, removed: d.removed }
        : null;
    default:
      return null;
  }
}

/** Every stamp an operation carries, for the receiving tab's clock. */
export function stampsOf(op: TodoOp): Stamp[] {
  switch (op.op) {
    case "add":
      return [op.item.added, op.item.changed];
    case "done":
      return [op.at];
    case "remove":
      return [];
    default:
      return op.items.flatMap((i) => [i.added, i.changed]);
  }
}
