//! A real Redis Cluster for the tests: three masters (`redis-server
//! --cluster-enabled yes`) on free loopback ports, each with its cluster
//! bus on another free port and its files in a temporary directory, joined
//! by `redis-cli --cluster create`. Every process is killed on drop, also
//! when the test fails.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use readyloop::remote::StoreUrl;
use readyloop::remote::cluster::SlotTable;

use crate::kv_util::{Client, Value, free_port};
use crate::redis::tool;
use crate::util::TempDir;

/// How long the cluster may take to say `cluster_state:ok`.
const FORMING: Duration = Duration::from_secs(30);

/// Three masters serving all 16384 slots.
pub struct RedisCluster {
    nodes: Vec<Child>,
    /// The masters' client addresses.
    pub addrs: Vec<SocketAddr>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts three masters and makes them one cluster; fails the test,
    /// naming the package, when redis-server or redis-cli is missing.
    pub fn start() -> RedisCluster {
        let cluster = RedisCluster::launch();
        cluster.join();
        cluster
    }

    /// Three masters listening, not one cluster yet: no slot is served.
    pub fn launch() -> RedisCluster {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            addrs: Vec::new(),
            _dir: TempDir::new("redis-cluster"),
        };
        for _ in 0..3 {
            let (child, addr) = cluster.spawn_node();
            cluster.nodes.push(child);
            cluster.addrs.push(addr);
        }
        cluster
    }

    /// One master on free ports, listening. A port taken between the
    /// probe and redis-server's bind (another test's server, or the bus
    /// port drawn equal to the client port) makes redis-server exit: it is
    /// started again on other ports, a few times.
    fn spawn_node(&self) -> (Child, SocketAddr) {
        let deadline = Instant::now() + FORMING;
        for _attempt in 0..5 {
            let port = free_port();
            let bus = loop {
                let bus = free_port();
                if bus != port {
                    break bus;
                }
            };
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self._dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run redis-server ({e}): this test needs a real Redis \
                         Cluster; install it with `apt-get install redis-server`"
                    )
                });
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            loop {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return (child, addr);
                }
                if child.try_wait().unwrap().is_some() {
                    break; // it could not bind: other ports
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server did not listen on {addr}");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server exited at start five times (ports taken?)");
    }

    /// Makes the masters one cluster (`redis-cli --cluster create`, the
    /// slots split in three) and waits until each says `cluster_state:ok`.
    pub fn join(&self) {
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(self.addrs.iter().map(SocketAddr::to_string));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        let output = tool("redis-cli", &create);
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {output:?}"
        );
        let deadline = Instant::now() + FORMING;
        for &addr in &self.addrs {
            loop {
                let info = self.direct(addr, &["CLUSTER", "INFO"]);
                if text(&info).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not form: {info:?}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis-cluster://` with every master as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.addrs.iter().map(SocketAddr::to_string).collect();
        format!("redis-cluster://{}", seeds.join(","))
    }

    /// One command straight to the node at `addr`, on a connection of its own.
    #[track_caller]
    pub fn direct(&self, addr: SocketAddr, words: &[&str]) -> Value {
        let mut client = Client::connect(addr);
        let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        client.send(&words);
        client.reply().1
    }

    /// `redis-cli -c GET key` against the first master: the value, read
    /// from the node that owns the key by the Redis tools' own routing.
    #[track_caller]
    pub fn cli_get(&self, key: &str) -> String {
        let port = self.addrs[0].port().to_string();
        let output = tool(
            "redis-cli",
            &["-c", "-h", "127.0.0.1", "-p", &port, "GET", key],
        );
        assert!(
            output.status.success(),
            "redis-cli -c GET {key}: {output:?}"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned()
    }

    /// The master (index into [`RedisCluster::addrs`]) that serves
    /// `slot`, by the cluster's own `CLUSTER SLOTS`.
    pub fn owner(&self, slot: u16) -> usize {
        let mut client = Client::connect(self.addrs[0]);
        client.send(&[b"CLUSTER".to_vec(), b"SLOTS".to_vec()]);
        let asked: StoreUrl = format!("redis://{}/0", self.addrs[0]).parse().unwrap();
        let table = SlotTable::parse(&client.reply().0, &asked).unwrap();
        let owner = table.owner(slot).expect("a master serves every slot");
        (self.addrs.iter())
            .position(|addr| addr.port() == owner.port)
            .expect("the owner is one of the masters")
    }

    /// The node id of master `index`.
    pub fn id(&self, index: usize) -> String {
        text(&self.direct(self.addrs[index], &["CLUSTER", "MYID"]))
    }

    /// Kills master `index` (SIGKILL), as a crash would.
    pub fn kill(&mut self, index: usize) {
        let _ = self.nodes[index].kill();
        let _ = self.nodes[index].wait();
    }
}

/// A reply's text: a line's, or a bulk's.
pub fn text(value: &Value) -> String {
    match value {
        Value::Line(_, line) => String::from_utf8_lossy(line).into_owned(),
        Value::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
