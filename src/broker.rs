//! Pub/sub: which connections listen to which channels, and the delivery of
//! a message to them. The first place where one connection's request writes
//! to others.
//!
//! The contract, beside the driver contract of [`crate::service::Service`]:
//! a service never writes to another connection. It names a channel and a
//! message ([`Broker::publish`]), and the broker puts the message into each
//! subscriber's [`Mailbox`] and rings that mailbox's [`Doorbell`]. The
//! doorbell belongs to the driver that owns the subscriber's socket (the
//! event loop queues the connection and wakes its `poll`; a blocking driver
//! looks at its mailbox between reads), which then asks the subscriber's
//! service to write its mail ([`crate::service::Dialogue::deliver`]), under
//! that connection's own output limit.
//!
//! A subscriber that does not read is bounded: its mailbox holds at most
//! [`MAILBOX_LIMIT`] bytes (Redis' `client-output-buffer-limit pubsub`
//! hard limit); past it the mailbox is marked overflowed, takes nothing
//! more, and its connection is closed at its next delivery.
//!
//! The broker is shared by every loop and thread of one process (it is an
//! `Arc`, like the store). The forking mode's children are processes of
//! their own: there, as with the store, a message reaches only subscribers
//! in the same process. No I/O and no clock here.

use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

/// Bytes of undelivered messages a mailbox holds before its subscriber is
/// cut off: 32 MiB, Redis' `client-output-buffer-limit pubsub` hard limit.
pub const MAILBOX_LIMIT: usize = 32 * 1024 * 1024;

/// How a driver learns that a connection has mail. Rung once each time a
/// mailbox goes from empty to not empty.
pub trait Doorbell: Send + Sync {
    /// Mail has arrived for the connection this doorbell belongs to.
    fn ring(&self);
}

/// One published message, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published to.
    pub channel: Arc<[u8]>,
    /// The pattern the subscriber matched it with (`PSUBSCRIBE`), if any.
    pub pattern: Option<Arc<[u8]>>,
    /// What was published.
    pub payload: Arc<[u8]>,
}

/// A subscriber's undelivered messages.
pub struct Mailbox {
    mail: Mutex<Mail>,
    doorbell: Box<dyn Doorbell>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Mail {
    messages: VecDeque<Message>,
    bytes: usize,
    overflowed: bool,
}

/// What a subscriber's service gets from [`Mailbox::take`].
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// These messages, in the order they were published.
    Messages(Vec<Message>),
    /// The subscriber fell more than the limit behind: close it.
    Overflowed,
}

impl Mailbox {
    /// An empty mailbox that rings `doorbell` when mail arrives.
    pub fn new(doorbell: Box<dyn Doorbell>) -> Arc<Mailbox> {
        Mailbox::with_limit(doorbell, MAILBOX_LIMIT)
    }

    /// The same, cutting the subscriber off past `limit` bytes.
    pub fn with_limit(doorbell: Box<dyn Doorbell>, limit: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            mail: Mutex::new(Mail::default()),
            doorbell,
            limit,
        })
    }

    /// True once the subscriber fell past the limit: it is to be cut off.
    pub fn overflowed(&self) -> bool {
        lock(&self.mail).overflowed
    }

    /// Everything waiting, for the service to write out.
    pub fn take(&self) -> Delivery {
        let mut mail = lock(&self.mail);
        if mail.overflowed {
            return Delivery::Overflowed;
        }
        mail.bytes = 0;
        Delivery::Messages(mail.messages.drain(..).collect())
    }

    /// Puts `message` in; false if the mailbox had overflowed (or does now).
    fn put(&self, message: Message) -> bool {
        let mut mail = lock(&self.mail);
        if mail.overflowed {
            return false;
        }
        let size = message.channel.len() + message.payload.len() + 64;
        if mail.bytes + size > self.limit {
            log::warn!(
                "a subscriber fell {} bytes behind: cutting it off",
                mail.bytes
            );
            mail.overflowed = true;
            mail.messages.clear();
            drop(mail);
            self.doorbell.ring(); // so its driver closes it now
            return false;
        }
        let was_empty = mail.messages.is_empty();
        mail.bytes += size;
        mail.messages.push_back(message);
        drop(mail);
        if was_empty {
            self.doorbell.ring();
        }
        true
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("mail", &*lock(&self.mail))
            .finish()
    }
}

/// Who listens to what. One per process, shared by `Arc`.
#[derive(Debug, Default)]
pub struct Broker {
    subscriptions: Mutex<Subscriptions>,
}

#[derive(Debug, Default)]
struct Subscriptions {
    channels: HashMap<Arc<[u8]>, Vec<Weak<Mailbox>>>,
    patterns: HashMap<Arc<[u8]>, Vec<Weak<Mailbox>>>,
}

/// Whether a subscription is to a channel or to a glob-style pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SUBSCRIBE`: one channel by name.
    Channel,
    /// `PSUBSCRIBE`: every channel matching a pattern (`news.*`).
    Pattern,
}

impl Broker {
    /// A broker with no subscriptions.
    pub fn new() -> Arc<Broker> {
        Arc::new(Broker::default())
    }

    /// `mailbox` now receives what is published to `name`. Subscribing twice
    /// changes nothing.
    pub fn subscribe(&self, kind: Kind, name: &[u8], mailbox: &Arc<Mailbox>) {
        let mut subscriptions = lock(&self.subscriptions);
        let list = subscriptions
            .table(kind)
            .entry(Arc::from(name))
            .or_default();
        list.retain(|weak| weak.strong_count() > 0);
        if !list
            .iter()
            .any(|weak| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(mailbox)))
        {
            list.push(Arc::downgrade(mailbox));
        }
    }

    /// `mailbox` no longer receives what is published to `name`.
    pub fn unsubscribe(&self, kind: Kind, name: &[u8], mailbox: &Arc<Mailbox>) {
        let mut subscriptions = lock(&self.subscriptions);
        let table = subscriptions.table(kind);
        if let Some(list) = table.get_mut(name) {
            list.retain(|weak| {
                weak.strong_count() > 0 && !std::ptr::eq(weak.as_ptr(), Arc::as_ptr(mailbox))
            });
            if list.is_empty() {
                table.remove(name);
            }
        }
    }

    /// Delivers `payload` to every subscriber of `channel` (by name and by
    /// pattern). Returns how many mailboxes took it, as `PUBLISH` answers.
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        let (channel, payload): (Arc<[u8]>, Arc<[u8]>) = (Arc::from(channel), Arc::from(payload));
        let mut receivers = Vec::new();
        {
            let subscriptions = lock(&self.subscriptions);
            if let Some(list) = subscriptions.channels.get(&channel) {
                receivers.extend(list.iter().filter_map(Weak::upgrade).map(|m| (m, None)));
            }
            for (pattern, list) in &subscriptions.patterns {
                if glob_match(pattern, &channel) {
                    let found = list.iter().filter_map(Weak::upgrade);
                    receivers.extend(found.map(|m| (m, Some(Arc::clone(pattern)))));
                }
            }
        }
        // Mailboxes are filled outside the broker's lock: a doorbell may take
        // a lock of its own (the event loop's queue of connections with mail).
        let message = |pattern| Message {
            channel: Arc::clone(&channel),
            pattern,
            payload: Arc::clone(&payload),
        };
        receivers
            .into_iter()
            .filter(|(mailbox, pattern)| mailbox.put(message(pattern.clone())))
            .count()
    }

    /// Channels with at least one subscriber, matching `pattern` if given
    /// (`PUBSUB CHANNELS`).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Arc<[u8]>> {
        let subscriptions = lock(&self.subscriptions);
        let live = |list: &Vec<Weak<Mailbox>>| list.iter().any(|weak| weak.strong_count() > 0);
        let mut names: Vec<Arc<[u8]>> = subscriptions
            .channels
            .iter()
            .filter(|(name, list)| live(list) && pattern.is_none_or(|p| glob_match(p, name)))
            .map(|(name, _)| Arc::clone(name))
            .collect();
        names.sort();
        names
    }

    /// Subscribers of each channel by name (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        let subscriptions = lock(&self.subscriptions);
        let list = subscriptions.channels.get(channel);
        list.map_or(0, |list| {
            list.iter().filter(|weak| weak.strong_count() > 0).count()
        })
    }

    /// Patterns with at least one subscriber (`PUBSUB NUMPAT`).
    pub fn patterns(&self) -> usize {
        let subscriptions = lock(&self.subscriptions);
        let live = |list: &Vec<Weak<Mailbox>>| list.iter().any(|weak| weak.strong_count() > 0);
        subscriptions
            .patterns
            .values()
            .filter(|list| live(list))
            .count()
    }
}

impl Subscriptions {
    fn table(&mut self, kind: Kind) -> &mut HashMap<Arc<[u8]>, Vec<Weak<Mailbox>>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
        }
    }
}

/// Redis' glob: `*` any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]`, `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class(pattern, p, text[t]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((star_p, star_t))) => {
                // Let the last `*` take one more byte and try again from there.
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class starting at `pattern[start] == b'['`;
/// returns the index after the class on a match.
fn class(pattern: &[u8], start: usize, byte: u8) -> Option<usize> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == byte;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (low, high) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (low..=high).contains(&byte);
            i += 3;
        } else {
            matched |= pattern[i] == byte;
            i += 1;
        }
    }
    // An unclosed `[` matches like Redis: up to the end of the pattern.
    let end = (i + 1).min(pattern.len());
    (matched != negate).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter(Arc<AtomicUsize>);
    impl Doorbell for Counter {
        fn ring(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn mailbox(limit: usize) -> (Arc<Mailbox>, Arc<AtomicUsize>) {
        let rings = Arc::new(AtomicUsize::new(0));
        (
            Mailbox::with_limit(Box::new(Counter(Arc::clone(&rings))), limit),
            rings,
        )
    }

    fn payloads(delivery: Delivery) -> Vec<Vec<u8>> {
        let Delivery::Messages(messages) = delivery else {
            panic!("{delivery:?}")
        };
        messages.iter().map(|m| m.payload.to_vec()).collect()
    }

    #[test]
    fn publish_reaches_channel_and_pattern_subscribers_and_counts_them() {
        let broker = Broker::new();
        let (a, a_rings) = mailbox(1 << 20);
        let (b, _) = mailbox(1 << 20);
        broker.subscribe(Kind::Channel, b"news", &a);
        broker.subscribe(Kind::Channel, b"news", &a); // twice is once
        broker.subscribe(Kind::Pattern, b"ne*", &b);
        assert_eq!(broker.publish(b"news", b"1"), 2);
        assert_eq!(broker.publish(b"news", b"2"), 2);
        assert_eq!(broker.publish(b"sport", b"x"), 0);
        assert_eq!(
            a_rings.load(Ordering::SeqCst),
            1,
            "rung when it went non-empty"
        );
        assert_eq!(payloads(a.take()), [b"1".to_vec(), b"2".to_vec()]);
        let Delivery::Messages(b_mail) = b.take() else {
            panic!()
        };
        assert_eq!(b_mail[0].pattern.as_deref(), Some(&b"ne*"[..]));
        assert_eq!(broker.channels(None), [Arc::<[u8]>::from(&b"news"[..])]);
        assert_eq!((broker.subscribers(b"news"), broker.patterns()), (1, 1));
        broker.unsubscribe(Kind::Channel, b"news", &a);
        assert_eq!(broker.publish(b"news", b"3"), 1);
    }

    #[test]
    fn a_dropped_subscriber_receives_nothing_and_is_not_counted() {
        let broker = Broker::new();
        let (a, _) = mailbox(1 << 20);
        broker.subscribe(Kind::Channel, b"c", &a);
        drop(a); // its connection closed
        assert_eq!(broker.publish(b"c", b"m"), 0);
        assert!(broker.channels(None).is_empty());
    }

    #[test]
    fn a_subscriber_that_falls_behind_the_limit_is_cut_off() {
        let broker = Broker::new();
        let (a, rings) = mailbox(1000);
        broker.subscribe(Kind::Channel, b"c", &a);
        let mut taken = 0;
        while broker.publish(b"c", &[b'x'; 100]) == 1 {
            taken += 1;
        }
        assert!(taken < 10, "bounded: {taken}");
        assert_eq!(a.take(), Delivery::Overflowed);
        assert_eq!(
            rings.load(Ordering::SeqCst),
            2,
            "rung for the mail and for the cut-off"
        );
    }

    #[test]
    fn globs_match_as_redis_does() {
        for (pattern, text, expected) in [
            (&b"*"[..], &b"anything"[..], true),
            (b"news.*", b"news.sport", true),
            (b"news.*", b"new", false),
            (b"h?llo", b"hello", true),
            (b"h[ae]llo", b"hallo", true),
            (b"h[^e]llo", b"hello", false),
            (b"h[a-c]llo", b"hbllo", true),
            (b"a\\*b", b"a*b", true),
            (b"a\\*b", b"axb", false),
            (b"*a*b*", b"xxaxxbxx", true),
            (b"*a*b", b"xxaxxbx", false),
            (b"", b"", true),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern:?} {text:?}");
        }
    }
}
