//! What building a variant cost: each step that makes weights (training a base, a pruning
//! fine-tune, a distillation, a reference pass) or applies a post-training step is timed and
//! metered through the meter the harness installs ([`install_meter`]), and its cost is recorded
//! beside the cache entry it made (`<entry>.build.json`), so a later run that reads the entry
//! reports when, on what and at what cost it was built. Every cost met while a workload is built
//! is collected for the record ([`take_costs`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Cumulative joules of whatever the harness meters (its counted domains), with the label of
/// their source; `None` when the meter cannot be read now.
pub type JoulesReader = Box<dyn Fn() -> Option<f64> + Send + Sync>;

/// The installed meter: its reader, its source label, and the machine it runs on.
struct Installed {
    read: JoulesReader,
    source: String,
    host: String,
}

static METER: Mutex<Option<Installed>> = Mutex::new(None);
static COSTS: Mutex<Vec<BuildCost>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the meter that build steps are metered with (`source`: its label, `host`: the CPU),
/// until [`remove_meter`]. Without one, steps are timed only.
pub fn install_meter(read: JoulesReader, source: &str, host: &str) {
    *lock(&METER) = Some(Installed {
        read,
        source: source.to_string(),
        host: host.to_string(),
    });
}

/// Removes the installed meter.
pub fn remove_meter() {
    *lock(&METER) = None;
}

/// What one build step cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildCost {
    /// What was built: `base`, `variant` (a training step), `reference`, `quality`, or
    /// `post: <step>`.
    pub step: String,
    /// The cache entry's file name (empty for a post-training step, which is never cached).
    #[serde(default)]
    pub entry: String,
    /// True when this run read the entry from the cache: the cost is the one recorded when it
    /// was built.
    pub cached: bool,
    /// Wall time of the build, s.
    pub seconds: f64,
    /// Energy of the build, J, where a meter was installed.
    pub energy_j: Option<f64>,
    /// The energy's source label (`rapl`, `estimated-vcpu`, ...).
    pub energy_source: Option<String>,
    /// The CPU it was built on.
    pub built_on: String,
    /// When it was built, seconds since the Unix epoch.
    pub built_at_unix_s: u64,
}

impl BuildCost {
    /// True for the steps that make a variant out of the base (training steps and the
    /// post-training step), as opposed to the base itself and the quality references, which the
    /// uncompressed model needs too.
    pub fn makes_the_variant(&self) -> bool {
        self.step == "variant" || self.step.starts_with("post: ")
    }
}

/// A running measurement of one build step.
pub struct Metered {
    start: Instant,
    joules: Option<f64>,
}

/// Starts metering a build step.
pub fn start() -> Metered {
    let joules = lock(&METER).as_ref().and_then(|m| (m.read)());
    Metered {
        start: Instant::now(),
        joules,
    }
}

impl Metered {
    /// Ends the step: its cost, not yet recorded anywhere.
    pub fn finish(self, step: &str, entry: &str) -> BuildCost {
        let seconds = self.start.elapsed().as_secs_f64();
        let meter = lock(&METER);
        let (energy_j, energy_source, built_on) = match meter.as_ref() {
            Some(m) => (
                self.joules.zip((m.read)()).map(|(a, b)| (b - a).max(0.0)),
                Some(m.source.clone()),
                m.host.clone(),
            ),
            None => (None, None, String::new()),
        };
        BuildCost {
            step: step.to_string(),
            entry: entry.to_string(),
            cached: false,
            seconds,
            energy_j,
            energy_source,
            built_on,
            built_at_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Keeps `cost` for [`take_costs`].
pub fn note(cost: BuildCost) {
    lock(&COSTS).push(cost);
}

/// Every cost noted since the last call, in the order met.
pub fn take_costs() -> Vec<BuildCost> {
    std::mem::take(&mut *lock(&COSTS))
}

/// Where the cost of the cache entry at `entry` is kept.
pub fn sidecar(entry: &Path) -> PathBuf {
    entry.with_extension("build.json")
}

/// Writes `cost` beside `entry` (best effort: a cost that cannot be written is reported as
/// unknown later, never fatal to the build).
pub fn write_sidecar(entry: &Path, cost: &BuildCost) {
    if let Ok(text) = serde_json::to_vec_pretty(cost) {
        let path = sidecar(entry);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!(
                "warning: cannot record the build cost at {}: {e}",
                path.display()
            );
        }
    }
}

/// The cost recorded beside `entry` when it was built, marked as read from the cache.
pub fn read_sidecar(entry: &Path) -> Option<BuildCost> {
    let text = std::fs::read(sidecar(entry)).ok()?;
    let mut cost: BuildCost = serde_json::from_slice(&text).ok()?;
    cost.cached = true;
    Some(cost)
}

/// The step a cache entry's stem names (`-variant`, `-reference`, `-quality`; a model's own
/// name alone is its base).
pub fn step_of(entry: &Path) -> String {
    let name = entry
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    ["variant", "reference", "quality"]
        .into_iter()
        .find(|k| name.contains(&format!("-{k}")))
        .unwrap_or("base")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_timed_and_metered_and_its_sidecar_reads_back_as_cached() {
        let joules = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(100));
        let j = joules.clone();
        install_meter(
            Box::new(move || Some(j.load(std::sync::atomic::Ordering::SeqCst) as f64)),
            "estimated-vcpu",
            "Test CPU",
        );
        let m = start();
        joules.store(142, std::sync::atomic::Ordering::SeqCst);
        let cost = m.finish("variant", "x-variant-abc.safetensors");
        remove_meter();
        assert_eq!(cost.energy_j, Some(42.0));
        assert_eq!(cost.energy_source.as_deref(), Some("estimated-vcpu"));
        assert!(!cost.cached && cost.makes_the_variant());
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("digits-mlp-variant-abc.safetensors");
        write_sidecar(&entry, &cost);
        let back = read_sidecar(&entry).unwrap();
        assert!(back.cached);
        assert_eq!(back.energy_j, Some(42.0));
        assert_eq!(step_of(&entry), "variant");
    }
}
