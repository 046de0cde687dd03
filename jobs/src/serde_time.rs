//! Serde helpers for job outputs: event-time milliseconds written as RFC 3339 strings
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`, see [`crate::timestamp`]), so JSON Lines outputs read like the
//! input events while the Rust values keep plain `i64` milliseconds.
//!
//! Use with `#[serde(serialize_with = "crate::serde_time::rfc3339")]` (or `rfc3339_opt` for an
//! `Option<i64>`, which writes `null` for `None`).

use serde::Serializer;

use crate::timestamp::{ascii, with_rfc3339_ms};

/// Serialises milliseconds since the epoch as an RFC 3339 string.
///
/// # Errors
///
/// Whatever the serializer reports.
pub fn rfc3339<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    with_rfc3339_ms(*ms, |t| s.serialize_str(ascii(t)))
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
