//! Integration tests over real loopback sockets. One test binary (as ripgrep
//! does); each module covers one concern, and most cases are stamped once per
//! server mode by `util::per_mode!` (`cargo test forking` runs the forking ones).

mod util;

mod bad_input; // error replies, and the server keeps serving
mod binary; // the real `readyloop` binary: ports, errors, exit codes
mod cluster; // benches/cluster.sh: hosts in network namespaces behind HAProxy, one host killed (root, --ignored)
mod daemon; // signals, pid file, log file, --daemon: the binary as a service
mod dialogues; // every service's dialogue, every mode, every split
mod durability; // the store's log: kill -9, torn tails, corruption
mod hostile; // attacks on the real binary: memory, slowloris, busy, a huge request
mod http_clients; // http with curl, headless Chromium and smuggling attempts, every mode
mod kv_big_request; // a 1M-argument request and a bystander on one loop
mod kv_differential; // kv and redis-server, the same random commands, the same replies
mod kv_expiry; // active expiry: keys past their deadline go unread
mod kv_pubsub; // pub/sub across connections, loops and modes; a subscriber that never reads
mod kv_recovery; // replay after damage: linear time, advice that keeps data
mod kv_redis_py; // redis-py with its defaults (RESP3) and protocol=2, every mode
mod kv_util; // a redis-server child, a RESP reply reader
mod limits; // idle timeout, max conns, /metrics
mod load; // big messages, many clients, back-pressure
mod offload; // the single-threaded loops' pool: no head-of-line blocking, stale completions, many jobs
mod one_thread; // the single event loop runs one thread until a job needs the pool
mod redis; // kv with redis-cli and redis-benchmark
mod redis_cluster; // a real three-master Redis Cluster, killed on drop
mod remote_cluster; // --store redis-cluster://: keys over three masters, a slot moved, a master killed
mod remote_store; // --store redis://: todo and kv in Redis, every mode; faults; the tools through the proxy
mod seed_python; // the seeds' Python clients, run by python3 against the binary
mod seeds; // the seeds' clients under --framing read, and the one line limit
mod slow; // offloaded sleeps and hashes, every mode
mod store_upstream; // the event loop pipelines many clients onto its connections to a real Redis
mod terminal; // `readyloop client` in tmux; stdout into a closed pipe
mod udp_loop; // forged datagrams (issue 10): no echo loop, CPU idle, clients still answered
mod uploads; // files stored byte-exact and durably, refusals, clients that leave
