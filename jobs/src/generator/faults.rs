//! Fault injection: what turns a clean event sequence into realistic input.
//!
//! Applied to each valid event line as it leaves the simulation, with its own random stream
//! (so the simulated city does not depend on the fault rates: the valid events of a run with
//! faults are those of the same run without, plus duplicates, reordered):
//!
//! - **duplicate**: the line is emitted, and again verbatim 1 ms to 2 s later;
//! - **out of order**: the line is held back by 1 ms up to [`Faults::max_disorder`] (default
//!   4 s, inside the default 5 s watermark bound, so it is *not* late);
//! - **late**: the line is held back by [`Faults::late_delay`] (default 1 to 5 minutes, far
//!   beyond the bound: behind the watermark when it arrives);
//! - **malformed**: an *extra* line, derived from the event's line, that is not a valid event:
//!   truncated JSON, a field of the wrong type, a missing field, an unknown `event_type`,
//!   coordinates out of range, a timestamp before 2024, a negative fare, or JSON that is not an
//!   object. (Extra rather than a replacement, so that the valid events still tell a consistent
//!   story.)
//!
//! At most one of duplicate / out of order / late applies to an event; malformed is drawn
//! independently.

use std::time::Duration;

use serde_json::{Map, Value};
use sluice_connectors::SplitMix64;

use crate::event::EARLIEST_TIMESTAMP_MS;
use crate::timestamp::format_rfc3339_ms;

/// Fault rates (probabilities per valid event, each in `0..=1`) and delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of events emitted twice.
    pub duplicate: f64,
    /// Share of events followed by an extra malformed line.
    pub malformed: f64,
    /// Share of events delayed within the disorder bound.
    pub out_of_order: f64,
    /// Share of events delayed far beyond it.
    pub late: f64,
    /// Largest delay of an out-of-order event. Default 4 s.
    pub max_disorder: Duration,
    /// Range of delays of a late event. Default 1 to 5 minutes.
    pub late_delay: (Duration, Duration),
}

impl Default for Faults {
    /// No faults.
    fn default() -> Self {
        Self {
            duplicate: 0.0,
            malformed: 0.0,
            out_of_order: 0.0,
            late: 0.0,
            max_disorder: Duration::from_secs(4),
            late_delay: (Duration::from_secs(60), Duration::from_secs(300)),
        }
    }
}

impl Faults {
    /// No faults (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// A little of everything: 1% duplicates, 0.5% malformed lines, 5% out of order, 0.2% late.
    pub fn typical() -> Self {
        Self {
            duplicate: 0.01,
            malformed: 0.005,
            out_of_order: 0.05,
            late: 0.002,
            ..Self::default()
        }
    }

    /// Whether any fault is enabled.
    pub fn any(&self) -> bool {
        self.duplicate > 0.0 || self.malformed > 0.0 || self.out_of_order > 0.0 || self.late > 0.0
    }

    /// Checks the rates and delays; the message says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("duplicate", self.duplicate),
            ("malformed", self.malformed),
            ("out_of_order", self.out_of_order),
            ("late", self.late),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("fault rate `{name}` = {p} is not in 0..=1"));
            }
        }
        let sum = self.duplicate + self.out_of_order + self.late;
        if sum > 1.0 {
            return Err(format!(
                "duplicate + out_of_order + late = {sum} exceeds 1 (they are exclusive)"
            ));
        }
        if self.late_delay.0 > self.late_delay.1 {
            return Err("late_delay: the minimum exceeds the maximum".into());
        }
        Ok(())
    }
}

/// What happens to one valid line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Emitted at its time.
    OnTime,
    /// Emitted at its time and again after this delay (ms).
    Duplicate(i64),
    /// Emitted after this delay (ms) only.
    Delayed(i64),
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn between(rng: &mut SplitMix64, low: i64, high: i64) -> i64 {
    if high <= low {
        low
    } else {
        low + rng.below((high - low) as u64 + 1) as i64
    }
}

impl Faults {
    /// Draws the fate of one line.
    pub(crate) fn fate(&self, rng: &mut SplitMix64) -> Fate {
        let u = rng.next_f64();
        if u < self.duplicate {
            Fate::Duplicate(between(rng, 1, 2_000))
        } else if u < self.duplicate + self.out_of_order {
            Fate::Delayed(between(rng, 1, ms(self.max_disorder).max(1)))
        } else if u < self.duplicate + self.out_of_order + self.late {
            let (lo, hi) = (ms(self.late_delay.0), ms(self.late_delay.1));
            Fate::Delayed(between(rng, lo.max(1), hi.max(1)))
        } else {
            Fate::OnTime
        }
    }
}

/// A line that is not a valid event, derived from the valid event line `line` (which must be
/// what [`RideEventData::to_json`](crate::event::RideEventData::to_json) wrote).
pub(crate) fn malformed(line: &str, rng: &mut SplitMix64) -> String {
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else {
        return "not even json".to_string();
    };
    match rng.below(8) {
        // Truncated (a proper, non-empty prefix of an object is never valid JSON).
        0 => {
            let cut = 1 + rng.below(line.len().saturating_sub(1).max(1) as u64) as usize;
            line.get(..cut).unwrap_or("{").to_string()
        }
        // A string where a number belongs, or a number where a string belongs.
        1 => {
            let keys: Vec<String> = obj.keys().cloned().collect();
            let key = &keys[rng.below(keys.len() as u64) as usize];
            let wrong = match obj[key] {
                Value::String(_) => Value::from(42),
                _ => Value::from("forty-two"),
            };
            obj.insert(key.clone(), wrong);
            to_line(&obj)
        }
        // Coordinates out of range (or, without coordinates, an unknown type).
        2 => {
            let coordinate = ["latitude", "pickup_lat", "start_lat", "end_lat"]
                .into_iter()
                .find(|k| obj.contains_key(*k));
            match coordinate {
                Some(k) => {
                    let v = 90.0 + (1.0 + rng.below(90) as f64);
                    obj.insert(k.to_string(), Value::from(v));
                }
                None => unknown_type(&mut obj, rng),
            }
            to_line(&obj)
        }
        3 => {
            unknown_type(&mut obj, rng);
            to_line(&obj)
        }
        // Before 2024-01-01.
        4 => {
            let day = 86_400_000;
            let old = EARLIEST_TIMESTAMP_MS - between(rng, 1, 4 * 365 * day);
            obj.insert("timestamp".into(), Value::from(format_rfc3339_ms(old)));
            to_line(&obj)
        }
        // A required field missing.
        5 => {
            let k = ["event_id", "event_type", "timestamp"][rng.below(3) as usize];
            obj.remove(k);
            to_line(&obj)
        }
        // A negative amount (or, without one, a field set to null).
        6 => {
            match ["actual_fare", "estimated_fare", "actual_duration"]
                .into_iter()
                .find(|k| obj.contains_key(*k))
            {
                Some(k) => {
                    obj.insert(k.to_string(), Value::from(-1.5));
                }
                None => {
                    obj.insert("event_id".into(), Value::Null);
                }
            }
            to_line(&obj)
        }
        // JSON, but not an object.
        _ => format!("[{line}]"),
    }
}

fn unknown_type(obj: &mut Map<String, Value>, rng: &mut SplitMix64) {
    let names = ["DRIVER_TELEPORTED", "RIDER_RATED", "rider_request", ""];
    let name = names[rng.below(names.len() as u64) as usize];
    obj.insert("event_type".into(), Value::from(name));
}

fn to_line(obj: &Map<String, Value>) -> String {
    serde_json::to_string(obj).unwrap_or_else(|_| "{".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{parse_event, Validation};
    use crate::generator::{CityGenerator, GeneratorConfig};

    /// A malformed line that parsed would be a second copy of its event under the same id:
    /// every kind must be rejected, whatever event it is derived from.
    #[test]
    fn malformed_lines_are_never_valid_events() {
        let city = CityGenerator::new(GeneratorConfig {
            drivers: 20,
            max_lines: Some(3_000),
            ..GeneratorConfig::default()
        })
        .expect("valid config");
        let mut rng = SplitMix64::new(3);
        for line in city.lines() {
            for _ in 0..4 {
                let bad = malformed(&line, &mut rng);
                assert!(
                    parse_event(&bad, i64::MAX / 2, &Validation::default()).is_err(),
                    "accepted: {bad}"
                );
            }
        }
    }

    #[test]
    fn fates_follow_the_rates() {
        let f = Faults {
            duplicate: 0.1,
            out_of_order: 0.2,
            late: 0.05,
            ..Faults::default()
        };
        let mut rng = SplitMix64::new(1);
        let (mut dup, mut ooo, mut late) = (0, 0, 0);
        for _ in 0..100_000 {
            match f.fate(&mut rng) {
                Fate::Duplicate(d) => {
                    assert!((1..=2_000).contains(&d));
                    dup += 1;
                }
                Fate::Delayed(d) if d <= 4_000 => ooo += 1,
                Fate::Delayed(d) => {
                    assert!((60_000..=300_000).contains(&d));
                    late += 1;
                }
                Fate::OnTime => {}
            }
        }
        for (n, p) in [(dup, 0.1), (ooo, 0.2), (late, 0.05)] {
            assert!((n as f64 / 100_000.0 - p).abs() < 0.01, "{n} vs {p}");
        }
    }
}
