//! How long and how often a cell is timed: the settings a run stores in `run.json` and hands to
//! each worker.

use serde::{Deserialize, Serialize};

/// Shortest energy window of a cell, all its rounds together, s: shorter windows make per-item
/// energy noise.
pub const MIN_ENERGY_WINDOW_S: f64 = 1.0;

/// Shortest timed window of one round, s.
pub const MIN_ROUND_WINDOW_S: f64 = 0.2;

/// Rounds of a run when neither `--rounds` nor `rounds` is given.
pub const DEFAULT_ROUNDS: usize = 3;

/// Rounds of a `--quick` run: as many as a full one, each shorter (two would leave a paired
/// ratio's t-interval one degree of freedom, a factor of 12.7 on its spread).
pub const QUICK_ROUNDS: usize = 3;

fn one_round() -> usize {
    1
}

fn default_retries() -> usize {
    crate::interference::DEFAULT_RETRIES
}

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
    /// Rounds: each cell is measured this many times, each time in a fresh worker, the cells in
    /// a new random order each round; the timed budget above is split over them. Runs stored
    /// before rounds existed had one.
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// How many times a round disturbed by other processes or steal is measured again.
    #[serde(default = "default_retries")]
    pub disturbed_retries: usize,
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
            rounds: DEFAULT_ROUNDS,
            disturbed_retries: default_retries(),
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
            rounds: QUICK_ROUNDS,
            disturbed_retries: default_retries(),
        }
    }

    /// The least timed iterations of one round: the cell's least count split over the rounds.
    pub fn round_min_iters(&self) -> usize {
        self.min_iters.div_ceil(self.rounds.max(1)).max(1)
    }

    /// The least timed window of one round, s, on a meter that updates every `update_period_s`:
    /// the cell's window (at least [`MIN_ENERGY_WINDOW_S`] and 100 meter updates) split over the
    /// rounds, and at least [`MIN_ROUND_WINDOW_S`] and 20 updates.
    pub fn round_min_window_s(&self, update_period_s: f64) -> f64 {
        let cell = self
            .min_duration_s
            .max(100.0 * update_period_s)
            .max(MIN_ENERGY_WINDOW_S);
        (cell / self.rounds.max(1) as f64)
            .max(20.0 * update_period_s)
            .max(MIN_ROUND_WINDOW_S)
    }

    /// The idle-power window of one round, s: the cell's split over the rounds, at least 0.1 s.
    pub fn round_idle_s(&self) -> f64 {
        (self.idle_s / self.rounds.max(1) as f64).max(0.1_f64.min(self.idle_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timed_budget_is_split_over_the_rounds() {
        let mut t = TimingSettings::full();
        t.rounds = 1;
        assert_eq!(t.round_min_window_s(0.01), 2.0);
        t.rounds = 4;
        assert_eq!(t.round_min_iters(), 13);
        assert_eq!(t.round_min_window_s(0.01), 0.5);
        // The estimate's 10 ms updates: 100 of them over the cell, 20 a round at least.
        let mut q = TimingSettings::quick();
        q.min_duration_s = 0.0;
        q.rounds = 2;
        assert_eq!(q.round_min_window_s(0.01), 0.5);
        q.rounds = 20;
        assert_eq!(q.round_min_window_s(0.01), 0.2);
        assert_eq!(q.round_min_window_s(0.1), 2.0);
    }
}
