//! `Hist`: one HdrHistogram as it travels in a record. The histogram itself is kept in its
//! standard V2 + DEFLATE binary form (base64), so any HdrHistogram implementation can read it and
//! merging shards stays exact; a handful of summary numbers ride beside it so a reader can show
//! a table without decoding anything.

use super::RecordError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How histograms are built: the trackable range in microseconds and the precision.
///
/// Every histogram of one run uses one configuration, so merging is a plain addition of counts
/// (exact) rather than a re-bucketing (approximate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistConfig {
    /// Lowest discernible value, microseconds.
    pub lowest_us: u64,
    /// Highest trackable value, microseconds; larger values are clamped to it.
    pub highest_us: u64,
    /// Significant decimal digits kept (3: every value within 0.1%).
    pub significant_digits: u8,
}

impl Default for HistConfig {
    /// 1 µs to 1 h at 3 significant digits: covers a loopback round trip and the longest
    /// sensible request timeout without clamping, at 0.1% precision.
    fn default() -> Self {
        HistConfig {
            lowest_us: 1,
            highest_us: 3_600_000_000,
            significant_digits: 3,
        }
    }
}

impl HistConfig {
    /// A new empty histogram with this configuration.
    pub fn new_histogram(&self) -> Result<Histogram<u64>, RecordError> {
        Histogram::new_with_bounds(self.lowest_us, self.highest_us, self.significant_digits)
            .map_err(|e| RecordError::Histogram(format!("invalid histogram configuration: {e}")))
    }
}

/// A serialized HdrHistogram of microsecond values, with summary numbers in milliseconds that
/// were computed from it when it was written. The summary numbers are a convenience; `hdr` is the
/// truth (decode it for any other percentile, or to merge).
///
/// For an empty histogram `count` is 0 and every summary number is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hist {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value, ms (to the histogram's precision).
    pub min_ms: f64,
    /// Largest value, ms (to the histogram's precision).
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// 50th percentile, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// The histogram: HdrHistogram V2 + DEFLATE ("compressed") encoding, base64 (standard
    /// alphabet, padded), values in microseconds.
    pub hdr: String,
}

/// Microseconds to milliseconds, for display fields.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The quantiles the summary fields carry.
const QUANTILES: [f64; 5] = [0.50, 0.90, 0.95, 0.99, 0.999];

/// Summary numbers in microseconds, all zero for an empty histogram.
struct Summary {
    min: u64,
    max: u64,
    mean: f64,
    quantiles: [u64; 5],
}

impl Summary {
    /// One pass over the recorded buckets for every quantile and the mean, instead of one scan
    /// of the whole counts array per statistic: sealing a window encodes several histograms, and
    /// this keeps that cheap. Same definitions as `Histogram::value_at_quantile` (the highest
    /// value equivalent to the bucket reaching `ceil(q * count)`) and `Histogram::mean`.
    fn of(h: &Histogram<u64>) -> Summary {
        let total = h.len();
        let mut s = Summary {
            min: 0,
            max: 0,
            mean: 0.0,
            quantiles: [0; 5],
        };
        if total == 0 {
            return s;
        }
        let ranks = QUANTILES.map(|q| ((q * total as f64).ceil() as u64).max(1));
        let (mut next, mut seen) = (0, 0u64);
        for v in h.iter_recorded() {
            let value = v.value_iterated_to();
            let n = v.count_at_value();
            seen += n;
            // Accumulated exactly as `Histogram::mean` does, so the two agree to the bit.
            s.mean += h.median_equivalent(value) as f64 * n as f64 / total as f64;
            while next < ranks.len() && seen >= ranks[next] {
                s.quantiles[next] = value;
                next += 1;
            }
        }
        s.min = h.min();
        s.max = h.max();
        s
    }
}

impl Hist {
    /// Serializes `h` (values in microseconds) and computes the summary numbers.
    pub fn from_histogram(h: &Histogram<u64>) -> Result<Hist, RecordError> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| RecordError::Histogram(format!("cannot serialize histogram: {e:?}")))?;
        let s = Summary::of(h);
        Ok(Hist {
            count: h.len(),
            min_ms: ms(s.min),
            max_ms: ms(s.max),
            mean_ms: s.mean / 1000.0,
            p50_ms: ms(s.quantiles[0]),
            p90_ms: ms(s.quantiles[1]),
            p95_ms: ms(s.quantiles[2]),
            p99_ms: ms(s.quantiles[3]),
            p999_ms: ms(s.quantiles[4]),
            hdr: BASE64.encode(&bytes),
        })
    }

    /// An empty histogram of the given configuration.
    pub fn empty(config: &HistConfig) -> Result<Hist, RecordError> {
        Hist::from_histogram(&config.new_histogram()?)
    }

    /// Decodes the histogram back (values in microseconds).
    pub fn decode(&self) -> Result<Histogram<u64>, RecordError> {
        let bytes = BASE64
            .decode(self.hdr.as_bytes())
            .map_err(|e| RecordError::Histogram(format!("histogram is not valid base64: {e}")))?;
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| {
                RecordError::Histogram(format!(
                    "histogram is not a valid HdrHistogram V2 encoding: {e:?}"
                ))
            })
    }

    /// The value at quantile `q` (0..=1) in milliseconds, decoding the histogram; `None` when it
    /// is empty. Use this for percentiles the summary fields do not carry.
    pub fn quantile_ms(&self, q: f64) -> Result<Option<f64>, RecordError> {
        let h = self.decode()?;
        Ok((!h.is_empty()).then(|| ms(h.value_at_quantile(q))))
    }

    /// The histogram of both `self`'s and `other`'s values. Exact: histograms of one
    /// configuration merge by adding counts bucket by bucket, so merging shards gives the same
    /// histogram as recording every value into one.
    pub fn merge(&self, other: &Hist) -> Result<Hist, RecordError> {
        Hist::merge_all([self, other])
    }

    /// The histogram of the values of every one of `hists` (see [`Hist::merge`]). An error when
    /// `hists` is empty: there is then no configuration to build an empty histogram from.
    pub fn merge_all<'a, I>(hists: I) -> Result<Hist, RecordError>
    where
        I: IntoIterator<Item = &'a Hist>,
    {
        let mut acc: Option<Histogram<u64>> = None;
        for h in hists {
            let h = h.decode()?;
            match acc.as_mut() {
                None => acc = Some(h),
                Some(a) => {
                    // Growing the range instead of failing when shards were written with
                    // different highest values; with one configuration this never triggers.
                    a.auto(true);
                    a.add(&h).map_err(|e| {
                        RecordError::Histogram(format!("cannot merge histograms: {e:?}"))
                    })?;
                }
            }
        }
        match acc {
            Some(a) => Hist::from_histogram(&a),
            None => Err(RecordError::Histogram(
                "nothing to merge: no histograms given".into(),
            )),
        }
    }
}
