//! Results in, text out: the markdown comparison table and the JSON
//! document (the SVG chart is [`super::chart`]). Pure functions of
//! [`Results`], so they are unit-tested without running anything.

use std::fmt::Write as _;

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

#[cfg(test)]
pub(crate) mod tests {
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

    /// Three modes at 1, 50 and 1000 connections, every connection served.
    pub(crate) fn sample() -> Results {
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
    fn json_round_trips() {
        let results = sample();
        let back: Results = serde_json::from_str(&json(&results)).unwrap();
        assert_eq!(back, results);
    }
}
