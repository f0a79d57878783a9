//! Polls a meter in a background thread, so that counters are read often enough to catch every
//! wrap and a power trace exists, while the measured work runs undisturbed on other threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{EnergyMeter, MeterError};

/// One read: seconds since the sampler started, cumulative joules per domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    /// Cumulative joules per domain, in the meter's domain order.
    pub joules: Vec<f64>,
}

type Shared<T> = Arc<Mutex<T>>;

/// A running sampler over one meter.
pub struct Sampler {
    meter: Shared<Box<dyn EnergyMeter>>,
    samples: Shared<Vec<Sample>>,
    error: Shared<Option<String>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    start: Instant,
    hz: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn take_sample(
    meter: &Mutex<Box<dyn EnergyMeter>>,
    samples: &Mutex<Vec<Sample>>,
    start: Instant,
) -> Result<Sample, MeterError> {
    let joules = lock(meter).read_joules()?;
    let sample = Sample {
        t_s: start.elapsed().as_secs_f64(),
        joules,
    };
    lock(samples).push(sample.clone());
    Ok(sample)
}

impl Sampler {
    /// Starts polling `meter` at `hz` (raised to the meter's minimum; 0 with a meter that needs no
    /// polling means no background thread).
    pub fn start(meter: Box<dyn EnergyMeter>, hz: f64) -> Self {
        let hz = hz.max(meter.min_poll_hz());
        let meter = Arc::new(Mutex::new(meter));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let handle = (hz > 0.0).then(|| {
            let (meter, samples, error, stop) = (
                Arc::clone(&meter),
                Arc::clone(&samples),
                Arc::clone(&error),
                Arc::clone(&stop),
            );
            let period = Duration::from_secs_f64(1.0 / hz);
            std::thread::spawn(move || {
                let mut next = Instant::now() + period;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        // One wake-up a sample: `stop` unparks the thread to end it at once.
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    next += period;
                    if let Err(e) = take_sample(&meter, &samples, start) {
                        lock(&error).get_or_insert(e.to_string());
                    }
                }
            })
        });
        Self {
            meter,
            samples,
            error,
            stop,
            handle,
            start,
            hz,
        }
    }

    /// The polling rate in effect, in Hz (0: no background polling).
    pub fn hz(&self) -> f64 {
        self.hz
    }

    /// Reads the meter now (for a window's edges) and keeps the sample.
    pub fn read_now(&self) -> Result<Sample, MeterError> {
        take_sample(&self.meter, &self.samples, self.start)
    }

    /// Stops polling and returns the samples in time order, the meter, and the first error the
    /// background thread hit.
    pub fn stop(mut self) -> (Vec<Sample>, Box<dyn EnergyMeter>, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let mut samples = std::mem::take(&mut *lock(&self.samples));
        samples.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let error = lock(&self.error).take();
        let meter = match Arc::try_unwrap(self.meter) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(_) => unreachable!("the sampler thread has been joined"),
        };
        (samples, meter, error)
    }
}
