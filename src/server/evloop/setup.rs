//! Setting up one event loop: its poll and waker, the offload pool, the
//! connections to the store, the listeners, the console and the housekeeping. Kept out of `evloop.rs`,
//! which is the lesson of what the loop does once it runs.

use std::io;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::{Poll, Waker};
use slab::Slab;

use super::{CONSOLE, Loop, WAKER};
use crate::server::console::Console;
use crate::server::mail::MailQueue;
use crate::server::offload::Pool;
use crate::server::sources::Sources;
use crate::server::timers::{Housekeeper, Timers};
use crate::server::turn::Scratch;
use crate::server::upstream::Upstreams;
use crate::server::{Listener, Options, Shutdown};
use crate::stats::Stats;

impl Loop {
    /// Loop `index` over `listeners`, registered in a new poll.
    pub(super) fn new(
        index: usize,
        listeners: Vec<Listener>,
        options: &Options,
        stats: Arc<Stats>,
        shutdown: Shutdown,
    ) -> io::Result<Loop> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        shutdown.register(Arc::clone(&waker))?;
        let mail = MailQueue::new(Arc::clone(&waker));
        let pool = match options.offload_workers {
            0 => None,
            workers => Some(Pool::start(workers, waker)?),
        };
        let upstreams = (options.store.as_ref())
            .map(|url| {
                let (count, stats) = (options.store_conns, Arc::clone(&stats));
                Upstreams::start(url, count, poll.registry(), stats, Instant::now())
            })
            .transpose()?;
        let sources = Sources::register(listeners, poll.registry(), options, &stats, index)?;
        let console = (options.console && index == 0)
            .then(|| Console::start(poll.registry(), CONSOLE, &stats, &shutdown))
            .transpose()?;
        Ok(Loop {
            poll,
            conns: Slab::with_capacity(1024),
            sources,
            scratch: Scratch::new(),
            pool,
            upstreams,
            still_ready: Vec::new(),
            timers: Timers::default(),
            housekeeper: (options.housekeeping.clone())
                .filter(|_| index == 0)
                .map(|work| Housekeeper::new(work, Instant::now())),
            to_close: Vec::new(),
            next_generation: 0,
            shutdown_deadline: None,
            options: options.clone(),
            stats,
            console,
            shutdown,
            mail,
            now: Instant::now(),
            wall: SystemTime::now(),
        })
    }
}
