//! Plots of a run, rendered from its [`RunRecord`](crate::record::RunRecord) alone, as SVG and
//! PNG with plotters.
//!
//! [`render_all`] draws every plot the record has data for and skips the others:
//!
//! | name          | what it shows                                                        | needs |
//! |---------------|-----------------------------------------------------------------------|-------|
//! | `latency`     | p50/p95/p99 per tier per window (from the intended send time), faults, latency thresholds | windows |
//! | `throughput`  | offered and achieved rate per window, outcomes stacked by class       | windows |
//! | `queue_gpu`   | queue depth by tier, GPU VRAM and compute utilization per worker      | scraped series |
//! | `alerts`      | pending/firing spans per alert, fault windows, expectations met/missed | alerts or expectations |
//! | `budget`      | error budget left over time and burn rate per window pair, per SLO    | SLOs |
//! | `percentiles` | the whole run's latency distribution per tier on a 1/(1-p) axis       | totals |
//!
//! Text is drawn with DejaVu Sans, embedded in the binary and registered with plotters' ab_glyph
//! text backend, so rendering needs no system fonts (plotters' `ttf` feature would need
//! fontconfig). PNGs rasterize the embedded font; SVGs carry `<text>` elements whose
//! `font-family` names DejaVu Sans first, then metric-compatible fallbacks (see [`style::FONT`]).

mod alerts;
mod budget;
mod capacity;
mod latency;
mod percentiles;
mod saturation;
mod series;
mod style;
mod throughput;

#[cfg(test)]
mod tests;

pub use capacity::render_capacity;

use crate::record::RunRecord;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One rendered plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFile {
    /// File stem (`latency`, `throughput`, `queue_gpu`, `alerts`, `budget`, `percentiles`).
    pub name: String,
    /// The plot's title, as drawn on it.
    pub title: String,
    /// The SVG file.
    pub svg: PathBuf,
    /// The PNG file.
    pub png: PathBuf,
}

/// Renders every plot the record has data for into `dir` (created), as NAME.svg and NAME.png.
///
/// A plot whose data the record lacks (no scraped series, no SLOs, no alerts...) is skipped, not
/// an error; the result lists what was written, in a fixed order. Errors name the file.
pub fn render_all(record: &RunRecord, dir: &Path) -> Result<Vec<PlotFile>, String> {
    style::register_fonts()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: error creating directory: {e}", dir.display()))?;
    let store = series::Store::parse(&record.series);
    let ctx = Ctx::new(record, &store);
    let mut out = Vec::new();
    if let Some(p) = latency::Latency::prepare(&ctx) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = throughput::Throughput::prepare(&ctx) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = saturation::Saturation::prepare(&ctx) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = alerts::Alerts::prepare(&ctx) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = budget::Budget::prepare(&ctx) {
        out.push(emit(&p, dir)?);
    }
    if let Some(p) = percentiles::Percentiles::prepare(&ctx)? {
        out.push(emit(&p, dir)?);
    }
    Ok(out)
}

/// What every plot needs besides its own data: the record, its scraped series, the time axis
/// and the fault windows.
pub(crate) struct Ctx<'a> {
    record: &'a RunRecord,
    store: &'a series::Store,
    /// End of the time axis, seconds (positive and finite even for an empty run).
    t_end: f64,
    faults: Vec<style::FaultSpan>,
}

impl<'a> Ctx<'a> {
    fn new(record: &'a RunRecord, store: &'a series::Store) -> Ctx<'a> {
        // The longest of what the record says about the run's length, so nothing recorded
        // falls off the right edge; at least one second so an empty run still has an axis.
        let mut t_end = [record.duration_s, record.plan.duration_s]
            .into_iter()
            .chain(record.windows.last().map(|w| w.end_s))
            .filter(|t| t.is_finite())
            .fold(0.0f64, f64::max);
        if t_end <= 0.0 {
            t_end = 1.0;
        }
        let faults = style::FaultSpan::of(&record.faults, t_end);
        Ctx {
            record,
            store,
            t_end,
            faults,
        }
    }
}

/// A plot: its data prepared, drawable on any plotters backend.
trait Plot {
    /// File stem.
    const NAME: &'static str;
    /// Title drawn on top.
    fn title(&self) -> String;
    /// Pixel size.
    fn size(&self) -> (u32, u32);
    /// Draws the plot on a white `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> style::DrawResult<DB>;
}

/// Draws `p` twice, into NAME.svg and NAME.png.
fn emit<P: Plot>(p: &P, dir: &Path) -> Result<PlotFile, String> {
    let svg = dir.join(format!("{}.svg", P::NAME));
    let png = dir.join(format!("{}.png", P::NAME));
    let size = p.size();
    let fail = |path: &Path, e: String| format!("{}: error drawing plot: {e}", path.display());
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_on(p, &root).map_err(|e| fail(&svg, e))?;
    }
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_on(p, &root).map_err(|e| fail(&png, e))?;
    }
    Ok(PlotFile {
        name: P::NAME.into(),
        title: p.title(),
        svg,
        png,
    })
}

fn draw_on<P: Plot, DB: DrawingBackend>(
    p: &P,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    p.draw(root).map_err(|e| e.to_string())?;
    // `present` writes the file; without it the backends write on drop and swallow errors.
    root.present().map_err(|e| e.to_string())
}
