//! Threaded mode: a thread per connection, like `socketserver.ThreadingTCPServer`,
//! or with `--threads N` a pool of N threads taking connections from a queue,
//! like seed 001's thread-pool `SocketServer`.
//!
//! Each thread runs the same blocking driver ([`stream::serve`]) over the same
//! services as the event loop, so comparing the modes compares only the I/O
//! model. On shutdown every thread finishes its client and is joined, as
//! `ThreadingTCPServer` does with `block_on_close`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};

use super::{Listener, Options, Shutdown, accept, stream};
use crate::service::Factory;
use crate::stats::{self, Stats};

/// Stack size of a connection thread. The services need little; a small
/// stack keeps thousands of threads within memory (only touched pages are
/// resident, but the address space is reserved).
const THREAD_STACK: usize = 256 * 1024;

/// An accepted connection handed to a pool thread (not a `service::Job`).
type Handoff = (TcpStream, SocketAddr, Arc<dyn Factory>);

pub(super) fn run(
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    // Connections being served or waiting for a pool thread.
    let active = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let pool = match options.threads {
        Some(n) => Some(start_pool(
            n,
            options,
            &stats,
            &shutdown,
            &active,
            &mut threads,
        )?),
        None => None,
    };
    accept::run(
        listeners,
        &stats,
        &shutdown,
        || {},
        |mut socket, peer, factory| {
            if active.load(Ordering::SeqCst) >= options.max_conns {
                stats::add(&stats.refused, 1);
                log::debug!(
                    "{}: refusing peer={peer}: {} connections is the limit",
                    factory.name(),
                    options.max_conns
                );
                let _ = socket.write(factory.busy_reply());
                return;
            }
            active.fetch_add(1, Ordering::SeqCst);
            match &pool {
                Some(queue) => {
                    if queue.send((socket, peer, Arc::clone(factory))).is_err() {
                        active.fetch_sub(1, Ordering::SeqCst); // the pool is gone: shutting down
                    }
                }
                None => {
                    threads.retain(|t| !t.is_finished());
                    let (factory, options, stats, shutdown, done) = (
                        Arc::clone(factory),
                        options.clone(),
                        Arc::clone(&stats),
                        shutdown.clone(),
                        Arc::clone(&active),
                    );
                    let spawned =
                        thread::Builder::new()
                            .stack_size(THREAD_STACK)
                            .spawn(move || {
                                stream::serve(
                                    socket,
                                    peer,
                                    factory.as_ref(),
                                    &options,
                                    &stats,
                                    &shutdown,
                                );
                                done.fetch_sub(1, Ordering::SeqCst);
                            });
                    match spawned {
                        Ok(handle) => threads.push(handle),
                        Err(e) => {
                            active.fetch_sub(1, Ordering::SeqCst);
                            log::error!("peer={peer}: cannot start a thread: {e}");
                        }
                    }
                }
            }
        },
    )?;
    drop(pool); // workers see the queue close once it is empty
    log::info!(
        "waiting for {} connection threads",
        active.load(Ordering::SeqCst)
    );
    for handle in threads {
        let _ = handle.join();
    }
    log::info!("threaded server stopped");
    Ok(())
}

/// Starts `n` workers that serve connections from one queue.
fn start_pool(
    n: usize,
    options: &Options,
    stats: &Arc<Stats>,
    shutdown: &Shutdown,
    active: &Arc<AtomicUsize>,
    threads: &mut Vec<JoinHandle<()>>,
) -> io::Result<mpsc::Sender<Handoff>> {
    let (sender, receiver) = mpsc::channel::<Handoff>();
    let receiver = Arc::new(Mutex::new(receiver));
    for i in 0..n.max(1) {
        let (receiver, options, stats, shutdown, active) = (
            Arc::clone(&receiver),
            options.clone(),
            Arc::clone(stats),
            shutdown.clone(),
            Arc::clone(active),
        );
        threads.push(
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    loop {
                        let job = crate::sync::lock(&receiver).recv();
                        let Ok((socket, peer, factory)) = job else {
                            return;
                        };
                        stream::serve(socket, peer, factory.as_ref(), &options, &stats, &shutdown);
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                })?,
        );
    }
    Ok(sender)
}
