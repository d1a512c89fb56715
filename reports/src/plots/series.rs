//! The scraped series of a record, read for plotting.
//!
//! The record keeps them opaque (`serde_json::Value`); the harness writes its store as
//! `{"retention_ms":..., "metadata":{...}, "series":[{"labels":{...}, "t":[t0, d1, ...],
//! "v":[...]}]}`: timestamps in ms from the run's start, delta-encoded; values are numbers or
//! `"NaN"`, `"+Inf"`, `"-Inf"`, `"stale"`. Reading is lenient: a series that does not have that
//! shape is skipped, never an error, so a plot shows what can be read.

use std::collections::BTreeMap;

/// One series: labels (with `__name__`) and samples as (ms from start, value). Non-numbers
/// (NaN, infinities, staleness markers) are kept as NaN so lines break there.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
}

impl Series {
    /// The value of label `name`, `""` when absent (as PromQL treats a missing label).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Every series of a record.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Store {
    series: Vec<Series>,
}

impl Store {
    /// Reads the record's `series` value; `null` or another shape gives an empty store.
    pub fn parse(v: &serde_json::Value) -> Store {
        let Some(list) = v.get("series").and_then(|s| s.as_array()) else {
            return Store::default();
        };
        Store {
            series: list.iter().filter_map(parse_one).collect(),
        }
    }

    /// Every series.
    pub fn all(&self) -> impl Iterator<Item = &Series> {
        self.series.iter()
    }

    /// The series named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series
            .iter()
            .filter(move |s| s.labels.get("__name__").is_some_and(|n| n == name))
    }

    /// Whether any series is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }

    /// The series named `name`, summed by the value of label `by` (as PromQL's
    /// `sum by (by) (name)` at each scrape): groups in label-value order, samples as
    /// (seconds from start, value). Series scraped together share timestamps, so samples are
    /// summed per timestamp; a NaN in any member makes that sum NaN (a gap, not a dip).
    pub fn sum_by(&self, name: &str, by: &str) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut groups: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
        for s in self.named(name) {
            let g = groups.entry(s.label(by).to_string()).or_default();
            for &(t, v) in &s.samples {
                *g.entry(t).or_insert(0.0) += v;
            }
        }
        groups
            .into_iter()
            .map(|(k, pts)| {
                let pts = pts
                    .into_iter()
                    .map(|(t, v)| (t as f64 / 1000.0, v))
                    .collect();
                (k, pts)
            })
            .collect()
    }
}

fn parse_one(v: &serde_json::Value) -> Option<Series> {
    let labels = v
        .get("labels")?
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let ts = v.get("t")?.as_array()?;
    let vs = v.get("v")?.as_array()?;
    if ts.len() != vs.len() {
        return None;
    }
    let mut t = 0i64;
    let mut samples = Vec::with_capacity(ts.len());
    for (d, v) in ts.iter().zip(vs) {
        t = t.saturating_add(d.as_i64()?);
        let v = match v {
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            // "+Inf"/"-Inf" cannot be drawn either; NaN breaks the line like a gap.
            _ => f64::NAN,
        };
        samples.push((t, v));
    }
    Some(Series { labels, samples })
}
