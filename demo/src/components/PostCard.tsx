import { formatRelativeTime } from "belfry/react";
import { useId, useState, type FormEvent } from "react";

import { commentOnPost, likePost, type Post, type User } from "../api.ts";

interface Props {
  post: Post;
  users: User[];
  user: User | null;
  getToken: (() => Promise<string>) | null;
  onChange: (post: Post) => void;
}

export function PostCard({ post, users, user, getToken, onChange }: Props) {
  const [draft, setDraft] = useState("");
  const [busy, setBusy] = useState<"like" | "comment" | null>(null);
  const [error, setError] = useState<string | null>(null);
  const inputId = useId();
  const titleId = useId();
  const name = (id: string) => users.find((u) => u.id === id)?.name ?? id;
  const liked = user ? (post.liked_by ?? []).includes(user.id) : false;
  const mine = user?.id === post.author_id;

  const run = async (what: "like" | "comment", action: (token: string) => Promise<Post>) => {
    if (!getToken) return;
    setBusy(what);
    setError(null);
    try {
      onChange(await action(await getToken()));
      if (what === "comment") setDraft("");
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(null);
    }
  };

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const body = draft.trim();
    if (body) void run("comment", (token) => commentOnPost(post.id, body, token));
  };

  return (
    <article className="post" id={`post-${post.id}`} data-testid={`post-${post.id}`} aria-labelledby={titleId}>
      <h2 id={titleId}>{post.title}</h2>
      <p className="byline muted">
        by <span data-testid={`author-${post.id}`}>{name(post.author_id)}</span>
        {mine && " (you)"}
      </p>
      <p>{post.body}</p>
      <div className="actions">
        <button
          type="button"
          data-testid={`like-${post.id}`}
          aria-pressed={liked}
          disabled={!user || busy !== null || liked}
          title={user ? undefined : "Sign in to like"}
          onClick={() => void run("like", (token) => likePost(post.id, token))}
        >
          {liked ? "♥ Liked" : "♡ Like"}
        </button>
        <span className="muted" data-testid={`likes-${post.id}`}>
          {post.likes} {post.likes === 1 ? "like" : "likes"}
        </span>
      </div>
      <section className="comments" aria-label={`Comments on ${post.title}`}>
        {post.comments.length > 0 && (
          <ul>
            {post.comments.map((c, i) => (
              <li key={`${c.created_at}-${i}`}>
                <strong>{name(c.author_id)}</strong> {c.body}{" "}
                <time className="muted" dateTime={c.created_at}>
                  {formatRelativeTime(c.created_at)}
                </time>
              </li>
            ))}
          </ul>
        )}
        <form onSubmit={submit} className="comment-form">
          <label htmlFor={inputId} className="sr-only">
            Comment on {post.title}
          </label>
          <input
            id={inputId}
            data-testid={`comment-input-${post.id}`}
            value={draft}
            maxLength={2000}
            placeholder={user ? "Write a comment…" : "Sign in to comment"}
            disabled={!user}
            onChange={(e) => setDraft(e.target.value)}
          />
          <button type="submit" data-testid={`comment-submit-${post.id}`} disabled={!user || busy !== null || !draft.trim()}>
            {busy === "comment" ? "Posting…" : "Comment"}
          </button>
        </form>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </section>
    </article>
  );
}
