//! The statements both backends run, written once. Parameters are numbered (SQLite `?n`,
//! PostgreSQL `$n`), and each function documents what it binds, in order. Only constant
//! fragments and placeholders ever go into the text; values are always bound.

use std::fmt::Write;

use super::ListQuery;
use crate::model::StateChange;

/// Which backend's SQL to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `n`-th bind parameter (1-based).
    fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The `n`-th bind parameter of a statement whose parameters all appear once, in order.
    /// SQLite gets an anonymous `?`: a numbered one has a name, and SQLite finds a name by a
    /// linear search, which sqlx does for every parameter it binds, so a statement with
    /// thousands of numbered parameters costs quadratic time to bind.
    fn positional(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `column` is one of `count` values bound from the first parameter on, the statement's
    /// only parameters (see [`Dialect::positional`]).
    fn only_among(self, column: &str, pg_type: &str, count: usize) -> String {
        match self {
            Dialect::Sqlite => {
                let list = vec!["?"; count].join(", ");
                format!("{column} IN ({list})")
            }
            Dialect::Postgres => self.among(column, pg_type, 1, count).0,
        }
    }

    /// The columns `rows::NotificationRow` reads, as text where PostgreSQL stores a richer type.
    fn columns(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "id, user_id, seq, type, data, group_key, created_at, seen_at, read_at, \
                 archived_at, expires_at, updated_at, count, actors, actor_count, muted"
            }
            Dialect::Postgres => {
                "id::text AS id, user_id, seq, type, data::text AS data, group_key, created_at, \
                 seen_at, read_at, archived_at, expires_at, updated_at, count, actors, \
                 actor_count, muted"
            }
        }
    }

    /// `id` is one of `count` ids bound from parameter `first` on: SQLite binds each id,
    /// PostgreSQL one text array. Returns the condition and the next free parameter.
    fn id_among(self, first: usize, count: usize) -> (String, usize) {
        self.among("id", "uuid", first, count)
    }

    /// `column` is one of `count` values bound from parameter `first` on (PostgreSQL: one
    /// array of `pg_type`). Returns the condition and the next free parameter.
    fn among(self, column: &str, pg_type: &str, first: usize, count: usize) -> (String, usize) {
        match self {
            Dialect::Sqlite => {
                let mut list = String::new();
                for n in first..first + count {
                    if n > first {
                        list.push_str(", ");
                    }
                    list.push_str(&self.param(n));
                }
                (format!("{column} IN ({list})"), first + count)
            }
            Dialect::Postgres => (
                format!("{column} = ANY({}::{pg_type}[])", self.param(first)),
                first + 1,
            ),
        }
    }
}

/// One page of a user's notifications, newest first.
/// Binds: user, before (exclusive), now, limit, then the type when `query.kind` is set.
pub(super) fn list(d: Dialect, query: &ListQuery) -> String {
    let mut sql = format!(
        "SELECT {} FROM notifications WHERE user_id = {} AND seq < {} \
         AND (expires_at IS NULL OR expires_at > {})",
        d.columns(),
        d.param(1),
        d.param(2),
        d.param(3)
    );
    if query.unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if query.archived {
        sql.push_str(" AND archived_at IS NOT NULL");
    } else {
        sql.push_str(" AND archived_at IS NULL");
    }
    if query.kind.is_some() {
        let _ = write!(sql, " AND type = {}", d.param(5));
    }
    let _ = write!(sql, " ORDER BY seq DESC LIMIT {}", d.param(4));
    sql
}

/// A user's unexpired, unmuted notifications in a seq range, oldest first: what live feeds
/// send. Binds: user, after (exclusive), before (exclusive), now, limit.
pub(super) fn after(d: Dialect) -> String {
    format!(
        "SELECT {} FROM notifications WHERE user_id = {p1} AND seq > {p2} AND seq < {p3} \
         AND (expires_at IS NULL OR expires_at > {p4}) AND NOT muted ORDER BY seq ASC LIMIT {p5}",
        d.columns(),
        p1 = d.param(1),
        p2 = d.param(2),
        p3 = d.param(3),
        p4 = d.param(4),
        p5 = d.param(5),
    )
}

/// Unread count, highest seq and state version. Binds: user, now.
pub(super) fn counts(d: Dialect) -> String {
    format!(
        "SELECT \
           (SELECT COUNT(*) FROM notifications WHERE user_id = {p1} AND read_at IS NULL \
              AND archived_at IS NULL AND (expires_at IS NULL OR expires_at > {p2})), \
           (SELECT COALESCE(MAX(last_seq), 0) FROM user_seqs WHERE user_id = {p1}), \
           (SELECT COALESCE(MAX(state_version), 0) FROM user_seqs WHERE user_id = {p1})",
        p1 = d.param(1),
        p2 = d.param(2),
    )
}

/// Takes the user's next state version (creating its row), locking the row first as the
/// notification writers do. Returns the new version. Binds: user.
pub(super) fn next_state_version(d: Dialect) -> String {
    format!(
        "INSERT INTO user_seqs (user_id, last_seq, state_version) VALUES ({}, 0, 1) \
         ON CONFLICT (user_id) DO UPDATE SET state_version = user_seqs.state_version + 1 \
         RETURNING state_version",
        d.param(1)
    )
}

/// The highest seq and state version of `count` users, as `(user_id, last_seq,
/// state_version)`. Binds: the users (see [`Dialect::among`]).
pub(super) fn positions(d: Dialect, count: usize) -> String {
    let users = d.only_among("user_id", "text", count);
    format!("SELECT user_id, last_seq, state_version FROM user_seqs WHERE {users}")
}

/// The statement that applies `change` to `count` of a user's notifications, and whether it
/// stamps the current time. Binds: user, the ids (see [`Dialect::id_among`]), then now when
/// stamped.
pub(super) fn set_state(d: Dialect, change: StateChange, count: usize) -> (String, bool) {
    let user = d.param(1);
    let (ids, next) = d.id_among(2, count);
    let now = d.param(next);
    let stamp = |column: &str| {
        format!(
            "UPDATE notifications SET {column} = {now} WHERE user_id = {user} \
             AND {column} IS NULL AND {ids}"
        )
    };
    match change {
        StateChange::Read => (stamp("read_at"), true),
        StateChange::Seen => (stamp("seen_at"), true),
        StateChange::Archived => (stamp("archived_at"), true),
        StateChange::Unread => (
            format!(
                "UPDATE notifications SET read_at = NULL WHERE user_id = {user} \
                 AND read_at IS NOT NULL AND {ids}"
            ),
            false,
        ),
        StateChange::Deleted => (
            format!("DELETE FROM notifications WHERE user_id = {user} AND {ids}"),
            false,
        ),
    }
}

/// `rows` parenthesised tuples of `width` parameters each, the statement's only ones.
fn value_rows(d: Dialect, width: usize, rows: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&d.positional(row * width + column + 1));
        }
        sql.push(')');
    }
    sql
}

/// The last seqs of `count` users, as `(user_id, last_seq)`. Binds: the users (see
/// [`Dialect::among`]).
pub(super) fn last_seqs(d: Dialect, count: usize) -> String {
    let users = d.only_among("user_id", "text", count);
    format!("SELECT user_id, last_seq FROM user_seqs WHERE {users}")
}

/// Sets the last seq of `rows` users. Binds: SQLite user, seq for each row; PostgreSQL an
/// array of users and an array of seqs.
pub(super) fn save_seqs(d: Dialect, rows: usize) -> String {
    let source = match d {
        Dialect::Sqlite => format!("VALUES {}", value_rows(d, 2, rows)),
        Dialect::Postgres => "SELECT * FROM unnest($1::text[], $2::bigint[])".to_owned(),
    };
    format!(
        "INSERT INTO user_seqs (user_id, last_seq) {source} ON CONFLICT (user_id) \
         DO UPDATE SET last_seq = excluded.last_seq"
    )
}

/// The columns [`insert_rows`] writes, in bind order.
pub(super) const INSERT_COLUMNS: &str = "id, user_id, seq, type, data, group_key, created_at, \
     expires_at, read_at, updated_at, count, actors, actor_count, muted";

/// Inserts `rows` notifications. Binds: SQLite the [`INSERT_COLUMNS`] of each row in turn;
/// PostgreSQL one array per column (text, text, bigint, text, text, text, bigint, bigint,
/// bigint, bigint, bigint, text, bigint, bool).
pub(super) fn insert_rows(d: Dialect, rows: usize) -> String {
    match d {
        Dialect::Sqlite => format!(
            "INSERT INTO notifications ({INSERT_COLUMNS}) VALUES {}",
            value_rows(d, 14, rows)
        ),
        Dialect::Postgres => format!(
            "INSERT INTO notifications ({INSERT_COLUMNS}) \
             SELECT id::uuid, user_id, seq, type, data::json, group_key, created_at, expires_at, \
               read_at, updated_at, count, actors, actor_count, muted \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
               $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
               $11::bigint[], $12::text[], $13::bigint[], $14::bool[]) \
             AS r ({INSERT_COLUMNS})"
        ),
    }
}

/// The newest item of a user's group. Binds: user, group key.
pub(super) fn group_head(d: Dialect) -> String {
    format!(
        "SELECT {} FROM notifications WHERE user_id = {} AND group_key = {} \
         ORDER BY seq DESC LIMIT 1",
        d.columns(),
        d.param(1),
        d.param(2)
    )
}

/// Rewrites a group's item after an event joined it. Binds: id, seq, type, data, count,
/// actors (JSON text), actor_count, updated_at, expires_at.
pub(super) fn merge_into_group(d: Dialect) -> String {
    let (id, data) = match d {
        Dialect::Sqlite => (d.param(1), d.param(4)),
        Dialect::Postgres => (
            format!("{}::uuid", d.param(1)),
            format!("{}::json", d.param(4)),
        ),
    };
    format!(
        "UPDATE notifications SET seq = {}, type = {}, data = {data}, count = {}, actors = {}, \
         actor_count = {}, updated_at = {}, expires_at = {} WHERE id = {id}",
        d.param(2),
        d.param(3),
        d.param(5),
        d.param(6),
        d.param(7),
        d.param(8),
        d.param(9),
    )
}

/// The stored preferences documents of `count` users. Binds: the users (see
/// [`Dialect::among`]).
pub(super) fn preferences(d: Dialect, count: usize) -> String {
    let users = d.only_among("user_id", "text", count);
    format!("SELECT user_id, preferences FROM user_preferences WHERE {users}")
}

/// Saves a user's preferences document. Binds: user, document, updated_at.
pub(super) fn save_preferences(d: Dialect) -> String {
    format!(
        "INSERT INTO user_preferences (user_id, preferences, updated_at) VALUES ({}, {}, {}) \
         ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences, \
         updated_at = excluded.updated_at",
        d.param(1),
        d.param(2),
        d.param(3)
    )
}

/// The highest seq ever assigned to a user (0 when none). Binds: user.
pub(super) fn last_seq(d: Dialect) -> String {
    format!(
        "SELECT COALESCE(MAX(last_seq), 0) FROM user_seqs WHERE user_id = {}",
        d.param(1)
    )
}

/// Marks a user's unread notifications up to a seq read. Binds: now, user, up-to seq.
pub(super) fn mark_read_up_to(d: Dialect) -> String {
    format!(
        "UPDATE notifications SET read_at = {} WHERE user_id = {} AND read_at IS NULL \
         AND seq <= {}",
        d.param(1),
        d.param(2),
        d.param(3)
    )
}

/// An idempotency key's fingerprint and response, if used since a time.
/// Binds: key, since (exclusive).
pub(super) fn find_key(d: Dialect) -> String {
    format!(
        "SELECT fingerprint, response FROM idempotency_keys WHERE key = {} AND created_at > {}",
        d.param(1),
        d.param(2)
    )
}

/// Records an idempotency key, replacing an expired use of it.
/// Binds: key, fingerprint, response, created at.
pub(super) fn record_key(d: Dialect) -> String {
    format!(
        "INSERT INTO idempotency_keys (key, fingerprint, response, created_at) \
         VALUES ({}, {}, {}, {}) ON CONFLICT (key) DO UPDATE SET \
         fingerprint = excluded.fingerprint, response = excluded.response, \
         created_at = excluded.created_at",
        d.param(1),
        d.param(2),
        d.param(3),
        d.param(4)
    )
}

/// Binds endpoint, user_id, p256dh, auth, created_at. Saving an endpoint again makes it the
/// user's most recent (`created_at` is when it was last saved).
pub(super) fn upsert_push_subscription(d: Dialect) -> String {
    let p = |n| d.param(n);
    format!(
        "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at) \
         VALUES ({}, {}, {}, {}, {}) ON CONFLICT (endpoint) DO UPDATE SET \
         user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth, \
         created_at = excluded.created_at",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    )
}

/// Removes a user's least recently saved subscriptions beyond a count, never the one just
/// saved (saves within one millisecond tie on `created_at`). Binds user_id, the endpoint just
/// saved, and how many of the others to keep.
pub(super) fn trim_push_subscriptions(d: Dialect) -> String {
    let (user, saved, others) = (d.param(1), d.param(2), d.param(3));
    format!(
        "DELETE FROM push_subscriptions WHERE user_id = {user} AND endpoint <> {saved} \
         AND endpoint NOT IN (SELECT endpoint FROM push_subscriptions \
         WHERE user_id = {user} AND endpoint <> {saved} \
         ORDER BY created_at DESC, endpoint DESC LIMIT {others})"
    )
}

/// Binds endpoint, then user_id when `for_user`.
pub(super) fn delete_push_subscription(d: Dialect, for_user: bool) -> String {
    let mut sql = format!(
        "DELETE FROM push_subscriptions WHERE endpoint = {}",
        d.param(1)
    );
    if for_user {
        let _ = write!(sql, " AND user_id = {}", d.param(2));
    }
    sql
}

/// Binds user_id.
pub(super) fn select_push_subscriptions(d: Dialect) -> String {
    format!(
        "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = {} \
         ORDER BY created_at",
        d.param(1)
    )
}

/// Deletes up to a batch of expired or too-old notifications. Binds: now, oldest kept
/// `created_at`, batch size.
pub(super) fn prune_old(d: Dialect) -> String {
    format!(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications \
         WHERE (expires_at IS NOT NULL AND expires_at <= {p1}) OR created_at < {p2} LIMIT {p3})",
        p1 = d.param(1),
        p2 = d.param(2),
        p3 = d.param(3),
    )
}

/// Deletes up to a batch of the notifications beyond each user's newest `cap`. Binds: cap,
/// batch size.
pub(super) fn prune_over_cap(d: Dialect) -> String {
    format!(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
         (PARTITION BY user_id ORDER BY seq DESC) AS rank FROM notifications) ranked \
         WHERE rank > {p1} LIMIT {p2})",
        p1 = d.param(1),
        p2 = d.param(2),
    )
}

/// Deletes up to a batch of idempotency keys older than the window. Binds: oldest kept
/// `created_at`, batch size.
pub(super) fn prune_keys(d: Dialect) -> String {
    format!(
        "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys \
         WHERE created_at < {p1} LIMIT {p2})",
        p1 = d.param(1),
        p2 = d.param(2),
    )
}
