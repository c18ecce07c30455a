// The blog page. Lines marked `// belfry` are all the Belfry glue of the front end.
import { BelfryProvider, NotificationBell, usePreferences, useRoom } from "belfry/react"; // belfry
import { useCallback, useEffect, useState, type FormEvent } from "react";

import * as api from "./api.ts";

const getToken = () => fetch("/api/belfry-token", { method: "POST" }).then((r) => r.json()).then((j) => j.token); // belfry
const options = { url: "", getToken }; // belfry

export function App() {
  const [user, setUser] = useState<api.Me | null | undefined>(undefined);
  useEffect(() => void api.me().then(setUser, () => setUser(null)), []);
  if (user === undefined) return null;
  if (user === null) return <Login onSignedIn={setUser} />;
  return (
    <BelfryProvider key={user.id} options={options}> {/* belfry */}
      <header>
        <strong data-testid="current-user">{user.name}</strong>
        <NotificationBell /> {/* belfry */}
        <MuteLikes />
        <button onClick={() => void api.logout().then(() => setUser(null))}>Sign out</button>
      </header>
      <Posts />
    </BelfryProvider>
  );
}

function Login({ onSignedIn }: { onSignedIn: (user: api.Me) => void }) {
  const [name, setName] = useState("alice");
  const [password, setPassword] = useState("password");
  const [error, setError] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    api.login(name, password).then(onSignedIn, () => setError("Wrong name or password."));
  };
  return (
    <form onSubmit={submit} className="login">
      <p>Sign in as alice, bob or carol (password: password).</p>
      <input data-testid="login-name" value={name} onChange={(e) => setName(e.target.value)} />
      <input data-testid="login-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} />
      <button data-testid="login-submit">Sign in</button>
      {error && <p role="alert">{error}</p>}
    </form>
  );
}

function MuteLikes() {
  const { isMuted, update, loaded, saving } = usePreferences(); // belfry
  const muted = isMuted("post.liked");
  return (
    <label data-testid="mute-likes-label" data-saving={saving}>
      <input type="checkbox" disabled={!loaded} checked={muted} data-testid="mute-likes"
        onChange={() => void update({ types: { "post.liked": { in_app: muted ? null : false } } })} />
      Mute likes
    </label>
  );
}

function Posts() {
  const [list, setList] = useState<api.PostView[]>([]);
  useEffect(() => void api.posts().then(setList), []);
  return <main>{list.map((post) => <PostCard key={post.id} post={post} />)}</main>;
}

function PostCard({ post }: { post: api.PostView }) {
  const [comments, setComments] = useState(post.comments);
  const [likes, setLikes] = useState(post.likes);
  const [draft, setDraft] = useState("");
  const add = useCallback((c: api.CommentView) => setComments((cs) => (cs.some((x) => x.id === c.id) ? cs : [...cs, c])), []);
  const thread = useRoom<api.CommentView>(`post:${post.id}`, { onMessage: (m) => add(m.data) }); // belfry
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (draft.trim()) void api.comment(post.id, draft).then(add).then(() => setDraft(""));
  };
  return (
    <article>
      <h2>{post.title}</h2>
      <p className="byline">by {post.author}</p>
      <p>{post.body}</p>
      <button data-testid={`like-${post.id}`} onClick={() => void api.like(post.id).then((r) => setLikes(r.likes), () => undefined)}>
        ♥ {likes}
      </button>
      <small data-testid={`thread-${post.id}`} className="thread">{thread.status === "joined" ? "live" : thread.status}</small>
      <ul data-testid={`comments-${post.id}`}>
        {comments.map((c) => <li key={c.id}><b>{c.author}</b> {c.body}</li>)}
      </ul>
      <form onSubmit={submit}>
        <input data-testid={`comment-input-${post.id}`} value={draft} onChange={(e) => setDraft(e.target.value)} placeholder="Say something" />
        <button data-testid={`comment-submit-${post.id}`}>Comment</button>
      </form>
    </article>
  );
}
