//! The Prometheus text exposition format, version 0.0.4: pure, no I/O.
//!
//! ```text
//! # HELP http_requests_total Requests served.\nSecond line.
//! # TYPE http_requests_total counter
//! http_requests_total{method="post",code="200"} 1027 1395066363000
//! ```
//!
//! What is accepted follows Prometheus' own scrape parser: blank lines and other comments are
//! skipped; label sets may be empty (`{}`) or end in a comma; values are Go floats (`NaN`,
//! `+Inf`, `-Inf`, exponents); timestamps are integer milliseconds. What is rejected, with the
//! 1-based line and what was expected: invalid metric or label names, duplicate label names,
//! `__name__` as a label, unterminated label values, bad values or timestamps, trailing text, a
//! second `# TYPE` for a name, a `# TYPE` after the name's samples, an unknown type, histogram
//! buckets without a float `le`, summary quantiles without a float `quantile`.

use super::Labels;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A metric family's type, from its `# TYPE` line (`untyped` when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Classic buckets: `_bucket{le=...}`, `_sum`, `_count`.
    Histogram,
    /// Client-side quantiles: `{quantile=...}`, `_sum`, `_count`.
    Summary,
    /// Declared `untyped`, or no `# TYPE` line at all.
    Untyped,
}

impl MetricType {
    /// The name used in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }

    /// The type for a `# TYPE` line's word.
    pub fn from_name(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric family: the name of its `# HELP`/`# TYPE` lines, or of a sample that had none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// The family name (`foo` for a histogram's `foo_bucket`, `foo_sum`, `foo_count`).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// Whether a `# TYPE` line declared the type (false: `untyped` by default).
    pub typed: bool,
    /// The `# HELP` text, unescaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name as written (`foo_bucket`, not the family name `foo`).
    pub name: String,
    /// Its labels (without `__name__`), sorted by name, unescaped.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// The explicit timestamp, in milliseconds since the epoch, if the line had one.
    pub timestamp_ms: Option<i64>,
    /// Index into [`Exposition::families`] of the family the sample belongs to.
    pub family: usize,
}

/// A parsed exposition: families in order of first mention, samples in line order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every family: declared by `# HELP`/`# TYPE`, or implied (untyped) by a sample.
    pub families: Vec<Family>,
    /// Every sample.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The family called `name` (a family name, not a `_bucket`/`_sum`/`_count` sample name).
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The family `sample` belongs to.
    pub fn family_of(&self, sample: &Sample) -> &Family {
        &self.families[sample.family]
    }
}

/// Why an exposition was rejected: the 1-based line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong, and what was expected.
    pub message: String,
}

/// Parses a text exposition (format 0.0.4). Never panics, whatever the input.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut p = Parser::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        p.line(line).map_err(|message| ParseError {
            line: i + 1,
            message,
        })?;
    }
    Ok(p.out)
}

#[derive(Default)]
struct Parser {
    out: Exposition,
    /// Family name -> index in `out.families`.
    by_name: HashMap<String, usize>,
    /// Families that already have samples (a `# TYPE` after them is an error).
    has_samples: Vec<bool>,
    /// Families that already have a `# HELP` line.
    has_help: Vec<bool>,
}

type LineResult = Result<(), String>;

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_name_start(b: u8, colon: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':')
}

fn is_name_char(b: u8, colon: bool) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':')
}

/// Whether `s` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0], true) && b.iter().all(|&c| is_name_char(c, true))
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0], false) && b.iter().all(|&c| is_name_char(c, false))
}

/// A byte cursor over one line. Every position it stops at is next to an ASCII byte, so
/// slicing the `&str` there is always on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Takes a run of bytes that are not blanks (a value or a timestamp).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_blank(b)) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// Takes a run of name characters (possibly empty).
    fn name(&mut self, colon: bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| is_name_char(b, colon)) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A description of what is at the cursor, for messages.
    fn found(&self) -> String {
        match self.s[self.pos..].chars().next() {
            None => "end of line".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
}

impl Parser {
    fn line(&mut self, line: &str) -> LineResult {
        let mut c = Cursor::new(line);
        c.skip_blanks();
        match c.peek() {
            None => Ok(()),
            Some(b'#') => {
                c.pos += 1;
                self.comment(c)
            }
            Some(_) => self.sample(c),
        }
    }

    fn comment(&mut self, mut c: Cursor<'_>) -> LineResult {
        // `# HELP` and `# TYPE` need a blank after `#`; `#HELP` is a plain comment.
        if c.skip_blanks() == 0 {
            return Ok(());
        }
        let word = c.name(false);
        let is_help = word == "HELP";
        let is_type = word == "TYPE";
        if !(is_help || is_type) || c.skip_blanks() == 0 {
            // Any other comment (including a bare `# HELP` with nothing after it).
            if (is_help || is_type) && c.at_end() {
                return Err(format!("expected a metric name after # {word}"));
            }
            return Ok(());
        }
        let name = c.name(true);
        if name.is_empty() || !is_valid_metric_name(name) {
            return Err(format!(
                "expected a metric name after # {word}, found {}",
                if name.is_empty() {
                    c.found()
                } else {
                    format!("{name:?}")
                }
            ));
        }
        if !c.at_end() && c.skip_blanks() == 0 {
            return Err(format!(
                "invalid metric name in # {word}: unexpected {} after {name:?}",
                c.found()
            ));
        }
        if is_help {
            let idx = self.family_index(name);
            if self.has_help[idx] {
                return Err(format!("second # HELP line for {name}"));
            }
            self.has_help[idx] = true;
            self.out.families[idx].help = Some(unescape_help(c.rest()));
            return Ok(());
        }
        let ty = c.token();
        let kind = MetricType::from_name(ty).ok_or_else(|| {
            if ty.is_empty() {
                format!("expected a type after # TYPE {name} (counter, gauge, histogram, summary or untyped)")
            } else {
                format!("unknown metric type {ty:?} for {name}: expected counter, gauge, histogram, summary or untyped")
            }
        })?;
        c.skip_blanks();
        if !c.at_end() {
            return Err(format!(
                "unexpected {} after # TYPE {name} {ty}: expected end of line",
                c.found()
            ));
        }
        let idx = self.family_index(name);
        let fam = &mut self.out.families[idx];
        if fam.typed {
            return Err(format!("second # TYPE line for {name}"));
        }
        if self.has_samples[idx] {
            return Err(format!("# TYPE line for {name} after its samples"));
        }
        fam.kind = kind;
        fam.typed = true;
        Ok(())
    }

    /// The family called `name`, created (untyped, no help) when new.
    fn family_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.out.families.len();
        self.out.families.push(Family {
            name: name.to_string(),
            kind: MetricType::Untyped,
            typed: false,
            help: None,
        });
        self.has_samples.push(false);
        self.has_help.push(false);
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// The family a sample called `name` belongs to: its own name's, else the histogram or
    /// summary it is a `_bucket`/`_sum`/`_count` of, else a new untyped family.
    fn family_for_sample(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        for (suffix, kinds) in [
            ("_bucket", &[MetricType::Histogram][..]),
            ("_sum", &[MetricType::Histogram, MetricType::Summary][..]),
            ("_count", &[MetricType::Histogram, MetricType::Summary][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(&i) = self.by_name.get(base) {
                    if kinds.contains(&self.out.families[i].kind) {
                        return i;
                    }
                }
            }
        }
        self.family_index(name)
    }

    fn sample(&mut self, mut c: Cursor<'_>) -> LineResult {
        let name = c.name(true);
        if name.is_empty() || !is_valid_metric_name(name) {
            return Err(format!(
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), found {}",
                if name.is_empty() {
                    c.found()
                } else {
                    format!("{name:?}")
                }
            ));
        }
        let blanks = c.skip_blanks();
        let mut labels: Vec<(String, String)> = Vec::new();
        if c.peek() == Some(b'{') {
            c.pos += 1;
            labels = parse_labels(&mut c)?;
            c.skip_blanks();
        } else if blanks == 0 && !c.at_end() {
            return Err(format!(
                "unexpected {} after metric name {name:?}: expected '{{', a blank or a value",
                c.found()
            ));
        }
        let value_tok = c.token();
        if value_tok.is_empty() {
            return Err(format!("expected a value after {name}"));
        }
        let value = parse_value(value_tok)
            .ok_or_else(|| format!("expected a float value for {name}, found {value_tok:?}"))?;
        c.skip_blanks();
        let mut timestamp_ms = None;
        if !c.at_end() {
            let ts = c.token();
            timestamp_ms = Some(ts.parse::<i64>().map_err(|_| {
                format!("expected an integer timestamp in milliseconds for {name}, found {ts:?}")
            })?);
            c.skip_blanks();
            if !c.at_end() {
                return Err(format!(
                    "unexpected {} after the timestamp of {name}: expected end of line",
                    c.found()
                ));
            }
        }

        // Duplicate names are an error; sort to find them and to normalise the set.
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("duplicate label name {:?} in {name}", w[0].0));
        }
        let labels = Labels::from_sorted_unique(labels);

        let family = self.family_for_sample(name);
        self.has_samples[family] = true;
        let fam = &self.out.families[family];
        match fam.kind {
            MetricType::Histogram if name.ends_with("_bucket") && name != fam.name => {
                check_float_label(&labels, "le", name, "histogram bucket")?;
            }
            MetricType::Summary if name == fam.name => {
                check_float_label(&labels, "quantile", name, "summary quantile")?;
            }
            _ => {}
        }
        self.out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
            family,
        });
        Ok(())
    }
}

fn check_float_label(labels: &Labels, label: &str, name: &str, what: &str) -> LineResult {
    match labels.get(label) {
        None => Err(format!("{what} {name} needs a {label} label")),
        Some(v) if parse_value(v).is_none() => Err(format!(
            "{what} {name}: expected a float {label} label, found {v:?}"
        )),
        Some(_) => Ok(()),
    }
}

/// Labels after the opening `{`, through the closing `}`.
fn parse_labels(c: &mut Cursor<'_>) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    loop {
        c.skip_blanks();
        if c.peek() == Some(b'}') {
            c.pos += 1;
            return Ok(labels);
        }
        let start = c.pos;
        let lname = c.name(false);
        if lname.is_empty() || !is_valid_label_name(lname) {
            // Show the whole offending word, not just its first character.
            let mut end = start;
            let bytes = c.s.as_bytes();
            while end < bytes.len() && !matches!(bytes[end], b'=' | b',' | b'}' | b' ' | b'\t') {
                end += 1;
            }
            let word = c.s.get(start..end).unwrap_or("");
            return Err(if word.is_empty() {
                format!(
                    "expected a label name or '}}' in the label set, found {}",
                    c.found()
                )
            } else {
                format!("invalid label name {word:?}: expected [a-zA-Z_][a-zA-Z0-9_]*")
            });
        }
        if lname == super::METRIC_NAME_LABEL {
            return Err("label name \"__name__\" is reserved for the metric name".into());
        }
        c.skip_blanks();
        if c.peek() != Some(b'=') {
            return Err(format!(
                "expected '=' after label name {lname:?}, found {}",
                c.found()
            ));
        }
        c.pos += 1;
        c.skip_blanks();
        if c.peek() != Some(b'"') {
            return Err(format!(
                "expected '\"' to open the value of label {lname:?}, found {}",
                c.found()
            ));
        }
        c.pos += 1;
        let value = parse_label_value(c, lname)?;
        labels.push((lname.to_string(), value));
        c.skip_blanks();
        match c.peek() {
            Some(b',') => c.pos += 1,
            Some(b'}') => {
                c.pos += 1;
                return Ok(labels);
            }
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {lname:?}, found {}",
                    c.found()
                ))
            }
        }
    }
}

/// A quoted label value after its opening quote, through the closing quote, unescaped
/// (`\\`, `\"`, `\n`; any other escaped character is kept as written, as Prometheus does).
fn parse_label_value(c: &mut Cursor<'_>, lname: &str) -> Result<String, String> {
    let bytes = c.s.as_bytes();
    let mut out = String::new();
    let mut run_start = c.pos;
    loop {
        match bytes.get(c.pos) {
            None => {
                return Err(format!(
                    "unterminated value of label {lname:?}: expected a closing '\"'"
                ))
            }
            Some(b'"') => {
                out.push_str(&c.s[run_start..c.pos]);
                c.pos += 1;
                return Ok(out);
            }
            Some(b'\\') => {
                out.push_str(&c.s[run_start..c.pos]);
                match bytes.get(c.pos + 1) {
                    None => {
                        return Err(format!(
                            "unterminated value of label {lname:?}: expected a closing '\"'"
                        ))
                    }
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    Some(_) => {
                        // Keep the backslash; the escaped character (maybe multi-byte) follows
                        // in the next run.
                        out.push('\\');
                        c.pos += 1;
                        run_start = c.pos;
                        continue;
                    }
                }
                c.pos += 2;
                run_start = c.pos;
            }
            Some(_) => c.pos += 1,
        }
    }
}

/// `# HELP` text unescaped: `\\` and `\n`; other escapes are kept as written.
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A Go-style float: decimal with optional exponent, `NaN`, `Inf`/`+Inf`/`-Inf` (any case).
pub fn parse_value(s: &str) -> Option<f64> {
    // Rust's grammar is Go's minus hex floats and underscores, which exporters do not write;
    // it also accepts "infinity" and "nan" in any case, as Go does.
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_line(text: &str) -> (usize, String) {
        let e = parse(text).expect_err("should fail");
        (e.line, e.message)
    }

    #[test]
    fn counters_gauges_help_and_type() {
        let text = "# HELP http_requests_total The total.\\nSecond \\\\ line.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{code=\"400\", method=\"post\"} 3 1395066363000\n\
                    \n\
                    # A plain comment\n\
                    #another\n\
                    # TYPE temp gauge\n\
                    temp -3.5e2\n";
        let e = parse(text).unwrap();
        assert_eq!(e.families.len(), 2);
        let f = e.family("http_requests_total").unwrap();
        assert_eq!(f.kind, MetricType::Counter);
        assert!(f.typed);
        assert_eq!(f.help.as_deref(), Some("The total.\nSecond \\ line."));
        assert_eq!(e.samples.len(), 3);
        let s = &e.samples[0];
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(
            s.labels.iter().collect::<Vec<_>>(),
            vec![("code", "200"), ("method", "post")]
        );
        assert_eq!(s.value, 1027.0);
        assert_eq!(s.timestamp_ms, Some(1395066363000));
        assert_eq!(e.family_of(s).name, "http_requests_total");
        assert_eq!(e.samples[2].value, -350.0);
        assert_eq!(e.family_of(&e.samples[2]).kind, MetricType::Gauge);
        assert_eq!(e.samples[2].timestamp_ms, None);
    }

    #[test]
    fn special_values_and_exponents() {
        let e = parse("a NaN\nb +Inf\nc -Inf\nd 1.5e-3\ne 2E10\nf -0\ng Inf\nh .5\n").unwrap();
        let v: Vec<f64> = e.samples.iter().map(|s| s.value).collect();
        assert!(v[0].is_nan());
        assert_eq!(v[1], f64::INFINITY);
        assert_eq!(v[2], f64::NEG_INFINITY);
        assert_eq!(v[3], 1.5e-3);
        assert_eq!(v[4], 2e10);
        assert_eq!(v[5], 0.0);
        assert_eq!(v[6], f64::INFINITY);
        assert_eq!(v[7], 0.5);
        assert!(e
            .families
            .iter()
            .all(|f| !f.typed && f.kind == MetricType::Untyped));
    }

    #[test]
    fn label_escapes_empty_sets_and_trailing_commas() {
        let text = "m{a=\"x\\\\y\",b=\"q\\\"uote\",c=\"new\\nline\",d=\"\\t kept\",e=\"ünï\"} 1\n\
                    m{} 2\n\
                    m{a=\"1\",} 3\n\
                    m { a = \"2\" , } 4\n\
                    m{a=\"}{,=\"} 5\n";
        let e = parse(text).unwrap();
        let l = &e.samples[0].labels;
        assert_eq!(l.get("a"), Some("x\\y"));
        assert_eq!(l.get("b"), Some("q\"uote"));
        assert_eq!(l.get("c"), Some("new\nline"));
        assert_eq!(l.get("d"), Some("\\t kept"));
        assert_eq!(l.get("e"), Some("ünï"));
        assert!(e.samples[1].labels.is_empty());
        assert_eq!(e.samples[2].labels.get("a"), Some("1"));
        assert_eq!(e.samples[3].labels.get("a"), Some("2"));
        assert_eq!(e.samples[4].labels.get("a"), Some("}{,="));
        assert_eq!(e.families.len(), 1);
    }

    #[test]
    fn histograms_and_summaries_attributed_to_their_family() {
        let text = "# HELP rpc_seconds RPC latency.\n\
                    # TYPE rpc_seconds histogram\n\
                    rpc_seconds_bucket{le=\"0.05\"} 24054\n\
                    rpc_seconds_bucket{le=\"1\"} 33444\n\
                    rpc_seconds_bucket{le=\"+Inf\"} 144320\n\
                    rpc_seconds_sum 53423\n\
                    rpc_seconds_count 144320\n\
                    # TYPE q summary\n\
                    q{quantile=\"0.5\"} 4773\n\
                    q{quantile=\"0.99\"} NaN\n\
                    q_sum 1.7560473e+07\n\
                    q_count 2693\n\
                    # TYPE rpc_seconds_count_total counter\n\
                    rpc_seconds_count_total 1\n\
                    other_count 5\n";
        let e = parse(text).unwrap();
        let names: Vec<(&str, &str)> = e
            .samples
            .iter()
            .map(|s| (s.name.as_str(), e.family_of(s).name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("rpc_seconds_bucket", "rpc_seconds"),
                ("rpc_seconds_bucket", "rpc_seconds"),
                ("rpc_seconds_bucket", "rpc_seconds"),
                ("rpc_seconds_sum", "rpc_seconds"),
                ("rpc_seconds_count", "rpc_seconds"),
                ("q", "q"),
                ("q", "q"),
                ("q_sum", "q"),
                ("q_count", "q"),
                ("rpc_seconds_count_total", "rpc_seconds_count_total"),
                ("other_count", "other_count"),
            ]
        );
        assert_eq!(e.family("rpc_seconds").unwrap().kind, MetricType::Histogram);
        assert_eq!(e.family("q").unwrap().kind, MetricType::Summary);
        assert_eq!(e.family("other_count").unwrap().kind, MetricType::Untyped);
        assert_eq!(e.samples[2].labels.get("le"), Some("+Inf"));
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "ok 1\nm{a=\"1\",a=\"2\"} 1\n",
                2,
                "duplicate label name \"a\"",
            ),
            ("1abc 1\n", 1, "expected a metric name"),
            ("m-x 1\n", 1, "after metric name \"m\""),
            ("m{1a=\"x\"} 1\n", 1, "invalid label name \"1a\""),
            ("m{a-b=\"x\"} 1\n", 1, "expected '='"),
            ("m{a:b=\"x\"} 1\n", 1, "expected '='"),
            ("m{__name__=\"x\"} 1\n", 1, "reserved"),
            ("m{a=\"x} 1\n", 1, "unterminated value of label \"a\""),
            ("m{a=x} 1\n", 1, "expected '\"' to open"),
            ("m{a=\"x\" b=\"y\"} 1\n", 1, "expected ',' or '}'"),
            ("m{,} 1\n", 1, "expected a label name or '}'"),
            ("m{a=\"x\"\n", 1, "expected ',' or '}'"),
            ("m\n", 1, "expected a value after m"),
            ("m{}\n", 1, "expected a value after m"),
            ("m abc\n", 1, "expected a float value for m, found \"abc\""),
            ("m 1 12.5\n", 1, "expected an integer timestamp"),
            ("m 1 12 extra\n", 1, "after the timestamp"),
            (
                "# TYPE m counter\n# TYPE m gauge\n",
                2,
                "second # TYPE line for m",
            ),
            ("# HELP m a\n# HELP m b\n", 2, "second # HELP line for m"),
            ("m 1\n# TYPE m counter\n", 2, "after its samples"),
            ("# TYPE m countr\n", 1, "unknown metric type \"countr\""),
            ("# TYPE m\n", 1, "expected a type after # TYPE m"),
            ("# TYPE m counter extra\n", 1, "expected end of line"),
            (
                "# TYPE 9m counter\n",
                1,
                "expected a metric name after # TYPE",
            ),
            ("# HELP\n", 1, "expected a metric name after # HELP"),
            ("# TYPE h histogram\nh_bucket 1\n", 2, "needs a le label"),
            (
                "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
                2,
                "expected a float le",
            ),
            ("# TYPE s summary\ns 1\n", 2, "needs a quantile label"),
        ];
        for (text, line, needle) in cases {
            let (l, msg) = err_line(text);
            assert_eq!(l, *line, "{text:?}: {msg}");
            assert!(msg.contains(needle), "{text:?}: {msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn crlf_and_leading_blanks() {
        let e = parse("# TYPE m gauge\r\n  m{a=\"1\"}\t2\t 3\r\n").unwrap();
        assert_eq!(e.samples[0].value, 2.0);
        assert_eq!(e.samples[0].timestamp_ms, Some(3));
        assert_eq!(e.family("m").unwrap().kind, MetricType::Gauge);
    }

    #[test]
    fn reference_server_exposition_parses_fully_typed() {
        use reference_server::metrics::Metrics;
        use reference_server::types::Tier;
        let m = Metrics::new(Default::default());
        m.init_series(&Tier::ALL, &["sdxl-mini", "flux-mini"], &[]);
        m.generation_time_seconds
            .with_label_values(&["fast", "sdxl-mini", "euler", "false"])
            .observe(1.5);
        m.warm_pool_hit_rate.set(0.75);
        let text = m.encode();
        let e = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(e.samples.len() > 100, "{} samples", e.samples.len());
        for f in &e.families {
            assert!(f.typed, "family {} has no # TYPE", f.name);
            assert!(f.help.is_some(), "family {} has no # HELP", f.name);
        }
        let fam = e.family("generation_time_seconds").unwrap();
        assert_eq!(fam.kind, MetricType::Histogram);
        let buckets = e
            .samples
            .iter()
            .filter(|s| s.name == "generation_time_seconds_bucket")
            .count();
        assert!(buckets > 0);
        assert!(e
            .samples
            .iter()
            .filter(|s| s.name.ends_with("_bucket"))
            .all(|s| e.family_of(s).kind == MetricType::Histogram));
        assert!(e
            .samples
            .iter()
            .any(|s| s.name == "warm_pool_hit_rate" && s.value == 0.75));
    }

    /// A small deterministic generator (xorshift) so the test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        use std::time::Duration;
        const PIECES: &[&str] = &[
            "#",
            " ",
            "\t",
            "HELP",
            "TYPE",
            "counter",
            "histogram",
            "summary",
            "m",
            "m_bucket",
            "m_sum",
            "m_count",
            "{",
            "}",
            "\"",
            "\\",
            "\\\\",
            "\\\"",
            "\\n",
            "=",
            ",",
            "le",
            "quantile",
            "1",
            "-",
            "+Inf",
            "NaN",
            "1e3",
            "9999999999999999999999",
            ".",
            "ü",
            "é\\",
            "\n",
            "\r",
            "__name__",
            "_",
            ":",
            "0x1p3",
            "€",
        ];
        let seeds = [
            "# HELP m help \\n\n# TYPE m histogram\nm_bucket{le=\"1\"} 1\nm_sum 2\nm_count 1\n",
            "x{a=\"b\",c=\"d\",} 1 1000\n",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut store = crate::scrape::SeriesStore::with_retention(Duration::from_secs(10));
        let mut parsed = 0;
        for i in 0..20_000 {
            let mut s = String::new();
            if i % 3 == 0 {
                // Mutate a valid exposition: insert, delete or replace at a char boundary.
                let seed: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
                let mut v = seed.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(v.len() + 1);
                    match rng.below(3) {
                        0 => {
                            let p = PIECES[rng.below(PIECES.len())];
                            for (k, ch) in p.chars().enumerate() {
                                v.insert(at + k, ch);
                            }
                        }
                        1 if at < v.len() => {
                            v.remove(at);
                        }
                        _ if at < v.len() => v[at] = (rng.below(128) as u8) as char,
                        _ => {}
                    }
                }
                s.extend(v);
            } else {
                for _ in 0..rng.below(24) {
                    s.push_str(PIECES[rng.below(PIECES.len())]);
                }
            }
            // Must return, never panic; errors must carry a real line number; whatever parses
            // must ingest.
            match parse(&s) {
                Err(e) => {
                    assert!(e.line >= 1 && e.line <= s.split('\n').count(), "{s:?}: {e}")
                }
                Ok(e) => {
                    parsed += 1;
                    store.ingest_scrape(i, "j", "i", Ok::<_, String>(&e), Default::default());
                }
            }
        }
        assert!(
            parsed > 1000,
            "only {parsed} inputs parsed: the generator is too harsh"
        );
    }
}
