//! Forking mode: a process per connection, like `socketserver.ForkingTCPServer`.
//!
//! After `accept`, the server forks. The child serves that one connection
//! with the blocking driver and exits; the parent closes its copy of the
//! socket, goes back to accepting, and reaps finished children without
//! blocking (`waitpid(pid, WNOHANG)` for each of its children, once per
//! 200 ms tick), so no zombie outlives a tick.
//!
//! What `ForkingTCPServer` users discover, and so will you: a child has its
//! own *copy* of the parent's memory. A `todo` POST made in one connection
//! changes that child's copy of the store only; other clients, and the
//! parent, never see it, and it is gone when the child exits. The counters
//! a child updates are its own too: the parent counts connections, not
//! bytes. The event loop and the threaded mode share one store.
//!
//! Unix only. Fork copies only the calling thread, so this mode starts no
//! thread before forking (UDP listeners are refused).

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Listener, Options, Shutdown, accept, stream};
use crate::stats::{self, Stats};

/// How often finished children are reaped.
const REAP_EVERY: Duration = Duration::from_millis(200);

pub(super) fn run(
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    if listeners.iter().any(|l| matches!(l, Listener::Udp { .. })) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the forking mode serves TCP only: serve udp in another mode",
        ));
    }
    // Our own children, by pid: reaping by pid never steals another part of
    // the process's children (a test harness, say).
    let children = RefCell::new(Vec::<libc::pid_t>::new());
    // Reaping asks the kernel about each child in turn, so it is done at
    // most once a tick (and when the limit is reached), not per accept:
    // per accept, a storm of connects cost one waitpid per live child each.
    let last_reap = Cell::new(Instant::now());
    let reap_exited = |force: bool| {
        if force || last_reap.get().elapsed() >= REAP_EVERY {
            last_reap.set(Instant::now());
            let reaped = reap(&mut children.borrow_mut(), libc::WNOHANG);
            stats::add(&stats.closed, reaped as u64);
        }
    };
    accept::run(
        listeners,
        &stats,
        &shutdown,
        || reap_exited(false),
        |mut socket, peer, factory| {
            if children.borrow().len() >= options.max_conns {
                reap_exited(true);
            }
            if children.borrow().len() >= options.max_conns {
                stats::add(&stats.refused, 1);
                let _ = socket.write(factory.busy_reply());
                return;
            }
            // SAFETY: fork has no memory-safety preconditions; the child only
            // serves its socket with the blocking driver and `_exit`s.
            match unsafe { libc::fork() } {
                -1 => log::error!("peer={peer}: fork failed: {}", io::Error::last_os_error()),
                0 => {
                    // The child. It must not keep copies of the listeners or of
                    // other clients' sockets: a socket closes only when its last
                    // descriptor does, so a copy here would keep a stranger's
                    // connection open for as long as this child lives.
                    close_all_but(&[0, 1, 2, socket.as_raw_fd()]);
                    stream::serve(socket, peer, factory.as_ref(), options, &stats, &shutdown);
                    // SAFETY: ends this process at once, without running the
                    // parent's destructors or flushing its buffers a second time.
                    unsafe { libc::_exit(0) };
                }
                child => {
                    log::debug!("peer={peer} served by process {child}");
                    stats::add(&stats.accepted, 1);
                    children.borrow_mut().push(child);
                }
            }
        },
    )?;
    // Shutdown: a child has its own copy of the shutdown flag, so it goes on
    // until its client leaves. Wait the grace period, then ask with SIGTERM.
    let mut children = children.into_inner();
    log::info!("waiting for {} child processes", children.len());
    let deadline = Instant::now() + options.shutdown_grace;
    while !children.is_empty() && Instant::now() < deadline {
        stats::add(&stats.closed, reap(&mut children, libc::WNOHANG) as u64);
        std::thread::sleep(Duration::from_millis(20));
    }
    for &child in &children {
        log::warn!("process {child} still serving after the grace period: sending SIGTERM");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child, libc::SIGTERM) };
    }
    stats::add(&stats.unfinished, children.len() as u64);
    stats::add(&stats.closed, reap(&mut children, 0) as u64);
    log::info!("forking server stopped");
    Ok(())
}

/// Reaps the children in `children` that have exited (with `flags` 0: waits
/// for all of them); returns how many.
fn reap(children: &mut Vec<libc::pid_t>, flags: libc::c_int) -> usize {
    let before = children.len();
    children.retain(|&child| {
        // SAFETY: waitpid with a null status pointer is always valid.
        let pid = unsafe { libc::waitpid(child, std::ptr::null_mut(), flags) };
        pid == 0 // still running; -1 (gone) or the pid (reaped) drop it
    });
    before - children.len()
}

/// Closes every descriptor of this process except `keep`.
fn close_all_but(keep: &[RawFd]) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut from: libc::c_uint = 0;
    for fd in keep {
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: close_range only closes descriptors (Linux 5.9+).
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
}
