//! The plots of a `bt net up` run, each as PNG and SVG (drawn once through
//! [`bt_sim::plot::render`]): stake and rank over blocks, the final `W` as a heatmap, losses
//! over steps, and the ledger rank against the measured removal cost.

use std::path::{Path, PathBuf};

use bt_sim::plot::{DrawResult, Figure, err, render};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::Result;
use crate::up::NetRun;

pub(crate) fn colour(k: usize) -> RGBColor {
    let c = Palette99::pick(k).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

pub(crate) fn span(xs: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = xs
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    (lo - pad)..(hi + pad)
}

/// Reads one series (stake or rank, by uid) off a ledger point.
type Pick = fn(&crate::up::LedgerPoint) -> &Vec<f64>;

/// A chart over two `f64` axes.
pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A captioned chart on `area` with named axes over the given ranges.
pub(crate) fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    (x_name, x): (&str, std::ops::Range<f64>),
    (y_name, y): (&str, std::ops::Range<f64>),
) -> std::result::Result<Chart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_name)
        .y_desc(y_name)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// One line per neuron (in its colour, named after it), with a legend at `at`.
fn named_lines<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    run: &NetRun,
    points: impl Fn(usize) -> Vec<(f64, f64)>,
    at: SeriesLabelPosition,
) -> DrawResult {
    for (k, n) in run.neurons.iter().enumerate() {
        let c = colour(k);
        chart
            .draw_series(LineSeries::new(points(k), c.stroke_width(2)))
            .map_err(err)?
            .label(n.role.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

struct Ledger<'a>(&'a NetRun);
struct Weights<'a>(&'a NetRun);
struct Losses<'a>(&'a NetRun);
struct RankVsCost<'a>(&'a NetRun);

/// Draws every plot into `dir`; gives back the files.
pub fn all(run: &NetRun, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    files.extend(render(dir, "ledger", (1200, 450), &Ledger(run))?);
    files.extend(render(dir, "weights", (620, 560), &Weights(run))?);
    files.extend(render(dir, "losses", (1200, 450), &Losses(run))?);
    files.extend(render(
        dir,
        "rank_vs_removal_cost",
        (700, 520),
        &RankVsCost(run),
    )?);
    Ok(files)
}

impl Figure for Ledger<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        root.fill(&WHITE).map_err(err)?;
        let panels = root.split_evenly((1, 2));
        let heights = || run.ledger.iter().map(|p| p.height as f64);
        let series: [(&str, Pick); 2] = [
            ("stake (TAO)", |p| &p.stake_tao),
            ("ledger rank", |p| &p.rank),
        ];
        for (area, (name, pick)) in panels.iter().zip(series) {
            let ys = run
                .ledger
                .iter()
                .flat_map(|p| pick(p).iter().copied())
                .collect::<Vec<_>>();
            let mut chart = panel(
                area,
                &format!("{name} over blocks"),
                ("block", span(heights())),
                (name, span(ys.into_iter())),
            )?;
            named_lines(
                &mut chart,
                run,
                |k| {
                    let uid = run.neurons[k].uid;
                    run.ledger
                        .iter()
                        .filter_map(|p| pick(p).get(uid).map(|v| (p.height as f64, *v)))
                        .collect()
                },
                SeriesLabelPosition::UpperLeft,
            )?;
        }
        root.present().map_err(err)
    }
}

impl Figure for Weights<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        let w = &run.final_snapshot.w;
        let n = w.len();
        root.fill(&WHITE).map_err(err)?;
        let name = |uid: usize| {
            run.neurons
                .iter()
                .find(|x| x.uid == uid)
                .map_or(uid.to_string(), |x| x.role.name.clone())
        };
        let mut chart = ChartBuilder::on(root)
            .caption(
                "final W (row: who weighs, column: whom)",
                ("sans-serif", 17),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            // A segmented `0..m` holds the m + 1 segments 0 ..= m: one per neuron here.
            .build_cartesian_2d(
                (0..n.saturating_sub(1)).into_segmented(),
                (0..n.saturating_sub(1)).into_segmented(),
            )
            .map_err(err)?;
        // Rows are drawn from the top: row i sits at y = n - 1 - i.
        let label = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(k) if *k < n => name(if flip { n - 1 - k } else { *k }),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .label_style(("sans-serif", 12))
            .x_label_formatter(&|v| label(v, false))
            .y_label_formatter(&|v| label(v, true))
            .draw()
            .map_err(err)?;
        for (i, row) in w.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let y = n - 1 - i;
                let shade = (255.0 * (1.0 - v.clamp(0.0, 1.0))) as u8;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(j), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(j + 1), SegmentValue::Exact(y + 1)),
                        ],
                        RGBColor(shade, shade, 255).filled(),
                    )))
                    .map_err(err)?;
                let text = if v > 0.6 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{v:.2}"),
                        (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y)),
                        ("sans-serif", 13).into_font().color(&text),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)
    }
}

impl Figure for Losses<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        root.fill(&WHITE).map_err(err)?;
        let panels = root.split_evenly((1, 2));
        // Left: training loss, a moving mean over 10 steps.
        let smooth = |xs: &[f32]| -> Vec<(f64, f64)> {
            (0..xs.len())
                .map(|i| {
                    let lo = i.saturating_sub(9);
                    let m =
                        xs[lo..=i].iter().map(|v| f64::from(*v)).sum::<f64>() / (i + 1 - lo) as f64;
                    ((i + 1) as f64, m)
                })
                .collect()
        };
        let curves: Vec<Vec<(f64, f64)>> = run.neurons.iter().map(|n| smooth(&n.loss)).collect();
        let max_step = run.neurons.iter().map(|n| n.steps).max().unwrap_or(1) as f64;
        let mut chart = panel(
            &panels[0],
            "training loss (mean of 10 steps)",
            ("step", 0.0..max_step.max(1.0)),
            ("nats per byte", span(curves.iter().flatten().map(|p| p.1))),
        )?;
        named_lines(
            &mut chart,
            run,
            |k| curves[k].clone(),
            SeriesLabelPosition::UpperRight,
        )?;
        // Right: held-out loss in the network (solid) and alone (dashed), at epochs.
        let held = run
            .neurons
            .iter()
            .flat_map(|n| n.held_out.iter().chain(&n.held_out_alone))
            .map(|p| f64::from(p.1));
        let mut chart = panel(
            &panels[1],
            "held-out loss: network (solid) vs alone (dashed)",
            ("step", 0.0..max_step.max(1.0)),
            ("nats per byte", span(held)),
        )?;
        for (k, n) in run.neurons.iter().enumerate() {
            let col = colour(k);
            let pts = |v: &[(usize, f32)]| -> Vec<(f64, f64)> {
                v.iter().map(|p| (p.0 as f64, f64::from(p.1))).collect()
            };
            chart
                .draw_series(LineSeries::new(pts(&n.held_out), col.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(DashedLineSeries::new(
                    pts(&n.held_out_alone),
                    6,
                    4,
                    col.stroke_width(2),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)
    }
}

impl Figure for RankVsCost<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let run = self.0;
        root.fill(&WHITE).map_err(err)?;
        let Some(m) = run.measurements.last() else {
            return root.present().map_err(err);
        };
        let xs: Vec<f64> = m.cost.iter().map(|c| c.exact).collect();
        // Each cost's standard error over the held-out batches, drawn as a bar of 2 SE either
        // side (none where it is unknown).
        let bars: Vec<Option<(f64, f64)>> = m
            .cost
            .iter()
            .map(|c| {
                c.se()
                    .is_finite()
                    .then(|| (c.exact - 2.0 * c.se(), c.exact + 2.0 * c.se()))
            })
            .collect();
        // Room on the right for the labels.
        let r = span(
            xs.iter()
                .copied()
                .chain(bars.iter().flatten().flat_map(|&(lo, hi)| [lo, hi])),
        );
        let mut chart = panel(
            root,
            "ledger rank against measured removal cost (bars: 2 standard errors)",
            (
                "removal cost (increase of the summed held-out loss, nats)",
                r.start..(r.end + 0.25 * (r.end - r.start)),
            ),
            ("ledger rank", span(m.rank.iter().copied())),
        )?;
        for (k, n) in run.neurons.iter().enumerate() {
            let col = colour(k);
            // Labels of nearby points are staggered vertically so that they stay readable.
            let dy = -18 + 14 * (k % 3) as i32;
            if let Some((lo, hi)) = bars[k] {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(lo, m.rank[k]), (hi, m.rank[k])],
                        col.stroke_width(2),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((xs[k], m.rank[k]))
                        + Circle::new((0, 0), 6, col.filled())
                        + Text::new(n.role.name.clone(), (9, dy), ("sans-serif", 13)),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)
    }
}
