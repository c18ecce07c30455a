-- Web Push subscriptions: one row per browser endpoint, owned by one user.
CREATE TABLE push_subscriptions (
    endpoint   TEXT    PRIMARY KEY NOT NULL,
    user_id    TEXT    NOT NULL,
    p256dh     TEXT    NOT NULL,
    auth       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
