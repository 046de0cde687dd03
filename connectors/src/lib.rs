//! # sluice-connectors
//!
//! Sources and sinks for sluice, behind the engine's [`Source`](sluice_engine::source::Source)
//! and [`Sink`](sluice_engine::sink::Sink) traits.
//!
//! | connector | kind | what |
//! |---|---|---|
//! | [`VecSource`] | source | an in-memory vector, split across workers |
//! | [`CollectSink`] | sink | collects into memory, for tests |

mod collect;
mod vec_source;

pub use collect::CollectSink;
pub use vec_source::VecSource;
