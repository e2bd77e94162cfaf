use super::*;

fn node(port: u16) -> StoreUrl {
    StoreUrl {
        host: "127.0.0.1".into(),
        port,
        db: 0,
    }
}

#[test]
fn slots_are_crc16_of_the_key_or_its_hash_tag() {
    // The check value of CRC16/XMODEM, and CLUSTER KEYSLOT's examples in
    // the Redis documentation (the integration test asks a real cluster).
    assert_eq!(crc16(b"123456789"), 0x31C3);
    assert_eq!(slot(b"somekey"), 11058);
    assert_eq!(slot(b"foo{hash_tag}"), 2515);
    assert_eq!(slot(b"bar{hash_tag}"), 2515);
    assert_eq!(slot(b"hash_tag"), 2515);
    // Only the first '{' and the first '}' after it count; an empty tag
    // means the whole key is hashed.
    assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
    assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
    assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
    assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    assert_eq!(slot(b"{no-close"), crc16(b"{no-close") % 16384);
    assert_eq!(slot(b""), 0);
}

/// A reply as Redis 7 sends it: ranges, each with its master and replicas.
fn three_masters() -> Vec<u8> {
    let mut reply = b"*3\r\n".to_vec();
    for (first, last, port) in [(0, 5460, 7000), (5461, 10922, 7001), (10923, 16383, 7002)] {
        let id = format!("{port:040}");
        reply.extend_from_slice(
            format!(
                "*4\r\n:{first}\r\n:{last}\r\n*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{id}\r\n*0\r\n\
                 *3\r\n$9\r\n127.0.0.1\r\n:{}\r\n$40\r\n{id}\r\n",
                port + 100
            )
            .as_bytes(),
        );
    }
    reply
}

#[test]
fn cluster_slots_give_each_slot_its_master() {
    let table = SlotTable::parse(&three_masters(), &node(7000)).unwrap();
    assert_eq!(table.nodes(), &[node(7000), node(7001), node(7002)]);
    assert_eq!(table.owner(0), Some(&node(7000)));
    assert_eq!(table.owner(5460), Some(&node(7000)));
    assert_eq!(table.owner(5461), Some(&node(7001)));
    assert_eq!(table.owner(16383), Some(&node(7002)));
    assert_eq!(table.uncovered(), vec![]);
}

#[test]
fn gaps_and_an_empty_host_are_read_as_they_are() {
    // 0-99 on the node asked (empty host), 200-16383 elsewhere: 100-199
    // are served by nobody.
    let reply = b"*2\r\n*3\r\n:0\r\n:99\r\n*2\r\n$0\r\n\r\n:7005\r\n\
                  *3\r\n:200\r\n:16383\r\n*2\r\n$8\r\n10.0.0.9\r\n:7006\r\n";
    let asked = StoreUrl {
        host: "redis-a".into(),
        port: 7005,
        db: 0,
    };
    let mut table = SlotTable::parse(reply, &asked).unwrap();
    assert_eq!(table.owner(5), Some(&asked));
    assert_eq!(table.owner(150), None);
    assert_eq!(table.owner(200).unwrap().authority(), "10.0.0.9:7006");
    assert_eq!(table.uncovered(), vec![(100, 199)]);
    table.moved(150, node(7007));
    assert_eq!(table.owner(150), Some(&node(7007)));
    assert_eq!(table.uncovered(), vec![(100, 149), (151, 199)]);
    assert_eq!(
        SlotTable::parse(b"*0\r\n", &asked).unwrap().uncovered(),
        vec![(0, 16383)]
    );
}

#[test]
fn bad_cluster_slots_replies_are_errors() {
    let asked = node(1);
    for (reply, says) in [
        (
            &b"-ERR This instance has cluster support disabled\r\n"[..],
            "cluster support disabled",
        ),
        (b"+OK\r\n", "not an array"),
        (b"*1\r\n:1\r\n", "entry is not an array"),
        (b"*1\r\n*2\r\n:0\r\n:1\r\n", "lacks its range or its master"),
        (
            b"*1\r\n*3\r\n:9\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            "out of 0-16383",
        ),
        (
            b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
            "out of",
        ),
        (
            b"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",
            "on port 0",
        ),
        (
            b"*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n",
            "lacks its host",
        ),
        (b"*2\r\n*3\r\n:0\r\n", "cut short"),
        (
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            "too deep",
        ),
        (b"*1\r\n!x\r\n", "unexpected type byte"),
    ] {
        let error = SlotTable::parse(reply, &asked).unwrap_err();
        assert!(error.contains(says), "{}: {error}", reply.escape_ascii());
    }
}

#[test]
fn moved_and_ask_are_read_from_any_reply_of_a_request() {
    let asked = node(7000);
    assert_eq!(
        redirect(b"-MOVED 3999 127.0.0.1:7002\r\n", 1, &asked),
        Some(Redirect::Moved {
            slot: 3999,
            node: node(7002)
        })
    );
    assert_eq!(
        redirect(b"%1\r\n+k\r\n:1\r\n-ASK 12 :7001\r\n+OK\r\n", 3, &asked),
        Some(Redirect::Ask {
            slot: 12,
            node: node(7001)
        })
    );
    let v6 = redirect(b"-MOVED 1 ::1:7003\r\n", 1, &asked).unwrap();
    assert_eq!(
        v6,
        Redirect::Moved {
            slot: 1,
            node: StoreUrl {
                host: "::1".into(),
                port: 7003,
                db: 0
            }
        }
    );
    for not_one in [
        &b"-ERR MOVED 1 h:1\r\n"[..],
        b"-MOVED 16384 h:1\r\n",
        b"-MOVED 1 h\r\n",
        b"-MOVED 1 h:0\r\n",
        b"-MOVED 1 h:1 more\r\n",
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
        b"$11\r\n-MOVED 1 h:1\r\n",
        b"-MOVED 1 h:1",
    ] {
        assert_eq!(
            redirect(not_one, 1, &asked),
            None,
            "{}",
            not_one.escape_ascii()
        );
    }
}

#[test]
fn cluster_nodes_lists_the_masters_with_slots_or_none() {
    let text = "07c37dfeb2 127.0.0.1:30004@31004,host4 slave e7d1eecce1 0 1426238317239 4 connected\n\
                67ed2db8d6 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n\
                e7d1eecce1 :30001@31001 myself,master - 0 0 1 connected 0-5460\n\
                a1b2c3d4e5 10.0.0.7:30009@31009 master - 0 0 9 connected\n";
    let reply = format!("${}\r\n{text}\r\n", text.len());
    let asked = node(30001);
    let listed = masters(reply.as_bytes(), &asked).unwrap();
    let found: Vec<String> = listed.iter().map(StoreUrl::authority).collect();
    assert_eq!(
        found,
        ["127.0.0.1:30002", "127.0.0.1:30001", "10.0.0.7:30009"]
    );
    assert!(masters(b"-ERR cluster support disabled\r\n", &asked).is_err());
    assert!(masters(b"$5\r\nx y\nz\r\n", &asked).is_err());
}
