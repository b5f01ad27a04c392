//! `dfa plot`: learning curves and alignment angles of one or more runs, as PNG or SVG.
//!
//! Text is drawn with DejaVu Sans, compiled into the binary (`assets/fonts`, Bitstream Vera
//! licence), so no system font is needed for PNG; SVG names the family `sans-serif`.

use crate::base::error::{Error, Result};
use crate::train::EpochMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const PALETTE: [RGBColor; 14] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    // beyond eight curves (the rules benchmark has twelve): tab10's grey and olive, then
    // tab20b's dark navy, ochre, brick and plum
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(57, 59, 121),
    RGBColor(140, 109, 49),
    RGBColor(132, 60, 57),
    RGBColor(123, 65, 115),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("the bundled font is not a valid TrueType font");
        }
    });
}

/// (label, colour, style, points).
type Series = (String, RGBColor, Line, Vec<(f64, f64)>);

/// How a curve is drawn: training error thick, batch error thin, test error with markers.
#[derive(Clone, Copy, PartialEq)]
enum Line {
    Train,
    Batch,
    Test,
}

/// Draws with `$draw` (a closure taking the root drawing area) on the PNG or SVG backend that the
/// extension of `$out` names, then writes the file. A macro, because the closure is instantiated
/// once per backend type.
macro_rules! render {
    ($out:expr, $size:expr, $draw:expr) => {{
        let out: &Path = $out;
        let fail = |e: String| Error::format(out, format!("cannot draw the plot: {e}"));
        match out.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                let root = BitMapBackend::new(out, $size).into_drawing_area();
                ($draw)(&root).map_err(fail)?;
                root.present().map_err(|e| fail(e.to_string()))
            }
            Some("svg") => {
                let root = SVGBackend::new(out, $size).into_drawing_area();
                ($draw)(&root).map_err(fail)?;
                root.present().map_err(|e| fail(e.to_string()))
            }
            _ => Err(Error::config("--out", format!("{}: expected a file name ending in .png or .svg", out.display()))),
        }
    }};
}

/// Which error curves to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Curves {
    Train,
    Test,
    Both,
    /// Training (full pass after each epoch), batch (counted on the epoch's mini-batches as
    /// they were trained: what the paper's code reports) and test error.
    All,
}

crate::choices!(Curves {
    Train => "train",
    Test => "test",
    Both => "both",
    All => "all": "Training (full pass after each epoch), batch (counted on the epoch's mini-batches as they were trained: what the paper's code reports) and test error",
});

/// One run to draw: its label and per-epoch metrics.
pub struct RunCurves {
    pub label: String,
    pub metrics: Vec<EpochMetrics>,
}

/// Draws the error curves (and, when any run recorded them, the alignment angles per hidden
/// layer in a second panel) to `out` (`.png` or `.svg`).
pub fn plot(runs: &[RunCurves], out: &Path, curves: Curves, log_scale: bool) -> Result<()> {
    register_font();
    let aligned = runs.iter().any(|r| r.metrics.iter().any(|m| !m.alignment.is_empty()));
    let size = if aligned { (1400, 560) } else { (800, 560) };
    render!(out, size, |root| draw(root, runs, curves, log_scale, aligned))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[RunCurves],
    curves: Curves,
    log_scale: bool,
    aligned: bool,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = if aligned { root.split_evenly((1, 2)) } else { vec![root.clone()] };
    errors_panel(&panels[0], runs, curves, log_scale)?;
    if aligned {
        alignment_panel(&panels[1], runs)?;
    }
    Ok(())
}

fn errors_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[RunCurves],
    curves: Curves,
    log_scale: bool,
) -> std::result::Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    let max_epoch = runs.iter().flat_map(|r| r.metrics.iter().map(|m| m.epoch)).max().unwrap_or(1).max(1) as f64;
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.metrics.iter())
        .flat_map(|m| [m.train_error, m.test_error].into_iter().chain((curves == Curves::All).then_some(m.batch_error)))
        .filter(|v| v.is_finite())
        .collect();
    let top = values.iter().copied().fold(1.0f64, f64::max) * 1.1;
    // on a log axis zero errors sit at the floor: half the smallest non-zero error, at least
    // 0.001 % (below one error in 60 000)
    let smallest = values.iter().copied().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
    let floor = if smallest.is_finite() { (smallest / 2.0).clamp(1e-3, 1.0) } else { 1e-3 };
    // (label, colour, solid (training) or with markers (test), points)
    let mut series: Vec<Series> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pick = |f: &dyn Fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
            // a run without a test set has no test points (NaN)
            run.metrics
                .iter()
                .filter(|m| f(m).is_finite())
                .map(|m| (m.epoch as f64, if log_scale { f(m).max(floor) } else { f(m) }))
                .collect()
        };
        if curves != Curves::Test {
            series.push((format!("{} train", run.label), color, Line::Train, pick(&|m| m.train_error)));
        }
        if curves == Curves::All {
            series.push((format!("{} batch", run.label), color, Line::Batch, pick(&|m| m.batch_error)));
        }
        if curves != Curves::Train {
            series.push((format!("{} test", run.label), color, Line::Test, pick(&|m| m.test_error)));
        }
    }
    // a curve with no points (no full pass, no test set) gets no legend entry either
    series.retain(|s| !s.3.is_empty());
    let caption = match curves {
        Curves::Train => "Training error",
        Curves::Test => "Test error",
        Curves::Both => "Training and test error",
        Curves::All if series.iter().all(|s| s.2 != Line::Train) => "Training (batches) and test error",
        Curves::All => "Training (full pass, batches) and test error",
    };
    let entries: Vec<LegendEntry> = series
        .iter()
        .map(|(label, color, line, _)| LegendEntry {
            label: label.clone(),
            style: line_style(*color, *line),
            marker: *line == Line::Test,
        })
        .collect();
    let (area, side) = beside_legend(area, &entries);
    macro_rules! chart_body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc("error (%)")
                // at most one label per epoch, so that short runs do not repeat rounded labels
                .x_labels((max_epoch as usize).clamp(2, 10))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .light_line_style(RGBColor(242, 242, 242))
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18))
                .draw()
                .map_err(e)?;
            for (_, color, line, points) in series {
                chart.draw_series(LineSeries::new(points.clone(), line_style(color, line))).map_err(e)?;
                if line == Line::Test {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, color.filled()))).map_err(e)?;
                }
            }
            draw_legend(&side, &entries)?;
        }};
    }
    let mut builder = ChartBuilder::on(&area);
    builder.caption(caption, ("sans-serif", 22)).margin(12).x_label_area_size(45).y_label_area_size(60);
    if log_scale {
        chart_body!(builder.build_cartesian_2d(1f64..max_epoch, (floor..top).log_scale()).map_err(e)?);
    } else {
        chart_body!(builder.build_cartesian_2d(1f64..max_epoch, 0f64..top).map_err(e)?);
    }
    Ok(())
}

/// A curve's points, (epoch, value).
type Points = Vec<(f64, f64)>;

fn alignment_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[RunCurves],
) -> std::result::Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    let max_epoch = runs.iter().flat_map(|r| r.metrics.iter().map(|m| m.epoch)).max().unwrap_or(1) as f64;
    // (label, colour, points) per run and hidden layer
    let mut curves: Vec<(String, RGBColor, Points)> = Vec::new();
    for run in runs {
        let layers =
            run.metrics.iter().flat_map(|m| m.alignment.iter()).flat_map(|r| r.layers.iter().map(|l| l.layer)).max();
        let measured = run.metrics.iter().flat_map(|m| m.alignment.iter().map(|r| r.batch)).max().unwrap_or(0) + 1;
        for layer in 1..=layers.unwrap_or(0) {
            let color = PALETTE[curves.len() % PALETTE.len()];
            // x: epochs done when the batch was measured (epoch − 1 + batch / batches)
            let points: Vec<(f64, f64)> = run
                .metrics
                .iter()
                .flat_map(|m| {
                    m.alignment.iter().filter_map(move |r| {
                        let a = r.layers.iter().find(|l| l.layer == layer)?.delta_angle_mean?;
                        let batches = if r.batches > 0 { r.batches } else { measured };
                        Some((m.epoch as f64 - 1.0 + r.batch as f64 / batches as f64, a))
                    })
                })
                .collect();
            curves.push((format!("{} hidden layer {layer}", run.label), color, points));
        }
    }
    let entries: Vec<LegendEntry> = curves
        .iter()
        .map(|(label, color, _)| LegendEntry { label: label.clone(), style: color.stroke_width(2), marker: false })
        .collect();
    let (area, side) = beside_legend(area, &entries);
    let mut chart = ChartBuilder::on(&area)
        .caption("Angle between the rule's δa and back-propagation's", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_epoch, 0f64..120f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("angle (degrees)")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .light_line_style(RGBColor(242, 242, 242))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(e)?;
    chart.draw_series(LineSeries::new(vec![(0.0, 90.0), (max_epoch, 90.0)], BLACK.mix(0.4))).map_err(e)?;
    for (_, color, points) in curves {
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(e)?;
    }
    draw_legend(&side, &entries)
}

/// How a curve is drawn: training error thick, batch error pale, test error thin (with markers).
fn line_style(color: RGBColor, line: Line) -> ShapeStyle {
    match line {
        Line::Train => color.stroke_width(2),
        Line::Batch => color.mix(0.45).stroke_width(2),
        Line::Test => color.mix(0.8).stroke_width(1),
    }
}

/// One line of a legend.
struct LegendEntry {
    label: String,
    style: ShapeStyle,
    marker: bool,
}

/// The panel `area` split into the chart and, on its right, a column wide enough for the
/// legend's longest label, so that the legend never covers a curve.
fn beside_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let longest = entries.iter().map(|e| e.label.chars().count()).max().unwrap_or(0) as u32;
    let (width, _) = area.dim_in_pixel();
    let side = (44 + 8 * longest).clamp(90, width / 2);
    area.split_horizontally(width - side)
}

/// The legend, drawn in its own column (see [`beside_legend`]): a sample of each line and its label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> std::result::Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    let font = ("sans-serif", 15).into_font().color(&BLACK);
    for (i, entry) in entries.iter().enumerate() {
        let y = 52 + 22 * i as i32;
        area.draw(&PathElement::new(vec![(4, y), (30, y)], entry.style)).map_err(e)?;
        if entry.marker {
            area.draw(&Circle::new((17, y), 2, entry.style.color.filled())).map_err(e)?;
        }
        area.draw_text(&entry.label, &font, (36, y - 8)).map_err(e)?;
    }
    Ok(())
}

/// A run's point in [`alignment_scatter`]: its final test error against its mean alignment angle.
pub struct ScatterPoint {
    /// The panel it belongs to (a net and data set).
    pub panel: String,
    /// Its label beside the point (a rule).
    pub label: String,
    /// Mean over the hidden layers of the angle between the rule's `δa` and BP's (degrees).
    pub angle: f64,
    /// Final test error (%).
    pub error: f64,
}

/// Final test error against mean alignment angle, one panel per `panel` in order of first
/// appearance, each point labelled, to `out` (`.png` or `.svg`). A label keeps its colour in
/// every panel (the colour of its first appearance in `points`).
pub fn alignment_scatter(points: &[ScatterPoint], out: &Path) -> Result<()> {
    register_font();
    let panels = first_appearances(points.iter().map(|p| p.panel.as_str()));
    let labels = first_appearances(points.iter().map(|p| p.label.as_str()));
    let colour = |label: &str| PALETTE[labels.iter().position(|l| *l == label).unwrap_or(0) % PALETTE.len()];
    let size = (520 * panels.len().max(1) as u32, 520);
    render!(out, size, |root: &DrawingArea<_, Shift>| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, panel) in areas.iter().zip(&panels) {
            scatter_panel(area, panel, points.iter().filter(|p| p.panel == *panel), &colour)?;
        }
        Ok::<(), String>(())
    })
}

fn scatter_panel<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    points: impl Iterator<Item = &'a ScatterPoint> + Clone,
    colour: &dyn Fn(&str) -> RGBColor,
) -> std::result::Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    let (lo, hi) =
        points.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.error), hi.max(p.error)));
    let pad = ((hi - lo) * 0.12).max(0.1);
    let (lo, hi) = if lo.is_finite() { ((lo - pad).max(0.0), hi + pad) } else { (0.0, 100.0) };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..100f64, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("mean angle to BP's δa, hidden layers (degrees)")
        .y_desc("test error (%)")
        .light_line_style(RGBColor(242, 242, 242))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    chart.draw_series(LineSeries::new(vec![(90.0, lo), (90.0, hi)], BLACK.mix(0.3))).map_err(e)?;
    let points: Vec<&ScatterPoint> = points.collect();
    let at: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(&(p.angle, p.error))).collect();
    let offsets = label_offsets(&at, &points.iter().map(|p| p.label.chars().count()).collect::<Vec<_>>());
    for (p, offset) in points.iter().zip(offsets) {
        let color = colour(&p.label);
        let font = ("sans-serif", 14).into_font().color(&color);
        let mark = EmptyElement::at((p.angle, p.error))
            + Circle::new((0, 0), 5, color.filled())
            + Text::new(p.label.clone(), offset, font);
        chart.draw_series(std::iter::once(mark)).map_err(e)?;
    }
    Ok(())
}

/// The distinct items in order of first appearance.
fn first_appearances<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut distinct: Vec<&str> = Vec::new();
    for item in items {
        if !distinct.contains(&item) {
            distinct.push(item);
        }
    }
    distinct
}

/// Where each point's label goes, relative to the point (pixels; the label's top-left corner):
/// greedily, top to bottom, the place beside the point (of a few, nearest first) whose box
/// covers the least of the labels placed before and of the other points' markers — the first
/// free one where there is one. `at`: the points in pixels; `chars`: the labels' lengths.
fn label_offsets(at: &[(i32, i32)], chars: &[usize]) -> Vec<(i32, i32)> {
    const HEIGHT: i32 = 15;
    const MARK: i32 = 6;
    type Box = (i32, i32, i32, i32);
    let width = |n: usize| n as i32 * 8;
    let overlap = |a: Box, b: Box| ((a.2.min(b.2) - a.0.max(b.0)).max(0) * (a.3.min(b.3) - a.1.max(b.1)).max(0)) as i64;
    let mut order: Vec<usize> = (0..at.len()).collect();
    order.sort_by_key(|&i| (at[i].1, at[i].0));
    let mut placed: Vec<Box> = Vec::new();
    let mut offsets = vec![(8, -8); at.len()];
    for i in order {
        let (x, y, w) = (at[i].0, at[i].1, width(chars[i]));
        let (left, up, down) = (-8 - w, -HEIGHT - 6, 4);
        let candidates = [
            (8, -8),
            (8, up),
            (8, down),
            (left, -8),
            (left, up),
            (left, down),
            (8, 2 * up),
            (8, HEIGHT + 2 * down),
            (left, 2 * up),
            (left, HEIGHT + 2 * down),
            (-w / 2, -HEIGHT - MARK - 2),
            (-w / 2, MARK + 2),
        ];
        let covered = |&(dx, dy): &(i32, i32)| -> i64 {
            let label = (x + dx, y + dy, x + dx + w, y + dy + HEIGHT);
            let marks: i64 = (at.iter().enumerate())
                .filter(|&(j, _)| j != i)
                .map(|(_, &(px, py))| overlap(label, (px - MARK, py - MARK, px + MARK, py + MARK)))
                .sum();
            marks + placed.iter().map(|&b| overlap(label, b)).sum::<i64>()
        };
        // the first candidate of the least coverage (`min_by_key` keeps the first of equals)
        let (dx, dy) = candidates.iter().copied().min_by_key(covered).unwrap_or((8, -8));
        placed.push((x + dx, y + dy, x + dx + w, y + dy + HEIGHT));
        offsets[i] = (dx, dy);
    }
    offsets
}

/// Ten distinguishable colours for the classes of a t-SNE picture (matplotlib's `tab10`).
const CLASS_COLORS: [RGBColor; 10] = [
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

/// One panel of a t-SNE picture: its title and the 2-D points (`x0, y0, x1, y1, …`).
pub struct Embedding {
    pub title: String,
    pub points: Vec<f32>,
}

/// The font size (px) at which `label` fits along a row `row_height` pixels tall: 20, or smaller
/// for a long label (DejaVu Sans averages about 0.6 em per character), at least 9.
fn row_label_size(label: &str, row_height: i32) -> f64 {
    let room = (row_height - 16).max(40) as f64;
    (room / (0.6 * label.chars().count().max(1) as f64)).clamp(9.0, 20.0)
}

/// Draws rows of t-SNE panels (a row per run, its label on the left), every point coloured by
/// its class in `labels`, with one legend of the classes on the right; `.png` or `.svg`.
pub fn tsne_grid(rows: &[(String, Vec<Embedding>)], labels: &[u8], out: &Path) -> Result<()> {
    register_font();
    let columns = rows.iter().map(|(_, panels)| panels.len()).max().unwrap_or(1).max(1);
    let size = (40 + 330 * columns as u32 + 110, 40 + 330 * rows.len().max(1) as u32);
    render!(out, size, |root| draw_grid(root, rows, labels, columns))
}

fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[(String, Vec<Embedding>)],
    labels: &[u8],
    columns: usize,
) -> std::result::Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (width, height) = root.dim_in_pixel();
    let (body, legend) = root.split_horizontally(width - 110);
    let (row_titles, grid) = body.split_horizontally(40);
    let panels = grid.split_evenly((rows.len().max(1), columns));
    let row_height = height as i32 / rows.len().max(1) as i32;
    for (r, (label, embeddings)) in rows.iter().enumerate() {
        // the label runs along the row, centred, its font as large as 20 px or as the row allows
        let size = row_label_size(label, row_height);
        let style = ("sans-serif", size).into_font().transform(FontTransform::Rotate270);
        let (text_width, _) =
            row_titles.estimate_text_size(label, &TextStyle::from(("sans-serif", size).into_font())).map_err(e)?;
        let middle = r as i32 * row_height + row_height / 2 + text_width as i32 / 2;
        row_titles.draw_text(label, &style.color(&BLACK), (12, middle)).map_err(e)?;
        for (c, emb) in embeddings.iter().enumerate() {
            let area = &panels[r * columns + c];
            let (xs, ys): (Vec<f64>, Vec<f64>) = emb.points.chunks_exact(2).map(|p| (p[0] as f64, p[1] as f64)).unzip();
            let range = |v: &[f64]| {
                let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                if lo.is_finite() && hi > lo { (lo, hi) } else { (-1.0, 1.0) }
            };
            let ((x0, x1), (y0, y1)) = (range(&xs), range(&ys));
            let (px, py) = ((x1 - x0) * 0.03, (y1 - y0) * 0.03);
            let mut chart = ChartBuilder::on(area)
                .caption(&emb.title, ("sans-serif", 17))
                .margin(6)
                .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)
                .map_err(e)?;
            chart.configure_mesh().disable_mesh().disable_axes().draw().map_err(e)?;
            chart.plotting_area().fill(&RGBColor(252, 252, 252)).map_err(e)?;
            let points = xs.iter().zip(&ys).zip(labels).map(|((&x, &y), &l)| {
                Circle::new((x, y), 2, CLASS_COLORS[l as usize % CLASS_COLORS.len()].mix(0.75).filled())
            });
            chart.draw_series(points).map_err(e)?;
            let frame =
                [(x0 - px, y0 - py), (x1 + px, y0 - py), (x1 + px, y1 + py), (x0 - px, y1 + py), (x0 - px, y0 - py)];
            chart.draw_series(std::iter::once(PathElement::new(frame.to_vec(), RGBColor(160, 160, 160)))).map_err(e)?;
        }
    }
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0).min(CLASS_COLORS.len());
    legend.draw_text("class", &("sans-serif", 18).into_font().color(&BLACK), (14, 40)).map_err(e)?;
    for (k, color) in CLASS_COLORS.iter().enumerate().take(classes) {
        let y = 72 + 26 * k as i32;
        legend.draw(&Circle::new((22, y), 6, color.filled())).map_err(e)?;
        legend.draw_text(&k.to_string(), &("sans-serif", 17).into_font().color(&BLACK), (36, y - 9)).map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ScatterPoint, alignment_scatter, label_offsets};

    #[test]
    fn a_rule_keeps_its_colour_in_every_panel() {
        // "drtp" is the second point of the first panel and the first of the second
        let point = |panel: &str, label: &str, angle: f64| ScatterPoint {
            panel: panel.into(),
            label: label.into(),
            angle,
            error: angle / 10.0,
        };
        let points = [point("a", "bp", 0.0), point("a", "drtp", 80.0), point("b", "drtp", 70.0), point("b", "bp", 1.0)];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("scatter.svg");
        alignment_scatter(&points, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        // the fill of each label's text elements, in document order
        let fills = |label: &str| -> Vec<String> {
            svg.split("<text")
                .skip(1)
                .filter_map(|t| {
                    let (attributes, rest) = t.split_once('>')?;
                    let content = rest.split("</text>").next()?.trim();
                    let fill = attributes.split("fill=\"").nth(1)?.get(..7)?;
                    (content == label).then(|| fill.to_string())
                })
                .collect()
        };
        let (drtp, bp) = (fills("drtp"), fills("bp"));
        assert_eq!(drtp.len(), 2, "{svg}");
        assert_eq!(bp.len(), 2, "{svg}");
        assert_eq!(drtp[0], drtp[1]);
        assert_eq!(bp[0], bp[1]);
        assert_ne!(drtp[0], bp[0]);
    }

    #[test]
    fn labels_of_close_points_do_not_overlap() {
        // three points 4 px apart, as DFA, binary and ternary DFA sat in the rules figure
        let at = [(300, 200), (304, 203), (296, 201), (100, 50)];
        let chars = [3, 10, 11, 2];
        let offsets = label_offsets(&at, &chars);
        let boxes: Vec<(i32, i32, i32, i32)> = at
            .iter()
            .zip(&offsets)
            .zip(&chars)
            .map(|((&(x, y), &(dx, dy)), &n)| (x + dx, y + dy, x + dx + n as i32 * 8, y + dy + 15))
            .collect();
        for (a, ba) in boxes.iter().enumerate() {
            for bb in &boxes[a + 1..] {
                assert!(!(ba.0 < bb.2 && bb.0 < ba.2 && ba.1 < bb.3 && bb.1 < ba.3), "{boxes:?}");
            }
        }
        // a point with room keeps the usual place
        assert_eq!(offsets[3], (8, -8));
    }
}
