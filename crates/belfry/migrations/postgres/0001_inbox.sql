-- The inbox: one row per notification per recipient. `seq` is per user, assigned from
-- user_seqs in the same transaction as the insert, so it is never reused even after deletes.
-- Times are unix milliseconds (BIGINT), as in the SQLite schema, so both decode alike.
CREATE TABLE notifications (
    id          UUID    PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    type        TEXT    NOT NULL,
    -- JSON, not JSONB: kept verbatim, and JSONB refuses the escape \u0000 that JSON allows.
    data        JSON    NOT NULL,
    group_key   TEXT,
    created_at  BIGINT  NOT NULL,
    seen_at     BIGINT,
    read_at     BIGINT,
    archived_at BIGINT,
    expires_at  BIGINT,
    UNIQUE (user_id, seq)
);

CREATE INDEX notifications_unread ON notifications (user_id)
    WHERE read_at IS NULL AND archived_at IS NULL;

-- The row lock on a user's row orders concurrent writers for that user (on any node): when
-- seq N+1 is visible, N is committed.
CREATE TABLE user_seqs (
    user_id  TEXT   PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    key         TEXT   PRIMARY KEY,
    fingerprint TEXT   NOT NULL,
    response    TEXT   NOT NULL,  -- JSON array of {id, user_id, seq}
    created_at  BIGINT NOT NULL
);
