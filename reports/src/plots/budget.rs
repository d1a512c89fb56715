//! `budget`: each SLO's error budget over the run and its burn rate per window pair.
//!
//! The record's [`SloRecord`]s hold the run's totals and each pair's highest burn, not a time
//! series, and not the SLI's good/total selectors (those are in the SLO spec, which the record
//! does not carry). Over time, the plot reads the SLO recording rules the harness evaluated into
//! the scraped series: `slo:sli_error:ratio_rate<W>{slo="NAME"}`, the error ratio over window W
//! (divided by the run's `time_scale`). Burn over a window is that ratio over the budget
//! `1 - objective`; the budget left at time t is `1 - ratio(t) / budget` from the longest
//! window, which covers the whole run so far while t is shorter than it (true of drills; the
//! axis says which window it is). Without those series the plot draws what the record holds:
//! the budget left at the end per SLO and, per window pair, the highest long and short burn
//! against the pair's factor, as bars.

use super::style::{self, DrawResult, FaultSpan, LegendItem, Mark};
use super::{Ctx, Plot};
use crate::record::SloRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PANEL: u32 = 250;

/// (t s, value) points of a line.
type Points = Vec<(f64, f64)>;
/// Lowest budget drawn: an overspent budget (far below 0) would flatten the healthy ones.
const BUDGET_FLOOR: f64 = -1.0;
/// Lowest burn rate drawn on the log axis; a burn of 0 sits on it.
const BURN_FLOOR: f64 = 0.1;

/// A Prometheus duration (`5m`, `1h30m`, `3d`) in seconds.
fn prom_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('s', _) => 1.0,
            ('m', _) => 60.0,
            ('h', _) => 3600.0,
            ('d', _) => 86400.0,
            ('w', _) => 604800.0,
            ('y', _) => 31536000.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// One SLO's series over time.
struct SloLines {
    color: RGBColor,
    /// Budget left (1 = all), from the longest window; clamped at [`BUDGET_FLOOR`].
    budget: Vec<(f64, f64)>,
    /// Per window pair of the record: (long, short) burn over time.
    burn: Vec<(Points, Points)>,
    legend: String,
}

/// The record's window pairs (every SLO is measured over the same ones).
struct Pair {
    long_s: f64,
    short_s: f64,
    factor: f64,
    severity: String,
}

enum Body {
    /// Budget and burn over time, from the recording rules' series.
    OverTime {
        lines: Vec<SloLines>,
        /// The longest window's length, seconds (scaled), for the axis description.
        budget_window_s: f64,
    },
    /// What the record holds, as bars.
    Bars,
}

/// The prepared plot.
pub(super) struct Budget {
    subtitle: String,
    t_end: f64,
    faults: Vec<FaultSpan>,
    slos: Vec<SloRecord>,
    pairs: Vec<Pair>,
    body: Body,
    /// Budget expectations: (SLO, required share left, passed).
    expectations: Vec<(String, f64, bool)>,
}

fn pct(v: f64) -> String {
    let p = v * 100.0;
    // Whole percents once large: an overspent budget reads "-18362%", not "-18k%".
    if p.abs() >= 100.0 {
        format!("{p:.0}%")
    } else {
        format!("{}%", style::num(p))
    }
}

impl Budget {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Option<Budget> {
        let r = ctx.record;
        if r.slos.is_empty() {
            return None;
        }
        let pairs: Vec<Pair> = r
            .slos
            .iter()
            .max_by_key(|s| s.burn.len())
            .map(|s| {
                s.burn
                    .iter()
                    .map(|b| Pair {
                        long_s: b.long_s,
                        short_s: b.short_s,
                        factor: b.factor,
                        severity: b.severity.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let scale = r
            .rules
            .as_ref()
            .map(|x| x.time_scale)
            .filter(|k| k.is_finite() && *k > 0.0)
            .unwrap_or(1.0);
        // Every recorded error-ratio series: (slo, scaled window s, points).
        let prefix = "slo:sli_error:ratio_rate";
        let mut ratios: Vec<(String, f64, Points)> = Vec::new();
        for s in ctx.store.all() {
            let Some(w) = s
                .label("__name__")
                .strip_prefix(prefix)
                .and_then(prom_duration)
            else {
                continue;
            };
            let pts = s
                .samples
                .iter()
                .map(|&(t, v)| (t as f64 / 1000.0, v))
                .collect();
            ratios.push((s.label("slo").to_string(), w / scale, pts));
        }
        let near = |a: f64, b: f64| (a - b).abs() <= 0.01 * a.abs().max(b.abs()).max(1e-9);
        let mut lines = Vec::new();
        let mut budget_window_s: f64 = 0.0;
        for (i, slo) in r.slos.iter().enumerate() {
            let budget = 1.0 - slo.objective / 100.0;
            let mine: Vec<&(String, f64, Points)> =
                ratios.iter().filter(|x| x.0 == slo.name).collect();
            if mine.is_empty() || budget.is_nan() || budget <= 0.0 {
                continue;
            }
            let burn_of = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
                pts.iter().map(|&(t, e)| (t, e / budget)).collect()
            };
            let find = |w: f64| {
                mine.iter()
                    .find(|x| near(x.1, w))
                    .map(|x| burn_of(&x.2))
                    .unwrap_or_default()
            };
            let longest = mine.iter().max_by(|a, b| a.1.total_cmp(&b.1));
            let budget_pts = longest
                .map(|x| {
                    x.2.iter()
                        // NaN (no events in the window) stays a gap: f64::max would turn it
                        // into the floor.
                        .map(|&(t, e)| {
                            let left = 1.0 - e / budget;
                            (
                                t,
                                if left.is_nan() {
                                    left
                                } else {
                                    left.max(BUDGET_FLOOR)
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            budget_window_s = budget_window_s.max(longest.map_or(0.0, |x| x.1));
            let end = slo.budget_remaining.map_or("no events".to_string(), |b| {
                format!("{} left at end", pct(b))
            });
            lines.push(SloLines {
                color: style::nth(i),
                budget: budget_pts,
                burn: pairs
                    .iter()
                    .map(|p| (find(p.long_s), find(p.short_s)))
                    .collect(),
                legend: format!(
                    "{} ({}% objective; {end})",
                    slo.name,
                    style::num(slo.objective)
                ),
            });
        }
        let body = if lines.is_empty() {
            Body::Bars
        } else {
            Body::OverTime {
                lines,
                budget_window_s,
            }
        };
        let expectations = r
            .expectations
            .iter()
            .filter_map(|e| {
                let name = e.alert.strip_prefix("SLO ")?;
                let share = e
                    .description
                    .strip_prefix("keeps at least ")?
                    .split_once('%')?
                    .0
                    .parse::<f64>()
                    .ok()?;
                Some((name.to_string(), share / 100.0, e.passed))
            })
            .collect();
        Some(Budget {
            subtitle: style::subtitle(r),
            t_end: ctx.t_end,
            faults: ctx.faults.clone(),
            slos: r.slos.clone(),
            pairs,
            body,
            expectations,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let mut items = Vec::new();
        match &self.body {
            Body::OverTime { lines, .. } => {
                for l in lines {
                    items.push(LegendItem::new(l.legend.clone(), l.color, Mark::Line(3)));
                }
                items.push(LegendItem::new(
                    "burn, long window",
                    RGBColor(60, 60, 60),
                    Mark::Line(2),
                ));
                items.push(LegendItem::new(
                    "burn, short window",
                    RGBColor(60, 60, 60),
                    Mark::Dashed,
                ));
            }
            Body::Bars => {
                items.push(LegendItem::new(
                    "highest burn, long window",
                    style::PALETTE[0],
                    Mark::Box(0.85),
                ));
                items.push(LegendItem::new(
                    "highest burn, short window",
                    style::PALETTE[9],
                    Mark::Box(0.85),
                ));
            }
        }
        items.push(LegendItem::new(
            "alerting factor",
            style::PALETTE[3],
            Mark::Line(2),
        ));
        if !self.expectations.is_empty() {
            items.push(LegendItem::new(
                "budget expectation",
                RGBColor(90, 90, 90),
                Mark::Dashed,
            ));
        }
        if !self.faults.is_empty() && matches!(self.body, Body::OverTime { .. }) {
            items.push(LegendItem::new(
                "fault window",
                style::FAULT,
                Mark::Box(0.3),
            ));
        }
        items
    }

    fn panels(&self) -> u32 {
        match self.body {
            Body::OverTime { .. } => 1 + self.pairs.len() as u32,
            Body::Bars => 2,
        }
    }
}

impl Plot for Budget {
    const NAME: &'static str = "budget";

    fn title(&self) -> String {
        "Error budget and burn rate per SLO".into()
    }

    fn size(&self) -> (u32, u32) {
        let h = style::TITLE_BAND
            + PANEL * self.panels()
            + style::legend_height(&self.legend(), style::WIDTH);
        (style::WIDTH, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let areas = body.split_evenly((self.panels() as usize, 1));
        match &self.body {
            Body::OverTime {
                lines,
                budget_window_s,
            } => self.draw_over_time(&areas, lines, *budget_window_s),
            Body::Bars => self.draw_bars(&areas),
        }
    }
}

impl Budget {
    fn draw_over_time<DB: DrawingBackend>(
        &self,
        areas: &[DrawingArea<DB, Shift>],
        lines: &[SloLines],
        budget_window_s: f64,
    ) -> DrawResult<DB> {
        let n = areas.len();
        // Budget left: from the floor to a little above 100%.
        {
            let (y0, y1) = (BUDGET_FLOOR, 1.1);
            let mut chart = ChartBuilder::on(&areas[0])
                .caption(
                    format!(
                        "Error budget left (error ratio over the last {} s, i.e. the run so far; \
                         clipped at {})",
                        style::num(budget_window_s),
                        pct(BUDGET_FLOOR)
                    ),
                    style::font(style::AXIS),
                )
                .margin_left(10)
                .margin_right(30)
                .x_label_area_size(26)
                .y_label_area_size(86)
                .build_cartesian_2d(0f64..self.t_end, y0..y1)?;
            chart
                .configure_mesh()
                .label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc("budget left (%)")
                .x_label_formatter(&|v| style::num(*v))
                .y_label_formatter(&|v| pct(*v))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            style::shade_faults(&mut chart, &self.faults, (y0, y1), true)?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (self.t_end, 0.0)],
                BLACK.stroke_width(1),
            )))?;
            for (name, share, passed) in &self.expectations {
                let c = if *passed {
                    RGBColor(30, 140, 30)
                } else {
                    RGBColor(200, 0, 0)
                };
                let y = share.clamp(y0, y1);
                chart.draw_series(DashedLineSeries::new(
                    vec![(0.0, y), (self.t_end, y)],
                    8,
                    5,
                    c.stroke_width(2),
                ))?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((self.t_end, y))
                        + Text::new(
                            format!(
                                "{name} keeps ≥ {} {}",
                                pct(*share),
                                if *passed { "✓" } else { "✗" }
                            ),
                            (-6, -4),
                            style::font(style::SMALL)
                                .color(&c)
                                .pos(Pos::new(HPos::Right, VPos::Bottom)),
                        ),
                ))?;
            }
            for l in lines {
                style::draw_line(&mut chart, &l.budget, l.color.stroke_width(3), false)?;
            }
        }
        for (k, (p, area)) in self.pairs.iter().zip(&areas[1..]).enumerate() {
            let last = k + 2 == n;
            let values = lines
                .iter()
                .flat_map(|l| l.burn.get(k).into_iter())
                .flat_map(|(a, b)| a.iter().chain(b).map(|q| q.1))
                .chain(std::iter::once(p.factor));
            // The axis always starts at the floor, where a burn of 0 is drawn.
            let (_, hi) = style::log_range(values, BURN_FLOOR);
            let lo = BURN_FLOOR;
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!(
                        "Burn rate over {} s and {} s windows ({}, factor {})",
                        style::num(p.long_s),
                        style::num(p.short_s),
                        p.severity,
                        style::num(p.factor)
                    ),
                    style::font(style::AXIS),
                )
                .margin_left(10)
                .margin_right(30)
                .x_label_area_size(if last { 48 } else { 26 })
                .y_label_area_size(86)
                .build_cartesian_2d(0f64..self.t_end, (lo..hi).log_scale())?;
            let mut mesh = chart.configure_mesh();
            mesh.label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc("burn rate (×, log)")
                .x_label_formatter(&|v| style::num(*v))
                .y_label_formatter(&|v| style::num(*v))
                .light_line_style(RGBColor(235, 235, 235));
            if last {
                mesh.x_desc("time since run start (s)");
            }
            mesh.draw()?;
            style::shade_faults(&mut chart, &self.faults, (lo, hi), false)?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, p.factor), (self.t_end, p.factor)],
                style::PALETTE[3].stroke_width(2),
            )))?;
            for l in lines {
                let Some((long, short)) = l.burn.get(k) else {
                    continue;
                };
                // A burn of 0 (nothing bad) sits on the floor rather than vanishing.
                let floor = |v: &Vec<(f64, f64)>| -> Vec<(f64, f64)> {
                    v.iter()
                        .map(|&(t, b)| (t, if b.is_finite() { b.max(lo) } else { b }))
                        .collect()
                };
                style::draw_line(&mut chart, &floor(long), l.color.stroke_width(2), false)?;
                style::draw_line(&mut chart, &floor(short), l.color.stroke_width(2), true)?;
            }
        }
        Ok(())
    }

    fn draw_bars<DB: DrawingBackend>(&self, areas: &[DrawingArea<DB, Shift>]) -> DrawResult<DB> {
        let n = self.slos.len() as f64;
        let names: Vec<String> = self.slos.iter().map(|s| s.name.clone()).collect();
        let label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        // Budget left at the end, one bar per SLO.
        {
            let (y0, y1) = (BUDGET_FLOOR, 1.1);
            let mut chart = ChartBuilder::on(&areas[0])
                .caption(
                    format!(
                        "Error budget left at the end of the run (clipped at {}; no series \
                         over time in the record)",
                        pct(BUDGET_FLOOR)
                    ),
                    style::font(style::AXIS),
                )
                .margin_left(10)
                .margin_right(30)
                .x_label_area_size(30)
                .y_label_area_size(86)
                .build_cartesian_2d(-0.5..n - 0.5, y0..y1)?;
            chart
                .configure_mesh()
                .label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc("budget left (%)")
                .x_labels(self.slos.len().max(1) * 2 + 1)
                .x_label_formatter(&label)
                .y_label_formatter(&|v| pct(*v))
                .disable_x_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, s) in self.slos.iter().enumerate() {
                let x = i as f64;
                let Some(b) = s.budget_remaining.filter(|b| b.is_finite()) else {
                    continue;
                };
                let shown = b.clamp(y0, y1);
                let c = if b >= 0.0 {
                    style::PALETTE[2]
                } else {
                    style::PALETTE[3]
                };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.3, 0.0), (x + 0.3, shown)],
                    c.mix(0.8).filled(),
                )))?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x, shown))
                        + Text::new(
                            pct(b),
                            (0, if shown >= 0.0 { -4 } else { 4 }),
                            style::font(style::SMALL).pos(Pos::new(
                                HPos::Center,
                                if shown >= 0.0 {
                                    VPos::Bottom
                                } else {
                                    VPos::Top
                                },
                            )),
                        ),
                ))?;
            }
            for (name, share, passed) in &self.expectations {
                if let Some(i) = names.iter().position(|n| n == name) {
                    let x = i as f64;
                    let c = if *passed {
                        RGBColor(30, 140, 30)
                    } else {
                        RGBColor(200, 0, 0)
                    };
                    chart.draw_series(DashedLineSeries::new(
                        vec![(x - 0.45, *share), (x + 0.45, *share)],
                        6,
                        4,
                        c.stroke_width(2),
                    ))?;
                }
            }
        }
        // Highest burn per window pair: long and short bars side by side, factor as a line.
        let groups = self.pairs.len().max(1) as f64;
        let values = self
            .slos
            .iter()
            .flat_map(|s| s.burn.iter())
            .flat_map(|b| [b.max_long, b.max_short, Some(b.factor)])
            .flatten();
        let (_, hi) = style::log_range(values, BURN_FLOOR);
        let lo = BURN_FLOOR;
        let mut chart = ChartBuilder::on(&areas[1])
            .caption(
                "Highest burn rate per window pair during the run",
                style::font(style::AXIS),
            )
            .margin_left(10)
            .margin_right(30)
            .x_label_area_size(30)
            .y_label_area_size(86)
            .build_cartesian_2d(-0.5..n - 0.5, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .label_style(style::font(style::TICK))
            .axis_desc_style(style::font(style::AXIS))
            .y_desc("burn rate (×, log)")
            .x_labels(self.slos.len().max(1) * 2 + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&|v| style::num(*v))
            .disable_x_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let slot = 0.8 / groups;
        for (i, s) in self.slos.iter().enumerate() {
            for (k, b) in s.burn.iter().enumerate() {
                let x0 = i as f64 - 0.4 + k as f64 * slot;
                let half = slot * 0.4;
                for (j, v) in [b.max_long, b.max_short].into_iter().enumerate() {
                    let Some(v) = v.filter(|v| v.is_finite()) else {
                        continue;
                    };
                    let xs = x0 + slot * 0.1 + j as f64 * half;
                    let c = if j == 0 {
                        style::PALETTE[0]
                    } else {
                        style::PALETTE[9]
                    };
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(xs, lo), (xs + half, v.max(lo))],
                        c.mix(0.85).filled(),
                    )))?;
                }
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, b.factor), (x0 + slot, b.factor)],
                    style::PALETTE[3].stroke_width(2),
                )))?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x0 + slot / 2.0, lo))
                        + Text::new(
                            format!("{}/{} s", style::num(b.long_s), style::num(b.short_s)),
                            (0, -4),
                            style::font(11.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
                        ),
                ))?;
            }
        }
        Ok(())
    }
}
