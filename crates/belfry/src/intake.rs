//! The notify request: what a backend sends to create notifications, over the HTTP API or an
//! event stream (see `ingest`), and its validation into a [`NewNotification`]. One definition,
//! so both roads accept and refuse exactly the same messages.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::config::LimitsConfig;
use crate::model::{Actor, Key, NewNotification, NotificationType, UserId, now};

/// One notification to one or many users.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// Recipient user ids (1–1000, duplicates collapsed).
    #[schema(value_type = Vec<RecipientId>, min_items = 1, max_items = 1000)]
    pub recipients: Vec<String>,
    /// Event type, 1–128 chars of `[A-Za-z0-9._:-]`.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]+$")]
    pub kind: String,
    /// App data: a JSON object, at most `limits.max_data_bytes` serialised.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// Optional grouping key.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    pub group_key: Option<String>,
    /// Who caused it ("Alice"), 1–128 characters: a grouped item lists its distinct actors.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    pub actor: Option<String>,
    /// Optional idempotency key: a repeat within the window creates nothing.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    pub idempotency_key: Option<String>,
    /// Optional expiry (RFC 3339). Must be in the future: a time in the past is a 422.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// A user id: 1–128 characters, no whitespace or control characters.
#[derive(ToSchema)]
#[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[^\\s\\x00-\\x1f\\x7f]+$")]
#[allow(dead_code)]
struct RecipientId(String);

fn field(fields: &mut BTreeMap<String, String>, prefix: &str, name: &str, problem: impl ToString) {
    fields.insert(format!("{prefix}{name}"), problem.to_string());
}

/// Whether a string or key anywhere in `value` holds a NUL character. (The parser bounds the
/// nesting depth, and so this recursion.)
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Turns a request into a [`NewNotification`], or records every problem under `prefix`.
pub fn validate(
    request: NotifyRequest,
    limits: &LimitsConfig,
    prefix: &str,
    fields: &mut BTreeMap<String, String>,
) -> Option<NewNotification> {
    let before = fields.len();
    let count = request.recipients.len();
    if count == 0 {
        field(fields, prefix, "recipients", "must not be empty");
    } else if count > limits.max_recipients {
        field(
            fields,
            prefix,
            "recipients",
            format!(
                "{count} recipients; at most {} allowed",
                limits.max_recipients
            ),
        );
    }
    // Over the limit the list is refused on its count alone, with no problem per recipient: a
    // million bad ids must not cost a million entries in memory and in the answer.
    let listed = if count > limits.max_recipients {
        Vec::new()
    } else {
        request.recipients
    };
    let mut seen = HashSet::new();
    let mut recipients = Vec::with_capacity(listed.len());
    for (i, raw) in listed.into_iter().enumerate() {
        match UserId::parse(raw) {
            Ok(user) => {
                if seen.insert(user.clone()) {
                    recipients.push(user);
                }
            }
            Err(e) => field(fields, prefix, &format!("recipients[{i}]"), e),
        }
    }
    let kind = NotificationType::parse(request.kind)
        .map_err(|e| field(fields, prefix, "type", e))
        .ok();
    let data = request
        .data
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if !data.is_object() {
        field(fields, prefix, "data", "must be a JSON object");
    } else {
        let size = data.to_string().len();
        // PostgreSQL's jsonb cannot hold a NUL; refused here so both backends agree.
        if holds_nul(&data) {
            field(
                fields,
                prefix,
                "data",
                "must not contain a NUL character (\\u0000)",
            );
        } else if size > limits.max_data_bytes {
            field(
                fields,
                prefix,
                "data",
                format!("is {size} bytes; at most {} allowed", limits.max_data_bytes),
            );
        }
    }
    let group_key = request
        .group_key
        .map(Key::parse)
        .transpose()
        .map_err(|e| field(fields, prefix, "group_key", e))
        .ok()
        .flatten();
    let actor = request
        .actor
        .map(Actor::parse)
        .transpose()
        .map_err(|e| field(fields, prefix, "actor", e))
        .ok()
        .flatten();
    let idempotency_key = request
        .idempotency_key
        .map(Key::parse)
        .transpose()
        .map_err(|e| field(fields, prefix, "idempotency_key", e))
        .ok()
        .flatten();
    if let Some(at) = request.expires_at
        && at <= now()
    {
        field(fields, prefix, "expires_at", "must be in the future");
    }
    if fields.len() != before {
        return None;
    }
    Some(NewNotification {
        recipients,
        kind: kind?,
        data,
        group_key,
        actor,
        idempotency_key,
        expires_at: request.expires_at,
        muted: Default::default(),
        muted_action: Default::default(),
    })
}
