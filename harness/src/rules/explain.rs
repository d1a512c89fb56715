//! Why an alert did not do what was expected: the rule's expression taken apart, each
//! sub-expression evaluated at the time that mattered, so the reader sees which selector was
//! empty, which comparison was false, or that the data was stale.

use super::{parse, Engine, Value};
use crate::scrape::SeriesStore;
use promql_parser::parser::Expr;

fn summarize(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(s) if s.is_empty() => "empty".into(),
        Value::Vector(s) => {
            let shown: Vec<String> = s
                .iter()
                .take(3)
                .map(|x| {
                    let l: Vec<String> = x
                        .labels
                        .iter()
                        .filter(|(k, _)| *k != "__name__")
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect();
                    format!("{{{}}} {}", l.join(", "), x.v)
                })
                .collect();
            let more = if s.len() > 3 {
                format!(" and {} more", s.len() - 3)
            } else {
                String::new()
            };
            format!("{} series: {}{more}", s.len(), shown.join("; "))
        }
        Value::Matrix(m) => format!("{} range series", m.len()),
    }
}

fn walk(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Aggregate(a) => {
            walk(&a.expr, out);
            out.push(e.clone());
        }
        Expr::Binary(b) => {
            walk(&b.lhs, out);
            walk(&b.rhs, out);
            out.push(e.clone());
        }
        Expr::Paren(p) => walk(&p.expr, out),
        Expr::Unary(u) => walk(&u.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, out);
            }
            out.push(e.clone());
        }
        Expr::Subquery(s) => {
            walk(&s.expr, out);
            out.push(e.clone());
        }
        Expr::VectorSelector(_) => out.push(e.clone()),
        // A range selector is shown by its series now (does anything match at all?); its
        // function shows what the window made of them.
        Expr::MatrixSelector(m) => out.push(Expr::VectorSelector(m.vs.clone())),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn is_empty(v: &Result<Value, super::QueryError>) -> bool {
    matches!(v, Ok(Value::Vector(x)) if x.is_empty())
}

/// One line per sub-expression of `query` (innermost first), evaluated at `t_ms`, with a hint
/// where the cause is plain (an empty selector, a false comparison).
pub fn explain(engine: &Engine, store: &SeriesStore, query: &str, t_ms: i64) -> Vec<String> {
    let expr = match parse(query) {
        Ok(e) => e,
        Err(e) => return vec![format!("cannot parse {query:?}: {e}")],
    };
    let mut nodes = Vec::new();
    walk(&expr, &mut nodes);
    let at = t_ms as f64 / 1000.0;
    let mut out = Vec::new();
    for n in &nodes {
        let text = n.to_string();
        let result = engine.instant_query_expr(store, n, t_ms);
        let line = match &result {
            Ok(v) => {
                let mut s = format!("at {at:.1} s  {text}  =>  {}", summarize(v));
                if is_empty(&result) {
                    match n {
                        Expr::VectorSelector(_) => s.push_str(
                            "  (no series within the 5-minute lookback: not exported, labels that never match, or stale)",
                        ),
                        Expr::Binary(b) if b.op.is_comparison_operator() => {
                            let lhs = engine.instant_query_expr(store, &b.lhs, t_ms);
                            s.push_str(if is_empty(&lhs) {
                                "  (nothing to compare: the left side is empty)"
                            } else {
                                "  (the comparison was false for every series)"
                            });
                        }
                        _ => {}
                    }
                }
                s
            }
            Err(e) => format!("at {at:.1} s  {text}  =>  error: {e}"),
        };
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Labels;

    #[test]
    fn an_empty_selector_and_a_false_comparison_are_named() {
        let mut s = SeriesStore::new();
        for i in 0..=12 {
            s.append(
                Labels::new([("__name__", "req_total"), ("job", "a")]),
                i * 5_000,
                (i * 5) as f64,
            )
            .unwrap();
        }
        let lines = explain(
            &Engine::default(),
            &s,
            "rate(req_total[1m]) > 5 or absent_metric > 0",
            60_000,
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("rate(req_total[1m])  =>  1 series")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("comparison was false")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("at 60.0 s  absent_metric  =>  empty  (no series")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("left side is empty")),
            "{lines:#?}"
        );
        // A range selector is shown by the series it would read.
        let lines = explain(
            &Engine::default(),
            &s,
            "rate(nothing_total[5m]) > 0",
            60_000,
        );
        assert!(
            lines[0].starts_with("at 60.0 s  nothing_total  =>  empty  (no series"),
            "{lines:#?}"
        );
    }
}
