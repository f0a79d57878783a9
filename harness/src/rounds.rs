//! Rounds: every cell is measured R times, each time in a fresh worker, and within a round the
//! cells run in a seeded random order that changes from round to round, so drift and neighbours
//! hit every variant alike (Abedi and Brecht, "Conducting repeatable experiments in highly
//! variable cloud computing environments", ICPE 2017). Each round's record is appended to
//! `rounds.jsonl` as it ends (a round is the unit of resumption); once a cell has all its rounds
//! they are combined into its record in `results.jsonl`, which keeps each round's figures and
//! whose intervals come from a two-level bootstrap, rounds then iterations (Kalibera and Jones,
//! "Rigorous benchmark evaluation in reasonable time", ISMM 2013).

use std::collections::HashMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use slimbench_models::workload::Cell;

use crate::error::UsageError;
use crate::meter::{DomainEnergy, EnergyRecord};
use crate::results::{Record, RoundFigures, Status, MAX_KEPT_SAMPLES};
use crate::stats::{
    mean_of, median_of, percentile_sorted, thin_samples, tukey_outliers, two_level_ci,
    LatencyStats, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED,
};

/// The rounds file of a run folder.
pub const ROUNDS_FILE: &str = "rounds.jsonl";

/// One line of `rounds.jsonl`: a cell's record as one round's worker measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundEntry {
    /// The round, from 1.
    pub round: usize,
    /// The cell's place in the round's order, from 1.
    pub position: usize,
    /// How many records of the cell `results.jsonl` held when the round ran (0, or more after
    /// `--retry-failed`): only the rounds of the current attempt are combined.
    pub attempt: usize,
    /// How many times the round was measured again because it was disturbed before this
    /// measurement was kept.
    #[serde(default)]
    pub retries: usize,
    /// The round's record.
    pub record: Record,
}

/// The cells of `cells` in round `round`'s order (1-based): a shuffle seeded by the run's seed
/// and the round, so a resume finds the same order.
pub fn round_order(cells: &[Cell], seed: u64, round: usize) -> Vec<Cell> {
    let mut order = cells.to_vec();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order.shuffle(&mut rng);
    order
}

/// Appends `entry` to `path` as one line and flushes it to disk.
pub fn append_round(path: &Path, entry: &RoundEntry) -> anyhow::Result<()> {
    crate::results::append_json_line(path, entry)
}

/// Every entry of a `rounds.jsonl` (none when there is no file): a torn last line is skipped
/// (its round runs again), any other bad line is an error naming the file and line, and so is an
/// impossible value (see [`crate::results::validity`]).
pub fn read_rounds(path: &Path) -> Result<Vec<RoundEntry>, UsageError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let entries = crate::results::read_json_lines::<RoundEntry>(path, "round record")?;
    for (line_no, entry) in &entries {
        if let Err(e) = crate::results::validity::check_record(&entry.record) {
            return Err(UsageError(format!(
                "{}: line {line_no}: round {} of {}: {e}; remove the line to measure the round again",
                path.display(),
                entry.round,
                entry.record.key
            )));
        }
    }
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// The rounds of the current attempt of each cell, by cell: `attempts` says how many records of
/// each cell `results.jsonl` holds.
pub fn current_rounds(
    entries: Vec<RoundEntry>,
    attempts: &HashMap<Cell, usize>,
) -> HashMap<Cell, Vec<RoundEntry>> {
    let mut by_cell: HashMap<Cell, Vec<RoundEntry>> = HashMap::new();
    for e in entries {
        if e.attempt == attempts.get(&e.record.key).copied().unwrap_or(0) {
            let rounds = by_cell.entry(e.record.key.clone()).or_default();
            if !rounds.iter().any(|r| r.round == e.round) {
                rounds.push(e);
            }
        }
    }
    for rounds in by_cell.values_mut() {
        rounds.sort_by_key(|r| r.round);
    }
    by_cell
}

/// Latency statistics of several rounds together: the mean, standard deviation, count, minimum
/// and maximum of every iteration (from each round's exact moments); percentiles of the kept
/// samples of all rounds; the mean's and the median's intervals from the two-level bootstrap.
/// `None` unless every round has its statistics.
fn pooled_latency(rounds: &[Option<&LatencyStats>], groups: &[&[f64]]) -> Option<LatencyStats> {
    let stats: Vec<&LatencyStats> = rounds.iter().copied().collect::<Option<_>>()?;
    if stats.is_empty() {
        return None;
    }
    let n: usize = stats.iter().map(|l| l.iterations).sum();
    let mean = stats
        .iter()
        .map(|l| l.mean_ms * l.iterations as f64)
        .sum::<f64>()
        / n as f64;
    let m2: f64 = stats
        .iter()
        .map(|l| {
            l.std_ms.powi(2) * l.iterations.saturating_sub(1) as f64
                + l.iterations as f64 * (l.mean_ms - mean).powi(2)
        })
        .sum();
    let mut pooled: Vec<f64> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    pooled.sort_by(f64::total_cmp);
    let min = stats.iter().map(|l| l.min_ms).fold(f64::INFINITY, f64::min);
    let max = stats
        .iter()
        .map(|l| l.max_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let pct = |p: f64| percentile_sorted(&pooled, p).clamp(min, max);
    Some(LatencyStats {
        mean_ms: mean.clamp(min, max),
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        min_ms: min,
        max_ms: max,
        std_ms: if n > 1 {
            (m2 / (n - 1) as f64).sqrt()
        } else {
            0.0
        },
        iterations: n,
        mean_ci95_ms: two_level_ci(
            groups,
            mean_of,
            BOOTSTRAP_RESAMPLES,
            &mut ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED),
        ),
        p50_ci95_ms: two_level_ci(
            groups,
            median_of,
            BOOTSTRAP_RESAMPLES,
            &mut ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED + 1),
        ),
        outliers: tukey_outliers(&pooled),
    })
}

/// The energy of several rounds together: energies, windows and counts summed, powers over the
/// summed window, peaks the highest.
fn pooled_energy(energies: &[&EnergyRecord], items: f64, batches: f64) -> EnergyRecord {
    let first = energies[0];
    let sum = |f: fn(&EnergyRecord) -> f64| energies.iter().map(|e| f(e)).sum::<f64>();
    let total = sum(|e| e.energy_total_j);
    let window = sum(|e| e.window_s);
    // Optional figures pooled only where every round has them.
    let sum_opt = |f: fn(&EnergyRecord) -> Option<f64>| -> Option<f64> {
        energies.iter().map(|e| f(e)).sum::<Option<f64>>()
    };
    let idle_window = sum_opt(|e| e.idle_window_s);
    let above = sum_opt(|e| e.energy_above_idle_j);
    let mut domains: Vec<DomainEnergy> = Vec::new();
    for e in energies {
        for d in &e.domains {
            match domains.iter_mut().find(|x| x.name == d.name) {
                Some(x) => {
                    x.energy_j += d.energy_j;
                    x.idle_power_w = x.idle_power_w.zip(d.idle_power_w).map(|(a, b)| a + b);
                    x.peak_power_w = x.peak_power_w.max(d.peak_power_w);
                }
                None => domains.push(d.clone()),
            }
        }
    }
    let rounds = energies.len() as f64;
    for d in &mut domains {
        d.idle_power_w = d.idle_power_w.map(|w| w / rounds);
        d.mean_power_w = if window > 0.0 {
            d.energy_j / window
        } else {
            0.0
        };
    }
    EnergyRecord {
        source: first.source.clone(),
        measured: first.measured,
        method: first.method.clone(),
        energy_total_j: total,
        energy_per_batch_j: total / batches.max(1.0),
        energy_per_item_j: total / items.max(1.0),
        energy_above_idle_j: above,
        energy_above_idle_per_item_j: above.map(|a| a / items.max(1.0)),
        idle_power_w: sum_opt(|e| e.idle_power_w).map(|w| w / rounds),
        estimate: first.estimate.clone(),
        energy_low_j: sum_opt(|e| e.energy_low_j),
        energy_high_j: sum_opt(|e| e.energy_high_j),
        mean_power_w: if window > 0.0 { total / window } else { 0.0 },
        peak_power_w: energies.iter().map(|e| e.peak_power_w).fold(0.0, f64::max),
        window_s: window,
        idle_window_s: idle_window,
        sampling_hz: first.sampling_hz,
        samples: energies.iter().map(|e| e.samples).sum(),
        dropped_samples: energies.iter().map(|e| e.dropped_samples).sum(),
        intervals: energies.iter().map(|e| e.intervals).sum(),
        unreliable: energies.iter().any(|e| e.unreliable),
        domains,
        gpu_process_peak_bytes: energies
            .iter()
            .filter_map(|e| e.gpu_process_peak_bytes)
            .max(),
        gpu_device_peak_bytes: energies
            .iter()
            .filter_map(|e| e.gpu_device_peak_bytes)
            .max(),
    }
}

/// One cell's record from its rounds (sorted by round): a round that did not end `ok` is the
/// record (with the round named in its error); otherwise figures pooled over the rounds, each
/// round's own figures kept in `rounds`, quality from the round that evaluated it. `None` without
/// any round.
pub fn combine(entries: &[RoundEntry]) -> Option<Record> {
    let last = entries.last()?;
    if let Some(bad) = entries.iter().find(|e| e.record.status != Status::Ok) {
        let mut r = bad.record.clone();
        if entries.len() > 1 || bad.round > 1 {
            r.error = r.error.map(|e| format!("round {}: {e}", bad.round));
        }
        return Some(r);
    }
    let records: Vec<&Record> = entries.iter().map(|e| &e.record).collect();
    let per_round = MAX_KEPT_SAMPLES / records.len().max(1);
    let kept: Vec<Vec<f64>> = records
        .iter()
        .map(|r| thin_samples(&r.latency_samples_ms, per_round))
        .collect();
    let groups: Vec<&[f64]> = kept.iter().map(Vec::as_slice).collect();
    let mut out = last.record.clone();
    out.quality = records.iter().find_map(|r| r.quality.clone());
    let latencies: Vec<Option<&LatencyStats>> =
        records.iter().map(|r| r.latency.as_ref()).collect();
    out.latency = pooled_latency(&latencies, &groups);
    let window: f64 = records.iter().filter_map(|r| r.window_s).sum();
    let items: f64 = records
        .iter()
        .filter_map(|r| Some(r.throughput_items_per_s? * r.window_s?))
        .sum();
    out.window_s = Some(window);
    out.throughput_items_per_s = (window > 0.0).then(|| items / window);
    out.peak_rss_bytes = records.iter().filter_map(|r| r.peak_rss_bytes).max();
    out.model_rss_bytes = records[0].model_rss_bytes;
    out.inference_peak_bytes = records.iter().filter_map(|r| r.inference_peak_bytes).max();
    let energies: Vec<&EnergyRecord> = records.iter().filter_map(|r| r.energy.as_ref()).collect();
    if energies.len() == records.len() {
        let batches: f64 = records
            .iter()
            .filter_map(|r| r.latency.as_ref().map(|l| l.iterations as f64))
            .sum();
        out.energy = Some(pooled_energy(&energies, items, batches));
    }
    if let (Some(c), Some(first), Some(pooled)) = (
        out.compute.as_mut(),
        records[0].latency.as_ref(),
        out.latency.as_ref(),
    ) {
        // The rate at the pooled median instead of the last round's.
        let scale = first.p50_ms / pooled.p50_ms;
        let base = records[0].compute.as_ref().unwrap_or(c).clone();
        c.achieved_gflops = base.achieved_gflops * scale;
        c.peak_fraction = base.peak_fraction.map(|f| f * scale);
        c.weight_read_gbs = base.weight_read_gbs.map(|g| g * scale);
        c.bandwidth_fraction = base.bandwidth_fraction.map(|f| f * scale);
    }
    if let Some(g) = out.generation.as_mut() {
        let gens: Vec<_> = records
            .iter()
            .filter_map(|r| r.generation.as_ref())
            .collect();
        let n = gens.len() as f64;
        g.prefill_tokens_per_s = gens.iter().map(|x| x.prefill_tokens_per_s).sum::<f64>() / n;
        // A generated token is the record's item: the decode rate is its throughput.
        g.decode_tokens_per_s = out
            .throughput_items_per_s
            .unwrap_or_else(|| gens.iter().map(|x| x.decode_tokens_per_s).sum::<f64>() / n);
        g.prefill_j_per_token = gens.iter().map(|x| x.prefill_j_per_token).sum::<f64>() / n;
        if let Some(e) = &out.energy {
            g.decode_j_per_token = e.energy_per_item_j;
        }
        let prefill: Vec<&EnergyRecord> = gens.iter().map(|x| &x.prefill_energy).collect();
        let prompt_items: f64 = gens
            .iter()
            .map(|x| {
                x.prefill_energy.energy_total_j
                    / x.prefill_energy.energy_per_item_j.max(f64::MIN_POSITIVE)
            })
            .sum();
        g.prefill_energy = pooled_energy(
            &prefill,
            prompt_items,
            prompt_items / g.prompt_tokens.max(1) as f64,
        );
        let ttft_kept: Vec<Vec<f64>> = gens
            .iter()
            .map(|x| thin_samples(&x.ttft_samples_ms, per_round))
            .collect();
        let ttft_groups: Vec<&[f64]> = ttft_kept.iter().map(Vec::as_slice).collect();
        let ttfts: Vec<Option<&LatencyStats>> = gens.iter().map(|x| x.ttft_ms.as_ref()).collect();
        g.ttft_ms = pooled_latency(&ttfts, &ttft_groups);
        g.ttft_samples_ms = ttft_kept.concat();
    }
    out.rounds = entries
        .iter()
        .zip(&kept)
        .map(|(e, samples)| RoundFigures {
            round: e.round,
            position: e.position,
            timestamp_utc: e.record.timestamp_utc.clone(),
            iterations: e.record.latency.as_ref().map_or(0, |l| l.iterations),
            mean_ms: e.record.latency.as_ref().map_or(0.0, |l| l.mean_ms),
            p50_ms: e.record.latency.as_ref().map_or(0.0, |l| l.p50_ms),
            window_s: e.record.window_s.unwrap_or(0.0),
            energy_per_item_j: e.record.energy.as_ref().map(|x| x.energy_per_item_j),
            inference_peak_bytes: e.record.inference_peak_bytes,
            samples: samples.len(),
            interference: e.record.interference,
            retries: e.retries,
        })
        .collect();
    out.latency_samples_ms = kept.concat();
    out.interference = None;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostInfo;
    use crate::stats::LatencyStats;

    fn cell(technique: &str) -> Cell {
        Cell::new("digits-mlp", technique.parse().unwrap(), "cpu", 1)
    }

    fn host() -> HostInfo {
        HostInfo::fixture()
    }

    fn round(n: usize, samples: Vec<f64>, quality: bool) -> RoundEntry {
        let mut r = Record::empty("run", cell("q8_0"), host(), Status::Ok);
        r.latency = LatencyStats::from_samples(&samples);
        r.window_s = Some(samples.iter().sum::<f64>() / 1e3);
        r.throughput_items_per_s = Some(samples.len() as f64 / r.window_s.unwrap());
        r.latency_samples_ms = samples;
        if quality {
            r.quality = Some(crate::results::QualityRecord {
                metric: "accuracy".into(),
                value_pct: 97.0,
                baseline_pct: 98.0,
                delta_points: -1.0,
                items: 359,
                fidelity: None,
                language: None,
                paired: None,
            });
        }
        RoundEntry {
            round: n,
            position: 1,
            attempt: 0,
            retries: 0,
            record: r,
        }
    }

    #[test]
    fn rounds_pool_exactly_and_keep_their_own_figures() {
        let a: Vec<f64> = (0..100).map(|i| 1.0 + f64::from(i % 10) * 0.01).collect();
        let b: Vec<f64> = (0..300).map(|i| 2.0 + f64::from(i % 10) * 0.01).collect();
        let entries = [round(1, a.clone(), true), round(2, b.clone(), false)];
        let r = combine(&entries).unwrap();
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let exact = LatencyStats::from_samples(&all).unwrap();
        let l = r.latency.as_ref().unwrap();
        assert_eq!(l.iterations, 400);
        assert!((l.mean_ms - exact.mean_ms).abs() < 1e-12);
        assert!((l.std_ms - exact.std_ms).abs() < 1e-9);
        assert_eq!(r.rounds.len(), 2);
        assert_eq!(r.rounds[1].iterations, 300);
        assert_eq!(r.round_samples()[0], a.as_slice());
        assert_eq!(
            r.quality.as_ref().unwrap().value_pct,
            97.0,
            "from the round that had it"
        );
        // The two-level interval of the mean spans both rounds' levels.
        let ci = l.mean_ci95_ms.unwrap();
        assert!(ci.hi - ci.lo > 0.5, "{ci:?}");
        crate::results::validity::check_record(&r).unwrap();
    }

    #[test]
    fn a_failed_round_makes_the_cell_failed_naming_the_round() {
        let mut bad = round(2, vec![1.0], false);
        bad.record.status = Status::Failed;
        bad.record.error = Some("worker killed by signal 9".into());
        let r = combine(&[round(1, vec![1.0, 1.1], true), bad]).unwrap();
        assert!(combine(&[]).is_none());
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("round 2: worker killed by signal 9")
        );
    }

    #[test]
    fn orders_are_seeded_and_change_between_rounds() {
        let cells: Vec<Cell> = [
            "fp32", "int8", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0-all",
        ]
        .iter()
        .map(|t| cell(t))
        .collect();
        let one = round_order(&cells, 42, 1);
        assert_eq!(
            one,
            round_order(&cells, 42, 1),
            "a resume finds the same order"
        );
        assert_ne!(one, round_order(&cells, 42, 2));
        let mut sorted = one.clone();
        sorted.sort_by_key(|c| c.to_string());
        let mut all = cells.clone();
        all.sort_by_key(|c| c.to_string());
        assert_eq!(sorted, all, "every cell once");
    }

    #[test]
    fn only_the_current_attempts_rounds_count() {
        let mut old = round(1, vec![1.0, 1.1], true);
        old.attempt = 0;
        let mut new = round(1, vec![2.0, 2.1], true);
        new.attempt = 1;
        let attempts = HashMap::from([(cell("q8_0"), 1)]);
        let by_cell = current_rounds(vec![old, new.clone()], &attempts);
        assert_eq!(by_cell[&cell("q8_0")], vec![new]);
    }
}
