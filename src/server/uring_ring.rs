//! The kernel's side of the io_uring loop: the ring and what its
//! completions mean ([`Op`]), the registered file table ([`Target`]), the
//! eventfd that wakes the loop, and whether this kernel allows any of it
//! ([`available`]). The buffers receives fill are `uring_bufs.rs`'s.
//! Nothing here knows of connections or services.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

use super::offload::Wake;

/// Submission queue entries: how many operations one turn may hand over
/// before the queue is flushed early.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: completions one wait may bring back (the
/// kernel keeps the overflow and hands it over on the next call).
const CQ_ENTRIES: u32 = 8192;
/// At exit, how long to wait for cancelled operations to come back.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How long a wait may hold out for a whole batch of completions (see
/// [`Ring::wait`]) before it returns with whatever came: the most it adds
/// to a request's latency.
const BATCH_WAIT_US: u32 = 50;
/// The most completions a wait holds out for.
const BATCH_MAX: usize = 256;

/// What a completion is for, packed into its `user_data`: a kind in the top
/// byte, a listener index or a slab key below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Accept(usize),
    Recv(usize),
    Send(usize),
    /// The eventfd read: jobs finished, or shutdown was asked.
    Wake,
    /// A cancellation's own completion (the cancelled operation has its own).
    Cancel,
}

impl Op {
    pub(crate) fn encode(self) -> u64 {
        let (kind, index) = match self {
            Op::Accept(i) => (1, i),
            Op::Recv(key) => (2, key),
            Op::Send(key) => (3, key),
            Op::Wake => (4, 0),
            Op::Cancel => (5, 0),
        };
        (kind << 56) | index as u64
    }

    fn decode(data: u64) -> Op {
        let index = (data & ((1 << 56) - 1)) as usize;
        match data >> 56 {
            1 => Op::Accept(index),
            2 => Op::Recv(index),
            3 => Op::Send(index),
            4 => Op::Wake,
            _ => Op::Cancel,
        }
    }
}

/// The ring and a count of the operations in it that have not completed
/// for the last time (a multishot one counts until its completion without
/// `F_MORE`).
pub(crate) struct Ring {
    uring: IoUring,
    in_flight: usize,
    /// Completions the last [`completions`](Self::completions) took.
    batch: usize,
    /// The kernel can hold a wait out for several completions for a while,
    /// then settle for one (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.12).
    min_timeout: bool,
    /// Slots in the registered file table (0: none, sockets go by descriptor).
    files: u32,
}

/// Where an operation finds a connection's socket: a slot of the ring's
/// registered file table, which spares the kernel looking the descriptor up
/// and counting a reference on every send (`fdget`/`fdput`), or the plain
/// descriptor when there is no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Fixed(u32),
    Fd(RawFd),
}

/// `$entry`, built with `$fd` bound to `$target` as the crate's type for it
/// (`types::Fixed` or `types::Fd`: operations take either).
macro_rules! on_target {
    ($target:expr, |$fd:ident| $entry:expr) => {
        match $target {
            Target::Fixed(slot) => {
                let $fd = io_uring::types::Fixed(slot);
                $entry
            }
            Target::Fd(raw) => {
                let $fd = io_uring::types::Fd(raw);
                $entry
            }
        }
    };
}
pub(crate) use on_target;

impl Ring {
    /// Queues one operation for the next `io_uring_enter`.
    pub(crate) fn push(&mut self, entry: squeue::Entry, op: Op) {
        let entry = entry.user_data(op.encode());
        // SAFETY: every buffer an entry points at outlives its completion: a
        // connection's `sending` and the wake-up buffer are dropped only when
        // nothing of theirs is in flight (`Conn::is_done`, `drain`).
        while unsafe { self.uring.submission().push(&entry) }.is_err() {
            // Full: hand the queue to the kernel now, then queue the rest.
            if let Err(e) = self.uring.submit() {
                log::error!("io_uring submit failed: {e}");
            }
        }
        self.in_flight += 1;
    }

    /// A ring for this thread alone: `SINGLE_ISSUER` and `DEFER_TASKRUN` let
    /// the kernel post completions only when we wait for them, in one batch.
    /// Kernels without those flags get a plain ring.
    pub(crate) fn new() -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(|e| io::Error::new(e.kind(), refusal(&e)))?;
        Ok(Ring {
            min_timeout: uring.params().is_feature_min_timeout(),
            uring,
            in_flight: 0,
            batch: 0,
            files: 0,
        })
    }

    /// For registering what the kernel is to use with this ring (buffers).
    pub(crate) fn submitter(&self) -> io_uring::Submitter<'_> {
        self.uring.submitter()
    }

    /// Registers an empty file table of `slots` entries, one per connection
    /// the loop may hold. Where the kernel refuses (a descriptor limit under
    /// `slots`), sockets are named by descriptor.
    pub(crate) fn register_files(&mut self, slots: usize) {
        let slots = u32::try_from(slots).unwrap_or(u32::MAX);
        match self.uring.submitter().register_files_sparse(slots) {
            Ok(()) => self.files = slots,
            Err(e) => log::info!("io_uring: no registered file table ({e}): using descriptors"),
        }
    }

    /// Puts socket `fd` in slot `slot` of the file table, for the operations
    /// on it to name. One system call per connection, not per operation.
    pub(crate) fn adopt(&mut self, slot: usize, fd: RawFd) -> Target {
        if let Ok(slot) = u32::try_from(slot)
            && slot < self.files
        {
            match self.uring.submitter().register_files_update(slot, &[fd]) {
                Ok(_) => return Target::Fixed(slot),
                Err(e) => log::debug!("io_uring: cannot register file slot {slot}: {e}"),
            }
        }
        Target::Fd(fd)
    }

    /// Empties `target`'s slot, once nothing of its socket is in flight: the
    /// table holds a reference to the socket, which would keep it open after
    /// its descriptor is closed.
    pub(crate) fn release(&mut self, target: Target) {
        if let Target::Fixed(slot) = target
            && let Err(e) = self.uring.submitter().register_files_update(slot, &[-1])
        {
            log::warn!("io_uring: cannot empty file slot {slot}: {e}");
        }
    }

    /// The one system call of a turn: submit everything queued, sleep until
    /// at least one completion, or until `deadline`.
    ///
    /// Busy, it holds out for about as many completions as the last turn
    /// brought (three quarters of them), for at most [`BATCH_WAIT_US`]: the
    /// kernel then wakes us once per batch, not at the first arrival, so a
    /// turn serves more requests and the loop sleeps and wakes less often
    /// (a sleep and a wake-up cost more than a request's user-space work).
    /// Idle, or with one client, the last turn brought one or two, and it
    /// waits for one as before.
    pub(crate) fn wait(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let want = match self.min_timeout {
            true => (self.batch * 3 / 4).clamp(1, BATCH_MAX),
            false => 1,
        };
        let mut args = SubmitArgs::new();
        if want > 1 {
            args = args.min_wait_usec(BATCH_WAIT_US);
        }
        let result = match deadline {
            None if want == 1 => self.uring.submit_and_wait(1),
            None => self.uring.submitter().submit_with_args(want, &args),
            Some(at) => {
                let timeout = Timespec::from(at.saturating_duration_since(Instant::now()));
                let args = args.timespec(&timeout);
                self.uring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            // ETIME: the deadline came first. EINTR: a signal (rule 8).
            // EBUSY: completions overflowed; reaping them makes room.
            Err(e)
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Moves every completion waiting into `into`: what it is for, its
    /// result, its flags (see `io_uring::cqueue` for reading them).
    pub(crate) fn completions(&mut self, into: &mut Vec<(Op, i32, u32)>) {
        let before = into.len();
        for completion in self.uring.completion() {
            if !cqueue::more(completion.flags()) {
                self.in_flight -= 1; // its last completion
            }
            let op = Op::decode(completion.user_data());
            into.push((op, completion.result(), completion.flags()));
        }
        self.batch = into.len() - before;
    }

    /// At exit: cancels whatever is still in the ring and waits (a little)
    /// for it to come back, so that no completion can write into memory we
    /// free. False if something is still in flight after [`DRAIN_LIMIT`].
    pub(crate) fn drain(&mut self) -> bool {
        if self.in_flight == 0 {
            return true;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build();
        self.push(cancel, Op::Cancel);
        let give_up = Instant::now() + DRAIN_LIMIT;
        let mut done = Vec::new();
        while self.in_flight > 0 && Instant::now() < give_up {
            let _ = self.wait(Some(Instant::now() + Duration::from_millis(100)));
            self.completions(&mut done);
            done.clear();
        }
        self.in_flight == 0
    }
}

/// Says whether this kernel lets us use io_uring, and if not, why, in one
/// sentence that tells the user what to do. Asked once per process.
///
/// The probe ring is made and dropped on a thread of its own: tearing a
/// ring down leaves task work for the thread that made it, which interrupts
/// that thread's next blocking call (a socket read with a timeout then
/// fails with `EINTR`). A thread that ends at once does not mind.
pub fn available() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            std::thread::spawn(probe)
                .join()
                .unwrap_or_else(|_| Err("the io_uring probe panicked".into()))
        })
        .clone()
}

/// [`available`]'s question, asked of a new ring.
fn probe() -> Result<(), String> {
    let ring = IoUring::new(4).map_err(|e| refusal(&e))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| refusal(&e))?;
    let needed = [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::Read::CODE, "read"),
        (opcode::AsyncCancel::CODE, "async cancel"),
    ];
    match needed.iter().find(|(code, _)| !probe.is_supported(*code)) {
        Some((_, name)) => Err(format!(
            "this kernel's io_uring has no {name} operation (Linux 6.0 or later is needed): use --mode evloop"
        )),
        None => Ok(()),
    }
}

/// Why io_uring could not be set up, and what to do about it.
fn refusal(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "this kernel has no io_uring (Linux 6.0 or later is needed): use --mode evloop".into()
        }
        Some(libc::EPERM | libc::EACCES) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled");
            let why = match disabled.as_deref().map(str::trim) {
                Ok("2") => "the sysctl kernel.io_uring_disabled is 2",
                Ok("1") => {
                    "kernel.io_uring_disabled is 1 and this user is not in kernel.io_uring_group"
                }
                _ => "a seccomp filter forbids it (a container's default profile does)",
            };
            format!("io_uring is not allowed here ({e}): {why}; use --mode evloop")
        }
        _ => format!("cannot set up io_uring: {e}"),
    }
}

/// An eventfd: worker threads and the shutdown handle write to it, the
/// loop keeps a read of it in the ring, which completes when one did. The
/// io_uring counterpart of `mio::Waker` (which is an eventfd in an epoll).
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// A blocking eventfd: its read sits in the ring, not in a thread.
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is ours alone.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

impl Wake for EventFd {
    /// Adds one to the counter; the loop's pending read completes.
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        let n = unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) };
        if n == 8 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    use io_uring::types::Fd;

    use super::*;
    use crate::server::uring_bufs::{BUFFERS, BufRing, GROUP};

    #[test]
    fn an_op_comes_back_from_its_user_data() {
        for op in [
            Op::Accept(3),
            Op::Recv(0),
            Op::Send((1 << 56) - 1),
            Op::Wake,
            Op::Cancel,
        ] {
            assert_eq!(Op::decode(op.encode()), op);
        }
    }

    /// One multishot receive, three times as many messages as buffers: each
    /// completion names the buffer holding exactly its bytes, and only
    /// buffers given back let the receive go on (the tail wraps round).
    #[test]
    fn a_multishot_receive_goes_on_as_long_as_buffers_come_back() {
        if let Err(reason) = available() {
            eprintln!("SKIPPED: the provided-buffer ring: {reason}");
            return;
        }
        let mut ring = Ring::new().unwrap();
        let mut bufs = BufRing::register(&ring).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        let recv = opcode::RecvMulti::new(Fd(server.as_raw_fd()), GROUP).build();
        ring.push(recv, Op::Recv(7));
        let mut done = Vec::new();
        for i in 0..3 * usize::from(BUFFERS) {
            let message = format!("message {i}\n");
            client.write_all(message.as_bytes()).unwrap();
            for _ in 0..50 {
                if !done.is_empty() {
                    break;
                }
                ring.wait(Some(Instant::now() + Duration::from_millis(100)))
                    .unwrap();
                ring.completions(&mut done);
            }
            assert_eq!(done.len(), 1, "message {i}: {done:?}");
            let (op, result, flags) = done.pop().unwrap();
            assert_eq!(op, Op::Recv(7));
            assert!(result > 0, "{}", io::Error::from_raw_os_error(-result));
            assert!(cqueue::more(flags), "the multishot receive ended");
            let bid = cqueue::buffer_select(flags).expect("a buffer id");
            assert_eq!(bufs.filled(bid, result as usize), message.as_bytes());
            bufs.recycle(bid);
        }
        assert_eq!(ring.in_flight, 1, "the receive is still armed");
        assert!(ring.drain(), "the receive was cancelled and came back");
    }
}
