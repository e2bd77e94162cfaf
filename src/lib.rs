//! readyloop: a readiness-based, single-threaded event-loop TCP and UDP
//! server, with threaded and blocking modes to compare it against.
//!
//! # The map
//!
//! ```text
//!              bytes in                                bytes out
//!   socket ──► [ server: evloop | threaded | blocking ] ──► socket
//!                    │  Service::input(&[u8], &mut Cx) -> (consumed, Next)
//!                    ▼
//!              [ service: echo | hello | once | upper | menu | http | todo | kv | upload | slow ]
//!                    │  Next::Offload(Job::Store(..))   (--fsync always)
//!                    ▼
//!              [ store: map + append-only log; flusher thread; group commit ]
//! ```
//!
//! - [`service`]: protocol logic with no I/O (sans-I/O state machines), the
//!   line framing they share, and the registry of services by name.
//! - [`server`]: the drivers that own the sockets. `server/evloop.rs` is the
//!   lesson: one `mio::Poll`, a `slab` of connections, readiness dispatch;
//!   `server/uring.rs` is its completion-based counterpart on io_uring.
//! - [`store`]: the key-value store shared by every connection, made
//!   durable by an append-only log in `--data-dir` (`--fsync` policy).
//! - [`remote`]: the store on Redis (`--store redis://`): requests, answers,
//!   and where a reply ends.
//! - [`stats`]: counters every mode updates, rendered for Prometheus.
//! - [`config`] and [`cli`]: flags in, validated settings out.
//! - [`bench`](mod@bench): the bounded loopback load generator and its reports (table,
//!   JSON, SVG chart) that compare the modes.
//! - [`fdlimit`]: lifts the open-file limit, for the server and `bench`.
//! - [`logger`]: log lines to stderr or a file that can be reopened.
//! - [`serve`]: `readyloop serve`'s start-up sequence, and why in that order.
//! - [`signals`]: graceful shutdown on SIGTERM/SIGINT, log reopen on SIGHUP.
//! - [`daemon`]: the pid file and its lock, detaching from the terminal.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fdlimit;
pub mod logger;
pub mod remote;
pub mod serve;
pub mod server;
pub mod service;
pub mod signals;
pub mod stats;
pub mod store;
mod sync;
