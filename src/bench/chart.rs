//! The SVG chart of a bench run: throughput and p99 latency against the
//! connection count, one line per mode. A pure function of [`Results`],
//! unit-tested by parsing the SVG text it writes.

use plotters::prelude::*;

use super::report::{Point, Results};

/// Chart size in pixels: two panels side by side.
const CHART_SIZE: (u32, u32) = (1200, 480);
/// Series lines are this wide, so they stand out from the axes (and tests
/// can tell them apart).
const SERIES_WIDTH: u32 = 2;
#[cfg(test)]
const SERIES_STROKE: &str = "stroke-width=\"2\"";
/// Caption and label sizes, in pixels.
const CAPTION_SIZE: u32 = 22;
const LABEL_SIZE: u32 = 14;
/// The y axis ends this many times above the highest point, leaving the
/// top band for the legend.
const HEADROOM: f64 = 1.35;
/// One color per mode, in order (cycled past the end).
const MODE_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The modes of `results`, in first-seen order.
pub fn modes(results: &Results) -> Vec<&str> {
    let mut modes: Vec<&str> = Vec::new();
    for p in &results.points {
        if !modes.contains(&p.mode.as_str()) {
            modes.push(&p.mode);
        }
    }
    modes
}

/// The SVG chart: throughput vs conns (left) and p99 vs conns (right), one
/// line (an SVG `<polyline>`) per mode in each panel, and a legend. The
/// captions name the workload; the x axis (log scale) has a tick at each
/// connection count measured. A point where the server served only some of
/// its connections (blocking mode: 1 of 1000) has a hollow marker, and its
/// mode's legend entry says "served k of n".
///
/// Plotters' SVG backend writes text as `<text>` elements and, without its
/// `ttf` feature, estimates text sizes itself, so this needs no font files.
///
/// # Errors
///
/// Plotters' drawing error, as text (it has none for valid results).
pub fn svg(results: &Results) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(CHART_SIZE.0 / 2);
        panel(&left, results, "throughput (req/s)", |p| p.throughput)?;
        panel(&right, results, "p99 latency (ms)", |p| p.p99_us / 1_000.0)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One panel: `value` of each point against its connection count.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    results: &Results,
    title: &str,
    value: impl Fn(&Point) -> f64,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let measured = measured_conns(results);
    let lo = measured.first().copied().unwrap_or(1.0);
    let hi = measured.last().copied().unwrap_or(1.0);
    // A log axis, padded so single points sit inside the frame.
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    let top = results.points.iter().map(&value).fold(0.0, f64::max);
    // Headroom above the highest point keeps the legend off the lines.
    let top = if top > 0.0 { top * HEADROOM } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: {title} vs connections", results.settings.workload),
            ("sans-serif", CAPTION_SIZE),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(measured), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc(title)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .label_style(("sans-serif", LABEL_SIZE))
        .axis_desc_style(("sans-serif", LABEL_SIZE))
        .draw()
        .map_err(err)?;
    for (i, mode) in modes(results).into_iter().enumerate() {
        let color = MODE_COLORS[i % MODE_COLORS.len()];
        let points: Vec<&Point> = results.points.iter().filter(|p| p.mode == mode).collect();
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.conns.max(1) as f64, value(p)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                line.clone(),
                color.stroke_width(SERIES_WIDTH),
            ))
            .map_err(err)?
            .label(legend_label(mode, &points))
            // A filled square, not a line, so each mode has one polyline per panel.
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        // Filled: every connection was served; hollow: only some were.
        chart
            .draw_series(points.iter().zip(line).map(|(p, at)| {
                let style = if partly_served(p) {
                    color.stroke_width(SERIES_WIDTH)
                } else {
                    color.filled()
                };
                Circle::new(at, MARKER_SIZE, style)
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", LABEL_SIZE))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Marker radius, in pixels.
const MARKER_SIZE: u32 = 4;

/// The connection counts measured, ascending, each once: the x axis ticks.
fn measured_conns(results: &Results) -> Vec<f64> {
    let mut conns: Vec<usize> = results.points.iter().map(|p| p.conns.max(1)).collect();
    conns.sort_unstable();
    conns.dedup();
    conns.into_iter().map(|c| c as f64).collect()
}

/// True when the server left some of the point's connections unserved.
fn partly_served(p: &Point) -> bool {
    (p.served as usize) < p.conns
}

/// A mode's legend entry: its name, and "served k of n" for each point
/// where it served only some connections.
fn legend_label(mode: &str, points: &[&Point]) -> String {
    let partial: Vec<String> = points
        .iter()
        .filter(|p| partly_served(p))
        .map(|p| format!("{} of {}", p.served, p.conns))
        .collect();
    if partial.is_empty() {
        mode.to_owned()
    } else {
        format!("{mode} (hollow: served {})", partial.join(", "))
    }
}

/// An axis tick: at most three decimals, trailing zeros dropped (`80000`,
/// `0.25`, `1.5`).
fn tick(y: f64) -> String {
    let text = format!("{y:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::sample;

    #[test]
    fn ticks_drop_useless_decimals() {
        assert_eq!(tick(80000.0), "80000");
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn svg_is_well_formed_with_one_line_per_mode_and_panel() {
        let svg = svg(&sample()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // Axes and ticks are thin black polylines; each series is a thick
        // one in its mode's color, once per panel.
        let series: Vec<&str> = svg
            .split("<polyline")
            .skip(1)
            .filter(|el| el.contains(SERIES_STROKE))
            .collect();
        assert_eq!(series.len(), 3 * 2);
        for color in &MODE_COLORS[..3] {
            let hex = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
            assert_eq!(series.iter().filter(|el| el.contains(&hex)).count(), 2);
        }
        for mode in ["evloop", "threaded", "blocking"] {
            assert!(svg.contains(mode), "legend names {mode}");
        }
    }

    #[test]
    fn svg_copes_with_a_single_point_and_zero_values() {
        let mut results = sample();
        results.points.truncate(1);
        results.points[0].throughput = 0.0;
        results.points[0].p99_us = 0.0;
        assert!(svg(&results).unwrap().starts_with("<svg"));
    }

    /// The text of every `<text>` element, unescaped enough for the
    /// names and numbers used here.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|el| {
                let body = el.split_once('>')?.1;
                Some(body.split_once("</text>")?.0.trim().replace("&amp;", "&"))
            })
            .collect()
    }

    #[test]
    fn svg_names_the_workload_ticks_each_count_and_marks_partly_served_points() {
        let mut results = sample();
        for p in &mut results.points {
            if p.mode == "blocking" && p.conns > 1 {
                p.served = 1;
            }
        }
        let svg = svg(&results).unwrap();
        let texts = texts(&svg);
        let count = |t: &str| texts.iter().filter(|x| *x == t).count();
        assert_eq!(
            count("echo: throughput (req/s) vs connections"),
            1,
            "{texts:?}"
        );
        assert_eq!(
            count("echo: p99 latency (ms) vs connections"),
            1,
            "{texts:?}"
        );
        // The log axis is ticked where points were measured, in both panels.
        for conns in ["1", "50", "1000"] {
            assert_eq!(count(conns), 2, "tick {conns}: {texts:?}");
        }
        for unmeasured in ["10", "100"] {
            assert_eq!(count(unmeasured), 0, "tick {unmeasured}: {texts:?}");
        }
        // Blocking served 1 of 50 and 1 of 1000: two hollow markers per panel.
        let circles: Vec<&str> = svg
            .split("<circle")
            .skip(1)
            .filter_map(|el| el.split("/>").next())
            .collect();
        let hollow = circles
            .iter()
            .filter(|c| c.contains("fill=\"none\""))
            .count();
        assert_eq!((circles.len(), hollow), (9 * 2, 2 * 2), "{circles:?}");
        assert_eq!(
            count("blocking (hollow: served 1 of 50, 1 of 1000)"),
            2,
            "{texts:?}"
        );
        assert_eq!(count("evloop"), 2, "{texts:?}");
    }
}
