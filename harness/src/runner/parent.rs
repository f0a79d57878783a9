//! The parent side: prepares each model once, spawns one worker per cell with a timeout, turns a
//! crash, a signal or a timeout into a `failed` record, and appends every record to
//! `results.jsonl` (flushed) as the cell ends.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use slimbench_models::cache::CacheOutcome;
use slimbench_models::catalog::prepare_cell;
use slimbench_models::technique::Technique;

use super::manifest::RunSpec;
use super::worker::WorkerRequest;
use crate::host::HostInfo;
use crate::results::{append_record, Record, Status};
use crate::rounds::{append_round, combine, current_rounds, read_rounds, round_order, RoundEntry};
use slimbench_models::workload::Cell;

/// Everything about a run except its plan.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The run's id (its folder name).
    pub run_id: String,
    /// The run's folder.
    pub run_dir: PathBuf,
    /// The run's resolved settings, as `run.json` stores them.
    pub spec: RunSpec,
    /// The host, detected once.
    pub host: HostInfo,
}

/// How the parent reports as cells end.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print each record as one JSON line on stdout as its cell ends.
    pub json_lines: bool,
    /// Set (by Ctrl-C) to stop after the current cell.
    pub interrupted: Arc<AtomicBool>,
}

/// What running the cells produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The records of the cells run now, in order.
    pub records: Vec<Record>,
    /// True when the run stopped early on Ctrl-C.
    pub interrupted: bool,
}

/// A new run id: UTC time to the second and a short random suffix.
pub fn new_run_id() -> String {
    // 64 random bits beside the second: a fleet of thousands of jobs starting in one second
    // collides with a chance of about 1e-13 (and a collision still finds the folder taken).
    format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u64>()
    )
}

/// Creates a new run folder under `out` exclusively (`create_dir`, never an existing folder):
/// on the rare collision with a folder that exists, a fresh id is drawn. Returns the id and the
/// folder.
pub fn create_run_folder(out: &Path) -> std::io::Result<(String, PathBuf)> {
    create_run_folder_with(out, new_run_id)
}

/// [`create_run_folder`] with the ids drawn from `next_id` (up to 16 tries).
fn create_run_folder_with(
    out: &Path,
    mut next_id: impl FnMut() -> String,
) -> std::io::Result<(String, PathBuf)> {
    std::fs::create_dir_all(out)?;
    let mut last = None;
    for _ in 0..16 {
        let id = next_id();
        let dir = out.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free run id")))
}
/// Trains or loads every variant of `cells` (base weights, pruning fine-tunes, distilled students)
/// once, before any cell is timed; workers then read them from the cache. A variant that cannot be
/// prepared is left to its cells, which record the error.
pub fn prepare_variants(cells: &[Cell], cache_dir: &Path) {
    let mut pairs: Vec<(&str, &Technique)> = cells
        .iter()
        .map(|c| (c.model.as_str(), &c.technique))
        .collect();
    pairs.sort();
    pairs.dedup();
    for (model, technique) in pairs {
        let t = Instant::now();
        match prepare_cell(model, technique, cache_dir) {
            Ok(outcomes) => {
                let built = outcomes.iter().filter(|o| **o != CacheOutcome::Hit).count();
                let how = if built == 0 {
                    "from the cache".to_string()
                } else {
                    format!("trained {built} step(s)")
                };
                eprintln!(
                    "prepared {model}/{technique}: {how} in {:.1} s",
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => eprintln!("cannot prepare {model}/{technique}: {e}"),
        }
    }
}

fn progress_bar(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} cells  elapsed {elapsed_precise}  eta {eta_precise}  {msg}",
    )
    .ok()?;
    bar.set_style(style);
    Some(bar)
}

/// Runs `cells` in rounds (see [`crate::rounds`]): each round runs every cell once, one worker
/// each, in that round's order, and appends the round's record to `rounds.jsonl`; once a cell has
/// all its rounds (or one did not end `ok`) its combined record is appended to `results.jsonl`.
/// Rounds recorded by an earlier session of the same attempt are kept. Stops after the current
/// worker when `options.interrupted` is set.
pub fn run_cells(
    cells: &[Cell],
    settings: &RunSettings,
    options: &RunOptions,
) -> anyhow::Result<RunOutcome> {
    let run_dir = crate::run_dir::RunDir::new(&settings.run_dir);
    let results_path = run_dir.results_path();
    let rounds_path = run_dir.rounds_path();
    let rounds = settings.spec.timing.rounds.max(1);
    let attempts = crate::results::records_per_cell(&results_path)?;
    let mut done = current_rounds(read_rounds(&rounds_path)?, &attempts);
    let total: usize = cells
        .iter()
        .map(|c| rounds - done.get(c).map_or(0, Vec::len).min(rounds))
        .sum();
    let bar = progress_bar(total);
    let mut records = Vec::new();
    let mut finished: std::collections::HashSet<Cell> = std::collections::HashSet::new();
    let mut ran = 0;
    let finish =
        |key: &Cell, entries: &[RoundEntry], records: &mut Vec<Record>| -> anyhow::Result<()> {
            let Some(mut record) = combine(entries) else {
                return Ok(());
            };
            if let Some(e) = &record.energy {
                let carbon = settings.spec.carbon.record(e.energy_per_item_j, &e.source);
                if let Some(g) = &mut record.generation {
                    // The record's items are generated tokens.
                    g.co2e_per_1000_generated_tokens_g = Some(carbon.co2e_per_item_g * 1000.0);
                }
                record.carbon = Some(carbon);
            }
            if let Err(e) = crate::results::validity::check_record(&record) {
                // An impossible figure is never written: the cell is recorded failed with the reason,
                // and `--resume --retry-failed` measures it again.
                record = Record::failed(
                    &settings.run_id,
                    key.clone(),
                    settings.host.clone(),
                    format!("the combined record is impossible, so it was not kept: {e}"),
                );
            }
            append_record(&results_path, &record)?;
            if options.json_lines {
                crate::stdout::println(&serde_json::to_string(&record)?);
            }
            records.push(record);
            Ok(())
        };
    // Cells an earlier session left complete (or failed) in rounds.jsonl but not yet combined.
    for key in cells {
        if let Some(entries) = done.get(key) {
            let failed = entries.iter().any(|e| e.record.status != Status::Ok);
            if failed || entries.len() >= rounds {
                finish(key, entries, &mut records)?;
                finished.insert(key.clone());
            }
        }
    }
    'rounds: for round in 1..=rounds {
        let order = round_order(cells, settings.spec.order_seed, round);
        for (position, key) in order.iter().enumerate() {
            let entries = done.entry(key.clone()).or_default();
            if finished.contains(key) || entries.iter().any(|e| e.round == round) {
                continue;
            }
            if options.interrupted.load(Ordering::SeqCst) {
                break 'rounds;
            }
            if let Some(bar) = &bar {
                bar.set_message(format!("round {round}/{rounds} {key}"));
            }
            let t = Instant::now();
            // Quality does not depend on the machine: the cell's first round evaluates it.
            let measure_quality = entries.iter().all(|e| e.record.quality.is_none());
            let mut record = run_worker(key, settings, measure_quality);
            // A disturbed round (steal, other processes) is measured again, a few times at most.
            let mut retries = 0;
            while let Some(i) = record.interference.filter(|i| i.disturbed) {
                if retries >= settings.spec.timing.disturbed_retries
                    || record.status != Status::Ok
                    || options.interrupted.load(Ordering::SeqCst)
                {
                    break;
                }
                let line = format!(
                    "round {round}/{rounds} {key}: disturbed (steal {:.1}%, other processes {:.1}% of the CPUs, {} involuntary switches); measuring it again",
                    100.0 * i.steal_share,
                    100.0 * i.other_cpu_share,
                    i.involuntary_switches
                );
                match &bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
                retries += 1;
                let quality = record.quality.take();
                record = run_worker(key, settings, measure_quality);
                if record.quality.is_none() {
                    record.quality = quality;
                }
            }
            if let Err(e) = crate::results::validity::check_record(&record) {
                record = Record::failed(
                    &settings.run_id,
                    key.clone(),
                    settings.host.clone(),
                    format!("the worker's record is impossible, so it was not kept: {e}"),
                );
            }
            let entry = RoundEntry {
                round,
                position: position + 1,
                attempt: attempts.get(key).copied().unwrap_or(0),
                retries,
                record,
            };
            append_round(&rounds_path, &entry)?;
            ran += 1;
            let line = format!(
                "[{ran}/{total}] round {round}/{rounds} {key}: {}{} ({:.1} s)",
                entry.record.status.as_str(),
                entry
                    .record
                    .error
                    .as_deref()
                    .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                    .unwrap_or_default(),
                t.elapsed().as_secs_f64()
            );
            match &bar {
                Some(bar) => {
                    bar.println(line);
                    bar.inc(1);
                }
                None => eprintln!("{line}"),
            }
            let failed = entry.record.status != Status::Ok;
            entries.push(entry);
            entries.sort_by_key(|e| e.round);
            if failed || entries.len() >= rounds {
                let entries = entries.clone();
                finish(key, &entries, &mut records)?;
                finished.insert(key.clone());
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(RunOutcome {
        interrupted: records.len() < cells.len(),
        records,
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs one round of a cell in a worker process and returns its record, a `failed` one if the
/// worker died; `measure_quality` asks the worker to evaluate quality too.
pub fn run_worker(key: &Cell, settings: &RunSettings, measure_quality: bool) -> Record {
    let request = WorkerRequest {
        run_id: settings.run_id.clone(),
        key: key.clone(),
        run_dir: settings.run_dir.clone(),
        spec: settings.spec.clone(),
        host: settings.host.clone(),
        measure_quality,
    };
    let failed =
        |why: String| Record::failed(&settings.run_id, key.clone(), settings.host.clone(), why);
    let json = match serde_json::to_string(&request) {
        Ok(j) => j,
        Err(e) => return failed(format!("cannot encode the worker request: {e}")),
    };
    let timeout = settings.spec.cell_timeout();
    match spawn_and_wait(&json, timeout, settings.spec.threads) {
        Ok(out) => interpret(out, timeout).unwrap_or_else(failed),
        Err(e) => failed(format!("cannot start the worker: {e:#}")),
    }
}

struct WorkerOutput {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

fn spawn_and_wait(
    request_json: &str,
    timeout: Duration,
    threads: Option<usize>,
) -> anyhow::Result<WorkerOutput> {
    let exe = std::env::current_exe().context("cannot find this executable to start a worker")?;
    let mut command = Command::new(exe);
    command.args(["__worker", "--request", request_json]);
    if let Some(n) = threads {
        // candle, gemm, rayon and slimbench's kernels all size their pools from it.
        command.env("RAYON_NUM_THREADS", n.to_string());
    }
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C at the terminal reaches the parent only, which lets the
        // current cell finish.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        // The worker dies with the parent (SIGKILL, SIGTERM, a crash): none is left running
        // under init, still timing a cell nobody will record.
        use std::os::unix::process::CommandExt;
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: between fork and exec the closure calls only prctl, getppid and _exit, which
        // are async-signal-safe, and touches no memory the parent's other threads may hold.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out_pipe = child.stdout.take().context("no worker stdout")?;
    let mut err_pipe = child.stderr.take().context("no worker stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(WorkerOutput {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => "SIGABRT",
        9 => "SIGKILL (an out-of-memory kill looks like this)",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// The line of a worker's stderr that says what went wrong, kept whatever the length of the
/// backtrace after it: a panic's location and message, or an allocation failure.
pub fn first_cause(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("panicked at") || l.contains("memory allocation of"))?;
    let mut cause = lines[at].trim().to_string();
    // Since Rust 1.73 a panic's message is on the line after its location.
    if cause.contains("panicked at") && cause.ends_with(':') {
        if let Some(message) = lines.get(at + 1) {
            cause = format!("{cause} {}", message.trim());
        }
    }
    Some(cause)
}

fn interpret(out: WorkerOutput, timeout: Duration) -> Result<Record, String> {
    let stderr_tail = tail(&out.stderr, 15);
    let cause = first_cause(&out.stderr);
    let with_stderr = |why: String| {
        let why = match &cause {
            Some(c) if !stderr_tail.contains(c.as_str()) => format!("{why}: {c}"),
            _ => why,
        };
        if stderr_tail.trim().is_empty() {
            why
        } else {
            format!("{why}; worker stderr:\n{stderr_tail}")
        }
    };
    let Some(status) = out.status else {
        return Err(with_stderr(format!(
            "timed out after {:.0} s (--cell-timeout); the worker was killed",
            timeout.as_secs_f64()
        )));
    };
    if !status.success() {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return Err(with_stderr(format!(
                    "worker killed by signal {sig} ({})",
                    signal_name(sig)
                )));
            }
        }
        let panicked = out.stderr.contains("panicked at");
        return Err(with_stderr(format!(
            "worker {} with exit code {}",
            if panicked { "panicked" } else { "exited" },
            status.code().unwrap_or(-1)
        )));
    }
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| with_stderr("worker printed no record".into()))?;
    serde_json::from_str(line).map_err(|e| with_stderr(format!("worker printed a bad record: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_cause_survives_a_long_backtrace() {
        let mut stderr = String::from(
            "thread 'main' panicked at models/src/x.rs:3:5:\ncapacity overflow\nstack backtrace:\n",
        );
        for i in 0..100 {
            stderr.push_str(&format!("  {i}: frame\n"));
        }
        assert_eq!(
            super::first_cause(&stderr).unwrap(),
            "thread 'main' panicked at models/src/x.rs:3:5: capacity overflow"
        );
        assert_eq!(
            super::first_cause("memory allocation of 4000000000 bytes failed\n").unwrap(),
            "memory allocation of 4000000000 bytes failed"
        );
        assert_eq!(super::first_cause("all fine\n"), None);
    }
}

#[cfg(test)]
mod run_folder_tests {
    use super::*;

    #[test]
    fn a_taken_id_is_never_reused_and_a_fresh_one_is_drawn() {
        let out = tempfile::tempdir().unwrap();
        let taken = out.path().join("20260101-000000-0000000000000001");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("run.json"), "the first run's").unwrap();
        let mut ids = [
            "20260101-000000-0000000000000001",
            "20260101-000000-0000000000000002",
        ]
        .into_iter()
        .map(String::from);
        let (id, dir) = create_run_folder_with(out.path(), || ids.next().unwrap()).unwrap();
        assert_eq!(id, "20260101-000000-0000000000000002");
        assert_eq!(dir, out.path().join(&id));
        assert_eq!(
            std::fs::read_to_string(taken.join("run.json")).unwrap(),
            "the first run's"
        );
        let e = create_run_folder_with(out.path(), || id.clone()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn run_ids_carry_64_random_bits() {
        let ids: std::collections::HashSet<String> = (0..2000).map(|_| new_run_id()).collect();
        assert_eq!(ids.len(), 2000);
        for id in ids.iter().take(5) {
            let random = id.rsplit('-').next().unwrap();
            assert_eq!(random.len(), 16, "{id}");
            assert!(u64::from_str_radix(random, 16).is_ok(), "{id}");
        }
    }
}
