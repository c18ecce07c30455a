// The demo blog's own endpoints (served by `belfry demo` on the same origin). They stand in for
// an app's backend: liking or commenting calls Belfry's backend API, which notifies the author.

export interface User {
  id: string;
  name: string;
}

export interface Comment {
  author_id: string;
  body: string;
  created_at: string;
}

export interface Post {
  id: number;
  author_id: string;
  title: string;
  body: string;
  likes: number;
  liked_by?: string[];
  comments: Comment[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, {
    ...init,
    headers: { accept: "application/json", ...(init.body ? { "content-type": "application/json" } : {}), ...init.headers },
  });
  const body = (await response.json().catch(() => null)) as { error?: { message?: string } } | null;
  if (!response.ok) throw new ApiError(response.status, body?.error?.message ?? `HTTP ${response.status}`);
  return body as T;
}

export const listUsers = () => call<User[]>("/demo/api/users");

export const listPosts = () => call<Post[]>("/demo/api/posts");

/** A fresh development token for `userId` (the demo's one-click sign-in). */
export async function fetchToken(userId: string): Promise<{ token: string; expiresAt: number }> {
  const answer = await call<{ token: string; expires_at: string }>("/demo/api/token", {
    method: "POST",
    body: JSON.stringify({ user_id: userId }),
  });
  return { token: answer.token, expiresAt: Date.parse(answer.expires_at) };
}

/** Tokens for the blog's own calls, reused until a minute before they expire. */
export function tokenSource(userId: string) {
  let cached: { token: string; expiresAt: number } | null = null;
  return async (): Promise<string> => {
    if (!cached || cached.expiresAt - 60_000 < Date.now()) cached = await fetchToken(userId);
    return cached.token;
  };
}

export const likePost = (id: number, token: string) =>
  call<Post>(`/demo/api/posts/${id}/like`, { method: "POST", headers: { authorization: `Bearer ${token}` } });

export const commentOnPost = (id: number, body: string, token: string) =>
  call<Post>(`/demo/api/posts/${id}/comments`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: JSON.stringify({ body }),
  });
