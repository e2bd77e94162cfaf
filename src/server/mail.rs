//! The event loop's doorbells for pub/sub ([`crate::broker`]): a doorbell
//! rung on any thread queues its connection as (slab key, generation) and
//! wakes the loop (its `mio::Waker`, or the io_uring loop's eventfd); the
//! loop then asks each queued
//! connection to deliver. The generation keeps mail for a closed connection
//! from reaching the next one in its slot (rule 7).

use std::sync::{Arc, Mutex};

use super::offload::Wake;
use crate::broker::Doorbell;
use crate::service::Doorbells;

/// The connections of one loop that have mail.
#[derive(Debug)]
pub(crate) struct MailQueue {
    ready: Mutex<Vec<(usize, u32)>>,
    waker: Arc<dyn Wake>,
}

impl MailQueue {
    pub(crate) fn new(waker: Arc<impl Wake + 'static>) -> Arc<MailQueue> {
        Arc::new(MailQueue {
            ready: Mutex::new(Vec::new()),
            waker,
        })
    }

    /// The connections rung since the last call, in the order they rang.
    pub(crate) fn take(&self) -> Vec<(usize, u32)> {
        std::mem::take(&mut *crate::sync::lock(&self.ready))
    }
}

/// Lent to a service through `Cx::doorbells` while connection `key` is served.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    pub(crate) queue: &'a Arc<MailQueue>,
    pub(crate) key: usize,
    pub(crate) generation: u32,
}

impl Doorbells for Slot<'_> {
    fn doorbell(&self) -> Box<dyn Doorbell> {
        Box::new(LoopDoorbell {
            queue: Arc::clone(self.queue),
            key: self.key,
            generation: self.generation,
        })
    }
}

struct LoopDoorbell {
    queue: Arc<MailQueue>,
    key: usize,
    generation: u32,
}

impl Doorbell for LoopDoorbell {
    fn ring(&self) {
        let mut ready = crate::sync::lock(&self.queue.ready);
        let first = ready.is_empty();
        ready.push((self.key, self.generation));
        drop(ready);
        if first && let Err(e) = self.queue.waker.wake() {
            log::error!("cannot wake the event loop for pub/sub mail: {e}");
        }
    }
}
