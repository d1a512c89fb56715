//! Handles of the six millisecond histograms: observations go in as milliseconds (or a
//! [`Duration`]) and come out in the unit [`MetricUnits`] exports, so call sites never convert.

use std::time::Duration;

use prometheus::{Histogram, HistogramVec};

use super::MetricUnits;

/// A labelled duration histogram registered under the name and buckets `units` selects.
#[derive(Clone)]
pub struct DurationHistogramVec {
    inner: HistogramVec,
    units: MetricUnits,
}

impl DurationHistogramVec {
    pub(super) fn new(inner: HistogramVec, units: MetricUnits) -> Self {
        DurationHistogramVec { inner, units }
    }

    /// Records `ms` milliseconds in the series of `labels` (catalog label order).
    ///
    /// Panics, like `with_label_values`, when the number of labels is wrong.
    pub fn observe_ms(&self, labels: &[&str], ms: f64) {
        self.inner
            .with_label_values(labels)
            .observe(self.units.value_of_ms(ms));
    }

    /// Records a duration in the series of `labels`.
    pub fn observe_duration(&self, labels: &[&str], d: Duration) {
        self.inner
            .with_label_values(labels)
            .observe(self.units.value_of(d));
    }

    /// Creates the series of `labels` at zero, so it is exposed before its first observation.
    pub fn init_series(&self, labels: &[&str]) {
        self.inner.with_label_values(labels);
    }

    /// Observations recorded in the series of `labels` so far.
    pub fn sample_count(&self, labels: &[&str]) -> u64 {
        self.inner.with_label_values(labels).get_sample_count()
    }

    /// Sum of the observations in the series of `labels`, in the exported unit.
    pub fn sample_sum(&self, labels: &[&str]) -> f64 {
        self.inner.with_label_values(labels).get_sample_sum()
    }

    /// The unit observations are exported in.
    pub fn units(&self) -> MetricUnits {
        self.units
    }
}

/// An unlabelled duration histogram registered under the name and buckets `units` selects.
#[derive(Clone)]
pub struct DurationHistogram {
    inner: Histogram,
    units: MetricUnits,
}

impl DurationHistogram {
    pub(super) fn new(inner: Histogram, units: MetricUnits) -> Self {
        DurationHistogram { inner, units }
    }

    /// Records `ms` milliseconds.
    pub fn observe_ms(&self, ms: f64) {
        self.inner.observe(self.units.value_of_ms(ms));
    }

    /// Records a duration.
    pub fn observe_duration(&self, d: Duration) {
        self.inner.observe(self.units.value_of(d));
    }

    /// Observations recorded so far.
    pub fn sample_count(&self) -> u64 {
        self.inner.get_sample_count()
    }

    /// Sum of the observations, in the exported unit.
    pub fn sample_sum(&self) -> f64 {
        self.inner.get_sample_sum()
    }

    /// The unit observations are exported in.
    pub fn units(&self) -> MetricUnits {
        self.units
    }
}
