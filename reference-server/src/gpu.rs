//! GPU telemetry: real readings through NVML where the NVIDIA driver is present, otherwise a
//! modelled GPU whose utilization and temperature follow the work the worker really did.
//!
//! The modelled GPU is pure: every method takes the time as an argument, so its behaviour is
//! tested without sleeping and can later be driven by a simulated clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;

/// One telemetry reading of one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSample {
    /// Device memory in use, in bytes.
    pub vram_used_bytes: u64,
    /// Device memory capacity, in bytes.
    pub vram_total_bytes: u64,
    /// Percentage (0-100) of recent time the GPU was computing; NaN if the device cannot say.
    pub utilization_percent: f64,
    /// Die temperature in degrees Celsius; NaN if the device cannot say.
    pub temperature_celsius: f64,
}

impl GpuSample {
    /// VRAM in use as a percentage of capacity (0 when the capacity is unknown).
    pub fn vram_percent(&self) -> f64 {
        if self.vram_total_bytes == 0 {
            0.0
        } else {
            self.vram_used_bytes as f64 / self.vram_total_bytes as f64 * 100.0
        }
    }
}

/// Temperature of an idle modelled GPU, in degrees Celsius.
pub const AMBIENT_CELSIUS: f64 = 35.0;
/// Steady-state temperature of a modelled GPU at 100% utilization and throttle 1.
pub const FULL_LOAD_CELSIUS: f64 = 80.0;
/// Window over which modelled utilization is the busy fraction (NVML reports over a similar
/// recent sample period).
pub const UTILIZATION_WINDOW: Duration = Duration::from_secs(10);
/// Time constant of the modelled temperature's first-order lag.
pub const THERMAL_TIME_CONSTANT: Duration = Duration::from_secs(20);

/// A pure model of one worker's GPU, fed with the intervals in which the worker computed.
///
/// Utilization is the fraction of the last [`UTILIZATION_WINDOW`] covered by busy intervals
/// (overlaps counted once); temperature lags toward
/// `AMBIENT + (FULL_LOAD - AMBIENT) * utilization * throttle` with time constant
/// [`THERMAL_TIME_CONSTANT`].
#[derive(Debug, Clone)]
pub struct ModelledGpu {
    window: Duration,
    time_constant: Duration,
    /// Finished busy intervals that may still overlap the window.
    busy: VecDeque<(Instant, Instant)>,
    /// Start of the interval in progress, so a long job shows as busy before it ends.
    busy_since: Option<Instant>,
    /// When the model started: before a whole window has passed, utilization is over the
    /// shorter time since then, so a fresh GPU that is busy reads 100%, not a fraction.
    started: Instant,
    /// Latest time seen, for pruning old intervals.
    latest: Instant,
    temperature: f64,
    /// When `temperature` was last advanced.
    last_sample: Instant,
}

impl ModelledGpu {
    /// An idle GPU at ambient temperature, as of `now`.
    pub fn new(now: Instant) -> ModelledGpu {
        ModelledGpu::with_params(now, UTILIZATION_WINDOW, THERMAL_TIME_CONSTANT)
    }

    /// Like [`ModelledGpu::new`] with another utilization window and thermal time constant.
    pub fn with_params(now: Instant, window: Duration, time_constant: Duration) -> ModelledGpu {
        ModelledGpu {
            window,
            time_constant,
            busy: VecDeque::new(),
            busy_since: None,
            started: now,
            latest: now,
            temperature: AMBIENT_CELSIUS,
            last_sample: now,
        }
    }

    /// Records that the GPU computed from `from` to `to` (ignored if empty or reversed).
    pub fn record_busy(&mut self, from: Instant, to: Instant) {
        if to > from {
            self.busy.push_back((from, to));
            self.latest = self.latest.max(to);
            self.prune();
        }
    }

    /// Marks the GPU busy from `at` until [`ModelledGpu::end_busy`]; an interval already in
    /// progress keeps its earlier start.
    pub fn begin_busy(&mut self, at: Instant) {
        self.busy_since.get_or_insert(at);
    }

    /// Ends the interval begun by [`ModelledGpu::begin_busy`] at `at` and records it.
    pub fn end_busy(&mut self, at: Instant) {
        if let Some(from) = self.busy_since.take() {
            self.record_busy(from, at);
        }
    }

    /// Busy percentage (0-100) over the window ending at `now`, without changing state.
    pub fn utilization(&self, now: Instant) -> f64 {
        let window_start = now
            .checked_sub(self.window)
            .map_or(self.started, |s| s.max(self.started));
        let span = now.saturating_duration_since(window_start);
        if span.is_zero() {
            return 0.0;
        }
        let mut spans: Vec<(Instant, Instant)> = self
            .busy
            .iter()
            .copied()
            .chain(self.busy_since.map(|from| (from, now)))
            .filter_map(|(a, b)| {
                let (a, b) = (a.max(window_start), b.min(now));
                (b > a).then_some((a, b))
            })
            .collect();
        spans.sort_by_key(|s| s.0);
        // Union length: a batch and a request inside it must not count twice.
        let mut covered = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (a, b) in spans {
            match current {
                Some((ca, cb)) if a <= cb => current = Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    covered += cb - ca;
                    current = Some((a, b));
                }
                None => current = Some((a, b)),
            }
        }
        if let Some((ca, cb)) = current {
            covered += cb - ca;
        }
        (covered.as_secs_f64() / span.as_secs_f64() * 100.0).clamp(0.0, 100.0)
    }

    /// The modelled temperature as of the last [`ModelledGpu::sample`].
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Advances the model to `now` and reads it. `vram_used`/`vram_total` come from the
    /// worker's VRAM accounting and are passed through. `throttle` scales the heat above
    /// ambient (1 = nominal cooling, 1.5 = 50% hotter, as a thermal fault); NaN counts as 1 and
    /// negative values as 0. A `now` earlier than the previous sample leaves the temperature as
    /// it is.
    pub fn sample(
        &mut self,
        now: Instant,
        vram_used: u64,
        vram_total: u64,
        throttle: f64,
    ) -> GpuSample {
        let utilization = self.utilization(now);
        let throttle = if throttle.is_nan() {
            1.0
        } else {
            throttle.max(0.0)
        };
        let target = AMBIENT_CELSIUS
            + (FULL_LOAD_CELSIUS - AMBIENT_CELSIUS) * utilization / 100.0 * throttle;
        let dt = now.saturating_duration_since(self.last_sample);
        // Exact step response of a first-order lag, so the result does not depend on how
        // often the caller samples (for a constant target).
        let alpha = if self.time_constant.is_zero() {
            1.0
        } else {
            1.0 - (-dt.as_secs_f64() / self.time_constant.as_secs_f64()).exp()
        };
        self.temperature += (target - self.temperature) * alpha;
        self.last_sample = self.last_sample.max(now);
        self.latest = self.latest.max(now);
        self.prune();
        GpuSample {
            vram_used_bytes: vram_used,
            vram_total_bytes: vram_total,
            utilization_percent: utilization,
            temperature_celsius: self.temperature,
        }
    }

    /// Drops intervals that ended before the window of the latest time seen, so memory stays
    /// bounded however long the worker runs.
    fn prune(&mut self) {
        if let Some(cutoff) = self.latest.checked_sub(self.window) {
            self.busy.retain(|&(_, to)| to >= cutoff);
        }
    }
}

/// Where GPU telemetry comes from on this host.
#[derive(Debug)]
pub enum GpuBackend {
    /// The NVIDIA driver's management library is loaded: real readings.
    Nvml(Box<Nvml>),
    /// No NVIDIA driver: workers report their [`ModelledGpu`] instead.
    Modelled,
}

impl GpuBackend {
    /// NVML if it initializes, otherwise [`GpuBackend::Modelled`]. It logs nothing: the caller
    /// decides how to report the choice.
    pub fn detect() -> GpuBackend {
        match Nvml::init() {
            Ok(nvml) => GpuBackend::Nvml(Box::new(nvml)),
            Err(_) => GpuBackend::Modelled,
        }
    }

    /// Whether readings are real.
    pub fn is_nvml(&self) -> bool {
        matches!(self, GpuBackend::Nvml(_))
    }

    /// Number of physical GPUs NVML sees (0 when modelled or when NVML cannot count).
    pub fn device_count(&self) -> u32 {
        match self {
            GpuBackend::Nvml(nvml) => nvml.device_count().unwrap_or(0),
            GpuBackend::Modelled => 0,
        }
    }

    /// Reads memory, utilization and temperature of device `index`; `None` when modelled or
    /// when the device or its memory cannot be read. Utilization or temperature that the device
    /// does not report (for example on a MIG slice) are NaN rather than a made-up number.
    pub fn sample_device(&self, index: u32) -> Option<GpuSample> {
        let GpuBackend::Nvml(nvml) = self else {
            return None;
        };
        let device = nvml.device_by_index(index).ok()?;
        let memory = device.memory_info().ok()?;
        let utilization_percent = device
            .utilization_rates()
            .map_or(f64::NAN, |u| f64::from(u.gpu));
        let temperature_celsius = device
            .temperature(TemperatureSensor::Gpu)
            .map_or(f64::NAN, f64::from);
        Some(GpuSample {
            vram_used_bytes: memory.used,
            vram_total_bytes: memory.total,
            utilization_percent,
            temperature_celsius,
        })
    }

    /// The `gpu_type` label: the device name under NVML, `modelled-cpu` otherwise.
    pub fn gpu_type(&self, index: u32) -> String {
        match self {
            GpuBackend::Nvml(nvml) => nvml
                .device_by_index(index)
                .and_then(|d| d.name())
                .unwrap_or_else(|_| "nvidia-unknown".to_string()),
            GpuBackend::Modelled => "modelled-cpu".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn idle_gpu_reads_zero_and_ambient() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        let s = g.sample(t0 + secs(30.0), 1 << 30, 8 << 30, 1.0);
        assert_eq!(s.utilization_percent, 0.0);
        assert_eq!(s.temperature_celsius, AMBIENT_CELSIUS);
        assert_eq!((s.vram_used_bytes, s.vram_total_bytes), (1 << 30, 8 << 30));
        assert_eq!(s.vram_percent(), 12.5);
    }

    #[test]
    fn utilization_is_busy_fraction_of_the_window() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        // Busy 20..25 s: half of the window 15..25 s.
        g.record_busy(t0 + secs(20.0), t0 + secs(25.0));
        assert!(close(g.utilization(t0 + secs(25.0)), 50.0, 1e-6));
        // Ten seconds later the interval has left the window.
        assert_eq!(g.utilization(t0 + secs(35.0)), 0.0);
        // Busy the whole window.
        g.record_busy(t0 + secs(30.0), t0 + secs(40.0));
        assert!(close(g.utilization(t0 + secs(40.0)), 100.0, 1e-6));
    }

    #[test]
    fn overlapping_intervals_count_once_and_windows_start_at_creation() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        g.record_busy(t0, t0 + secs(2.0));
        g.record_busy(t0 + secs(1.0), t0 + secs(3.0));
        g.record_busy(t0 + secs(0.5), t0 + secs(1.5));
        // Only 4 s have passed: 3 s busy of 4, not of 10, and not 4.5 s of overlap.
        assert!(close(g.utilization(t0 + secs(4.0)), 75.0, 1e-6));
        // Empty and reversed intervals are ignored.
        g.record_busy(t0 + secs(3.5), t0 + secs(3.5));
        g.record_busy(t0 + secs(4.0), t0 + secs(3.5));
        assert!(close(g.utilization(t0 + secs(4.0)), 75.0, 1e-6));
    }

    #[test]
    fn an_interval_in_progress_counts_before_it_ends() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        g.begin_busy(t0 + secs(20.0));
        assert!(close(g.utilization(t0 + secs(30.0)), 100.0, 1e-6));
        g.end_busy(t0 + secs(30.0));
        assert!(close(g.utilization(t0 + secs(35.0)), 50.0, 1e-6));
        // end without begin is a no-op.
        g.end_busy(t0 + secs(36.0));
        assert!(close(g.utilization(t0 + secs(35.0)), 50.0, 1e-6));
    }

    #[test]
    fn temperature_lags_toward_load_and_back_to_ambient() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        g.begin_busy(t0);
        // One time constant at full load: 63% of the way from ambient to 80 C.
        let s = g.sample(t0 + THERMAL_TIME_CONSTANT, 0, 1, 1.0);
        let one_tau =
            AMBIENT_CELSIUS + (FULL_LOAD_CELSIUS - AMBIENT_CELSIUS) * (1.0 - (-1f64).exp());
        assert!(close(s.temperature_celsius, one_tau, 1e-6), "{s:?}");
        // Sampling every second instead of once gives the same curve.
        let mut fine = ModelledGpu::new(t0);
        fine.begin_busy(t0);
        for i in 1..=20 {
            fine.sample(t0 + secs(i as f64), 0, 1, 1.0);
        }
        assert!(close(fine.temperature(), one_tau, 1e-6));
        // Steady state near 80 C.
        for i in 21..=150 {
            g.sample(t0 + secs(i as f64), 0, 1, 1.0);
        }
        assert!(
            close(g.temperature(), FULL_LOAD_CELSIUS, 0.1),
            "{}",
            g.temperature()
        );
        // Idle again: cools toward ambient, monotonically.
        g.end_busy(t0 + secs(150.0));
        let mut last = g.temperature();
        for i in 151..=300 {
            let t = g.sample(t0 + secs(i as f64), 0, 1, 1.0).temperature_celsius;
            assert!(t <= last + 1e-9);
            last = t;
        }
        assert!(close(last, AMBIENT_CELSIUS, 0.1), "{last}");
    }

    #[test]
    fn throttle_raises_heat_and_odd_times_are_harmless() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        g.begin_busy(t0);
        for i in 1..=200 {
            g.sample(t0 + secs(i as f64), 0, 1, 1.5);
        }
        let hot = AMBIENT_CELSIUS + (FULL_LOAD_CELSIUS - AMBIENT_CELSIUS) * 1.5;
        assert!(close(g.temperature(), hot, 0.1), "{}", g.temperature());
        // A sample from the past neither panics nor moves the temperature.
        let before = g.temperature();
        let s = g.sample(t0 + secs(10.0), 0, 1, 1.0);
        assert_eq!(s.temperature_celsius, before);
        // NaN throttle counts as nominal.
        let s = g.sample(t0 + secs(400.0), 0, 1, f64::NAN);
        assert!(
            close(s.temperature_celsius, FULL_LOAD_CELSIUS, 0.5),
            "{s:?}"
        );
    }

    #[test]
    fn old_intervals_are_pruned() {
        let t0 = Instant::now();
        let mut g = ModelledGpu::new(t0);
        for i in 0..10_000u64 {
            let from = t0 + Duration::from_millis(i * 100);
            g.record_busy(from, from + Duration::from_millis(50));
        }
        // 10 s window of 100 ms periods: about 100 intervals kept, not 10 000.
        assert!(g.busy.len() <= 102, "{}", g.busy.len());
        let end = t0 + Duration::from_millis(10_000 * 100);
        assert!(close(g.utilization(end), 50.0, 1.0));
    }

    #[test]
    fn detect_falls_back_to_modelled_without_a_driver() {
        let backend = GpuBackend::detect();
        // Without the NVIDIA control device NVML cannot initialize, whatever libraries exist.
        if !std::path::Path::new("/dev/nvidiactl").exists() {
            assert!(!backend.is_nvml(), "NVML without /dev/nvidiactl?");
        }
        match &backend {
            GpuBackend::Modelled => {
                assert_eq!(backend.gpu_type(0), "modelled-cpu");
                assert_eq!(backend.sample_device(0), None);
                assert_eq!(backend.device_count(), 0);
            }
            GpuBackend::Nvml(_) => {
                // On a GPU host the real path must read plausible values.
                assert!(backend.device_count() > 0);
                let s = backend.sample_device(0).expect("device 0 readable");
                assert!(s.vram_total_bytes > 0 && s.vram_used_bytes <= s.vram_total_bytes);
                assert!(!backend.gpu_type(0).is_empty());
                assert_eq!(backend.sample_device(u32::MAX), None);
            }
        }
    }
}
