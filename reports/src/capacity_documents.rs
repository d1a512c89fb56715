//! A sweep's documents, from its [`CapacityRecord`] alone: `summary.md` (the answer, the steps,
//! the sizing table and the checks, for a CI job summary or a PR), the capacity plots under
//! `plots/`, and `report.html` (self-contained, as a run's: inline CSS, plots as `data:` URIs, a
//! CSP that forbids fetching anything, no script).

use crate::capacity::{CapacityRecord, StepRecord};
use crate::documents::render_plots;
use crate::html::{escape, fmt_g, head, num, plots_section};
use crate::summary::md;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes `summary.md`, the plots and `report.html` into `dir`; returns the files written. A
/// plot failure leaves the plots out of the page (and says so) rather than failing.
pub fn write(record: &CapacityRecord, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let summary = dir.join("summary.md");
    crate::documents::write(&summary, &render_md(record))?;
    written.push(summary);
    let (plots, files, warnings) = match render_plots(
        |d| crate::plots::render_capacity(record, d),
        &dir.join("plots"),
    ) {
        Ok(r) => r,
        Err(e) => (
            Vec::new(),
            Vec::new(),
            vec![format!("plots not rendered: {e}")],
        ),
    };
    written.extend(files);
    let html = dir.join("report.html");
    let mut page = render_html(record);
    let at = page
        .find("<!--plots-->")
        .expect("the page has a place for its plots");
    let mut p = String::new();
    let empty = if warnings.is_empty() {
        "No plots were rendered for this sweep.".to_owned()
    } else {
        warnings.join("; ")
    };
    plots_section(&mut p, &plots, &empty);
    page.replace_range(at..at + "<!--plots-->".len(), &p);
    crate::documents::write(&html, &page)?;
    written.push(html);
    Ok(written)
}

fn opt(v: Option<f64>, digits: usize, suffix: &str) -> String {
    v.map_or("–".into(), |v| format!("{}{suffix}", num(v, digits)))
}

fn tier_p95(s: &StepRecord) -> String {
    s.per_tier
        .iter()
        .map(|(t, st)| format!("{t} {}", num(st.latency.p95_ms, 0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Markdown summary.
pub fn render_md(r: &CapacityRecord) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## firedrill sweep: {}\n", md(&r.scenario.name));
    let _ = writeln!(o, "**Answer:** {}\n", md(&r.answer.statement));
    for (tier, k) in &r.knees {
        let _ = writeln!(
            o,
            "- knee ({}): {} answers/s at p95 {} ms (step {} req/s)",
            md(tier),
            num(k.throughput, 2),
            num(k.p95_ms, 0),
            fmt_g(k.rate)
        );
    }
    let _ = writeln!(
        o,
        "\n| rate (req/s) | state | throughput/s | p95 ms by tier | errors | queue wait p95 ms | workers busy | verdict |\n|---:|---|---:|---|---:|---:|---:|---|"
    );
    for s in &r.steps {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {}% | {} | {} | {} |",
            fmt_g(s.rate),
            s.state,
            num(s.throughput, 2),
            md(&tier_p95(s)),
            num(s.error_rate * 100.0, 1),
            s.queue_wait
                .get("all")
                .map_or("–".into(), |q| num(q.p95, 0)),
            opt(s.worker_utilization.map(|u| u * 100.0), 0, "%"),
            if s.passed { "held" } else { "**broke**" }
        );
    }
    if !r.service.is_empty() {
        let _ = writeln!(
            o,
            "\n**Worker time** (per request, ms)\n\n| model | tier | n | mean | p50 | p95 | p99 | cs² | req/s per worker |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &r.service {
            let q = &s.service_ms;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&s.model),
                md(&s.tier),
                q.count,
                num(q.mean, 1),
                num(q.p50, 1),
                num(q.p95, 1),
                num(q.p99, 1),
                num(s.scv, 3),
                num(s.rate_per_worker, 2)
            );
        }
    }
    if let Some(c) = &r.contention {
        let _ = writeln!(
            o,
            "\nWorker time ≈ {} ms alone + {} ms per other job in service (fitted on {} requests).",
            num(c.alone_ms, 1),
            num(c.per_other_ms, 1),
            c.samples
        );
    }
    for z in &r.sizing {
        let _ = writeln!(
            o,
            "\n**Sizing for {} req/s:** {}\n\n| workers | utilization | P(wait) | p95 wait ms (simulated) | p95 wait ms (M/G/c) | predicted latency | meets |\n|---:|---:|---:|---:|---:|---|---|",
            fmt_g(z.rate),
            z.recommended
                .map_or("no worker count meets the thresholds".into(), crate::capacity::workers)
        );
        for row in &z.rows {
            let lat = row
                .latency
                .iter()
                .map(|(n, v)| format!("{}: {} ms", md(n), num(*v, 0)))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                o,
                "| {}{} | {}% | {} | {} | {} | {} | {} |",
                row.workers,
                if Some(row.workers) == z.recommended {
                    " ←"
                } else {
                    ""
                },
                num(row.utilization * 100.0, 0),
                num(row.p_wait, 2),
                num(row.p95_wait_ms, 0),
                num(row.mgc_p95_wait_ms, 0),
                lat,
                if row.meets { "yes" } else { "no" }
            );
        }
    }
    if !r.validation.is_empty() {
        let _ = writeln!(
            o,
            "\n**Checks** (the recommended configuration, run; the model replays the check's own schedule, at the workers' speed in the sweep and at the speed the check measured; the second is judged)\n\n| rate (realized) | workers | p95 wait from the sweep | at the check's speed | M/G/c | measured | error | worker time sweep → check | check |\n|---:|---:|---:|---:|---:|---:|---:|---|---|"
        );
        for v in &r.validation {
            let _ = writeln!(
                o,
                "| {} ({}) | {} | {} ms ({:+.0}%) | {} ms | {} ms | {} ms | {:+.0}% | {} → {} ms | {} |",
                fmt_g(v.rate),
                num(v.realized_rate, 2),
                v.workers,
                num(v.predicted_p95_wait_ms, 0),
                v.a_priori_error * 100.0,
                num(v.adjusted_p95_wait_ms, 0),
                num(v.mgc_p95_wait_ms, 0),
                num(v.measured_p95_wait_ms, 0),
                v.relative_error * 100.0,
                num(v.predicted_service_ms, 1),
                num(v.measured_service_ms, 1),
                if v.passed {
                    "within tolerance"
                } else {
                    "**missed**"
                }
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "\n> {}", md(n));
    }
    let _ = writeln!(
        o,
        "\n<details><summary>Method</summary>\n\n{}\n\n</details>",
        md(&r.method.description)
    );
    o
}

/// The page, with `<!--plots-->` where the plots go.
pub fn render_html(r: &CapacityRecord) -> String {
    let e = escape;
    let mut h = head(&format!("sweep · {} · firedrill", r.scenario.name));
    let found = r.answer.max_passing_rate.is_some();
    let class = if found { "pass" } else { "fail" };
    let _ = writeln!(
        h,
        "<h1>Capacity sweep: {}</h1>\n<div class=\"verdict {class}\"><p><b>{}</b></p><div class=\"facts\"><span>steps <b>{}</b></span><span>workers <b>{}</b></span><span>started <b>{}</b></span><span>seed <b>{}</b></span></div>",
        e(&r.scenario.name),
        e(&r.answer.statement),
        r.steps.len(),
        r.workers.map_or("–".into(), |w| w.to_string()),
        e(&r.started_at),
        r.scenario.seed
    );
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", e(n));
    }
    h.push_str("</div>\n");
    if !r.knees.is_empty() {
        h.push_str("<h2>Knee of latency against throughput</h2>\n<table><tr><th>tier</th><th class=\"num\">throughput/s</th><th class=\"num\">p95 ms</th><th class=\"num\">step rate</th></tr>\n");
        for (t, k) in &r.knees {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                e(t),
                num(k.throughput, 2),
                num(k.p95_ms, 0),
                fmt_g(k.rate)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<h2>Steps</h2>\n<table><tr><th class=\"num\">rate</th><th>state</th><th class=\"num\">warm-up s</th><th class=\"num\">throughput/s</th><th class=\"num\">goodput/s</th><th>p50 / p95 ms by tier</th><th class=\"num\">errors</th><th class=\"num\">queue wait p95</th><th class=\"num\">queue depth</th><th class=\"num\">workers busy</th><th class=\"num\">GPU</th><th>thresholds</th></tr>\n");
    for s in &r.steps {
        let lat = s
            .per_tier
            .iter()
            .map(|(t, st)| {
                format!(
                    "{} {} / {}",
                    e(t),
                    num(st.latency.p50_ms, 0),
                    num(st.latency.p95_ms, 0)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let checks = s
            .thresholds
            .iter()
            .map(|t| {
                format!(
                    "<span class=\"{}\">{}</span>: {}",
                    if t.passed { "ok" } else { "missed" },
                    e(&t.name),
                    e(&t.detail)
                )
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            h,
            "<tr{}><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{lat}</td><td class=\"num\">{}%</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{checks}</td></tr>",
            if s.passed { "" } else { " class=\"failed\"" },
            fmt_g(s.rate),
            e(&s.state),
            num(s.warmup_s, 0),
            num(s.throughput, 2),
            num(s.goodput, 2),
            num(s.error_rate * 100.0, 1),
            s.queue_wait.get("all").map_or("–".into(), |q| format!("{} ms", num(q.p95, 0))),
            opt(s.queue_depth_mean, 1, ""),
            opt(s.worker_utilization.map(|u| u * 100.0), 0, "%"),
            opt(s.gpu_utilization, 0, "%"),
        );
    }
    h.push_str("</table>\n");
    if !r.service.is_empty() {
        h.push_str("<h2>Worker time per request</h2>\n<table><tr><th>model</th><th>tier</th><th class=\"num\">n</th><th class=\"num\">mean ms</th><th class=\"num\">p50</th><th class=\"num\">p95</th><th class=\"num\">p99</th><th class=\"num\">cs²</th><th class=\"num\">req/s per worker</th></tr>\n");
        for s in &r.service {
            let q = &s.service_ms;
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                e(&s.model),
                e(&s.tier),
                q.count,
                num(q.mean, 1),
                num(q.p50, 1),
                num(q.p95, 1),
                num(q.p99, 1),
                num(s.scv, 3),
                num(s.rate_per_worker, 2)
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(c) = &r.contention {
        let _ = writeln!(
            h,
            "<p>Worker time ≈ <b>{} ms</b> alone + <b>{} ms</b> per other job in service (least squares over {} requests; about 0 for workers on separate GPUs).</p>",
            num(c.alone_ms, 1),
            num(c.per_other_ms, 1),
            c.samples
        );
    }
    for z in &r.sizing {
        let _ = writeln!(
            h,
            "<h2>Sizing for {} req/s: {}</h2>\n<table><tr><th class=\"num\">workers</th><th class=\"num\">utilization</th><th class=\"num\">P(wait)</th><th class=\"num\">p95 wait (simulated)</th><th class=\"num\">p95 wait (M/G/c)</th><th>predicted latency</th><th>meets</th></tr>",
            fmt_g(z.rate),
            z.recommended
                .map_or("no worker count meets the thresholds".into(), crate::capacity::workers)
        );
        for row in &z.rows {
            let lat = row
                .latency
                .iter()
                .map(|(n, v)| format!("{}: {} ms", e(n), num(*v, 0)))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{}{}</td><td class=\"num\">{}%</td><td class=\"num\">{}</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td><td>{lat}</td><td>{}</td></tr>",
                row.workers,
                if Some(row.workers) == z.recommended { " (recommended)" } else { "" },
                num(row.utilization * 100.0, 0),
                num(row.p_wait, 2),
                num(row.p95_wait_ms, 0),
                num(row.mgc_p95_wait_ms, 0),
                if row.meets { "<span class=\"ok\">yes</span>" } else { "<span class=\"missed\">no</span>" }
            );
        }
        h.push_str("</table>\n");
    }
    if !r.validation.is_empty() {
        h.push_str("<h2>Checks: the recommended configuration, run</h2>\n<p>The model replays the check's own schedule (seeded, so known before it ran; a minute of a random process waits more or less than the long run, which the sizing table's figure is) with the jobs measured in the sweep: once at the workers' speed in the sweep, a prediction from the sweep alone, and once at the speed the check measured, which is judged (it tests the queueing model rather than the host's drift between runs). M/G/c is at the rate the span really had.</p>\n<table><tr><th class=\"num\">rate (realized)</th><th class=\"num\">workers</th><th class=\"num\">p95 wait from the sweep</th><th class=\"num\">at the check's speed</th><th class=\"num\">M/G/c</th><th class=\"num\">measured</th><th class=\"num\">error</th><th class=\"num\">worker time assumed → measured</th><th>check</th><th>thresholds</th></tr>\n");
        for v in &r.validation {
            let checks = v
                .step
                .thresholds
                .iter()
                .map(|t| {
                    format!(
                        "<span class=\"{}\">{}</span>",
                        if t.passed { "ok" } else { "missed" },
                        e(&t.name)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{} ({})</td><td class=\"num\">{}</td><td class=\"num\">{} ms ({:+.0}%)</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td><td class=\"num\">{} ms</td><td class=\"num\">{:+.0}%</td><td class=\"num\">{} → {} ms</td><td>{}</td><td>{checks}</td></tr>",
                fmt_g(v.rate),
                num(v.realized_rate, 2),
                v.workers,
                num(v.predicted_p95_wait_ms, 0),
                v.a_priori_error * 100.0,
                num(v.adjusted_p95_wait_ms, 0),
                num(v.mgc_p95_wait_ms, 0),
                num(v.measured_p95_wait_ms, 0),
                v.relative_error * 100.0,
                num(v.predicted_service_ms, 1),
                num(v.measured_service_ms, 1),
                if v.passed { "<span class=\"ok\">within tolerance</span>" } else { "<span class=\"missed\">missed</span>" }
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "<h2>Method</h2>\n<p>{}</p>\n<h2 id=\"plots\">Plots</h2>\n<!--plots-->\n<h2>Scenario</h2>\n<details><summary>{} as swept</summary>\n<pre>{}</pre>\n</details>\n<footer>Written by {} {} from capacity record format version {}.</footer>\n</main>\n</body>\n</html>",
        e(&r.method.description),
        e(&r.scenario.file),
        e(&r.scenario.source),
        e(&r.tool.name),
        e(&r.tool.version),
        r.version
    );
    h
}
