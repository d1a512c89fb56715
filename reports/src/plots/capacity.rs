//! The capacity plots of a sweep, from its [`CapacityRecord`] alone:
//!
//! | name                   | what it shows                                                        |
//! |------------------------|-----------------------------------------------------------------------|
//! | `capacity_latency`     | p50 and p95 latency per tier against throughput, one point per step; latency thresholds; the knee; steps that broke a threshold crossed out |
//! | `capacity_utilization` | throughput and goodput against the offered rate; worker and GPU utilization; mean queue depth |
//! | `capacity_sizing`      | predicted p95 queue wait against the worker count per target rate (simulation and M/G/c), measured checks |

use super::style::{self, DrawResult, LegendItem, Mark};
use super::{emit, Plot, PlotFile};
use crate::capacity::CapacityRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Renders the capacity plots the record has data for into `dir`.
pub fn render_capacity(record: &CapacityRecord, dir: &Path) -> Result<Vec<PlotFile>, String> {
    style::register_fonts()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: error creating directory: {e}", dir.display()))?;
    let mut out = Vec::new();
    if let Some(p) = LatencyCurve::prepare(record) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = Utilization::prepare(record) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = Sizing::prepare(record) {
        out.push(emit(&p, dir)?);
    }
    Ok(out)
}

fn subtitle(r: &CapacityRecord) -> String {
    format!(
        "scenario {} · seed {} · started {} · {} steps{}",
        r.scenario.name,
        r.scenario.seed,
        r.started_at,
        r.steps.len(),
        r.workers
            .map_or(String::new(), |w| format!(" · {w} workers"))
    )
}

/// One tier's curve.
struct Curve {
    tier: String,
    color: RGBColor,
    /// `(throughput, p50, p95, passed)` per step, by throughput.
    points: Vec<(f64, f64, f64, bool)>,
}

struct LatencyCurve {
    subtitle: String,
    curves: Vec<Curve>,
    /// `(label, ms)`.
    limits: Vec<(String, f64)>,
    /// `(tier, throughput, p95)`.
    knees: Vec<(String, f64, f64)>,
    x_max: f64,
}

impl LatencyCurve {
    fn prepare(r: &CapacityRecord) -> Option<LatencyCurve> {
        let mut tiers: Vec<String> = r
            .steps
            .iter()
            .flat_map(|s| s.per_tier.keys().cloned())
            .collect();
        tiers.sort();
        tiers.dedup();
        let curves: Vec<Curve> = tiers
            .iter()
            .enumerate()
            .map(|(i, tier)| {
                let mut points: Vec<(f64, f64, f64, bool)> = r
                    .steps
                    .iter()
                    .filter_map(|s| {
                        let t = s.per_tier.get(tier).filter(|t| t.count > 0)?;
                        let share = t.count as f64 / s.overall.count.max(1) as f64;
                        Some((
                            s.throughput * share,
                            t.latency.p50_ms,
                            t.latency.p95_ms,
                            s.passed,
                        ))
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Curve {
                    tier: tier.clone(),
                    color: style::tier_color(tier, i),
                    points,
                }
            })
            .filter(|c| !c.points.is_empty())
            .collect();
        if curves.is_empty() {
            return None;
        }
        let mut limits: Vec<(String, f64)> = Vec::new();
        for s in &r.steps {
            for t in &s.thresholds {
                if t.unit == "ms" && !limits.iter().any(|l| l.0 == t.name) {
                    limits.push((t.name.clone(), t.limit));
                }
            }
        }
        let knees = r
            .knees
            .iter()
            .filter(|(t, _)| tiers.contains(t))
            .map(|(t, k)| (t.clone(), k.throughput, k.p95_ms))
            .collect();
        let x_max = style::lin_top(
            curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)),
            1.0,
        );
        Some(LatencyCurve {
            subtitle: subtitle(r),
            curves,
            limits,
            knees,
            x_max,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let mut l = Vec::new();
        for c in &self.curves {
            l.push(LegendItem::new(
                format!("{} p95", c.tier),
                c.color,
                Mark::Line(3),
            ));
            l.push(LegendItem::new(
                format!("{} p50", c.tier),
                c.color,
                Mark::Dashed,
            ));
        }
        if !self.limits.is_empty() {
            l.push(LegendItem::new(
                "latency threshold",
                RGBColor(90, 90, 90),
                Mark::Dashed,
            ));
        }
        l.push(LegendItem::new(
            "× step broke a threshold",
            BLACK,
            Mark::Line(1),
        ));
        if !self.knees.is_empty() {
            l.push(LegendItem::new(
                "◆ knee (Kneedle, p95)",
                BLACK,
                Mark::Line(1),
            ));
        }
        l
    }
}

impl Plot for LatencyCurve {
    const NAME: &'static str = "capacity_latency";

    fn title(&self) -> String {
        "Latency against throughput".into()
    }

    fn size(&self) -> (u32, u32) {
        (
            style::WIDTH,
            620 + style::legend_height(&self.legend(), style::WIDTH),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let (lo, hi) = style::log_range(
            self.curves
                .iter()
                .flat_map(|c| c.points.iter().flat_map(|p| [p.1, p.2]))
                .chain(self.limits.iter().map(|l| l.1)),
            0.01,
        );
        let mut chart = ChartBuilder::on(&body)
            .margin_left(10)
            .margin_right(40)
            .margin_top(10)
            .x_label_area_size(48)
            .y_label_area_size(86)
            .build_cartesian_2d(0f64..self.x_max, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .label_style(style::font(style::TICK))
            .axis_desc_style(style::font(style::AXIS))
            .x_desc("throughput (answers/s, measured span of each step)")
            .y_desc("latency from intended send (ms, log)")
            .x_label_formatter(&|v| style::num(*v))
            .y_label_formatter(&|v| style::num(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (name, ms) in &self.limits {
            let grey = RGBColor(90, 90, 90);
            let n = 40;
            for k in 0..n {
                let x0 = self.x_max * k as f64 / n as f64;
                let x1 = x0 + self.x_max * 0.6 / n as f64;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, *ms), (x1, *ms)],
                    grey.stroke_width(2),
                )))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                format!("{name}: {}", style::num(*ms)),
                (self.x_max * 0.01, *ms),
                style::font(style::SMALL)
                    .color(&grey)
                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))?;
        }
        for c in &self.curves {
            chart.draw_series(LineSeries::new(
                c.points.iter().map(|p| (p.0, p.2)),
                c.color.stroke_width(3),
            ))?;
            // p50 dashed: short segments along each span.
            for w in c.points.windows(2) {
                let (a, b) = ((w[0].0, w[0].1), (w[1].0, w[1].1));
                for k in 0..8 {
                    let f0 = k as f64 / 8.0;
                    let f1 = f0 + 0.55 / 8.0;
                    let at = |f: f64| (a.0 + (b.0 - a.0) * f, a.1 * (b.1 / a.1).powf(f));
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![at(f0), at(f1)],
                        c.color.stroke_width(2),
                    )))?;
                }
            }
            for p in &c.points {
                chart.draw_series(std::iter::once(Circle::new(
                    (p.0, p.2),
                    5,
                    c.color.filled(),
                )))?;
                if !p.3 {
                    chart.draw_series(std::iter::once(Cross::new(
                        (p.0, p.2),
                        9,
                        BLACK.stroke_width(2),
                    )))?;
                }
            }
        }
        for (tier, x, y) in &self.knees {
            chart.draw_series(std::iter::once(
                EmptyElement::at((*x, *y))
                    + Polygon::new(
                        vec![(0, -11), (11, 0), (0, 11), (-11, 0)],
                        BLACK.mix(0.85).filled(),
                    )
                    + Text::new(
                        format!(
                            "knee ({tier}): {} /s, p95 {} ms",
                            style::num(*x),
                            style::num(*y)
                        ),
                        (14, -22),
                        style::font(style::SMALL),
                    ),
            ))?;
        }
        Ok(())
    }
}

/// One line of a panel, against the offered rate.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

struct Panel {
    caption: String,
    y_desc: String,
    y_max: Option<f64>,
    lines: Vec<Line>,
    diagonal: bool,
}

struct Utilization {
    subtitle: String,
    x_max: f64,
    panels: Vec<Panel>,
}

impl Utilization {
    fn prepare(r: &CapacityRecord) -> Option<Utilization> {
        if r.steps.is_empty() {
            return None;
        }
        let mut steps: Vec<_> = r.steps.iter().collect();
        steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let series = |f: &dyn Fn(&crate::capacity::StepRecord) -> Option<f64>| -> Vec<(f64, f64)> {
            steps
                .iter()
                .filter_map(|s| f(s).filter(|v| v.is_finite()).map(|v| (s.rate, v)))
                .collect()
        };
        let mut panels = vec![Panel {
            caption: "Answers per second against the offered rate (dotted: the offered rate)"
                .into(),
            y_desc: "answers/s".into(),
            y_max: None,
            lines: vec![
                Line {
                    label: "throughput (any outcome)".into(),
                    color: style::nth(0),
                    points: series(&|s| Some(s.throughput)),
                },
                Line {
                    label: "goodput (ok)".into(),
                    color: style::nth(2),
                    points: series(&|s| Some(s.goodput)),
                },
            ],
            diagonal: true,
        }];
        let mut util = Vec::new();
        let w = series(&|s| s.worker_utilization.map(|u| u * 100.0));
        if !w.is_empty() {
            util.push(Line {
                label: "workers busy (from timings)".into(),
                color: style::nth(4),
                points: w,
            });
        }
        let g = series(&|s| s.gpu_utilization);
        if !g.is_empty() {
            util.push(Line {
                label: "GPU compute utilization (scraped)".into(),
                color: style::nth(1),
                points: g,
            });
        }
        if !util.is_empty() {
            panels.push(Panel {
                caption: "Utilization against the offered rate".into(),
                y_desc: "busy (%)".into(),
                y_max: Some(100.0),
                lines: util,
                diagonal: false,
            });
        }
        let q = series(&|s| s.queue_depth_mean);
        if !q.is_empty() {
            panels.push(Panel {
                caption: "Mean queue depth against the offered rate".into(),
                y_desc: "waiting requests".into(),
                y_max: None,
                lines: vec![Line {
                    label: "queue depth (mean over the span)".into(),
                    color: style::nth(5),
                    points: q,
                }],
                diagonal: false,
            });
        }
        let x_max = style::lin_top(steps.iter().map(|s| s.rate), 1.0);
        Some(Utilization {
            subtitle: subtitle(r),
            x_max,
            panels,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        self.panels
            .iter()
            .flat_map(|p| p.lines.iter())
            .map(|l| LegendItem::new(l.label.clone(), l.color, Mark::Line(3)))
            .collect()
    }
}

const PANEL: u32 = 260;

impl Plot for Utilization {
    const NAME: &'static str = "capacity_utilization";

    fn title(&self) -> String {
        "Throughput, utilization and queue against the offered rate".into()
    }

    fn size(&self) -> (u32, u32) {
        (
            style::WIDTH,
            style::TITLE_BAND
                + PANEL * self.panels.len() as u32
                + 40
                + style::legend_height(&self.legend(), style::WIDTH),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let n = self.panels.len();
        let (_, bh) = body.dim_in_pixel();
        let mut area = body;
        for (i, p) in self.panels.iter().enumerate() {
            let last = i + 1 == n;
            let height = if last {
                bh - PANEL * (n as u32 - 1)
            } else {
                PANEL
            };
            let (this, next) = area.split_vertically(height);
            area = next;
            let y_max = p.y_max.unwrap_or_else(|| {
                style::lin_top(
                    p.lines
                        .iter()
                        .flat_map(|l| l.points.iter().map(|q| q.1))
                        .chain(p.diagonal.then_some(self.x_max)),
                    1.0,
                )
            });
            let mut chart = ChartBuilder::on(&this)
                .caption(&p.caption, style::font(style::AXIS))
                .margin_left(10)
                .margin_right(40)
                .x_label_area_size(if last { 48 } else { 28 })
                .y_label_area_size(86)
                .build_cartesian_2d(0f64..self.x_max, 0f64..y_max)?;
            let mut mesh = chart.configure_mesh();
            mesh.label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc(p.y_desc.as_str())
                .x_label_formatter(&|v| style::num(*v))
                .y_label_formatter(&|v| style::num(*v))
                .light_line_style(RGBColor(235, 235, 235));
            if last {
                mesh.x_desc("offered rate (req/s)");
            }
            mesh.draw()?;
            if p.diagonal {
                let top = self.x_max.min(y_max);
                for k in 0..40 {
                    let a = top * k as f64 / 40.0;
                    let b = a + top * 0.5 / 40.0;
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(a, a), (b, b)],
                        RGBColor(120, 120, 120).stroke_width(2),
                    )))?;
                }
            }
            for l in &p.lines {
                chart.draw_series(LineSeries::new(
                    l.points.iter().copied(),
                    l.color.stroke_width(3),
                ))?;
                chart.draw_series(
                    l.points
                        .iter()
                        .map(|&q| Circle::new(q, 4, l.color.filled())),
                )?;
            }
        }
        Ok(())
    }
}

struct SizingCurve {
    rate: f64,
    color: RGBColor,
    /// `(workers, simulated p95 wait, M/G/c p95 wait)`.
    rows: Vec<(f64, f64, f64)>,
    recommended: Option<usize>,
    /// `(workers, measured p95 wait)`.
    measured: Vec<(f64, f64)>,
    /// `(workers, p95 wait predicted for the check's own schedule)`: what the measured one is
    /// judged against.
    replayed: Vec<(f64, f64)>,
}

struct Sizing {
    subtitle: String,
    curves: Vec<SizingCurve>,
    x: (f64, f64),
}

impl Sizing {
    fn prepare(r: &CapacityRecord) -> Option<Sizing> {
        let curves: Vec<SizingCurve> = r
            .sizing
            .iter()
            .enumerate()
            .map(|(i, s)| SizingCurve {
                rate: s.rate,
                color: style::nth(i),
                rows: s
                    .rows
                    .iter()
                    .filter(|row| row.p95_wait_ms.is_finite())
                    .map(|row| (row.workers as f64, row.p95_wait_ms, row.mgc_p95_wait_ms))
                    .collect(),
                recommended: s.recommended,
                measured: r
                    .validation
                    .iter()
                    .filter(|v| v.rate == s.rate)
                    .map(|v| (v.workers as f64, v.measured_p95_wait_ms))
                    .collect(),
                replayed: r
                    .validation
                    .iter()
                    .filter(|v| v.rate == s.rate && v.adjusted_p95_wait_ms.is_finite())
                    .map(|v| (v.workers as f64, v.adjusted_p95_wait_ms))
                    .collect(),
            })
            .filter(|c| !c.rows.is_empty())
            .collect();
        if curves.is_empty() {
            return None;
        }
        let xs = curves.iter().flat_map(|c| c.rows.iter().map(|r| r.0));
        let (lo, hi) = xs.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
        Some(Sizing {
            subtitle: subtitle(r),
            curves,
            x: (lo - 0.5, hi + 0.5),
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let mut l = Vec::new();
        for c in &self.curves {
            l.push(LegendItem::new(
                format!("{} req/s: predicted (simulation)", style::num(c.rate)),
                c.color,
                Mark::Line(3),
            ));
            l.push(LegendItem::new(
                format!("{} req/s: M/G/c", style::num(c.rate)),
                c.color,
                Mark::Dashed,
            ));
        }
        l.push(LegendItem::new(
            "■ measured by the check run",
            BLACK,
            Mark::Line(1),
        ));
        if self.curves.iter().any(|c| !c.replayed.is_empty()) {
            l.push(LegendItem::new(
                "▲ predicted for the check's own schedule",
                BLACK,
                Mark::Line(1),
            ));
        }
        l.push(LegendItem::new("○ recommended", BLACK, Mark::Line(1)));
        l
    }
}

impl Plot for Sizing {
    const NAME: &'static str = "capacity_sizing";

    fn title(&self) -> String {
        "Predicted p95 queue wait against workers".into()
    }

    fn size(&self) -> (u32, u32) {
        (
            style::WIDTH,
            560 + style::legend_height(&self.legend(), style::WIDTH),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let y_max = style::lin_top(
            self.curves.iter().flat_map(|c| {
                c.rows
                    .iter()
                    .flat_map(|r| [r.1, r.2])
                    .chain(c.measured.iter().chain(&c.replayed).map(|m| m.1))
            }),
            1.0,
        );
        let mut chart = ChartBuilder::on(&body)
            .margin_left(10)
            .margin_right(40)
            .margin_top(10)
            .x_label_area_size(48)
            .y_label_area_size(86)
            .build_cartesian_2d(self.x.0..self.x.1, 0f64..y_max)?;
        chart
            .configure_mesh()
            .label_style(style::font(style::TICK))
            .axis_desc_style(style::font(style::AXIS))
            .x_desc("workers")
            .y_desc("p95 queue wait (ms)")
            .x_labels(((self.x.1 - self.x.0).round() as usize).clamp(2, 20))
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-6 {
                    format!("{}", v.round())
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| style::num(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for c in &self.curves {
            chart.draw_series(LineSeries::new(
                c.rows.iter().map(|r| (r.0, r.1)),
                c.color.stroke_width(3),
            ))?;
            chart.draw_series(
                c.rows
                    .iter()
                    .map(|r| Circle::new((r.0, r.1), 4, c.color.filled())),
            )?;
            for w in c.rows.windows(2) {
                for k in 0..10 {
                    let f0 = k as f64 / 10.0;
                    let f1 = f0 + 0.5 / 10.0;
                    let at = |f: f64| {
                        (
                            w[0].0 + (w[1].0 - w[0].0) * f,
                            w[0].2 + (w[1].2 - w[0].2) * f,
                        )
                    };
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![at(f0), at(f1)],
                        c.color.stroke_width(2),
                    )))?;
                }
            }
            if let Some(rec) = c.recommended {
                if let Some(r) = c.rows.iter().find(|r| r.0 == rec as f64) {
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((r.0, r.1))
                            + Circle::new((0, 0), 12, c.color.stroke_width(3))
                            + Text::new(
                                format!(
                                    "{} for {} req/s",
                                    crate::capacity::workers(rec),
                                    style::num(c.rate)
                                ),
                                (16, -26),
                                style::font(style::SMALL),
                            ),
                    ))?;
                }
            }
            for m in &c.measured {
                chart.draw_series(std::iter::once(
                    EmptyElement::at(*m)
                        + Rectangle::new([(-7, -7), (7, 7)], c.color.mix(0.9).filled())
                        + Rectangle::new([(-7, -7), (7, 7)], BLACK.stroke_width(1)),
                ))?;
            }
            for m in &c.replayed {
                chart.draw_series(std::iter::once(TriangleMarker::new(
                    *m,
                    9,
                    BLACK.stroke_width(2),
                )))?;
            }
        }
        Ok(())
    }
}
