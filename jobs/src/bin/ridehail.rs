//! `ridehail`: runs the ride-hailing jobs (`ridehail run`) or writes simulated events
//! (`ridehail generate`). See `ridehail --help`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use sluice_connectors::LinesSource;
use sluice_engine::source::Source;
use sluice_jobs::event::Validation;

// Every event is a few small allocations (its shared data, its id, the line it came from),
// often freed on another worker than the one that allocated them; mimalloc's per-thread heaps
// handle that pattern much better than the system allocator. The library leaves the choice of
// allocator to the application, as libraries should.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sluice_jobs::generator::{CityGenerator, Faults, GeneratorConfig, Pace};
use sluice_jobs::ridehail::{self, parse_duration, Input, Job, Report, RunConfig};
use sluice_jobs::timestamp::{format_rfc3339_ms, parse_rfc3339_ms};

#[derive(Parser)]
#[command(
    name = "ridehail",
    version,
    about = "The ride-hailing jobs on sluice: validation with dead letters, dedup, surge pricing, trips, driver shifts, live state."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every job over generated events (the default) or JSON Lines input, writing JSON Lines
    /// under --out.
    ///
    /// The run takes a checkpoint every --checkpoint-every (in --checkpoint-dir, by default
    /// OUT/.checkpoints) and writes every output exactly once: output becomes visible (as
    /// part-*.jsonl files) when the checkpoint covering it is complete, and at the latest when
    /// the run ends; until then it sits in hidden files (names starting with `.`), which readers
    /// must ignore. A run that was killed or crashed continues from its newest checkpoint when
    /// started again with the same flags plus --resume, and its output is then the same as that
    /// of a run without failure. Without --resume, a run starts over: it clears the output and
    /// the old checkpoints. --no-checkpoints writes part-W.jsonl files directly instead, with no
    /// recovery.
    ///
    /// The summary (printed, and in OUT/summary/summary.json) of a resumed run counts the whole
    /// run, as a run without failure would: the counts are checkpointed with the output and
    /// continue from the checkpoint. Its wall time and events/s are its own.
    Run(RunArgs),
    /// Write simulated events as JSON Lines to a file or standard output.
    Generate(GenerateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum FaultLevel {
    /// No injected faults.
    None,
    /// 1% duplicates, 0.5% malformed lines, 5% out of order, 0.2% late.
    Typical,
}

#[derive(Args, Clone)]
struct CityArgs {
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Drivers in the simulated city.
    #[arg(long, default_value_t = 200, value_parser = at_least_one)]
    drivers: usize,
    /// Simulated time to cover (e.g. 1h, 30m, 90s). Default: one hour, unless --events is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many lines.
    #[arg(long)]
    events: Option<u64>,
    /// Simulated start time (RFC 3339).
    #[arg(long)]
    start: Option<String>,
    /// Injected faults.
    #[arg(long, value_enum, default_value = "none")]
    faults: FaultLevel,
    /// Lines per second (wall clock); default as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
}

impl CityArgs {
    fn config(&self, splits: usize) -> Result<GeneratorConfig> {
        let mut g = GeneratorConfig {
            seed: self.seed,
            drivers: self.drivers,
            splits,
            ..GeneratorConfig::default()
        };
        match (self.duration, self.events) {
            (Some(d), n) => {
                g.duration = Some(d);
                g.max_lines = n;
            }
            (None, Some(n)) => {
                g.duration = None;
                g.max_lines = Some(n);
            }
            (None, None) => {}
        }
        if let Some(s) = &self.start {
            g.start_ms = parse_rfc3339_ms(s)
                .with_context(|| format!("--start {s:?} is not an RFC 3339 timestamp"))?;
        }
        g.faults = match self.faults {
            FaultLevel::None => Faults::none(),
            FaultLevel::Typical => Faults::typical(),
        };
        if let Some(r) = self.rate {
            g.pace = Pace::LinesPerSec(r);
        }
        g.validate()?;
        Ok(g)
    }
}

#[derive(Args)]
struct RunArgs {
    /// Read JSON Lines from this file (`-` for standard input) instead of generating events.
    /// May be given several times: the files are read side by side, kept within a minute of
    /// each other in event time, and the workers share the reading (a file is split into
    /// stripes when there are fewer files than workers). The generator's flags
    /// (--seed, --drivers, --duration, --events, --start, --faults, --rate) do not apply to it
    /// and are refused with it.
    #[arg(
        long,
        conflicts_with_all = ["seed", "drivers", "duration", "events", "start", "faults", "rate"]
    )]
    input: Vec<PathBuf>,
    #[command(flatten)]
    city: CityArgs,
    /// Worker threads (at most 128, the number of key groups).
    #[arg(long, short = 'p', default_value_t = 2, value_parser = worker_count)]
    parallelism: usize,
    /// Output directory (its job subdirectories are replaced, unless resuming).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Where to take checkpoints (exactly-once output, and --resume after a crash).
    /// Default: OUT/.checkpoints.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// No checkpoints: output is written directly, and a killed run cannot be resumed.
    #[arg(long, conflicts_with_all = ["checkpoint_dir", "checkpoint_every", "resume"])]
    no_checkpoints: bool,
    /// How often to take a checkpoint. Default: 10s.
    #[arg(long, value_parser = positive_duration, value_name = "DURATION")]
    checkpoint_every: Option<Duration>,
    /// Continue a killed or failed run from its newest checkpoint, keeping
    /// its output (start from the beginning if there is none). Give the same input and --out
    /// as the run it continues; --parallelism may differ.
    #[arg(long)]
    resume: bool,
    /// How out of order events may be (watermark delay).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    max_out_of_orderness: Duration,
    /// How long an event id is remembered for deduplication (event time).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    dedup_horizon: Duration,
    /// H3 resolution of derived geo zones (0..=15).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(0..=15))]
    h3_resolution: u8,
    /// How far ahead of the wall clock a timestamp may be.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    max_future_skew: Duration,
    /// Longest accepted input line, in bytes.
    #[arg(long, default_value_t = 64 * 1024, value_parser = at_least_one)]
    max_line_bytes: usize,
    /// Gap that ends a driver's shift.
    #[arg(long, default_value = "30m", value_parser = positive_duration)]
    shift_gap: Duration,
    /// A trip with no end this long after its start is reported incomplete.
    #[arg(long, default_value = "4h", value_parser = positive_duration)]
    trip_timeout: Duration,
    /// Event-time interval of live-state snapshots.
    #[arg(long, default_value = "1m", value_parser = positive_duration)]
    snapshot_every: Duration,
    /// Run only these jobs after ingest (validation, dead letters and dedup always run), comma
    /// separated. The others write nothing. Without `backup`, the progress line shows no
    /// watermark.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Job::ALL)]
    jobs: Vec<Job>,
    /// No progress line, even on a terminal.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Where to write (`-` for standard output).
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
    /// Independent sub-cities to simulate (interleaved in the output).
    #[arg(long, default_value_t = 1)]
    splits: usize,
    #[command(flatten)]
    city: CityArgs,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Generate(args) => generate(args),
    };
    if let Err(e) = result {
        eprintln!("ridehail: error: {e:#}");
        std::process::exit(1);
    }
}

/// A count that must be at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A worker count: at least one, and at most the engine's default number of key groups (state
/// is partitioned into them, so more workers would have nothing to do).
fn worker_count(s: &str) -> Result<usize, String> {
    let max = sluice_engine::Config::default().get_max_parallelism();
    match at_least_one(s)? {
        n if n > max => Err(format!("must be at most {max} (the number of key groups)")),
        n => Ok(n),
    }
}

/// A duration that must be longer than zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let checkpoint_dir = if args.no_checkpoints {
        None
    } else {
        Some(
            args.checkpoint_dir
                .clone()
                .unwrap_or_else(|| args.out.join(".checkpoints")),
        )
    };
    let input = if args.input.is_empty() {
        Input::Generator(args.city.config(1)?)
    } else if args.input.iter().any(|p| p.as_os_str() == "-") {
        if args.input.len() > 1 {
            bail!("--input - (standard input) cannot be combined with files");
        }
        Input::Stdin
    } else {
        for p in &args.input {
            let file = std::fs::File::open(p)
                .with_context(|| format!("cannot read input {}", p.display()))?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                bail!("cannot read input {}: it is a directory", p.display());
            }
        }
        // The source refuses one file listed twice (under any names) when the job starts;
        // asking it now says so before anything is cleared or written.
        if let Err(e) = LinesSource::files(&args.input).splits(1) {
            bail!("an input is given twice: {e}");
        }
        Input::Files(args.input.clone())
    };
    let mut cfg = RunConfig::new(input);
    cfg.out = args.out.clone();
    cfg.parallelism = args.parallelism;
    cfg.max_line_bytes = args.max_line_bytes;
    cfg.validation = Validation {
        max_future_skew_ms: args.max_future_skew.as_millis() as i64,
        h3_resolution: args.h3_resolution,
    };
    cfg.event_time.max_out_of_orderness = args.max_out_of_orderness;
    cfg.dedup.horizon = args.dedup_horizon;
    cfg.shifts.gap = args.shift_gap;
    cfg.trips.timeout = args.trip_timeout;
    cfg.live.snapshot_interval = args.snapshot_every;
    cfg.checkpoint_dir = checkpoint_dir.clone();
    if let Some(every) = args.checkpoint_every {
        cfg.checkpoint_every = every;
    }
    cfg.resume = args.resume;
    cfg.jobs = args.jobs.clone();
    if args.resume && cfg.input_is_stdin() {
        bail!(
            "--resume cannot continue reading standard input (--input -): it cannot be read again"
        );
    }

    let running = ridehail::start(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.resume {
        let info = running.handle().restore_info();
        match (&info.restored, info.id) {
            (Some(path), Some(id)) => eprintln!(
                "ridehail: resuming from checkpoint {id} ({}){}",
                path.display(),
                if info.finished {
                    "; the earlier run had finished, so there is nothing left to do"
                } else {
                    ""
                }
            ),
            _ => eprintln!(
                "ridehail: no checkpoint in {}; starting from the beginning",
                checkpoint_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"))
                    .display()
            ),
        }
    }
    install_interrupt(&running)?;
    let show_progress = !args.quiet && io::stderr().is_terminal();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress_thread = if show_progress {
        let progress = running.progress().clone();
        let done = done.clone();
        let metrics = running_metrics_reader(&running);
        Some(std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let (n, here) = metrics();
                let wm = progress.watermark.load(Ordering::Relaxed);
                let wm = if wm == i64::MIN {
                    "-".to_string()
                } else {
                    format_rfc3339_ms(wm)
                };
                let secs = start.elapsed().as_secs_f64();
                eprint!(
                    "\r\x1b[2K{n} events, {:.0} events/s, watermark {wm}",
                    here as f64 / secs.max(1e-9)
                );
            }
            eprint!("\r\x1b[2K");
        }))
    } else {
        None
    };
    let report = running.finish();
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    print_summary(&report, &cfg);
    if let Some(id) = report.paused_at {
        eprintln!(
            "ridehail: paused at checkpoint {id}; the same command with --resume continues the run"
        );
    }
    let summary_dir = cfg.out.join("summary");
    std::fs::create_dir_all(&summary_dir)?;
    std::fs::write(
        summary_dir.join("summary.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}

/// Ctrl-C (or SIGTERM) ends the run early without losing it: with checkpoints it pauses (a
/// checkpoint commits the output so far; `--resume` continues), without them or on standard
/// input (which no resume can read again) it drains (the input ends here and every window
/// fires). A second Ctrl-C exits at once, as a kill would: the output of the last checkpoint
/// stays, and `--resume` still continues from it.
fn install_interrupt(running: &ridehail::Running) -> Result<()> {
    let interrupt = running.interrupt();
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let signals = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::Relaxed) > 0 {
            eprintln!("\nridehail: interrupted again; exiting at once");
            std::process::exit(130);
        }
        let _ = tx.try_send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    std::thread::Builder::new()
        .name("ridehail-interrupt".into())
        .spawn(move || {
            if rx.recv().is_err() {
                return;
            }
            if interrupt.pauses() {
                eprintln!(
                    "\nridehail: interrupted; taking a checkpoint to pause at (Ctrl-C again to \
                     exit at once)"
                );
            } else {
                eprintln!(
                    "\nridehail: interrupted; ending the input here and draining (Ctrl-C again \
                     to exit at once)"
                );
            }
            if let Err(e) = interrupt.interrupt() {
                eprintln!("ridehail: could not pause: {e}");
            }
        })
        .context("cannot start the interrupt thread")?;
    Ok(())
}

/// A closure reading the input count from a running job's metrics: in all (a resumed run
/// counts on from its checkpoint), and read by this run.
fn running_metrics_reader(running: &ridehail::Running) -> impl Fn() -> (u64, u64) + Send + 'static {
    let observer = running.handle().observer();
    move || {
        observer
            .metrics()
            .operator(sluice_jobs::validate::OPERATOR)
            .map_or((0, 0), |m| {
                (m.records_in, m.records_in - m.restored.records_in)
            })
    }
}

fn print_summary(r: &Report, cfg: &RunConfig) {
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "ridehail run: {} workers, output in {}",
        cfg.parallelism,
        cfg.out.display()
    );
    if cfg.jobs.len() < Job::ALL.len() {
        let names: Vec<String> = cfg.jobs.iter().map(Job::to_string).collect();
        let _ = writeln!(out, "  jobs: ingest, {} (only)", names.join(", "));
    }
    if let Some(id) = r.resumed_from {
        let _ = writeln!(
            out,
            "  resumed from checkpoint {id}: the counts cover the whole run, {} events of them \
             read by this one",
            r.events_this_run
        );
    }
    let _ = writeln!(out, "  events in        {:>12}", r.events_in);
    let _ = writeln!(out, "  valid            {:>12}", r.valid);
    let _ = writeln!(out, "  dead letters     {:>12}", r.dead_letters);
    for (reason, n) in &r.dead_letters_by_reason {
        let _ = writeln!(out, "    {reason:<22}{n:>8}");
    }
    let _ = writeln!(out, "  duplicates       {:>12}", r.duplicates);
    let _ = writeln!(out, "  unique           {:>12}", r.unique);
    let _ = writeln!(out, "  surge windows    {:>12}", r.surge_windows);
    let _ = writeln!(out, "  trips summarised {:>12}", r.trips_summarised);
    let _ = writeln!(out, "  driver shifts    {:>12}", r.shifts);
    let _ = writeln!(out, "  live snapshots   {:>12}", r.live_snapshots);
    for (job, n) in &r.late {
        if *n > 0 {
            let _ = writeln!(
                out,
                "  late ({job}){:>width$}",
                n,
                width = 17 - job.len() + 12 - 6
            );
        }
    }
    let _ = writeln!(
        out,
        "  wall time        {:>11.2}s\n  events/s         {:>12.0}",
        r.wall_secs, r.events_per_sec
    );
    print!("{out}");
}

fn generate(args: GenerateArgs) -> Result<()> {
    if args.splits == 0 {
        bail!("--splits must be at least 1");
    }
    let cfg = args.city.config(args.splits)?;
    let city = CityGenerator::new(cfg)?;
    let stdout = io::stdout();
    let mut w: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(BufWriter::with_capacity(1 << 16, stdout.lock()))
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        Box::new(BufWriter::with_capacity(1 << 16, f))
    };
    for line in city.lines() {
        match w
            .write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
        {
            Ok(()) => {}
            // A closed pipe (`ridehail generate | head`) ends the output quietly.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("cannot write events"),
        }
    }
    match w.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write events"),
    }
}
