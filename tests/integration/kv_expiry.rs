//! kv's active expiry against the real binary: keys past their deadline
//! go without anyone reading them (Redis' active expire cycle), driven by
//! the event loop's own timer, or by a housekeeping thread in the modes
//! without one.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::util::{BinServer, ModeCase, connect, per_mode};

// Blocking serves one client at a time and forking's children each have
// their own copy of the store, so one client's DBSIZE after another's SETs
// is about the event loop and threads.
per_mode!(
    keys_expire_without_being_read,
    [evloop, threaded, threaded_pool, uring],
    |mode: &ModeCase| {
        let dir = crate::util::TempDir::new("kv-expiry");
        let data = dir.path().to_str().unwrap().to_owned();
        let mut args = vec!["kv@127.0.0.1:0", "--data-dir", &data];
        args.extend_from_slice(mode.flags);
        let server = BinServer::start(&args, &["kv"]);
        let mut client = connect(server.addr("kv"));
        // 1,000 keys that expire in 200 ms (more than one round's 200), and
        // one that does not.
        let mut batch = Vec::new();
        for i in 0..1000 {
            batch.extend_from_slice(format!("SET short{i} v PX 200\r\n").as_bytes());
        }
        batch.extend_from_slice(b"SET long v\r\n");
        client.write_all(&batch).unwrap();
        let mut acks = vec![0u8; 1001 * 5];
        client.read_exact(&mut acks).unwrap();
        assert!(acks.chunks(5).all(|ack| ack == b"+OK\r\n"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            client.write_all(b"DBSIZE\r\n").unwrap();
            let mut reply = [0u8; 64];
            let n = client.read(&mut reply).unwrap();
            if &reply[..n] == b":1\r\n" {
                break; // only `long` is left, and nobody read the others
            }
            assert!(
                Instant::now() < deadline,
                "still {:?} keys after 5 s",
                String::from_utf8_lossy(&reply[..n])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
);
