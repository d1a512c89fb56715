//! The shipped dashboards are valid for the tools that load them:
//!
//! - the Prometheus rule files: `promtool check rules` (Debian's `prometheus` package, installed
//!   by `.ci/run`) accepts every one of them;
//! - the Grafana dashboards (`dashboards/grafana/*.json`): valid JSON in Grafana's shape, and
//!   every query (panel targets, nested rows included, template variables, annotations) parses
//!   and selects only metrics, labels and label values the reference server exports, checked by
//!   the linter's own selector checks (`firedrill::rules::lint::lint_queries`) against
//!   `Exported::catalog_with_values`, with the series `slo-rules.yaml` records counted as
//!   exported.
//!
//! Grafana variables are substituted before parsing (see [`substitute`]): `$__rate_interval`
//! by `5m`, `$__interval` by `1m`, `$__range` by `1d` (`_s`/`_ms` forms by numbers), and every
//! dashboard variable (`$tier`, `${tier}`, `${tier:regex}`, `[[tier]]`) by `.+`, the regex an
//! "All" selection amounts to. A variable the dashboard does not define is an error.

use firedrill::rules::lint::{lint_queries, Exported, LintOptions, Query, RuleSource};
use reference_server::metrics::MetricUnits;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn promtool_accepts_every_shipped_rule_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // `slos.yaml` is an SLO spec and `*.test.yaml` are rule unit tests, not rule files.
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.ends_with("slos.yaml")
                && !p.to_string_lossy().ends_with(".test.yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    for f in files {
        let out = match Command::new(&program)
            .args(["check", "rules"])
            .arg(&f)
            .output()
        {
            Ok(o) => o,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() =>
            {
                eprintln!("promtool not installed: skipped");
                return;
            }
            Err(e) => panic!("running promtool: {e}"),
        };
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {said}", f.display());
        assert!(said.contains("SUCCESS"), "{}: {said}", f.display());
    }
}

/// What Grafana's built-in variables become in a checked query.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__interval_ms", "60000"),
    ("__range", "1d"),
    ("__range_s", "86400"),
    ("__range_ms", "86400000"),
];

/// What a dashboard variable becomes: the regex of an "All" selection (dashboards use their
/// variables in `=~` matchers).
const VARIABLE_VALUE: &str = ".+";

/// `text` with Grafana's variable references replaced: built-ins by [`BUILTINS`], the
/// dashboard's `variables` by [`VARIABLE_VALUE`]; an error names any other variable.
fn substitute(text: &str, variables: &BTreeSet<String>) -> Result<String, String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // `$name`, `${name}`, `${name:format}`, `[[name]]`; anything else is PromQL.
        let (name, len) = if let Some(t) = tail.strip_prefix("${") {
            match t.find('}') {
                Some(end) => (t[..end].split(':').next().unwrap_or(""), end + 3),
                None => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix("[[") {
            match t.find("]]") {
                Some(end) if t[..end].chars().all(is_ident) => (&t[..end], end + 4),
                _ => ("", 0),
            }
        } else if let Some(t) = tail.strip_prefix('$') {
            let end = t.find(|c: char| !is_ident(c)).unwrap_or(t.len());
            (&t[..end], end + 1)
        } else {
            ("", 0)
        };
        if len == 0 || name.is_empty() {
            let c = tail.chars().next().unwrap_or('$');
            out.push(c);
            rest = &tail[c.len_utf8()..];
            continue;
        }
        if let Some((_, v)) = BUILTINS.iter().find(|(b, _)| *b == name) {
            out.push_str(v);
        } else if variables.contains(name) {
            out.push_str(VARIABLE_VALUE);
        } else {
            return Err(format!("`${name}` is not a variable of the dashboard"));
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A template variable's query as PromQL: `label_values(m{..}, l)` selects `m{.., l=~".+"}`
/// (so that a label `m` never has is an unknown label), `label_values(l)` selects
/// `{l=~".+"}`, `query_result(q)` is `q`.
fn variable_promql(query: &str) -> Result<String, String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (selector, label) = match inner.rfind(',') {
            Some(i) => (inner[..i].trim(), inner[i + 1..].trim()),
            None => ("", inner.trim()),
        };
        let matcher = format!("{label}=~\".+\"");
        return Ok(match selector.strip_suffix('}') {
            Some(open) if open.trim_end().ends_with('{') => format!("{open}{matcher}}}"),
            Some(open) => format!("{open},{matcher}}}"),
            None => format!("{selector}{{{matcher}}}"),
        });
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return Ok(inner.to_owned());
    }
    Err(format!(
        "unsupported variable query `{q}` (use label_values or query_result)"
    ))
}

/// A dashboard's panels, rows' nested panels included, in order.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'v>(ps: &'v Value, out: &mut Vec<&'v Value>) {
        for p in ps.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn title(v: &Value) -> &str {
    v["title"].as_str().unwrap_or("(untitled)")
}

/// Every query of a dashboard, substituted, as lint [`Query`]s named by file and panel title;
/// plus the dashboard's structure problems.
fn dashboard_queries(file: &str, dash: &Value) -> (Vec<Query>, Vec<String>) {
    let mut queries = Vec::new();
    let mut problems = Vec::new();
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: BTreeSet<String> = vars
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let mut add =
        |location: String, raw: &str, problems: &mut Vec<String>| match substitute(raw, &names) {
            Ok(expr) => queries.push(Query {
                file: file.to_owned(),
                location,
                expr,
            }),
            Err(e) => problems.push(format!("{file}: {location}: {e}")),
        };
    for v in &vars {
        let name = v["name"].as_str().unwrap_or("");
        if v["type"] != "query" {
            continue;
        }
        let raw = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or("");
        match variable_promql(raw) {
            Ok(q) => add(format!("variable \"{name}\""), &q, &mut problems),
            Err(e) => problems.push(format!("{file}: variable \"{name}\": {e}")),
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            let name = a["name"].as_str().unwrap_or("(unnamed)");
            add(format!("annotation \"{name}\""), expr, &mut problems);
        }
    }
    for p in panels(dash) {
        if p["type"] == "row" {
            continue;
        }
        let t = title(p);
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() && p["type"] != "text" {
            problems.push(format!("{file}: panel \"{t}\" has no queries"));
        }
        for (i, target) in targets.iter().enumerate() {
            let r = target["refId"]
                .as_str()
                .map_or(i.to_string(), str::to_owned);
            match target["expr"].as_str() {
                Some(expr) => add(format!("panel \"{t}\" (query {r})"), expr, &mut problems),
                None => problems.push(format!("{file}: panel \"{t}\" (query {r}) has no expr")),
            }
        }
    }
    (queries, problems)
}

/// Grafana's shape: a datasource variable for Prometheus that every panel and query uses,
/// units, layout within the 24-column grid, unique panel ids.
fn structure_problems(file: &str, dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |s: String| out.push(format!("{file}: {s}"));
    if dash["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        say("schemaVersion must be 36 or later".into());
    }
    for key in ["title", "uid"] {
        if dash[key].as_str().is_none_or(str::is_empty) {
            say(format!("no {key}"));
        }
    }
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !vars.iter().any(|v| {
        v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
    }) {
        say("no `datasource` variable of type datasource for prometheus".into());
    }
    let ds_ok = |v: &Value| v["uid"] == "${datasource}" && v["type"] == "prometheus";
    let mut ids = BTreeSet::new();
    for p in panels(dash) {
        let t = title(p);
        if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            say(format!("panel \"{t}\": missing or repeated id"));
        }
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        match (x, w, h, g["y"].as_u64()) {
            (Some(x), Some(w), Some(h), Some(_)) if w > 0 && h > 0 && x + w <= 24 => {}
            _ => say(format!(
                "panel \"{t}\": gridPos outside the 24-column grid: {g}"
            )),
        }
        if p["type"] == "row" {
            continue;
        }
        if !ds_ok(&p["datasource"]) {
            say(format!("panel \"{t}\": datasource is not ${{datasource}}"));
        }
        if !p["fieldConfig"]["defaults"]["unit"].is_string() {
            say(format!("panel \"{t}\": no unit"));
        }
        for target in p["targets"].as_array().into_iter().flatten() {
            if !target["datasource"].is_null() && !ds_ok(&target["datasource"]) {
                say(format!(
                    "panel \"{t}\": a query's datasource is not ${{datasource}}"
                ));
            }
        }
    }
    out
}

/// Checks dashboard files: structure, and every query against the reference server's catalog
/// (plus the series recorded by `dashboards/prometheus/slo-rules.yaml`). Returns each problem
/// as one line naming file, panel (or variable) and what is wrong.
fn check_dashboards(files: &[PathBuf]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
    let rules = [RuleSource::read(&dir.join("slo-rules.yaml")).unwrap()];
    let exported = Exported::catalog_with_values(MetricUnits::Base);
    let mut problems = Vec::new();
    let mut queries = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        let dash: Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: not valid JSON: {e}"));
                continue;
            }
        };
        problems.extend(structure_problems(&name, &dash));
        let (q, p) = dashboard_queries(&name, &dash);
        queries.extend(q);
        problems.extend(p);
    }
    let report = lint_queries(&queries, &rules, &exported, &LintOptions::default());
    // Warnings too: an unknown metric inside absent() is a warning, and still wrong here.
    problems.extend(report.findings.iter().map(|f| f.to_string()));
    problems
}

fn shipped_dashboards() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_grafana_dashboard_queries_only_what_the_server_exports() {
    let files = shipped_dashboards();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for want in [
        "error-budgets.json",
        "gpu.json",
        "operations.json",
        "safety.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let problems = check_dashboards(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_dashboard_has_queries_and_a_unique_uid() {
    let mut uids = BTreeSet::new();
    for f in shipped_dashboards() {
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.display().to_string();
        assert!(uids.insert(dash["uid"].to_string()), "{name}: repeated uid");
        let (queries, problems) = dashboard_queries(&name, &dash);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(queries.len() >= 8, "{name}: only {} queries", queries.len());
        // Variables are templated in: nothing of Grafana's syntax is left for PromQL.
        assert!(queries.iter().all(|q| !q.expr.contains('$')), "{queries:?}");
    }
}

#[test]
fn the_error_budget_dashboard_reads_the_recorded_slo_series() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana/error-budgets.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
    let (queries, _) = dashboard_queries("error-budgets.json", &dash);
    for series in [
        "slo:objective:ratio",
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate6h",
    ] {
        assert!(queries.iter().any(|q| q.expr.contains(series)), "{series}");
    }
    for slo in [
        "generation_availability",
        "generation_latency_fast",
        "generation_latency_turbo",
    ] {
        assert!(
            queries
                .iter()
                .any(|q| q.expr.contains(&format!("slo=\"{slo}\""))),
            "{slo}"
        );
    }
}

#[test]
fn a_dashboard_querying_an_unexported_metric_fails_naming_file_panel_and_metric() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dashboards/unknown-metric.json");
    let problems = check_dashboards(&[fixture]);
    let unknown: Vec<&String> = problems
        .iter()
        .filter(|p| p.contains("unknown-metric]"))
        .collect();
    assert_eq!(unknown.len(), 1, "{problems:#?}");
    let line = unknown[0];
    assert!(
        line.starts_with("unknown-metric.json: panel \"Starvation events\" (query A): error")
            && line.contains("`queue_starvation_events`")
            && line.contains("queue_starvation_events_total"),
        "{line}"
    );
    // A value the server never gives the label is caught too (equality matcher on `tier`).
    assert!(
        problems
            .iter()
            .any(|p| p.contains("panel \"Standard tier queue\"")
                && p.contains("impossible-label-value")
                && p.contains("tier=\"standard\"")),
        "{problems:#?}"
    );
    // The good panel and the variable are clean.
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("\"Queue depth\"") || p.contains("variable")),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[test]
fn grafana_variables_are_substituted() {
    let vars: BTreeSet<String> = ["tier".to_owned(), "model".to_owned()].into();
    assert_eq!(
        substitute(
            r#"rate(x{tier=~"$tier",model=~"${model:regex}",a=~"[[tier]]"}[$__rate_interval])"#,
            &vars
        )
        .unwrap(),
        r#"rate(x{tier=~".+",model=~".+",a=~".+"}[5m])"#
    );
    assert_eq!(
        substitute("sum_over_time(x[$__range]) / $__range_s", &vars).unwrap(),
        "sum_over_time(x[1d]) / 86400"
    );
    // PromQL's own `$` (regex anchors) and `[` (ranges) are left alone.
    assert_eq!(
        substitute(r#"x{a=~"^b$"}[5m]"#, &vars).unwrap(),
        r#"x{a=~"^b$"}[5m]"#
    );
    assert!(substitute("x{zone=~\"$zone\"}", &vars)
        .unwrap_err()
        .contains("$zone"));
    assert_eq!(
        variable_promql("label_values(queue_depth{tier=\"fast\"}, model_required)").unwrap(),
        "queue_depth{tier=\"fast\",model_required=~\".+\"}"
    );
    assert_eq!(
        variable_promql("label_values(slo:objective:ratio, slo)").unwrap(),
        "slo:objective:ratio{slo=~\".+\"}"
    );
    assert_eq!(
        variable_promql("label_values(tier)").unwrap(),
        "{tier=~\".+\"}"
    );
    assert!(variable_promql("metrics(queue_.*)").is_err());
}
