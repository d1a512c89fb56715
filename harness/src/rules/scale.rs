//! `time_scale: k`: a drill compresses its alert rules by k so that a 5-minute alert can be proven
//! in 15 seconds. Every range selector, subquery range and step, and offset in an expression is
//! divided by k (a rewrite of the parsed expression, printed back as PromQL), as are `for` and
//! `keep_firing_for`. `@` timestamps are absolute and stay; thresholds are values and stay.

use promql_parser::parser::{self, Expr, Offset};
use std::time::Duration;

/// Divides `d` by `k`, keeping at least one millisecond of anything that was not zero.
pub fn scale_duration(d: Duration, k: f64) -> Duration {
    if !(k.is_finite() && k > 0.0) || d.is_zero() {
        return d;
    }
    let ms = (d.as_secs_f64() * 1000.0 / k).round().max(1.0);
    Duration::from_millis(ms as u64)
}

/// Milliseconds divided by `k` (for `for` and `keep_firing_for`), at least 1 when not zero.
pub fn scale_ms(ms: i64, k: f64) -> i64 {
    if !(k.is_finite() && k > 0.0) || ms == 0 {
        return ms;
    }
    ((ms as f64 / k).round() as i64).max(1)
}

fn scale_offset(o: &mut Option<Offset>, k: f64) {
    if let Some(off) = o {
        *off = match off {
            Offset::Pos(d) => Offset::Pos(scale_duration(*d, k)),
            Offset::Neg(d) => Offset::Neg(scale_duration(*d, k)),
        };
    }
}

/// Rewrites `expr` in place, dividing its windows and offsets by `k`.
pub fn scale_expr(expr: &mut Expr, k: f64) {
    match expr {
        Expr::Aggregate(a) => {
            scale_expr(&mut a.expr, k);
            if let Some(p) = a.param.as_mut() {
                scale_expr(p, k);
            }
        }
        Expr::Unary(u) => scale_expr(&mut u.expr, k),
        Expr::Binary(b) => {
            scale_expr(&mut b.lhs, k);
            scale_expr(&mut b.rhs, k);
        }
        Expr::Paren(p) => scale_expr(&mut p.expr, k),
        Expr::Subquery(s) => {
            scale_expr(&mut s.expr, k);
            s.range = scale_duration(s.range, k);
            s.step = s.step.map(|d| scale_duration(d, k));
            scale_offset(&mut s.offset, k);
        }
        Expr::VectorSelector(v) => scale_offset(&mut v.offset, k),
        Expr::MatrixSelector(m) => {
            m.range = scale_duration(m.range, k);
            scale_offset(&mut m.vs.offset, k);
        }
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                scale_expr(a, k);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Parses `query`, divides its windows and offsets by `k`, and prints it back as PromQL.
pub fn scale_query(query: &str, k: f64) -> Result<String, String> {
    let mut e = parser::parse(query)?;
    scale_expr(&mut e, k);
    Ok(e.to_string())
}

/// A rule file as Prometheus must see it for a drill compressed by `k`: every expression, `for`
/// and `keep_firing_for` scaled, and every group given its scaled interval explicitly (groups
/// without one get `default_interval_ms`, already scaled), so that a real Prometheus evaluates
/// exactly what the embedded engine evaluates.
pub fn scale_rule_file(
    rf: &super::rulefile::RuleFile,
    k: f64,
    default_interval_ms: i64,
) -> Result<super::rulefile::RuleFile, String> {
    use super::rulefile::parse_duration;
    let dur = |d: &Option<String>| -> Result<Option<String>, String> {
        d.as_deref()
            .map(|s| parse_duration(s).map(|ms| prom_duration(scale_ms(ms, k))))
            .transpose()
    };
    let mut out = rf.clone();
    for g in &mut out.groups {
        let ms = match &g.interval {
            Some(d) => scale_ms(
                parse_duration(d).map_err(|e| format!("group {}: {e}", g.name))?,
                k,
            ),
            None => default_interval_ms,
        };
        g.interval = Some(prom_duration(ms.max(1)));
        for r in &mut g.rules {
            let name = format!("group {}, rule {}", g.name, r.name());
            let at = |e: String| format!("{name}: {e}");
            r.expr = scale_query(&r.expr, k).map_err(at)?;
            r.for_ = dur(&r.for_).map_err(at)?;
            r.keep_firing_for = dur(&r.keep_firing_for).map_err(at)?;
        }
    }
    Ok(out)
}

/// Milliseconds as a Prometheus duration (`375ms`, `15s`, `2m`), nothing rounded.
pub fn prom_duration(ms: i64) -> String {
    crate::slo::rules::promql_duration(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_offsets_and_subqueries_shrink_by_k() {
        assert_eq!(
            scale_query("rate(http_requests_total[5m] offset 1h) > 0.1", 20.0).unwrap(),
            "rate(http_requests_total[15s] offset 3m) > 0.1"
        );
        assert_eq!(
            scale_query("max_over_time(rate(x[1m])[30m:1m])", 60.0).unwrap(),
            "max_over_time(rate(x[1s])[30s:1s])"
        );
        assert_eq!(
            scale_query(
                "histogram_quantile(0.95, sum by (le) (rate(h_bucket{a=\"b\"}[5m]))) > 40",
                10.0
            )
            .unwrap(),
            "histogram_quantile(0.95, sum by (le) (rate(h_bucket{a=\"b\"}[30s]))) > 40"
        );
        // `@` is an absolute time and stays; thresholds stay.
        assert_eq!(
            scale_query("x @ 100 offset 10m", 10.0).unwrap(),
            "x @ 100.000 offset 1m"
        );
    }

    #[test]
    fn k_of_one_changes_nothing_and_for_scales() {
        let q = "sum(rate(a[5m])) / sum(rate(b[5m]))";
        assert_eq!(scale_query(q, 1.0).unwrap(), q);
        assert_eq!(scale_ms(300_000, 20.0), 15_000);
        assert_eq!(scale_ms(0, 20.0), 0);
        assert_eq!(
            scale_duration(Duration::from_millis(1), 1000.0),
            Duration::from_millis(1)
        );
        assert!(scale_query("rate(x[5m]", 2.0).is_err());
    }

    #[test]
    fn rule_files_for_prometheus_carry_every_scaled_duration() {
        let rf = crate::rules::rulefile::RuleFile::parse(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m]) > 1\n    for: 10m\n    keep_firing_for: 1m\n- name: h\n  interval: 1m\n  rules:\n  - record: r\n    expr: sum(rate(x[30m]))\n",
        )
        .unwrap();
        let out = scale_rule_file(&rf, 40.0, 375).unwrap();
        let (g, h) = (&out.groups[0], &out.groups[1]);
        assert_eq!(g.interval.as_deref(), Some("375ms"));
        assert_eq!(g.rules[0].expr, "rate(x[7s500ms]) > 1");
        assert_eq!(g.rules[0].for_.as_deref(), Some("15s"));
        assert_eq!(g.rules[0].keep_firing_for.as_deref(), Some("1500ms"));
        assert_eq!(h.interval.as_deref(), Some("1500ms"));
        assert_eq!(h.rules[0].expr, "sum(rate(x[45s]))");
        assert_eq!(prom_duration(120_000), "2m");
        assert_eq!(prom_duration(90_500), "90500ms");
    }
}
