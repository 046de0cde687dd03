//! Writing a source: a split-based sensor source that reports its position, feeding a keyed
//! process function with event-time timers and a counter of its own.
//!
//! ```sh
//! cargo run --example custom_source
//! ```
//!
//! A [`Source`] is shared by all workers and cut into [`Split`]s; each worker opens a
//! [`SplitReader`] per split it owns and polls it for batches. A reader never blocks: it says
//! `Pending` when it has nothing now. `position()` is what a checkpoint records and what `open`
//! receives to resume.

use std::time::Duration;

use sluice::connectors::CollectSink;
use sluice::prelude::*;
use sluice::{BoxError, Counter};

/// Temperature readings from `sensors` sensors, one every second of event time each, for
/// `seconds` seconds. One split per sensor.
struct Sensors {
    sensors: usize,
    seconds: u64,
}

struct SensorReader {
    sensor: usize,
    next_second: u64,
    end: u64,
}

impl Source<(usize, f64)> for Sensors {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.sensors)
            .map(|s| Split::new(format!("sensor-{s}"), s))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<(usize, f64)>>, BoxError> {
        Ok(Box::new(SensorReader {
            sensor: split.index,
            next_second: position.unwrap_or(0),
            end: self.seconds,
        }))
    }
}

impl SplitReader<(usize, f64)> for SensorReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, (usize, f64)>) -> Result<SourceStatus, BoxError> {
        while !out.is_full() && self.next_second < self.end {
            let t = self.next_second as f64;
            let celsius = 20.0 + (t / 60.0 + self.sensor as f64).sin() * 5.0;
            // The source knows event time: attach it to the record.
            out.push_at(self.next_second as i64 * 1_000, (self.sensor, celsius));
            self.next_second += 1;
        }
        Ok(if self.next_second == self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        self.next_second
    }
}

/// Per sensor: the maximum of each minute, emitted by an event-time timer at the minute's end.
/// Counts the readings above 22 °C with a [`Counter`]: the job's metrics report it, summed over
/// the workers (and, with checkpoints, a restored job would continue it).
struct MinuteMax {
    max: MapState<i64, f64>,
    hot: Counter,
}

impl KeyedProcessFunction<usize, (usize, f64)> for MinuteMax {
    type Out = (usize, i64, f64);

    fn process(
        &mut self,
        sensor: &usize,
        (_, c): (usize, f64),
        ctx: &mut Context<'_, usize, Self::Out>,
    ) {
        if c > 22.0 {
            self.hot.add(1);
        }
        let minute = ctx.timestamp() / 60_000;
        let table = ctx.map(self.max);
        match table.get_mut(sensor, &minute) {
            Some(m) => *m = m.max(c),
            None => {
                table.insert(sensor, minute, c);
                ctx.register_event_timer(sensor, (minute + 1) * 60_000 - 1);
            }
        }
    }

    fn on_timer(&mut self, sensor: &usize, timer: Timer, ctx: &mut Context<'_, usize, Self::Out>) {
        let minute = (timer.time + 1) / 60_000 - 1;
        if let Some(max) = ctx.map(self.max).remove(sensor, &minute) {
            ctx.emit((*sensor, minute, max));
        }
    }
}

fn main() -> Result<(), JobError> {
    let env = StreamEnv::new(Config::default().parallelism(2));
    let out = CollectSink::new();
    env.source(Sensors {
        sensors: 3,
        seconds: 300,
    })
    // Timestamps come from the source; watermarks are tracked per split (per sensor).
    .with_watermarks(Watermarks::bounded_out_of_orderness(Duration::from_secs(2)))
    .key_by(|(sensor, _)| *sensor)
    .process(|reg| MinuteMax {
        max: reg.map("minute_max"),
        hot: reg.counter("hot readings"),
    })
    .name("minute_max")
    .sink(out.clone());
    let metrics = env.execute()?;
    let mut rows = out.values();
    rows.sort_by_key(|r| (r.0, r.1));
    for (sensor, minute, max) in rows {
        println!("sensor {sensor} minute {minute}: max {max:.2} °C");
    }
    let op = metrics
        .operator("minute_max")
        .expect("the process function");
    println!(
        "{} readings, {} of them above 22 °C",
        op.records_in,
        op.counter("hot readings")
    );
    Ok(())
}
