//! Counters shared by every server mode, and their Prometheus rendering.
//!
//! Plain relaxed atomics: each counter is independent, and a scrape that sees
//! one a request ahead of another is fine. The event loop adds to them once
//! per wake-up or per connection, not per byte.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// Jobs handed to the offload pool.
    pub offloaded: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Stats {
    /// Connections open now.
    pub fn active(&self) -> u64 {
        let accepted = self.accepted.load(Relaxed);
        accepted.saturating_sub(self.closed.load(Relaxed))
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 10] = [
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
                "offloaded",
                "Jobs handed to the offload pool.",
                &self.offloaded,
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
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.starts_with("readyloop_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
