//! `readyloop serve`: the start-up sequence, in the one order that works.
//!
//! 1. Validate flags (`--mode uring`: ask the kernel), start logging to
//!    stderr, check that `--log-file` can be opened.
//! 2. Lock the pid file before any port: a second server hears about the
//!    pid file, not about a port in use.
//! 3. Create the upload directory (removing the temporary files a killed
//!    server left there) and, if todo or kv is served, open the store
//!    (lock, replay), so a bad directory or a damaged log is reported on
//!    the terminal. A Redis store (`--store redis://`) is reached instead
//!    (`--store-wait`: until it answers) and given todo's seed tasks.
//! 4. Raise the open-file limit; clamp `--max-conns` to it.
//! 5. Bind every listener. Any failure so far: one line, exit code 2.
//! 6. Detach if `--daemon` (fork: only now, and no thread may exist yet,
//!    since a thread does not survive fork), point stderr at `--log-file`,
//!    write the pid file.
//! 7. Start the threads: the store's flusher (if the store was opened),
//!    the signal handler (in the single event loop, a source in its poll
//!    instead: the process runs one thread until a job needs the pool).
//! 8. Serve until a signal; then flush the store and remove the pid file.
//!    A shutdown whose grace period ran out is [`Stopped::CutOff`].

use std::sync::Arc;

use log::LevelFilter;

use crate::cli::ServeArgs;
use crate::config::{Config, StoreConfig};
use crate::daemon::{self, PidFile};
use crate::error::StartupError;
use crate::logger::{self, LogFile};
use crate::remote::{self, Answer, Redis, Request};
use crate::server::{self, Listener, Options, Shutdown};
use crate::service::{Backend, Shared, Transport, todo};
use crate::stats::Stats;
use crate::store::Store;
use crate::{fdlimit, signals};

/// How a server that started stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished what it had sent (or none was open).
    Clean,
    /// The shutdown's grace period ran out with this many connections
    /// still open; they were closed unfinished (exit code
    /// [`signals::EXIT_CUT_OFF`]).
    CutOff(u64),
}

/// Runs `readyloop serve` to the end.
pub fn run(args: &ServeArgs) -> Result<Stopped, StartupError> {
    let config = Config::from_args(args)?;
    if config.mode == server::Mode::Uring {
        server::uring_available().map_err(StartupError::NoUring)?;
    }
    give_large_buffers_back();
    let level = match (args.quiet, args.trace, args.verbose) {
        (true, _, _) => LevelFilter::Warn,
        (_, true, _) | (_, _, 2..) => LevelFilter::Trace,
        (_, _, 1) => LevelFilter::Debug,
        _ => LevelFilter::Info,
    };
    logger::init(level);
    let log_file = config.log_file.as_deref().map(LogFile::check).transpose()?;
    let mut pidfile = config.pidfile.as_deref().map(PidFile::lock).transpose()?;

    // What some services need ready first (upload: its directory). Each
    // entry once, however many listeners serve it.
    let mut prepared: Vec<&str> = Vec::new();
    for entry in config.listeners.iter().map(|spec| spec.service) {
        if let Some(prepare) = entry.prepare.filter(|_| !prepared.contains(&entry.name)) {
            prepare(&config.limits).map_err(|reason| StartupError::Prepare {
                service: entry.name,
                reason,
            })?;
            prepared.push(entry.name);
        }
    }
    let serves = |name| {
        config
            .listeners
            .iter()
            .any(|spec| spec.service.name == name)
    };
    let uses_store = config.listeners.iter().any(|spec| spec.service.uses_store);
    let backend = match &config.store {
        // Nothing served keeps data: no directory, no lock, no flusher thread.
        StoreConfig::File { .. } if !uses_store => Backend::File(Store::in_memory()),
        StoreConfig::File { dir, fsync } => Backend::File(Store::open_unstarted(dir, *fsync)?),
        StoreConfig::Redis { url, wait } => {
            reach_redis(url, *wait, &config)?;
            remote::blocking::configure(url.clone());
            Backend::Redis(url.clone())
        }
    };
    let file_store = match &backend {
        Backend::File(store) if uses_store => Some(store.clone()),
        Backend::File(_) | Backend::Redis(_) => None,
    };
    let mut options = clamp_to_fd_limit(config.options.clone());
    // Only kv has keys that expire; Redis expires its own.
    options.housekeeping = file_store.as_ref().filter(|_| serves("kv")).map(expiry);
    let stats = Arc::new(Stats::default());
    let shared = Shared {
        backend,
        broker: Default::default(),
        stats: Arc::clone(&stats),
        limits: config.limits.clone(),
    };
    let mut groups = bind(&config, &shared)?;

    daemon::go_live(config.daemon, pidfile.as_mut(), log_file.as_ref())?;
    if let Some(store) = &file_store {
        store.start_flusher()?;
    }
    let shutdown = Shutdown::new();
    let actions = signals::Actions {
        shutdown: shutdown.clone(),
        grace: options.shutdown_grace,
        log_file,
        pidfile: pidfile.as_ref().map(|p| p.path().to_owned()),
    };
    // One event loop reads the signals in its poll; anything else, a thread.
    let mut in_loop = if config.mode == server::Mode::Evloop && groups.len() == 1 {
        Some(signals::SignalSource::new(actions)?)
    } else {
        signals::spawn(actions)?;
        None
    };

    if let Some(every) = config.stats_interval {
        log_stats_every(every, Arc::clone(&stats))?;
    }
    if config.mode != server::Mode::Evloop
        && let Some(work) = options.housekeeping.clone()
    {
        // No event loop to carry it: a thread of its own, like the
        // connections' in these modes.
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || work.run_until(&shutdown))
            .map_err(StartupError::Serve)?;
    }
    let served = if let Some(signals) = &mut in_loop {
        server::run_evloop(
            groups.remove(0),
            &options,
            Arc::clone(&stats),
            shutdown,
            signals,
        )
    } else if groups.len() == 1 {
        server::run(
            groups.remove(0),
            config.mode,
            &options,
            Arc::clone(&stats),
            shutdown,
        )
    } else {
        server::run_loops(groups, &options, Arc::clone(&stats), shutdown)
    };
    // A second SIGTERM during the flush below still exits at once.
    if let Some(signals) = in_loop
        && let Err(e) = signals.watch_on_a_thread()
    {
        log::error!("cannot start the signal thread: {e}; signals are ignored from now on");
    }
    // Every connection is closed: write and fsync what is pending, even if
    // the server stopped on an error.
    let closed = file_store.as_ref().map(Store::close).transpose();
    served?;
    closed?;
    drop(pidfile); // removes it: the server is gone
    // Every driver that gives up on connections at the end of the grace
    // period counts them here (threaded and blocking hit the watchdog).
    match stats.unfinished.load(std::sync::atomic::Ordering::Relaxed) {
        0 => {
            log::info!("stopped");
            Ok(Stopped::Clean)
        }
        cut_off => {
            log::error!(
                "stopped after the grace period ({:?}) with {cut_off} connections unfinished: \
                 what they sent may not have been answered (exit code {})",
                options.shutdown_grace,
                signals::EXIT_CUT_OFF
            );
            Ok(Stopped::CutOff(cut_off))
        }
    }
}

/// The start-up check of a Redis store: connect (with `wait`, until it
/// answers; a cluster must also serve all 16384 slots), then, if `todo` is
/// served, store its seed tasks where they are missing. Blocking, on the
/// main thread, before any listener is bound and before any fork: the
/// connections are dropped here, so no process or thread inherits them
/// (each makes its own, `remote::blocking`).
fn reach_redis(redis: &Redis, wait: bool, config: &Config) -> Result<(), StartupError> {
    let unavailable = |reason: String| StartupError::StoreUnavailable {
        url: redis.to_string(),
        reason,
    };
    let mut reached = match redis {
        Redis::Server(url) => Reached::Server(
            remote::blocking::connect_at_start(url, wait).map_err(|error| {
                unavailable(format!("{error} (start Redis there, or pass --store-wait)"))
            })?,
        ),
        Redis::Cluster(url) => {
            Reached::Cluster(remote::blocking::cluster::reach(url, wait).map_err(unavailable)?)
        }
    };
    log::info!("store {redis} reached");
    if !config
        .listeners
        .iter()
        .any(|spec| spec.service.name == "todo")
    {
        return Ok(());
    }
    for seed in todo::seed_requests() {
        let reply = reached
            .send(&seed)
            .map_err(|error| unavailable(format!("{error} while storing todo's seed tasks")))?;
        // `+OK` (stored) or a null (the key was there): an error (a
        // read-only replica, a full memory) stops the start with its text.
        if reply.starts_with(b"-") {
            let said = reply[1..].trim_ascii_end().escape_ascii().to_string();
            return Err(unavailable(format!("it refused todo's seed tasks: {said}")));
        }
    }
    Ok(())
}

/// The start-up check's own connection to the store.
enum Reached {
    Server(std::net::TcpStream),
    Cluster(remote::blocking::cluster::Client),
}

impl Reached {
    /// Sends one start-up request: its replies.
    fn send(&mut self, request: &Request) -> Result<Vec<u8>, String> {
        match self {
            Reached::Server(stream) => {
                remote::blocking::exchange(stream, request).map_err(|error| error.to_string())
            }
            Reached::Cluster(client) => match client.run(request) {
                Answer::Replies(replies) => Ok(replies),
                Answer::Unavailable => Err("its node could not be reached".into()),
            },
        }
    }
}

/// Logs the counters on one info line every `every`, from a thread of its
/// own (it works the same in every mode; it is never on a request's path).
fn log_stats_every(every: std::time::Duration, stats: Arc<Stats>) -> Result<(), StartupError> {
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                log::info!("{}", stats.summary());
            }
        })
        .map(drop)
        .map_err(StartupError::Serve)
}

/// Large buffers (a reply of a 4 MiB value, a client's queued output) come
/// from `mmap` and go back to the system when freed. glibc raises its mmap
/// threshold after the first such free, so later ones came from the heap,
/// which fragments and is not given back: a burst pinned tens of MiB for
/// good (measured: 45-51 MiB left after a client that read 250 replies of
/// 4 MiB, against 12 MiB before it). Fixing the threshold keeps them mmaps.
fn give_large_buffers_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets an allocator parameter under glibc's own lock;
    // no memory is touched.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// kv's active expiry as the server's housekeeping: every 100 ms (Redis'
/// `hz 10`), up to [`EXPIRED_PER_ROUND`] keys past their deadline a round,
/// again at once while a round finds that many.
fn expiry(store: &Store) -> server::Housekeeping {
    let store = store.clone();
    server::Housekeeping {
        every: std::time::Duration::from_millis(100),
        run: Arc::new(move |now| store.expire_cycle(now, EXPIRED_PER_ROUND) == EXPIRED_PER_ROUND),
    }
}

/// Keys one round of active expiry deletes at most (one log record each).
const EXPIRED_PER_ROUND: usize = 200;

/// Binds every listener before serving anything: a port in use stops the
/// start. With `--loops N`, one group of listeners per loop: each TCP
/// listener is bound N times with `SO_REUSEPORT` (the later ones on the port
/// the first got, for `:0`); UDP sockets go to the first loop only.
fn bind(config: &Config, shared: &Shared) -> Result<Vec<Vec<Listener>>, StartupError> {
    let shared_port = config.loops > 1;
    let mut groups: Vec<Vec<Listener>> = (0..config.loops).map(|_| Vec::new()).collect();
    for spec in &config.listeners {
        let bind_error = |e| StartupError::bind(spec.service.name, spec.addr, e);
        let Transport::Stream(make_factory) = spec.service.transport else {
            let socket = std::net::UdpSocket::bind(spec.addr).map_err(bind_error)?;
            groups[0].push(Listener::Udp { socket });
            continue;
        };
        let factory = make_factory(shared);
        let mut addr = spec.addr;
        for group in &mut groups {
            let socket = if shared_port {
                server::bind_tcp_shared(addr)
            } else {
                server::bind_tcp(addr)
            };
            let socket = socket.map_err(bind_error)?;
            addr = socket.local_addr().map_err(bind_error)?;
            group.push(Listener::Tcp {
                socket,
                factory: Arc::clone(&factory),
            });
        }
    }
    Ok(groups)
}

/// Each connection is a descriptor: take all the system allows, and never
/// promise more connections than descriptors (Redis clamps `maxclients` so).
fn clamp_to_fd_limit(mut options: Options) -> Options {
    match fdlimit::raise_nofile_limit() {
        Ok(limit) => {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(server::FD_RESERVE);
            if options.max_conns > room {
                log::warn!(
                    "--max-conns {} lowered to {room}: the open-file limit is {limit}",
                    options.max_conns
                );
                options.max_conns = room.max(1);
            }
            log::info!(
                "open-file limit {limit}, at most {} connections",
                options.max_conns
            );
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
    options
}
