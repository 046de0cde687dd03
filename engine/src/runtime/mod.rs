//! The runtime: how a job graph runs on worker threads.
//!
//! See `docs/architecture.md` for the one-page picture.

pub(crate) mod align;
pub(crate) mod graph;
pub(crate) mod job;
pub(crate) mod push;
pub(crate) mod timers;
pub(crate) mod watermarks;
pub(crate) mod worker;
