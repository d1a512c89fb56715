//! Vector and matrix selectors: matching series, lookback and staleness, `offset` and `@`.

use super::{duration_ms, offset_ms, Evaluator, MatrixArg};
use crate::rules::value::{QueryError, RangeSeries, Sample};
use crate::scrape::{is_stale, Labels, MatchOp, Matcher, SeriesRef, METRIC_NAME_LABEL};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{MatrixSelector, VectorSelector};

/// One alternative of a selector: matchers the store's index answers, plus regular expressions
/// only the parser's (Go-compatible) translation accepts, applied as a filter.
struct Alternative {
    store: Vec<Matcher>,
    filter: Vec<PMatcher>,
}

fn alternative(name: &Option<String>, ms: &[PMatcher]) -> Alternative {
    let mut alt = Alternative {
        store: Vec::with_capacity(ms.len() + 1),
        filter: Vec::new(),
    };
    if let Some(n) = name {
        alt.store.push(Matcher::metric(n.clone()));
    }
    for m in ms {
        let converted = match &m.op {
            PMatchOp::Equal => Some(Matcher::equal(m.name.clone(), m.value.clone())),
            PMatchOp::NotEqual => Some(Matcher::not_equal(m.name.clone(), m.value.clone())),
            PMatchOp::Re(_) => Matcher::new(MatchOp::Regex, m.name.clone(), m.value.clone()).ok(),
            PMatchOp::NotRe(_) => {
                Matcher::new(MatchOp::NotRegex, m.name.clone(), m.value.clone()).ok()
            }
        };
        match converted {
            Some(c) => alt.store.push(c),
            None => alt.filter.push(m.clone()),
        }
    }
    alt
}

/// The series a selector selects, sorted by labels (as Prometheus' storage returns them).
pub fn select(ev: &Evaluator<'_>, vs: &VectorSelector) -> Vec<SeriesRef> {
    let alts: Vec<Alternative> = if vs.matchers.or_matchers.is_empty() {
        vec![alternative(&vs.name, &vs.matchers.matchers)]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|group| {
                let mut all = vs.matchers.matchers.clone();
                all.extend(group.iter().cloned());
                alternative(&vs.name, &all)
            })
            .collect()
    };
    let mut refs: Vec<SeriesRef> = Vec::new();
    for alt in &alts {
        for r in ev.store.select(&alt.store) {
            let Some(labels) = ev.store.labels(r) else {
                continue;
            };
            if alt
                .filter
                .iter()
                .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
            {
                refs.push(r);
            }
        }
    }
    refs.sort_unstable();
    refs.dedup();
    refs.sort_by(|a, b| ev.store.labels(*a).cmp(&ev.store.labels(*b)));
    refs
}

/// An instant vector selector at `t`: each series' latest sample in the lookback window
/// `(ts - lookback, ts]`, unless it is a staleness marker. Samples carry `t`, or their own
/// timestamp when `sample_time` (for `timestamp()`).
pub fn instant(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
    t: i64,
    sample_time: bool,
) -> Result<Vec<Sample>, QueryError> {
    let ts = ev.at_time(&vs.at, t).saturating_sub(offset_ms(&vs.offset));
    let from = ts.saturating_sub(ev.lookback_ms);
    let mut out = Vec::new();
    for r in select(ev, vs) {
        let Some(&(st, v)) = ev.store.samples_in(r, from, ts).last() else {
            continue;
        };
        if is_stale(v) {
            continue;
        }
        let Some(labels) = ev.store.labels(r) else {
            continue;
        };
        out.push(Sample {
            labels: labels.clone(),
            t: if sample_time { st } else { t },
            v,
        });
    }
    Ok(out)
}

/// A matrix selector at `t`: each series' samples in `(ts - range, ts]`, staleness markers
/// dropped; series left without samples are omitted.
pub fn range(ev: &Evaluator<'_>, ms: &MatrixSelector, t: i64) -> Result<MatrixArg, QueryError> {
    let vs = &ms.vs;
    let end = ev.at_time(&vs.at, t).saturating_sub(offset_ms(&vs.offset));
    let start = end.saturating_sub(duration_ms(&ms.range));
    let mut series = Vec::new();
    for r in select(ev, vs) {
        let points: Vec<(i64, f64)> = ev
            .store
            .samples_in(r, start, end)
            .iter()
            .copied()
            .filter(|&(_, v)| !is_stale(v))
            .collect();
        if points.is_empty() {
            continue;
        }
        let labels = ev.store.labels(r).cloned().unwrap_or_else(Labels::empty);
        series.push(RangeSeries { labels, points });
    }
    Ok(MatrixArg { series, start, end })
}

/// The labels `absent()` reports for a selector: its equality matchers, except the metric
/// name and labels matched more than once (Prometheus' historic behaviour).
pub fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut out = Labels::empty();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME_LABEL {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(&m.name.as_str()) {
            if m.value.is_empty() {
                out.remove(&m.name);
            } else {
                out.set(m.name.clone(), m.value.clone());
            }
            has.push(&m.name);
        } else {
            out.remove(&m.name);
        }
    }
    out
}
