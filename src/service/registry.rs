//! The registry: every service the CLI can name, with its default port,
//! what it is served over, and what must be ready before it is served.

use std::sync::Arc;

use super::{Factory, Limits, Shared};
use super::{echo, hello, http, kv, menu, once, slow, todo, upload, upper};

/// A service the CLI can name: its name, default port, one line of help,
/// what it is served over, and what must be ready before it is served.
#[derive(Debug)]
pub struct Entry {
    /// The name used in `SERVICE@ADDR`.
    pub name: &'static str,
    /// The port it listens on when none is given (docs/PROTOCOLS.md).
    pub default_port: u16,
    /// What it does, in a few words, for `--help` and errors.
    pub about: &'static str,
    /// Connections or datagrams.
    pub transport: Transport,
    /// Runs once at start, before anything is served, when a listener
    /// serves this service (make a directory, clean what a crash left). An
    /// error stops the start with its text.
    pub prepare: Option<Prepare>,
    /// Keeps its data in the store (`--store`, `--data-dir`): the file
    /// store is opened, and its flusher started, only when a served
    /// service does.
    pub uses_store: bool,
}

/// Makes ready what a service needs before it is served; `Err` says why not.
pub type Prepare = fn(&Limits) -> Result<(), String>;

/// How a service's clients reach it.
#[derive(Debug)]
pub enum Transport {
    /// TCP: each connection gets a service from the factory this builds.
    Stream(fn(&Shared) -> Arc<dyn Factory>),
    /// UDP: each datagram is answered on its own ([`super::udp::answer`]).
    Datagram,
}

impl Entry {
    /// A TCP service with nothing to prepare.
    const fn stream(
        name: &'static str,
        default_port: u16,
        about: &'static str,
        factory: fn(&Shared) -> Arc<dyn Factory>,
    ) -> Entry {
        Entry {
            name,
            default_port,
            about,
            transport: Transport::Stream(factory),
            prepare: None,
            uses_store: false,
        }
    }
}

/// Every service readyloop hosts, in the order of docs/PROTOCOLS.md.
pub const REGISTRY: &[Entry] = &[
    Entry::stream("echo", 9000, "bytes back, unchanged", echo::factory),
    Entry::stream(
        "hello",
        8000,
        "line in, `Hello <LINE UPPER-CASED>` back",
        hello::factory,
    ),
    Entry::stream(
        "upper",
        9999,
        "line in, the line upper-cased back",
        upper::factory,
    ),
    Entry::stream("menu", 8888, "the 10086 phone-menu robot", menu::factory),
    Entry::stream(
        "http",
        8080,
        "HTTP/1.1 `Hello, World`, and /metrics",
        http::factory,
    ),
    Entry {
        uses_store: true,
        ..Entry::stream(
            "todo",
            9001,
            "GET/POST line commands over the shared store",
            todo::factory,
        )
    },
    Entry {
        prepare: Some(upload::prepare),
        ..Entry::stream(
            "upload",
            9998,
            "`put|<name>|<size>`, then the bytes, stored durably in --upload-dir",
            upload::factory,
        )
    },
    Entry::stream(
        "slow",
        9002,
        "`sleep <ms>` and `hash <rounds>`, run as offloaded jobs",
        slow::factory,
    ),
    Entry {
        uses_store: true,
        ..Entry::stream(
            "kv",
            6380,
            "a Redis (RESP2) subset over the shared store",
            kv::factory,
        )
    },
    Entry::stream(
        "once",
        9003,
        "one line in, a fixed answer back, then close (seed 002's first server)",
        once::factory,
    ),
    Entry {
        name: "udp",
        default_port: 9997,
        about: "datagrams echoed back, never longer than they came",
        transport: Transport::Datagram,
        prepare: None,
        uses_store: false,
    },
];

/// The registry entry called `name`, if there is one.
pub fn by_name(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|entry| entry.name == name)
}
