//! Prometheus rule files as they are: groups with an optional interval, recording and alerting
//! rules, `for`, `keep_firing_for`, labels and annotations. Unknown fields are refused, as
//! Prometheus refuses them; errors name the file, line and field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A rule file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The groups.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together, in order, every `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    /// Unique name in the file.
    pub name: String,
    /// Evaluation interval (Prometheus duration); default: the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Limit on alerts or series per rule (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
    /// Offset of the query time (Prometheus 2.53+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<String>,
    /// Labels added to every rule's output (Prometheus 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The rules, evaluated in order.
    pub rules: Vec<Rule>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The series a recording rule writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The alert's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// Alerts: how long the condition holds before firing.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Alerts: how long a firing alert keeps firing after the condition stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Labels added to the output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Alerts: annotations (templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The rule's name (`record` or `alert`).
    pub fn name(&self) -> &str {
        self.record
            .as_deref()
            .or(self.alert.as_deref())
            .unwrap_or("")
    }
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `250ms`, `1d`, `1w`, `1y`) into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    let mut last_rank = usize::MAX;
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // Prometheus requires units in decreasing order: y w d h m s ms.
    const ORDER: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h, d, w, y)"))?;
        if n_end == 0 {
            return Err(format!("{s:?} is not a duration such as 5m or 1h30m"));
        }
        let n: i64 = rest[..n_end]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[n_end..];
        let (unit, ms) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(|| format!("{s:?}: unknown unit (use ms, s, m, h, d, w, y)"))?;
        let rank = ORDER.iter().position(|o| o == unit).unwrap_or(0);
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(format!("{s:?}: units must go from largest to smallest"));
        }
        last_rank = rank;
        total = total
            .checked_add(
                n.checked_mul(*ms)
                    .ok_or_else(|| format!("{s:?}: too long"))?,
            )
            .ok_or_else(|| format!("{s:?}: too long"))?;
        rest = &rest[unit.len()..];
    }
    Ok(total)
}

/// Deserializes YAML, naming the line and field path of the first error (shared by rule files
/// and rule unit-test files).
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, RuleFileError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // The YAML error repeats (part of) the field path before the message.
        if let Some((before, after)) = message.split_once(": ") {
            if !before.is_empty() && field.starts_with(before) {
                message = after.to_owned();
            }
        }
        RuleFileError {
            line,
            field,
            message,
        }
    })
}

/// A rule-file error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFileError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted field path (`groups[0].rules[2].for`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl RuleFile {
    /// Parses and checks rule-file YAML (structure, names, durations; expressions are parsed by
    /// the engine that loads the file).
    pub fn parse(text: &str) -> Result<RuleFile, RuleFileError> {
        let f: RuleFile = parse_yaml(text)?;
        f.check().map_err(|(field, message)| RuleFileError {
            line: None,
            field,
            message,
        })?;
        Ok(f)
    }

    /// Reads and parses a rule file; errors start with the path.
    pub fn load(path: &Path) -> Result<RuleFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        RuleFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn check(&self) -> Result<(), (String, String)> {
        let mut groups = std::collections::HashSet::new();
        for (g, group) in self.groups.iter().enumerate() {
            let at = |f: &str| format!("groups[{g}].{f}");
            if group.name.trim().is_empty() {
                return Err((at("name"), "must not be empty".into()));
            }
            if !groups.insert(group.name.as_str()) {
                return Err((at("name"), format!("duplicate group {:?}", group.name)));
            }
            for (k, v) in [
                ("interval", &group.interval),
                ("query_offset", &group.query_offset),
            ] {
                if let Some(d) = v {
                    parse_duration(d).map_err(|m| (at(k), m))?;
                }
            }
            for (r, rule) in group.rules.iter().enumerate() {
                let at = |f: &str| format!("groups[{g}].rules[{r}].{f}");
                match (&rule.record, &rule.alert) {
                    (Some(_), Some(_)) => {
                        return Err((
                            at("alert"),
                            "a rule has `record` or `alert`, not both".into(),
                        ))
                    }
                    (None, None) => {
                        return Err((
                            format!("groups[{g}].rules[{r}]"),
                            "needs `record` or `alert`".into(),
                        ))
                    }
                    (Some(name), None) => {
                        let ok = !name.is_empty()
                            && name.chars().enumerate().all(|(i, c)| {
                                c.is_ascii_alphabetic()
                                    || c == '_'
                                    || c == ':'
                                    || (i > 0 && c.is_ascii_digit())
                            });
                        if !ok {
                            return Err((
                                at("record"),
                                format!("{name:?} is not a valid metric name"),
                            ));
                        }
                        for (k, v) in [
                            ("for", &rule.for_),
                            ("keep_firing_for", &rule.keep_firing_for),
                        ] {
                            if v.is_some() {
                                return Err((at(k), format!("only alerting rules have `{k}`")));
                            }
                        }
                        if !rule.annotations.is_empty() {
                            return Err((
                                at("annotations"),
                                "only alerting rules have annotations".into(),
                            ));
                        }
                    }
                    (None, Some(name)) => {
                        if name.trim().is_empty() {
                            return Err((at("alert"), "must not be empty".into()));
                        }
                        for (k, v) in [
                            ("for", &rule.for_),
                            ("keep_firing_for", &rule.keep_firing_for),
                        ] {
                            if let Some(d) = v {
                                parse_duration(d).map_err(|m| (at(k), m))?;
                            }
                        }
                    }
                }
                if rule.expr.trim().is_empty() {
                    return Err((at("expr"), "must not be empty".into()));
                }
                for k in rule.labels.keys() {
                    let ok = !k.is_empty()
                        && k.chars().enumerate().all(|(i, c)| {
                            c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())
                        });
                    if !ok || k.starts_with("__") {
                        return Err((
                            at(&format!("labels.{k}")),
                            format!("{k:?} is not a valid label name"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_prometheus_reads_them() {
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("1w"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("1.5h").is_err());
    }

    #[test]
    fn the_shipped_alert_rules_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
        for f in ["alerts.yaml", "slo-rules.yaml"] {
            let rf = RuleFile::load(&dir.join(f)).unwrap();
            assert!(!rf.groups.is_empty());
        }
    }

    #[test]
    fn bad_rule_files_name_the_field() {
        let e = RuleFile::parse("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5 minutes\n").unwrap_err();
        assert_eq!(e.field, "groups[0].rules[0].for");
        let e = RuleFile::parse("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        severity: high\n").unwrap_err();
        assert!(e.message.contains("severity") && e.line == Some(6), "{e}");
        let e = RuleFile::parse("groups:\n  - name: g\n    rules:\n      - record: job:up\n        expr: up\n        for: 1m\n").unwrap_err();
        assert_eq!(e.field, "groups[0].rules[0].for");
        let e =
            RuleFile::parse("groups:\n  - name: g\n    rules: []\n  - name: g\n    rules: []\n")
                .unwrap_err();
        assert_eq!(e.field, "groups[1].name");
    }
}
