//! How long and how often a cell is timed: the settings a run stores in `run.json` and hands to
//! each worker.

use serde::{Deserialize, Serialize};

/// Shortest energy window, s: shorter windows make per-item energy noise.
pub const MIN_ENERGY_WINDOW_S: f64 = 1.0;

/// How long and how often a cell is timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingSettings {
    /// Untimed iterations before the window.
    pub warmup_iters: usize,
    /// Least number of timed iterations.
    pub min_iters: usize,
    /// Least length of the timed window, s (raised to 100 times the meter's update period, and to
    /// [`MIN_ENERGY_WINDOW_S`]).
    pub min_duration_s: f64,
    /// Length of the idle-power window before the timed one, s.
    pub idle_s: f64,
    /// Background power sampling rate, Hz (0: only the window edges, where the meter allows).
    pub sample_hz: f64,
}

impl TimingSettings {
    /// Defaults of a full run.
    pub fn full() -> Self {
        Self {
            warmup_iters: 10,
            min_iters: 50,
            min_duration_s: 2.0,
            idle_s: 0.5,
            sample_hz: 10.0,
        }
    }

    /// Defaults of `--quick`.
    pub fn quick() -> Self {
        Self {
            warmup_iters: 3,
            min_iters: 20,
            min_duration_s: 1.0,
            idle_s: 0.2,
            sample_hz: 10.0,
        }
    }
}
