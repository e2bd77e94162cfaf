//! Counters shared by every server mode, and their Prometheus rendering.
//!
//! Plain relaxed atomics: each counter is independent, and a scrape that sees
//! one a request ahead of another is fine. The drivers add to them per read,
//! per write or per batch of requests, never per byte; the event loop adds
//! its traffic once per turn (`server/turn.rs`, `Tally`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed.
    pub closed: AtomicU64,
    /// Connections refused because the server was full.
    pub refused: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Requests answered (each service says what a request is).
    pub requests: AtomicU64,
    /// Times the event loop woke up from `poll`.
    pub wakeups: AtomicU64,
    /// Readiness events the event loop handled.
    pub events: AtomicU64,
    /// UDP datagrams received.
    pub datagrams: AtomicU64,
    /// UDP datagrams received and not answered: from a source that would
    /// answer back (`service::udp::screen`).
    pub datagrams_dropped: AtomicU64,
    /// Jobs handed to the offload pool.
    pub offloaded: AtomicU64,
    /// Commands the event loops pipelined onto their connections to the
    /// store on Redis (`server/upstream.rs`); a client's pipeline goes up
    /// as one request of several commands.
    pub store_commands: AtomicU64,
    /// Writes those commands took: fewer than commands when one write
    /// carries several clients' requests.
    pub store_writes: AtomicU64,
    /// Connections closed because a timeout ran out (idle, or a request
    /// that took too long to arrive).
    pub timed_out: AtomicU64,
    /// Connections still open when the shutdown grace ran out: their
    /// clients may not have had every answer.
    pub unfinished: AtomicU64,
    /// Counters per service, registered at start ([`Stats::service`]).
    services: Mutex<Vec<Arc<ServiceStats>>>,
    /// Connections accepted per event loop (`--loops N`), by loop index.
    loops: Mutex<Vec<Arc<AtomicU64>>>,
}

/// One service's counters. Drivers hold an `Arc` per connection, so the
/// hot path adds to an atomic without a lookup.
#[derive(Debug)]
pub struct ServiceStats {
    /// The service's name.
    pub name: &'static str,
    /// Connections accepted for it.
    pub accepted: AtomicU64,
    /// Requests it answered.
    pub requests: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Stats {
    /// The counters of the service called `name`, created on first use.
    pub fn service(&self, name: &'static str) -> Arc<ServiceStats> {
        let mut services = crate::sync::lock(&self.services);
        if let Some(found) = services.iter().find(|s| s.name == name) {
            return Arc::clone(found);
        }
        let new = Arc::new(ServiceStats {
            name,
            accepted: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        services.push(Arc::clone(&new));
        new
    }

    /// The accepted-connections counter of event loop `index`.
    pub fn event_loop(&self, index: usize) -> Arc<AtomicU64> {
        let mut loops = crate::sync::lock(&self.loops);
        while loops.len() <= index {
            loops.push(Arc::default());
        }
        Arc::clone(&loops[index])
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        let accepted = self.accepted.load(Relaxed);
        accepted.saturating_sub(self.closed.load(Relaxed))
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 15] = [
            ("accepted", "Connections accepted.", &self.accepted),
            ("closed", "Connections closed.", &self.closed),
            (
                "refused",
                "Connections refused: server full.",
                &self.refused,
            ),
            ("bytes_in", "Bytes read from clients.", &self.bytes_in),
            ("bytes_out", "Bytes written to clients.", &self.bytes_out),
            ("requests", "Requests answered.", &self.requests),
            ("poll_wakeups", "Event-loop wake-ups.", &self.wakeups),
            ("poll_events", "Readiness events handled.", &self.events),
            ("udp_datagrams", "UDP datagrams received.", &self.datagrams),
            (
                "udp_dropped",
                "UDP datagrams not answered: their source would answer back.",
                &self.datagrams_dropped,
            ),
            (
                "offloaded",
                "Jobs handed to the offload pool.",
                &self.offloaded,
            ),
            (
                "store_commands",
                "Commands pipelined onto the event loops' connections to Redis.",
                &self.store_commands,
            ),
            (
                "store_writes",
                "Writes to Redis that carried them.",
                &self.store_writes,
            ),
            (
                "timed_out",
                "Connections closed by a timeout.",
                &self.timed_out,
            ),
            (
                "shutdown_unfinished",
                "Connections still open when the shutdown grace ran out.",
                &self.unfinished,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP readyloop_{name}_total {help}");
            let _ = writeln!(out, "# TYPE readyloop_{name}_total counter");
            let _ = writeln!(out, "readyloop_{name}_total {}", value.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP readyloop_connections_active Connections open now."
        );
        let _ = writeln!(out, "# TYPE readyloop_connections_active gauge");
        let _ = writeln!(out, "readyloop_connections_active {}", self.active());
        let services = crate::sync::lock(&self.services);
        for (metric, help) in [
            ("accepted", "Connections accepted, per service."),
            ("requests", "Requests answered, per service."),
        ] {
            let _ = writeln!(out, "# HELP readyloop_service_{metric}_total {help}");
            let _ = writeln!(out, "# TYPE readyloop_service_{metric}_total counter");
            for service in services.iter() {
                let value = if metric == "accepted" {
                    &service.accepted
                } else {
                    &service.requests
                };
                let _ = writeln!(
                    out,
                    "readyloop_service_{metric}_total{{service=\"{}\"}} {}",
                    service.name,
                    value.load(Relaxed)
                );
            }
        }
        let loops = crate::sync::lock(&self.loops);
        let _ = writeln!(
            out,
            "# HELP readyloop_loop_accepted_total Connections accepted, per event loop."
        );
        let _ = writeln!(out, "# TYPE readyloop_loop_accepted_total counter");
        for (index, accepted) in loops.iter().enumerate() {
            let _ = writeln!(
                out,
                "readyloop_loop_accepted_total{{loop=\"{index}\"}} {}",
                accepted.load(Relaxed)
            );
        }
    }

    /// One line with the main counters, for `--stats-interval` and the console.
    pub fn summary(&self) -> String {
        format!(
            "stats: active={} accepted={} closed={} refused={} requests={} bytes_in={} bytes_out={} wakeups={} events={} offloaded={}",
            self.active(),
            self.accepted.load(Relaxed),
            self.closed.load(Relaxed),
            self.refused.load(Relaxed),
            self.requests.load(Relaxed),
            self.bytes_in.load(Relaxed),
            self.bytes_out.load(Relaxed),
            self.wakeups.load(Relaxed),
            self.events.load(Relaxed),
            self.offloaded.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let stats = Stats::default();
        add(&stats.accepted, 3);
        add(&stats.closed, 1);
        let mut text = String::new();
        stats.render_prometheus(&mut text);
        assert!(text.contains("readyloop_accepted_total 3\n"));
        assert!(text.contains("readyloop_connections_active 2\n"));
        add(&stats.service("echo").requests, 5);
        stats.event_loop(1);
        text.clear();
        stats.render_prometheus(&mut text);
        assert!(
            text.contains("readyloop_service_requests_total{service=\"echo\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("readyloop_loop_accepted_total{loop=\"1\"} 0\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("readyloop_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
