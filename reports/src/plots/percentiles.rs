//! `percentiles`: the whole run's latency distribution per tier, as HdrHistogram plots it:
//! latency against percentile on a `log10(1 / (1 - p))` axis, so 90%, 99%, 99.9%... are evenly
//! spaced and the tail gets the room it deserves.

use super::style::{self, DrawResult, LegendItem, Mark};
use super::{Ctx, Plot};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The percentile curve of one tier: (x = log10(1/(1-p)), latency ms).
struct Curve {
    color: RGBColor,
    points: Vec<(f64, f64)>,
    legend: String,
}

/// The prepared plot.
pub(super) struct Percentiles {
    subtitle: String,
    curves: Vec<Curve>,
    /// Right end of the x axis (x units).
    x_max: f64,
}

/// The x position of percentile `p` (0..1).
fn x_of(p: f64) -> f64 {
    (1.0 / (1.0 - p)).log10()
}

/// The tick label of x: `99.9%` at 3.
pub(super) fn label_of(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p <= 0.0 {
        return "0%".into();
    }
    // As many decimals as the nines need (99.99% at x = 4), none for round values.
    let decimals = (x.ceil() as i32 - 2).clamp(0, 6) as usize;
    format!("{p:.decimals$}%")
}

impl Percentiles {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Result<Option<Percentiles>, String> {
        let r = ctx.record;
        let mut curves = Vec::new();
        let mut max_count = 0u64;
        for (i, (tier, stats)) in r.totals.per_tier.iter().enumerate() {
            if stats.latency.count == 0 {
                continue;
            }
            let h = stats
                .latency
                .decode()
                .map_err(|e| format!("tier {tier}: {e}"))?;
            if h.is_empty() {
                continue;
            }
            max_count = max_count.max(h.len());
            // The last point of the iteration is p = 1 (infinitely far right); the curve
            // stops at the highest percentile that still has a finite position.
            let mut points: Vec<(f64, f64)> = h
                .iter_quantiles(5)
                .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
                .filter(|(q, _)| *q < 1.0)
                .map(|(q, v)| (x_of(q), v as f64 / 1000.0))
                .filter(|p| p.0.is_finite())
                .collect();
            // A percentile curve never falls; bucket boundaries can make consecutive points
            // dip by a rounding step, which would read as a real dip.
            let mut top = 0.0f64;
            for p in &mut points {
                top = top.max(p.1);
                p.1 = top;
            }
            // Close the curve at the maximum, placed at the count's resolution 1 - 1/n.
            let n = h.len() as f64;
            let x_last = if n > 1.0 { x_of(1.0 - 1.0 / n) } else { 0.0 };
            points.push((
                x_last.max(points.last().map_or(0.0, |p| p.0)),
                h.max() as f64 / 1000.0,
            ));
            curves.push(Curve {
                color: style::tier_color(tier, i),
                points,
                legend: format!(
                    "{tier}: p50 {} ms, p99 {} ms, max {} ms ({} requests)",
                    style::num(stats.latency.p50_ms),
                    style::num(stats.latency.p99_ms),
                    style::num(stats.latency.max_ms),
                    stats.latency.count
                ),
            });
        }
        if curves.is_empty() {
            return Ok(None);
        }
        // Up to the nines the data can resolve: n values resolve about 1 - 1/n.
        let x_max = ((max_count as f64).log10().ceil()).clamp(1.0, 6.0);
        Ok(Some(Percentiles {
            subtitle: style::subtitle(r),
            curves,
            x_max,
        }))
    }

    fn legend(&self) -> Vec<LegendItem> {
        self.curves
            .iter()
            .map(|c| LegendItem::new(c.legend.clone(), c.color, Mark::Line(3)))
            .collect()
    }
}

impl Plot for Percentiles {
    const NAME: &'static str = "percentiles";

    fn title(&self) -> String {
        "Latency distribution per tier, whole run (from intended send time)".into()
    }

    fn size(&self) -> (u32, u32) {
        (
            style::WIDTH,
            style::TITLE_BAND + 560 + style::legend_height(&self.legend(), style::WIDTH),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let legend = self.legend();
        let body = style::frame(root, &self.title(), &self.subtitle, &legend)?;
        let (lo, hi) = style::log_range(
            self.curves
                .iter()
                .flat_map(|c| c.points.iter().map(|p| p.1)),
            0.001,
        );
        // Ticks at 0%, 50%, then each nine.
        let mut keys = vec![0.0, x_of(0.5)];
        keys.extend((1..=self.x_max as i32).map(f64::from));
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
            .x_desc("percentile (log scale of 1 / (1 − p))")
            .y_desc("latency (ms, log)")
            // plotters' own x ticks would be round x values; the percentile ticks are drawn
            // below instead, at 0%, 50% and each nine.
            .x_labels(0)
            .disable_x_mesh()
            .y_label_formatter(&|v| style::num(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for &x in &keys {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, lo), (x, hi)],
                RGBColor(215, 215, 215).stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((x, lo))
                    + PathElement::new(vec![(0, 0), (0, 5)], BLACK.stroke_width(1))
                    + Text::new(
                        label_of(x),
                        (0, 8),
                        style::font(style::TICK).pos(Pos::new(HPos::Center, VPos::Top)),
                    ),
            ))?;
        }
        for c in &self.curves {
            chart.draw_series(LineSeries::new(
                c.points.iter().copied(),
                c.color.stroke_width(3),
            ))?;
        }
        Ok(())
    }
}
