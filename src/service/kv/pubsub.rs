//! Pub/sub for kv: `SUBSCRIBE`, `UNSUBSCRIBE`, `PSUBSCRIBE`, `PUNSUBSCRIBE`,
//! `PUBLISH`, `PUBSUB CHANNELS|NUMSUB|NUMPAT`, and the delivery of a
//! subscriber's mail as Redis sends it: RESP2 arrays, or RESP3 push frames
//! (`>`). Which connections hear a message is the [`Broker`]'s business
//! (see `crate::broker` for the contract); this file only names channels
//! and messages, and writes what its own connection received.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::reply::Reply;
use super::resp::Request;
use crate::broker::{Broker, Delivery, Kind, Mailbox};
use crate::service::Doorbells;

/// One connection's subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Subscriber {
    broker: Arc<Broker>,
    /// Created at the first subscription, with the driver's doorbell.
    mailbox: Option<Arc<Mailbox>>,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
}

impl Subscriber {
    /// Subscriptions made through `broker`, shared by the whole server.
    pub(crate) fn new(broker: Arc<Broker>) -> Subscriber {
        Subscriber {
            broker,
            mailbox: None,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        }
    }

    /// True while subscribed to anything: RESP2 then allows only a few
    /// commands ([`allowed_while_subscribed`]).
    pub(crate) fn active(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    fn count(&self) -> i64 {
        (self.channels.len() + self.patterns.len()) as i64
    }

    /// `SUBSCRIBE` / `PSUBSCRIBE name...`: one confirmation per name.
    pub(crate) fn subscribe(
        &mut self,
        kind: Kind,
        req: &Request<'_>,
        doorbells: Option<&dyn Doorbells>,
        out: &mut Reply<'_>,
    ) {
        let Some(mailbox) = self.mailbox(doorbells) else {
            return out.error("ERR pub/sub is not available on this connection");
        };
        for name in req.args_from(1) {
            self.broker.subscribe(kind, name, &mailbox);
            self.names(kind).insert(name.to_vec());
            confirm(out, kind, true, Some(name), self.count());
        }
    }

    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE [name...]`: no names means all of them.
    pub(crate) fn unsubscribe(&mut self, kind: Kind, req: &Request<'_>, out: &mut Reply<'_>) {
        let names: Vec<Vec<u8>> = match req.len() {
            1 => self.names(kind).iter().cloned().collect(),
            _ => req.args_from(1).map(<[u8]>::to_vec).collect(),
        };
        if names.is_empty() {
            return confirm(out, kind, false, None, self.count());
        }
        for name in names {
            if let Some(mailbox) = &self.mailbox {
                self.broker.unsubscribe(kind, &name, mailbox);
            }
            self.names(kind).remove(&name);
            confirm(out, kind, false, Some(&name), self.count());
        }
    }

    /// `RESET` and the end of the connection: every subscription goes.
    pub(crate) fn reset(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            for name in std::mem::take(&mut self.channels) {
                self.broker.unsubscribe(Kind::Channel, &name, &mailbox);
            }
            for name in std::mem::take(&mut self.patterns) {
                self.broker.unsubscribe(Kind::Pattern, &name, &mailbox);
            }
        }
    }

    /// `PUBLISH channel message`: how many subscribers received it.
    pub(crate) fn publish(&self, req: &Request<'_>, out: &mut Reply<'_>) {
        out.int(self.broker.publish(req.arg(1), req.arg(2)) as i64);
    }

    /// `PUBSUB CHANNELS [pattern]`, `NUMSUB [channel...]`, `NUMPAT`.
    pub(crate) fn pubsub(&self, req: &Request<'_>, out: &mut Reply<'_>) {
        let sub = req.arg(1).to_ascii_lowercase();
        match (sub.as_slice(), req.len()) {
            (b"channels", 2 | 3) => {
                let names = self.broker.channels((req.len() == 3).then(|| req.arg(2)));
                out.array(names.len());
                names.iter().for_each(|name| out.bulk(name));
            }
            (b"numsub", _) => {
                out.array(2 * (req.len() - 2)); // flat, in RESP3 too (as Redis 7)
                for channel in req.args_from(2) {
                    out.bulk(channel);
                    out.int(self.broker.subscribers(channel) as i64);
                }
            }
            (b"numpat", 2) => out.int(self.broker.patterns() as i64),
            (b"channels" | b"numpat", _) => out.error_parts(&[
                b"ERR wrong number of arguments for 'pubsub|",
                &sub,
                b"' command",
            ]),
            _ => out.error_parts(&[
                b"ERR unknown subcommand '",
                &req.arg(1)[..req.arg(1).len().min(128)],
                b"'. Try PUBSUB HELP.",
            ]),
        }
    }

    /// Writes the mail that arrived, unless the client's output is `full`
    /// (then it waits in the mailbox). False when the subscriber fell too
    /// far behind and must be cut off (Redis' pubsub output limit).
    pub(crate) fn deliver(&mut self, full: bool, out: &mut Reply<'_>) -> bool {
        let Some(mailbox) = &self.mailbox else {
            return true;
        };
        if full {
            return !mailbox.overflowed();
        }
        let messages = match mailbox.take() {
            Delivery::Messages(messages) => messages,
            Delivery::Overflowed => return false,
        };
        for message in messages {
            match &message.pattern {
                Some(pattern) => {
                    out.push(4);
                    out.bulk(b"pmessage");
                    out.bulk(pattern);
                }
                None => {
                    out.push(3);
                    out.bulk(b"message");
                }
            }
            out.bulk(&message.channel);
            out.bulk(&message.payload);
        }
        true
    }

    fn mailbox(&mut self, doorbells: Option<&dyn Doorbells>) -> Option<Arc<Mailbox>> {
        if self.mailbox.is_none() {
            self.mailbox = Some(Mailbox::new(doorbells?.doorbell()));
        }
        self.mailbox.clone()
    }

    fn names(&mut self, kind: Kind) -> &mut BTreeSet<Vec<u8>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.reset();
    }
}

/// `[subscribe|unsubscribe|psubscribe|punsubscribe, name, count]`.
fn confirm(out: &mut Reply<'_>, kind: Kind, on: bool, name: Option<&[u8]>, count: i64) {
    let word: &[u8] = match (kind, on) {
        (Kind::Channel, true) => b"subscribe",
        (Kind::Channel, false) => b"unsubscribe",
        (Kind::Pattern, true) => b"psubscribe",
        (Kind::Pattern, false) => b"punsubscribe",
    };
    out.push(3);
    out.bulk(word);
    match name {
        Some(name) => out.bulk(name),
        None => out.null(),
    }
    out.int(count);
}

/// What a RESP2 connection may send while subscribed (Redis' rule).
pub(crate) fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}
