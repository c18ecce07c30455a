//! Planning one group-commit transaction in memory: sequence numbers, group merges and
//! idempotency replays are worked out request by request, then the whole group is written with a
//! few multi-row statements (see [`Plan::write`]), whatever its size.
//!
//! Every request's idempotency key is resolved before anything of its batch is planned, so a
//! batch refused for a reused key leaves the plan as it was: no savepoints are needed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::group_commit::{GroupWrites, Outcome};
use super::rows::{NewRow, duration_ms, encode_response, replay, to_ms};
use super::{Inserted, StoreError, WritePolicy};
use crate::model::{
    Key, MutedAction, NewNotification, Notification, NotificationId, Seq, UserId, now,
};

/// One row the transaction writes: a new item, or a stored one that events joined.
pub(super) struct Planned {
    /// The row as it will be stored.
    pub(super) notification: Notification,
    /// `notification.data` serialised once, shared by every recipient of its request.
    pub(super) data: Arc<str>,
    /// Stored before this transaction: rewritten (when `changed`), not inserted.
    existing: bool,
    changed: bool,
}

/// An idempotency key first used in this transaction.
struct RecordedKey {
    key: Key,
    fingerprint: String,
    response: String,
    created_ms: i64,
}

/// What the transaction will write.
pub(super) struct Plan {
    /// Each recipient's last seq, as planned so far.
    seqs: HashMap<UserId, Seq>,
    /// Users whose seq this plan advanced.
    advanced: HashSet<UserId>,
    rows: Vec<Planned>,
    /// The newest row of each (user, group key) the plan has seen, by index in `rows`.
    heads: HashMap<(UserId, Key), usize>,
    keys: Vec<RecordedKey>,
    key_index: HashMap<Key, usize>,
}

/// What becomes of one request of a batch, once its idempotency key is resolved.
enum Fate {
    /// Store it, recording its key (and fingerprint) when it has one.
    Store(Option<String>),
    /// Answer with an earlier request's result.
    Replay(Inserted),
    /// Answer with the result of an earlier request of the same batch (same key and body).
    ReplayEarlier(Key, String),
}

impl Plan {
    /// A plan for `batches`, seeded with every recipient's last seq.
    pub(super) async fn seeded<W: GroupWrites + ?Sized>(
        conn: &mut W,
        batches: &[Vec<NewNotification>],
    ) -> Result<Self, sqlx::Error> {
        let users: Vec<&UserId> = batches
            .iter()
            .flatten()
            .flat_map(|request| &request.recipients)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut seqs = HashMap::with_capacity(users.len());
        for (user, seq) in conn.last_seqs(&users).await? {
            if let Ok(user) = UserId::parse(user) {
                seqs.insert(user, seq);
            }
        }
        Ok(Self {
            seqs,
            advanced: HashSet::new(),
            rows: Vec::new(),
            heads: HashMap::new(),
            keys: Vec::new(),
            key_index: HashMap::new(),
        })
    }

    /// Plans one caller's batch. The outer `Result` is a database failure (abort the group);
    /// the inner one refuses this batch only, with nothing of it planned.
    pub(super) async fn batch<W: GroupWrites + ?Sized>(
        &mut self,
        conn: &mut W,
        batch: &[NewNotification],
        policy: WritePolicy,
    ) -> Result<Outcome, sqlx::Error> {
        let created_at = now();
        let created_ms = to_ms(created_at);
        let fates = match self.resolve_keys(conn, batch, policy, created_ms).await? {
            Ok(fates) => fates,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut out = Vec::with_capacity(batch.len());
        for (request, fate) in batch.iter().zip(fates) {
            match fate {
                Fate::Replay(replayed) => out.push(replayed),
                Fate::ReplayEarlier(key, fingerprint) => {
                    match self.replay_recorded(&key, &fingerprint) {
                        Some(Ok(replayed)) => out.push(replayed),
                        Some(Err(refused)) => return Ok(Err(refused)),
                        None => {
                            return Ok(Err(StoreError::Corrupt(format!(
                                "key `{}` lost",
                                key.as_str()
                            ))));
                        }
                    }
                }
                Fate::Store(fingerprint) => {
                    let inserted = self.store(conn, request, created_at, policy).await?;
                    if let (Some(key), Some(fingerprint)) = (&request.idempotency_key, fingerprint)
                    {
                        self.record(key, fingerprint, encode_response(&inserted)?, created_ms);
                    }
                    out.push(inserted);
                }
            }
        }
        Ok(Ok(out))
    }

    /// Decides, without planning anything, what each request of `batch` becomes.
    async fn resolve_keys<W: GroupWrites + ?Sized>(
        &self,
        conn: &mut W,
        batch: &[NewNotification],
        policy: WritePolicy,
        created_ms: i64,
    ) -> Result<Result<Vec<Fate>, StoreError>, sqlx::Error> {
        let since = created_ms.saturating_sub(duration_ms(policy.idempotency_window));
        let mut in_batch: HashMap<&Key, String> = HashMap::new();
        let mut fates = Vec::with_capacity(batch.len());
        for request in batch {
            let Some(key) = &request.idempotency_key else {
                fates.push(Fate::Store(None));
                continue;
            };
            let fingerprint = request.fingerprint();
            if let Some(first) = in_batch.get(key) {
                if *first != fingerprint {
                    return Ok(Err(StoreError::IdempotencyConflict(key.as_str().into())));
                }
                fates.push(Fate::ReplayEarlier(key.clone(), fingerprint));
                continue;
            }
            let earlier = match self.replay_recorded(key, &fingerprint) {
                Some(outcome) => Some(outcome),
                None => conn
                    .find_key(key, since)
                    .await?
                    .map(|(seen, response)| replay(key, &fingerprint, &seen, &response)),
            };
            match earlier {
                Some(Ok(replayed)) => fates.push(Fate::Replay(replayed)),
                Some(Err(refused)) => return Ok(Err(refused)),
                None => {
                    in_batch.insert(key, fingerprint.clone());
                    fates.push(Fate::Store(Some(fingerprint)));
                }
            }
        }
        Ok(Ok(fates))
    }

    /// Replays `key` when this plan recorded it.
    fn replay_recorded(
        &self,
        key: &Key,
        fingerprint: &str,
    ) -> Option<Result<Inserted, StoreError>> {
        let recorded = &self.keys[*self.key_index.get(key)?];
        Some(replay(
            key,
            fingerprint,
            &recorded.fingerprint,
            &recorded.response,
        ))
    }

    fn record(&mut self, key: &Key, fingerprint: String, response: String, created_ms: i64) {
        self.key_index.insert(key.clone(), self.keys.len());
        self.keys.push(RecordedKey {
            key: key.clone(),
            fingerprint,
            response,
            created_ms,
        });
    }

    fn next_seq(&mut self, user: &UserId) -> Seq {
        let seq = self.seqs.entry(user.clone()).or_insert(0);
        *seq += 1;
        self.advanced.insert(user.clone());
        *seq
    }

    /// Plans one request: a row per recipient, or a merge into the recipient's group item.
    async fn store<W: GroupWrites + ?Sized>(
        &mut self,
        conn: &mut W,
        request: &NewNotification,
        created_at: time::OffsetDateTime,
        policy: WritePolicy,
    ) -> Result<Inserted, sqlx::Error> {
        let data: Arc<str> = Arc::from(request.data.to_string());
        let mut stored = Vec::with_capacity(request.recipients.len());
        for user in &request.recipients {
            let muted = request.muted.contains(user);
            if muted && request.muted_action == MutedAction::Drop {
                continue;
            }
            let row = NewRow {
                id: NotificationId::new(),
                user,
                request,
                created_at,
                muted,
            };
            if let Some(merged) = self.join_group(conn, &row, &data, policy).await? {
                stored.push(merged);
                continue;
            }
            let notification = row.stored(self.next_seq(user));
            if let Some(key) = request.group_key.as_ref().filter(|_| !muted) {
                self.heads
                    .insert((user.clone(), key.clone()), self.rows.len());
            }
            stored.push(notification.clone());
            self.rows.push(Planned {
                notification,
                data: Arc::clone(&data),
                existing: false,
                changed: false,
            });
        }
        Ok(Inserted::New(stored))
    }

    /// Merges `row` into its group's newest item (planned here, or stored) when it joins it
    /// (see [`NewRow::joins`]), under the user's next seq; `None` stores it as a new item.
    async fn join_group<W: GroupWrites + ?Sized>(
        &mut self,
        conn: &mut W,
        row: &NewRow<'_>,
        data: &Arc<str>,
        policy: WritePolicy,
    ) -> Result<Option<Notification>, sqlx::Error> {
        let window_ms = duration_ms(policy.group_window);
        let Some(key) = row
            .request
            .group_key
            .as_ref()
            .filter(|_| window_ms > 0 && !row.muted)
        else {
            return Ok(None);
        };
        let head_key = (row.user.clone(), key.clone());
        let index = match self.heads.get(&head_key) {
            Some(&index) => index,
            None => {
                let Some(head) = conn.group_head(row.user, key).await? else {
                    return Ok(None);
                };
                let head = match Notification::try_from(head) {
                    Ok(head) => head,
                    Err(e) => {
                        // A row we cannot read is left alone; the event becomes an item of its own.
                        tracing::warn!(error = %e, "group item unreadable; storing the event as a new item");
                        return Ok(None);
                    }
                };
                self.rows.push(Planned {
                    notification: head,
                    data: Arc::from(""),
                    existing: true,
                    changed: false,
                });
                self.heads.insert(head_key, self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        if !row.joins(&self.rows[index].notification, window_ms) {
            return Ok(None);
        }
        let seq = self.next_seq(row.user);
        let planned = &mut self.rows[index];
        row.merge_into(&mut planned.notification, seq, policy.max_actors);
        planned.data = Arc::clone(data);
        planned.changed = true;
        Ok(Some(planned.notification.clone()))
    }

    /// Writes the plan: the advanced seqs, the new rows, the rewritten group items, the keys.
    pub(super) async fn write<W: GroupWrites + ?Sized>(
        self,
        conn: &mut W,
    ) -> Result<(), sqlx::Error> {
        let seqs: Vec<(&UserId, Seq)> = self
            .advanced
            .iter()
            .filter_map(|user| Some((user, *self.seqs.get(user)?)))
            .collect();
        conn.save_seqs(&seqs).await?;
        let new: Vec<&Planned> = self.rows.iter().filter(|p| !p.existing).collect();
        conn.insert_rows(&new).await?;
        for planned in self.rows.iter().filter(|p| p.existing && p.changed) {
            conn.rewrite_group_item(planned).await?;
        }
        for key in &self.keys {
            conn.record_key(&key.key, &key.fingerprint, &key.response, key.created_ms)
                .await?;
        }
        Ok(())
    }
}

/// Splits `n` rows into chunks of at most `max` whose sizes are powers of two, largest first,
/// so a multi-row statement comes in few shapes and stays in the prepared-statement cache.
pub(super) fn chunk_sizes(mut n: usize, max: usize) -> impl Iterator<Item = usize> {
    let max = max.max(1).next_power_of_two() / if max.is_power_of_two() { 1 } else { 2 };
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= max {
            max
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// `items` in consecutive slices sized by [`chunk_sizes`].
pub(super) fn chunked<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    chunk_sizes(items.len(), max).map(move |size| {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        chunk
    })
}

#[cfg(test)]
mod tests {
    use super::{chunk_sizes, chunked};

    #[test]
    fn chunked_slices_cover_the_items_in_order() {
        let items: Vec<u32> = (0..37).collect();
        let slices: Vec<&[u32]> = chunked(&items, 16).collect();
        assert_eq!(
            slices.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [16, 16, 4, 1]
        );
        assert_eq!(slices.concat(), items);
    }

    #[test]
    fn chunks_are_powers_of_two_up_to_the_max_and_cover_every_row() {
        assert_eq!(chunk_sizes(0, 64).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1, 64).collect::<Vec<_>>(), [1]);
        assert_eq!(chunk_sizes(37, 64).collect::<Vec<_>>(), [32, 4, 1]);
        assert_eq!(chunk_sizes(130, 64).collect::<Vec<_>>(), [64, 64, 2]);
        assert_eq!(chunk_sizes(100, 100).collect::<Vec<_>>(), [64, 32, 4]);
        for n in 0..300 {
            let sizes: Vec<usize> = chunk_sizes(n, 64).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= 64));
        }
    }
}
