//! What every plot shares: the embedded font, colors, fault shading and the legend strip.

use crate::record::FaultRecord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// What a drawing function returns on any backend.
pub(super) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The font family every text element uses. plotters' ab_glyph backend looks fonts up by this
/// exact string, and the SVG backend writes it verbatim as `font-family`: registering the
/// embedded DejaVu Sans under a CSS font list makes the PNG use the embedded font and the SVG ask
/// for the same font by name, falling back to Bitstream Vera Sans (DejaVu's ancestor, same
/// metrics for Latin) and Verdana (close metrics) where DejaVu is not installed.
pub(super) const FONT: &str = "DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif";

/// Registers the embedded fonts with plotters, once per process.
pub(super) fn register_fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let reg = |name: &str, style: FontStyle, bytes: &'static [u8]| {
            register_font(name, style, bytes).map_err(|_| {
                format!(
                    "cannot load the embedded font for {name:?} ({})",
                    style.as_str()
                )
            })
        };
        reg(FONT, FontStyle::Normal, dejavu::sans::regular())?;
        reg(FONT, FontStyle::Bold, dejavu::sans::bold())?;
        // plotters falls back to "sans-serif" for any text style left unset; with ab_glyph that
        // family must be registered too, or such text fails to draw.
        reg("sans-serif", FontStyle::Normal, dejavu::sans::regular())?;
        Ok(())
    })
    .clone()
}

/// A text style of the embedded font, `size` pixels.
pub(super) fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// The bold variant, for titles.
pub(super) fn bold(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size, FontStyle::Bold).into_font()).color(&BLACK)
}

/// Title size, axis description size, tick label size, small annotations.
pub(super) const TITLE: f64 = 24.0;
pub(super) const AXIS: f64 = 16.0;
pub(super) const TICK: f64 = 14.0;
pub(super) const SMALL: f64 = 13.0;

/// Width of every plot, pixels.
pub(super) const WIDTH: u32 = 1400;

/// A qualitative palette (Tableau 10): distinct hues that stay apart on white.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The color of the `i`th of several lines.
pub(super) fn nth(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A tier's color: the reference server's tiers keep theirs across plots and runs.
pub(super) fn tier_color(tier: &str, index: usize) -> RGBColor {
    match tier {
        "turbo" => PALETTE[3],
        "fast" => PALETTE[0],
        "relax" => PALETTE[2],
        "default" => PALETTE[7],
        _ => nth(index + 4),
    }
}

/// An outcome class's color: success green, the rest warm or distinct, stable by name.
pub(super) fn outcome_color(class: &str, index: usize) -> RGBColor {
    match class {
        "ok" | "success" => RGBColor(44, 160, 44),
        "timeout" => RGBColor(255, 127, 14),
        "http_error" | "error" => RGBColor(214, 39, 40),
        "gpu_oom" => RGBColor(148, 103, 189),
        "overloaded" | "rejected" => RGBColor(140, 86, 75),
        "rate_limited" => RGBColor(188, 189, 34),
        "blocked" | "safety_blocked" => RGBColor(227, 119, 194),
        "connection_error" => RGBColor(23, 190, 207),
        _ => nth(index + 7),
    }
}

/// Fault shading: translucent orange, light enough for lines to stay readable on it.
pub(super) const FAULT: RGBColor = RGBColor(255, 140, 0);
/// Opacity of fault shading.
pub(super) const FAULT_ALPHA: f64 = 0.13;

/// One fault's window on the time axis.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FaultSpan {
    /// Its name in the scenario.
    pub name: String,
    /// Start, seconds: when it was injected, else when it was planned to be.
    pub start: f64,
    /// End, seconds: when it was reverted, else its planned end.
    pub end: f64,
    /// Whether it was injected at all (a fault that never was is drawn as an outline).
    pub injected: bool,
}

impl FaultSpan {
    /// The spans of `faults`, clipped to `[0, t_end]`, dropping those with no finite times.
    pub fn of(faults: &[FaultRecord], t_end: f64) -> Vec<FaultSpan> {
        faults
            .iter()
            .filter_map(|f| {
                let start = f.injected_s.unwrap_or(f.planned_start_s);
                // Injected but never verifiably reverted: in effect until the end of the run
                // at least as far as the record knows, so shade to the planned end or beyond.
                let end = match (f.injected_s, f.reverted_s) {
                    (_, Some(r)) => r,
                    (Some(_), None) => f.planned_end_s.max(t_end),
                    (None, None) => f.planned_end_s,
                };
                (start.is_finite() && end.is_finite()).then(|| FaultSpan {
                    name: f.name.clone(),
                    start: start.clamp(0.0, t_end),
                    end: end.clamp(0.0, t_end).max(start.clamp(0.0, t_end)),
                    injected: f.injected_s.is_some(),
                })
            })
            .collect()
    }

    /// The reference time of `NAME.start` / `NAME.end`, for expectations that name a fault.
    pub fn at(spans: &[FaultSpan], label: &str) -> Option<f64> {
        let (name, edge) = label.rsplit_once('.')?;
        let s = spans.iter().find(|s| s.name == name)?;
        match edge {
            "start" => Some(s.start),
            "end" => Some(s.end),
            _ => None,
        }
    }
}

/// Shades every fault window of `spans` across the full height `y` of a time chart; with
/// `labels`, names each at the top, stacking names that would overlap into rows.
pub(super) fn shade_faults<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    spans: &[FaultSpan],
    y: (f64, f64),
    labels: bool,
) -> DrawResult<DB> {
    let (y0, y1) = y;
    for s in spans {
        let rect = if s.injected {
            Rectangle::new(
                [(s.start, y0), (s.end, y1)],
                FAULT.mix(FAULT_ALPHA).filled(),
            )
        } else {
            Rectangle::new([(s.start, y0), (s.end, y1)], FAULT.mix(0.6).stroke_width(1))
        };
        chart.draw_series(std::iter::once(rect))?;
        // Edges, so back-to-back and overlapping faults stay distinguishable.
        for x in [s.start, s.end] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                FAULT.mix(0.5).stroke_width(1),
            )))?;
        }
    }
    if labels {
        // Greedy rows: a name goes on the first row whose last name ends left of it.
        let mut rows: Vec<i32> = Vec::new();
        let style = font(SMALL).color(&RGBColor(150, 75, 0));
        for s in spans {
            let text = if s.injected {
                s.name.clone()
            } else {
                format!("{} (not injected)", s.name)
            };
            let (px, _) = chart.backend_coord(&(s.start, y1));
            let width = text_width(&text, SMALL) + 12;
            let row = match rows.iter().position(|&end| end < px) {
                Some(r) => r,
                None => {
                    rows.push(i32::MIN);
                    rows.len() - 1
                }
            };
            rows[row] = px + width;
            chart.draw_series(std::iter::once(
                EmptyElement::at((s.start, y1))
                    + Text::new(
                        text,
                        (4, 3 + row as i32 * (SMALL as i32 + 3)),
                        style.clone(),
                    ),
            ))?;
        }
    }
    Ok(())
}

/// Estimated width of `text` at `size` pixels in DejaVu Sans (its average advance is about
/// 0.6 em), for layout decisions made before drawing.
pub(super) fn text_width(text: &str, size: f64) -> i32 {
    (text.chars().count() as f64 * size * 0.6).ceil() as i32
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Mark {
    /// A line of this width.
    Line(u32),
    /// A dashed line.
    Dashed,
    /// A filled box, at this opacity.
    Box(f64),
}

/// One legend entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LegendItem {
    /// Its text.
    pub label: String,
    /// Its color.
    pub color: RGBColor,
    /// Its mark.
    pub mark: Mark,
}

impl LegendItem {
    /// An entry.
    pub fn new(label: impl Into<String>, color: RGBColor, mark: Mark) -> LegendItem {
        LegendItem {
            label: label.into(),
            color,
            mark,
        }
    }
}

const LEGEND_ROW: i32 = 22;
const LEGEND_MARK: i32 = 28;

/// Lays `items` out left to right in rows of at most `width` pixels: each item's x and row.
fn legend_layout(items: &[LegendItem], width: i32) -> Vec<(i32, i32)> {
    let (mut x, mut row) = (10, 0);
    items
        .iter()
        .map(|it| {
            let w = LEGEND_MARK + 6 + text_width(&it.label, TICK) + 24;
            if x > 10 && x + w > width - 10 {
                x = 10;
                row += 1;
            }
            let at = (x, row);
            x += w;
            at
        })
        .collect()
}

/// The height a legend strip of `items` needs at `width` pixels.
pub(super) fn legend_height(items: &[LegendItem], width: u32) -> u32 {
    let rows = legend_layout(items, width as i32)
        .last()
        .map_or(0, |&(_, r)| r + 1);
    (rows * LEGEND_ROW + 12) as u32
}

/// Draws the legend strip (below the charts, so it never covers data).
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
) -> DrawResult<DB> {
    let (w, _) = area.dim_in_pixel();
    for (it, (x, row)) in items.iter().zip(legend_layout(items, w as i32)) {
        let y = 6 + row * LEGEND_ROW + LEGEND_ROW / 2;
        match it.mark {
            Mark::Line(width) => area.draw(&PathElement::new(
                vec![(x, y), (x + LEGEND_MARK, y)],
                it.color.stroke_width(width),
            ))?,
            Mark::Dashed => {
                for k in 0..3 {
                    let x0 = x + k * 11;
                    area.draw(&PathElement::new(
                        vec![(x0, y), (x0 + 6, y)],
                        it.color.stroke_width(2),
                    ))?;
                }
            }
            Mark::Box(alpha) => area.draw(&Rectangle::new(
                [(x, y - 7), (x + LEGEND_MARK, y + 7)],
                it.color.mix(alpha).filled(),
            ))?,
        }
        area.draw(&Text::new(
            it.label.clone(),
            (x + LEGEND_MARK + 6, y),
            font(TICK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// Draws the title at the top of `area`.
pub(super) fn draw_title<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> DrawResult<DB> {
    let (w, _) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (w as i32 / 2, 10),
        bold(TITLE).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    if !subtitle.is_empty() {
        area.draw(&Text::new(
            subtitle.to_string(),
            (w as i32 / 2, 42),
            font(SMALL)
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    Ok(())
}

/// Every plot's frame: the title band on top, the legend strip at the bottom; returns the area
/// between them for the charts.
pub(super) fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    legend: &[LegendItem],
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (_, h) = root.dim_in_pixel();
    let (top, rest) = root.split_vertically(TITLE_BAND);
    let lh = legend_height(legend, WIDTH);
    let (body, bottom) = rest.split_vertically(h - TITLE_BAND - lh);
    draw_title(&top, title, subtitle)?;
    draw_legend(&bottom, legend)?;
    Ok(body)
}

/// Height of the title band drawn by [`draw_title`].
pub(super) const TITLE_BAND: u32 = 64;

/// The run's identification for subtitles.
pub(super) fn subtitle(record: &crate::record::RunRecord) -> String {
    format!(
        "scenario {} · seed {} · started {} · {:.1} s",
        record.scenario.name, record.scenario.seed, record.started_at, record.duration_s
    )
}

/// A number for a tick label: no trailing zeros, thousands kept short.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else if a >= 0.01 {
        trim(format!("{v:.2}"))
    } else {
        format!("{v:.0e}")
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A log axis range covering `values` (positive ones; the rest are ignored), with headroom, and
/// never empty: `floor` when nothing is positive.
pub(super) fn log_range(values: impl IntoIterator<Item = f64>, floor: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if v.is_finite() && v > 0.0 {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if hi <= 0.0 {
        return (floor, floor * 10.0);
    }
    let lo = (lo / 1.6).max(floor);
    let hi = (hi * 1.6).max(lo * 10.0);
    (lo, hi)
}

/// A linear axis top covering `values` with 10% headroom, at least `min`.
pub(super) fn lin_top(values: impl IntoIterator<Item = f64>, min: f64) -> f64 {
    let m = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    (m * 1.1).max(min)
}

/// Splits `points` into runs of finite values: a gap (NaN, a missing window) breaks a line
/// instead of being bridged.
pub(super) fn segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            if let Some(last) = out.last_mut() {
                last.push((x, y));
            }
        } else if out.last().is_some_and(|l| !l.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Draws a line through `points`, broken at gaps; single points get a dot so they show.
pub(super) fn draw_line<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    points: &[(f64, f64)],
    style: ShapeStyle,
    dashed: bool,
) -> DrawResult<DB> {
    for seg in segments(points) {
        if seg.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(seg[0], 3, style.filled())))?;
        } else if dashed {
            chart.draw_series(DashedLineSeries::new(seg, 8, 5, style))?;
        } else {
            chart.draw_series(LineSeries::new(seg, style))?;
        }
    }
    Ok(())
}
