//! `latency`: p50/p95/p99 per tier per window, latency measured from the intended send time,
//! with fault windows shaded and the scenario's latency thresholds as horizontal lines.

use super::style::{self, DrawResult, FaultSpan, LegendItem, Mark};
use super::{Ctx, Plot};
use crate::record::{RunRecord, ThresholdVerdict};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PANEL: u32 = 270;

/// A latency threshold drawn on a tier's panel.
struct Limit {
    label: String,
    ms: f64,
    passed: bool,
}

/// One tier's panel.
struct Panel {
    tier: String,
    color: RGBColor,
    requests: u64,
    /// (window midpoint s, ms) per percentile; NaN for a window without requests.
    p50: Vec<(f64, f64)>,
    p95: Vec<(f64, f64)>,
    p99: Vec<(f64, f64)>,
    limits: Vec<Limit>,
}

/// The prepared plot.
pub(super) struct Latency {
    subtitle: String,
    t_end: f64,
    faults: Vec<FaultSpan>,
    panels: Vec<Panel>,
}

/// The tier a threshold concerns: a tier name that appears as a word in its description or name;
/// `None` for a threshold over all tiers.
fn tier_of<'a>(t: &ThresholdVerdict, tiers: &[&'a str]) -> Option<&'a str> {
    let words: Vec<&str> = t
        .description
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .chain(
            t.name
                .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')),
        )
        .collect();
    tiers.iter().copied().find(|tier| words.contains(tier))
}

/// A threshold's limit in ms, when it is a latency limit.
fn limit_ms(t: &ThresholdVerdict) -> Option<f64> {
    let ms = match t.unit.as_str() {
        "ms" => t.limit,
        "s" => t.limit * 1000.0,
        "us" | "µs" => t.limit / 1000.0,
        _ => return None,
    };
    ms.is_finite().then_some(ms)
}

impl Latency {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Option<Latency> {
        let r: &RunRecord = ctx.record;
        // Tiers that had requests; an idle tier would be an empty panel.
        let tiers: Vec<&str> = r
            .totals
            .per_tier
            .iter()
            .filter(|(_, s)| s.count > 0)
            .map(|(k, _)| k.as_str())
            .collect();
        let mut panels: Vec<Panel> = tiers
            .iter()
            .enumerate()
            .map(|(i, &tier)| {
                let pick = |f: fn(&crate::record::Hist) -> f64| -> Vec<(f64, f64)> {
                    r.windows
                        .iter()
                        .map(|w| {
                            let mid = (w.start_s + w.end_s) / 2.0;
                            let v = w
                                .per_tier
                                .get(tier)
                                .filter(|s| s.latency.count > 0)
                                .map_or(f64::NAN, |s| f(&s.latency));
                            (mid, v)
                        })
                        .collect()
                };
                Panel {
                    tier: tier.to_string(),
                    color: style::tier_color(tier, i),
                    requests: r.totals.per_tier.get(tier).map_or(0, |s| s.count),
                    p50: pick(|h| h.p50_ms),
                    p95: pick(|h| h.p95_ms),
                    p99: pick(|h| h.p99_ms),
                    limits: Vec::new(),
                }
            })
            .collect();
        panels.retain(|p| p.p50.iter().any(|(_, v)| v.is_finite()));
        if panels.is_empty() {
            return None;
        }
        for t in &r.thresholds {
            let Some(ms) = limit_ms(t) else { continue };
            let tier = tier_of(t, &tiers);
            for p in panels
                .iter_mut()
                .filter(|p| tier.is_none_or(|tier| tier == p.tier))
            {
                p.limits.push(Limit {
                    label: format!(
                        "{}: ≤ {} ms {}",
                        t.name,
                        if ms >= 100.0 {
                            format!("{ms:.0}")
                        } else {
                            style::num(ms)
                        },
                        if t.passed { "✓ held" } else { "✗ failed" }
                    ),
                    ms,
                    passed: t.passed,
                });
            }
        }
        Some(Latency {
            subtitle: style::subtitle(r),
            t_end: ctx.t_end,
            faults: ctx.faults.clone(),
            panels,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let grey = RGBColor(60, 60, 60);
        let mut items = vec![
            LegendItem::new("p50", grey, Mark::Line(1)),
            LegendItem::new("p95", grey, Mark::Line(3)),
            LegendItem::new("p99", grey, Mark::Dashed),
        ];
        let limits = || self.panels.iter().flat_map(|p| &p.limits);
        if limits().any(|l| l.passed) {
            items.push(LegendItem::new(
                "latency threshold (held)",
                style::PALETTE[2],
                Mark::Line(2),
            ));
        }
        if limits().any(|l| !l.passed) {
            items.push(LegendItem::new(
                "latency threshold (failed)",
                style::PALETTE[3],
                Mark::Line(2),
            ));
        }
        if !self.faults.is_empty() {
            items.push(LegendItem::new(
                "fault window (injected → reverted)",
                style::FAULT,
                Mark::Box(0.3),
            ));
        }
        items
    }
}

impl Plot for Latency {
    const NAME: &'static str = "latency";

    fn title(&self) -> String {
        "Latency over time, per tier (from intended send time)".into()
    }

    fn size(&self) -> (u32, u32) {
        let h = style::TITLE_BAND
            + PANEL * self.panels.len() as u32
            + style::legend_height(&self.legend(), style::WIDTH);
        (style::WIDTH, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let areas = body.split_evenly((self.panels.len(), 1));
        for (i, (p, area)) in self.panels.iter().zip(&areas).enumerate() {
            let last = i + 1 == self.panels.len();
            let values = p
                .p50
                .iter()
                .chain(&p.p95)
                .chain(&p.p99)
                .map(|&(_, v)| v)
                .chain(p.limits.iter().map(|l| l.ms));
            let (lo, hi) = style::log_range(values, 0.01);
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("tier {} — {} requests", p.tier, p.requests),
                    style::font(style::AXIS).color(&p.color),
                )
                .margin_left(10)
                .margin_right(30)
                .margin_bottom(4)
                .x_label_area_size(if last { 48 } else { 26 })
                .y_label_area_size(86)
                .build_cartesian_2d(0f64..self.t_end, (lo..hi).log_scale())?;
            let mut mesh = chart.configure_mesh();
            mesh.label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc("latency (ms, log)")
                .x_label_formatter(&|v| style::num(*v))
                .y_label_formatter(&|v| style::num(*v))
                .light_line_style(RGBColor(235, 235, 235));
            if last {
                mesh.x_desc("time since run start (s)");
            }
            mesh.draw()?;
            style::shade_faults(&mut chart, &self.faults, (lo, hi), i == 0)?;
            for l in &p.limits {
                let c = if l.passed {
                    style::PALETTE[2]
                } else {
                    style::PALETTE[3]
                };
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, l.ms), (self.t_end, l.ms)],
                    c.stroke_width(2),
                )))?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((self.t_end, l.ms))
                        + Text::new(
                            l.label.clone(),
                            (-6, -4),
                            style::font(style::SMALL)
                                .color(&c)
                                .pos(Pos::new(HPos::Right, VPos::Bottom)),
                        ),
                ))?;
            }
            style::draw_line(&mut chart, &p.p50, p.color.mix(0.8).stroke_width(1), false)?;
            style::draw_line(&mut chart, &p.p95, p.color.stroke_width(3), false)?;
            style::draw_line(&mut chart, &p.p99, p.color.stroke_width(2), true)?;
        }
        Ok(())
    }
}
