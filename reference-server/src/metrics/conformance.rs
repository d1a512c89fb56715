//! Checking a Prometheus text exposition (format 0.0.4) against the catalog, and running
//! `promtool check metrics` on it.
//!
//! [`catalog_problems`] is what the unit tests run on the registry's own encoding and what
//! `tests/metrics.rs` runs on a live `/metrics` scrape: it lists every way the exposition and the
//! catalog disagree instead of stopping at the first, so one failing run shows the whole drift.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};

use super::{MetricKind, MetricSpec, MetricUnits};

/// One parsed sample line.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// What the exposition says about one metric family.
#[derive(Default)]
struct Family {
    /// The `# TYPE` word, if there was a TYPE line.
    kind: Option<String>,
    /// The unescaped `# HELP` text, if there was a HELP line.
    help: Option<String>,
    /// Label-name sets seen on the family's samples (`le` removed from histogram buckets).
    label_sets: BTreeSet<Vec<String>>,
    /// Histogram buckets per series (keyed by the series' other labels): `(le, count)` in order.
    buckets: BTreeMap<String, Vec<(String, f64)>>,
    /// Histogram `_count` per series.
    counts: BTreeMap<String, f64>,
    /// Series with a histogram `_sum`.
    sums: BTreeSet<String>,
    /// Problems with individual samples, already phrased.
    stray: Vec<String>,
    samples: usize,
}

/// Renders labels as `{a="x",b="y"}` (empty for none), to name a series in a problem.
fn series_key(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Whether `s` is a valid metric (`colons`) or label name.
fn valid_name(s: &str, colons: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    let mut chars = s.chars();
    chars.next().is_some_and(ok) && chars.all(|c| ok(c) || c.is_ascii_digit())
}

/// Parses `a="x",b="y"}` (the part after `{`); returns the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| "label without `=`".to_string())?;
        let name = rest[..eq].trim().to_string();
        if !valid_name(&name, false) {
            return Err(format!("invalid label name {name:?}"));
        }
        let after = rest[eq + 1..].trim_start();
        let quoted = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}: unquoted value"))?;
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i + 1);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or_else(|| format!("label {name}: unterminated value"))?;
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label {name} given twice"));
        }
        rest = &quoted[end..];
    }
}

/// Parses one sample line: `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| "sample without a value".to_string())?;
    let name = line[..name_end].to_string();
    if !valid_name(&name, true) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (BTreeMap::new(), &line[name_end..]),
    };
    let mut fields = rest.split_whitespace();
    let raw = fields
        .next()
        .ok_or_else(|| "sample without a value".to_string())?;
    let value = raw
        .parse::<f64>()
        .map_err(|_| format!("value {raw:?} is not a number"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("timestamp {ts:?} is not an integer"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Undoes the `# HELP` escapes (`\\` and `\n`).
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Groups an exposition by family, resolving histogram suffixes through `# TYPE` lines. Lines
/// that cannot be parsed become problems, and parsing goes on with the next line.
fn parse_exposition(text: &str) -> (BTreeMap<String, Family>, Vec<String>) {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let fam = fams.entry(name.into()).or_default();
            if fam.help.replace(unescape_help(help)).is_some() {
                problems.push(format!("line {n}: {name}: second # HELP line"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                problems.push(format!("line {n}: # TYPE without a type: {line}"));
                continue;
            };
            let fam = fams.entry(name.into()).or_default();
            if fam.samples > 0 {
                problems.push(format!("line {n}: {name}: # TYPE after its samples"));
            }
            if fam.kind.replace(kind.trim().into()).is_some() {
                problems.push(format!("line {n}: {name}: second # TYPE line"));
            }
        } else if line.starts_with('#') {
            continue;
        } else {
            let mut sample = match parse_sample(line) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("line {n}: {e}: {line}"));
                    continue;
                }
            };
            let histogram_of = |name: &str| {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = name.strip_suffix(suffix)?;
                    let f = fams.get(base)?;
                    (f.kind.as_deref() == Some("histogram")).then(|| (base.to_string(), *suffix))
                })
            };
            let (family, suffix) = match histogram_of(&sample.name) {
                Some((base, suffix)) => (base, Some(suffix)),
                None => {
                    if fams.get(&sample.name).is_none_or(|f| f.kind.is_none()) {
                        problems.push(format!(
                            "line {n}: sample {} has no # TYPE line",
                            sample.name
                        ));
                    }
                    (sample.name.clone(), None)
                }
            };
            let fam = fams.entry(family.clone()).or_default();
            fam.samples += 1;
            if fam.kind.as_deref() == Some("histogram") {
                let le = sample.labels.remove("le");
                let key = series_key(&sample.labels);
                match (suffix, le) {
                    (Some("_bucket"), Some(le)) => {
                        fam.buckets.entry(key).or_default().push((le, sample.value))
                    }
                    (Some("_bucket"), None) => fam
                        .stray
                        .push(format!("line {n}: {family}_bucket{key} without le")),
                    (Some("_count"), _) => {
                        fam.counts.insert(key, sample.value);
                    }
                    (Some(_), _) => {
                        fam.sums.insert(key);
                    }
                    (None, _) => fam.stray.push(format!(
                        "line {n}: histogram sample {family}{key} without a _bucket, _sum or \
                         _count suffix"
                    )),
                }
            }
            fam.label_sets
                .insert(sample.labels.keys().cloned().collect::<Vec<_>>());
        }
    }
    (fams, problems)
}

/// Checks the histogram series of one family against the buckets the catalog exports.
fn histogram_problems(name: &str, fam: &Family, want: &[f64], problems: &mut Vec<String>) {
    if fam.buckets.is_empty() {
        problems.push(format!("{name}: histogram without _bucket samples"));
    }
    let series: BTreeSet<&String> = fam
        .buckets
        .keys()
        .chain(fam.counts.keys())
        .chain(fam.sums.iter())
        .collect();
    for key in series {
        let at = format!("{name}{key}");
        let les = fam.buckets.get(key).map(Vec::as_slice).unwrap_or_default();
        let Some((last_le, inf_count)) = les.last() else {
            problems.push(format!("{at}: no _bucket samples"));
            continue;
        };
        let has_inf = last_le.parse::<f64>() == Ok(f64::INFINITY);
        let finite = if has_inf {
            &les[..les.len() - 1]
        } else {
            problems.push(format!(
                "{at}: +Inf bucket missing (last bucket is le={last_le:?})"
            ));
            les
        };
        let got: Result<Vec<f64>, _> = finite.iter().map(|(le, _)| le.parse::<f64>()).collect();
        match got {
            Ok(got) if got == want => {}
            Ok(got) => problems.push(format!("{at}: buckets {got:?}, catalog says {want:?}")),
            Err(_) => {
                let les: Vec<&str> = finite.iter().map(|(le, _)| le.as_str()).collect();
                problems.push(format!("{at}: unparsable le among {les:?}"))
            }
        }
        if les.windows(2).any(|w| w[1].1 < w[0].1) {
            problems.push(format!("{at}: bucket counts are not cumulative"));
        }
        match fam.counts.get(key) {
            None => problems.push(format!("{at}: no _count sample")),
            Some(count) if has_inf && count != inf_count => problems.push(format!(
                "{at}: _count {count} differs from the +Inf bucket {inf_count}"
            )),
            Some(_) => {}
        }
        if !fam.sums.contains(key) {
            problems.push(format!("{at}: no _sum sample"));
        }
    }
}

/// Every way `exposition` disagrees with `catalog` as exported with `units`: a catalog metric
/// missing (no samples), a wrong `# TYPE` or `# HELP`, label names that are not the catalog's,
/// histogram buckets that are not the catalog's or lack `+Inf` (or `_sum`/`_count`), an exposed
/// family that is not in the catalog, and lines that do not parse. Empty when they agree.
pub fn catalog_problems(
    exposition: &str,
    catalog: &[MetricSpec],
    units: MetricUnits,
) -> Vec<String> {
    let (fams, mut problems) = parse_exposition(exposition);
    for spec in catalog {
        let name = spec.exported_name(units);
        let Some(fam) = fams.get(name).filter(|f| f.samples > 0) else {
            problems.push(format!(
                "{name}: catalog metric missing from the exposition"
            ));
            continue;
        };
        match fam.kind.as_deref() {
            Some(kind) if kind == spec.kind.as_str() => {}
            Some(kind) => problems.push(format!("{name}: type {kind}, catalog says {}", spec.kind)),
            None => problems.push(format!("{name}: no # TYPE line")),
        }
        let help = spec.exported_help(units);
        match fam.help.as_deref() {
            Some(h) if h == help => {}
            Some(h) => problems.push(format!("{name}: help {h:?}, catalog says {help:?}")),
            None => problems.push(format!("{name}: no # HELP line")),
        }
        let mut want: Vec<String> = spec.labels.iter().map(|l| l.to_string()).collect();
        want.sort();
        for got in fam.label_sets.iter().filter(|&got| *got != want) {
            problems.push(format!(
                "{name}: label names {got:?}, catalog says {want:?}"
            ));
        }
        problems.extend(fam.stray.iter().cloned());
        if spec.kind == MetricKind::Histogram {
            histogram_problems(name, fam, spec.exported_buckets(units), &mut problems);
        }
    }
    for name in fams.keys() {
        if catalog.iter().any(|s| s.exported_name(units) == name) {
            continue;
        }
        let hint = catalog
            .iter()
            .find(|s| s.names().any(|n| n == name))
            .map(|s| {
                format!(
                    " (it is catalog metric {}'s name with the other metric_units; this \
                     exposition was checked for metric_units: {units})",
                    s.name
                )
            })
            .unwrap_or_default();
        problems.push(format!("{name}: exposed family not in the catalog{hint}"));
    }
    problems
}

/// What `promtool check metrics` said about an exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromtoolReport {
    /// Exit status: 0 clean, 3 lint findings only, 1 an exposition it could not parse.
    pub exit_code: i32,
    /// Its stdout and stderr together: one finding per line, `NAME MESSAGE`.
    pub output: String,
}

impl PromtoolReport {
    /// Exit 0 and nothing reported.
    pub fn is_clean(&self) -> bool {
        self.exit_code == 0 && self.output.trim().is_empty()
    }

    /// The reported lines, `(metric name, message)`.
    pub fn findings(&self) -> Vec<(&str, &str)> {
        self.output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, msg) = l.split_once(' ').unwrap_or((l, ""));
                (name, msg.trim())
            })
            .collect()
    }
}

/// Runs `promtool check metrics` (the program in `$PROMTOOL`, else `promtool` on `PATH`) with
/// `exposition` on stdin. `Ok(None)` when promtool is not installed.
pub fn promtool_check_metrics(exposition: &str) -> std::io::Result<Option<PromtoolReport>> {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let mut child = match Command::new(program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from a second thread so a promtool that answers before reading everything cannot
    // deadlock against a full pipe.
    let out = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(exposition.as_bytes()));
        let out = child.wait_with_output();
        // A broken pipe only means promtool stopped reading; its report says why.
        let _ = writer.join();
        out
    })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Some(PromtoolReport {
        exit_code: out.status.code().unwrap_or(-1),
        output,
    }))
}
