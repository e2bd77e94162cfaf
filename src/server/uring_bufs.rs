//! The provided-buffer ring that the io_uring loop's multishot receives fill.
//!
//! A readiness loop reads into *its* buffer when it chooses to. A completion
//! loop must hand the kernel a buffer *before* data arrives; one buffer per
//! connection would cost every idle connection 16 KiB (DESIGN rule 12). A
//! provided-buffer ring ("pbuf ring", Linux 5.19) is the answer: one pool of
//! [`BUFFERS`] buffers shared by every connection. A receive completion
//! names the buffer the kernel picked; the loop hands those bytes to the
//! connection's dialogue (which copies what it leaves unconsumed) and gives
//! the buffer straight back with [`BufRing::recycle`]. So buffers are held
//! only between a completion and its handling, never by an idle connection.
//!
//! ```text
//!   loop: recycle(bid) ──► [ entries: addr,len,bid ... ] tail ──► kernel
//!   kernel: picks an entry, fills it, CQE { res: len, flags: bid } ──► loop
//! ```
//!
//! When every buffer is taken, the kernel ends the multishot receives it
//! cannot fill with `ENOBUFS`; the loop arms them again once it has given
//! buffers back. Nothing here knows of connections or services.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::uring_ring::Ring;

/// Buffers in the ring (a power of two, as the kernel requires). Only
/// connections with bytes *in flight* hold one, so this bounds how many
/// receives complete per turn, not how many clients are served.
pub(crate) const BUFFERS: u16 = 512;

/// Bytes per buffer: a receive completion carries at most this much (more
/// waiting data simply completes again, in another buffer). Every page of
/// the pool is touched once all buffers have been used, idle clients or
/// not: 2 KiB keeps that at 1 MiB, and 32 KiB echoes cost no more CPU per
/// request than with 4 KiB (two completions per page instead of one).
pub(crate) const BUFFER_SIZE: usize = 2048;

/// The most a connection can have received beyond its output limit: a
/// turn's receives are all delivered before the loop can cancel a receive,
/// and one turn brings at most the whole buffer ring (the readiness loop
/// stops within one read instead).
pub const RECV_POOL_BYTES: usize = BUFFERS as usize * BUFFER_SIZE;

/// The buffer group id the receives name.
pub(crate) const GROUP: u16 = 0;

/// The ring of buffer descriptors (page-aligned, mapped for the kernel)
/// and the buffers themselves, registered with one io_uring.
pub(crate) struct BufRing {
    /// `BUFFERS` entries, `mmap`ed: the kernel wants page alignment.
    entries: *mut BufRingEntry,
    /// The buffers' bytes, `BUFFERS * BUFFER_SIZE`, never moved while registered.
    memory: Box<[u8]>,
    /// Our copy of the tail: entries before it are the kernel's to use.
    tail: u16,
}

impl BufRing {
    /// Maps the ring, registers it as group [`GROUP`] of `ring`, and hands
    /// every buffer to the kernel.
    pub(crate) fn register(ring: &Ring) -> io::Result<BufRing> {
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: entries.cast(),
            memory: vec![0; usize::from(BUFFERS) * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: the entries and the memory live as long as `bufs`, which
        // the loop drops only after the ring (see `Drop` for the order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                BUFFERS,
                GROUP,
                0,
            )?;
        }
        for bid in 0..BUFFERS {
            bufs.recycle(bid);
        }
        Ok(bufs)
    }

    /// The first `len` bytes the kernel put in buffer `bid`.
    pub(crate) fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * BUFFER_SIZE;
        &self.memory[start..start + len.min(BUFFER_SIZE)]
    }

    /// Gives buffer `bid` back to the kernel: it goes at the tail, and the
    /// tail is published with release ordering so the kernel sees the entry
    /// before it sees the tail move.
    pub(crate) fn recycle(&mut self, bid: u16) {
        let mask = BUFFERS - 1;
        let addr = self.memory[usize::from(bid) * BUFFER_SIZE..].as_ptr() as u64;
        // SAFETY: `tail & mask` indexes one of the `BUFFERS` mapped entries;
        // the kernel reads only entries between its head and our tail.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & mask));
            entry.set_addr(addr);
            entry.set_len(BUFFER_SIZE as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: mapped in `register` with this size; the ring that used it
        // was dropped (or unregistered it) before us.
        unsafe { libc::munmap(self.entries.cast(), bytes) };
    }
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufRing({BUFFERS} x {BUFFER_SIZE} B)")
    }
}
