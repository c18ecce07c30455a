-- The inbox: one row per notification per recipient. `seq` is per user, assigned from
-- user_seqs in the same transaction as the insert, so it is never reused even after deletes.
CREATE TABLE notifications (
    id          TEXT    PRIMARY KEY NOT NULL,
    user_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    group_key   TEXT,
    created_at  INTEGER NOT NULL,  -- unix milliseconds, as all times here
    seen_at     INTEGER,
    read_at     INTEGER,
    archived_at INTEGER,
    expires_at  INTEGER,
    UNIQUE (user_id, seq)
);

CREATE INDEX notifications_unread ON notifications (user_id)
    WHERE read_at IS NULL AND archived_at IS NULL;

CREATE TABLE user_seqs (
    user_id  TEXT    PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    key         TEXT    PRIMARY KEY NOT NULL,
    fingerprint TEXT    NOT NULL,
    response    TEXT    NOT NULL,  -- JSON array of {id, user_id, seq}
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
