//! # sluice-jobs
//!
//! The ride-hailing jobs that motivated sluice, composed from its public API, and the
//! `ridehail` binary that runs them. The business rules come from
//! `shared/reference/ride-hailing-streaming-architecture.md`; the wire format and validation from
//! `shared/reference/events.md`.

pub mod backup;
pub mod dedup;
pub mod event;
pub mod generator;
pub mod ingest;
pub mod live;
pub mod ridehail;
pub mod serde_time;
pub mod shifts;
pub mod surge;
pub mod timestamp;
pub mod trips;
pub mod validate;
