//! The experiment behind the ladder: what does one wake-up cost when N
//! clients are connected but only ONE is talking?
//!
//! For each mechanism (select, poll, epoll) and N idle connections, a server
//! loop in this process watches N idle sockets plus one active one, and a
//! client in a CHILD process (this same binary, `--client`) holds the N idle
//! connections and plays ping-pong on the active one. We measure each wait
//! call (select / poll / epoll_wait) in CPU time (the kernel's work for the
//! call) and wall time (that plus sleeping until the next ping), and the
//! round trip of each echoed message; medians go into a markdown table.
//!
//! Why a child process: the fd limit here is 20,000 per process. With both
//! ends in one process, N = 10,000 would need 20,000+ fds; split, each side
//! needs ~10,000. It also keeps the server's fd numbers low, so select can
//! be measured at N = 1,000 (fds must stay below FD_SETSIZE = 1024). Both
//! sides raise RLIMIT_NOFILE's soft limit to the hard limit first.
//!
//! Run:  `cargo run --release --example scaling`            (under a minute)
//!       `cargo run --release --example scaling -- --svg examples/scaling.svg`
//!       `... -- --rounds 500` for a quicker, noisier run. Each row stops
//!       after `--rounds` round trips (default 2,000) or 4 s, whichever is first.
//!
//! What it shows: select and poll cost O(N) per call (the kernel checks every
//! watched fd, every time), epoll_wait costs O(ready). Wall times below ~1,000
//! fds are noisy (they depend on whether the next ping is already there when
//! the server calls wait, a race on this 2-CPU machine); CPU times are not.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: [usize; 3] = [100, 1_000, 10_000];
const MECHS: [&str; 3] = ["select", "poll", "epoll"];
const MSG: &[u8] = b"ping\n";
/// Each row stops after `--rounds` round trips or this long, whichever is first.
const ROW_BUDGET: Duration = Duration::from_secs(4);

fn main() -> io::Result<()> {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client_side(&args[1], args[2].parse().unwrap(), args[3].parse().unwrap());
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let rounds: usize = flag("--rounds").map_or(2000, |r| r.parse().expect("--rounds N"));

    println!(
        "| mechanism | idle N | wait call, CPU µs | wait call, wall µs | echo round trip µs | rounds |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut points: Vec<(&str, Vec<(usize, f64)>)> = Vec::new();
    for mech in MECHS {
        let mut line = Vec::new();
        for n in STEPS {
            if mech == "select" && n + 16 > libc::FD_SETSIZE {
                println!("| select | {n} | n/a: fds ≥ FD_SETSIZE (1024) | n/a | n/a | 0 |");
                continue;
            }
            let r = measure(mech, n, rounds)?;
            println!(
                "| {mech} | {n} | {:.1} | {:.1} | {:.1} | {} |",
                r.cpu, r.wall, r.rtt, r.done
            );
            line.push((n, r.cpu));
        }
        points.push((mech, line));
    }
    println!(
        "\nUp to {rounds} ping-pong rounds (or {ROW_BUDGET:?}) per row; 1 active + N idle connections."
    );
    if let Some(path) = flag("--svg") {
        std::fs::write(&path, svg(&points))?;
        println!("wrote {path}");
    }
    Ok(())
}

/// Medians in µs, and the number of round trips made.
struct Row {
    wall: f64,
    cpu: f64,
    rtt: f64,
    done: usize,
}

/// One row: starts the client child, accepts its N + 1 connections, runs the
/// `mech` loop until the active connection closes.
fn measure(mech: &str, n: usize, rounds: usize) -> io::Result<Row> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let exe = std::env::current_exe()?;
    let addr = listener.local_addr()?.to_string();
    let mut child = Command::new(exe)
        .args(["--client", &addr, &n.to_string(), &rounds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // The child connects one by one; the last connection is the active one.
    let streams: Vec<TcpStream> = (0..=n)
        .map(|_| listener.accept().map(|(s, _)| s))
        .collect::<Result<_, _>>()?;
    drop(listener);
    streams.last().unwrap().set_nodelay(true)?;
    let waits = match mech {
        "select" => run_select(&streams)?,
        "poll" => run_poll(&streams)?,
        _ => run_epoll(&streams)?,
    };
    let mut report = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut report)?;
    drop(child.stdin.take()); // lets the child exit
    child.wait()?;
    let mut fields = report
        .split_whitespace()
        .map(|f| f.parse::<f64>().expect("median_ns count"));
    let (rtt_ns, done) = (fields.next().unwrap(), fields.next().unwrap() as usize);
    let mut wall: Vec<Duration> = waits.iter().map(|w| w.0).collect();
    let mut cpu: Vec<Duration> = waits.iter().map(|w| w.1).collect();
    Ok(Row {
        wall: median(&mut wall),
        cpu: median(&mut cpu),
        rtt: rtt_ns / 1000.0,
        done,
    })
}

/// Reads one ready message and echoes it. False on end of stream.
fn echo(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(k) => s.write_all(&buf[..k]).is_ok(),
    }
}

fn run_select(streams: &[TcpStream]) -> io::Result<Vec<(Duration, Duration)>> {
    let fds: Vec<RawFd> = streams.iter().map(|s| s.as_raw_fd()).collect();
    let nfds = fds.iter().max().unwrap() + 1;
    assert!((nfds as usize) <= libc::FD_SETSIZE);
    let mut all: libc::fd_set = unsafe { std::mem::zeroed() };
    fds.iter()
        .for_each(|&fd| unsafe { libc::FD_SET(fd, &mut all) });
    let mut waits = Vec::new();
    loop {
        let mut readable = all; // select overwrites its argument
        let t = Clocks::now();
        let null = std::ptr::null_mut();
        let r = unsafe { libc::select(nfds, &mut readable, null, null, std::ptr::null_mut()) };
        waits.push(t.elapsed());
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, &fd) in fds.iter().enumerate() {
            if unsafe { libc::FD_ISSET(fd, &readable) } && !echo(&streams[i]) {
                return Ok(waits);
            }
        }
    }
}

fn run_poll(streams: &[TcpStream]) -> io::Result<Vec<(Duration, Duration)>> {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut waits = Vec::new();
    loop {
        let t = Clocks::now();
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        waits.push(t.elapsed());
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, p) in fds.iter().enumerate() {
            if p.revents != 0 && !echo(&streams[i]) {
                return Ok(waits);
            }
        }
    }
}

fn run_epoll(streams: &[TcpStream]) -> io::Result<Vec<(Duration, Duration)>> {
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (i, s) in streams.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut waits = Vec::new();
    let result = loop {
        let t = Clocks::now();
        let r = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 64, -1) };
        waits.push(t.elapsed());
        if r < 0 {
            break Err(io::Error::last_os_error());
        }
        if events[..r as usize]
            .iter()
            .any(|ev| !echo(&streams[ev.u64 as usize]))
        {
            break Ok(waits);
        }
    };
    unsafe { libc::close(ep) };
    result
}

/// The child: N idle connections, then ping-pong on one more. Prints the
/// median round trip in ns, closes the active connection (the server's
/// signal to stop) and waits for stdin to close before exiting.
fn client_side(addr: &str, n: usize, rounds: usize) -> io::Result<()> {
    let idle: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr))
        .collect::<Result<_, _>>()?;
    let mut active = TcpStream::connect(addr)?;
    active.set_nodelay(true)?;
    let mut buf = [0u8; MSG.len()];
    let mut rtts = Vec::with_capacity(rounds);
    let start = Instant::now();
    while rtts.len() < rounds && (rtts.len() < 100 || start.elapsed() < ROW_BUDGET) {
        let t = Instant::now();
        active.write_all(MSG)?;
        active.read_exact(&mut buf)?;
        rtts.push(t.elapsed());
    }
    println!("{} {}", median(&mut rtts) * 1000.0, rtts.len());
    io::stdout().flush()?;
    drop(active);
    io::stdin().read_to_end(&mut Vec::new())?;
    drop(idle);
    Ok(())
}

/// Wall time and this thread's CPU time. The wall time of a wait call
/// includes sleeping until the client's next ping; the CPU time is only the
/// work the kernel did for the call (set up, scan, tear down): the O(n) part.
struct Clocks(Instant, Duration);

impl Clocks {
    fn now() -> Clocks {
        Clocks(Instant::now(), thread_cpu())
    }
    fn elapsed(&self) -> (Duration, Duration) {
        (self.0.elapsed(), thread_cpu() - self.1)
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median in µs.
fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// Soft RLIMIT_NOFILE up to the hard limit (20,000 on this machine).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A hand-written SVG line chart: x = N, y = CPU µs per wait call, both log scale.
fn svg(lines: &[(&str, Vec<(usize, f64)>)]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 130.0, 30.0, 50.0);
    // Both axes are log scale: the values span 1 to 10,000 µs.
    let vmax = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.1))
        .fold(10.0, f64::max);
    let decades = vmax.log10().ceil() as i32; // y axis: 1 µs .. 10^decades µs
    let x = |n: usize| left + ((n as f64).log10() - 2.0) / 2.0 * (w - left - right);
    let y = |v: f64| h - bottom - v.max(1.0).log10() / decades as f64 * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<text x=\"{left}\" y=\"18\">CPU µs per wait call (median, log scale), 1 active + N idle connections</text>\n"
    );
    for n in STEPS {
        let xn = x(n);
        s += &format!(
            "<line x1=\"{xn}\" y1=\"{top}\" x2=\"{xn}\" y2=\"{}\" stroke=\"#ddd\"/>\n",
            h - bottom
        );
        s += &format!(
            "<text x=\"{xn}\" y=\"{}\" text-anchor=\"middle\">{n}</text>\n",
            h - bottom + 18.0
        );
    }
    for i in 0..=decades {
        let v = 10f64.powi(i);
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/>\n",
            y(v),
            w - right
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.0}</text>\n",
            left - 6.0,
            y(v) + 4.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">idle connections N (log scale)</text>\n",
        (left + w - right) / 2.0,
        h - 12.0
    );
    for (k, ((name, pts), color)) in lines
        .iter()
        .zip(["#d62728", "#1f77b4", "#2ca02c"])
        .enumerate()
    {
        let path: Vec<String> = pts
            .iter()
            .map(|&(n, v)| format!("{:.1},{:.1}", x(n), y(v)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{}\" points=\"{}\"/>\n",
            if k == 1 { "7 4" } else { "none" }, // poll dashed: select runs under it
            path.join(" ")
        );
        for &(n, v) in pts {
            s += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>\n",
                x(n),
                y(v)
            );
        }
        let ly = top + 20.0 + 20.0 * k as f64;
        s += &format!(
            "<line x1=\"{0}\" y1=\"{ly}\" x2=\"{1}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
            w - right + 15.0,
            w - right + 40.0
        );
        s += &format!(
            "<text x=\"{}\" y=\"{}\">{name}</text>\n",
            w - right + 46.0,
            ly + 4.0
        );
    }
    s + "</svg>\n"
}
