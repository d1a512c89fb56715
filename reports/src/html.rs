//! `report.html`: one self-contained page a person reads after a run.
//!
//! The verdict comes first, then every check with its figures (thresholds, alert expectations
//! with their why-not explanations, SLO budgets, engine agreement, Alertmanager delivery), the
//! latency and outcome tables, SLOs, faults and their rollback, alerts, the event timeline and
//! finally the plots.
//!
//! Self-contained means no network and no external assets: the CSS is inline, plots are inlined
//! as `data:` URIs, and a Content-Security-Policy forbids the browser from fetching anything, so
//! the file can be archived by CI and opened years later, offline. It needs no JavaScript (there
//! is none; collapsible parts are `<details>`).
//!
//! Every piece of text from the record goes through [`escape`]; plots are embedded as base64
//! `<img>` sources rather than inline SVG markup, so even a plot's text can neither add elements
//! to the page nor run script (an SVG loaded as an image never runs script).

use crate::junit::{expectation_name, ExpectationKind};
use crate::record::{RunRecord, ThresholdWindow};
use base64::Engine as _;
use std::fmt::Write as _;

/// A plot's image, as embedded in the page.
#[derive(Debug, Clone, PartialEq)]
pub enum PlotImage {
    /// SVG document text.
    Svg(String),
    /// PNG bytes.
    Png(Vec<u8>),
}

/// One plot to show on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct HtmlPlot {
    /// Caption (escaped when rendered).
    pub title: String,
    /// The image.
    pub image: PlotImage,
}

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // NUL is a parse error in HTML; nothing legitimate carries it.
            '\0' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff;
  --soft: #f6f8fa; --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9;
  --warn: #9a6700; --warn-bg: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 24px 64px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 8px; color: var(--muted); }
.verdict { border-radius: 8px; padding: 18px 20px; border: 1px solid var(--line); }
.verdict.pass { background: var(--pass-bg); border-color: #aceebb; }
.verdict.fail { background: var(--fail-bg); border-color: #ffcecb; }
.badge { display: inline-block; font-weight: 700; letter-spacing: .04em; padding: 2px 10px;
  border-radius: 999px; color: #fff; margin-right: 8px; font-size: 14px; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.facts { display: flex; flex-wrap: wrap; gap: 6px 24px; margin: 10px 0 0; color: var(--muted); }
.facts b { color: var(--fg); font-weight: 600; }
.note { margin: 10px 0 0; padding: 8px 12px; border-radius: 6px; background: var(--warn-bg); color: var(--warn); }
.ok { color: var(--pass); font-weight: 600; } .missed { color: var(--fail); font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fff5f4; }
ul.why { margin: 6px 0 0; padding-left: 18px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; color: var(--muted); white-space: pre-wrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--soft); padding: 12px; border-radius: 6px; overflow-x: auto; }
.muted { color: var(--muted); }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--muted); }
.plots { display: grid; grid-template-columns: 1fr; gap: 24px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { margin-top: 6px; color: var(--muted); font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"#;

pub(crate) fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

fn opt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("–".into(), |v| format!("{}{suffix}", num(v, digits)))
}

fn pct(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{}%", num(v * 100.0, digits)))
}

fn met(passed: bool) -> &'static str {
    if passed {
        r#"<span class="ok">met</span>"#
    } else {
        r#"<span class="missed">missed</span>"#
    }
}

/// Renders the page for `r` with `plots` at the end (none: the plots section says so).
pub fn render(r: &RunRecord, plots: &[HtmlPlot]) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let e = escape;
    let verdict = if r.verdict.passed { "PASS" } else { "FAIL" };
    let class = if r.verdict.passed { "pass" } else { "fail" };
    h.push_str(&head(&format!(
        "{verdict} · {} · firedrill",
        r.scenario.name
    )));

    // The verdict.
    let _ = writeln!(
        h,
        "<section class=\"verdict {class}\" id=\"verdict\">\n<h1><span class=\"badge {class}\">{verdict}</span>{}</h1>",
        e(&r.scenario.name)
    );
    let checks = r.thresholds.len() + r.expectations.len() + usize::from(r.rollback.is_some());
    let failed = r.thresholds.iter().filter(|t| !t.passed).count()
        + r.expectations.iter().filter(|x| !x.passed).count()
        + usize::from(r.rollback.as_ref().is_some_and(|rb| !rb.verified));
    let _ = writeln!(
        h,
        "<div class=\"facts\"><span>checks <b>{} of {checks} met</b></span>\
         <span>duration <b>{} s</b></span><span>requests <b>{}</b> of {} offered</span>\
         <span>achieved <b>{} req/s</b></span><span>exit code <b>{}</b></span>\
         <span>trust <b>{}</b></span></div>",
        checks - failed,
        num(r.duration_s, 1),
        r.totals.completed,
        r.totals.offered,
        num(r.totals.achieved_rate, 2),
        r.verdict.exit_code,
        if r.trust.trustworthy {
            "numbers trustworthy"
        } else {
            "NOT trustworthy"
        }
    );
    let _ = writeln!(
        h,
        "<div class=\"facts\"><span>scenario file <code>{}</code></span><span>seed <b>{}</b></span>\
         <span>started <b>{}</b></span><span>target <code>{}</code></span></div>",
        e(&r.scenario.file),
        r.scenario.seed,
        e(&r.started_at),
        e(&r.target.url)
    );
    if !r.trust.trustworthy {
        let _ = writeln!(
            h,
            "<p class=\"note\">The harness fell behind its schedule, so latencies may be \
             understated: {} (send delay p99 {} ms, max {} ms, in-flight cap hits {}).</p>",
            e(&r.trust.reasons.join("; ")),
            num(r.trust.send_delay_p99_ms, 1),
            num(r.trust.max_send_delay_ms, 1),
            r.trust.in_flight_cap_hits
        );
    }
    h.push_str("</section>\n");

    // Checks: thresholds, then expectations by kind.
    h.push_str("<h2 id=\"checks\">Checks</h2>\n");
    if checks == 0 {
        h.push_str("<p class=\"muted\">The scenario defines no thresholds or expectations.</p>\n");
    }
    if !r.thresholds.is_empty() {
        h.push_str(
            "<h3>Thresholds</h3>\n<table><tr><th>threshold</th><th>requires</th>\
             <th class=\"num\">observed</th><th class=\"num\">limit</th><th>over</th><th>result</th><th>detail</th></tr>\n",
        );
        for t in &r.thresholds {
            let over = match &t.window {
                ThresholdWindow::Run => "whole run".to_owned(),
                ThresholdWindow::Sliding {
                    length_s,
                    worst_start_s,
                } => match worst_start_s {
                    Some(s) => format!(
                        "{} s windows, worst from {} s",
                        num(*length_s, 1),
                        num(*s, 1)
                    ),
                    None => format!("{} s windows", num(*length_s, 1)),
                },
            };
            let _ = writeln!(
                h,
                "<tr{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} {}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                if t.passed { "" } else { " class=\"failed\"" },
                e(&t.name),
                e(&t.description),
                t.observed
                    .map_or("–".into(), |v| format!("{} {}", e(&fmt_g(v)), e(&t.unit))),
                e(&fmt_g(t.limit)),
                e(&t.unit),
                e(&over),
                met(t.passed),
                e(&t.detail)
            );
        }
        h.push_str("</table>\n");
    }
    for kind in [
        ExpectationKind::Alert,
        ExpectationKind::Slo,
        ExpectationKind::EngineAgreement,
        ExpectationKind::Delivery,
        ExpectationKind::Unexpected,
    ] {
        let of: Vec<_> = r
            .expectations
            .iter()
            .filter(|x| ExpectationKind::of(x) == kind)
            .collect();
        if of.is_empty() {
            continue;
        }
        let timing = matches!(
            kind,
            ExpectationKind::Alert | ExpectationKind::EngineAgreement
        );
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<table><tr><th>expectation</th>{}<th>result</th><th>what happened</th></tr>",
            kind.heading(),
            if timing {
                "<th class=\"num\">time</th>"
            } else {
                ""
            }
        );
        for x in of {
            let _ = write!(
                h,
                "<tr{}><td>{}</td>",
                if x.passed { "" } else { " class=\"failed\"" },
                e(&expectation_name(x))
            );
            if timing {
                let _ = write!(h, "<td class=\"num\">{}</td>", opt(x.latency_s, 1, " s"));
            }
            let _ = write!(h, "<td>{}</td><td>{}", met(x.passed), e(&x.detail));
            if !x.explanation.is_empty() {
                h.push_str("<ul class=\"why\">");
                for line in &x.explanation {
                    let _ = write!(h, "<li>{}</li>", e(line));
                }
                h.push_str("</ul>");
            }
            h.push_str("</td></tr>\n");
        }
        h.push_str("</table>\n");
    }
    if let Some(rb) = &r.rollback {
        let _ = writeln!(
            h,
            "<h3>Fault rollback</h3>\n<p>{} {}</p>",
            met(rb.verified),
            if rb.verified {
                "every fault reverted and every target lists none".to_owned()
            } else {
                e(&rb.problems.join("; "))
            }
        );
    }

    // Latency and outcomes.
    h.push_str(
        "<h2 id=\"latency\">Latency</h2>\n<p class=\"muted\">From the intended send time \
         (no coordinated omission); service time is from the actual send.</p>\n\
         <table><tr><th>tier</th><th class=\"num\">requests</th><th class=\"num\">p50</th>\
         <th class=\"num\">p95</th><th class=\"num\">p99</th><th class=\"num\">max</th>\
         <th class=\"num\">service p95</th><th class=\"num\">send delay p99</th></tr>\n",
    );
    let mut rows: Vec<(&str, &crate::record::TierStats)> = r
        .totals
        .per_tier
        .iter()
        .filter(|(_, t)| t.count > 0)
        .map(|(k, t)| (k.as_str(), t))
        .collect();
    rows.push(("all", &r.totals.overall));
    for (tier, t) in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td>\
             <td class=\"num\">{} ms</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td></tr>",
            if tier == "all" {
                "<b>all</b>".to_owned()
            } else {
                e(tier)
            },
            t.count,
            num(t.latency.p50_ms, 1),
            num(t.latency.p95_ms, 1),
            num(t.latency.p99_ms, 1),
            num(t.latency.max_ms, 1),
            num(t.service_time.p95_ms, 1),
            num(t.send_delay.p99_ms, 2)
        );
    }
    h.push_str("</table>\n");
    let total: u64 = r.outcomes.values().sum();
    h.push_str(
        "<h3>Outcomes</h3>\n<table><tr><th>outcome</th><th class=\"num\">requests</th><th class=\"num\">share</th></tr>\n",
    );
    for (k, n) in &r.outcomes {
        let share = if total == 0 {
            0.0
        } else {
            *n as f64 / total as f64
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{n}</td><td class=\"num\">{}</td></tr>",
            e(k),
            pct(Some(share), 1)
        );
    }
    let _ = writeln!(
        h,
        "<tr><td><b>total</b></td><td class=\"num\"><b>{total}</b></td><td></td></tr>\n</table>"
    );

    // SLOs.
    if !r.slos.is_empty() {
        h.push_str(
            "<h2 id=\"slos\">SLOs</h2>\n<p class=\"muted\">Budgets as if the run were the whole SLO window.</p>\n\
             <table><tr><th>SLO</th><th class=\"num\">objective</th><th class=\"num\">good / total</th>\
             <th class=\"num\">SLI</th><th class=\"num\">budget consumed</th><th class=\"num\">budget left</th>\
             <th>highest burn rates (long / short vs factor)</th></tr>\n",
        );
        for s in &r.slos {
            let burns: Vec<String> = s
                .burn
                .iter()
                .map(|b| {
                    format!(
                        "{} {}s/{}s: {} / {} vs {}",
                        e(&b.severity),
                        num(b.long_s, 0),
                        num(b.short_s, 0),
                        opt(b.max_long, 2, ""),
                        opt(b.max_short, 2, ""),
                        num(b.factor, 1)
                    )
                })
                .collect();
            let _ = writeln!(
                h,
                "<tr{}><td>{}</td><td class=\"num\">{}%</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                if s.budget_remaining.is_some_and(|b| b < 0.0) {
                    " class=\"failed\""
                } else {
                    ""
                },
                e(&s.name),
                e(&fmt_g(s.objective)),
                e(&fmt_g(s.good)),
                e(&fmt_g(s.total)),
                pct(s.sli, 3),
                pct(s.budget_consumed, 1),
                pct(s.budget_remaining, 1),
                burns.join("<br>")
            );
        }
        h.push_str("</table>\n");
    }

    // Faults.
    if !r.faults.is_empty() || !r.fault_journal.is_empty() {
        h.push_str(
            "<h2 id=\"faults\">Faults</h2>\n<table><tr><th>fault</th><th>kind</th><th>via</th>\
             <th class=\"num\">planned</th><th class=\"num\">injected</th><th class=\"num\">reverted</th><th>spec</th></tr>\n",
        );
        for f in &r.faults {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{} – {} s</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td><code>{}</code></td></tr>",
                e(&f.name),
                e(&f.kind),
                e(&f.via),
                num(f.planned_start_s, 1),
                num(f.planned_end_s, 1),
                f.injected_s.map_or("never".into(), |t| format!("{} s", num(t, 2))),
                f.reverted_s.map_or("never".into(), |t| format!("{} s", num(t, 2))),
                e(&f.spec.to_string())
            );
        }
        h.push_str("</table>\n");
        if let Some(rb) = &r.rollback {
            let _ = writeln!(
                h,
                "<p>Rollback: {}{}</p>",
                if rb.verified {
                    "<span class=\"ok\">verified</span>"
                } else {
                    "<span class=\"missed\">NOT verified</span>"
                },
                if rb.problems.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", e(&rb.problems.join("; ")))
                }
            );
        }
        if !r.fault_journal.is_empty() {
            let _ = writeln!(
                h,
                "<details><summary>Injector journal ({} actions)</summary>\n<table><tr><th class=\"num\">t</th>\
                 <th>fault</th><th>action</th><th>ok</th><th>detail</th></tr>",
                r.fault_journal.len()
            );
            for j in &r.fault_journal {
                let _ = writeln!(
                    h,
                    "<tr{}><td class=\"num\">{} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    if j.ok { "" } else { " class=\"failed\"" },
                    num(j.t_s, 2),
                    e(&j.fault),
                    e(&j.action),
                    if j.ok { "yes" } else { "no" },
                    e(&j.detail)
                );
            }
            h.push_str("</table>\n</details>\n");
        }
    }

    // Alerts.
    if !r.alerts.is_empty() {
        h.push_str(
            "<h2 id=\"alerts\">Alerts</h2>\n<table><tr><th>alert</th><th>labels</th><th>state changes</th></tr>\n",
        );
        for a in &r.alerts {
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| format!("{}=\"{}\"", e(k), e(v)))
                .collect();
            let changes: Vec<String> = a
                .transitions
                .iter()
                .map(|t| format!("{} at {} s", e(&t.state), num(t.t_s, 1)))
                .collect();
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                e(&a.name),
                labels.join(", "),
                changes.join(" → ")
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(rules) = &r.rules {
        let _ = writeln!(
            h,
            "<p class=\"muted\">Rules: {} (engine {}, time scale {}, evaluated every {} s).</p>",
            e(&rules.files.join(", ")),
            e(&rules.engine),
            e(&fmt_g(rules.time_scale)),
            num(rules.interval_s, 2)
        );
        if !rules.errors.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"note\">Rule evaluation errors: {}</p>",
                e(&rules.errors.join("; "))
            );
        }
    }

    // Timeline.
    h.push_str("<h2 id=\"timeline\">Timeline</h2>\n");
    if r.events.is_empty() {
        h.push_str("<p class=\"muted\">No events.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th class=\"num\">t</th><th>kind</th><th>name</th><th>detail</th></tr>\n",
        );
        for ev in &r.events {
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                num(ev.t_s, 2),
                e(&ev.kind),
                e(&ev.name),
                e(&ev.detail)
            );
        }
        h.push_str("</table>\n");
    }

    // Plots.
    h.push_str("<h2 id=\"plots\">Plots</h2>\n");
    plots_section(&mut h, plots, "No plots were rendered for this run.");

    // The scenario, so the page explains the run on its own.
    let _ = writeln!(
        h,
        "<h2 id=\"scenario\">Scenario</h2>\n<details><summary>{} as run</summary>\n<pre>{}</pre>\n</details>",
        e(&r.scenario.file),
        e(&r.scenario.source)
    );
    let _ = writeln!(
        h,
        "<footer>Written by {} {} from record format version {}.</footer>\n</main>\n</body>\n</html>",
        e(&r.tool.name),
        e(&r.tool.version),
        r.version
    );
    h
}

/// The start of a page: doctype, the CSP that keeps it offline, the inline CSS, `<main>` open.
pub(crate) fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        escape(title)
    )
}

/// The plots as embedded figures (`empty` when there are none).
pub(crate) fn plots_section(h: &mut String, plots: &[HtmlPlot], empty: &str) {
    if plots.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", escape(empty));
        return;
    }
    h.push_str("<div class=\"plots\">\n");
    for p in plots {
        let (mime, data) = match &p.image {
            PlotImage::Svg(s) => ("image/svg+xml", s.as_bytes()),
            PlotImage::Png(b) => ("image/png", b.as_slice()),
        };
        let _ = writeln!(
            h,
            "<figure><img alt=\"{t}\" src=\"data:{mime};base64,{}\"><figcaption>{t}</figcaption></figure>",
            base64::engine::general_purpose::STANDARD.encode(data),
            t = escape(&p.title)
        );
    }
    h.push_str("</div>\n");
}

/// A number for people: integers without a fraction, others with up to four significant
/// decimals and no trailing zeros.
pub(crate) fn fmt_g(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::record;

    /// Every `<` in the page opens one of the tags the renderer writes itself.
    fn tags(html: &str) -> std::collections::BTreeSet<String> {
        html.split('<')
            .skip(1)
            .map(|s| {
                s.split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_ascii_lowercase()
            })
            .collect()
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let r = record();
        let plots = [HtmlPlot {
            title: "latency <script>alert(1)</script>".into(),
            image: PlotImage::Svg(
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".into(),
            ),
        }];
        let html = render(&r, &plots);
        let allowed: std::collections::BTreeSet<String> = [
            "!doctype",
            "html",
            "head",
            "meta",
            "title",
            "style",
            "body",
            "main",
            "section",
            "h1",
            "h2",
            "h3",
            "span",
            "div",
            "b",
            "code",
            "p",
            "table",
            "tr",
            "th",
            "td",
            "ul",
            "li",
            "details",
            "summary",
            "pre",
            "figure",
            "img",
            "figcaption",
            "footer",
            "br",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let found = tags(&html);
        let extra: Vec<_> = found.difference(&allowed).collect();
        assert!(extra.is_empty(), "unexpected tags {extra:?}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("<b>&"));
        // The hostile names are there, escaped.
        assert!(html.contains("drill &lt;b&gt;&amp;&quot;&#39;"));
        assert!(html.contains("oom&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("page&quot;&gt;&lt;b&gt;"));
        // An already-escaped entity in the record is shown literally, not decoded.
        assert!(html.contains("&lt;b&gt;&amp;amp; &quot;x&quot;"));
        // The SVG is inside a base64 data URI, never as markup.
        assert!(html.contains("src=\"data:image/svg+xml;base64,"));
        assert!(html.contains("alt=\"latency &lt;script&gt;"));
    }

    #[test]
    fn verdict_first_then_checks_with_figures() {
        let r = record();
        let html = render(&r, &[]);
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(at("badge fail\">FAIL") < at("id=\"checks\""));
        assert!(at("id=\"checks\"") < at("id=\"latency\""));
        assert!(at("id=\"timeline\"") < at("id=\"plots\""));
        assert!(html.contains("checks <b>4 of 8 met</b>"));
        assert!(html.contains("NOT trustworthy"));
        assert!(html.contains("<h3>Alert expectations</h3>"));
        assert!(html.contains("<h3>SLO budgets</h3>"));
        assert!(html.contains("<h3>Engine agreement</h3>"));
        assert!(html.contains("<h3>Unexpected alerts</h3>"));
        // Why-not lines of a failed alert expectation.
        assert!(html.contains(
            "<li>  rate(errors[1m]) &gt; 0.5 was 0 (&lt;no data&gt; &amp; &quot;empty&quot;)</li>"
        ));
        // Time to fire for the agreement verdict.
        assert!(html.contains("<td class=\"num\">1.0 s</td>"));
        assert!(html.contains("812 ms"));
        assert!(html.contains("NOT verified"));
        assert!(html.contains("No plots were rendered"));
        // Self-contained: nothing is fetched.
        for needle in [
            "http-equiv=\"Content-Security-Policy\"",
            "default-src 'none'",
        ] {
            assert!(html.contains(needle));
        }
        for bad in ["<link", "<script", "src=\"http", "url(", "@import"] {
            assert!(!html.contains(bad), "{bad}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_g(500.0), "500");
        assert_eq!(fmt_g(0.05), "0.05");
        assert_eq!(fmt_g(99.9), "99.9");
        assert_eq!(fmt_g(f64::NAN), "–");
    }
}
