//! # sluice
//!
//! An embeddable, Flink-style stream processor. This crate is the one users depend on: it
//! re-exports the engine ([`sluice_engine`]: the API and runtime) and the connectors
//! ([`connectors`]: sources and sinks).
//!
//! ```
//! use sluice::prelude::*;
//! use sluice::connectors::{CollectSink, VecSource};
//!
//! let env = StreamEnv::new(Config::default().parallelism(2));
//! let out = CollectSink::new();
//! env.source(VecSource::new((1..=100u64).collect()))
//!     .filter(|x| x % 2 == 0)
//!     .map(|x| x * 10)
//!     .sink(out.clone());
//! env.execute()?;
//! assert_eq!(out.values().iter().sum::<u64>(), 25_500);
//! # Ok::<(), sluice::JobError>(())
//! ```
//!
//! See the engine's crate documentation for a tour, and `docs/architecture.md` in the
//! repository for how a job runs.

pub use sluice_engine::*;

/// Sources and sinks (the `sluice-connectors` crate).
pub mod connectors {
    pub use sluice_connectors::*;
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
