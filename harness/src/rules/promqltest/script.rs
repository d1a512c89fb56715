//! The script format (`FORMAT.md`): `load`, `clear` and `eval` commands, parsed as Prometheus'
//! `promqltest` parses them (lines trimmed, `#` comments become blank lines, a blank line ends a
//! block, commands recognized by their first word in any case).

use super::series::{parse_duration, parse_number, parse_series_desc, take_quoted, SeqValue};
use crate::scrape::Labels;
use regex::Regex;
use std::fmt;
use std::sync::OnceLock;

/// A script error at a 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

fn err(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// A parsed script: its commands in order.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// The commands.
    pub commands: Vec<Command>,
}

/// One command.
#[derive(Debug, Clone)]
pub enum Command {
    /// `load <interval>` and its series.
    Load(Load),
    /// `clear`: drop all loaded data.
    Clear {
        /// 1-based line.
        line: usize,
    },
    /// `eval ...` and its expectations.
    Eval(Box<Eval>),
}

/// `load <interval>` (or `load_with_nhcb`).
#[derive(Debug, Clone)]
pub struct Load {
    /// 1-based line of the command.
    pub line: usize,
    /// Step between points.
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also loaded as native histograms with custom
    /// buckets (out of scope; the float series are still loaded).
    pub with_nhcb: bool,
    /// The series, in order.
    pub series: Vec<LoadSeries>,
}

/// One series of a `load`.
#[derive(Debug, Clone)]
pub struct LoadSeries {
    /// 1-based line.
    pub line: usize,
    /// The labels (metric name as `__name__`).
    pub labels: Labels,
    /// Point `i` is at `i * interval`.
    pub values: Vec<SeqValue>,
    /// Uses native-histogram notation: not loaded.
    pub histogram: bool,
}

/// What an eval runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalKind {
    /// `eval instant at <t>`.
    Instant {
        /// Evaluation time.
        at_ms: i64,
    },
    /// `eval range from <a> to <b> step <s>`.
    Range {
        /// First step.
        start_ms: i64,
        /// Last step (inclusive).
        end_ms: i64,
        /// Step.
        step_ms: i64,
    },
}

/// How an expected message (error or annotation) is matched.
#[derive(Debug, Clone)]
pub enum MsgMatch {
    /// Any message (no `msg:`/`regex:`).
    Any,
    /// `msg: text`, exact.
    Exact(String),
    /// `regex: pattern` (unanchored, as Go's `MatchString`).
    Regex(Regex),
}

impl MsgMatch {
    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        match self {
            MsgMatch::Any => true,
            MsgMatch::Exact(m) => m == s,
            MsgMatch::Regex(r) => r.is_match(s),
        }
    }
}

impl fmt::Display for MsgMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgMatch::Any => f.write_str("any message"),
            MsgMatch::Exact(m) => write!(f, "message {m:?}"),
            MsgMatch::Regex(r) => write!(f, "pattern {:?}", r.as_str()),
        }
    }
}

/// An expected series: labels and points (one for an instant vector; for a range result,
/// point `i` is at `start + i * step`, `_` meaning none there).
#[derive(Debug, Clone)]
pub struct ExpectedSeries {
    /// 1-based line.
    pub line: usize,
    /// 1-based position among the expected series (for `expect ordered`).
    pub pos: usize,
    /// The labels.
    pub labels: Labels,
    /// The points.
    pub values: Vec<SeqValue>,
}

/// An `eval` command.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line of the command.
    pub line: usize,
    /// The PromQL query.
    pub query: String,
    /// Instant or range.
    pub kind: EvalKind,
    /// `expect range vector from A to B step S` on an instant query: the query runs at B and
    /// its matrix points are expected at A, A+S, ...
    pub range_vector: Option<(i64, i64, i64)>,
    /// `expect fail` (or `eval_fail`, with `expected_fail_message`/`_regexp`).
    pub fail: Option<MsgMatch>,
    /// `expect ordered` (or `eval_ordered`).
    pub ordered: bool,
    /// `expect warn` lines (or `eval_warn`: one [`MsgMatch::Any`]).
    pub warn: Vec<MsgMatch>,
    /// `expect info` lines (or `eval_info`).
    pub info: Vec<MsgMatch>,
    /// `expect no_warn`.
    pub no_warn: bool,
    /// `expect no_info`.
    pub no_info: bool,
    /// `expect string "..."`.
    pub expected_string: Option<String>,
    /// A plain number line: a scalar is expected.
    pub expected_scalar: Option<f64>,
    /// Expected series (later lines for the same labels replace earlier ones, as in Go).
    pub expected: Vec<ExpectedSeries>,
    /// Some expected value uses native-histogram notation.
    pub expects_histogram: bool,
}

impl Eval {
    /// How many annotation expectations the eval has: `expect warn`/`info` lines (an
    /// `eval_warn`/`eval_info` counts as one), `expect no_warn` and `expect no_info`.
    pub fn annotation_expectations(&self) -> usize {
        self.warn.len() + self.info.len() + usize::from(self.no_warn) + usize::from(self.no_info)
    }

    /// The instant query's evaluation time (the range vector's end with `expect range vector`).
    pub fn instant_time(&self) -> Option<i64> {
        match self.kind {
            EvalKind::Instant { at_ms } => Some(self.range_vector.map_or(at_ms, |(_, end, _)| end)),
            EvalKind::Range { .. } => None,
        }
    }

    fn expect_series(&mut self, line: usize, labels: Labels, values: Vec<SeqValue>) {
        let pos = self.expected.len() + 1;
        self.expected.retain(|e| e.labels != labels);
        self.expected.push(ExpectedSeries {
            line,
            pos,
            labels,
            values,
        });
    }
}

struct Patterns {
    load: Regex,
    instant: Regex,
    range: Regex,
    expect: Regex,
    expect_range: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("static pattern");
        Patterns {
            load: re(r"^load(?:_(with_nhcb))?\s+(.+?)$"),
            instant: re(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$"),
            range: re(
                r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
            ),
            expect: re(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$"),
            expect_range: re(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$"),
        }
    })
}

const RANGE_VECTOR_PREFIX: &str = "expect range vector";
const STRING_PREFIX: &str = "expect string";

/// Parses a script.
pub fn parse_script(text: &str) -> Result<Script, ScriptError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect();
    let mut script = Script::default();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let first = l
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if first == "clear" {
            script.commands.push(Command::Clear { line: i + 1 });
            i += 1;
        } else if first.starts_with("load") {
            let (next, load) = parse_load(&lines, i)?;
            script.commands.push(Command::Load(load));
            i = next;
        } else if first.starts_with("eval") {
            let (next, eval) = parse_eval(&lines, i)?;
            script.commands.push(Command::Eval(Box::new(eval)));
            i = next;
        } else {
            return Err(err(i + 1, format!("invalid command {l:?}")));
        }
    }
    Ok(script)
}

/// The block of definition lines after line `i`: up to the next blank line.
fn block_end(lines: &[&str], i: usize) -> usize {
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        j += 1;
    }
    j
}

fn parse_load(lines: &[&str], i: usize) -> Result<(usize, Load), ScriptError> {
    let line = i + 1;
    let Some(c) = patterns().load.captures(lines[i]) else {
        return Err(err(
            line,
            "invalid load command (load[_with_nhcb] <step:duration>)",
        ));
    };
    let step = &c[2];
    let interval_ms = parse_duration(step)
        .map_err(|e| err(line, format!("invalid step definition {step:?}: {e}")))?;
    let mut load = Load {
        line,
        interval_ms,
        with_nhcb: c.get(1).is_some(),
        series: Vec::new(),
    };
    let end = block_end(lines, i);
    for (j, def) in lines.iter().enumerate().take(end).skip(i + 1) {
        if is_start_timestamp_line(def) {
            // `metric@st <offsets>`: start timestamps, which this store does not keep.
            continue;
        }
        let d = parse_series_desc(def).map_err(|e| err(j + 1, e))?;
        // Within one load, a later line for the same series replaces an earlier one.
        load.series.retain(|s| s.labels != d.labels);
        load.series.push(LoadSeries {
            line: j + 1,
            labels: d.labels,
            values: d.values,
            histogram: d.histogram,
        });
    }
    Ok((end, load))
}

fn is_start_timestamp_line(def: &str) -> bool {
    def.split([' ', '\t'])
        .next()
        .is_some_and(|w| w.ends_with("@st"))
}

fn parse_eval(lines: &[&str], i: usize) -> Result<(usize, Eval), ScriptError> {
    let line = i + 1;
    let p = patterns();
    let text = lines[i];
    let (modifier, kind, query) = if let Some(c) = p.instant.captures(text) {
        let at = c.get(2).map_or("", |m| m.as_str());
        let at_ms = parse_duration(at)
            .map_err(|e| err(line, format!("invalid timestamp definition {at:?}: {e}")))?;
        (
            c.get(1).map(|m| m.as_str().to_string()),
            EvalKind::Instant { at_ms },
            c[3].to_string(),
        )
    } else if let Some(c) = p.range.captures(text) {
        let (start_ms, end_ms, step_ms) =
            parse_range(&c[2], &c[3], &c[4]).map_err(|e| err(line, e))?;
        (
            c.get(1).map(|m| m.as_str().to_string()),
            EvalKind::Range {
                start_ms,
                end_ms,
                step_ms,
            },
            c[5].to_string(),
        )
    } else {
        return Err(err(
            line,
            "invalid evaluation command: must be 'eval[_fail|_warn|_info|_ordered] instant at \
             <time> <query>' or 'eval[_fail|_warn|_info] range from <from> to <to> step <step> \
             <query>'",
        ));
    };
    let is_instant = matches!(kind, EvalKind::Instant { .. });
    let mut ev = Eval {
        line,
        query,
        kind,
        range_vector: None,
        fail: None,
        ordered: false,
        warn: Vec::new(),
        info: Vec::new(),
        no_warn: false,
        no_info: false,
        expected_string: None,
        expected_scalar: None,
        expected: Vec::new(),
        expects_histogram: false,
    };
    let deprecated_fail = modifier.as_deref() == Some("fail");
    match modifier.as_deref() {
        Some("fail") => ev.fail = Some(MsgMatch::Any),
        Some("warn") => ev.warn.push(MsgMatch::Any),
        Some("info") => ev.info.push(MsgMatch::Any),
        Some("ordered") => ev.ordered = true,
        _ => {}
    }
    let mut j = i;
    while j + 1 < lines.len() {
        j += 1;
        let def = lines[j];
        let dline = j + 1;
        if def.is_empty() {
            return Ok((j, ev));
        }
        if deprecated_fail {
            if let Some(m) = def.strip_prefix("expected_fail_message") {
                ev.fail = Some(MsgMatch::Exact(m.trim().to_string()));
                return Ok((j + 1, ev));
            }
            if let Some(m) = def.strip_prefix("expected_fail_regexp") {
                let pattern = m.trim();
                let r = Regex::new(pattern).map_err(|e| {
                    err(
                        dline,
                        format!("invalid regexp {pattern:?} for expected_fail_regexp: {e}"),
                    )
                })?;
                ev.fail = Some(MsgMatch::Regex(r));
                return Ok((j + 1, ev));
            }
        }
        if def.starts_with(RANGE_VECTOR_PREFIX) {
            let Some(c) = p.expect_range.captures(def) else {
                return Err(err(
                    dline,
                    format!("invalid range vector definition {def:?}"),
                ));
            };
            let rv = parse_range(&c[1], &c[2], &c[3]).map_err(|e| err(dline, e))?;
            ev.range_vector = Some(rv);
            continue;
        }
        if let Some(after_prefix) = def.strip_prefix(STRING_PREFIX) {
            let rest = after_prefix.strip_prefix(' ').unwrap_or("");
            let bad = || {
                err(
                    dline,
                    "expected string literal not valid - a correctly quoted string literal is \
                     required",
                )
            };
            if rest.is_empty() {
                return Err(bad());
            }
            let (s, after) = take_quoted(rest).map_err(|_| bad())?;
            if !after.is_empty() {
                return Err(bad());
            }
            ev.expected_string = Some(s);
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            parse_expect(def, &mut ev).map_err(|e| err(dline, e))?;
            continue;
        }
        if let Some(v) = parse_number(def) {
            ev.expected_scalar = Some(v);
            return Ok((j + 1, ev));
        }
        let d = parse_series_desc(def).map_err(|e| err(dline, e))?;
        if d.histogram {
            ev.expects_histogram = true;
        }
        if d.values.len() > 1 && is_instant && ev.range_vector.is_none() {
            return Err(err(
                dline,
                "expecting multiple values in instant evaluation not allowed; consider using \
                 'expect range vector' to expect a range vector from an instant query",
            ));
        }
        ev.expect_series(dline, d.labels, d.values);
    }
    Ok((lines.len(), ev))
}

fn parse_range(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let start =
        parse_duration(from).map_err(|e| format!("invalid start timestamp {from:?}: {e}"))?;
    let end = parse_duration(to).map_err(|e| format!("invalid end timestamp {to:?}: {e}"))?;
    if end < start {
        return Err(format!(
            "end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let step = parse_duration(step).map_err(|e| format!("invalid step {step:?}: {e}"))?;
    if step <= 0 {
        return Err("the step must be positive".into());
    }
    Ok((start, end, step))
}

fn parse_expect(def: &str, ev: &mut Eval) -> Result<(), String> {
    let Some(c) = patterns().expect.captures(def.trim()) else {
        return Err(
            "invalid expect statement, must match `expect <type> <match_type>: <string>`".into(),
        );
    };
    let kind = &c[1];
    let m = match c.get(2).map(|m| m.as_str()) {
        None => MsgMatch::Any,
        Some("msg") => MsgMatch::Exact(c[3].trim().to_string()),
        Some(_) => {
            let pattern = c[3].trim();
            MsgMatch::Regex(
                Regex::new(pattern)
                    .map_err(|e| format!("invalid regex {pattern:?} for {kind}: {e}"))?,
            )
        }
    };
    match kind {
        "fail" => {
            if ev.fail.is_some() {
                return Err(
                    "invalid expect lines, multiple expect fail lines are not allowed".into(),
                );
            }
            ev.fail = Some(m);
        }
        "ordered" => ev.ordered = true,
        "warn" => ev.warn.push(m),
        "info" => ev.info.push(m),
        "no_warn" => ev.no_warn = true,
        _ => ev.no_info = true,
    }
    if !ev.info.is_empty() && ev.no_info {
        return Err("invalid expect lines, info and no_info cannot be used together".into());
    }
    if !ev.warn.is_empty() && ev.no_warn {
        return Err("invalid expect lines, warn and no_warn cannot be used together".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::is_stale;

    fn evals(s: &Script) -> Vec<&Eval> {
        s.commands
            .iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(&**e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn load_clear_and_eval() {
        let text = "# comment\nload 1m\n  m{a=\"1\"} 0+1x2 _ stale\n  n 5\n\neval instant at 2m m\n  m{a=\"1\"} 2\n\nclear\n";
        let s = parse_script(text).unwrap();
        assert_eq!(s.commands.len(), 3);
        let Command::Load(l) = &s.commands[0] else {
            panic!("load expected")
        };
        assert_eq!((l.line, l.interval_ms, l.series.len()), (2, 60_000, 2));
        assert_eq!(l.series[0].values.len(), 5);
        assert_eq!(l.series[0].values[3], SeqValue::Omitted);
        assert!(is_stale(l.series[0].values[4].value()));
        let e = evals(&s)[0];
        assert_eq!(e.line, 6);
        assert_eq!(e.query, "m");
        assert_eq!(e.kind, EvalKind::Instant { at_ms: 120_000 });
        assert_eq!(e.expected.len(), 1);
        assert_eq!(e.expected[0].line, 7);
        assert!(matches!(s.commands[2], Command::Clear { line: 9 }));
    }

    #[test]
    fn a_comment_ends_a_block() {
        let text = "load 1m\n  a 1\n# stop\n  b 2\n";
        // `b 2` after the comment is not part of the load: it is an invalid command.
        let e = parse_script(text).unwrap_err();
        assert_eq!(e.line, 4);
    }

    #[test]
    fn expectations() {
        let text = "eval range from 0 to 2m step 1m sum(x)\n  expect warn msg: PromQL warning: w (1:5)\n  expect info regex: inf(o|x)\n  {} 1 _ 3\n\n\
                    eval instant at 1m y\n  expect fail msg: boom\n\n\
                    eval instant at 1m sort(z)\n  expect ordered\n  expect no_warn\n  expect no_info\n  z{a=\"2\"} 1\n  z{a=\"1\"} 2\n\n\
                    eval instant at 50m \"Foo\"\n  expect string `Foo`\n\n\
                    eval instant at 1m v[1m]\n  expect range vector from 10s to 1m step 10s\n  v 1 2 3 4 5 6\n\n\
                    eval instant at 1m 1+1\n  2\n";
        let s = parse_script(text).unwrap();
        let e = evals(&s);
        assert_eq!(e.len(), 6);
        assert_eq!(
            e[0].kind,
            EvalKind::Range {
                start_ms: 0,
                end_ms: 120_000,
                step_ms: 60_000
            }
        );
        assert!(e[0].warn[0].matches("PromQL warning: w (1:5)"));
        assert!(e[0].info[0].matches("infx"));
        assert_eq!(
            e[0].expected[0].values,
            vec![
                SeqValue::Float(1.0),
                SeqValue::Omitted,
                SeqValue::Float(3.0)
            ]
        );
        assert!(matches!(&e[1].fail, Some(MsgMatch::Exact(m)) if m == "boom"));
        assert!(e[2].ordered && e[2].no_warn && e[2].no_info);
        assert_eq!(e[2].expected[1].pos, 2);
        assert_eq!(e[3].expected_string.as_deref(), Some("Foo"));
        assert_eq!(e[4].range_vector, Some((10_000, 60_000, 10_000)));
        assert_eq!(e[4].instant_time(), Some(60_000));
        assert_eq!(e[5].expected_scalar, Some(2.0));
    }

    #[test]
    fn deprecated_forms() {
        let text = "eval_fail instant at 0 f(x)\n  expected_fail_message some error\n\n\
                    eval_fail instant at 0 f(x)\n  expected_fail_regexp err.r\n\n\
                    eval_ordered instant at 0 sort(x)\n  x 1\n\n\
                    eval_warn range from 0 to 1m step 1m x\n\n\
                    eval_info instant at 0 x\n";
        let s = parse_script(text).unwrap();
        let e = evals(&s);
        assert!(matches!(&e[0].fail, Some(MsgMatch::Exact(m)) if m == "some error"));
        assert!(e[1].fail.as_ref().unwrap().matches("my error!"));
        assert!(e[2].ordered);
        assert_eq!(e[3].warn.len(), 1);
        assert_eq!(e[4].info.len(), 1);
    }

    #[test]
    fn histogram_expectations_are_flagged() {
        let text = "eval instant at 0 h\n  h {{count:1}}\n";
        let s = parse_script(text).unwrap();
        assert!(evals(&s)[0].expects_histogram);
    }

    #[test]
    fn errors_carry_lines() {
        for (text, line) in [
            ("bogus\n", 1),
            ("load\n", 1),
            ("load 1x\n", 1),
            ("load 1m\n  m{a=} 1\n", 2),
            ("eval instant at 1m\n", 1),
            ("eval instant at x q\n", 1),
            ("eval range from 2m to 1m step 1m q\n", 1),
            ("eval instant at 1m q\n  expect bogus\n", 2),
            ("eval instant at 1m q\n  expect fail\n  expect fail\n", 3),
            ("eval instant at 1m q\n  expect info\n  expect no_info\n", 3),
            ("eval instant at 1m q\n  expect warn regex: (\n", 2),
            ("eval instant at 1m q\n  m 1 2\n", 2),
            ("eval instant at 1m q\n  expect string Foo\n", 2),
            ("eval instant at 1m q\n  expect range vector from 1m\n", 2),
            ("eval instant at 1m q\n  1\n  m 2\n", 3),
        ] {
            let e = parse_script(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
