//! Scraping a target's Prometheus metrics into an in-memory time-series store.
//!
//! Three layers, two of them pure:
//! - [`mod@parse`]: the Prometheus text exposition format 0.0.4 into an [`Exposition`];
//! - [`store`]: the [`SeriesStore`] the rule engine evaluates on (time as `i64` milliseconds),
//!   with Prometheus' scrape semantics (`job`/`instance` labels, the synthetic `up` series,
//!   staleness markers) in [`SeriesStore::ingest_scrape`];
//! - [`scraper`]: the I/O edge, a [`Scraper`] reading one target's `/metrics` over HTTP/1 on an
//!   interval into a shared store.

pub mod parse;
pub mod scraper;
pub mod store;

pub use parse::{parse, Exposition, Family, MetricType, ParseError, Sample};
pub use scraper::{ScrapeError, ScrapeStats, Scraper};
pub use store::{
    is_stale, stale_nan, IngestReport, MatchOp, Matcher, Metadata, OutOfOrder, Series, SeriesRef,
    SeriesStore, TargetHealth, STALE_NAN_BITS,
};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The label name that holds a series' metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// A label set: `(name, value)` pairs sorted by name, names unique.
///
/// The order is byte order of the names, as Prometheus sorts labels, so equal sets compare,
/// hash and print equal. Serialized as a JSON object (`{"job":"api","tier":"fast"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    /// A label set from pairs in any order; when a name repeats, the last value wins.
    pub fn new<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Labels
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        // Stable sort keeps the input order among equal names; keep the last of each run.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (n, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == n => last.1 = val,
                _ => out.push((n, val)),
            }
        }
        Labels(out)
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Whether label `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The metric name (the `__name__` label), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// Sets label `name` to `value`, replacing any previous value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Removes label `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => Some(self.0.remove(i).1),
            Err(_) => None,
        }
    }

    /// This set without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| n != METRIC_NAME_LABEL)
                .cloned()
                .collect(),
        )
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The pairs as a slice, sorted by name.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, consumed.
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
    }

    /// Drops labels whose value is empty (in PromQL an empty value is the same as no label).
    pub(crate) fn drop_empty_values(&mut self) {
        self.0.retain(|(_, v)| !v.is_empty());
    }

    /// Builds from pairs already sorted by name with unique names (checked in debug builds).
    pub(crate) fn from_sorted_unique(v: Vec<(String, String)>) -> Labels {
        debug_assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        Labels(v)
    }
}

impl fmt::Display for Labels {
    /// PromQL notation: `name{a="1", b="2"}`, values escaped as in the exposition format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Labels {
        Labels::new(iter)
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (n, v) in &self.0 {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut v: Vec<(String, String)> = Vec::new();
                while let Some((n, val)) = map.next_entry::<String, String>()? {
                    v.push((n, val));
                }
                v.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate label name {:?}",
                        w[0].0
                    )));
                }
                Ok(Labels(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_dedupe_and_lookup() {
        let mut l = Labels::new([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        l.set("__name__", "m");
        l.set("a", "x");
        assert_eq!(l.metric_name(), Some("m"));
        assert_eq!(l.to_string(), "m{a=\"x\", b=\"3\"}");
        assert_eq!(l.remove("a").as_deref(), Some("x"));
        assert_eq!(l.without_metric_name(), Labels::new([("b", "3")]));
    }

    #[test]
    fn labels_serde_as_object() {
        let l = Labels::new([("z", "q\"1"), ("a", "")]);
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(j, r#"{"a":"","z":"q\"1"}"#);
        let back: Labels = serde_json::from_str(r#"{"z":"q\"1","a":""}"#).unwrap();
        assert_eq!(back, l);
        assert!(serde_json::from_str::<Labels>(r#"{"a":"1","a":"2"}"#).is_err());
    }
}
