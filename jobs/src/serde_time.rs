//! Serde helpers for job outputs: event-time milliseconds written as RFC 3339 strings
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`, see [`crate::timestamp`]), so JSON Lines outputs read like the
//! input events while the Rust values keep plain `i64` milliseconds.
//!
//! Use with `#[serde(serialize_with = "crate::serde_time::rfc3339")]` (or `rfc3339_opt` for an
//! `Option<i64>`, which writes `null` for `None`).

use serde::Serializer;

use crate::timestamp::{format_rfc3339_ms, rfc3339_ms_bytes};

/// Serialises milliseconds since the epoch as an RFC 3339 string.
///
/// # Errors
///
/// Whatever the serializer reports.
pub fn rfc3339<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    // On the stack for years 0 to 9999 (every valid event's), not a `String` per field.
    match rfc3339_ms_bytes(*ms) {
        Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
        None => s.serialize_str(&format_rfc3339_ms(*ms)),
    }
}

/// Serialises optional milliseconds since the epoch as an RFC 3339 string or `null`.
///
/// # Errors
///
/// Whatever the serializer reports.
pub fn rfc3339_opt<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => rfc3339(ms, s),
        None => s.serialize_none(),
    }
}
