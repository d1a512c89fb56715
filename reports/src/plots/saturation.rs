//! `queue_gpu`: saturation from the scraped series: queue depth by tier, and GPU memory and
//! compute utilization per worker.
//!
//! Metric names are the reference server's catalog (`reference-server/src/metrics/catalog.rs`):
//! `queue_depth{tier, model_required}`, `gpu_vram_utilization_percent{worker_id}` (else
//! `gpu_memory_used_bytes / gpu_memory_total_bytes{worker_id}`), and
//! `gpu_compute_utilization_percent{worker_id}`. A panel whose metric was not scraped is left
//! out; with none of them the plot is skipped.

use super::style::{self, DrawResult, FaultSpan, LegendItem, Mark};
use super::{Ctx, Plot};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

const PANEL: u32 = 250;

/// One line of a panel.
struct Line {
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One panel.
struct Panel {
    caption: String,
    y_desc: String,
    /// Fixed top of the y axis (100 for percentages); `None` to fit the data.
    y_max: Option<f64>,
    lines: Vec<Line>,
}

/// The prepared plot.
pub(super) struct Saturation {
    subtitle: String,
    t_end: f64,
    faults: Vec<FaultSpan>,
    panels: Vec<Panel>,
    legend: Vec<LegendItem>,
}

impl Saturation {
    pub(super) fn prepare(ctx: &Ctx<'_>) -> Option<Saturation> {
        let store = ctx.store;
        let mut panels = Vec::new();
        let mut legend = Vec::new();

        let queue = store.sum_by("queue_depth", "tier");
        if !queue.is_empty() {
            let mut lines = Vec::new();
            for (i, (tier, points)) in queue.into_iter().enumerate() {
                let tier = if tier.is_empty() {
                    "(no tier)".into()
                } else {
                    tier
                };
                let color = style::tier_color(&tier, i);
                legend.push(LegendItem::new(
                    format!("queue: {tier}"),
                    color,
                    Mark::Line(2),
                ));
                lines.push(Line { color, points });
            }
            panels.push(Panel {
                caption: "Queue depth by tier (sum over models)".into(),
                y_desc: "waiting requests".into(),
                y_max: None,
                lines,
            });
        }

        // Workers keep one color across the GPU panels.
        let mut workers: BTreeMap<String, RGBColor> = BTreeMap::new();
        let mut color_of = |w: &str| {
            let n = workers.len();
            *workers
                .entry(w.to_string())
                .or_insert_with(|| style::nth(n + 4))
        };
        let vram = if store.has("gpu_vram_utilization_percent") {
            store.sum_by("gpu_vram_utilization_percent", "worker_id")
        } else {
            ratio_percent(
                store.sum_by("gpu_memory_used_bytes", "worker_id"),
                store.sum_by("gpu_memory_total_bytes", "worker_id"),
            )
        };
        if !vram.is_empty() {
            panels.push(Panel {
                caption: "GPU memory (VRAM) in use per worker".into(),
                y_desc: "VRAM used (%)".into(),
                y_max: Some(100.0),
                lines: vram
                    .into_iter()
                    .map(|(w, points)| Line {
                        color: color_of(&w),
                        points,
                    })
                    .collect(),
            });
        }
        let compute = store.sum_by("gpu_compute_utilization_percent", "worker_id");
        if !compute.is_empty() {
            panels.push(Panel {
                caption: "GPU compute utilization per worker".into(),
                y_desc: "busy (%)".into(),
                y_max: Some(100.0),
                lines: compute
                    .into_iter()
                    .map(|(w, points)| Line {
                        color: color_of(&w),
                        points,
                    })
                    .collect(),
            });
        }
        if panels.is_empty() {
            return None;
        }
        for (w, c) in workers {
            let w = if w.is_empty() {
                "(no worker_id)".into()
            } else {
                w
            };
            legend.push(LegendItem::new(w, c, Mark::Line(2)));
        }
        if !ctx.faults.is_empty() {
            legend.push(LegendItem::new(
                "fault window",
                style::FAULT,
                Mark::Box(0.3),
            ));
        }
        Some(Saturation {
            subtitle: style::subtitle(ctx.record),
            t_end: ctx.t_end,
            faults: ctx.faults.clone(),
            panels,
            legend,
        })
    }
}

/// `used / total * 100` per group, at the timestamps both have.
fn ratio_percent(
    used: Vec<(String, Vec<(f64, f64)>)>,
    total: Vec<(String, Vec<(f64, f64)>)>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let total: BTreeMap<String, Vec<(f64, f64)>> = total.into_iter().collect();
    used.into_iter()
        .filter_map(|(k, u)| {
            let t = total.get(&k)?;
            let pts = u
                .iter()
                .filter_map(|&(x, v)| {
                    let (_, cap) = t.iter().find(|p| p.0 == x)?;
                    Some((
                        x,
                        if *cap > 0.0 {
                            v / cap * 100.0
                        } else {
                            f64::NAN
                        },
                    ))
                })
                .collect();
            Some((k, pts))
        })
        .collect()
}

impl Plot for Saturation {
    const NAME: &'static str = "queue_gpu";

    fn title(&self) -> String {
        "Saturation: queue depth and GPU utilization".into()
    }

    fn size(&self) -> (u32, u32) {
        let h = style::TITLE_BAND
            + PANEL * self.panels.len() as u32
            + style::legend_height(&self.legend, style::WIDTH);
        (style::WIDTH, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = style::frame(root, &self.title(), &self.subtitle, &self.legend)?;
        let areas = body.split_evenly((self.panels.len(), 1));
        for (i, (p, area)) in self.panels.iter().zip(&areas).enumerate() {
            let last = i + 1 == self.panels.len();
            let top_y = p.y_max.unwrap_or_else(|| {
                style::lin_top(
                    p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.1)),
                    1.0,
                )
            });
            let mut chart = ChartBuilder::on(area)
                .caption(&p.caption, style::font(style::AXIS))
                .margin_left(10)
                .margin_right(30)
                .margin_bottom(4)
                .x_label_area_size(if last { 48 } else { 26 })
                .y_label_area_size(86)
                .build_cartesian_2d(0f64..self.t_end, 0f64..top_y)?;
            let mut mesh = chart.configure_mesh();
            mesh.label_style(style::font(style::TICK))
                .axis_desc_style(style::font(style::AXIS))
                .y_desc(p.y_desc.as_str())
                .x_label_formatter(&|v| style::num(*v))
                .y_label_formatter(&|v| style::num(*v))
                .light_line_style(RGBColor(235, 235, 235));
            if last {
                mesh.x_desc("time since run start (s)");
            }
            mesh.draw()?;
            style::shade_faults(&mut chart, &self.faults, (0.0, top_y), i == 0)?;
            for l in &p.lines {
                // Values above a fixed top (a percentage over 100) are pinned to it.
                let pts: Vec<(f64, f64)> = l
                    .points
                    .iter()
                    .map(|&(x, y)| (x, if y.is_finite() { y.min(top_y) } else { y }))
                    .collect();
                style::draw_line(&mut chart, &pts, l.color.stroke_width(2), false)?;
            }
        }
        Ok(())
    }
}
