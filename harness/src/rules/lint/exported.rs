//! What a target exports, as the linter needs it: metric names with their type and label names,
//! and, where known, label values. Built from the reference server's catalog (what it can
//! export) or from a run's scraped series (what it did export).

use crate::scrape::{MetricType, SeriesStore, METRIC_NAME_LABEL};
use reference_server::metrics::{MetricKind, MetricUnits, CATALOG};
use std::collections::{BTreeMap, BTreeSet};

/// The type of one metric name (a sample name: `foo_bucket` is a histogram's bucket series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram's `_bucket` series (with `le`).
    Bucket,
    /// A histogram's `_sum` or `_count` (counters).
    HistogramSumOrCount,
    /// A summary's quantile series (gauge-like, with `quantile`).
    SummaryQuantile,
    /// A summary's `_sum` or `_count` (counters).
    SummarySumOrCount,
    /// Declared `untyped`, or no type known.
    Untyped,
    /// Written by a recording rule of the linted files; its type is whatever the rule computes.
    Recorded,
}

impl SeriesKind {
    /// How the kind reads in a message.
    pub fn describe(self) -> &'static str {
        match self {
            SeriesKind::Counter => "a counter",
            SeriesKind::Gauge => "a gauge",
            SeriesKind::Bucket => "a histogram's bucket series",
            SeriesKind::HistogramSumOrCount => "a histogram's _sum/_count counter",
            SeriesKind::SummaryQuantile => "a summary's quantile series (a gauge)",
            SeriesKind::SummarySumOrCount => "a summary's _sum/_count counter",
            SeriesKind::Untyped => "untyped",
            SeriesKind::Recorded => "a recorded series",
        }
    }

    /// Whether `rate` over it is a mistake: the value goes down as well as up.
    pub fn is_gauge_like(self) -> bool {
        matches!(self, SeriesKind::Gauge | SeriesKind::SummaryQuantile)
    }
}

/// What is known of one label's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValues {
    /// Nothing: any value may occur.
    Unknown,
    /// The values seen so far (a run's record): others may still occur.
    Seen(BTreeSet<String>),
    /// Every value the label can have (a recording rule's static label).
    Exhaustive(BTreeSet<String>),
}

impl LabelValues {
    fn merge(&mut self, other: LabelValues) {
        *self = match (std::mem::replace(self, LabelValues::Unknown), other) {
            (LabelValues::Unknown, _) | (_, LabelValues::Unknown) => LabelValues::Unknown,
            (LabelValues::Exhaustive(mut a), LabelValues::Exhaustive(b)) => {
                a.extend(b);
                LabelValues::Exhaustive(a)
            }
            (LabelValues::Seen(mut a), LabelValues::Seen(b))
            | (LabelValues::Seen(mut a), LabelValues::Exhaustive(b))
            | (LabelValues::Exhaustive(mut a), LabelValues::Seen(b)) => {
                a.extend(b);
                LabelValues::Seen(a)
            }
        };
    }
}

/// One exported metric name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricInfo {
    /// Its type.
    pub kind: SeriesKind,
    /// Its label names (without `__name__`) and what is known of their values.
    pub labels: BTreeMap<String, LabelValues>,
    /// Whether it may carry labels not listed (`ALERTS` carries each alert's labels).
    pub open: bool,
}

/// Where an [`Exported`] came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportedSource {
    /// The reference server's metric catalog.
    Catalog,
    /// A run's scraped series.
    Record,
}

/// The metric names a target exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Where the description came from.
    pub source: ExportedSource,
    /// Metric name -> what is known of it.
    pub metrics: BTreeMap<String, MetricInfo>,
    /// Names the target might have exported under other settings (`diffusion_step_time_ms`
    /// with `metric_units: seed_ms`) -> a hint, for unknown-metric messages.
    pub alternatives: BTreeMap<String, String>,
}

/// Labels every scraped series gets from its target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Per-scrape series a scraper writes for each target (as Prometheus and our store do).
const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn unknown_labels<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, LabelValues> {
    names
        .into_iter()
        .map(|n| (n.to_owned(), LabelValues::Unknown))
        .collect()
}

impl Exported {
    /// What the reference server exports with `metric_units: units`, as scraped (with `job` and
    /// `instance`), plus the scraper's `up` and `scrape_*` series and the rule engine's `ALERTS`
    /// and `ALERTS_FOR_STATE`.
    pub fn catalog(units: MetricUnits) -> Exported {
        let mut e = Exported::empty(ExportedSource::Catalog);
        for spec in CATALOG {
            let name = spec.exported_name(units);
            let labels = || unknown_labels(spec.labels.iter().copied().chain(TARGET_LABELS));
            let mut add = |n: String, kind: SeriesKind, extra: Option<&str>| {
                let mut l = labels();
                if let Some(x) = extra {
                    l.insert(x.to_owned(), LabelValues::Unknown);
                }
                e.metrics.insert(
                    n,
                    MetricInfo {
                        kind,
                        labels: l,
                        open: false,
                    },
                );
            };
            match spec.kind {
                MetricKind::Counter => add(name.to_owned(), SeriesKind::Counter, None),
                MetricKind::Gauge => add(name.to_owned(), SeriesKind::Gauge, None),
                MetricKind::Histogram => {
                    add(format!("{name}_bucket"), SeriesKind::Bucket, Some("le"));
                    for s in ["_sum", "_count"] {
                        add(format!("{name}{s}"), SeriesKind::HistogramSumOrCount, None);
                    }
                }
            }
            // The other unit's name, so that a rule written for it gets a precise hint.
            for other in spec.names().filter(|n| *n != name) {
                let setting = if other == spec.name {
                    "base"
                } else {
                    "seed_ms"
                };
                let hint = format!(
                    "the reference server exports `{name}` with metric_units: {}; `{other}` only with metric_units: {setting}",
                    units.as_str()
                );
                match spec.kind {
                    MetricKind::Histogram => {
                        for s in ["", "_bucket", "_sum", "_count"] {
                            e.alternatives.insert(
                                format!("{other}{s}"),
                                format!(
                                    "{hint} (select `{name}{}`)",
                                    if s.is_empty() { "_bucket" } else { s }
                                ),
                            );
                        }
                    }
                    _ => {
                        e.alternatives.insert(other.to_owned(), hint.clone());
                    }
                }
            }
        }
        e.add_synthetic();
        e
    }

    /// [`Exported::catalog`], plus the label values the reference server creates series for
    /// where they are a fixed vocabulary (`tier`, `requests_total`'s `status`, safety `stage`,
    /// `category` and `classifier`, warm-pool `result`, fault `kind`, `scheduler`,
    /// `has_controlnet`), as exhaustive: a matcher asking for another value can never match.
    /// Configured or open-ended values (`model`, `worker_id`, HTTP `status`, `method`,
    /// `endpoint`, `le`) stay unknown.
    pub fn catalog_with_values(units: MetricUnits) -> Exported {
        use reference_server::metrics::{
            FAULT_KINDS, HAS_CONTROLNET, IMAGE_GENERATION_STATUSES, REQUEST_STATUSES,
            SAFETY_CATEGORIES, SAFETY_CLASSIFIERS, SAFETY_STAGES, SCHEDULER, WARM_POOL_RESULTS,
        };
        let tiers: Vec<&str> = reference_server::types::Tier::ALL
            .iter()
            .map(|t| t.as_str())
            .collect();
        let mut e = Exported::catalog(units);
        for spec in CATALOG {
            for &label in spec.labels {
                let values: &[&str] = match (spec.name, label) {
                    (_, "tier") => tiers.as_slice(),
                    ("requests_total", "status") => REQUEST_STATUSES,
                    ("image_generation_total", "status") => IMAGE_GENERATION_STATUSES,
                    (_, "stage") => SAFETY_STAGES,
                    (_, "category") => SAFETY_CATEGORIES,
                    (_, "classifier") => SAFETY_CLASSIFIERS,
                    ("warm_pool_requests_total", "result") => WARM_POOL_RESULTS,
                    ("injected_faults_active", "kind") => FAULT_KINDS,
                    (_, "scheduler") => &[SCHEDULER],
                    (_, "has_controlnet") => &[HAS_CONTROLNET],
                    _ => continue,
                };
                let name = spec.exported_name(units);
                let series: Vec<String> = match spec.kind {
                    MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                        .iter()
                        .map(|s| format!("{name}{s}"))
                        .collect(),
                    _ => vec![name.to_owned()],
                };
                for s in series {
                    if let Some(info) = e.metrics.get_mut(&s) {
                        info.labels.insert(
                            label.to_owned(),
                            LabelValues::Exhaustive(
                                values.iter().map(|v| (*v).to_owned()).collect(),
                            ),
                        );
                    }
                }
            }
        }
        e
    }

    /// What a run's scraped store holds: every metric name with the labels and values its
    /// series carry, typed by the scrape's metadata; plus `ALERTS` and `ALERTS_FOR_STATE`.
    pub fn from_store(store: &SeriesStore) -> Exported {
        let mut e = Exported::empty(ExportedSource::Record);
        for (_, series) in store.iter() {
            let labels = series.labels();
            let Some(name) = labels.get(METRIC_NAME_LABEL) else {
                continue;
            };
            let info = e
                .metrics
                .entry(name.to_owned())
                .or_insert_with(|| MetricInfo {
                    kind: kind_of(store, name),
                    labels: BTreeMap::new(),
                    open: false,
                });
            for (k, v) in labels.iter() {
                if k == METRIC_NAME_LABEL {
                    continue;
                }
                match info
                    .labels
                    .entry(k.to_owned())
                    .or_insert_with(|| LabelValues::Seen(BTreeSet::new()))
                {
                    LabelValues::Seen(s) | LabelValues::Exhaustive(s) => {
                        s.insert(v.to_owned());
                    }
                    LabelValues::Unknown => {}
                }
            }
        }
        // A store written before any scrape succeeded still names its targets' `up`.
        e.add_synthetic();
        e
    }

    /// [`Exported::from_store`] of a run record's `series`; an error when the record has none
    /// or they do not read as a store.
    pub fn from_record(record: &reports::record::RunRecord) -> Result<Exported, String> {
        if record.series.is_null() {
            return Err("the record holds no scraped series (nothing was scraped)".into());
        }
        let store: SeriesStore = serde_json::from_value(record.series.clone())
            .map_err(|e| format!("the record's series do not read as a series store: {e}"))?;
        Ok(Exported::from_store(&store))
    }

    fn empty(source: ExportedSource) -> Exported {
        Exported {
            source,
            metrics: BTreeMap::new(),
            alternatives: BTreeMap::new(),
        }
    }

    fn add_synthetic(&mut self) {
        for name in SCRAPE_SERIES {
            self.metrics
                .entry(name.to_owned())
                .or_insert_with(|| MetricInfo {
                    kind: SeriesKind::Gauge,
                    labels: unknown_labels(TARGET_LABELS),
                    open: false,
                });
        }
        for (name, extra) in [
            ("ALERTS", &["alertname", "alertstate"][..]),
            ("ALERTS_FOR_STATE", &["alertname"][..]),
        ] {
            let info = self
                .metrics
                .entry(name.to_owned())
                .or_insert_with(|| MetricInfo {
                    kind: SeriesKind::Gauge,
                    labels: unknown_labels(extra.iter().copied()),
                    open: true,
                });
            // Each alert adds its own labels, and an alert that did not fire in a run still
            // exists: what a record saw of these is never all there is.
            info.open = true;
        }
    }

    /// Adds a series written by a recording rule: `labels` are its label names, with values
    /// when the rule sets them statically. Merges with what exists (several rules may record
    /// one name, each with its own `slo` label).
    pub fn add_recorded(&mut self, name: &str, labels: BTreeMap<String, LabelValues>, open: bool) {
        match self.metrics.get_mut(name) {
            Some(info) if info.kind == SeriesKind::Recorded => {
                info.open |= open;
                // A label only some rules produce has no exhaustive value list.
                for (k, v) in info.labels.iter_mut() {
                    if !labels.contains_key(k) {
                        *v = LabelValues::Unknown;
                    }
                }
                for (k, v) in labels {
                    match info.labels.get_mut(&k) {
                        Some(have) => have.merge(v),
                        None => {
                            info.labels.insert(k, LabelValues::Unknown);
                        }
                    }
                }
            }
            // Already scraped (a record of a run whose rules wrote into the store): the scraped
            // labels are facts; the rule's are added.
            Some(info) => {
                info.open |= open;
                for (k, v) in labels {
                    info.labels.entry(k).or_insert(v);
                }
            }
            None => {
                self.metrics.insert(
                    name.to_owned(),
                    MetricInfo {
                        kind: SeriesKind::Recorded,
                        labels,
                        open,
                    },
                );
            }
        }
    }
}

/// The kind of sample name `name` from the store's metadata.
fn kind_of(store: &SeriesStore, name: &str) -> SeriesKind {
    let Some(m) = store.metadata(name) else {
        return SeriesKind::Untyped;
    };
    let suffix = name.strip_prefix(m.family.as_str()).unwrap_or("");
    match (m.kind, suffix) {
        (MetricType::Counter, _) => SeriesKind::Counter,
        (MetricType::Gauge, _) => SeriesKind::Gauge,
        (MetricType::Histogram, "_bucket") => SeriesKind::Bucket,
        (MetricType::Histogram, _) => SeriesKind::HistogramSumOrCount,
        (MetricType::Summary, "_sum" | "_count") => SeriesKind::SummarySumOrCount,
        (MetricType::Summary, _) => SeriesKind::SummaryQuantile,
        (MetricType::Untyped, _) => SeriesKind::Untyped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_expands_histograms_and_adds_target_labels() {
        let e = Exported::catalog(MetricUnits::Base);
        let b = &e.metrics["generation_time_seconds_bucket"];
        assert_eq!(b.kind, SeriesKind::Bucket);
        assert!(b.labels.contains_key("le") && b.labels.contains_key("tier"));
        assert!(b.labels.contains_key("job") && b.labels.contains_key("instance"));
        assert!(!e.metrics["generation_time_seconds_count"]
            .labels
            .contains_key("le"));
        assert!(!e.metrics.contains_key("generation_time_seconds"));
        assert_eq!(e.metrics["queue_depth"].kind, SeriesKind::Gauge);
        assert_eq!(e.metrics["requests_total"].kind, SeriesKind::Counter);
        assert!(e.metrics.contains_key("up") && e.metrics.contains_key("ALERTS"));
        assert!(e.metrics.contains_key("diffusion_step_time_seconds_bucket"));
        assert!(e.alternatives["diffusion_step_time_ms_bucket"].contains("seed_ms"));
        let ms = Exported::catalog(MetricUnits::SeedMs);
        assert!(ms.metrics.contains_key("diffusion_step_time_ms_bucket"));
        assert!(ms
            .alternatives
            .contains_key("diffusion_step_time_seconds_count"));
    }

    #[test]
    fn catalog_with_values_knows_the_fixed_vocabularies() {
        let e = Exported::catalog_with_values(MetricUnits::Base);
        let values = |m: &str, l: &str| match &e.metrics[m].labels[l] {
            LabelValues::Exhaustive(v) => v.iter().cloned().collect::<Vec<_>>(),
            other => panic!("{m}/{l}: {other:?}"),
        };
        assert_eq!(values("queue_depth", "tier"), ["fast", "relax", "turbo"]);
        assert!(values("requests_total", "status").contains(&"timeout".to_owned()));
        assert_eq!(
            values("safety_check_time_seconds_bucket", "stage"),
            ["post", "pre"]
        );
        assert_eq!(
            values("image_generation_total", "status"),
            ["error", "success"]
        );
        for (m, l) in [
            ("http_requests_total", "status"),
            ("requests_total", "model"),
            ("generation_time_seconds_bucket", "le"),
        ] {
            assert_eq!(e.metrics[m].labels[l], LabelValues::Unknown, "{m}/{l}");
        }
        // Only values are added: the same names and labels as the catalog.
        let plain = Exported::catalog(MetricUnits::Base);
        assert!(e.metrics.keys().eq(plain.metrics.keys()));
        assert!(e
            .metrics
            .iter()
            .all(|(k, i)| i.labels.keys().eq(plain.metrics[k].labels.keys())));
    }

    #[test]
    fn recorded_series_merge_their_static_labels() {
        let mut e = Exported::catalog(MetricUnits::Base);
        let one = |v: &str| {
            BTreeMap::from([(
                "slo".to_owned(),
                LabelValues::Exhaustive(BTreeSet::from([v.to_owned()])),
            )])
        };
        e.add_recorded("slo:x", one("a"), false);
        e.add_recorded("slo:x", one("b"), false);
        assert_eq!(
            e.metrics["slo:x"].labels["slo"],
            LabelValues::Exhaustive(BTreeSet::from(["a".to_owned(), "b".to_owned()]))
        );
        e.add_recorded("slo:x", BTreeMap::new(), false);
        assert_eq!(e.metrics["slo:x"].labels["slo"], LabelValues::Unknown);
    }
}
