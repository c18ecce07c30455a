"""The blog's API and page. Lines marked `# belfry` are all the Belfry glue of the backend.

Environment: BELFRY_URL, BELFRY_API_KEY, BELFRY_JWT_SECRET (read by the `belfry` package),
BLOG_DATABASE_URL (default sqlite:///blog.db), BLOG_SESSION_SECRET, BLOG_STATIC (the built page).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from belfry.fastapi import BelfryBackground, belfry_lifespan, token_router  # belfry

from .models import Base, Comment, Like, Post, User, check_password, hash_password
from .proxy import belfry_proxy

engine = create_engine(os.environ.get("BLOG_DATABASE_URL", "sqlite:///blog.db"))
Sessions = sessionmaker(engine, expire_on_commit=False)


def seed() -> None:
    Base.metadata.create_all(engine)
    with Sessions.begin() as db:
        if db.scalar(select(User).limit(1)) is not None:
            return
        users = {n: User(name=n, password_hash=hash_password("password")) for n in ("alice", "bob", "carol")}
        db.add_all(users.values())
        db.flush()
        db.add_all(
            [
                Post(author=users["alice"], title="Hello, Belfry", body="Like or comment: my bell rings."),
                Post(author=users["bob"], title="Live comments", body="This thread updates as you type."),
                Post(author=users["alice"], title="Quiet please", body="Mute likes above, then like this one."),
            ]
        )


def database() -> Iterator[Session]:
    with Sessions() as db:
        yield db


Db = Annotated[Session, Depends(database)]


def current_user_id(request: Request) -> str | None:
    return request.session.get("user_id")


def signed_in(request: Request, db: Db) -> User:
    user = db.get(User, int(current_user_id(request) or 0))
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


Me = Annotated[User, Depends(signed_in)]

seed()
app = FastAPI(lifespan=belfry_lifespan())  # belfry
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("BLOG_SESSION_SECRET", "dev-only"))
app.include_router(token_router(current_user_id, rooms_read=lambda uid: ["post:*"], path="/api/belfry-token"))  # belfry
app.include_router(belfry_proxy(os.environ.get("BELFRY_URL", "http://127.0.0.1:8080")))


class Login(BaseModel):
    name: str
    password: str


class NewComment(BaseModel):
    body: str


def show_comment(c: Comment) -> dict[str, Any]:
    return {"id": c.id, "author": c.user.name, "body": c.body, "created_at": c.created_at.isoformat()}


@app.post("/api/login")
def login(form: Login, request: Request, db: Db) -> dict[str, Any]:
    user = db.scalar(select(User).where(User.name == form.name))
    if user is None or not check_password(form.password, user.password_hash):
        raise HTTPException(401, "wrong name or password")
    request.session["user_id"] = str(user.id)
    return {"id": str(user.id), "name": user.name}


@app.post("/api/logout")
def logout(request: Request) -> None:
    request.session.clear()


@app.get("/api/me")
def me(user: Me) -> dict[str, Any]:
    return {"id": str(user.id), "name": user.name}


@app.get("/api/posts")
def posts(db: Db) -> list[dict[str, Any]]:
    query = select(Post).options(selectinload(Post.likes), selectinload(Post.comments).selectinload(Comment.user))
    return [
        {
            "id": p.id,
            "title": p.title,
            "body": p.body,
            "author": p.author.name,
            "likes": len(p.likes),
            "comments": [show_comment(c) for c in p.comments],
        }
        for p in db.scalars(query.order_by(Post.id))
    ]


def post_or_404(db: Session, post_id: int) -> Post:
    post = db.get(Post, post_id)
    if post is None:
        raise HTTPException(404, "no such post")
    return post


@app.post("/api/posts/{post_id}/like")
def like(post_id: int, user: Me, db: Db, belfry: BelfryBackground) -> dict[str, int]:
    post = post_or_404(db, post_id)
    db.add(Like(post_id=post.id, user_id=user.id))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(409, "already liked") from None
    if post.author_id != user.id:
        belfry.notify([str(post.author_id)], "post.liked", {"post_id": post.id, "title": f"Likes on {post.title}"}, actor=user.name, group_key=f"post:{post.id}:likes")  # belfry
    return {"likes": len(post_or_404(db, post_id).likes)}


@app.post("/api/posts/{post_id}/comments", status_code=201)
def comment(post_id: int, form: NewComment, user: Me, db: Db, belfry: BelfryBackground) -> dict[str, Any]:
    post = post_or_404(db, post_id)
    if not form.body.strip():
        raise HTTPException(422, "a comment needs words")
    saved = Comment(post_id=post.id, user_id=user.id, body=form.body.strip())
    db.add(saved)
    db.commit()
    shown = show_comment(saved)
    if post.author_id != user.id:
        belfry.notify([str(post.author_id)], "comment.created", {"post_id": post.id, "title": f"{user.name}: {saved.body[:80]}"}, actor=user.name, group_key=f"post:{post.id}:comments")  # belfry
    belfry.room_message(f"post:{post.id}", shown)  # belfry
    return shown


static = Path(os.environ.get("BLOG_STATIC", Path(__file__).resolve().parent.parent / "web" / "dist"))
if static.is_dir():
    app.mount("/", StaticFiles(directory=static, html=True), name="page")
