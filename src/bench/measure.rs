//! One benchmark point: start the client threads, wait out the warm-up and
//! the measured window on this thread (reading the server's CPU time and
//! memory at its edges, and showing a progress bar), then turn the threads'
//! tallies into a [`Point`]. With `--repeat`, the median run is kept.
//!
//! Nothing here talks to the network itself: [`client`] does.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::client::{self, Plan, Shared, Tally};
use super::report::Point;
use super::workload::{Kind, Workload};
use super::{BenchArgs, BenchError, system};

/// Runs longer than this get a progress bar (when stdout is a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// How often the progress bar and the coordinator wake up.
const TICK: Duration = Duration::from_millis(100);

/// Measures every --conns count against one server, appending to `points`.
pub(super) fn measure_series(
    args: &BenchArgs,
    workload: &Workload,
    mode: &str,
    addr: SocketAddr,
    pid: Option<u32>,
    points: &mut Vec<Point>,
) {
    for &conns in &args.conns {
        let mut runs: Vec<Point> = (0..args.repeat)
            .map(|_| measure(args, workload, mode, addr, pid, conns))
            .collect();
        runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
        let point = runs.swap_remove(runs.len() / 2);
        eprintln!(
            "bench: {mode} conns={conns}: {:.0} req/s, p99 {:.0} µs, {} errors{}",
            point.throughput,
            point.p99_us,
            point.errors,
            point
                .first_error
                .as_deref()
                .map_or(String::new(), |e| format!(" (first: {e})")),
        );
        points.push(point);
    }
}

/// One run at `conns` connections: client threads, plus this thread
/// reading the server's CPU and memory at the edges of the measured window.
fn measure(
    args: &BenchArgs,
    workload: &Workload,
    mode: &str,
    addr: SocketAddr,
    pid: Option<u32>,
    conns: usize,
) -> Point {
    let idle = args.workload == Kind::Idle;
    let plan = Plan {
        addr,
        workload: workload.clone(),
        pipeline: args.pipeline,
        warmup: args.warmup,
        duration: args.duration,
        source_ips: args.source_ips,
        idle,
    };
    let threads = args.threads.min(conns);
    let shared = Shared {
        start: Barrier::new(threads + 1),
        done: AtomicU64::new(0),
    };
    let rss_before = pid.and_then(system::rss_bytes);
    let mut tally = Tally::empty();
    let mut cpu = None;
    let mut rss_after = None;
    let panicked = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Thread t gets connections [first, first + count).
                let first = conns * t / threads;
                let count = conns * (t + 1) / threads - first;
                let (plan, shared) = (&plan, &shared);
                scope.spawn(move || client::run_thread(plan, first, count, shared))
            })
            .collect();
        shared.start.wait();
        // Every connection is up (idle: and proven): memory now holds them.
        rss_after = pid.and_then(system::rss_bytes);
        let warmup = if idle { Duration::ZERO } else { args.warmup };
        cpu = watch(args, warmup, pid, &shared.done);
        let mut panicked = false;
        for handle in handles {
            match handle.join() {
                Ok(t) => tally.merge(t),
                Err(_) => panicked = true,
            }
        }
        panicked
    });
    if panicked {
        tally.errors += 1;
        tally
            .first_error
            .get_or_insert_with(|| BenchError::ClientPanicked.to_string());
    }
    let seconds = args.duration.as_secs_f64();
    let q = |quantile: f64| tally.latency.value_at_quantile(quantile) as f64 / 1_000.0;
    let (p50, p99, p999, max) = if tally.latency.is_empty() {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (
            q(0.5),
            q(0.99),
            q(0.999),
            tally.latency.max() as f64 / 1_000.0,
        )
    };
    let held = idle.then_some(tally.held);
    let rss_per_conn = match (idle, rss_before, rss_after) {
        (true, Some(before), Some(after)) if tally.held > 0 => {
            Some(after.saturating_sub(before) as f64 / tally.held as f64)
        }
        _ => None,
    };
    Point {
        mode: mode.into(),
        conns,
        connected: tally.connected,
        served: tally.served,
        requests: tally.requests,
        errors: tally.errors,
        // Idle's requests are one proof per connection, not a rate.
        throughput: if idle {
            0.0
        } else {
            tally.requests as f64 / seconds
        },
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        bytes_in: tally.bytes_in,
        bytes_out: tally.bytes_out,
        reconnects: tally.reconnects,
        // Idle's window has no requests to divide by.
        cpu_us_per_req: cpu
            .filter(|_| !idle && tally.requests > 0)
            .map(|cpu_s| cpu_s * 1e6 / tally.requests as f64),
        held,
        rss_per_conn,
        first_error: tally.first_error,
    }
}

/// Waits out the warm-up and the measured window, showing progress when
/// stdout is a terminal, and returns the server's CPU seconds used in the
/// window (when `pid` is known).
fn watch(args: &BenchArgs, warmup: Duration, pid: Option<u32>, done: &AtomicU64) -> Option<f64> {
    let total = warmup + args.duration;
    let bar = (total > PROGRESS_AFTER && std::io::stdout().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
                .expect("a valid progress template"),
        );
        bar
    });
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + args.duration;
    let mut cpu_start = None;
    loop {
        let now = Instant::now();
        if cpu_start.is_none() && now >= window_start {
            cpu_start = Some(pid.and_then(system::cpu_seconds));
        }
        if now >= end {
            break;
        }
        if let Some(bar) = &bar {
            bar.set_position(now.duration_since(start).as_millis() as u64);
            bar.set_message(format!("{} requests", done.load(Relaxed)));
        }
        let next = if cpu_start.is_none() {
            window_start
        } else {
            end
        };
        std::thread::sleep(TICK.min(next - now));
    }
    let cpu_end = pid.and_then(system::cpu_seconds);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Some(cpu_end? - cpu_start.flatten()?)
}
