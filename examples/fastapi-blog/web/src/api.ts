// The blog's own API (FastAPI, same origin, session cookie).

export interface Me {
  id: string;
  name: string;
}

export interface CommentView {
  id: number;
  author: string;
  body: string;
  created_at: string;
}

export interface PostView {
  id: number;
  title: string;
  body: string;
  author: string;
  likes: number;
  comments: CommentView[];
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
  return (await response.json()) as T;
}

export const me = () => call<Me>("GET", "/api/me");
export const login = (name: string, password: string) => call<Me>("POST", "/api/login", { name, password });
export const logout = () => call<null>("POST", "/api/logout");
export const posts = () => call<PostView[]>("GET", "/api/posts");
export const like = (id: number) => call<{ likes: number }>("POST", `/api/posts/${id}/like`);
export const comment = (id: number, body: string) => call<CommentView>("POST", `/api/posts/${id}/comments`, { body });
