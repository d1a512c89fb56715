//! The metric catalog of the reference server and its Prometheus registry.
//!
//! [`CATALOG`] is the single source of truth: every metric's name, type, labels, buckets and help
//! text live there and nowhere else. [`Metrics::new`] builds each typed field by looking its entry
//! up in the table, [`conformance::catalog_problems`] checks a text exposition against the table
//! (the unit tests and `tests/metrics.rs` run it on a live scrape), and a test renders the table
//! into `docs/metrics.md` and fails when the two drift apart.
//!
//! The names are the seeds' contract (alert rules and SLOs in `../shared/seeds/` query them), so
//! they are kept verbatim with two exceptions: every counter ends in `_total`, and the six seed
//! histograms named in milliseconds (`diffusion_step_time_ms`, ...) are exported in the Prometheus
//! base unit by default (`diffusion_step_time_seconds`, buckets and values in seconds), so that
//! `promtool check metrics` is clean. `metric_units: seed_ms` ([`MetricUnits::SeedMs`]) exports
//! them under the seeds' literal names, buckets and values instead, for teams whose rules query
//! those. The catalog records both names ([`MetricSpec::seed_ms`]).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::time::Duration;

use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

use crate::types::Tier;

mod catalog;
pub mod conformance;
mod duration;

pub use catalog::{
    CATALOG, FAULT_KINDS, HAS_CONTROLNET, HTTP_ROUTES, IMAGE_GENERATION_STATUSES, REQUEST_STATUSES,
    SAFETY_CATEGORIES, SAFETY_CLASSIFIERS, SAFETY_STAGES, SCHEDULER, WARM_POOL_RESULTS,
};
pub use conformance::catalog_problems;
pub use duration::{DurationHistogram, DurationHistogramVec};

/// The Prometheus type of a catalog metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic count; its name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into the entry's fixed buckets.
    Histogram,
}

impl MetricKind {
    /// The word the text exposition uses in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit the seeds' millisecond histograms are exported in (config `metric_units`).
///
/// Only the catalog rows with a [`MetricSpec::seed_ms`] entry are affected; every other metric
/// is the same in both settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricUnits {
    /// Prometheus base units: `diffusion_step_time_seconds` and the like, buckets and observed
    /// values in seconds. The exposition passes `promtool check metrics` without findings.
    #[default]
    Base,
    /// The seeds' literal names (`diffusion_step_time_ms`, ...), buckets and observed values in
    /// milliseconds, for alert rules and dashboards written against those names. promtool reports
    /// each of these names as an abbreviated unit.
    SeedMs,
}

impl MetricUnits {
    /// Both settings.
    pub const ALL: [MetricUnits; 2] = [MetricUnits::Base, MetricUnits::SeedMs];

    /// The config spelling (`base`, `seed_ms`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricUnits::Base => "base",
            MetricUnits::SeedMs => "seed_ms",
        }
    }

    /// A duration given in milliseconds, in this setting's exported unit.
    fn value_of_ms(self, ms: f64) -> f64 {
        match self {
            MetricUnits::Base => ms / 1e3,
            MetricUnits::SeedMs => ms,
        }
    }

    /// A duration in this setting's exported unit.
    fn value_of(self, d: Duration) -> f64 {
        match self {
            MetricUnits::Base => d.as_secs_f64(),
            MetricUnits::SeedMs => d.as_secs_f64() * 1e3,
        }
    }
}

impl fmt::Display for MetricUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seed's own millisecond name and buckets of a metric exported in seconds by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedMs {
    /// The seed's metric name, ending in `_ms`.
    pub name: &'static str,
    /// The seed's histogram upper bounds in milliseconds (the row's `buckets` times 1000).
    pub buckets: &'static [f64],
}

/// One row of the catalog: everything needed to register, document and check a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Metric family name as exported with [`MetricUnits::Base`] (the default).
    pub name: &'static str,
    /// Prometheus type.
    pub kind: MetricKind,
    /// Help text written into `# HELP` and the docs (with [`MetricUnits::Base`]).
    pub help: &'static str,
    /// Label names, in the order `with_label_values` takes them.
    pub labels: &'static [&'static str],
    /// Histogram upper bounds (without `+Inf`); empty for counters and gauges.
    pub buckets: &'static [f64],
    /// Where the metric comes from (for example `seed 000`), so a reader can find its contract.
    pub source: &'static str,
    /// For a seed histogram named in milliseconds: the seed's name and buckets, exported instead
    /// of `name` and `buckets` with [`MetricUnits::SeedMs`]. `None` for every other metric.
    pub seed_ms: Option<SeedMs>,
}

/// The help-text ending of a duration in seconds, and what it reads with [`MetricUnits::SeedMs`].
const IN_SECONDS: &str = ", in seconds.";
const IN_MILLISECONDS: &str = ", in milliseconds.";

impl MetricSpec {
    /// The seed's `_ms` name, for the six millisecond histograms.
    pub fn seed_ms_name(&self) -> Option<&'static str> {
        self.seed_ms.map(|s| s.name)
    }

    /// The family name exported with `units`.
    pub fn exported_name(&self, units: MetricUnits) -> &'static str {
        match (units, self.seed_ms) {
            (MetricUnits::SeedMs, Some(s)) => s.name,
            _ => self.name,
        }
    }

    /// The histogram upper bounds exported with `units`.
    pub fn exported_buckets(&self, units: MetricUnits) -> &'static [f64] {
        match (units, self.seed_ms) {
            (MetricUnits::SeedMs, Some(s)) => s.buckets,
            _ => self.buckets,
        }
    }

    /// The `# HELP` text exported with `units`: a millisecond row's ", in seconds." ending reads
    /// ", in milliseconds." under [`MetricUnits::SeedMs`].
    pub fn exported_help(&self, units: MetricUnits) -> Cow<'static, str> {
        match (units, self.seed_ms, self.help.strip_suffix(IN_SECONDS)) {
            (MetricUnits::SeedMs, Some(_), Some(stem)) => {
                Cow::Owned(format!("{stem}{IN_MILLISECONDS}"))
            }
            _ => Cow::Borrowed(self.help),
        }
    }

    /// Every name the row is known by: `name`, then the seed's `_ms` name if any.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.seed_ms.map(|s| s.name))
    }
}

/// Looks a metric up in [`CATALOG`] by name: its base name or, for the six millisecond
/// histograms, the seed's `_ms` name.
pub fn lookup(name: &str) -> Option<&'static MetricSpec> {
    CATALOG.iter().find(|s| s.names().any(|n| n == name))
}

/// The labels identifying one worker's GPU in the GPU gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerLabels {
    /// Worker id (`worker_id` label).
    pub worker_id: String,
    /// Device index on its host (`gpu_index` label).
    pub gpu_index: String,
    /// GPU model name, or `modelled-cpu` (`gpu_type` label).
    pub gpu_type: String,
    /// Region the worker runs in (`region` label).
    pub region: String,
}

/// Every catalog metric as a typed handle, registered in one registry owned by this value.
///
/// Field names are the metric names, except the six millisecond histograms, whose fields have
/// unit-neutral names (`diffusion_step_time`, ...) and take observations in milliseconds whatever
/// unit [`MetricUnits`] exports. Label order is the catalog's `labels` order.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    units: MetricUnits,
    /// See [`CATALOG`]: `generation_time_seconds`.
    pub generation_time_seconds: HistogramVec,
    /// See [`CATALOG`]: `queue_wait_seconds`.
    pub queue_wait_seconds: HistogramVec,
    /// See [`CATALOG`]: `model_load_seconds`.
    pub model_load_seconds: HistogramVec,
    /// See [`CATALOG`]: `diffusion_step_time_seconds`, or `diffusion_step_time_ms` with [`MetricUnits::SeedMs`].
    pub diffusion_step_time: DurationHistogramVec,
    /// See [`CATALOG`]: `vae_decode_time_seconds`, or `vae_decode_time_ms` with [`MetricUnits::SeedMs`].
    pub vae_decode_time: DurationHistogramVec,
    /// See [`CATALOG`]: `safety_check_time_seconds`, or `safety_check_time_ms` with [`MetricUnits::SeedMs`].
    pub safety_check_time: DurationHistogramVec,
    /// See [`CATALOG`]: `cdn_upload_time_seconds`, or `cdn_upload_time_ms` with [`MetricUnits::SeedMs`].
    pub cdn_upload_time: DurationHistogram,
    /// See [`CATALOG`]: `queue_depth`.
    pub queue_depth: IntGaugeVec,
    /// See [`CATALOG`]: `queue_oldest_seconds`.
    pub queue_oldest_seconds: GaugeVec,
    /// See [`CATALOG`]: `queue_starvation_events_total`.
    pub queue_starvation_events_total: IntCounterVec,
    /// See [`CATALOG`]: `queue_throughput_per_second`.
    pub queue_throughput_per_second: GaugeVec,
    /// See [`CATALOG`]: `gpu_vram_utilization_percent`.
    pub gpu_vram_utilization_percent: GaugeVec,
    /// See [`CATALOG`]: `gpu_compute_utilization_percent`.
    pub gpu_compute_utilization_percent: GaugeVec,
    /// See [`CATALOG`]: `gpu_temperature_celsius`.
    pub gpu_temperature_celsius: GaugeVec,
    /// See [`CATALOG`]: `worker_pool_size`.
    pub worker_pool_size: IntGaugeVec,
    /// See [`CATALOG`]: `warm_pool_hit_rate`.
    pub warm_pool_hit_rate: Gauge,
    /// See [`CATALOG`]: `warm_pool_requests_total`.
    pub warm_pool_requests_total: IntCounterVec,
    /// See [`CATALOG`]: `model_load_failures_total`.
    pub model_load_failures_total: IntCounterVec,
    /// See [`CATALOG`]: `safety_blocks_total`.
    pub safety_blocks_total: IntCounterVec,
    /// See [`CATALOG`]: `csam_detections_total`.
    pub csam_detections_total: IntCounter,
    /// See [`CATALOG`]: `prompt_block_rate`.
    pub prompt_block_rate: Gauge,
    /// See [`CATALOG`]: `image_block_rate`.
    pub image_block_rate: Gauge,
    /// See [`CATALOG`]: `safety_false_positive_reports_total`.
    pub safety_false_positive_reports_total: IntCounterVec,
    /// See [`CATALOG`]: `safety_classifier_latency_seconds`, or `safety_classifier_latency_ms` with [`MetricUnits::SeedMs`].
    pub safety_classifier_latency: DurationHistogramVec,
    /// See [`CATALOG`]: `generations_per_minute`.
    pub generations_per_minute: Gauge,
    /// See [`CATALOG`]: `user_retry_rate`.
    pub user_retry_rate: Gauge,
    /// See [`CATALOG`]: `revenue_per_generation`.
    pub revenue_per_generation: GaugeVec,
    /// See [`CATALOG`]: `requests_total`.
    pub requests_total: IntCounterVec,
    /// See [`CATALOG`]: `http_requests_total`.
    pub http_requests_total: IntCounterVec,
    /// See [`CATALOG`]: `http_request_duration_seconds`.
    pub http_request_duration_seconds: HistogramVec,
    /// See [`CATALOG`]: `active_requests`.
    pub active_requests: IntGauge,
    /// See [`CATALOG`]: `image_generation_total`.
    pub image_generation_total: IntCounterVec,
    /// See [`CATALOG`]: `image_generation_duration_seconds`.
    pub image_generation_duration_seconds: Histogram,
    /// See [`CATALOG`]: `batch_size`.
    pub batch_size: HistogramVec,
    /// See [`CATALOG`]: `batch_wait_seconds`.
    pub batch_wait_seconds: HistogramVec,
    /// See [`CATALOG`]: `checkpoint_save_duration_seconds`, or `checkpoint_save_duration_ms` with [`MetricUnits::SeedMs`].
    pub checkpoint_save_duration: DurationHistogramVec,
    /// See [`CATALOG`]: `checkpoint_recovery_total`.
    pub checkpoint_recovery_total: IntCounterVec,
    /// See [`CATALOG`]: `job_cancellation_total`.
    pub job_cancellation_total: IntCounterVec,
    /// See [`CATALOG`]: `job_timeout_total`.
    pub job_timeout_total: IntCounterVec,
    /// See [`CATALOG`]: `job_age_seconds`.
    pub job_age_seconds: HistogramVec,
    /// See [`CATALOG`]: `gpu_memory_used_bytes`.
    pub gpu_memory_used_bytes: IntGaugeVec,
    /// See [`CATALOG`]: `gpu_memory_total_bytes`.
    pub gpu_memory_total_bytes: IntGaugeVec,
    /// See [`CATALOG`]: `text_encoding_seconds`.
    pub text_encoding_seconds: HistogramVec,
    /// See [`CATALOG`]: `gpu_xid_errors_total`.
    pub gpu_xid_errors_total: IntCounterVec,
    /// See [`CATALOG`]: `DCGM_FI_DEV_XID_ERRORS`.
    pub dcgm_fi_dev_xid_errors: IntGaugeVec,
    /// See [`CATALOG`]: `injected_faults_active`.
    pub injected_faults_active: IntGaugeVec,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The handles carry no useful state to print; the exposition is the readable form.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// The registry with [`MetricUnits::Base`].
    fn default() -> Self {
        Metrics::new(MetricUnits::Base)
    }
}

/// Builds handles from catalog rows and registers them under the names `units` selects. It
/// panics on a catalog/type mismatch: that is a programming error in this module, caught by the
/// tests before anything ships.
struct Builder {
    registry: Registry,
    units: MetricUnits,
}

impl Builder {
    /// The row of `name`, checked against the handle type asked for. A row with a millisecond
    /// seed name must be built as a duration histogram (which converts observations), and only
    /// such a row.
    fn spec(&self, name: &str, kind: MetricKind, labelled: bool, duration: bool) -> MetricSpec {
        let spec = lookup(name).unwrap_or_else(|| panic!("metric {name} is not in CATALOG"));
        assert_eq!(spec.name, name, "metric {name}: build it by its base name");
        assert_eq!(spec.kind, kind, "metric {name}: catalog says {}", spec.kind);
        assert_eq!(
            !spec.labels.is_empty(),
            labelled,
            "metric {name}: field type disagrees with the catalog's labels {:?}",
            spec.labels
        );
        assert_eq!(
            spec.seed_ms.is_some(),
            duration,
            "metric {name}: rows with a seed_ms name, and only those, are duration histograms"
        );
        *spec
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, name: &str, c: C) -> C {
        self.registry
            .register(Box::new(c.clone()))
            .unwrap_or_else(|e| panic!("registering {name}: {e}"));
        c
    }

    fn opts(&self, spec: &MetricSpec) -> Opts {
        Opts::new(
            spec.exported_name(self.units),
            spec.exported_help(self.units),
        )
    }

    fn hopts(&self, spec: &MetricSpec) -> HistogramOpts {
        HistogramOpts::new(
            spec.exported_name(self.units),
            spec.exported_help(self.units),
        )
        .buckets(spec.exported_buckets(self.units).to_vec())
    }

    fn new_histogram_vec(&self, name: &str, duration: bool) -> HistogramVec {
        let s = self.spec(name, MetricKind::Histogram, true, duration);
        self.register(
            name,
            HistogramVec::new(self.hopts(&s), s.labels).expect(name),
        )
    }

    fn new_histogram(&self, name: &str, duration: bool) -> Histogram {
        let s = self.spec(name, MetricKind::Histogram, false, duration);
        self.register(name, Histogram::with_opts(self.hopts(&s)).expect(name))
    }

    fn histogram_vec(&self, name: &str) -> HistogramVec {
        self.new_histogram_vec(name, false)
    }

    fn histogram(&self, name: &str) -> Histogram {
        self.new_histogram(name, false)
    }

    fn duration_histogram_vec(&self, name: &str) -> DurationHistogramVec {
        DurationHistogramVec::new(self.new_histogram_vec(name, true), self.units)
    }

    fn duration_histogram(&self, name: &str) -> DurationHistogram {
        DurationHistogram::new(self.new_histogram(name, true), self.units)
    }

    fn int_counter_vec(&self, name: &str) -> IntCounterVec {
        let s = self.spec(name, MetricKind::Counter, true, false);
        self.register(
            name,
            IntCounterVec::new(self.opts(&s), s.labels).expect(name),
        )
    }

    fn int_counter(&self, name: &str) -> IntCounter {
        let s = self.spec(name, MetricKind::Counter, false, false);
        self.register(name, IntCounter::with_opts(self.opts(&s)).expect(name))
    }

    fn gauge_vec(&self, name: &str) -> GaugeVec {
        let s = self.spec(name, MetricKind::Gauge, true, false);
        self.register(name, GaugeVec::new(self.opts(&s), s.labels).expect(name))
    }

    fn gauge(&self, name: &str) -> Gauge {
        let s = self.spec(name, MetricKind::Gauge, false, false);
        self.register(name, Gauge::with_opts(self.opts(&s)).expect(name))
    }

    fn int_gauge_vec(&self, name: &str) -> IntGaugeVec {
        let s = self.spec(name, MetricKind::Gauge, true, false);
        self.register(name, IntGaugeVec::new(self.opts(&s), s.labels).expect(name))
    }

    fn int_gauge(&self, name: &str) -> IntGauge {
        let s = self.spec(name, MetricKind::Gauge, false, false);
        self.register(name, IntGauge::with_opts(self.opts(&s)).expect(name))
    }
}

impl Metrics {
    /// Creates every catalog metric from its catalog row in a fresh registry, the six
    /// millisecond histograms in the unit `units` selects.
    pub fn new(units: MetricUnits) -> Metrics {
        let b = Builder {
            registry: Registry::new(),
            units,
        };
        Metrics {
            generation_time_seconds: b.histogram_vec("generation_time_seconds"),
            queue_wait_seconds: b.histogram_vec("queue_wait_seconds"),
            model_load_seconds: b.histogram_vec("model_load_seconds"),
            diffusion_step_time: b.duration_histogram_vec("diffusion_step_time_seconds"),
            vae_decode_time: b.duration_histogram_vec("vae_decode_time_seconds"),
            safety_check_time: b.duration_histogram_vec("safety_check_time_seconds"),
            cdn_upload_time: b.duration_histogram("cdn_upload_time_seconds"),
            queue_depth: b.int_gauge_vec("queue_depth"),
            queue_oldest_seconds: b.gauge_vec("queue_oldest_seconds"),
            queue_starvation_events_total: b.int_counter_vec("queue_starvation_events_total"),
            queue_throughput_per_second: b.gauge_vec("queue_throughput_per_second"),
            gpu_vram_utilization_percent: b.gauge_vec("gpu_vram_utilization_percent"),
            gpu_compute_utilization_percent: b.gauge_vec("gpu_compute_utilization_percent"),
            gpu_temperature_celsius: b.gauge_vec("gpu_temperature_celsius"),
            worker_pool_size: b.int_gauge_vec("worker_pool_size"),
            warm_pool_hit_rate: b.gauge("warm_pool_hit_rate"),
            warm_pool_requests_total: b.int_counter_vec("warm_pool_requests_total"),
            model_load_failures_total: b.int_counter_vec("model_load_failures_total"),
            safety_blocks_total: b.int_counter_vec("safety_blocks_total"),
            csam_detections_total: b.int_counter("csam_detections_total"),
            prompt_block_rate: b.gauge("prompt_block_rate"),
            image_block_rate: b.gauge("image_block_rate"),
            safety_false_positive_reports_total: b
                .int_counter_vec("safety_false_positive_reports_total"),
            safety_classifier_latency: b
                .duration_histogram_vec("safety_classifier_latency_seconds"),
            generations_per_minute: b.gauge("generations_per_minute"),
            user_retry_rate: b.gauge("user_retry_rate"),
            revenue_per_generation: b.gauge_vec("revenue_per_generation"),
            requests_total: b.int_counter_vec("requests_total"),
            http_requests_total: b.int_counter_vec("http_requests_total"),
            http_request_duration_seconds: b.histogram_vec("http_request_duration_seconds"),
            active_requests: b.int_gauge("active_requests"),
            image_generation_total: b.int_counter_vec("image_generation_total"),
            image_generation_duration_seconds: b.histogram("image_generation_duration_seconds"),
            batch_size: b.histogram_vec("batch_size"),
            batch_wait_seconds: b.histogram_vec("batch_wait_seconds"),
            checkpoint_save_duration: b.duration_histogram_vec("checkpoint_save_duration_seconds"),
            checkpoint_recovery_total: b.int_counter_vec("checkpoint_recovery_total"),
            job_cancellation_total: b.int_counter_vec("job_cancellation_total"),
            job_timeout_total: b.int_counter_vec("job_timeout_total"),
            job_age_seconds: b.histogram_vec("job_age_seconds"),
            gpu_memory_used_bytes: b.int_gauge_vec("gpu_memory_used_bytes"),
            gpu_memory_total_bytes: b.int_gauge_vec("gpu_memory_total_bytes"),
            text_encoding_seconds: b.histogram_vec("text_encoding_seconds"),
            gpu_xid_errors_total: b.int_counter_vec("gpu_xid_errors_total"),
            dcgm_fi_dev_xid_errors: b.int_gauge_vec("DCGM_FI_DEV_XID_ERRORS"),
            injected_faults_active: b.int_gauge_vec("injected_faults_active"),
            registry: b.registry,
            units,
        }
    }

    /// The unit the six millisecond histograms are exported in.
    pub fn units(&self) -> MetricUnits {
        self.units
    }

    /// The registry every catalog metric lives in (to gather, or to add process collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition (format 0.0.4) of every registered metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            // The encoder writes only UTF-8 (names, labels and help are Rust strings).
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            // Cannot happen with catalog-built metrics; a scrape still gets a valid (comment-only)
            // body rather than a panic in the serving path.
            Err(e) => format!("# metrics encoding failed: {e}\n"),
        }
    }

    /// Creates every known label combination at zero, so each catalog metric is in the
    /// exposition from the first scrape: `rate()` and absence-based alerts see a 0 series instead
    /// of none, and a series' first increment is not lost to `rate()`'s extrapolation.
    ///
    /// `http_requests_total` is the exception: its `status` codes are only created when seen,
    /// so it appears after the first HTTP request has been answered.
    pub fn init_series(&self, tiers: &[Tier], models: &[&str], workers: &[WorkerLabels]) {
        for tier in tiers.iter().map(|t| t.as_str()) {
            self.queue_wait_seconds.with_label_values(&[tier]);
            self.queue_oldest_seconds.with_label_values(&[tier]);
            self.queue_starvation_events_total
                .with_label_values(&[tier]);
            self.queue_throughput_per_second.with_label_values(&[tier]);
            self.worker_pool_size.with_label_values(&[tier]);
            self.job_cancellation_total.with_label_values(&[tier]);
            self.job_timeout_total.with_label_values(&[tier]);
            self.job_age_seconds.with_label_values(&[tier]);
            for &model in models {
                self.generation_time_seconds.with_label_values(&[
                    tier,
                    model,
                    SCHEDULER,
                    HAS_CONTROLNET,
                ]);
                self.queue_depth.with_label_values(&[tier, model]);
                for &status in REQUEST_STATUSES {
                    self.requests_total
                        .with_label_values(&[tier, status, model]);
                }
            }
            for &stage in SAFETY_STAGES {
                for &category in SAFETY_CATEGORIES {
                    self.safety_blocks_total
                        .with_label_values(&[stage, category, tier]);
                }
            }
        }
        for &model in models {
            self.model_load_seconds.with_label_values(&[model]);
            self.diffusion_step_time.init_series(&[model]);
            self.vae_decode_time.init_series(&[model]);
            self.model_load_failures_total.with_label_values(&[model]);
            self.revenue_per_generation.with_label_values(&[model]);
            self.batch_size.with_label_values(&[model]);
            self.batch_wait_seconds.with_label_values(&[model]);
            self.checkpoint_save_duration.init_series(&[model]);
            self.checkpoint_recovery_total.with_label_values(&[model]);
            self.text_encoding_seconds.with_label_values(&[model]);
        }
        for &kind in FAULT_KINDS {
            self.injected_faults_active.with_label_values(&[kind]);
        }
        for &stage in SAFETY_STAGES {
            self.safety_check_time.init_series(&[stage]);
        }
        for &category in SAFETY_CATEGORIES {
            self.safety_false_positive_reports_total
                .with_label_values(&[category]);
        }
        for &classifier in SAFETY_CLASSIFIERS {
            self.safety_classifier_latency.init_series(&[classifier]);
        }
        for &result in WARM_POOL_RESULTS {
            self.warm_pool_requests_total.with_label_values(&[result]);
        }
        for &status in IMAGE_GENERATION_STATUSES {
            self.image_generation_total.with_label_values(&[status]);
        }
        for &(method, endpoint) in HTTP_ROUTES {
            self.http_request_duration_seconds
                .with_label_values(&[method, endpoint]);
        }
        for w in workers {
            let gpu = [w.worker_id.as_str(), w.gpu_type.as_str(), w.region.as_str()];
            self.gpu_vram_utilization_percent.with_label_values(&gpu);
            self.gpu_compute_utilization_percent.with_label_values(&gpu);
            self.gpu_temperature_celsius.with_label_values(&gpu);
            let mem = [
                w.worker_id.as_str(),
                w.gpu_index.as_str(),
                w.gpu_type.as_str(),
            ];
            self.gpu_memory_used_bytes.with_label_values(&mem);
            self.gpu_memory_total_bytes.with_label_values(&mem);
            self.gpu_xid_errors_total.with_label_values(&mem);
            self.dcgm_fi_dev_xid_errors.with_label_values(&[
                w.gpu_index.as_str(),
                w.worker_id.as_str(),
                w.gpu_type.as_str(),
            ]);
        }
    }
}

/// Renders the catalog as the Markdown document committed at `docs/metrics.md`.
pub fn render_markdown(catalog: &[MetricSpec]) -> String {
    let mut out = String::new();
    out.push_str("# Metrics of the reference server\n\n");
    out.push_str(
        "Generated from `CATALOG` in `reference-server/src/metrics/catalog.rs`; do not edit by \
         hand. Regenerate with `UPDATE_DOCS=1 cargo test -p reference-server --lib metrics`.\n\n",
    );
    out.push_str(
        "Names follow the seeds verbatim (their alert rules and SLOs query them), except that \
         every counter ends in `_total`; `source` gives the seed and, where it differs, the \
         seed's original name. Histogram buckets are upper bounds; `+Inf` is implied.\n\n",
    );
    out.push_str(
        "**Units.** The seeds name six histograms in milliseconds (`*_ms`), which \
         `promtool check metrics` reports as abbreviated units. By default \
         (`metric_units: base` in the server config) they are exported in the Prometheus base \
         unit: the `_seconds` name below, buckets and observed values in seconds. With \
         `metric_units: seed_ms` the server exports the seed's literal name from the last \
         column instead, with the buckets listed there and values in milliseconds, for alert \
         rules and dashboards written against the seed names. Only one of the two names is \
         exported at a time; every other metric is the same in both settings.\n\n",
    );
    out.push_str(
        "| name | type | labels | buckets | help | source | name with `metric_units: seed_ms` |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    let list = |b: &[f64]| b.iter().map(f64::to_string).collect::<Vec<_>>().join(", ");
    for s in catalog {
        let labels = if s.labels.is_empty() {
            "-".to_string()
        } else {
            s.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let buckets = if s.buckets.is_empty() {
            "-".to_string()
        } else {
            list(s.buckets)
        };
        let seed = match s.seed_ms {
            Some(ms) => format!("`{}` (buckets in ms: {})", ms.name, list(ms.buckets)),
            None => "-".to_string(),
        };
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.kind,
            labels,
            buckets,
            md_cell(s.help),
            md_cell(s.source),
            seed
        );
    }
    out
}

/// Escapes the one character that would break a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::conformance::promtool_check_metrics;
    use super::*;
    use std::collections::HashSet;

    fn workers() -> Vec<WorkerLabels> {
        (0..2)
            .map(|i| WorkerLabels {
                worker_id: format!("worker-{i}"),
                gpu_index: i.to_string(),
                gpu_type: "modelled-cpu".into(),
                region: "local".into(),
            })
            .collect()
    }

    const MODELS: &[&str] = &["sdxl-mini", "flux-mini", "video-mini"];

    /// The seeds' six millisecond names, in catalog order.
    const SEED_MS_NAMES: &[&str] = &[
        "diffusion_step_time_ms",
        "vae_decode_time_ms",
        "safety_check_time_ms",
        "cdn_upload_time_ms",
        "safety_classifier_latency_ms",
        "checkpoint_save_duration_ms",
    ];

    /// promtool's lint for a `_ms` name.
    const ABBREVIATED_UNITS: &str = "metric names should not contain abbreviated units";

    /// A registry after start-up and a handful of observations, as a scrape would see it.
    fn populated(units: MetricUnits) -> Metrics {
        let m = Metrics::new(units);
        m.init_series(&Tier::ALL, MODELS, &workers());
        // http_requests_total is created only by real traffic; simulate one answered request.
        m.http_requests_total
            .with_label_values(&["GET", "/healthz", "200"])
            .inc();
        m.generation_time_seconds
            .with_label_values(&["turbo", "sdxl-mini", SCHEDULER, HAS_CONTROLNET])
            .observe(1.2);
        m.queue_wait_seconds
            .with_label_values(&["relax"])
            .observe(7.0);
        m.cdn_upload_time.observe_ms(3.5);
        m.diffusion_step_time.observe_ms(&["sdxl-mini"], 42.0);
        m.vae_decode_time
            .observe_duration(&["flux-mini"], Duration::from_millis(120));
        m.safety_check_time.observe_ms(&["pre"], 0.4);
        m.safety_classifier_latency
            .observe_ms(&["image_classifier"], 17.0);
        m.checkpoint_save_duration.observe_ms(&["video-mini"], 8.0);
        m.safety_blocks_total
            .with_label_values(&["pre", "nsfw", "fast"])
            .inc();
        m.csam_detections_total.inc();
        m.queue_depth
            .with_label_values(&["fast", "flux-mini"])
            .set(4);
        m.gpu_memory_used_bytes
            .with_label_values(&["worker-0", "0", "modelled-cpu"])
            .set(3 << 30);
        m.gpu_temperature_celsius
            .with_label_values(&["worker-1", "modelled-cpu", "local"])
            .set(41.5);
        m.active_requests.inc();
        m.warm_pool_hit_rate.set(0.75);
        m
    }

    #[test]
    fn catalog_is_well_formed() {
        let mut seen = HashSet::new();
        for s in CATALOG {
            for n in s.names() {
                assert!(seen.insert(n), "duplicate metric name {n}");
            }
            assert_eq!(
                s.kind == MetricKind::Counter,
                s.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                s.name
            );
            assert!(!s.help.trim().is_empty(), "{}: empty help", s.name);
            assert!(!s.source.trim().is_empty(), "{}: empty source", s.name);
            assert!(
                !s.name.ends_with("_ms") && !s.name.contains("_ms_"),
                "{}: base names use base units",
                s.name
            );
            let mut labels = HashSet::new();
            for l in s.labels {
                assert!(labels.insert(l), "{}: duplicate label {l}", s.name);
                assert_ne!(*l, "le", "{}: le is reserved", s.name);
            }
            if s.kind == MetricKind::Histogram {
                assert!(
                    !s.buckets.is_empty(),
                    "{}: histogram without buckets",
                    s.name
                );
                assert!(
                    s.buckets.windows(2).all(|w| w[0] < w[1]),
                    "{}: buckets must increase strictly",
                    s.name
                );
            } else {
                assert!(
                    s.buckets.is_empty(),
                    "{}: buckets on a non-histogram",
                    s.name
                );
            }
        }
        assert_eq!(
            CATALOG.len(),
            46,
            "the brief lists 42 metrics; fault injection adds 4"
        );
    }

    #[test]
    fn seed_ms_rows_are_the_seconds_form_of_the_seed() {
        let seeded: Vec<&MetricSpec> = CATALOG.iter().filter(|s| s.seed_ms.is_some()).collect();
        let names: Vec<&str> = seeded.iter().filter_map(|s| s.seed_ms_name()).collect();
        assert_eq!(names, SEED_MS_NAMES);
        for s in seeded {
            let ms = s.seed_ms.unwrap();
            assert_eq!(s.kind, MetricKind::Histogram, "{}", s.name);
            let stem = ms.name.strip_suffix("_ms").expect("seed name ends in _ms");
            assert_eq!(s.name, format!("{stem}_seconds"));
            assert_eq!(
                s.buckets.len(),
                ms.buckets.len(),
                "{}: bucket count",
                s.name
            );
            for (sec, msb) in s.buckets.iter().zip(ms.buckets) {
                assert_eq!(*sec, msb / 1000.0, "{}: {sec} s is not {msb} ms", s.name);
            }
            assert!(
                s.help.ends_with(IN_SECONDS),
                "{}: help must end with {IN_SECONDS:?} (it becomes {IN_MILLISECONDS:?})",
                s.name
            );
            assert!(
                s.source.contains(ms.name) && s.source.contains("metric_units: seed_ms"),
                "{}: source must name the seed name and the switch",
                s.name
            );
            assert_eq!(s.exported_name(MetricUnits::Base), s.name);
            assert_eq!(s.exported_name(MetricUnits::SeedMs), ms.name);
            assert_eq!(s.exported_buckets(MetricUnits::SeedMs), ms.buckets);
            assert!(s
                .exported_help(MetricUnits::SeedMs)
                .ends_with(", in milliseconds."));
        }
        // Every other row is exported identically in both settings.
        for s in CATALOG.iter().filter(|s| s.seed_ms.is_none()) {
            assert_eq!(s.exported_name(MetricUnits::SeedMs), s.name);
            assert_eq!(s.exported_buckets(MetricUnits::SeedMs), s.buckets);
            assert_eq!(s.exported_help(MetricUnits::SeedMs), s.help);
        }
    }

    #[test]
    fn lookup_finds_either_name() {
        let base = lookup("diffusion_step_time_seconds").unwrap();
        let seed = lookup("diffusion_step_time_ms").unwrap();
        assert_eq!(base, seed);
        assert_eq!(base.seed_ms_name(), Some("diffusion_step_time_ms"));
        assert_eq!(lookup("requests_total").unwrap().seed_ms_name(), None);
        assert!(lookup("diffusion_step_time").is_none());
        for n in SEED_MS_NAMES {
            assert!(lookup(n).is_some(), "{n} not in CATALOG");
        }
    }

    #[test]
    fn metric_units_serde_spelling() {
        assert_eq!(MetricUnits::default(), MetricUnits::Base);
        for u in MetricUnits::ALL {
            let yaml = serde_yaml_ng::to_string(&u).unwrap();
            assert_eq!(yaml.trim(), u.as_str());
            assert_eq!(serde_yaml_ng::from_str::<MetricUnits>(&yaml).unwrap(), u);
        }
    }

    #[test]
    fn exposition_matches_catalog_exactly() {
        for units in MetricUnits::ALL {
            let m = populated(units);
            assert_eq!(m.units(), units);
            let problems = catalog_problems(&m.encode(), CATALOG, units);
            assert!(
                problems.is_empty(),
                "metric_units {units}:\n{}",
                problems.join("\n")
            );
            // The registry itself holds nothing beyond the catalog (not only what is encoded).
            for mf in m.registry().gather() {
                assert!(
                    CATALOG.iter().any(|s| s.exported_name(units) == mf.name()),
                    "{} registered with metric_units {units} but not in CATALOG",
                    mf.name()
                );
            }
        }
    }

    #[test]
    fn exposition_under_the_other_units_is_reported() {
        let text = populated(MetricUnits::Base).encode();
        let problems = catalog_problems(&text, CATALOG, MetricUnits::SeedMs);
        for n in SEED_MS_NAMES {
            assert!(
                problems
                    .iter()
                    .any(|p| p == &format!("{n}: catalog metric missing from the exposition")),
                "{n} not reported missing: {problems:#?}"
            );
        }
        for s in CATALOG.iter().filter(|s| s.seed_ms.is_some()) {
            assert!(
                problems.iter().any(|p| p.starts_with(&format!(
                    "{}: exposed family not in the catalog (it is catalog metric",
                    s.name
                ))),
                "{} not reported extra: {problems:#?}",
                s.name
            );
        }
        assert_eq!(problems.len(), 12, "{problems:#?}");
    }

    #[test]
    fn catalog_problems_reports_each_kind_of_drift() {
        let good = populated(MetricUnits::Base).encode();
        let edit = |from: &str, to: &str| {
            assert!(good.contains(from), "fixture lacks {from:?}");
            good.replacen(from, to, 1)
        };
        let drop_line = |needle: &str| {
            good.lines()
                .filter(|l| !l.contains(needle))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                edit("# TYPE active_requests gauge", "# TYPE active_requests counter"),
                "active_requests: type counter, catalog says gauge",
            ),
            (
                edit(
                    "# HELP active_requests HTTP requests currently being served.",
                    "# HELP active_requests Something else.",
                ),
                "active_requests: help \"Something else.\"",
            ),
            (
                edit(
                    "cdn_upload_time_seconds_bucket{le=\"0.001\"}",
                    "cdn_upload_time_seconds_bucket{le=\"0.002\"}",
                ),
                "cdn_upload_time_seconds: buckets [0.002,",
            ),
            (
                drop_line("cdn_upload_time_seconds_bucket{le=\"+Inf\"}"),
                "cdn_upload_time_seconds: +Inf bucket missing",
            ),
            (
                edit("csam_detections_total 1", "csam_detections_total{x=\"1\"} 1"),
                "csam_detections_total: label names [\"x\"], catalog says []",
            ),
            (
                drop_line("warm_pool_hit_rate"),
                "warm_pool_hit_rate: catalog metric missing from the exposition",
            ),
            (
                format!("{good}# HELP surprise_total x\n# TYPE surprise_total counter\nsurprise_total 1\n"),
                "surprise_total: exposed family not in the catalog",
            ),
            (
                format!("{good}no_type_here 1\n"),
                "sample no_type_here has no # TYPE line",
            ),
            (format!("{good}broken{{a=1}} 2\n"), "unquoted value"),
        ];
        for (text, want) in cases {
            let problems = catalog_problems(&text, CATALOG, MetricUnits::Base);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "expected a problem containing {want:?}, got {problems:#?}"
            );
        }
    }

    #[test]
    fn duration_histograms_convert_milliseconds() {
        let base = Metrics::new(MetricUnits::Base);
        base.diffusion_step_time.observe_ms(&["sdxl-mini"], 250.0);
        base.diffusion_step_time
            .observe_duration(&["sdxl-mini"], Duration::from_millis(750));
        base.cdn_upload_time.observe_ms(5.0);
        assert_eq!(base.diffusion_step_time.sample_count(&["sdxl-mini"]), 2);
        assert!((base.diffusion_step_time.sample_sum(&["sdxl-mini"]) - 1.0).abs() < 1e-9);
        assert!((base.cdn_upload_time.sample_sum() - 0.005).abs() < 1e-12);
        let text = base.encode();
        assert!(
            text.contains("diffusion_step_time_seconds_bucket{model=\"sdxl-mini\",le=\"0.3\"} 1\n")
        );
        assert!(
            text.contains("diffusion_step_time_seconds_bucket{model=\"sdxl-mini\",le=\"1\"} 2\n")
        );
        assert!(!text.contains("_ms"), "base units export no _ms name");

        let seed = Metrics::new(MetricUnits::SeedMs);
        seed.diffusion_step_time.observe_ms(&["sdxl-mini"], 250.0);
        seed.diffusion_step_time
            .observe_duration(&["sdxl-mini"], Duration::from_millis(750));
        seed.cdn_upload_time
            .observe_duration(Duration::from_millis(5));
        assert_eq!(seed.diffusion_step_time.units(), MetricUnits::SeedMs);
        assert!((seed.diffusion_step_time.sample_sum(&["sdxl-mini"]) - 1000.0).abs() < 1e-6);
        assert!((seed.cdn_upload_time.sample_sum() - 5.0).abs() < 1e-9);
        let text = seed.encode();
        assert!(text.contains("diffusion_step_time_ms_bucket{model=\"sdxl-mini\",le=\"300\"} 1\n"));
        assert!(text.contains("diffusion_step_time_ms_sum{model=\"sdxl-mini\"} 1000\n"));
        assert!(text.contains("# HELP diffusion_step_time_ms Time per denoising step of the diffusion loop, in milliseconds.\n"));
        assert!(!text.contains("diffusion_step_time_seconds"));
    }

    #[test]
    fn init_series_exposes_zeros_for_known_label_values() {
        for units in MetricUnits::ALL {
            let m = Metrics::new(units);
            m.init_series(&Tier::ALL, MODELS, &workers());
            let text = m.encode();
            let step = lookup("diffusion_step_time_seconds")
                .unwrap()
                .exported_name(units);
            let classifier = lookup("safety_classifier_latency_seconds")
                .unwrap()
                .exported_name(units);
            for line in [
                r#"requests_total{model="video-mini",status="rate_limited",tier="relax"} 0"#,
                r#"safety_blocks_total{category="self_harm",stage="post",tier="turbo"} 0"#,
                r#"warm_pool_requests_total{result="cold_start"} 0"#,
                r#"generation_time_seconds_count{has_controlnet="false",model="flux-mini",scheduler="euler",tier="fast"} 0"#,
                r#"http_request_duration_seconds_count{endpoint="/v1/generations/{id}",method="DELETE"} 0"#,
                r#"gpu_memory_total_bytes{gpu_index="1",gpu_type="modelled-cpu",worker_id="worker-1"} 0"#,
                "csam_detections_total 0",
                &format!(r#"{step}_count{{model="video-mini"}} 0"#),
                &format!(r#"{classifier}_count{{classifier="prompt_classifier"}} 0"#),
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "metric_units {units}: missing {line}\n---\n{text}"
                );
            }
            assert!(
                !text.contains("http_requests_total{"),
                "http_requests_total statuses must only appear when seen"
            );
            // Every other catalog metric is already there.
            let problems = catalog_problems(&text, CATALOG, units);
            assert_eq!(
                problems,
                ["http_requests_total: catalog metric missing from the exposition"],
                "metric_units {units}"
            );
        }
    }

    #[test]
    fn docs_match_catalog() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let want = render_markdown(CATALOG);
        if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/metrics.md is out of date with CATALOG; run \
             `UPDATE_DOCS=1 cargo test -p reference-server --lib metrics` and commit the result"
        );
    }

    /// promtool's report on `text`; `None` (after a skip notice) when promtool is not installed
    /// and CI is not set.
    fn promtool(test: &str, text: &str) -> Option<conformance::PromtoolReport> {
        let report = promtool_check_metrics(text).expect("running promtool");
        if report.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool not found (Debian package `prometheus`), and CI is set"
            );
            eprintln!("SKIP {test}: promtool not installed");
        }
        report
    }

    /// The exposition right after start-up and after observations, with `units`.
    fn expositions(units: MetricUnits) -> [(&'static str, String); 2] {
        let m = Metrics::new(units);
        m.init_series(&Tier::ALL, MODELS, &workers());
        [
            ("after init_series", m.encode()),
            ("after observations", populated(units).encode()),
        ]
    }

    #[test]
    fn promtool_check_metrics_is_clean_with_base_units() {
        for (when, text) in expositions(MetricUnits::Base) {
            let Some(report) = promtool("promtool_check_metrics_is_clean_with_base_units", &text)
            else {
                return;
            };
            assert!(
                report.is_clean(),
                "promtool {when}: exit {}\n{}",
                report.exit_code,
                report.output
            );
        }
    }

    #[test]
    fn promtool_flags_exactly_the_seed_ms_names() {
        for (when, text) in expositions(MetricUnits::SeedMs) {
            let Some(report) = promtool("promtool_flags_exactly_the_seed_ms_names", &text) else {
                return;
            };
            // 3: lint findings only; 1 would mean an unparsable exposition.
            assert_eq!(report.exit_code, 3, "promtool {when}:\n{}", report.output);
            let mut got = report.findings();
            got.sort();
            let mut want: Vec<(&str, &str)> = SEED_MS_NAMES
                .iter()
                .map(|n| (*n, ABBREVIATED_UNITS))
                .collect();
            want.sort();
            assert_eq!(got, want, "promtool {when}:\n{}", report.output);
        }
    }

    #[test]
    fn markdown_has_one_row_per_metric() {
        let md = render_markdown(CATALOG);
        let rows = md.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(rows, CATALOG.len());
        assert!(md.contains(
            "| `generation_time_seconds` | histogram | `tier`, `model`, `scheduler`, \
             `has_controlnet` | 2, 5, 10, 15, 25, 40, 60, 120 |"
        ));
        assert!(md.contains(
            "| `diffusion_step_time_seconds` | histogram | `model` | 0.005, 0.01, 0.025, 0.05, \
             0.1, 0.2, 0.3, 0.5, 1, 2 |"
        ));
        assert!(md.contains(
            "| `diffusion_step_time_ms` (buckets in ms: 5, 10, 25, 50, 100, 200, 300, 500, \
             1000, 2000) |"
        ));
        assert_eq!(
            md.lines().filter(|l| l.ends_with(" | - |")).count(),
            CATALOG.len() - SEED_MS_NAMES.len()
        );
    }
}
