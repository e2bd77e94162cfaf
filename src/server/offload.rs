//! The offload pool: slow jobs (disk, CPU) run on worker threads, and their
//! results come back into the event loop through whatever wakes it: a
//! `mio::Waker` for the readiness loop, an eventfd read by the io_uring loop
//! ([`Wake`]).
//!
//! ```text
//!   loop ── submit(Ticket, Job) ──► bounded queue ──► worker: job.run()
//!    ▲                                                        │
//!    └── take_completions() ◄── completions + Wake::wake ◄────┘
//! ```
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]): when it is full, `submit`
//! keeps the job in the pool's own waiting line until a worker frees a
//! place, so nothing is dropped and the connections involved simply wait (they read
//! nothing while their job is pending). A job that panics becomes
//! [`JobOutput::Panicked`]; the worker survives. Dropping the pool lets the
//! workers finish what the queue holds, then joins them.
//!
//! The workers start with the first job, not with the pool: a server that
//! never offloads (echo, http) stays one thread. One extra thread costs
//! every socket call: the kernel's `fdget`/`fput` skip their atomic
//! reference count only while the file table has a single user.
//!
//! This file knows nothing of connections: a [`Ticket`] is all it carries back.

use crate::sync::lock;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::service::{Job, JobOutput};

/// Interrupts a loop's wait from another thread (a finished job, a shutdown
/// request). Several wakes may arrive as one: the loop takes everything.
pub(crate) trait Wake: Send + Sync + std::fmt::Debug {
    fn wake(&self) -> std::io::Result<()>;
}

/// The readiness loop's wake-up: an event on the waker's token.
impl Wake for mio::Waker {
    fn wake(&self) -> std::io::Result<()> {
        mio::Waker::wake(self)
    }
}

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
    /// The queue's other end, shared by the workers.
    jobs: Arc<Mutex<Receiver<(Ticket, Job)>>>,
    waker: Arc<dyn Wake>,
    /// How many workers the pool runs once it has a job.
    wanted: usize,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `workers` threads, started by the first job; each finished
    /// job is pushed to the completions and `waker` is woken. Starting
    /// nothing, this cannot fail: a thread that cannot start is the first
    /// job's to report ([`Pool::submit`]).
    pub(crate) fn start(workers: usize, waker: Arc<dyn Wake>) -> std::io::Result<Pool> {
        Ok(Pool::with_capacity(workers, QUEUE_CAPACITY, waker))
    }

    /// [`Pool::start`] with a queue of `capacity` jobs (tests use a tiny one
    /// to see jobs wait in the loop).
    fn with_capacity(workers: usize, capacity: usize, waker: Arc<dyn Wake>) -> Pool {
        let (queue, jobs) = mpsc::sync_channel(capacity);
        Pool {
            queue: Some(queue),
            waiting: VecDeque::new(),
            completions: Arc::default(),
            jobs: Arc::new(Mutex::new(jobs)),
            waker,
            wanted: workers,
            workers: Vec::with_capacity(workers),
        }
    }

    /// Queues a job; if the queue is full it waits in the loop, in order.
    pub(crate) fn submit(&mut self, ticket: Ticket, job: Job) {
        if self.workers.len() < self.wanted {
            self.start_workers();
        }
        if self.workers.is_empty() {
            // No thread could start: run it here rather than lose it, as
            // `--offload 0` does. Its output comes back the usual way.
            let output = run(ticket, job);
            lock(&self.completions).push((ticket, output));
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
            return;
        }
        self.waiting.push_back((ticket, job));
        self.feed_queue();
    }

    /// Starts the workers not running yet. One that cannot start is logged
    /// and tried again with the next job.
    fn start_workers(&mut self) {
        while self.workers.len() < self.wanted {
            let (jobs, completions, waker) = (
                Arc::clone(&self.jobs),
                Arc::clone(&self.completions),
                Arc::clone(&self.waker),
            );
            let spawned = thread::Builder::new()
                .name(format!("offload-{}", self.workers.len()))
                .spawn(move || work(&jobs, &completions, &*waker));
            match spawned {
                Ok(handle) => self.workers.push(handle),
                Err(e) => {
                    log::error!(
                        "cannot start offload worker {} of {}: {e}",
                        self.workers.len(),
                        self.wanted
                    );
                    return;
                }
            }
        }
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
    waker: &dyn Wake,
) {
    loop {
        let Ok((ticket, job)) = lock(jobs).recv() else {
            return;
        };
        let output = run(ticket, job);
        lock(completions).push((ticket, output));
        if let Err(e) = waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
    }
}

/// Runs one job; a panic becomes [`JobOutput::Panicked`].
fn run(ticket: Ticket, job: Job) -> JobOutput {
    panic::catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or_else(|panic| {
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
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mio::{Events, Poll, Token, Waker};

    use super::*;
    use crate::service::slow::{Done, Work};

    const WAKER: Token = Token(0);

    /// A pool whose waker is registered with a real poll, as in the loop.
    fn pool(workers: usize, capacity: usize) -> (Poll, Pool) {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let pool = Pool::with_capacity(workers, capacity, waker);
        (poll, pool)
    }

    fn sleep(ms: u64) -> Job {
        Job::Slow(Work::Sleep(Duration::from_millis(ms)))
    }

    fn slept(ms: u64) -> JobOutput {
        JobOutput::Slow(Done::Slept(Duration::from_millis(ms)))
    }

    /// Does what the loop does: waits for the waker's event and takes the
    /// completions, until `n` have come back. Bounded: 100 waits of at most
    /// 100 ms, far more than the jobs need.
    fn drive(poll: &mut Poll, pool: &mut Pool, n: usize) -> Vec<(Ticket, JobOutput)> {
        let mut events = Events::with_capacity(8);
        let mut done = Vec::new();
        for _ in 0..100 {
            if done.len() >= n {
                break;
            }
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            // Only the waker is registered; several wakes may come as one
            // event, so each event takes the whole list.
            for event in &events {
                assert_eq!(event.token(), WAKER);
                done.extend(pool.take_completions());
            }
        }
        assert_eq!(done.len(), n, "not every job came back: {done:?}");
        done
    }

    #[test]
    fn the_workers_start_with_the_first_job() {
        let (mut poll, mut pool) = pool(3, QUEUE_CAPACITY);
        assert!(pool.workers.is_empty(), "no thread before a job");
        let ticket = Ticket {
            key: 7,
            generation: 1,
        };
        pool.submit(ticket, sleep(1));
        let names: Vec<Option<String>> = (pool.workers.iter())
            .map(|worker| worker.thread().name().map(str::to_owned))
            .collect();
        let expected = ["offload-0", "offload-1", "offload-2"].map(|n| Some(n.to_owned()));
        assert_eq!(names, expected);
        assert_eq!(drive(&mut poll, &mut pool, 1), [(ticket, slept(1))]);
        pool.submit(ticket, sleep(1));
        assert_eq!(pool.workers.len(), 3, "the next job starts none");
        drive(&mut poll, &mut pool, 1);
    }

    #[test]
    fn a_pool_without_workers_runs_the_job_on_the_caller_and_wakes_it() {
        // What `submit` falls back to when no thread can start: here, a
        // pool that wants none.
        let (mut poll, mut pool) = pool(0, QUEUE_CAPACITY);
        let ticket = Ticket {
            key: 3,
            generation: 9,
        };
        pool.submit(ticket, sleep(2));
        assert!(pool.workers.is_empty());
        assert_eq!(drive(&mut poll, &mut pool, 1), [(ticket, slept(2))]);
    }

    #[test]
    fn every_ticket_comes_back_once_through_the_waker() {
        let (mut poll, mut pool) = pool(2, QUEUE_CAPACITY);
        let tickets: Vec<Ticket> = (0..6)
            .map(|key| Ticket {
                key,
                generation: 100 + key as u32,
            })
            .collect();
        for (ms, &ticket) in (0..).zip(&tickets) {
            pool.submit(ticket, sleep(ms));
        }
        let mut done = drive(&mut poll, &mut pool, tickets.len());
        // Two workers: the order of completion is theirs; what must hold is
        // that each ticket comes back once, with its own job's output.
        done.sort_by_key(|(ticket, _)| ticket.key);
        let expected: Vec<(Ticket, JobOutput)> =
            (0..).zip(&tickets).map(|(ms, &t)| (t, slept(ms))).collect();
        assert_eq!(done, expected);
        assert!(pool.take_completions().is_empty());
    }

    #[test]
    fn a_full_queue_keeps_jobs_waiting_in_the_loop_in_order() {
        // One worker, a queue of one: of four jobs, the worker may hold one
        // and the queue one; the others wait in the pool, not dropped.
        let (mut poll, mut pool) = pool(1, 1);
        for key in 0..4 {
            pool.submit(Ticket { key, generation: 1 }, sleep(20));
        }
        assert!(pool.waiting.len() >= 2, "{} waiting", pool.waiting.len());
        // Taking completions frees places and feeds the waiting jobs in.
        let done = drive(&mut poll, &mut pool, 4);
        let keys: Vec<usize> = done.iter().map(|(ticket, _)| ticket.key).collect();
        assert_eq!(keys, [0, 1, 2, 3], "one worker answers in submit order");
        assert!(done.iter().all(|(_, output)| *output == slept(20)));
        assert!(pool.waiting.is_empty());
    }

    #[test]
    fn a_job_that_panics_comes_back_as_panicked_and_the_worker_goes_on() {
        let (mut poll, mut pool) = pool(1, QUEUE_CAPACITY);
        let ticket = |key| Ticket { key, generation: 1 };
        pool.submit(ticket(0), Job::Panic);
        pool.submit(ticket(1), sleep(1));
        let done = drive(&mut poll, &mut pool, 2);
        assert_eq!(
            done[0],
            (
                ticket(0),
                JobOutput::Panicked("a test job panicked on purpose".into())
            )
        );
        // The same (only) worker ran the next job: it survived the panic.
        assert_eq!(done[1], (ticket(1), slept(1)));
    }
}
