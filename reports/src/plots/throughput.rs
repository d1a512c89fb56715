//! `throughput`: offered and achieved rate per window, with the outcomes of each window's
//! requests stacked by class.

use super::style::{self, DrawResult, FaultSpan, LegendItem, Mark};
use super::{Ctx, Plot};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// One window's bar: its span and the rate of each class (req/s).
struct Bar {
    start: f64,
    end: f64,
    rates: Vec<f64>,
}

/// The prepared plot.
pub(super) struct Throughput {
    subtitle: String,
    t_end: f64,
    faults: Vec<FaultSpan>,
    /// Outcome classes, `ok` first, then by name.
    classes: Vec<String>,
    bars: Vec<Bar>,
    /// Step lines: (x, rate) at each window's start and end.
    offered: Vec<(f64, f64)>,
    achieved: Vec<(f64, f64)>,
}

impl Throughput {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Option<Throughput> {
        let r = ctx.record;
        if r.windows.is_empty() {
            return None;
        }
        let mut classes: Vec<String> = r
            .windows
            .iter()
            .flat_map(|w| w.per_tier.values())
            .flat_map(|s| s.outcomes.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Success at the bottom of each stack, where its height reads directly off the axis.
        classes.sort_by_key(|c| (c != "ok" && c != "success", c.clone()));
        let mut bars = Vec::new();
        let (mut offered, mut achieved) = (Vec::new(), Vec::new());
        for w in &r.windows {
            let len = w.end_s - w.start_s;
            if !(len.is_finite() && len > 0.0) {
                continue;
            }
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for s in w.per_tier.values() {
                for (k, n) in &s.outcomes {
                    *counts.entry(k).or_insert(0) += n;
                }
            }
            bars.push(Bar {
                start: w.start_s,
                end: w.end_s,
                rates: classes
                    .iter()
                    .map(|c| counts.get(c.as_str()).copied().unwrap_or(0) as f64 / len)
                    .collect(),
            });
            for (line, v) in [
                (&mut offered, w.offered_rate),
                (&mut achieved, w.achieved_rate),
            ] {
                line.push((w.start_s, v));
                line.push((w.end_s, v));
            }
        }
        if bars.is_empty() {
            return None;
        }
        Some(Throughput {
            subtitle: style::subtitle(r),
            t_end: ctx.t_end,
            faults: ctx.faults.clone(),
            classes,
            bars,
            offered,
            achieved,
        })
    }

    fn legend(&self) -> Vec<LegendItem> {
        let mut items = vec![
            LegendItem::new("offered (scheduled)", RGBColor(0, 0, 0), Mark::Dashed),
            LegendItem::new("achieved (sent)", style::PALETTE[0], Mark::Line(3)),
        ];
        for (i, c) in self.classes.iter().enumerate() {
            items.push(LegendItem::new(
                format!("outcome: {c}"),
                style::outcome_color(c, i),
                Mark::Box(0.75),
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
}

impl Plot for Throughput {
    const NAME: &'static str = "throughput";

    fn title(&self) -> String {
        "Throughput: offered vs achieved, outcomes by class".into()
    }

    fn size(&self) -> (u32, u32) {
        (
            style::WIDTH,
            style::TITLE_BAND + 520 + style::legend_height(&self.legend(), style::WIDTH),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let top_y = style::lin_top(
            self.bars
                .iter()
                .map(|b| b.rates.iter().filter(|v| v.is_finite()).sum::<f64>())
                .chain(self.offered.iter().map(|p| p.1))
                .chain(self.achieved.iter().map(|p| p.1)),
            1.0,
        );
        let mut chart = ChartBuilder::on(&body)
            .margin_left(10)
            .margin_right(30)
            .margin_top(10)
            .x_label_area_size(48)
            .y_label_area_size(86)
            .build_cartesian_2d(0f64..self.t_end, 0f64..top_y)?;
        chart
            .configure_mesh()
            .label_style(style::font(style::TICK))
            .axis_desc_style(style::font(style::AXIS))
            .x_desc("time since run start (s)")
            .y_desc("requests per second (outcomes by intended send time)")
            .x_label_formatter(&|v| style::num(*v))
            .y_label_formatter(&|v| style::num(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        style::shade_faults(&mut chart, &self.faults, (0.0, top_y), true)?;
        for b in &self.bars {
            // A small gap between windows keeps bars apart without hiding short windows.
            let gap = ((b.end - b.start) * 0.06).min(0.5);
            let mut y = 0.0;
            for (i, (c, v)) in self.classes.iter().zip(&b.rates).enumerate() {
                if !(v.is_finite() && *v > 0.0) {
                    continue;
                }
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(b.start + gap, y), (b.end - gap, y + v)],
                    style::outcome_color(c, i).mix(0.75).filled(),
                )))?;
                y += v;
            }
        }
        style::draw_line(
            &mut chart,
            &self.achieved,
            style::PALETTE[0].stroke_width(3),
            false,
        )?;
        style::draw_line(&mut chart, &self.offered, BLACK.stroke_width(2), true)?;
        Ok(())
    }
}
