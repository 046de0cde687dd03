//! A minimal surge-pricing job: per zone and 5-minute event-time window, demand (ride requests)
//! over supply (distinct available drivers), turned into a price multiplier.
//!
//! ```sh
//! cargo run --example surge
//! ```
//!
//! The full job, with validation, dead letters, H3 zones and driver state, is
//! `sluice_jobs::surge`; this is the core of it in one screen.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice::connectors::{PrintSink, VecSource};
use sluice::prelude::*;

/// A ride request or a driver saying it is available, in a zone, at a time (ms).
#[derive(Clone, Debug)]
enum Event {
    Request {
        zone: &'static str,
        ts: i64,
    },
    DriverAvailable {
        zone: &'static str,
        driver: u32,
        ts: i64,
    },
}

impl Event {
    fn zone(&self) -> &'static str {
        match self {
            Event::Request { zone, .. } | Event::DriverAvailable { zone, .. } => zone,
        }
    }
    fn ts(&self) -> i64 {
        match self {
            Event::Request { ts, .. } | Event::DriverAvailable { ts, .. } => *ts,
        }
    }
}

/// Demand and the set of distinct drivers seen, per zone and window.
struct SupplyDemand;

impl Aggregate<Event> for SupplyDemand {
    type Acc = (u64, BTreeSet<u32>);
    type Out = (u64, u64);
    fn create(&self) -> Self::Acc {
        (0, BTreeSet::new())
    }
    fn add(&self, acc: &mut Self::Acc, e: Event) {
        match e {
            Event::Request { .. } => acc.0 += 1,
            // A chatty driver is counted once.
            Event::DriverAvailable { driver, .. } => {
                acc.1.insert(driver);
            }
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 += other.0;
        acc.1.extend(other.1);
    }
    fn finish(&self, acc: &Self::Acc) -> (u64, u64) {
        (acc.0, acc.1.len() as u64)
    }
}

fn multiplier(demand: u64, supply: u64) -> f64 {
    let ratio = demand as f64 / supply.max(1) as f64;
    match ratio {
        r if r < 1.2 => 1.0,
        r if r < 2.0 => 1.5,
        r if r < 3.0 => 2.0,
        _ => 2.5,
    }
}

fn main() -> Result<(), JobError> {
    let min = 60_000;
    let mut events = Vec::new();
    // Midtown: 3 drivers (one of them chatty), 8 requests in the first window.
    for i in 0..8 {
        events.push(Event::Request {
            zone: "midtown",
            ts: i * 20_000,
        });
    }
    for (driver, times) in [(1, 5), (2, 1), (3, 1)] {
        for t in 0..times {
            events.push(Event::DriverAvailable {
                zone: "midtown",
                driver,
                ts: t * 30_000 + 1_000,
            });
        }
    }
    // Harlem: quiet, 2 drivers, 1 request; then a busy second window.
    events.push(Event::Request {
        zone: "harlem",
        ts: 2 * min,
    });
    events.push(Event::DriverAvailable {
        zone: "harlem",
        driver: 7,
        ts: 3 * min,
    });
    events.push(Event::DriverAvailable {
        zone: "harlem",
        driver: 8,
        ts: 4 * min,
    });
    for i in 0..3 {
        events.push(Event::Request {
            zone: "harlem",
            ts: 6 * min + i * 1_000,
        });
    }
    events.push(Event::DriverAvailable {
        zone: "harlem",
        driver: 7,
        ts: 7 * min,
    });

    let env = StreamEnv::new(Config::default().parallelism(2));
    env.source(VecSource::new(events))
        .with_watermarks(
            Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(Event::ts),
        )
        // Keys are written to checkpoints with their state, so they must be owned (serde can
        // read back a `String`, not a `&'static str`).
        .key_by(|e| e.zone().to_string())
        .window(Tumbling::of(Duration::from_secs(300)))
        .aggregate(SupplyDemand)
        .map(|r: WindowResult<String, (u64, u64)>| {
            let (demand, supply) = r.value;
            format!(
                "{:<8} [{:>3} min, {:>3} min)  demand {demand}  supply {supply}  x{}",
                r.key,
                r.window.start / 60_000,
                r.window.end / 60_000,
                multiplier(demand, supply)
            )
        })
        .sink(PrintSink::with_format(|line: &String| line.clone()));
    let metrics = env.execute()?;
    eprintln!(
        "{} events, {} window results",
        metrics.operator("source").map_or(0, |m| m.records_out),
        metrics.operator("window").map_or(0, |m| m.records_out)
    );
    Ok(())
}
