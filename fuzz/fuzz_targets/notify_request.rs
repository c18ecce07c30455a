//! The notify request (HTTP body or ingested message): JSON decoding into `NotifyRequest`, then
//! `intake::validate`. Never panics; what it accepts obeys the limits, and what it refuses names
//! at least one field, under the given prefix.

#![no_main]

use std::collections::{BTreeMap, HashSet};

use belfry::config::LimitsConfig;
use belfry::intake::{NotifyRequest, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<NotifyRequest>(data) else {
        return;
    };
    let limits = LimitsConfig {
        max_recipients: 8,
        max_data_bytes: 256,
        ..LimitsConfig::default()
    };
    let mut fields = BTreeMap::new();
    match validate(request, &limits, "items[3].", &mut fields) {
        Some(accepted) => {
            assert!(fields.is_empty(), "{fields:?}");
            assert!(!accepted.recipients.is_empty());
            assert!(accepted.recipients.len() <= limits.max_recipients);
            let distinct: HashSet<_> = accepted.recipients.iter().collect();
            assert_eq!(distinct.len(), accepted.recipients.len(), "duplicate recipients");
            assert!(accepted.data.is_object());
            assert!(accepted.data.to_string().len() <= limits.max_data_bytes);
        }
        None => {
            assert!(!fields.is_empty(), "refused without naming a field");
            assert!(fields.keys().all(|k| k.starts_with("items[3].")), "{fields:?}");
        }
    }
});
