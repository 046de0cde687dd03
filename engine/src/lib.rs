//! # sluice-engine
//!
//! The API and runtime of sluice, an embeddable, Flink-style stream processor: event time,
//! watermarks, keyed state and timers, running on `P` worker threads inside your process.
//!
//! ## A tour
//!
//! A job is described with a fluent API and then executed:
//!
//! ```
//! use std::time::Duration;
//! use sluice_engine::prelude::*;
//! use sluice_connectors::{CollectSink, VecSource};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Ride { zone: u32, fare: i64, ts: i64 }
//!
//! let rides = vec![
//!     Ride { zone: 1, fare: 10, ts: 1_000 },
//!     Ride { zone: 2, fare: 7, ts: 1_500 },
//!     Ride { zone: 1, fare: 5, ts: 1_200 },
//! ];
//! let env = StreamEnv::new(Config::default().parallelism(2));
//! let out = CollectSink::new();
//! env.source(VecSource::new(rides))
//!     .with_watermarks(
//!         Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(|r: &Ride| r.ts),
//!     )
//!     .filter(|r| r.fare > 0)
//!     .key_by(|r| r.zone)
//!     .reduce(|a, b| Ride { fare: a.fare + b.fare, ..b })
//!     .map(|(zone, r)| (zone, r.fare))
//!     .sink(out.clone());
//! let metrics = env.execute()?;
//!
//! // One running sum per record; the largest per zone is its total.
//! let sums = out.values();
//! assert_eq!(sums.len(), 3);
//! assert!(sums.contains(&(1, 15)) && sums.contains(&(2, 7)));
//! assert_eq!(metrics.operator("reduce").unwrap().records_in, 3);
//! # Ok::<(), sluice_engine::JobError>(())
//! ```
//!
//! What happens when it runs:
//!
//! - Each of the `P` workers runs one instance of every operator ([`runtime`] docs in
//!   `docs/architecture.md`). Forward edges (`filter`, `map`) are direct calls, once per batch.
//! - [`Stream::key_by`] routes records by `key -> key group -> worker` over bounded channels,
//!   in batches, with watermarks in the same ordered channel.
//! - [`Stream::with_watermarks`] assigns event time ([`watermark`]); keyed operators
//!   ([`process`]) keep typed keyed [`state`] and fire timers when the watermark passes them.
//! - End of bounded input is a final watermark that fires everything pending.
//!
//! The modules:
//!
//! | module | what |
//! |---|---|
//! | [`stream`] | [`StreamEnv`], [`Stream`], [`KeyedStream`]: describing a job |
//! | [`time`], [`watermark`] | timestamps, clocks, watermark strategies |
//! | [`window`] | tumbling, sliding and session windows |
//! | [`process`], [`state`], [`side_output`] | keyed process functions, keyed state, side outputs |
//! | [`source`], [`sink`] | the connector interfaces |
//! | [`keys`] | key groups and routing |
//! | [`checkpoint`] | checkpoints, savepoints, restore |
//! | [`metrics`], [`error`] | what a job reports |

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod keys;
pub mod metrics;
pub(crate) mod operators;
pub mod process;
pub mod record;
pub mod runtime;
pub mod side_output;
pub mod sink;
pub mod source;
pub mod state;
pub mod stream;
pub mod time;
pub mod watermark;
pub mod window;

pub use checkpoint::{RestoreFrom, RestoreInfo};
pub use config::Config;
pub use error::{BoxError, JobError, OperatorName};
pub use metrics::{
    CheckpointMetrics, Counter, ExchangeMetrics, JobMetrics, OperatorMetrics, RestoredCounts,
};
pub use process::{
    Context, KeyedProcessFunction, ProcessContext, ProcessFunction, TimeDomain, Timer,
};
pub use record::Record;
pub use runtime::job::{JobControl, JobHandle, JobObserver};
pub use side_output::OutputTag;
pub use state::{ListState, MapState, StateRegistry, ValueState};
pub use stream::{Data, KeyedStream, SinkHandle, Stream, StreamEnv};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use watermark::{WatermarkStrategy, Watermarks};

/// Everything a job definition usually needs, in one import.
pub mod prelude {
    pub use crate::process::{
        Context, KeyedProcessFunction, ProcessContext, ProcessFunction, TimeDomain, Timer,
    };
    pub use crate::sink::{Sink, SinkContext, SinkWriter};
    pub use crate::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
    pub use crate::state::{ListState, MapState, StateRegistry, ValueState};
    pub use crate::window::{Aggregate, Session, Sliding, Tumbling, Window, WindowResult};
    pub use crate::{
        Config, Data, JobError, JobMetrics, KeyedStream, OutputTag, Record, RestoreFrom, Stream,
        StreamEnv, Timestamp, Watermarks,
    };
}
