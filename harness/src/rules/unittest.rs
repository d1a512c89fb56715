//! Prometheus' rule unit tests (`promtool test rules`) run with our PromQL engine and rule
//! evaluator, judged as promtool 2.42 judges them.
//!
//! A test file names rule files (relative to itself; globs in the file name), an
//! `evaluation_interval` (default 1m), an optional `group_eval_order` and test groups. Each test
//! group runs on its own: its `input_series` (series notation, [`series`]) are written at
//! `interval` steps from t=0, lazily, as promtool's loader does: before the evaluation at `ts`
//! the samples up to `ts` are appended, and nothing after the last evaluation ever is. Every
//! group is evaluated at every `evaluation_interval` from 0 up to the largest `eval_time` of
//! the test group, whatever the group's own `interval:` says (promtool ignores it too).
//!
//! - An `alert_rule_test` at `eval_time` is judged right after the evaluation at the largest
//!   `ts <= eval_time`: the **firing** alerts of every rule with that name, labels
//!   (`alertname`, the rule's labels over the series' labels, empty values dropped) and
//!   annotations (templates expanded with the series' own labels as `$labels` and the latest
//!   value, as Prometheus expands them at each evaluation), compared with `exp_alerts` as
//!   multisets.
//! - A `promql_expr_test` is evaluated once every evaluation is done (so on the store as the
//!   last evaluation left it) and its samples compared with `exp_samples` as multisets, labels
//!   exactly and values with `==`: promtool 2.42 uses `reflect.DeepEqual`, so `0.1+0.2` is not
//!   `0.3` and an expected `NaN` never matches.
//! - A rule that fails to evaluate stops its test group, as in promtool.
//!
//! Where the answers can differ from promtool 2.42's:
//! - the engine follows Prometheus 3, whose range windows and 5m lookback leave out a sample
//!   exactly at their start (`(t-5m, t]`); Prometheus 2 includes it. A test whose expected
//!   values hinge on such a sample (`count_over_time(x[1m])` over 1m-spaced samples at a
//!   multiple of 1m, an instant selector exactly 5m after the last sample) passes under one and
//!   fails under the other; Prometheus 3's promtool agrees with us;
//! - alerting rules' label templates (`{{ }}` in a rule's `labels`) are refused with an error,
//!   since [`RuleSet`]'s alerts take labels literally;
//! - a subquery without a step uses 1m rather than `evaluation_interval`;
//! - groups outside `group_eval_order` run in file order (promtool's order is random);
//! - template errors read differently inside `<error expanding template: ...>`.

use super::alerting::{AlertState, LabelMap};
use super::group::RuleSet;
use super::promqltest::compare::fmt_f64;
use super::promqltest::series::{self, parse_series_desc, SeqValue};
use super::rulefile::{Rule, RuleFile, RuleFileError, RuleGroup};
use super::scale::prom_duration;
use super::template::{expand, TemplateData};
use super::{parse, Engine, Value};
use crate::scrape::{Labels, SeriesStore};
use promql_parser::parser::Expr;
use regex::Regex;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// promtool's default `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL_MS: i64 = 60_000;

/// The most rule evaluations one test group may need, so that a typo such as `eval_time: 10y`
/// is an error rather than a run that never ends.
pub const MAX_EVALUATIONS: i64 = 1_000_000;

/// Exit codes of [`run_cli`].
pub mod exit {
    /// Every test passed.
    pub const PASS: u8 = 0;
    /// A test failed (or a rule failed to evaluate).
    pub const FAILED: u8 = 1;
    /// A file cannot be read or parsed.
    pub const BAD_INPUT: u8 = 2;
}

/// A unit test file, as `promtool test rules` reads it (unknown fields are refused, as
/// promtool's strict YAML decoding refuses them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files, relative to the test file; the file name may be a glob (`*`, `?`, `[...]`).
    #[serde(default, deserialize_with = "nullable")]
    pub rule_files: Vec<String>,
    /// How often the rules are evaluated; 0 or absent means 1m.
    #[serde(default)]
    pub evaluation_interval: Option<PromDuration>,
    /// Groups evaluated first, in this order, at each evaluation time.
    #[serde(default, deserialize_with = "nullable")]
    pub group_eval_order: Vec<String>,
    /// The test groups.
    #[serde(default, deserialize_with = "nullable")]
    pub tests: Vec<TestGroup>,
}

/// A Prometheus duration (`5m`, `1h30m`, `0`) in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromDuration(pub i64);

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PromDuration, D::Error> {
        // Read as text, as Go does (`eval_time: 0` is the string "0").
        let s = String::deserialize(d)?;
        series::parse_duration(s.trim())
            .map(PromDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// `null` (an empty YAML value) reads as the default, as Go's decoder reads it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Input series, tests, and the template context of one test group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    /// The step between the input series' values (absent: 0, every value at t=0, as promtool).
    #[serde(default)]
    pub interval: Option<PromDuration>,
    /// The input series.
    #[serde(default, deserialize_with = "nullable")]
    pub input_series: Vec<InputSeries>,
    /// Alert expectations.
    #[serde(default, deserialize_with = "nullable")]
    pub alert_rule_test: Vec<AlertTestCase>,
    /// Expression expectations.
    #[serde(default, deserialize_with = "nullable")]
    pub promql_expr_test: Vec<PromqlTestCase>,
    /// `$externalLabels` in templates.
    #[serde(default, deserialize_with = "nullable")]
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    #[serde(default, deserialize_with = "nullable")]
    pub external_url: String,
    /// The group's name in reports.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
}

/// One input series: labels and expanded values (`0+1x10 _ stale`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSeries")]
pub struct InputSeries {
    /// The labels, the metric name as `__name__`.
    pub labels: Labels,
    /// One value per `interval` step from t=0.
    pub values: Vec<SeqValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    #[serde(default, deserialize_with = "nullable")]
    series: String,
    #[serde(default, deserialize_with = "nullable")]
    values: String,
}

impl TryFrom<RawSeries> for InputSeries {
    type Error = String;

    fn try_from(r: RawSeries) -> Result<InputSeries, String> {
        // promtool hands `series values` to the promqltest loader as one line; so do we.
        let d = parse_series_desc(&format!("{} {}", r.series, r.values))
            .map_err(|e| format!("series {:?} {:?}: {e}", r.series, r.values))?;
        if d.histogram {
            return Err(format!(
                "series {:?}: native histogram values are not supported",
                r.series
            ));
        }
        Ok(InputSeries {
            labels: d.labels,
            values: d.values,
        })
    }
}

/// The alerts expected firing at one time.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAlertTest")]
pub struct AlertTestCase {
    /// When, from t=0.
    pub eval_time: PromDuration,
    /// The alert's name.
    pub alertname: String,
    /// The firing alerts of that name (none: nothing fires).
    pub exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    #[serde(default)]
    eval_time: PromDuration,
    #[serde(default, deserialize_with = "nullable")]
    alertname: String,
    #[serde(default, deserialize_with = "nullable")]
    exp_alerts: Vec<ExpAlert>,
}

impl TryFrom<RawAlertTest> for AlertTestCase {
    type Error = String;

    fn try_from(r: RawAlertTest) -> Result<AlertTestCase, String> {
        if r.alertname.is_empty() {
            return Err("missing `alertname`".into());
        }
        Ok(AlertTestCase {
            eval_time: r.eval_time,
            alertname: r.alertname,
            exp_alerts: r.exp_alerts,
        })
    }
}

/// One expected firing alert.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    /// Its labels, without `alertname` (added from the test case).
    #[serde(default, deserialize_with = "nullable")]
    pub exp_labels: BTreeMap<String, String>,
    /// Its annotations, expanded.
    #[serde(default, deserialize_with = "nullable")]
    pub exp_annotations: BTreeMap<String, String>,
}

/// An expression and the samples it must return at one time.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPromqlTest")]
pub struct PromqlTestCase {
    /// The query.
    pub expr: String,
    /// When, from t=0.
    pub eval_time: PromDuration,
    /// The samples (a scalar result is one sample without labels).
    pub exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromqlTest {
    #[serde(default, deserialize_with = "nullable")]
    expr: String,
    #[serde(default)]
    eval_time: PromDuration,
    #[serde(default, deserialize_with = "nullable")]
    exp_samples: Vec<ExpSample>,
}

impl TryFrom<RawPromqlTest> for PromqlTestCase {
    type Error = String;

    fn try_from(r: RawPromqlTest) -> Result<PromqlTestCase, String> {
        parse(&r.expr).map_err(|e| format!("expr {:?}: {}", r.expr, e.message))?;
        Ok(PromqlTestCase {
            expr: r.expr,
            eval_time: r.eval_time,
            exp_samples: r.exp_samples,
        })
    }
}

/// One expected sample.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSample")]
pub struct ExpSample {
    /// The labels, from series notation (`up{job="a"}`, `{}` or empty).
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    #[serde(default, deserialize_with = "nullable")]
    labels: String,
    #[serde(default, deserialize_with = "yaml_float")]
    value: f64,
}

/// A float as Go's YAML decoder reads one: any YAML number, hexadecimal and octal integers
/// included, `.nan` and `.inf`; not a string such as `NaN`.
fn yaml_float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number (.nan and .inf for NaN and infinity)")
        }
        fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
    }
    // `deserialize_any` resolves the scalar (so `0x10` is the integer 16, as in Go), where
    // `deserialize_f64` only parses decimal floats.
    d.deserialize_any(V)
}

impl TryFrom<RawSample> for ExpSample {
    type Error = String;

    fn try_from(r: RawSample) -> Result<ExpSample, String> {
        Ok(ExpSample {
            labels: parse_metric(&r.labels)?,
            value: r.value,
        })
    }
}

/// Labels in series notation with no values, as Prometheus' `ParseMetric` reads them (an empty
/// string is the empty label set).
pub fn parse_metric(s: &str) -> Result<Labels, String> {
    if s.trim().is_empty() {
        return Ok(Labels::empty());
    }
    let d = parse_series_desc(s).map_err(|e| format!("labels {s:?}: {e}"))?;
    if d.histogram || !d.values.is_empty() {
        return Err(format!("labels {s:?}: expected labels only, found values"));
    }
    Ok(d.labels)
}

impl TestFile {
    /// Parses and checks a test file's YAML; errors name the line and field.
    pub fn parse(text: &str) -> Result<TestFile, RuleFileError> {
        let f: TestFile = super::rulefile::parse_yaml(text)?;
        f.check().map_err(|(field, message)| RuleFileError {
            line: None,
            field,
            message,
        })?;
        Ok(f)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let mut seen = BTreeMap::new();
        for (i, g) in self.group_eval_order.iter().enumerate() {
            if let Some(first) = seen.insert(g.as_str(), i) {
                return Err((
                    format!("group_eval_order[{i}]"),
                    format!("group {g:?} repeated (first at group_eval_order[{first}])"),
                ));
            }
        }
        let interval = self.evaluation_interval_ms();
        for (i, t) in self.tests.iter().enumerate() {
            let evaluations = t.max_eval_time_ms() / interval + 1;
            if evaluations > MAX_EVALUATIONS {
                return Err((
                    format!("tests[{i}]"),
                    format!(
                        "the largest eval_time ({}) needs {evaluations} evaluations at {}, more \
                         than {MAX_EVALUATIONS}",
                        prom_duration(t.max_eval_time_ms()),
                        prom_duration(interval)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The evaluation interval in ms (1m when absent or 0).
    pub fn evaluation_interval_ms(&self) -> i64 {
        match self.evaluation_interval {
            Some(PromDuration(ms)) if ms > 0 => ms,
            _ => DEFAULT_EVALUATION_INTERVAL_MS,
        }
    }
}

impl TestGroup {
    /// The largest `eval_time` of its tests, ms (0 without tests).
    pub fn max_eval_time_ms(&self) -> i64 {
        let alerts = self.alert_rule_test.iter().map(|a| a.eval_time.0);
        let exprs = self.promql_expr_test.iter().map(|p| p.eval_time.0);
        alerts.chain(exprs).max().unwrap_or(0)
    }

    /// `tests[i]`, with the name when it has one.
    fn title(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("tests[{index}]")
        } else {
            format!("tests[{index}] ({})", self.name)
        }
    }
}

/// The outcome of one test group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOutcome {
    /// `tests[i]` and the group's name.
    pub title: String,
    /// Each failure, promtool-like and multi-line (empty: the group passed).
    pub failures: Vec<String>,
}

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutcome {
    /// The test file as given.
    pub path: String,
    /// Warnings (a rule-file pattern that matches nothing, as promtool warns).
    pub warnings: Vec<String>,
    /// One entry per test group.
    pub groups: Vec<GroupOutcome>,
}

impl FileOutcome {
    /// Whether every group passed.
    pub fn passed(&self) -> bool {
        self.groups.iter().all(|g| g.failures.is_empty())
    }
}

/// An alert as judged: labels (with `alertname`) and annotations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JudgedAlert {
    /// Labels, empty values dropped (Prometheus deletes a label set to "").
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
}

/// Compares firing alerts with the expected ones as multisets; `None` when they agree, else a
/// promtool-like description.
pub fn judge_alerts(
    case: &AlertTestCase,
    group_title: &str,
    mut got: Vec<JudgedAlert>,
) -> Option<String> {
    let mut exp: Vec<JudgedAlert> = case
        .exp_alerts
        .iter()
        .map(|a| {
            let mut labels = a.exp_labels.clone();
            labels.insert("alertname".into(), case.alertname.clone());
            JudgedAlert {
                labels: Labels::new(labels),
                annotations: Labels::new(a.exp_annotations.clone()),
            }
        })
        .collect();
    exp.sort();
    got.sort();
    if exp == got {
        return None;
    }
    Some(format!(
        "{group_title}: alertname: {}, time: {},\n    exp: {},\n    got: {}",
        case.alertname,
        prom_duration(case.eval_time.0),
        show_alerts(&exp),
        show_alerts(&got)
    ))
}

fn show_alerts(alerts: &[JudgedAlert]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut s = "[".to_string();
    for (i, a) in alerts.iter().enumerate() {
        let _ = write!(
            s,
            "\n        {i}: Labels:{}\n           Annotations:{}",
            a.labels, a.annotations
        );
    }
    s.push_str("\n      ]");
    s
}

/// Compares a query's samples with the expected ones as multisets (labels exactly, values with
/// `==`, so NaN never matches, as promtool 2.42); `None` when they agree.
pub fn judge_samples(
    case: &PromqlTestCase,
    group_title: &str,
    mut got: Vec<(Labels, f64)>,
) -> Option<String> {
    let mut exp: Vec<(Labels, f64)> = case
        .exp_samples
        .iter()
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let same = exp.len() == got.len()
        && exp
            .iter()
            .zip(&got)
            .all(|((el, ev), (gl, gv))| el == gl && ev == gv);
    if same {
        return None;
    }
    Some(format!(
        "{group_title}: expr: {:?}, time: {},\n    exp: {}\n    got: {}",
        case.expr,
        prom_duration(case.eval_time.0),
        show_samples(&exp),
        show_samples(&got)
    ))
}

fn show_samples(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(l, v)| format!("{l} {}", fmt_f64(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One rule with a [`RuleSet`] of its own, so that an alerting rule's input can be read just
/// before it is evaluated (the value its annotations are expanded with).
struct UnitRule {
    name: String,
    set: RuleSet,
    alert: Option<AlertParts>,
}

struct AlertParts {
    expr: Expr,
    labels: LabelMap,
    annotations: BTreeMap<String, String>,
    /// The annotations of each alert (by its labels) as the last evaluation that returned it
    /// expanded them; a `keep_firing_for` alert keeps its last ones, as in Prometheus.
    current: HashMap<Labels, Labels>,
}

/// The rules of `files`, one [`RuleSet`] each, in evaluation order: groups named in
/// `group_eval_order` first in that order, the others where promtool may put them (file order,
/// tied with the first named group), rules in file order. Every group is evaluated every
/// `interval_ms` from t=0.
fn load_rules(
    files: &[(String, RuleFile)],
    group_eval_order: &[String],
    interval_ms: i64,
) -> Result<Vec<UnitRule>, String> {
    // Loaded once whole, so that an error names the rule's place in its file.
    RuleSet::load(files, interval_ms, 1.0, -interval_ms)?;
    let rank = |g: &RuleGroup| {
        group_eval_order
            .iter()
            .position(|n| *n == g.name)
            .unwrap_or(0)
    };
    let mut groups: Vec<(&String, usize, &RuleGroup)> = files
        .iter()
        .flat_map(|(path, f)| f.groups.iter().enumerate().map(move |(i, g)| (path, i, g)))
        .collect();
    groups.sort_by_key(|(_, _, g)| rank(g));
    let mut out = Vec::new();
    for (path, gi, g) in groups {
        for (ri, r) in g.rules.iter().enumerate() {
            let mut labels: LabelMap = g.labels.clone().into_iter().collect();
            labels.extend(r.labels.clone());
            if let (Some(_), Some((k, _))) =
                (&r.alert, labels.iter().find(|(_, v)| v.contains("{{")))
            {
                return Err(format!(
                    "{path}: groups[{gi}].rules[{ri}].labels.{k} ({}): templates in alert \
                     labels are not supported by firedrill's rule evaluator",
                    r.name()
                ));
            }
            let single = RuleFile {
                groups: vec![RuleGroup {
                    interval: None,
                    rules: vec![r.clone()],
                    ..g.clone()
                }],
            };
            let set = RuleSet::load(&[(path.clone(), single)], interval_ms, 1.0, -interval_ms)?;
            out.push(UnitRule {
                name: r.name().to_owned(),
                set,
                alert: alert_parts(r, labels).map_err(|e| format!("{path}: {e}"))?,
            });
        }
    }
    Ok(out)
}

fn alert_parts(r: &Rule, labels: LabelMap) -> Result<Option<AlertParts>, String> {
    if r.alert.is_none() {
        return Ok(None);
    }
    Ok(Some(AlertParts {
        expr: parse(&r.expr).map_err(|e| e.message)?,
        labels,
        annotations: r.annotations.clone(),
        current: HashMap::new(),
    }))
}

/// The labels of the alert a series makes: the series' labels without the metric name, the
/// rule's labels over them, `alertname`, and no empty values.
fn alert_labels(series: &Labels, rule_labels: &LabelMap, name: &str) -> Labels {
    let mut l = series.without_metric_name();
    for (k, v) in rule_labels {
        l.set(k.clone(), v.clone());
    }
    l.set("alertname", name);
    Labels::new(l.iter().filter(|(_, v)| !v.is_empty()))
}

fn external_pattern() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r"(?:\$externalLabels|\.ExternalLabels)\.([A-Za-z_][A-Za-z0-9_]*)|\$externalURL\b|\.ExternalURL\b",
        )
        .expect("static pattern")
    })
}

/// Binds `$externalLabels.x` and `$externalURL` inside the template's actions to string
/// literals, since the template engine knows only `$labels` and `$value`.
fn bind_externals(text: &str, labels: &BTreeMap<String, String>, url: &str) -> String {
    if !text.contains("xternal") {
        return text.to_owned();
    }
    let quote = |s: &str| {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(len) = rest[open..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let action = &rest[open..open + len];
        out.push_str(
            &external_pattern().replace_all(action, |c: &regex::Captures<'_>| match c.get(1) {
                Some(name) => quote(labels.get(name.as_str()).map_or("", String::as_str)),
                None => quote(url),
            }),
        );
        rest = &rest[open + len..];
    }
    out.push_str(rest);
    out
}

/// The values of a query as (labels, value) samples: a scalar is one sample without labels.
fn samples_of(v: Value) -> Result<Vec<(Labels, f64)>, String> {
    match v {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// The input series, written into the store a step at a time.
struct Feed {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    next: Vec<usize>,
}

impl Feed {
    fn new(input: &[InputSeries], interval_ms: i64) -> Feed {
        // A series given twice: the last wins, as in promtool's loader.
        let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for s in input {
            let points = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    SeqValue::Omitted => None,
                    SeqValue::Float(f) => Some(((i as i64).saturating_mul(interval_ms), *f)),
                })
                .collect();
            by_labels.insert(s.labels.clone(), points);
        }
        let series: Vec<_> = by_labels.into_iter().collect();
        let next = vec![0; series.len()];
        Feed { series, next }
    }

    /// Appends every sample up to `ts`.
    fn till(&mut self, store: &mut SeriesStore, ts: i64) {
        for (i, (labels, points)) in self.series.iter().enumerate() {
            while let Some(&(t, v)) = points.get(self.next[i]) {
                if t > ts {
                    break;
                }
                // Several values at one time (interval 0): the first stays, as in promtool.
                let _ = store.append(labels.clone(), t, v);
                self.next[i] += 1;
            }
        }
    }
}

/// Runs one test group against the rule files; returns its failures.
pub fn run_group(
    group: &TestGroup,
    title: &str,
    files: &[(String, RuleFile)],
    group_eval_order: &[String],
    interval_ms: i64,
    engine: &Engine,
) -> Result<Vec<String>, String> {
    let mut rules = load_rules(files, group_eval_order, interval_ms)?;
    let mut store = SeriesStore::new();
    let mut feed = Feed::new(&group.input_series, group.interval.unwrap_or_default().0);
    let mut alert_tests: Vec<&AlertTestCase> = group.alert_rule_test.iter().collect();
    alert_tests.sort_by_key(|a| a.eval_time);
    let mut pending = alert_tests.into_iter().peekable();
    let maxt = group.max_eval_time_ms();
    let mut failures = Vec::new();
    let mut ts = 0;
    while ts <= maxt {
        feed.till(&mut store, ts);
        for r in &mut rules {
            if let Some(a) = &mut r.alert {
                // What the rule is about to see: its alerts' values for the annotations.
                if let Ok(result) = engine
                    .instant_query_expr(&store, &a.expr, ts)
                    .map_err(|e| e.message)
                    .and_then(samples_of)
                {
                    for (series, value) in result {
                        let data = TemplateData {
                            labels: series
                                .iter()
                                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                .collect(),
                            value,
                        };
                        let annotations = a.annotations.iter().map(|(k, text)| {
                            let text =
                                bind_externals(text, &group.external_labels, &group.external_url);
                            let v = expand(&text, &data)
                                .unwrap_or_else(|e| format!("<error expanding template: {e}>"));
                            (k.clone(), v)
                        });
                        let key = alert_labels(&series, &a.labels, &r.name);
                        a.current.insert(key, Labels::new(annotations));
                    }
                }
            }
            let errors_before = r.set.errors.len();
            r.set.eval_due(engine, &mut store, ts);
            if let Some(e) = r.set.errors.get(errors_before) {
                failures.push(format!(
                    "{title}: rule: {}, time: {}, err: {e}",
                    r.name,
                    prom_duration(ts)
                ));
                // promtool stops the group at an evaluation error.
                return Ok(failures);
            }
        }
        while let Some(case) = pending.next_if(|c| c.eval_time.0 < ts.saturating_add(interval_ms)) {
            failures.extend(judge_alerts(case, title, firing(&rules, &case.alertname)));
        }
        ts = match ts.checked_add(interval_ms) {
            Some(t) => t,
            None => break,
        };
    }
    for case in &group.promql_expr_test {
        let got = engine
            .instant_query(&store, &case.expr, case.eval_time.0)
            .map_err(|e| e.message)
            .and_then(samples_of);
        match got {
            Ok(got) => failures.extend(judge_samples(case, title, got)),
            Err(e) => failures.push(format!(
                "{title}: expr: {:?}, time: {}, err: {e}",
                case.expr,
                prom_duration(case.eval_time.0)
            )),
        }
    }
    Ok(failures)
}

/// The firing alerts named `alertname`, across every rule of that name.
fn firing(rules: &[UnitRule], alertname: &str) -> Vec<JudgedAlert> {
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| r.name == alertname) {
        let Some(a) = &r.alert else { continue };
        for (_, labels, state) in r.set.active_alerts() {
            if state != AlertState::Firing {
                continue;
            }
            let labels = Labels::new(labels.into_iter().filter(|(_, v)| !v.is_empty()));
            let annotations = a.current.get(&labels).cloned().unwrap_or_default();
            out.push(JudgedAlert {
                labels,
                annotations,
            });
        }
    }
    out
}

/// Whether a path's file name is a glob pattern.
fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// A glob on one file name (`*`, `?`, `[...]`, as Go's `filepath.Match`) as a regex.
fn glob_regex(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                if !closed {
                    return Err(format!("{pattern:?}: unclosed '[' in the pattern"));
                }
                re.push(']');
            }
            '\\' => match chars.next() {
                Some(e) => re.push_str(&regex::escape(&e.to_string())),
                None => return Err(format!("{pattern:?}: trailing '\\' in the pattern")),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("{pattern:?}: {e}"))
}

/// The rule files a test file names, read and parsed, in order.
#[derive(Debug, Clone, Default)]
pub struct RuleFiles {
    /// (path as shown, parsed file).
    pub files: Vec<(String, RuleFile)>,
    /// Names that matched no file (a warning, as promtool makes it).
    pub warnings: Vec<String>,
}

/// The rule files `names` (relative to `base`) name, in order, read and parsed. A name that
/// matches nothing is a warning, as promtool makes it.
pub fn load_rule_files(base: &Path, names: &[String]) -> Result<RuleFiles, String> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        let full = base.join(name);
        let file_name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = full.parent().unwrap_or(base);
        if is_glob(&dir.to_string_lossy()) {
            return Err(format!(
                "rule_files: {name:?}: globs are supported in the file name only"
            ));
        }
        let found: Vec<PathBuf> = if is_glob(&file_name) {
            let re = glob_regex(&file_name).map_err(|e| format!("rule_files: {e}"))?;
            let mut m: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .filter(|e| re.is_match(&e.file_name().to_string_lossy()))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            m.sort();
            m
        } else if full.exists() {
            vec![full.clone()]
        } else {
            Vec::new()
        };
        if found.is_empty() {
            warnings.push(format!("no file matches pattern {}", full.display()));
        }
        paths.extend(found);
    }
    let mut files = Vec::new();
    for p in paths {
        files.push((p.display().to_string(), RuleFile::load(&p)?));
    }
    Ok(RuleFiles { files, warnings })
}

/// Reads a test file and its rule files and runs every test group. `Err`: a file cannot be
/// read or parsed (the message names it).
pub fn run_file(path: &Path, engine: &Engine) -> Result<FileOutcome, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let file = TestFile::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let RuleFiles {
        files: rules,
        warnings,
    } = load_rule_files(base, &file.rule_files).map_err(|e| format!("{shown}: {e}"))?;
    let interval = file.evaluation_interval_ms();
    let mut groups = Vec::new();
    for (i, g) in file.tests.iter().enumerate() {
        let title = g.title(i);
        let failures = run_group(g, &title, &rules, &file.group_eval_order, interval, engine)
            .map_err(|e| format!("{shown}: {e}"))?;
        groups.push(GroupOutcome { title, failures });
    }
    Ok(FileOutcome {
        path: shown,
        warnings,
        groups,
    })
}

/// `firedrill test-rules FILE...`: runs each file, writes `Unit Testing: FILE`, then `SUCCESS`
/// or `FAILED:` and the failures, to `out`; warnings and files that cannot be read or parsed
/// to `err`. Returns the exit code ([`exit`]).
pub fn run_cli(paths: &[PathBuf], engine: &Engine, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (mut passed, mut failed, mut bad) = (0, 0, 0);
    for p in paths {
        let _ = writeln!(out, "Unit Testing: {}", p.display());
        match run_file(p, engine) {
            Ok(outcome) => {
                for w in &outcome.warnings {
                    let _ = writeln!(err, "firedrill test-rules: {}: warning: {w}", outcome.path);
                }
                if outcome.passed() {
                    passed += 1;
                    let _ = writeln!(out, "  SUCCESS");
                } else {
                    failed += 1;
                    let _ = writeln!(out, "  FAILED:");
                    for (i, f) in outcome.groups.iter().flat_map(|g| &g.failures).enumerate() {
                        // A blank line between failures, as promtool separates them.
                        if i > 0 {
                            let _ = writeln!(out);
                        }
                        for line in f.lines() {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                }
            }
            Err(e) => {
                bad += 1;
                let _ = writeln!(out, "  ERROR: cannot read or parse (see stderr)");
                let _ = writeln!(err, "firedrill test-rules: {e}");
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "{} files: {passed} passed, {failed} failed, {bad} invalid",
        paths.len()
    );
    if bad > 0 {
        exit::BAD_INPUT
    } else if failed > 0 {
        exit::FAILED
    } else {
        exit::PASS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "groups:
  - name: g
    rules:
      - record: job:x:sum
        expr: sum by (job) (x)
      - alert: XHigh
        expr: job:x:sum > 5
        for: 2m
        labels: {severity: page}
        annotations:
          summary: '{{ $labels.job }} at {{ $value }} ({{ $labels.__name__ }}, sev={{ $labels.severity }})'
";

    fn rules() -> Vec<(String, RuleFile)> {
        vec![("r.yml".into(), RuleFile::parse(RULES).unwrap())]
    }

    fn run(test: &str) -> Vec<String> {
        let f = TestFile::parse(test).unwrap();
        let interval = f.evaluation_interval_ms();
        f.tests
            .iter()
            .enumerate()
            .flat_map(|(i, g)| {
                run_group(
                    g,
                    &g.title(i),
                    &rules(),
                    &f.group_eval_order,
                    interval,
                    &Engine::default(),
                )
                .unwrap()
            })
            .collect()
    }

    fn l(s: &str) -> Labels {
        parse_metric(s).unwrap()
    }

    #[test]
    fn parses_defaults_nulls_and_loose_scalars() {
        let f = TestFile::parse(
            "rule_files: [r.yml]
tests:
  - input_series:
      - series: 'x{job=\"a\"}'
        values: '1 _ stale 2+1x2'
    alert_rule_test:
      - alertname: XHigh
        exp_alerts:
      - eval_time: 90s
        alertname: XHigh
        exp_alerts:
          - exp_labels: {code: 500, job: a}
    promql_expr_test:
      - expr: x
        eval_time: 2m
        exp_samples:
          - labels: ''
            value: .nan
          - value: 0x10
",
        )
        .unwrap();
        assert_eq!(f.evaluation_interval_ms(), 60_000);
        let g = &f.tests[0];
        assert_eq!(g.interval, None);
        assert_eq!(g.input_series[0].values.len(), 6);
        assert_eq!(g.input_series[0].values[1], SeqValue::Omitted);
        assert_eq!(g.alert_rule_test[0].eval_time, PromDuration(0));
        assert!(g.alert_rule_test[0].exp_alerts.is_empty());
        assert_eq!(g.alert_rule_test[1].exp_alerts[0].exp_labels["code"], "500");
        assert_eq!(g.max_eval_time_ms(), 120_000);
        let s = &g.promql_expr_test[0].exp_samples;
        assert!(s[0].labels.is_empty() && s[0].value.is_nan());
        assert_eq!(s[1].value, 16.0);
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let cases = [
            (
                "tests:\n  - interval: 1m\n    bogus: 1\n",
                "tests[0].bogus",
                Some(3),
            ),
            ("evaluation_interval: 5 minutes\n", "evaluation_interval", Some(1)),
            (
                "tests:\n  - promql_expr_test:\n      - expr: x\n        exp_samples:\n          - value: NaN\n",
                "tests[0].promql_expr_test[0].exp_samples[0].value",
                Some(5),
            ),
            (
                "tests:\n  - alert_rule_test:\n      - eval_time: 1m\n",
                "tests[0].alert_rule_test[0]",
                Some(3),
            ),
            (
                "tests:\n  - promql_expr_test:\n      - expr: 'rate(x[5m]'\n",
                "tests[0].promql_expr_test[0]",
                Some(3),
            ),
            (
                "tests:\n  - promql_expr_test:\n      - expr: x\n        exp_samples:\n          - labels: 'x{a=b}'\n",
                "tests[0].promql_expr_test[0].exp_samples[0]",
                Some(5),
            ),
            (
                "tests:\n  - input_series:\n      - series: 'x'\n        values: '{{schema:1}}'\n",
                "tests[0].input_series[0]",
                Some(3),
            ),
            ("group_eval_order: [a, b, a]\n", "group_eval_order[2]", None),
            (
                "tests:\n  - promql_expr_test:\n      - expr: x\n        eval_time: 10y\n",
                "tests[0]",
                None,
            ),
        ];
        for (text, field, line) in cases {
            let e = TestFile::parse(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn metric_labels_as_prometheus_parses_them() {
        assert_eq!(l(""), Labels::empty());
        assert_eq!(l("{}"), Labels::empty());
        assert_eq!(
            l("up{job=\"a\"}"),
            Labels::new([("__name__", "up"), ("job", "a")])
        );
        assert!(parse_metric("up 1").is_err());
        assert!(parse_metric("{a=~\"b\"}").is_err());
    }

    /// Label pairs of an expected alert.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn alert_case(exp: &[(Pairs<'_>, Pairs<'_>)]) -> AlertTestCase {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        AlertTestCase {
            eval_time: PromDuration(600_000),
            alertname: "A".into(),
            exp_alerts: exp
                .iter()
                .map(|(labels, ann)| ExpAlert {
                    exp_labels: map(labels),
                    exp_annotations: map(ann),
                })
                .collect(),
        }
    }

    fn got(labels: &str, ann: &[(&str, &str)]) -> JudgedAlert {
        JudgedAlert {
            labels: l(labels),
            annotations: Labels::new(ann.iter().copied()),
        }
    }

    #[test]
    fn alerts_are_judged_as_multisets_with_alertname_added() {
        let case = alert_case(&[
            (&[("i", "b")], &[("s", "B")]),
            (&[("i", "a")], &[("s", "A")]),
        ]);
        let both = vec![
            got("{alertname=\"A\", i=\"a\"}", &[("s", "A")]),
            got("{alertname=\"A\", i=\"b\"}", &[("s", "B")]),
        ];
        assert_eq!(judge_alerts(&case, "tests[0]", both.clone()), None);
        assert_eq!(judge_alerts(&alert_case(&[]), "tests[0]", Vec::new()), None);
        // One missing, a wrong annotation, an extra alert: each fails.
        assert!(judge_alerts(&case, "tests[0]", both[..1].to_vec()).is_some());
        let wrong = vec![
            got("{alertname=\"A\", i=\"a\"}", &[("s", "A")]),
            got("{alertname=\"A\", i=\"b\"}", &[("s", "b")]),
        ];
        let msg = judge_alerts(&case, "tests[0]", wrong).unwrap();
        assert!(
            msg.starts_with("tests[0]: alertname: A, time: 10m,\n"),
            "{msg}"
        );
        assert!(msg.contains("Annotations:{s=\"b\"}"), "{msg}");
        assert!(judge_alerts(&alert_case(&[]), "t", both).is_some());
        // An expected label with an empty value never matches (got labels have none).
        let empty = alert_case(&[(&[("i", "")], &[])]);
        assert!(judge_alerts(&empty, "t", vec![got("{alertname=\"A\"}", &[])]).is_some());
    }

    #[test]
    fn samples_are_judged_exactly_and_in_any_order() {
        let case = |exp: &[(&str, f64)]| PromqlTestCase {
            expr: "x".into(),
            eval_time: PromDuration(60_000),
            exp_samples: exp
                .iter()
                .map(|(s, v)| ExpSample {
                    labels: l(s),
                    value: *v,
                })
                .collect(),
        };
        let c = case(&[("x{i=\"b\"}", 2.0), ("x{i=\"a\"}", 1.0)]);
        let g = vec![(l("x{i=\"a\"}"), 1.0), (l("x{i=\"b\"}"), 2.0)];
        assert_eq!(judge_samples(&c, "t", g), None);
        let g = vec![(l("x{i=\"a\"}"), 1.0), (l("x{i=\"b\"}"), 2.000_000_1)];
        let msg = judge_samples(&c, "t", g).unwrap();
        assert!(msg.contains("exp: x{i=\"a\"} 1, x{i=\"b\"} 2\n"), "{msg}");
        assert_eq!(
            judge_samples(&case(&[("{}", 0.0)]), "t", vec![(l(""), -0.0)]),
            None
        );
        assert_eq!(judge_samples(&case(&[]), "t", Vec::new()), None);
        assert!(judge_samples(&case(&[]), "t", vec![(l(""), 1.0)])
            .unwrap()
            .contains("exp: nil"));
        // promtool 2.42 compares with ==: NaN is never equal, not even to NaN.
        let nan = case(&[("{}", f64::NAN)]);
        assert!(judge_samples(&nan, "t", vec![(l(""), f64::NAN)]).is_some());
        // The metric name is a label like any other.
        assert!(judge_samples(
            &case(&[("{i=\"a\"}", 1.0)]),
            "t",
            vec![(l("x{i=\"a\"}"), 1.0)]
        )
        .is_some());
    }

    #[test]
    fn alerts_fire_after_for_with_annotations_of_the_latest_value() {
        let test = "rule_files: [r.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'x{job=\"a\"}'
        values: '0 0 6 7 8 9 10'
    alert_rule_test:
      - eval_time: 3m
        alertname: XHigh
        exp_alerts: []
      - eval_time: 4m59s
        alertname: XHigh
        exp_alerts:
          - exp_labels: {job: a, severity: page}
            exp_annotations: {summary: 'a at 8 (job:x:sum, sev=)'}
      - eval_time: 6m
        alertname: XHigh
        exp_alerts:
          - exp_labels: {job: a, severity: page}
            exp_annotations: {summary: 'a at 10 (job:x:sum, sev=)'}
      - eval_time: 6m
        alertname: NoSuchAlert
        exp_alerts: []
";
        assert_eq!(run(test), Vec::<String>::new());
        // Expected firing while only pending: a failure naming the time.
        let pending = test.replace("eval_time: 3m\n        alertname: XHigh\n        exp_alerts: []", "eval_time: 3m\n        alertname: XHigh\n        exp_alerts: [{exp_labels: {job: a, severity: page}}]");
        let f = run(&pending);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].contains("alertname: XHigh, time: 3m,") && f[0].contains("got: []"),
            "{f:?}"
        );
    }

    #[test]
    fn samples_load_lazily_up_to_the_last_evaluation() {
        // Evaluations at 0 and 1m only: the 2m sample is never loaded, as in promtool.
        let test = "tests:
  - interval: 1m
    input_series:
      - series: 'x{job=\"a\"}'
        values: '1 2 3'
    promql_expr_test:
      - expr: x offset -1m
        eval_time: 1m
        exp_samples:
          - labels: 'x{job=\"a\"}'
            value: 2
";
        assert_eq!(run(test), Vec::<String>::new());
    }

    #[test]
    fn an_evaluation_error_stops_the_group() {
        let f = TestFile::parse(
            "tests:
  - interval: 1m
    input_series:
      - series: 'x{job=\"a\"}'
        values: '1 1 1'
      - series: 'x{job=\"b\"}'
        values: '_ 1 1'
    promql_expr_test:
      - expr: x
        eval_time: 2m
",
        )
        .unwrap();
        let bad = RuleFile::parse(
            "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: x + on() x\n",
        )
        .unwrap();
        let failures = run_group(
            &f.tests[0],
            "tests[0]",
            &[("bad.yml".into(), bad)],
            &[],
            60_000,
            &Engine::default(),
        )
        .unwrap();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("tests[0]: rule: r, time: 1m, err:"),
            "{failures:?}"
        );
    }

    #[test]
    fn group_eval_order_puts_named_groups_first() {
        let rules = RuleFile::parse(
            "groups:
  - name: alerting
    rules:
      - alert: Sum
        expr: s > 10
  - name: recording
    rules:
      - record: s
        expr: sum(q)
",
        )
        .unwrap();
        let test = |order: &str| {
            let f = TestFile::parse(&format!(
                "group_eval_order: {order}
tests:
  - interval: 1m
    input_series:
      - series: 'q'
        values: '5 12'
    alert_rule_test:
      - eval_time: 1m
        alertname: Sum
        exp_alerts: [{{}}]
"
            ))
            .unwrap();
            run_group(
                &f.tests[0],
                "t",
                &[("r.yml".into(), rules.clone())],
                &f.group_eval_order,
                60_000,
                &Engine::default(),
            )
            .unwrap()
        };
        assert_eq!(test("[recording, alerting]"), Vec::<String>::new());
        // In file order the alert sees the previous evaluation's sum (5) at 1m.
        assert_eq!(test("[]").len(), 1);
    }

    #[test]
    fn templated_alert_labels_are_refused() {
        let rules = RuleFile::parse(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels: {who: '{{ $labels.job }}'}\n",
        )
        .unwrap();
        let e = load_rules(&[("r.yml".into(), rules)], &[], 60_000)
            .err()
            .unwrap();
        assert!(
            e.starts_with("r.yml: groups[0].rules[0].labels.who (A): templates"),
            "{e}"
        );
    }

    #[test]
    fn external_labels_and_url_bind_inside_actions_only() {
        let ext = BTreeMap::from([("cluster".to_string(), "eu \"1\"".to_string())]);
        let t = "$externalURL {{ $externalLabels.cluster }} {{ .ExternalURL }} {{ $externalLabels.nope }}";
        let bound = bind_externals(t, &ext, "http://x");
        assert_eq!(
            expand(&bound, &TemplateData::default()).unwrap(),
            "$externalURL eu \"1\" http://x "
        );
        assert_eq!(bind_externals("{{ $value }}", &ext, ""), "{{ $value }}");
    }

    #[test]
    fn globs_match_file_names_as_go_does() {
        let re = glob_regex("rules-?.y*ml").unwrap();
        assert!(re.is_match("rules-1.yml") && re.is_match("rules-a.yaml"));
        assert!(!re.is_match("rules-10.yml") && !re.is_match("xrules-1.yml"));
        let re = glob_regex("[ab]*.yml").unwrap();
        assert!(re.is_match("a1.yml") && !re.is_match("c.yml"));
        let re = glob_regex("[^ab].yml").unwrap();
        assert!(re.is_match("c.yml") && !re.is_match("a.yml"));
        assert!(glob_regex("[ab.yml").is_err());
    }

    #[test]
    fn rule_files_are_found_relative_to_the_test_file() {
        let dir = std::env::temp_dir().join(format!("firedrill-unittest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yml"), RULES).unwrap();
        std::fs::write(dir.join("b.yml"), "groups: []\n").unwrap();
        let RuleFiles { files, warnings } =
            load_rule_files(&dir, &["*.yml".into(), "missing.yml".into()]).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].0.ends_with("a.yml") && files[1].0.ends_with("b.yml"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("missing.yml"));
        std::fs::write(dir.join("c.yml"), "groups:\n  - name: g\n    rules: 3\n").unwrap();
        let e = load_rule_files(&dir, &["c.yml".into()]).unwrap_err();
        assert!(e.contains("c.yml") && e.contains("groups[0].rules"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
