//! The figures, drawn with plotters to PNG and SVG. The font ships with the project
//! (`data/fonts/DejaVuSans.ttf`) so drawing needs nothing from the system.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::fig4::Fig4Output;
use crate::fig5::Fig5Output;

static FONT: &[u8] = include_bytes!("../../../data/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in; a failure here would be a build defect, and the figures
        // then fall back to plotters' missing-glyph boxes rather than failing the command.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// What drawing a figure gives: plotters' message on failure.
pub type DrawResult = std::result::Result<(), String>;

/// Reads a (mean, spread) pair off a Figure 4 summary line.
type SummaryField = fn(&crate::fig4::Fig4Summary) -> (f64, f64);

/// One Figure 5 panel: where, its name, what it plots, and an optional target line.
type Curve<'a, DB> = (
    &'a DrawingArea<DB, Shift>,
    &'static str,
    fn(&crate::fig5::Fig5Point) -> f64,
    Option<f64>,
);

/// Plotters' error as a message.
pub fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// A figure that draws itself on any plotters backend (so one drawing gives the PNG and the
/// SVG).
pub trait Figure {
    /// Draws on `root`; a failure is plotters' message.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

/// Draws `fig` to `<stem>.png` and `<stem>.svg` in `dir`, with the bundled font; gives back
/// both paths.
pub fn render(dir: &Path, stem: &str, size: (u32, u32), fig: &impl Figure) -> Result<Vec<PathBuf>> {
    register_font();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    fig.draw(&BitMapBackend::new(&png, size).into_drawing_area())
        .map_err(|message| Error::Plot {
            path: png.clone(),
            message,
        })?;
    fig.draw(&SVGBackend::new(&svg, size).into_drawing_area())
        .map_err(|message| Error::Plot {
            path: svg.clone(),
            message,
        })?;
    Ok(vec![png, svg])
}

struct Correlation<'a>(&'a Fig4Output);
struct Scatter<'a>(&'a Fig4Output, usize, usize);
struct Adaptive<'a>(&'a Fig5Output, f64);

impl Figure for Correlation<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        correlation(root, self.0)
    }
}

impl Figure for Scatter<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        scatter(root, self.0, self.1, self.2)
    }
}

impl Figure for Adaptive<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        adaptive(root, self.0, self.1)
    }
}

/// Figure 4 (left): mean correlation (with one standard deviation) against `alpha / tau`,
/// and the mean diagonal of `W`. Writes `fig4_correlation.{png,svg}`.
pub fn fig4_correlation(out: &Fig4Output, dir: &Path) -> Result<Vec<PathBuf>> {
    render(dir, "fig4_correlation", (900, 600), &Correlation(out))
}

fn correlation<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, out: &Fig4Output) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let sums: Vec<_> = out.summaries.iter().filter(|s| s.ratio > 0.0).collect();
    let (lo, hi) = sums.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
        (lo.min(s.ratio), hi.max(s.ratio))
    });
    if sums.is_empty() {
        return Err("no positive ratio to plot".into());
    }
    let mut chart = ChartBuilder::on(root)
        .caption("Competitive vs ideal rank (Figure 4)", ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), -0.25f64..1.05f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("alpha / tau")
        .y_desc("correlation / mean diagonal")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    let series: [(&str, RGBColor, SummaryField); 3] = [
        ("Pearson", BLUE, |s| (s.pearson_mean, s.pearson_std)),
        ("Spearman", RED, |s| (s.spearman_mean, s.spearman_std)),
        ("mean diagonal of W", GREEN, |s| (s.diagonal_mean, 0.0)),
    ];
    for (label, color, get) in series {
        let pts: Vec<(f64, f64, f64)> = sums
            .iter()
            .map(|s| {
                let (m, sd) = get(s);
                (s.ratio, m, sd)
            })
            .filter(|(_, m, _)| m.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, y, _)| (x, y)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.2 > 0.0)
                    .map(|&(x, y, sd)| ErrorBar::new_vertical(x, y - sd, y, y + sd, color, 8)),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Figure 4 (panels): competitive against ideal rank, one panel per ratio (first seed).
/// Writes `fig4_scatter.{png,svg}`.
pub fn fig4_scatter(out: &Fig4Output, dir: &Path) -> Result<Vec<PathBuf>> {
    let k = out.scatters.len().max(1);
    let cols = k.min(4);
    let rows = k.div_ceil(cols);
    let size = (320 * cols as u32, 320 * rows as u32);
    render(dir, "fig4_scatter", size, &Scatter(out, rows, cols))
}

fn scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    out: &Fig4Output,
    rows: usize,
    cols: usize,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((rows, cols));
    for (panel, sc) in panels.iter().zip(&out.scatters) {
        let range = |xs: &[f64]| {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.08).max(1e-4);
            (lo - pad)..(hi + pad)
        };
        let title = if sc.pearson.is_finite() {
            format!("a/t = {}: r = {:.2}", sc.ratio, sc.pearson)
        } else {
            format!("a/t = {}: rank flat", sc.ratio)
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(range(&sc.ideal), range(&sc.rank))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("ideal rank")
            .y_desc("competitive rank")
            .x_labels(4)
            .y_labels(5)
            .label_style(("sans-serif", 11))
            .x_label_formatter(&|v| format!("{v:.4}"))
            .y_label_formatter(&|v| format!("{v:.4}"))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                sc.ideal
                    .iter()
                    .zip(&sc.rank)
                    .map(|(&x, &y)| Circle::new((x, y), 2, BLUE.filled())),
            )
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Figure 5: sparsity (with the target) and `tau` over steps. Writes `fig5.{png,svg}`.
pub fn fig5(out: &Fig5Output, target: f64, dir: &Path) -> Result<Vec<PathBuf>> {
    render(dir, "fig5", (1100, 450), &Adaptive(out, target))
}

fn adaptive<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    out: &Fig5Output,
    target: f64,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(550);
    let last = out.points.last().map_or(1, |p| p.step) as f64;
    let curves: [Curve<'_, DB>; 2] = [
        (&left, "sparsity", |p| p.sparsity, Some(target)),
        (&right, "tau", |p| p.tau, None),
    ];
    for (area, name, get, target) in curves {
        let ys: Vec<(f64, f64)> = out
            .points
            .iter()
            .map(|p| (p.step as f64, get(p)))
            .filter(|p| p.1.is_finite())
            .collect();
        let hi = ys.iter().map(|p| p.1).fold(target.unwrap_or(0.0), f64::max) * 1.1 + 1e-9;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} over steps"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..last, 0f64..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(name)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(ys, BLUE.stroke_width(2)))
            .map_err(err)?;
        if let Some(t) = target {
            chart
                .draw_series(LineSeries::new(
                    vec![(0.0, t), (last, t)],
                    RED.stroke_width(1),
                ))
                .map_err(err)?
                .label("target")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}
