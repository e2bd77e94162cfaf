//! The offload pool: slow jobs (disk, CPU) run on worker threads, and their
//! results come back into the event loop through its `mio::Waker`.
//!
//! ```text
//!   loop ── try_submit(Ticket, Job) ──► bounded queue ──► worker: job.run()
//!    ▲                                                        │
//!    └── take_completions() ◄── completions + Waker::wake ◄───┘
//! ```
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]): when it is full, `try_submit`
//! hands the job back and the loop keeps it until a worker frees a place, so
//! nothing is dropped and the connections involved simply wait (they read
//! nothing while their job is pending). A job that panics becomes
//! [`JobOutput::Panicked`]; the worker survives. Dropping the pool lets the
//! workers finish what the queue holds, then joins them.
//!
//! This file knows nothing of connections: a [`Ticket`] is all it carries back.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use mio::Waker;

use crate::service::{Job, JobOutput};

/// Jobs queued for the workers at most; more wait in the loop (back-pressure).
pub(crate) const QUEUE_CAPACITY: usize = 1024;

/// Who asked for a job: the connection's slab key and its generation. The
/// slot may hold another connection by the time the job is done (rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) key: usize,
    pub(crate) generation: u32,
}

type Completions = Arc<Mutex<Vec<(Ticket, JobOutput)>>>;

/// Worker threads, their queue, and the way back.
#[derive(Debug)]
pub(crate) struct Pool {
    queue: Option<SyncSender<(Ticket, Job)>>,
    /// Jobs the full queue could not take yet, oldest first.
    waiting: VecDeque<(Ticket, Job)>,
    completions: Completions,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `workers` threads; each finished job is pushed to the
    /// completions and `waker` is woken.
    pub(crate) fn start(workers: usize, waker: Arc<Waker>) -> std::io::Result<Pool> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        let completions: Completions = Arc::default();
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (jobs, completions, waker) = (
                Arc::clone(&jobs),
                Arc::clone(&completions),
                Arc::clone(&waker),
            );
            let spawned = thread::Builder::new()
                .name(format!("offload-{i}"))
                .spawn(move || work(&jobs, &completions, &waker));
            handles.push(spawned?);
        }
        Ok(Pool {
            queue: Some(queue),
            waiting: VecDeque::new(),
            completions,
            workers: handles,
        })
    }

    /// Queues a job; if the queue is full it waits in the loop, in order.
    pub(crate) fn submit(&mut self, ticket: Ticket, job: Job) {
        self.waiting.push_back((ticket, job));
        self.feed_queue();
    }

    /// Moves waiting jobs into the queue while it has room.
    fn feed_queue(&mut self) {
        let Some(queue) = &self.queue else { return };
        while let Some(item) = self.waiting.pop_front() {
            match queue.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                    self.waiting.push_front(item);
                    return;
                }
            }
        }
    }

    /// Every job finished since the last call. Several wake-ups may arrive
    /// as one event, so the loop always takes the whole list. Taking it also
    /// frees queue places for jobs that were waiting.
    pub(crate) fn take_completions(&mut self) -> Vec<(Ticket, JobOutput)> {
        let done = std::mem::take(&mut *lock(&self.completions));
        if !done.is_empty() {
            self.feed_queue();
        }
        done
    }
}

impl Drop for Pool {
    /// Closes the queue; the workers finish every job in it, then exit.
    fn drop(&mut self) {
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A worker: takes jobs until the queue is closed and empty.
fn work(
    jobs: &Mutex<Receiver<(Ticket, Job)>>,
    completions: &Mutex<Vec<(Ticket, JobOutput)>>,
    waker: &Waker,
) {
    loop {
        let Ok((ticket, job)) = lock(jobs).recv() else {
            return;
        };
        let output = panic::catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a job panicked".to_owned());
            log::error!(
                "conn={}/{}: offloaded job panicked: {message}",
                ticket.key,
                ticket.generation
            );
            JobOutput::Panicked(message)
        });
        lock(completions).push((ticket, output));
        if let Err(e) = waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
    }
}

/// Locks, even if a thread panicked while holding the lock: the protected
/// values (a receiver, a list) are never left half-changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
