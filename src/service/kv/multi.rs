//! Transactions: EXEC runs the queued commands in one store transaction,
//! unless a WATCHed key changed; UNWATCH and the bookkeeping of watches.
//! (MULTI, DISCARD and the queueing are in the connection's `run`.)

use super::conn::{self, Session};
use super::reply::Reply;
use super::resp::Request;
use super::table::{self, Command, Conn, Kind};
use super::{Kv, keyspace_command, session_command};
use crate::store::Tx;

impl Kv {
    /// EXEC: the queue in one transaction, unless a watched key changed.
    pub(super) fn exec(
        &mut self,
        wall: std::time::SystemTime,
        out: &mut Reply<'_>,
    ) -> Option<crate::store::Seq> {
        let Some(multi) = self.multi.take() else {
            out.error("ERR EXEC without MULTI");
            return None;
        };
        if multi.failed {
            self.unwatch();
            out.error("EXECABORT Transaction discarded because of previous errors.");
            return None;
        }
        let (policy, max_bulk) = (self.store.policy(), self.max_bulk);
        let watching = std::mem::take(&mut self.watching);
        let session = &mut self.session;
        let (_, changed) = self.store.tx(wall, |tx| {
            let moved = watching.iter().any(|(key, version)| {
                // An expired watched key counts as changed, as Redis 7.
                let expired = tx
                    .db()
                    .entry(key)
                    .and_then(|e| e.deadline)
                    .is_some_and(|at| at <= tx.now());
                expired || tx.db().version(key) != *version
            });
            for (key, _) in &watching {
                tx.db_watch().unwatch(key);
            }
            if moved {
                return out.null_array();
            }
            out.array(multi.queued.len());
            for (data, words) in &multi.queued {
                let request = Request::new(data, words);
                let command = table::lookup(request.arg(0)).expect("checked when queued");
                run_in_exec(command, tx, session, policy, max_bulk, &request, out);
            }
        });
        changed
    }

    pub(super) fn unwatch(&mut self) {
        if self.watching.is_empty() {
            return;
        }
        let watching = std::mem::take(&mut self.watching);
        self.store.tx(std::time::SystemTime::UNIX_EPOCH, |tx| {
            for (key, _) in &watching {
                tx.db_watch().unwatch(key);
            }
        });
    }
}

/// A queued command inside EXEC: data commands on the shared transaction;
/// connection commands that make sense there (PING, ECHO, ...) too.
pub(super) fn run_in_exec(
    command: &Command,
    tx: &mut Tx<'_>,
    session: &mut Session,
    policy: Option<crate::store::Fsync>,
    max_bulk: usize,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    match command.kind {
        Kind::Data(handler) => handler(tx, req, out),
        Kind::Conn(Conn::Hello) => {
            conn::hello(session, out.resp3, req, out);
        }
        Kind::Conn(which) => {
            if !session_command(which, session, policy, max_bulk, req, out) {
                keyspace_command(which, tx, policy, req, out);
            }
        }
    }
}
