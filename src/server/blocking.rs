//! Blocking mode: one client at a time, like `socketserver.TCPServer`.
//!
//! The accept loop serves each connection to its end before it accepts the
//! next; the others wait in the listen backlog. This is seed 001's first
//! server, and the baseline every other mode is measured against.

use std::io;
use std::sync::Arc;

use super::{Listener, Options, Shutdown, accept, stream};
use crate::stats::Stats;

pub(super) fn run(
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    accept::run(
        listeners,
        &stats,
        &shutdown,
        || {},
        |socket, peer, factory| {
            stream::serve(socket, peer, factory.as_ref(), options, &stats, &shutdown);
        },
    )?;
    log::info!("blocking server stopped");
    Ok(())
}
