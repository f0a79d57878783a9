//! Tests of the analysis: the A/A check, build cost and payback, speed paired by round.

use super::compare::*;
use super::projection::*;
use super::*;
use crate::host::HostInfo;
use crate::results::RoundFigures;
use crate::results::Status;
use slimbench_models::workload::Cell;

fn record(technique: &str, means: &[f64]) -> Record {
    let key = Cell::new("digits-cnn", technique.parse().unwrap(), "cpu", 32);
    let host = HostInfo::fixture();
    let mut r = Record::empty("run", key, host, Status::Ok);
    r.rounds = means
        .iter()
        .enumerate()
        .map(|(i, &m)| RoundFigures {
            round: i + 1,
            position: 1,
            timestamp_utc: String::new(),
            iterations: 10,
            mean_ms: m,
            p50_ms: m,
            window_s: 1.0,
            energy_per_item_j: Some(m * 1e-3),
            inference_peak_bytes: None,
            samples: 0,
            interference: None,
            retries: 0,
        })
        .collect();
    r.latency = crate::stats::LatencyStats::from_samples(means);
    r
}

#[test]
fn the_a_a_check_pairs_a_control_with_its_twin_and_judges_the_machine() {
    // The machine drifts by 20% between rounds, alike for both twins: they agree.
    let stable = [
        record("distill", &[1.0, 1.2, 1.1]),
        record("distill-control", &[1.01, 1.19, 1.11]),
    ];
    let checks = aa_checks(&stable);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].twin.technique.to_string(), "distill");
    assert_eq!(checks[0].stable(), Some(true));
    // One twin 30% slower in every round: they differ.
    let drifted = [
        record("distill", &[1.0, 1.2, 1.1]),
        record("distill-control", &[1.3, 1.57, 1.42]),
    ];
    assert_eq!(aa_checks(&drifted)[0].stable(), Some(false));
}

/// Hand-computed: a distillation of 2,000 J (recorded when built) plus a 1 J quantization,
/// saving 0.5 mJ an inference, repays after 2,001 / 0.0005 = 4.002e6 inferences: 4.002 days at
/// a million a day. The base it shares with the baseline is not counted.
#[test]
fn the_build_cost_and_its_payback_count_only_what_makes_the_variant() {
    use slimbench_models::build_cost::BuildCost;
    let cost = |step: &str, j: f64, cached: bool| BuildCost {
        step: step.into(),
        entry: String::new(),
        cached,
        seconds: 10.0,
        energy_j: Some(j),
        energy_source: Some("estimated-vcpu".into()),
        built_on: "test".into(),
        built_at_unix_s: 0,
    };
    let mut r = record("distill+q8_0", &[1.0]);
    r.build = vec![
        cost("base", 50_000.0, true),
        cost("variant", 2000.0, true),
        cost("post: distill+q8_0", 1.0, false),
    ];
    let b = build_summary(&r, 0.0005, Volume::default()).unwrap();
    assert_eq!(b.energy_j, Some(2001.0));
    assert_eq!(b.seconds, 20.0);
    assert!(!b.cached);
    assert!((b.payback_items.unwrap() - 4.002e6).abs() < 1e-3);
    assert!((b.payback_days.unwrap() - 4.002).abs() < 1e-9);
    // A variant that saves nothing never pays back.
    assert_eq!(
        build_summary(&r, 0.0, Volume::default())
            .unwrap()
            .payback_items,
        None
    );
}

#[test]
fn speed_is_paired_by_round() {
    let base = record("fp32", &[2.0, 2.6, 2.2]);
    let fast = record("q8_0", &[1.0, 1.3, 1.1]);
    let s = speed_change(&base, &fast).unwrap();
    assert!(
        (s.speedup - 2.0).abs() < 1e-9 && s.speedup_lo > 1.99,
        "{s:?}"
    );
}
