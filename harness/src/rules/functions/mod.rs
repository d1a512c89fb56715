//! The PromQL function list, dispatched by name (native-histogram functions find no float
//! histograms and return nothing).

pub mod hash;
pub mod histogram;
pub mod labels;
pub mod math;
pub mod over_time;
pub mod rate;
pub mod time;

use crate::rules::eval::annotate::{self, Anchor};
use crate::rules::eval::{selector, Evaluator, MatrixArg, Val};
use crate::rules::value::{AnnotationKind, QueryError, Sample};
use crate::scrape::{Labels, METRIC_NAME_LABEL};
use promql_parser::parser::{Call, Expr};

/// The argument `i`, or an error naming the function.
fn arg<'e>(args: &'e [Box<Expr>], i: usize, name: &str) -> Result<&'e Expr, QueryError> {
    args.get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::exec(format!("missing argument {} of {name}()", i + 1)))
}

/// Applies `f` to each series of a range-vector argument; series for which it yields `None`
/// are left out. The metric name is dropped unless `keep_name`.
fn per_series(
    m: MatrixArg,
    t: i64,
    keep_name: bool,
    mut f: impl FnMut(&[(i64, f64)], &MatrixArg) -> Result<Option<f64>, QueryError>,
) -> Result<Val, QueryError> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        if let Some(v) = f(&s.points, &m)? {
            let mut labels = s.labels.clone();
            if !keep_name {
                labels.remove(METRIC_NAME_LABEL);
            }
            out.push(Sample { labels, t, v });
        }
    }
    Ok(Val::Vector(out))
}

/// Prometheus' info for `rate`/`increase` over a series whose name does not say counter, for
/// each series the function gives a value for (two points or more, as
/// [`rate::extrapolated_rate`] needs).
fn note_possible_non_counters(ev: &Evaluator<'_>, c: &Call, m: &MatrixArg) {
    if ev.notes.is_none() {
        return;
    }
    for s in &m.series {
        let name = s.labels.get(METRIC_NAME_LABEL).unwrap_or("");
        if s.points.len() >= 2 && annotate::may_not_be_counter(name) {
            ev.note(AnnotationKind::Info, Anchor::arg(c, 0), || {
                annotate::possible_non_counter(name)
            });
        }
    }
}

/// The warning for a quantile outside `[0, 1]`, about argument `i` of `c`.
fn note_invalid_quantile(ev: &Evaluator<'_>, c: &Call, i: usize, q: f64) {
    if annotate::is_invalid_quantile(q) {
        ev.note(AnnotationKind::Warning, Anchor::arg(c, i), || {
            annotate::invalid_quantile(q)
        });
    }
}

/// The annotations of classic-histogram input, about argument `i` of `c` (the buckets).
fn note_findings(ev: &Evaluator<'_>, c: &Call, i: usize, t: i64, f: histogram::Findings) {
    for (name, le) in &f.bad_buckets {
        ev.note(AnnotationKind::Warning, Anchor::arg(c, i), || {
            annotate::bad_bucket_label(name, le)
        });
    }
    for fix in f.forced {
        ev.note_forced_monotonicity(Anchor::arg(c, i), t, fix);
    }
}

/// Prometheus' warning for a sort in a range query, whose matrix is ordered by labels anyway.
fn note_sort_in_range_query(ev: &Evaluator<'_>, c: &Call) {
    ev.note(AnnotationKind::Warning, Anchor::call(c), || {
        annotate::SORT_IN_RANGE_QUERY.to_string()
    });
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Evaluates a function call at `t`.
pub fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args = c.args.args.as_slice();
    let vector_arg =
        |i: usize| -> Result<Vec<Sample>, QueryError> { ev.eval_vector(arg(args, i, name)?, t) };
    let scalar_arg =
        |i: usize| -> Result<f64, QueryError> { ev.eval_scalar(arg(args, i, name)?, t) };
    let string_arg =
        |i: usize| -> Result<String, QueryError> { ev.eval_string(arg(args, i, name)?, t) };
    let matrix_arg =
        |i: usize| -> Result<MatrixArg, QueryError> { ev.eval_matrix_arg(arg(args, i, name)?, t) };

    if let Some(f) = math::unary_fn(name) {
        return Ok(Val::Vector(math::map_values(vector_arg(0)?, f)));
    }
    if time::is_date_fn(name) {
        if args.is_empty() {
            let v = time::date_fn(name, (t.div_euclid(1000)) as f64).unwrap_or(f64::NAN);
            return Ok(Val::Vector(vec![Sample {
                labels: Labels::empty(),
                t,
                v,
            }]));
        }
        return Ok(Val::Vector(math::map_values(vector_arg(0)?, |v| {
            time::date_fn(name, v).unwrap_or(f64::NAN)
        })));
    }
    match name {
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "start" => Ok(Val::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Val::Scalar(ev.end as f64 / 1000.0)),
        "range" => Ok(Val::Scalar(rate::seconds_between(ev.start, ev.end))),
        "step" => Ok(Val::Scalar(ev.step as f64 / 1000.0)),
        "min_of" | "max_of" => {
            let (a, b) = (scalar_arg(0)?, scalar_arg(1)?);
            Ok(Val::Scalar(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if name == "min_of" {
                a.min(b)
            } else {
                a.max(b)
            }))
        }
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => Ok(Val::Vector(vec![Sample {
            labels: Labels::empty(),
            t,
            v: scalar_arg(0)?,
        }])),
        "scalar" => {
            let v = vector_arg(0)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "timestamp" => {
            let a = arg(args, 0, name)?;
            let samples = match unwrap_parens(a) {
                Expr::VectorSelector(vs) => selector::instant(ev, vs, t, true)?,
                _ => ev.eval_vector(a, t)?,
            };
            Ok(Val::Vector(
                samples
                    .into_iter()
                    .map(|mut s| {
                        s.labels.remove(METRIC_NAME_LABEL);
                        Sample {
                            labels: s.labels,
                            t,
                            v: s.t as f64 / 1000.0,
                        }
                    })
                    .collect(),
            ))
        }
        "round" => {
            let v = vector_arg(0)?;
            let to = if args.len() > 1 { scalar_arg(1)? } else { 1.0 };
            Ok(Val::Vector(math::map_values(v, |x| math::round(x, to))))
        }
        "clamp" => {
            let v = vector_arg(0)?;
            Ok(Val::Vector(math::clamp(v, scalar_arg(1)?, scalar_arg(2)?)?))
        }
        "clamp_min" => {
            let v = vector_arg(0)?;
            let min = scalar_arg(1)?;
            Ok(Val::Vector(math::map_values(v, |x| x.max(min))))
        }
        "clamp_max" => {
            let v = vector_arg(0)?;
            let max = scalar_arg(1)?;
            Ok(Val::Vector(math::map_values(v, |x| x.min(max))))
        }
        "rate" | "increase" | "delta" => {
            let (counter, is_rate) = (name != "delta", name == "rate");
            let m = matrix_arg(0)?;
            if counter {
                note_possible_non_counters(ev, c, &m);
            }
            per_series(m, t, false, |p, m| {
                Ok(rate::extrapolated_rate(p, m.start, m.end, counter, is_rate))
            })
        }
        "irate" | "idelta" => per_series(matrix_arg(0)?, t, false, |p, _| {
            Ok(rate::instant_value(p, name == "irate"))
        }),
        "deriv" => per_series(matrix_arg(0)?, t, false, |p, _| Ok(rate::deriv(p))),
        "predict_linear" => {
            let m = matrix_arg(0)?;
            let secs = scalar_arg(1)?;
            per_series(m, t, false, |p, _| Ok(rate::predict_linear(p, t, secs)))
        }
        "changes" => per_series(matrix_arg(0)?, t, false, |p, _| Ok(Some(rate::changes(p)))),
        "resets" => per_series(matrix_arg(0)?, t, false, |p, _| Ok(Some(rate::resets(p)))),
        "quantile_over_time" => {
            let q = scalar_arg(0)?;
            let m = matrix_arg(1)?;
            // Prometheus warns per series with samples: not over an empty range.
            if !m.series.is_empty() {
                note_invalid_quantile(ev, c, 0, q);
            }
            per_series(m, t, false, |p, _| {
                let vs: Vec<f64> = p.iter().map(|&(_, v)| v).collect();
                Ok(Some(math::quantile(q, &vs)))
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let m = matrix_arg(0)?;
            let (sf, tf) = (scalar_arg(1)?, scalar_arg(2)?);
            per_series(m, t, false, |p, _| {
                over_time::double_exponential_smoothing(p, sf, tf)
            })
        }
        "absent" => {
            let a = arg(args, 0, name)?;
            if !ev.eval_vector(a, t)?.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            let labels = match a {
                Expr::VectorSelector(vs) => selector::absent_labels(vs),
                _ => Labels::empty(),
            };
            Ok(Val::Vector(vec![Sample { labels, t, v: 1.0 }]))
        }
        "absent_over_time" => {
            let a = arg(args, 0, name)?;
            if !ev.eval_matrix_arg(a, t)?.series.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            let labels = match a {
                Expr::MatrixSelector(ms) => selector::absent_labels(&ms.vs),
                _ => Labels::empty(),
            };
            Ok(Val::Vector(vec![Sample { labels, t, v: 1.0 }]))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let v = vector_arg(1)?;
            // Prometheus warns at every step, whatever the input.
            note_invalid_quantile(ev, c, 0, q);
            let mut findings = histogram::Findings::default();
            let out = histogram::histogram_quantile(q, v, t, &mut findings);
            note_findings(ev, c, 1, t, findings);
            Ok(Val::Vector(out))
        }
        "histogram_fraction" => {
            let (lower, upper) = (scalar_arg(0)?, scalar_arg(1)?);
            let mut findings = histogram::Findings::default();
            let out = histogram::histogram_fraction(lower, upper, vector_arg(2)?, t, &mut findings);
            note_findings(ev, c, 2, t, findings);
            Ok(Val::Vector(out))
        }
        "histogram_quantiles" => {
            let v = vector_arg(0)?;
            let label = string_arg(1)?;
            let mut qs = Vec::with_capacity(args.len().saturating_sub(2));
            for i in 2..args.len() {
                let q = scalar_arg(i)?;
                note_invalid_quantile(ev, c, i, q);
                qs.push(q);
            }
            let mut findings = histogram::Findings::default();
            let groups = histogram::bucket_groups(v, &mut findings);
            let mut out = Vec::new();
            for q in qs {
                for mut s in histogram::quantile_of_groups(q, &groups, t, &mut findings) {
                    s.labels
                        .set(label.clone(), histogram::format_quantile_label(q));
                    out.push(s);
                }
            }
            note_findings(ev, c, 0, t, findings);
            Ok(Val::Vector(out))
        }
        "histogram_avg" | "histogram_count" | "histogram_sum" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms only: float samples yield nothing.
            for i in 0..args.len() {
                ev.eval(arg(args, i, name)?, t)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        "label_replace" => {
            let v = vector_arg(0)?;
            Ok(Val::Vector(labels::label_replace(
                v,
                &string_arg(1)?,
                &string_arg(2)?,
                &string_arg(3)?,
                &string_arg(4)?,
            )?))
        }
        "label_join" => {
            let v = vector_arg(0)?;
            let dst = string_arg(1)?;
            let sep = string_arg(2)?;
            let srcs = (3..args.len())
                .map(string_arg)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Val::Vector(labels::label_join(v, &dst, &sep, &srcs)?))
        }
        "sort" | "sort_desc" => {
            if ev.start != ev.end {
                note_sort_in_range_query(ev, c);
            }
            Ok(Val::Vector(labels::sort_by_value(
                vector_arg(0)?,
                name == "sort_desc",
            )))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            if ev.start != ev.end {
                note_sort_in_range_query(ev, c);
            }
            let v = vector_arg(0)?;
            let names = (1..args.len())
                .map(string_arg)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Val::Vector(labels::sort_by_label(
                v,
                &names,
                name == "sort_by_label_desc",
            )))
        }
        _ if name.ends_with("_over_time") => {
            let keep = matches!(name, "last_over_time" | "first_over_time");
            per_series(matrix_arg(0)?, t, keep, |p, _| {
                over_time::over_time(name, p)
                    .map(Some)
                    .ok_or_else(|| QueryError::exec(format!("unsupported function {name}()")))
            })
        }
        _ => Err(QueryError::exec(format!("unsupported function {name}()"))),
    }
}
