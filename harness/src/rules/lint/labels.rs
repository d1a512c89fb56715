//! The labels an expression's result series can carry, computed from the parsed expression:
//! selectors bring their metrics' labels, aggregations keep `by` or drop `without` labels,
//! binary operators follow `on`/`ignoring` and `group_left`/`group_right`, and functions drop
//! `__name__` (or add `label_replace`'s destination, or drop `histogram_quantile`'s `le`).
//! This is what `$labels` holds in an alert's templates.

use crate::scrape::METRIC_NAME_LABEL;
use promql_parser::label::MatchOp;
use promql_parser::parser::token::{T_BOTTOMK, T_COUNT_VALUES, T_LIMITK, T_LIMIT_RATIO, T_TOPK};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    BinaryExpr, Expr, LabelModifier, VectorMatchCardinality, VectorSelector,
};
use std::collections::BTreeSet;

/// A set of label names; `open` when more may occur than are listed (a selector of an unknown
/// metric, `info()`), so absence proves nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet {
    /// The names known to occur (some series may lack some of them).
    pub names: BTreeSet<String>,
    /// Whether names not listed may occur too.
    pub open: bool,
}

impl LabelSet {
    /// A closed set of `names`.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> LabelSet {
        LabelSet {
            names: names.into_iter().map(str::to_owned).collect(),
            open: false,
        }
    }

    /// Nothing known: any label may occur.
    pub fn unknown() -> LabelSet {
        LabelSet {
            names: BTreeSet::new(),
            open: true,
        }
    }

    /// Whether `name` may occur.
    pub fn may_have(&self, name: &str) -> bool {
        self.open || self.names.contains(name)
    }

    /// Whether `name` can never occur.
    pub fn lacks(&self, name: &str) -> bool {
        !self.may_have(name)
    }

    fn without(mut self, name: &str) -> LabelSet {
        self.names.remove(name);
        self
    }

    fn union(mut self, other: LabelSet) -> LabelSet {
        self.names.extend(other.names);
        self.open |= other.open;
        self
    }

    /// Keeps only `keep` (each only if it may occur here).
    fn keep(&self, keep: &[String]) -> LabelSet {
        LabelSet {
            names: keep.iter().filter(|k| self.may_have(k)).cloned().collect(),
            open: false,
        }
    }

    fn drop_all(mut self, drop: &[String]) -> LabelSet {
        for d in drop {
            self.names.remove(d);
        }
        self
    }
}

/// The labels of `expr`'s result; `selector` gives a vector selector's (`__name__` included).
/// Scalars and strings have none.
pub fn output_labels(expr: &Expr, selector: &dyn Fn(&VectorSelector) -> LabelSet) -> LabelSet {
    match expr {
        Expr::VectorSelector(vs) => selector(vs),
        Expr::MatrixSelector(ms) => selector(&ms.vs),
        Expr::Paren(p) => output_labels(&p.expr, selector),
        Expr::Subquery(s) => output_labels(&s.expr, selector),
        // Negation is arithmetic: the name goes.
        Expr::Unary(u) => output_labels(&u.expr, selector).without(METRIC_NAME_LABEL),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => LabelSet::default(),
        Expr::Extension(_) => LabelSet::unknown(),
        Expr::Aggregate(a) => {
            let inner = output_labels(&a.expr, selector);
            match a.op.id() {
                // These select whole series from the input: labels and name stay.
                T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO => inner,
                op => {
                    let mut out = grouped(&inner, a.modifier.as_ref());
                    if op == T_COUNT_VALUES {
                        match a.param.as_deref().map(unparen) {
                            Some(Expr::StringLiteral(s)) => {
                                out.names.insert(s.val.clone());
                            }
                            _ => out.open = true,
                        }
                    }
                    out
                }
            }
        }
        Expr::Binary(b) => binary(b, selector),
        Expr::Call(c) => {
            let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
            let first_vector = || {
                args.iter()
                    .find(|a| matches!(a.value_type(), ValueType::Vector | ValueType::Matrix))
                    .map(|a| output_labels(a, selector))
                    .unwrap_or_default()
            };
            let string_arg = |i: usize| match args.get(i).map(|a| unparen(a)) {
                Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
                _ => None,
            };
            match c.func.name {
                "time" | "vector" | "scalar" | "pi" | "start" | "end" | "range" | "step"
                | "min_of" | "max_of" => LabelSet::default(),
                "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
                | "last_over_time" | "first_over_time" => first_vector(),
                "label_replace" | "label_join" => {
                    let mut out = first_vector();
                    match string_arg(1) {
                        Some(dst) if !dst.is_empty() => {
                            out.names.insert(dst);
                        }
                        Some(_) => {}
                        None => out.open = true,
                    }
                    out
                }
                "absent" | "absent_over_time" => absent_labels(args.first().copied()),
                "histogram_quantile" | "histogram_fraction" => {
                    first_vector().without("le").without(METRIC_NAME_LABEL)
                }
                "histogram_quantiles" => {
                    let mut out = first_vector().without("le").without(METRIC_NAME_LABEL);
                    match string_arg(1) {
                        Some(dst) => {
                            out.names.insert(dst);
                        }
                        None => out.open = true,
                    }
                    out
                }
                // `info` joins labels from other series: unknown ones.
                "info" => first_vector().union(LabelSet::unknown()),
                _ => first_vector().without(METRIC_NAME_LABEL),
            }
        }
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// An aggregation's output labels: `by` keeps the listed ones, `without` drops them and the
/// name, no clause drops all.
fn grouped(inner: &LabelSet, modifier: Option<&LabelModifier>) -> LabelSet {
    match modifier {
        Some(LabelModifier::Include(l)) => inner.keep(&l.labels),
        Some(LabelModifier::Exclude(l)) => {
            inner.clone().without(METRIC_NAME_LABEL).drop_all(&l.labels)
        }
        None => LabelSet::default(),
    }
}

/// `absent(sel)`: the equality matchers' labels of a plain selector, else nothing.
fn absent_labels(arg: Option<&Expr>) -> LabelSet {
    let vs = match arg.map(unparen) {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return LabelSet::default(),
    };
    let mut out = LabelSet::default();
    for m in &vs.matchers.matchers {
        if m.op == MatchOp::Equal && m.name != METRIC_NAME_LABEL {
            out.names.insert(m.name.clone());
        }
    }
    out
}

fn binary(b: &BinaryExpr, selector: &dyn Fn(&VectorSelector) -> LabelSet) -> LabelSet {
    let lt = b.lhs.value_type();
    let rt = b.rhs.value_type();
    let lhs = || output_labels(&b.lhs, selector);
    let rhs = || output_labels(&b.rhs, selector);
    let op = b.op;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    // Arithmetic drops the name; comparisons keep it unless `bool`.
    let drops_name = !op.is_comparison_operator() || return_bool;
    let strip = |s: LabelSet| {
        if drops_name {
            s.without(METRIC_NAME_LABEL)
        } else {
            s
        }
    };
    match (lt, rt) {
        (ValueType::Vector, ValueType::Vector) => {}
        (ValueType::Vector, _) => return strip(lhs()),
        (_, ValueType::Vector) => return strip(rhs()),
        _ => return LabelSet::default(),
    }
    if op.is_set_operator() {
        return match op.id() {
            promql_parser::parser::token::T_LOR => lhs().union(rhs()),
            _ => lhs(),
        };
    }
    let (card, matching) = match &b.modifier {
        Some(m) => (m.card.clone(), m.matching.clone()),
        None => (VectorMatchCardinality::OneToOne, None),
    };
    match card {
        VectorMatchCardinality::ManyToOne(include) => {
            with_included(strip(lhs()), &rhs(), &include.labels)
        }
        VectorMatchCardinality::OneToMany(include) => {
            with_included(strip(rhs()), &lhs(), &include.labels)
        }
        // One-to-one: the left side's labels, cut to `on` or less `ignoring`.
        _ => {
            let l = strip(lhs());
            match matching {
                Some(LabelModifier::Include(on)) => l.keep(&on.labels),
                Some(LabelModifier::Exclude(ign)) => l.drop_all(&ign.labels),
                None => l,
            }
        }
    }
}

/// `group_x(labels)`: the listed labels are copied from the "one" side (where it has them).
fn with_included(many: LabelSet, one: &LabelSet, include: &[String]) -> LabelSet {
    let mut out = many;
    for l in include {
        if one.may_have(l) {
            out.names.insert(l.clone());
        } else {
            out.names.remove(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Selector labels for the tests: `req` has job, instance, code; `info_m` has job, version;
    /// anything else is unknown.
    fn labels_of(q: &str) -> LabelSet {
        let e = promql_parser::parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        output_labels(&e, &|vs: &VectorSelector| match vs.name.as_deref() {
            Some("req") => LabelSet::of(["__name__", "job", "instance", "code"]),
            Some("h_bucket") => LabelSet::of(["__name__", "job", "le", "tier"]),
            Some("info_m") => LabelSet::of(["__name__", "job", "version"]),
            _ => LabelSet::unknown(),
        })
    }

    fn names(q: &str) -> Vec<String> {
        let s = labels_of(q);
        assert!(!s.open, "{q} should be closed: {s:?}");
        s.names.into_iter().collect()
    }

    #[test]
    fn selectors_and_aggregations() {
        assert_eq!(names("req"), ["__name__", "code", "instance", "job"]);
        assert_eq!(names("sum(req)"), Vec::<String>::new());
        assert_eq!(names("sum by (job) (req)"), ["job"]);
        // `by` a label the input lacks: it is not produced.
        assert_eq!(names("sum by (job, zone) (req)"), ["job"]);
        assert_eq!(names("sum without (code) (req)"), ["instance", "job"]);
        assert_eq!(
            names("topk(3, req)"),
            ["__name__", "code", "instance", "job"]
        );
        assert_eq!(names("count_values(\"v\", req)"), ["v"]);
        assert_eq!(names("count_values by (job) (\"v\", req)"), ["job", "v"]);
    }

    #[test]
    fn functions_drop_the_name_or_add_labels() {
        assert_eq!(names("rate(req[5m])"), ["code", "instance", "job"]);
        assert_eq!(names("abs(req)"), ["code", "instance", "job"]);
        assert_eq!(
            names("last_over_time(req[5m])"),
            ["__name__", "code", "instance", "job"]
        );
        assert_eq!(
            names("label_replace(req, \"svc\", \"$1\", \"job\", \"(.*)\")"),
            ["__name__", "code", "instance", "job", "svc"]
        );
        assert_eq!(
            names("histogram_quantile(0.9, sum by (le, tier) (rate(h_bucket[5m])))"),
            ["tier"]
        );
        assert_eq!(names("absent(req{job=\"a\", code=~\"5..\"})"), ["job"]);
        assert_eq!(names("vector(1)"), Vec::<String>::new());
        assert_eq!(names("-req"), ["code", "instance", "job"]);
        assert!(labels_of("rate(unknown[5m])").open);
    }

    #[test]
    fn binary_operators_follow_matching() {
        assert_eq!(names("req > 1"), ["__name__", "code", "instance", "job"]);
        assert_eq!(names("req > bool 1"), ["code", "instance", "job"]);
        assert_eq!(names("req * 2"), ["code", "instance", "job"]);
        assert_eq!(names("req / req"), ["code", "instance", "job"]);
        assert_eq!(names("req / on (job) req"), ["job"]);
        assert_eq!(names("req / ignoring (code) req"), ["instance", "job"]);
        assert_eq!(
            names("req * on (job) group_left (version) info_m"),
            ["code", "instance", "job", "version"]
        );
        assert_eq!(
            names("info_m * on (job) group_right (version) req"),
            ["code", "instance", "job", "version"]
        );
        // A `group_x` label the "one" side lacks is removed, as Prometheus does.
        assert_eq!(
            names("info_m * on (job) group_right (code) req"),
            ["instance", "job"]
        );
        assert_eq!(names("sum by (job) (req) > 1 and on (job) info_m"), ["job"]);
        assert_eq!(
            names("sum by (job) (req) or sum by (code) (req)"),
            ["code", "job"]
        );
        assert_eq!(names("1 + 2"), Vec::<String>::new());
        assert!(labels_of("req or unknown").open);
    }
}
