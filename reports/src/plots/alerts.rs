//! `alerts`: the alert timeline. One row per alert (its name and the labels that tell alerts of
//! one name apart), pending and firing spans, the fault windows behind them, and each
//! expectation on that alert: its window when the description gives one (`fires within 25 s
//! after hog.start`), and whether it was met, per row.
//!
//! The record keeps an expectation's description, not its resolved window; the window is
//! recovered from the descriptions the harness writes (`fires|resolves within N s after LABEL`,
//! `is STATE at LABEL`, `never fires`), LABEL being `FAULT.start|end`, `STAGE.start|end` or a
//! time in seconds. Other expectations (agreement between engines, Alertmanager delivery,
//! unexpected alerts) count in the row's met/missed tally without a window.

use super::style::{self, DrawResult, FaultSpan, LegendItem, Mark};
use super::{Ctx, Plot};
use crate::record::{AlertRecord, ExpectationVerdict, RunRecord};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;

const ROW: u32 = 36;
const PENDING: RGBColor = RGBColor(245, 180, 40);
const FIRING: RGBColor = RGBColor(214, 39, 40);
const MET: RGBColor = RGBColor(30, 140, 30);
const MISSED: RGBColor = RGBColor(200, 0, 0);
/// Longest row label drawn in full, characters.
const LABEL_MAX: usize = 64;

/// What an expectation marks on its row.
#[derive(Debug, Clone, PartialEq)]
enum Where {
    /// A window (`fires within N s after X`, `never fires`).
    Window(f64, f64),
    /// An instant (`is firing at X`).
    At(f64),
    /// Nothing recoverable: counted, not drawn.
    Nowhere,
}

#[derive(Debug, Clone, PartialEq)]
struct ExpMark {
    at: Where,
    passed: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    labels: BTreeMap<String, String>,
    text: String,
    /// (start, end, firing?) spans.
    spans: Vec<(f64, f64, bool)>,
    marks: Vec<ExpMark>,
}

/// The prepared plot.
pub(super) struct Alerts {
    subtitle: String,
    t_end: f64,
    faults: Vec<FaultSpan>,
    rows: Vec<Row>,
}

/// Pending and firing spans from an alert's transitions; one still open at the end of the
/// record runs to `t_end`.
fn spans(a: &AlertRecord, t_end: f64) -> Vec<(f64, f64, bool)> {
    let mut out = Vec::new();
    let mut open: Option<(f64, bool)> = None;
    for t in &a.transitions {
        if !t.t_s.is_finite() {
            continue;
        }
        if let Some((s, firing)) = open.take() {
            out.push((s, t.t_s.max(s), firing));
        }
        match t.state.as_str() {
            "pending" => open = Some((t.t_s, false)),
            "firing" => open = Some((t.t_s, true)),
            _ => {}
        }
    }
    if let Some((s, firing)) = open {
        out.push((s, t_end.max(s), firing));
    }
    out
}

/// The labels of each alert worth showing: those whose values differ between alerts of the
/// same name (`worker_id="worker-0"`), never `alertname`.
fn distinguishing(alerts: &[AlertRecord], a: &AlertRecord) -> BTreeMap<String, String> {
    let same: Vec<&AlertRecord> = alerts.iter().filter(|b| b.name == a.name).collect();
    a.labels
        .iter()
        .filter(|(k, v)| {
            k.as_str() != "alertname" && same.iter().any(|b| b.labels.get(*k) != Some(v))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn row_text(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut s = name.to_string();
    if !labels.is_empty() {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        s = format!("{s}{{{}}}", inner.join(", "));
    }
    if s.chars().count() > LABEL_MAX {
        s = s.chars().take(LABEL_MAX - 1).collect::<String>() + "…";
    }
    s
}

/// The label set a verdict's detail names (`{severity="high", ...} embedded: ...`).
fn detail_labels(detail: &str) -> BTreeMap<String, String> {
    let Some(inner) = detail
        .strip_prefix('{')
        .and_then(|d| d.split_once('}'))
        .map(|(i, _)| i)
    else {
        return BTreeMap::new();
    };
    inner
        .split(", ")
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// The time a description's LABEL stands for.
fn resolve(label: &str, r: &RunRecord, faults: &[FaultSpan]) -> Option<f64> {
    let label = label.trim();
    if let Some(t) = FaultSpan::at(faults, label) {
        return Some(t);
    }
    if let Some((name, edge)) = label.rsplit_once('.') {
        if let Some(s) = r.plan.stages.iter().find(|s| s.name == name) {
            match edge {
                "start" => return Some(s.start_s),
                "end" => return Some(s.start_s + s.duration_s),
                _ => {}
            }
        }
    }
    let secs = label.trim_end_matches('s').trim();
    secs.parse::<f64>().ok().filter(|t| t.is_finite())
}

/// Where an expectation's description puts it on the timeline.
fn locate(e: &ExpectationVerdict, r: &RunRecord, faults: &[FaultSpan], t_end: f64) -> Where {
    let d = e.description.as_str();
    if d == "never fires" {
        return Where::Window(0.0, t_end);
    }
    for verb in ["fires within ", "resolves within "] {
        if let Some(rest) = d.strip_prefix(verb) {
            let Some((n, label)) = rest.split_once(" s after ") else {
                return Where::Nowhere;
            };
            return match (n.trim().parse::<f64>(), resolve(label, r, faults)) {
                (Ok(n), Some(t)) if n.is_finite() => Where::Window(t, t + n.max(0.0)),
                _ => Where::Nowhere,
            };
        }
    }
    if let Some(rest) = d.strip_prefix("is ") {
        if let Some((_, label)) = rest.split_once(" at ") {
            if let Some(t) = resolve(label, r, faults) {
                return Where::At(t);
            }
        }
    }
    Where::Nowhere
}

impl Alerts {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Option<Alerts> {
        let r = ctx.record;
        let mut rows: Vec<Row> = r
            .alerts
            .iter()
            .map(|a| {
                let labels = distinguishing(&r.alerts, a);
                Row {
                    name: a.name.clone(),
                    text: row_text(&a.name, &labels),
                    labels: a.labels.clone(),
                    spans: spans(a, ctx.t_end),
                    marks: Vec::new(),
                }
            })
            .collect();
        for e in &r.expectations {
            // Budget expectations (`SLO availability`) belong to the budget plot.
            if e.alert
                .strip_prefix("SLO ")
                .is_some_and(|n| r.slos.iter().any(|s| s.name == n))
            {
                continue;
            }
            let want = detail_labels(&e.detail);
            let candidates: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].name == e.alert)
                .collect();
            let chosen = candidates
                .iter()
                .copied()
                .find(|&i| want.iter().all(|(k, v)| rows[i].labels.get(k) == Some(v)))
                .or_else(|| candidates.first().copied());
            let i = match chosen {
                Some(i) => i,
                None => {
                    // Expected but never pending or firing: a row of its own, empty but for
                    // the expectation, so a missed "fires" shows as a gap.
                    rows.push(Row {
                        name: e.alert.clone(),
                        labels: BTreeMap::new(),
                        text: row_text(&e.alert, &BTreeMap::new()),
                        spans: Vec::new(),
                        marks: Vec::new(),
                    });
                    rows.len() - 1
                }
            };
            rows[i].marks.push(ExpMark {
                at: locate(e, r, &ctx.faults, ctx.t_end),
                passed: e.passed,
            });
        }
        if rows.is_empty() {
            return None;
        }
        Some(Alerts {
            subtitle: style::subtitle(r),
            t_end: ctx.t_end,
            faults: ctx.faults.clone(),
            rows,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let mut items = vec![
            LegendItem::new("pending", PENDING, Mark::Box(0.9)),
            LegendItem::new("firing", FIRING, Mark::Box(0.9)),
        ];
        let marks = || self.rows.iter().flat_map(|r| &r.marks);
        if marks().any(|m| m.passed) {
            items.push(LegendItem::new(
                "expectation window, met ✓",
                MET,
                Mark::Line(3),
            ));
        }
        if marks().any(|m| !m.passed) {
            items.push(LegendItem::new(
                "expectation window, missed ✗",
                MISSED,
                Mark::Line(3),
            ));
        }
        if !self.faults.is_empty() {
            items.push(LegendItem::new(
                "fault window",
                style::FAULT,
                Mark::Box(0.3),
            ));
        }
        items
    }

    fn label_width(&self) -> i32 {
        let w = self
            .rows
            .iter()
            .map(|r| style::text_width(&r.text, style::TICK))
            .max()
            .unwrap_or(0);
        (w + 24).clamp(120, 640)
    }
}

impl Plot for Alerts {
    const NAME: &'static str = "alerts";

    fn title(&self) -> String {
        "Alert timeline: pending and firing, faults and expectations".into()
    }

    fn size(&self) -> (u32, u32) {
        let h = style::TITLE_BAND
            + ROW * self.rows.len() as u32
            + 110
            + style::legend_height(&self.legend(), style::WIDTH);
        (style::WIDTH, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let n = self.rows.len() as f64;
        // Row i sits at y = n - 1 - i, so the first row is on top.
        let y_of = |i: usize| n - 1.0 - i as f64;
        let (y0, y1) = (-0.5, n - 0.5);
        let mut chart = ChartBuilder::on(&body)
            .margin_left(10)
            .margin_right(190)
            .margin_top(40)
            .x_label_area_size(48)
            .y_label_area_size(self.label_width())
            .build_cartesian_2d(0f64..self.t_end, y0..y1)?;
        chart
            .configure_mesh()
            .label_style(style::font(style::TICK))
            .axis_desc_style(style::font(style::AXIS))
            .x_desc("time since run start (s)")
            .x_label_formatter(&|v| style::num(*v))
            // Rows are labelled below, by name; numbers on this axis would mean nothing.
            .y_label_formatter(&|_| String::new())
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        style::shade_faults(&mut chart, &self.faults, (y0, y1), true)?;
        for (i, row) in self.rows.iter().enumerate() {
            let y = y_of(i);
            if i > 0 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y + 0.5), (self.t_end, y + 0.5)],
                    RGBColor(220, 220, 220).stroke_width(1),
                )))?;
            }
            for &(s, e, firing) in &row.spans {
                let c = if firing { FIRING } else { PENDING };
                // A zero-length span (pending and firing at one evaluation) still shows.
                let e = if e - s < self.t_end * 0.002 {
                    s + self.t_end * 0.002
                } else {
                    e
                };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(s, y - 0.2), (e, y + 0.26)],
                    c.mix(0.9).filled(),
                )))?;
            }
            let (mut met, mut missed) = (0, 0);
            for m in &row.marks {
                if m.passed {
                    met += 1;
                } else {
                    missed += 1;
                }
                let c = if m.passed { MET } else { MISSED };
                let sign = if m.passed { "✓" } else { "✗" };
                let yb = y - 0.34;
                match m.at {
                    Where::Window(s, e) => {
                        let (s, e) = (s.clamp(0.0, self.t_end), e.clamp(0.0, self.t_end));
                        chart.draw_series(std::iter::once(PathElement::new(
                            vec![(s, y - 0.24), (s, yb), (e, yb), (e, y - 0.24)],
                            c.stroke_width(3),
                        )))?;
                        chart.draw_series(std::iter::once(
                            EmptyElement::at((e, yb))
                                + Text::new(
                                    sign,
                                    (4, 0),
                                    style::bold(style::TICK)
                                        .color(&c)
                                        .pos(Pos::new(HPos::Left, VPos::Center)),
                                ),
                        ))?;
                    }
                    Where::At(t) => {
                        let t = t.clamp(0.0, self.t_end);
                        chart.draw_series(std::iter::once(
                            EmptyElement::at((t, yb))
                                + TriangleMarker::new((0, 0), 6, c.filled())
                                + Text::new(
                                    sign,
                                    (8, 0),
                                    style::bold(style::TICK)
                                        .color(&c)
                                        .pos(Pos::new(HPos::Left, VPos::Center)),
                                ),
                        ))?;
                    }
                    Where::Nowhere => {}
                }
            }
            // Row name on the left, tally on the right, outside the plotting area.
            let name_color = if row.spans.is_empty() {
                RGBColor(110, 110, 110)
            } else {
                BLACK
            };
            chart.draw_series(std::iter::once(
                EmptyElement::at((0.0, y))
                    + Text::new(
                        row.text.clone(),
                        (-10, 0),
                        style::font(style::TICK)
                            .color(&name_color)
                            .pos(Pos::new(HPos::Right, VPos::Center)),
                    ),
            ))?;
            if met + missed > 0 {
                let (text, c) = match (met, missed) {
                    (m, 0) => (format!("✓ {m} met"), MET),
                    (0, x) => (format!("✗ {x} missed"), MISSED),
                    (m, x) => (format!("✓ {m} met, ✗ {x} missed"), MISSED),
                };
                chart.draw_series(std::iter::once(
                    EmptyElement::at((self.t_end, y))
                        + Text::new(
                            text,
                            (10, 0),
                            style::font(style::SMALL)
                                .color(&c)
                                .pos(Pos::new(HPos::Left, VPos::Center)),
                        ),
                ))?;
            }
        }
        Ok(())
    }
}
