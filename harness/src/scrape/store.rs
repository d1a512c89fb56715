//! The in-memory time-series store the rule engine evaluates on: pure, time as `i64`
//! milliseconds.
//!
//! Series are identified by their full label set (including `__name__`), interned once and
//! addressed by a [`SeriesRef`]; samples are appended in time order. An inverted index (label
//! name -> value -> series) answers [`SeriesStore::select`] and the label listings lint needs.
//! [`SeriesStore::ingest_scrape`] applies one scrape as Prometheus does: `job`/`instance`
//! target labels (`honor_labels: false`), explicit timestamps honoured, the synthetic `up` and
//! `scrape_*` series, and staleness markers for series that disappeared.

use super::parse::{Exposition, MetricType, Sample};
use super::{Labels, METRIC_NAME_LABEL};
use serde::de::{self, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

/// The bit pattern of Prometheus' staleness marker, a NaN no arithmetic produces.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value (see [`STALE_NAN_BITS`]).
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (by bit pattern: ordinary NaNs are not stale).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A handle to one series in a [`SeriesStore`]; stable for the store's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesRef(pub u32);

impl SeriesRef {
    /// The position of the series in [`SeriesStore::iter`] order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One series: its labels (with `__name__`) and its samples in increasing time order.
///
/// Serialized compactly as `{"labels":{...},"t":[t0,d1,d2,...],"v":[...]}`: the first
/// timestamp, then the differences between consecutive timestamps (ms); values are JSON numbers
/// or the strings `"NaN"`, `"+Inf"`, `"-Inf"` and `"stale"` (the staleness marker).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    labels: Labels,
    /// Samples; those before `head` have aged out of the retention window and are invisible.
    samples: Vec<(i64, f64)>,
    head: usize,
}

impl Series {
    /// A series with the given labels and samples (which must be in strictly increasing time
    /// order: see [`SeriesStore::from_series`]).
    pub fn new(labels: Labels, samples: Vec<(i64, f64)>) -> Series {
        Series {
            labels,
            samples,
            head: 0,
        }
    }

    /// The labels, `__name__` included.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The samples `(t_ms, value)`, in increasing time order.
    pub fn samples(&self) -> &[(i64, f64)] {
        &self.samples[self.head..]
    }

    /// The latest sample.
    pub fn last(&self) -> Option<(i64, f64)> {
        self.samples().last().copied()
    }

    /// Hides samples older than `cutoff` ms; frees their memory once they are half the buffer.
    fn trim(&mut self, cutoff: i64) {
        let cut = self.samples().partition_point(|&(t, _)| t < cutoff);
        self.head += cut;
        if self.head > 0 && self.head * 2 >= self.samples.len() {
            self.samples.drain(..self.head);
            self.head = 0;
        }
    }
}

/// A sample refused because it is not after the series' latest one (Prometheus keeps the
/// first of two samples at one timestamp, and refuses out-of-order ones).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("sample at {t} ms is not after the series' latest sample at {last_ms} ms")]
pub struct OutOfOrder {
    /// The series.
    pub series: SeriesRef,
    /// The series' latest timestamp.
    pub last_ms: i64,
    /// The refused sample's timestamp.
    pub t: i64,
}

/// How a [`Matcher`] compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored RE2 syntax)
    Regex,
    /// `!~` (fully anchored RE2 syntax)
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// A label matcher as in a PromQL selector. A missing label matches as the empty string, so
/// `{a=""}` selects series without `a` and `{a!=""}` those with it.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name (`__name__` for the metric name).
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or the regular expression, as written.
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; regular expressions are anchored at both ends, and `.` matches newlines, as
    /// in Prometheus (`^(?s:VALUE)$`).
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, regex::Error> {
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?s:{value})$"))?)
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// `name!="value"`.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::NotEqual,
            value: value.into(),
            re: None,
        }
    }

    /// `name=~"pattern"`.
    pub fn regex(
        name: impl Into<String>,
        pattern: impl Into<String>,
    ) -> Result<Matcher, regex::Error> {
        Matcher::new(MatchOp::Regex, name, pattern)
    }

    /// `name!~"pattern"`.
    pub fn not_regex(
        name: impl Into<String>,
        pattern: impl Into<String>,
    ) -> Result<Matcher, regex::Error> {
        Matcher::new(MatchOp::NotRegex, name, pattern)
    }

    /// `__name__="metric"`.
    pub fn metric(name: impl Into<String>) -> Matcher {
        Matcher::equal(METRIC_NAME_LABEL, name)
    }

    /// Whether a label value (`""` for a missing label) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether a label set matches.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

/// What a scrape said about a metric name: its family, type and help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The family name (`foo` for `foo_bucket`).
    pub family: String,
    /// The family's type.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// The family's help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// The latest scrape state of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// The `job` label.
    pub job: String,
    /// The `instance` label.
    pub instance: String,
    /// Whether the latest scrape succeeded.
    pub up: bool,
    /// When the latest scrape happened (ms).
    pub last_scrape_ms: i64,
    /// How long it took.
    pub last_duration_seconds: f64,
    /// Why it failed, if it did.
    pub last_error: Option<String>,
    /// Scrapes so far.
    pub scrapes: u64,
    /// Failed scrapes so far.
    pub failures: u64,
}

/// What one [`SeriesStore::ingest_scrape`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Samples in the exposition (0 when the scrape failed).
    pub samples: usize,
    /// Series the store had not seen before.
    pub series_added: usize,
    /// Staleness markers written (series of the previous scrape absent from this one).
    pub stale_marked: usize,
    /// Samples refused as out of order or duplicate.
    pub out_of_order: usize,
}

#[derive(Debug, Clone)]
struct TargetState {
    health: TargetHealth,
    /// Series of the latest scrape without explicit timestamps, sorted: those to mark stale
    /// when they disappear.
    live: Vec<SeriesRef>,
}

/// The in-memory time-series database.
#[derive(Debug, Clone)]
pub struct SeriesStore {
    series: Vec<Series>,
    hasher: RandomState,
    /// Label-set hash -> the first series with that hash.
    by_hash: HashMap<u64, SeriesRef>,
    /// Series whose hash collided with an earlier series' (rare).
    collisions: HashMap<Labels, SeriesRef>,
    /// Label name -> value -> series having it, ascending.
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>,
    metadata: BTreeMap<String, Metadata>,
    targets: BTreeMap<(String, String), TargetState>,
    retention_ms: Option<i64>,
}

impl Default for SeriesStore {
    fn default() -> SeriesStore {
        SeriesStore::new()
    }
}

/// The synthetic per-scrape series, with their help, as Prometheus writes them.
const SYNTHETIC: [(&str, &str); 5] = [
    (
        "up",
        "1 if the target was scraped successfully, 0 otherwise.",
    ),
    ("scrape_duration_seconds", "Duration of the scrape."),
    (
        "scrape_samples_scraped",
        "Number of samples the target exposed.",
    ),
    (
        "scrape_samples_post_metric_relabeling",
        "Number of samples remaining after metric relabeling (no relabeling: as scraped).",
    ),
    (
        "scrape_series_added",
        "Number of series in this scrape that were new to the store.",
    ),
];

impl SeriesStore {
    /// An empty store that keeps every sample.
    pub fn new() -> SeriesStore {
        SeriesStore {
            series: Vec::new(),
            hasher: RandomState::new(),
            by_hash: HashMap::new(),
            collisions: HashMap::new(),
            postings: BTreeMap::new(),
            metadata: BTreeMap::new(),
            targets: BTreeMap::new(),
            retention_ms: None,
        }
    }

    /// An empty store that drops samples older than `retention` behind each append (and each
    /// scrape, for every series), so memory stays flat over long runs. Keep it at least the
    /// longest range or lookback the rules query.
    pub fn with_retention(retention: Duration) -> SeriesStore {
        let mut s = SeriesStore::new();
        s.retention_ms = Some(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        s
    }

    /// The retention window in ms, if any.
    pub fn retention_ms(&self) -> Option<i64> {
        self.retention_ms
    }

    /// A store holding `series` (labels must be distinct, samples strictly increasing in time).
    pub fn from_series(series: impl IntoIterator<Item = Series>) -> Result<SeriesStore, String> {
        let mut store = SeriesStore::new();
        for s in series {
            if let Some(w) = s.samples().windows(2).find(|w| w[0].0 >= w[1].0) {
                return Err(format!(
                    "series {}: timestamps not increasing ({} then {})",
                    s.labels, w[0].0, w[1].0
                ));
            }
            let mut labels = s.labels.clone();
            labels.drop_empty_values();
            if store.get_ref(&labels).is_some() {
                return Err(format!("series {labels} appears twice"));
            }
            let r = store.create(labels);
            store.series[r.index()].samples = s.samples().to_vec();
        }
        Ok(store)
    }

    /// The series for `labels` (empty values ignored), if it exists.
    pub fn get_ref(&self, labels: &Labels) -> Option<SeriesRef> {
        if labels.iter().any(|(_, v)| v.is_empty()) {
            let mut l = labels.clone();
            l.drop_empty_values();
            return self.lookup(&l, self.hasher.hash_one(&l));
        }
        self.lookup(labels, self.hasher.hash_one(labels))
    }

    fn lookup(&self, labels: &Labels, h: u64) -> Option<SeriesRef> {
        if let Some(&r) = self.by_hash.get(&h) {
            if self.series[r.index()].labels == *labels {
                return Some(r);
            }
        }
        self.collisions.get(labels).copied()
    }

    /// The series for `labels` (already without empty values), created when new.
    fn get_or_create(&mut self, labels: Labels) -> (SeriesRef, bool) {
        let h = self.hasher.hash_one(&labels);
        match self.lookup(&labels, h) {
            Some(r) => (r, false),
            None => (self.create_hashed(labels, h), true),
        }
    }

    fn create(&mut self, labels: Labels) -> SeriesRef {
        let h = self.hasher.hash_one(&labels);
        self.create_hashed(labels, h)
    }

    fn create_hashed(&mut self, labels: Labels, h: u64) -> SeriesRef {
        // More than 4 billion series would exhaust memory long before the index type.
        let r = SeriesRef(u32::try_from(self.series.len()).unwrap_or(u32::MAX));
        for (n, v) in labels.iter() {
            self.postings
                .entry(n.to_string())
                .or_default()
                .entry(v.to_string())
                .or_default()
                .push(r);
        }
        match self.by_hash.entry(h) {
            Entry::Occupied(_) => {
                self.collisions.insert(labels.clone(), r);
            }
            Entry::Vacant(e) => {
                e.insert(r);
            }
        }
        self.series.push(Series::new(labels, Vec::new()));
        r
    }

    /// Appends a sample to the series `labels` (created when new; labels with empty values are
    /// dropped, as PromQL treats them as absent). Refused when `t` is not after the series'
    /// latest sample.
    pub fn append(&mut self, mut labels: Labels, t: i64, v: f64) -> Result<SeriesRef, OutOfOrder> {
        labels.drop_empty_values();
        let (r, _) = self.get_or_create(labels);
        self.append_ref(r, t, v).map(|()| r)
    }

    /// Appends a sample to an existing series (see [`SeriesStore::append`]). A ref from another
    /// store is refused as out of order rather than panicking.
    pub fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<(), OutOfOrder> {
        let retention = self.retention_ms;
        let Some(s) = self.series.get_mut(r.index()) else {
            return Err(OutOfOrder {
                series: r,
                last_ms: i64::MAX,
                t,
            });
        };
        if let Some(&(last, _)) = s.samples.last() {
            if t <= last {
                return Err(OutOfOrder {
                    series: r,
                    last_ms: last,
                    t,
                });
            }
        }
        s.samples.push((t, v));
        if let Some(ret) = retention {
            s.trim(t.saturating_sub(ret));
        }
        Ok(())
    }

    /// Drops samples older than `now - retention` from every series (no-op without retention).
    pub fn trim(&mut self, now: i64) {
        if let Some(ret) = self.retention_ms {
            let cutoff = now.saturating_sub(ret);
            for s in &mut self.series {
                s.trim(cutoff);
            }
        }
    }

    /// Applies one scrape of target (`job`, `instance`) taken at `t` ms and lasting
    /// `duration`, as Prometheus does with `honor_labels: false` and `honor_timestamps: true`:
    ///
    /// - each sample gets `__name__`, `job` and `instance`; an exposed non-empty `job` or
    ///   `instance` is kept as `exported_job`/`exported_instance` (`exported_exported_...` if
    ///   that is taken too); samples with an explicit timestamp keep it;
    /// - series of this target in the previous scrape but absent from this one get a
    ///   staleness marker at `t`; when the scrape failed, all of them do;
    /// - `up` (1 or 0), `scrape_duration_seconds`, `scrape_samples_scraped`,
    ///   `scrape_samples_post_metric_relabeling` and `scrape_series_added` are appended at `t`;
    /// - metric metadata (family, type, help) is recorded, and with retention, old samples are
    ///   trimmed.
    ///
    /// Samples with explicit timestamps are not tracked for staleness (as in Prometheus).
    pub fn ingest_scrape<E: fmt::Display>(
        &mut self,
        t: i64,
        job: &str,
        instance: &str,
        result: Result<&Exposition, E>,
        duration: Duration,
    ) -> IngestReport {
        let key = (job.to_string(), instance.to_string());
        let prev = self
            .targets
            .get_mut(&key)
            .map(|s| std::mem::take(&mut s.live))
            .unwrap_or_default();
        let mut report = IngestReport::default();
        let mut live = Vec::new();
        let error = match result {
            Ok(exp) => {
                report.samples = exp.samples.len();
                for s in &exp.samples {
                    let labels = target_labels(s, job, instance);
                    let (r, created) = self.get_or_create(labels);
                    report.series_added += usize::from(created);
                    if self
                        .append_ref(r, s.timestamp_ms.unwrap_or(t), s.value)
                        .is_err()
                    {
                        report.out_of_order += 1;
                    }
                    if s.timestamp_ms.is_none() {
                        live.push(r);
                    }
                    let fam = exp.family_of(s);
                    if self.metadata.get(&s.name).is_none_or(|m| {
                        m.family != fam.name || m.kind != fam.kind || m.help != fam.help
                    }) {
                        self.metadata.insert(
                            s.name.clone(),
                            Metadata {
                                family: fam.name.clone(),
                                kind: fam.kind,
                                help: fam.help.clone(),
                            },
                        );
                    }
                }
                None
            }
            Err(e) => Some(e.to_string()),
        };
        live.sort_unstable();
        live.dedup();

        // Staleness: in `prev` but not in `live` (both sorted).
        let mut j = 0;
        for &r in &prev {
            while j < live.len() && live[j] < r {
                j += 1;
            }
            if j < live.len() && live[j] == r {
                continue;
            }
            if self.append_ref(r, t, stale_nan()).is_ok() {
                report.stale_marked += 1;
            }
        }

        let up = error.is_none();
        let secs = duration.as_secs_f64();
        let values = [
            if up { 1.0 } else { 0.0 },
            secs,
            report.samples as f64,
            report.samples as f64,
            report.series_added as f64,
        ];
        for ((name, help), value) in SYNTHETIC.iter().zip(values) {
            let labels = Labels::new([
                (METRIC_NAME_LABEL, *name),
                ("job", job),
                ("instance", instance),
            ]);
            let mut labels = labels;
            labels.drop_empty_values();
            let (r, _) = self.get_or_create(labels);
            if self.append_ref(r, t, value).is_err() {
                report.out_of_order += 1;
            }
            if !self.metadata.contains_key(*name) {
                self.metadata.insert(
                    name.to_string(),
                    Metadata {
                        family: name.to_string(),
                        kind: MetricType::Gauge,
                        help: Some(help.to_string()),
                    },
                );
            }
        }

        let state = self.targets.entry(key).or_insert_with(|| TargetState {
            health: TargetHealth {
                job: job.to_string(),
                instance: instance.to_string(),
                up,
                last_scrape_ms: t,
                last_duration_seconds: secs,
                last_error: None,
                scrapes: 0,
                failures: 0,
            },
            live: Vec::new(),
        });
        state.live = live;
        let h = &mut state.health;
        h.up = up;
        h.last_scrape_ms = t;
        h.last_duration_seconds = secs;
        h.scrapes += 1;
        h.failures += u64::from(!up);
        h.last_error = error;

        self.trim(t);
        report
    }

    /// The series matching every matcher, in [`SeriesRef`] order (all series for no matchers).
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut candidates: Option<Vec<SeriesRef>> = None;
        // Matchers that need the label present narrow the search through the index.
        for m in matchers.iter().filter(|m| !m.matches("")) {
            let mut set: Vec<SeriesRef> = match self.postings.get(&m.name) {
                None => Vec::new(),
                Some(values) => match m.op {
                    MatchOp::Equal => values.get(&m.value).cloned().unwrap_or_default(),
                    _ => {
                        // Each series has one value per name, so the lists are disjoint.
                        let mut v: Vec<SeriesRef> = values
                            .iter()
                            .filter(|(val, _)| m.matches(val))
                            .flat_map(|(_, refs)| refs.iter().copied())
                            .collect();
                        v.sort_unstable();
                        v
                    }
                },
            };
            if let Some(c) = candidates {
                set = intersect(&c, &set);
            }
            if set.is_empty() {
                return set;
            }
            candidates = Some(set);
        }
        let filter = |r: &SeriesRef| {
            let l = &self.series[r.index()].labels;
            matchers.iter().all(|m| m.matches_labels(l))
        };
        match candidates {
            Some(c) => c.into_iter().filter(filter).collect(),
            None => (0..self.series.len())
                .map(|i| SeriesRef(i as u32))
                .filter(filter)
                .collect(),
        }
    }

    /// The series behind a ref.
    pub fn series(&self, r: SeriesRef) -> Option<&Series> {
        self.series.get(r.index())
    }

    /// The labels of a series (`__name__` included).
    pub fn labels(&self, r: SeriesRef) -> Option<&Labels> {
        self.series(r).map(|s| &s.labels)
    }

    /// The samples of series `r` with `from_exclusive < t <= to_inclusive`, by binary search.
    pub fn samples_in(
        &self,
        r: SeriesRef,
        from_exclusive: i64,
        to_inclusive: i64,
    ) -> &[(i64, f64)] {
        let Some(s) = self.series(r) else {
            return &[];
        };
        let s = s.samples();
        let lo = s.partition_point(|&(t, _)| t <= from_exclusive);
        let hi = s.partition_point(|&(t, _)| t <= to_inclusive);
        if lo < hi {
            &s[lo..hi]
        } else {
            &[]
        }
    }

    /// Every series with its ref, in ref order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesRef, &Series)> {
        self.series
            .iter()
            .enumerate()
            .map(|(i, s)| (SeriesRef(i as u32), s))
    }

    /// The number of series (including those whose samples all aged out).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The number of samples held (visible ones: within retention).
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples().len()).sum()
    }

    /// The number of sample slots allocated, for checking that memory stays bounded.
    pub fn sample_capacity(&self) -> usize {
        self.series.iter().map(|s| s.samples.capacity()).sum()
    }

    /// Every metric name, sorted.
    pub fn metric_names(&self) -> Vec<&str> {
        self.label_values(METRIC_NAME_LABEL)
    }

    /// Every label name (`__name__` included), sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings.keys().map(String::as_str).collect()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        self.postings
            .get(name)
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The label names series of metric `metric` carry (`__name__` included), sorted.
    pub fn label_names_of(&self, metric: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .postings
            .get(METRIC_NAME_LABEL)
            .and_then(|v| v.get(metric))
            .into_iter()
            .flatten()
            .flat_map(|r| self.series[r.index()].labels.iter().map(|(n, _)| n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// What scrapes said about metric name `metric` (a sample name: `foo_bucket` gives the
    /// histogram `foo`).
    pub fn metadata(&self, metric: &str) -> Option<&Metadata> {
        self.metadata.get(metric)
    }

    /// Metadata for every scraped metric name.
    pub fn all_metadata(&self) -> &BTreeMap<String, Metadata> {
        &self.metadata
    }

    /// The latest scrape state of every target, by job then instance.
    pub fn targets(&self) -> impl Iterator<Item = &TargetHealth> {
        self.targets.values().map(|s| &s.health)
    }
}

/// The labels a scraped sample is stored under (see [`SeriesStore::ingest_scrape`]).
fn target_labels(s: &Sample, job: &str, instance: &str) -> Labels {
    let mut l = s.labels.clone();
    for (name, value) in [("job", job), ("instance", instance)] {
        if l.get(name).is_some_and(|v| !v.is_empty()) {
            let exposed = l.remove(name).unwrap_or_default();
            let mut new_name = format!("exported_{name}");
            while l.get(&new_name).is_some_and(|v| !v.is_empty()) {
                new_name = format!("exported_{new_name}");
            }
            l.set(new_name, exposed);
        }
        l.set(name, value);
    }
    l.set(METRIC_NAME_LABEL, s.name.as_str());
    l.drop_empty_values();
    l
}

fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

// ---- serialization ----

/// A value as JSON allows: finite numbers as numbers, the rest as strings.
struct JsonValue(f64);

impl Serialize for JsonValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if is_stale(v) {
            s.serialize_str("stale")
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonValue, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"+Inf\", \"-Inf\" or \"stale\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
                Ok(JsonValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonValue, E> {
                Ok(JsonValue(match v {
                    "stale" => stale_nan(),
                    "NaN" => f64::NAN,
                    "+Inf" | "Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    _ => return Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// Timestamps as the first one, then differences (wrapping, so any i64 round-trips).
struct DeltaTimes<'a>(&'a [(i64, f64)]);

impl Serialize for DeltaTimes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut prev = 0i64;
        s.collect_seq(self.0.iter().map(|&(t, _)| {
            let d = t.wrapping_sub(prev);
            prev = t;
            d
        }))
    }
}

struct Values<'a>(&'a [(i64, f64)]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(_, v)| JsonValue(v)))
    }
}

impl Serialize for Series {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let samples = self.samples();
        let mut st = s.serialize_struct("Series", 3)?;
        st.serialize_field("labels", &self.labels)?;
        st.serialize_field("t", &DeltaTimes(samples))?;
        st.serialize_field("v", &Values(samples))?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Series, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Repr {
            labels: Labels,
            t: Vec<i64>,
            v: Vec<JsonValue>,
        }
        let r = Repr::deserialize(d)?;
        if r.t.len() != r.v.len() {
            return Err(de::Error::custom(format!(
                "series {}: {} timestamps but {} values",
                r.labels,
                r.t.len(),
                r.v.len()
            )));
        }
        let mut t = 0i64;
        let mut samples: Vec<(i64, f64)> = Vec::with_capacity(r.t.len());
        for (i, (d, v)) in r.t.into_iter().zip(r.v).enumerate() {
            t = t.wrapping_add(d);
            if samples.last().is_some_and(|&(prev, _)| t <= prev) {
                return Err(de::Error::custom(format!(
                    "series {}: timestamp {i} (delta {d}) is not after the one before",
                    r.labels
                )));
            }
            samples.push((t, v.0));
        }
        Ok(Series::new(r.labels, samples))
    }
}

/// The store's serialized form: retention, metadata and series (target scrape state is not
/// kept: a deserialized store is for reading).
#[derive(Serialize)]
struct StoreOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_ms: Option<i64>,
    metadata: &'a BTreeMap<String, Metadata>,
    series: &'a [Series],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreIn {
    #[serde(default)]
    retention_ms: Option<i64>,
    #[serde(default)]
    metadata: BTreeMap<String, Metadata>,
    series: Vec<Series>,
}

impl Serialize for SeriesStore {
    /// `{"retention_ms":..., "metadata":{...}, "series":[...]}`; see [`Series`] for the series.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoreOut {
            retention_ms: self.retention_ms,
            metadata: &self.metadata,
            series: &self.series,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SeriesStore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SeriesStore, D::Error> {
        let i = StoreIn::deserialize(d)?;
        let mut store = SeriesStore::from_series(i.series).map_err(de::Error::custom)?;
        store.retention_ms = i.retention_ms;
        store.metadata = i.metadata;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied())
    }

    fn values(store: &SeriesStore, r: SeriesRef) -> Vec<(i64, f64)> {
        store.series(r).unwrap().samples().to_vec()
    }

    fn one(store: &SeriesStore, matchers: &[Matcher]) -> SeriesRef {
        let v = store.select(matchers);
        assert_eq!(v.len(), 1, "{matchers:?} -> {v:?}");
        v[0]
    }

    #[test]
    fn stale_nan_is_a_distinct_nan() {
        let s = stale_nan();
        assert!(s.is_nan());
        assert!(is_stale(s));
        assert!(!is_stale(f64::NAN));
        assert!(!is_stale(0.0));
        assert_eq!(s.to_bits(), 0x7ff0000000000002);
    }

    #[test]
    fn append_interns_and_orders() {
        let mut s = SeriesStore::new();
        let a = s
            .append(l(&[("__name__", "m"), ("x", "1")]), 10, 1.0)
            .unwrap();
        let b = s
            .append(l(&[("x", "1"), ("__name__", "m"), ("e", "")]), 20, 2.0)
            .unwrap();
        assert_eq!(a, b, "same labels (empty value ignored), same series");
        assert_eq!(s.series_count(), 1);
        let e = s.append(l(&[("__name__", "m"), ("x", "1")]), 20, 3.0);
        assert_eq!(
            e,
            Err(OutOfOrder {
                series: a,
                last_ms: 20,
                t: 20
            })
        );
        assert!(s
            .append(l(&[("__name__", "m"), ("x", "1")]), 5, 3.0)
            .is_err());
        assert_eq!(values(&s, a), vec![(10, 1.0), (20, 2.0)]);
        assert_eq!(s.get_ref(&l(&[("__name__", "m"), ("x", "1")])), Some(a));
        assert_eq!(s.get_ref(&l(&[("__name__", "m")])), None);
        assert!(s.append_ref(SeriesRef(99), 1, 1.0).is_err());
        assert!(s.samples_in(SeriesRef(99), 0, 100).is_empty());
    }

    #[test]
    fn samples_in_is_left_open_right_closed() {
        let mut s = SeriesStore::new();
        let r = s.append(l(&[("__name__", "m")]), 10, 1.0).unwrap();
        for t in [20, 30, 40] {
            s.append_ref(r, t, t as f64).unwrap();
        }
        let ts = |a, b| {
            s.samples_in(r, a, b)
                .iter()
                .map(|x| x.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(ts(10, 30), vec![20, 30]);
        assert_eq!(ts(9, 10), vec![10]);
        assert_eq!(ts(40, 100), Vec::<i64>::new());
        assert_eq!(ts(i64::MIN, i64::MAX), vec![10, 20, 30, 40]);
        assert_eq!(ts(35, 20), Vec::<i64>::new());
    }

    #[test]
    fn select_with_every_matcher_kind() {
        let mut s = SeriesStore::new();
        let mk = |s: &mut SeriesStore, pairs: &[(&str, &str)]| s.append(l(pairs), 1, 1.0).unwrap();
        let a = mk(
            &mut s,
            &[("__name__", "req_total"), ("tier", "fast"), ("code", "200")],
        );
        let b = mk(
            &mut s,
            &[
                ("__name__", "req_total"),
                ("tier", "turbo"),
                ("code", "500"),
            ],
        );
        let c = mk(&mut s, &[("__name__", "req_total"), ("code", "200")]);
        let d = mk(&mut s, &[("__name__", "queue_depth"), ("tier", "fast")]);
        let e = mk(&mut s, &[("__name__", "odd"), ("v", "a\nb")]);
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        use MatchOp::*;
        assert_eq!(s.select(&[Matcher::metric("req_total")]), vec![a, b, c]);
        assert_eq!(
            s.select(&[Matcher::metric("req_total"), m(Equal, "tier", "fast")]),
            vec![a]
        );
        assert_eq!(
            s.select(&[Matcher::metric("req_total"), m(NotEqual, "tier", "fast")]),
            vec![b, c]
        );
        assert_eq!(
            s.select(&[Matcher::metric("req_total"), m(Equal, "tier", "")]),
            vec![c]
        );
        assert_eq!(s.select(&[m(NotEqual, "tier", "")]), vec![a, b, d]);
        assert_eq!(s.select(&[m(Regex, "__name__", "req_.*")]), vec![a, b, c]);
        assert_eq!(
            s.select(&[m(Regex, "__name__", "req")]),
            Vec::<SeriesRef>::new(),
            "anchored"
        );
        assert_eq!(s.select(&[m(Regex, "tier", "fa.*|tur.o")]), vec![a, b, d]);
        assert_eq!(
            s.select(&[Matcher::metric("req_total"), m(NotRegex, "code", "2..")]),
            vec![b]
        );
        assert_eq!(
            s.select(&[Matcher::metric("req_total"), m(Regex, "tier", "fast|")]),
            vec![a, c],
            "a regex matching the empty string also matches a missing label"
        );
        assert_eq!(
            s.select(&[m(Regex, "v", "a.b")]),
            vec![e],
            "dot matches newline"
        );
        assert_eq!(s.select(&[m(Regex, "nope", ".+")]), Vec::<SeriesRef>::new());
        assert_eq!(s.select(&[m(Regex, "nope", ".*")]).len(), 5);
        assert_eq!(s.select(&[]).len(), 5);
        assert!(Matcher::regex("a", "(").is_err());
        assert_eq!(m(NotRegex, "code", "2..").to_string(), "code!~\"2..\"");
    }

    #[test]
    fn listings() {
        let mut s = SeriesStore::new();
        s.append(l(&[("__name__", "b_total"), ("tier", "fast")]), 1, 1.0)
            .unwrap();
        s.append(l(&[("__name__", "a"), ("model", "x")]), 1, 1.0)
            .unwrap();
        s.append(
            l(&[("__name__", "b_total"), ("tier", "turbo"), ("z", "1")]),
            1,
            1.0,
        )
        .unwrap();
        assert_eq!(s.metric_names(), vec!["a", "b_total"]);
        assert_eq!(s.label_names(), vec!["__name__", "model", "tier", "z"]);
        assert_eq!(s.label_values("tier"), vec!["fast", "turbo"]);
        assert!(s.label_values("none").is_empty());
        assert_eq!(s.label_names_of("b_total"), vec!["__name__", "tier", "z"]);
        assert!(s.label_names_of("missing").is_empty());
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn ingest_adds_target_labels_up_and_staleness() {
        let mut s = SeriesStore::new();
        let first = parse(
            "# HELP req_total Requests.\n# TYPE req_total counter\n\
             req_total{tier=\"fast\",job=\"inner\"} 3\n\
             req_total{tier=\"turbo\",job=\"inner\",exported_job=\"x\"} 4\n\
             # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 1\nlat_count 2\n\
             ts_metric 7 123\n",
        )
        .unwrap();
        let r = s.ingest_scrape(
            T0,
            "api",
            "h:1",
            Ok::<_, String>(&first),
            Duration::from_millis(12),
        );
        assert_eq!(
            r,
            IngestReport {
                samples: 6,
                series_added: 6,
                stale_marked: 0,
                out_of_order: 0
            }
        );
        let fast = one(
            &s,
            &[Matcher::metric("req_total"), Matcher::equal("tier", "fast")],
        );
        assert_eq!(
            s.labels(fast).unwrap(),
            &l(&[
                ("__name__", "req_total"),
                ("exported_job", "inner"),
                ("instance", "h:1"),
                ("job", "api"),
                ("tier", "fast")
            ])
        );
        let turbo = one(&s, &[Matcher::equal("tier", "turbo")]);
        assert_eq!(
            s.labels(turbo).unwrap().get("exported_exported_job"),
            Some("inner")
        );
        assert_eq!(s.labels(turbo).unwrap().get("exported_job"), Some("x"));
        let up = one(&s, &[Matcher::metric("up"), Matcher::equal("job", "api")]);
        assert_eq!(values(&s, up), vec![(T0, 1.0)]);
        let dur = one(&s, &[Matcher::metric("scrape_duration_seconds")]);
        assert_eq!(values(&s, dur), vec![(T0, 0.012)]);
        let n = one(&s, &[Matcher::metric("scrape_samples_scraped")]);
        assert_eq!(values(&s, n), vec![(T0, 6.0)]);
        let ts = one(&s, &[Matcher::metric("ts_metric")]);
        assert_eq!(
            values(&s, ts),
            vec![(123, 7.0)],
            "explicit timestamp honoured"
        );
        assert_eq!(s.metadata("lat_bucket").unwrap().family, "lat");
        assert_eq!(
            s.metadata("lat_bucket").unwrap().kind,
            MetricType::Histogram
        );
        assert_eq!(
            s.metadata("req_total").unwrap().help.as_deref(),
            Some("Requests.")
        );
        assert_eq!(s.metadata("up").unwrap().kind, MetricType::Gauge);
        assert_eq!(s.metadata("ts_metric").unwrap().kind, MetricType::Untyped);

        // Second scrape: the turbo series and the histogram's count are gone.
        let second = parse(
            "# TYPE req_total counter\nreq_total{tier=\"fast\",job=\"inner\"} 5\n\
             # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 3\nlat_sum 2\n",
        )
        .unwrap();
        let r = s.ingest_scrape(
            T0 + 1000,
            "api",
            "h:1",
            Ok::<_, String>(&second),
            Duration::ZERO,
        );
        assert_eq!(r.stale_marked, 2, "{r:?}");
        assert_eq!(r.series_added, 0);
        let v = values(&s, turbo);
        assert_eq!(v[0], (T0, 4.0));
        assert_eq!(v[1].0, T0 + 1000);
        assert!(is_stale(v[1].1));
        assert_eq!(values(&s, fast), vec![(T0, 3.0), (T0 + 1000, 5.0)]);
        assert_eq!(
            values(&s, ts),
            vec![(123, 7.0)],
            "explicit timestamps get no markers"
        );

        // Failed scrape: up=0 and every remaining series gets a marker, once.
        let r = s.ingest_scrape(
            T0 + 2000,
            "api",
            "h:1",
            Err::<&Exposition, _>("connection refused"),
            Duration::from_millis(3),
        );
        assert_eq!(r.stale_marked, 3, "{r:?}");
        assert_eq!(r.samples, 0);
        assert!(is_stale(values(&s, fast)[2].1));
        assert_eq!(
            values(&s, up),
            vec![(T0, 1.0), (T0 + 1000, 1.0), (T0 + 2000, 0.0)]
        );
        let h = s.targets().next().unwrap();
        assert!(!h.up);
        assert_eq!(h.last_error.as_deref(), Some("connection refused"));
        assert_eq!((h.scrapes, h.failures), (3, 1));
        let r = s.ingest_scrape(
            T0 + 3000,
            "api",
            "h:1",
            Err::<&Exposition, _>("again"),
            Duration::ZERO,
        );
        assert_eq!(r.stale_marked, 0);
        assert_eq!(values(&s, turbo).len(), 2, "one marker only");

        // Back: up=1, the series resumes after its marker.
        let r = s.ingest_scrape(
            T0 + 4000,
            "api",
            "h:1",
            Ok::<_, String>(&second),
            Duration::ZERO,
        );
        assert_eq!(r.stale_marked, 0);
        assert_eq!(values(&s, up).last(), Some(&(T0 + 4000, 1.0)));
        assert_eq!(values(&s, fast).last(), Some(&(T0 + 4000, 5.0)));
        assert!(s.targets().next().unwrap().up);

        // Another target's staleness is its own.
        s.ingest_scrape(
            T0 + 4000,
            "api",
            "h:2",
            Ok::<_, String>(&first),
            Duration::ZERO,
        );
        let r = s.ingest_scrape(
            T0 + 5000,
            "api",
            "h:1",
            Ok::<_, String>(&second),
            Duration::ZERO,
        );
        assert_eq!(r.stale_marked, 0);
        assert_eq!(s.targets().count(), 2);
    }

    #[test]
    fn duplicate_samples_in_one_scrape_keep_the_first() {
        let mut s = SeriesStore::new();
        let e = parse("m 1\nm 2\n").unwrap();
        let r = s.ingest_scrape(T0, "j", "i", Ok::<_, String>(&e), Duration::ZERO);
        assert_eq!(r.out_of_order, 1);
        let m = one(&s, &[Matcher::metric("m")]);
        assert_eq!(values(&s, m), vec![(T0, 1.0)]);
    }

    #[test]
    fn retention_keeps_memory_bounded() {
        let mut s = SeriesStore::with_retention(Duration::from_secs(60));
        let exp = parse("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2\n").unwrap();
        for i in 0..20_000i64 {
            s.ingest_scrape(i * 1000, "j", "i", Ok::<_, String>(&exp), Duration::ZERO);
        }
        // 7 series (2 scraped + 5 synthetic), each within 60 s at 1 s: at most 61 samples.
        assert_eq!(s.series_count(), 7);
        assert!(s.sample_count() <= 7 * 61, "{}", s.sample_count());
        assert!(s.sample_capacity() <= 7 * 256, "{}", s.sample_capacity());
        let a = one(&s, &[Matcher::equal("x", "1")]);
        let v = s.series(a).unwrap().samples();
        assert_eq!(v.first().unwrap().0, 19_999_000 - 60_000);
        assert_eq!(v.last().unwrap().0, 19_999_000);
        // A series that stopped receiving samples is emptied by later scrapes' trims.
        let mut s2 = SeriesStore::with_retention(Duration::from_secs(10));
        let gone = s2.append(l(&[("__name__", "gone")]), 0, 1.0).unwrap();
        s2.trim(20_000);
        assert!(s2.series(gone).unwrap().samples().is_empty());
        let plain = SeriesStore::new();
        assert_eq!(plain.retention_ms(), None);
    }

    #[test]
    fn serde_round_trip_is_compact_and_exact() {
        let mut s = SeriesStore::new();
        let r = s
            .append(l(&[("__name__", "m"), ("a", "q\"")]), T0, 1.5)
            .unwrap();
        for (t, v) in [
            (T0 + 1000, f64::NAN),
            (T0 + 2000, f64::INFINITY),
            (T0 + 3000, f64::NEG_INFINITY),
            (T0 + 4000, stale_nan()),
            (T0 + 5000, -0.1),
            (T0 + 6000, 1e300),
        ] {
            s.append_ref(r, t, v).unwrap();
        }
        s.append(l(&[("__name__", "empty")]), i64::MIN, 0.0)
            .unwrap();
        s.append(l(&[("__name__", "empty")]), i64::MAX, 0.0)
            .unwrap();
        let e = parse("# HELP m The m.\n# TYPE m gauge\nm 1\n").unwrap();
        s.ingest_scrape(T0 + 7000, "j", "i", Ok::<_, String>(&e), Duration::ZERO);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#"{"labels":{"__name__":"m","a":"q\""},"t":[1700000000000,1000,1000,1000,1000,1000,1000],"v":[1.5,"NaN","+Inf","-Inf","stale",-0.1,1e+300]}"#),
            "{json}"
        );
        let back: SeriesStore = serde_json::from_str(&json).unwrap();
        assert_eq!(back.series_count(), s.series_count());
        for ((ra, a), (rb, b)) in s.iter().zip(back.iter()) {
            assert_eq!(ra, rb);
            assert_eq!(a.labels(), b.labels());
            let bits = |x: &Series| {
                x.samples()
                    .iter()
                    .map(|&(t, v)| {
                        (
                            t,
                            if v.is_nan() && !is_stale(v) {
                                0
                            } else {
                                v.to_bits()
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(b));
        }
        assert!(back.series(r).unwrap().samples()[1].1.is_nan());
        assert!(is_stale(back.series(r).unwrap().samples()[4].1));
        assert_eq!(back.metadata("m").unwrap().help.as_deref(), Some("The m."));
        assert_eq!(back.select(&[Matcher::metric("m")]).len(), 2);

        for bad in [
            r#"{"series":[{"labels":{},"t":[1,2],"v":[1]}]}"#,
            r#"{"series":[{"labels":{},"t":[1,0],"v":[1,2]}]}"#,
            r#"{"series":[{"labels":{},"t":[1],"v":["x"]}]}"#,
            r#"{"series":[{"labels":{"a":"1"},"t":[],"v":[]},{"labels":{"a":"1"},"t":[],"v":[]}]}"#,
        ] {
            assert!(serde_json::from_str::<SeriesStore>(bad).is_err(), "{bad}");
        }
    }
}
