//! # sluice-connectors
//!
//! Sources and sinks for sluice, behind the engine's [`Source`](sluice_engine::source::Source)
//! and [`Sink`](sluice_engine::sink::Sink) traits.
//!
//! | connector | kind | what |
//! |---|---|---|
//! | [`VecSource`] | source | an in-memory vector, split across workers |
//! | [`GeneratorSource`] | source | seeded synthetic records, optionally rate-limited; exact on restore |
//! | [`LinesSource`] | source | raw text lines from files or stdin; bad lines as [`BadLine`] records |
//! | [`JsonLinesSource`] | source | JSON Lines from files or stdin into any `Deserialize` type; bad lines as [`BadLine`] records |
//! | [`CollectSink`] | sink | collects into memory, for tests |
//! | [`PrintSink`] | sink | prints every record to stdout, one line each |
//! | [`JsonLinesSink`] | sink | JSON Lines files, one per worker, in a directory |
//!
//! Every source here reports positions (for checkpoints) and never blocks a worker; every line
//! source turns each input line into exactly one record, good or bad.

mod collect;
mod generator;
mod json_sink;
mod json_source;
mod lines;
mod partitioned_sink;
mod print;
mod share;
pub mod txn_files;
mod vec_source;

pub use collect::CollectSink;
pub use generator::{GeneratorSource, SplitMix64};
pub use json_sink::JsonLinesSink;
pub use json_source::JsonLinesSource;
pub use lines::{
    BadLine, BadLineReason, Line, LinesSource, DEFAULT_MAX_LINE_BYTES, STDIN_NAME, STRIPE_BLOCK,
};
pub use partitioned_sink::{
    civil_from_days, hour_partition, LineEncoder, PartitionedJsonLinesSink, SerdeJson,
    NO_TIMESTAMP_DIR,
};
pub use print::PrintSink;
pub use vec_source::VecSource;
