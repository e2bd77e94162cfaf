//! Results in, text out: the markdown comparison table, the JSON document and
//! the SVG chart. Pure functions of [`Results`], so they are unit-tested
//! without running anything.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::system::Machine;

/// Everything one `bench` invocation measured; this is `results.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// One point per mode × connection count, in run order.
    pub points: Vec<Point>,
}

/// The flags that shape a run, as recorded with its results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// `--workload`.
    pub workload: String,
    /// `--duration`, in milliseconds.
    pub duration_ms: u64,
    /// `--warmup`, in milliseconds.
    pub warmup_ms: u64,
    /// `--size`.
    pub size: usize,
    /// `--pipeline`.
    pub pipeline: usize,
    /// `--threads`.
    pub threads: usize,
    /// `--repeat`.
    pub repeat: usize,
    /// `--source-ips`.
    pub source_ips: u8,
}

/// One measured point: one server mode at one connection count (the median
/// run by throughput when `--repeat` > 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// The server mode (`evloop`, ...), or `target` for `--addr`.
    pub mode: String,
    /// Connections opened.
    pub conns: usize,
    /// Connections that connected.
    pub connected: u64,
    /// Connections that got at least one reply in the measured window
    /// (idle: that were proven): below `conns` when the server leaves some
    /// waiting, as blocking mode does.
    #[serde(default)]
    pub served: u64,
    /// Requests completed in the measured window (idle: one proving round
    /// trip per connection, made before the hold).
    pub requests: u64,
    /// Failed connections: refused, reset, timed out, wrong reply.
    pub errors: u64,
    /// Requests per second over the measured window (idle: 0).
    pub throughput: f64,
    /// Latency percentiles and maximum, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
    /// Bytes received in the measured window.
    pub bytes_in: u64,
    /// Bytes sent in the measured window.
    pub bytes_out: u64,
    /// Connections reopened after the server announced a close (HTTP).
    pub reconnects: u64,
    /// Server CPU time per request, µs, when the server's pid is known.
    pub cpu_us_per_req: Option<f64>,
    /// Idle: connections still up at the end.
    pub held: Option<u64>,
    /// Idle: server resident memory added per held connection, in bytes,
    /// when the server's pid is known.
    pub rss_per_conn: Option<f64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// `results` as pretty-printed JSON.
pub fn json(results: &Results) -> String {
    serde_json::to_string_pretty(results).expect("results serialize to JSON")
}

/// The comparison table: one row per mode × conns, under a line that says
/// where and how it was measured.
pub fn markdown(results: &Results) -> String {
    let m = &results.machine;
    let s = &results.settings;
    let idle = s.workload == "idle";
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workload `{}`, {} ms measured after {} ms warm-up, size {}, pipeline {}, {} client thread(s), median of {}; {} × {}, Linux {}\n",
        s.workload,
        s.duration_ms,
        s.warmup_ms,
        s.size,
        s.pipeline,
        s.threads,
        s.repeat,
        m.nproc,
        m.cpu,
        m.kernel
    );
    out.push_str(
        "| mode | conns | served | req/s | p50 | p99 | p99.9 | max | errors | CPU µs/req |",
    );
    out.push_str(if idle { " held | RSS/conn |\n" } else { "\n" });
    out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    out.push_str(if idle { "--:|--:|\n" } else { "\n" });
    for p in &results.points {
        let _ = write!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            p.mode,
            p.conns,
            p.served,
            p.throughput,
            micros(p.p50_us),
            micros(p.p99_us),
            micros(p.p999_us),
            micros(p.max_us),
            p.errors,
            p.cpu_us_per_req.map_or("–".into(), |c| format!("{c:.1}")),
        );
        if idle {
            let _ = write!(
                out,
                " {} | {} |",
                p.held.map_or("–".into(), |h| h.to_string()),
                p.rss_per_conn.map_or("–".into(), bytes),
            );
        }
        out.push('\n');
    }
    out
}

/// A latency for people: `38 µs`, `1.25 ms`, `2.10 s`.
fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// An axis tick: at most three decimals, trailing zeros dropped (`80000`,
/// `0.25`, `1.5`).
fn tick(y: f64) -> String {
    let text = format!("{y:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A size for people: `812 B`, `2.3 KiB`, `1.1 MiB`.
fn bytes(b: f64) -> String {
    if b < 1024.0 {
        format!("{b:.0} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(mode: &str, conns: usize, throughput: f64) -> Point {
        Point {
            mode: mode.into(),
            conns,
            connected: conns as u64,
            served: conns as u64,
            requests: 1000,
            errors: 0,
            throughput,
            p50_us: 40.0,
            p99_us: 120.0,
            p999_us: 1500.0,
            max_us: 2_500_000.0,
            bytes_in: 64_000,
            bytes_out: 64_000,
            reconnects: 0,
            cpu_us_per_req: Some(3.25),
            held: None,
            rss_per_conn: None,
            first_error: None,
        }
    }

    fn sample() -> Results {
        let mut points = Vec::new();
        for mode in ["evloop", "threaded", "blocking"] {
            for (conns, rate) in [(1, 10_000.0), (50, 80_000.0), (1000, 60_000.0)] {
                points.push(point(mode, conns, rate));
            }
        }
        Results {
            machine: Machine {
                nproc: 2,
                kernel: "6.1.0".into(),
                cpu: "Test CPU".into(),
            },
            settings: Settings {
                workload: "echo".into(),
                duration_ms: 5000,
                warmup_ms: 1000,
                size: 64,
                pipeline: 1,
                threads: 1,
                repeat: 1,
                source_ips: 1,
            },
            points,
        }
    }

    #[test]
    fn table_has_a_row_per_mode_and_conns() {
        let table = markdown(&sample());
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| mode"))
            .collect();
        assert_eq!(rows.len(), 9, "{table}");
        assert!(
            rows[1].starts_with(
                "| evloop | 50 | 50 | 80000 | 40 µs | 120 µs | 1.50 ms | 2.50 s | 0 | 3.2"
            ),
            "{}",
            rows[1]
        );
        assert!(!table.contains("RSS/conn"));
    }

    #[test]
    fn idle_tables_show_held_and_memory() {
        let mut results = sample();
        results.settings.workload = "idle".into();
        results.points[0].held = Some(50);
        results.points[0].rss_per_conn = Some(3.0 * 1024.0);
        let table = markdown(&results);
        assert!(table.contains("| held | RSS/conn |"));
        assert!(table.contains("| 50 | 3.0 KiB |"), "{table}");
    }

    #[test]
    fn ticks_drop_useless_decimals() {
        assert_eq!(tick(80000.0), "80000");
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn json_round_trips() {
        let results = sample();
        let back: Results = serde_json::from_str(&json(&results)).unwrap();
        assert_eq!(back, results);
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
