-- Grouping: one inbox item collects the events of a `group_key` ("Alice and 3 others liked your
-- post"). `count` is the events merged, `actors` a JSON array of distinct actors (most recent
-- first, capped), `actor_count` the distinct actors merged, `updated_at` the last merge.
-- Muting: a notification stored while its recipient muted it is `muted`, already read, and is
-- never sent live or pushed.
ALTER TABLE notifications ADD COLUMN updated_at BIGINT;
ALTER TABLE notifications ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE notifications ADD COLUMN actors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE notifications ADD COLUMN actor_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN muted BOOLEAN NOT NULL DEFAULT FALSE;

-- The newest item of a user's group, found on every grouped insert.
CREATE INDEX notifications_group ON notifications (user_id, group_key, seq)
    WHERE group_key IS NOT NULL;

-- A user's preferences, as the JSON document of the API (docs/api.md).
CREATE TABLE user_preferences (
    user_id     TEXT   PRIMARY KEY,
    preferences TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);
