//! Preferences: what each user wants delivered, on which channel, and when. A user mutes
//! everything (`muted`, or `mute_until` a time), or one channel (`in_app`: live delivery and
//! the bell; `web_push`), for every type or per type.
//!
//! The decision is taken before a notification is stored (see `Notifier::notify`): a muted
//! notification is stored for history, already read and flagged `muted`, and is never sent live
//! or pushed; or, with `preferences.muted = "drop"`, not stored at all.
//!
//! Reads go through [`PreferenceCache`], a bounded TTL cache in front of the store, so a notify
//! does not pay a database read per recipient. A change is visible at once on the node that
//! made it and within `preferences.cache_secs` on the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::model::{NotificationType, StateVersion, UserId};
use crate::store::{Store, StoreError};

/// Users whose preferences one store read fetches (SQLite binds each id).
const READ_CHUNK: usize = 500;

/// Most per-type entries a user may keep.
pub const MAX_TYPES: usize = 200;

/// A user's preferences (the document of `GET /v1/me/preferences`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Preferences {
    /// Mutes everything: nothing is delivered live or pushed (it is still stored, as muted).
    pub muted: bool,
    /// Mutes everything until this time (RFC 3339), then nothing more is needed to unmute.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub mute_until: Option<OffsetDateTime>,
    /// Each channel for every type, unless `types` says otherwise.
    pub channels: Channels,
    /// Per notification type; a channel left out follows `channels`.
    pub types: BTreeMap<String, TypeChannels>,
}

/// Both channels, on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Channels {
    /// Live delivery to open tabs (WebSocket, SSE, long-poll) and the unread count. Default true.
    pub in_app: bool,
    /// Web Push to closed apps. Default true.
    pub web_push: bool,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            in_app: true,
            web_push: true,
        }
    }
}

/// One type's channels; `null` or absent follows [`Preferences::channels`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TypeChannels {
    /// Live delivery for this type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_app: Option<bool>,
    /// Web Push for this type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_push: Option<bool>,
}

/// How one notification reaches one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Sent live and counted unread; otherwise stored muted.
    pub in_app: bool,
    /// May be pushed (the server's push policy decides the rest).
    pub web_push: bool,
}

impl Preferences {
    /// Whether everything is muted at `now`.
    pub fn muted_at(&self, now: OffsetDateTime) -> bool {
        self.muted || self.mute_until.is_some_and(|until| until > now)
    }

    /// How a notification of `kind` reaches this user at `now`.
    pub fn delivery(&self, kind: &NotificationType, now: OffsetDateTime) -> Delivery {
        if self.muted_at(now) {
            return Delivery {
                in_app: false,
                web_push: false,
            };
        }
        let typed = self.types.get(kind.as_str()).copied().unwrap_or_default();
        Delivery {
            in_app: typed.in_app.unwrap_or(self.channels.in_app),
            web_push: typed.web_push.unwrap_or(self.channels.web_push),
        }
    }
}

/// Preferences as a client or backend sends them: every field optional (a missing one takes its
/// default), times as text so a malformed one is a 422 naming the field, not a 400.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PreferencesInput {
    /// See [`Preferences::muted`].
    muted: bool,
    /// See [`Preferences::mute_until`]: RFC 3339, or null.
    #[schema(format = DateTime)]
    mute_until: Option<String>,
    /// See [`Preferences::channels`].
    #[serde(deserialize_with = "crate::json::object")]
    channels: Channels,
    /// See [`Preferences::types`]: at most 200, keyed by notification type.
    #[serde(deserialize_with = "crate::json::object_values")]
    types: BTreeMap<String, TypeChannels>,
}

impl PreferencesInput {
    /// The preferences, or every problem keyed by field (`mute_until`, `types`, `types.<name>`).
    pub fn parse(self) -> Result<Preferences, BTreeMap<String, String>> {
        let mut fields = BTreeMap::new();
        let mute_until = match self.mute_until.as_deref() {
            None => None,
            Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
                Ok(at) => Some(at),
                Err(_) => {
                    fields.insert("mute_until".into(), "must be an RFC 3339 time".into());
                    None
                }
            },
        };
        if self.types.len() > MAX_TYPES {
            fields.insert("types".into(), format!("at most {MAX_TYPES} types"));
        }
        for name in self.types.keys() {
            if let Err(e) = NotificationType::parse(name.as_str()) {
                let shown: String = name.chars().take(64).collect();
                fields.insert(format!("types.{shown}"), e.to_string());
            }
        }
        if !fields.is_empty() {
            return Err(fields);
        }
        Ok(Preferences {
            muted: self.muted,
            mute_until,
            channels: self.channels,
            types: self.types,
        })
    }
}

/// Preferences read through a bounded TTL cache; users without stored preferences are cached
/// too (as the defaults).
pub struct PreferenceCache {
    store: Arc<dyn Store>,
    entries: Option<moka::sync::Cache<UserId, Arc<Preferences>>>,
}

impl PreferenceCache {
    /// Caches up to `capacity` users for `ttl`; a zero `ttl` reads the store every time.
    pub fn new(store: Arc<dyn Store>, ttl: Duration, capacity: u64) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        Self { store, entries }
    }

    /// One user's preferences.
    pub async fn get(&self, user: &UserId) -> Result<Arc<Preferences>, StoreError> {
        let mut found = self.get_many(std::slice::from_ref(user)).await?;
        Ok(found.remove(user).unwrap_or_default())
    }

    /// The preferences of each of `users`, reading every one not cached in one query.
    pub async fn get_many(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Arc<Preferences>>, StoreError> {
        let mut found = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match self.entries.as_ref().and_then(|cache| cache.get(user)) {
                Some(preferences) => {
                    found.insert(user.clone(), preferences);
                }
                None => missing.push(user.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let mut stored: HashMap<UserId, Preferences> = HashMap::new();
        for chunk in missing.chunks(READ_CHUNK) {
            stored.extend(self.store.preferences(chunk).await?);
        }
        for user in missing {
            let preferences = Arc::new(stored.remove(&user).unwrap_or_default());
            if let Some(cache) = &self.entries {
                cache.insert(user.clone(), Arc::clone(&preferences));
            }
            found.insert(user, preferences);
        }
        Ok(found)
    }

    /// Stores `preferences` for `user`; this node sees them at once.
    pub async fn set(
        &self,
        user: &UserId,
        preferences: Preferences,
    ) -> Result<(Arc<Preferences>, StateVersion), StoreError> {
        let version = self.store.set_preferences(user, &preferences).await?;
        let preferences = Arc::new(preferences);
        if let Some(cache) = &self.entries {
            cache.insert(user.clone(), Arc::clone(&preferences));
        }
        Ok((preferences, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> NotificationType {
        NotificationType::parse(name).unwrap()
    }

    #[test]
    fn defaults_deliver_everything() {
        let d = Preferences::default().delivery(&kind("a"), OffsetDateTime::now_utc());
        assert_eq!(
            d,
            Delivery {
                in_app: true,
                web_push: true
            }
        );
    }

    #[test]
    fn a_type_overrides_its_channel_and_inherits_the_other() {
        let mut p = Preferences::default();
        p.channels.web_push = false;
        p.types.insert(
            "post.liked".into(),
            TypeChannels {
                in_app: Some(false),
                web_push: None,
            },
        );
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            p.delivery(&kind("post.liked"), now),
            Delivery {
                in_app: false,
                web_push: false
            }
        );
        assert_eq!(
            p.delivery(&kind("comment.created"), now),
            Delivery {
                in_app: true,
                web_push: false
            }
        );
    }

    #[test]
    fn mute_until_mutes_only_until_then() {
        let now = OffsetDateTime::now_utc();
        let mut p = Preferences {
            mute_until: Some(now + time::Duration::minutes(5)),
            ..Preferences::default()
        };
        assert!(!p.delivery(&kind("a"), now).in_app);
        assert!(!p.delivery(&kind("a"), now).web_push);
        p.mute_until = Some(now - time::Duration::minutes(5));
        assert!(p.delivery(&kind("a"), now).in_app);
        p.muted = true;
        assert!(!p.delivery(&kind("a"), now).in_app);
    }

    #[test]
    fn input_names_every_bad_field() {
        let input: PreferencesInput = serde_json::from_value(serde_json::json!({
            "mute_until": "tomorrow",
            "types": {"ok.type": {"in_app": false}, "bad type": {}},
        }))
        .unwrap();
        let fields = input.parse().unwrap_err();
        assert!(fields.contains_key("mute_until"), "{fields:?}");
        assert!(fields.contains_key("types.bad type"), "{fields:?}");
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn input_refuses_too_many_types_and_unknown_fields() {
        let types: serde_json::Map<String, serde_json::Value> = (0..=MAX_TYPES)
            .map(|i| (format!("t{i}"), serde_json::json!({})))
            .collect();
        let input: PreferencesInput =
            serde_json::from_value(serde_json::json!({ "types": types })).unwrap();
        assert!(input.parse().unwrap_err().contains_key("types"));
        assert!(
            serde_json::from_value::<PreferencesInput>(serde_json::json!({"mute": true})).is_err()
        );
    }

    #[test]
    fn stored_documents_round_trip() {
        let input: PreferencesInput = serde_json::from_value(serde_json::json!({
            "muted": false,
            "mute_until": "2030-01-02T03:04:05Z",
            "channels": {"in_app": true, "web_push": false},
            "types": {"post.liked": {"in_app": false}},
        }))
        .unwrap();
        let p = input.parse().unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Preferences>(&text).unwrap(), p);
        assert!(
            text.contains(r#""types":{"post.liked":{"in_app":false}}"#),
            "{text}"
        );
    }
}
