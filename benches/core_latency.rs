//! The round trip of one cache line between two threads: what every record that crosses
//! between two workers pays, several times over (the batch slot, the record's own memory, its
//! reference count). On the project's 2-core VM it is not a constant: the host places the two
//! vCPUs near each other (about 90 ns) or far apart (about 370 ns) and moves them between
//! runs, and a two-worker run's CPU time follows (docs/benchmarks.md, sixteenth session).
//! Print it beside any two-worker figure.
//!
//! ```sh
//! cargo bench --bench core_latency            # 5 measurements of 2M round trips
//! cargo bench --bench core_latency -- 20 1000000
//! ```
//!
//! The two threads are not pinned: with two cores and nothing else running, each gets one.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| {
            a.parse::<u64>()
                .expect("usage: core_latency [ROUNDS [TRIPS]]")
        });
    let rounds = args.next().unwrap_or(5);
    let trips = args.next().unwrap_or(2_000_000).max(1);
    for _ in 0..rounds {
        println!("round trip {:.1} ns", round_trip_ns(trips));
    }
}

/// The mean time for one thread to write a line and see the other's answer, over `trips`.
fn round_trip_ns(trips: u64) -> f64 {
    let line = Arc::new(AtomicU64::new(0));
    let other = {
        let line = line.clone();
        std::thread::spawn(move || {
            for i in 0..trips {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let start = Instant::now();
    for i in 0..trips {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            spin_loop();
        }
    }
    let elapsed = start.elapsed();
    other.join().expect("the answering thread");
    elapsed.as_nanos() as f64 / trips as f64
}
