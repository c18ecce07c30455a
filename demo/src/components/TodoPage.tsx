// The collaborative todo list: everyone on this page is in the room `todo:demo`. Changes are
// room messages (src/todo.ts says how they merge and how a late joiner catches up); the avatars
// are the room's presence, one per user however many tabs they have open.
import type { RoomMessage } from "belfry";
import { useRoom } from "belfry/react";
import { useCallback, useEffect, useId, useMemo, useReducer, useRef, useState, type FormEvent } from "react";

import type { User } from "../api.ts";
import {
  LamportClock,
  MAX_ITEMS,
  MAX_TEXT,
  applyOp,
  emptyTodos,
  holdsAnything,
  parseOp,
  randomId,
  stampsOf,
  syncOp,
  visibleItems,
  type TodoOp,
  type TodoState,
} from "../todo.ts";

export const TODO_ROOM = "todo:demo";

const ROOM_STATUS = {
  left: "Not in the room",
  joining: "Joining…",
  joined: "Live",
  error: "Cannot join",
} as const;

interface Props {
  users: User[];
  user: User;
}

export function TodoPage({ users, user }: Props) {
  const clock = useMemo(() => new LamportClock(randomId(8)), []);
  const [todos, apply] = useReducer(applyOp, emptyTodos);
  const latest = useRef<TodoState>(todos);
  useEffect(() => {
    latest.current = todos;
  }, [todos]);
  const [draft, setDraft] = useState("");
  const [failure, setFailure] = useState<string | null>(null);
  const inputId = useId();

  const onMessage = (message: RoomMessage<TodoOp>) => {
    const op = parseOp(message.data);
    if (!op) return;
    for (const stamp of stampsOf(op)) clock.witness(stamp);
    // Answer with what this tab held before the joiner's items arrive; they merge either way.
    if (op.op === "sync?" && holdsAnything(latest.current)) send(syncOp("sync", latest.current));
    apply(op);
  };
  const { members, status, error, publish } = useRoom<TodoOp>(TODO_ROOM, { onMessage });

  const send = useCallback(
    (op: TodoOp) => {
      publish(op).catch((e: unknown) => setFailure(e instanceof Error ? e.message : String(e)));
    },
    [publish],
  );
  /** A change made here: applied at once, then published (the server will not echo it back). */
  const change = (op: TodoOp) => {
    setFailure(null);
    apply(op);
    send(op);
  };

  // After every join (the first, and each one after a reconnect) ask the others for the list,
  // offering ours, which also delivers whatever changed here while the connection was down.
  useEffect(() => {
    if (status === "joined") send(syncOp("sync?", latest.current));
  }, [status, send]);

  const items = visibleItems(todos);
  const full = items.length >= MAX_ITEMS;
  const add = (event: FormEvent) => {
    event.preventDefault();
    const text = draft.trim().slice(0, MAX_TEXT);
    if (!text || full) return;
    const stamp = clock.tick();
    change({ op: "add", item: { id: randomId(), text, done: false, by: user.id, added: stamp, changed: [0, ""] } });
    setDraft("");
  };
  const name = (id: string) => users.find((u) => u.id === id)?.name ?? id;

  return (
    <section className="todo" aria-labelledby={`${inputId}-title`}>
      <div className="todo-head">
        <h1 id={`${inputId}-title`}>Shared todo list</h1>
        <span className={`status room-${status}`} data-testid="room-status" data-status={status}>
          {ROOM_STATUS[status]}
        </span>
      </div>
      <p className="muted">
        Everyone signed in on this page edits one list, live. Open it as another user in a second
        window, or in a second tab as yourself (you are still listed once).
      </p>
      <ul className="members" aria-label="Here now">
        {members.map((id) => (
          <li key={id} data-testid="room-member" data-user={id} title={id === user.id ? `${name(id)} (you)` : name(id)}>
            {/* The initial is drawn by CSS, so the element's text is exactly the name. */}
            <span className="avatar" aria-hidden="true" data-initial={name(id).slice(0, 1).toUpperCase()} />
            {name(id)}
          </li>
        ))}
      </ul>
      <form className="todo-form" onSubmit={add}>
        <label htmlFor={inputId} className="sr-only">
          New item
        </label>
        <input
          id={inputId}
          data-testid="todo-input"
          value={draft}
          maxLength={MAX_TEXT}
          placeholder={full ? `The list holds at most ${MAX_ITEMS} items` : "Add an item…"}
          disabled={full}
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="submit" data-testid="todo-add" disabled={full || !draft.trim()}>
          Add
        </button>
      </form>
      {items.length === 0 ? (
        <p className="muted">{status === "joined" ? "Nothing to do yet." : "Loading the list…"}</p>
      ) : (
        <ul className="todo-list">
          {items.map((item) => (
            <li key={item.id} data-testid="todo-item" data-done={item.done} className={item.done ? "done" : undefined}>
              <label>
                <input
                  type="checkbox"
                  data-testid="todo-toggle"
                  checked={item.done}
                  onChange={() => change({ op: "done", id: item.id, done: !item.done, at: clock.tick() })}
                />
                <span className="todo-text">{item.text}</span>
              </label>
              <span className="muted todo-by">{name(item.by)}</span>
              <button
                type="button"
                className="link"
                data-testid="todo-remove"
                aria-label={`Remove ${item.text}`}
                onClick={() => change({ op: "remove", id: item.id })}
              >
                ✕
              </button>
            </li>
          ))}
        </ul>
      )}
      {(failure ?? error) && (
        <p role="alert" className="error">
          {failure ?? error?.message}
        </p>
      )}
    </section>
  );
}
