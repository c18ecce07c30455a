import { useBelfryClient } from "belfry/react";
import { useCallback, useEffect, useState } from "react";

import { listPosts, type Post, type User } from "../api.ts";
import { PostCard } from "./PostCard.tsx";

interface Props {
  users: User[];
  user: User | null;
  getToken: (() => Promise<string>) | null;
  live: boolean;
}

export function PostList({ users, user, getToken, live }: Props) {
  const [posts, setPosts] = useState<Post[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const reload = useCallback(() => {
    listPosts()
      .then((p) => {
        setPosts(p);
        setError(null);
      })
      .catch((e: unknown) => setError(`Cannot load posts: ${String(e)}`));
  }, []);

  useEffect(reload, [reload]);

  const replace = (post: Post) => setPosts((all) => all?.map((p) => (p.id === post.id ? post : p)) ?? [post]);

  if (error && !posts) return <p role="alert" className="error">{error}</p>;
  if (!posts) return <p className="muted">Loading posts…</p>;
  return (
    <div className="posts">
      {live && <ReloadOnNotification reload={reload} />}
      {!user && <p className="hint">Sign in as someone above to like and comment. Open a second window as another user to watch their bell.</p>}
      {posts.map((post) => (
        <PostCard key={post.id} post={post} users={users} user={user} getToken={getToken} onChange={replace} />
      ))}
    </div>
  );
}

/**
 * A like or comment on one of my posts also changes the post: show it without a reload. Likes
 * and comments after the first are merged into one notification, which arrives as `updated`.
 */
function ReloadOnNotification({ reload }: { reload: () => void }) {
  const client = useBelfryClient();
  useEffect(() => {
    const offNew = client.on("notification", reload);
    const offUpdated = client.on("updated", reload);
    return () => {
      offNew();
      offUpdated();
    };
  }, [client, reload]);
  return null;
}
