//! The real `readyloop` binary as a user runs it: the port a `:0` listener
//! got is in the log, and startup errors are one line and exit code 2.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

use crate::util::{BinServer, TempDir, connect, expect};

const BIN: &str = env!("CARGO_BIN_EXE_readyloop");

/// Starts `readyloop serve ARGS` and returns it with the addresses of the
/// `listeners` it logs, in order.
fn serve(args: &[&str], listeners: &[&str]) -> (BinServer, Vec<SocketAddr>) {
    let server = BinServer::start(args, listeners);
    let addrs = server.addrs();
    (server, addrs)
}

fn run(args: &[&str]) -> Output {
    let cwd = TempDir::new("binary");
    Command::new(BIN)
        .current_dir(cwd.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn port_zero_logs_the_port_bound_and_listeners_share_one_loop() {
    let (_server, addrs) = serve(&["echo@127.0.0.1:0", "upper@0"], &["echo", "upper"]);
    let mut echo = connect(addrs[0]);
    let mut upper = connect(addrs[1]);
    echo.write_all(b"one loop\n").unwrap();
    upper.write_all(b"two ports\n").unwrap();
    expect(&mut echo, b"one loop\n");
    expect(&mut upper, b"TWO PORTS\n");
}

#[test]
fn a_port_in_use_is_one_clear_line_and_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = run(&["serve", &format!("echo@127.0.0.1:{port}")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use")) && stderr.contains("echo@127.0.0.1:0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Where the kernel refuses io_uring (here a seccomp filter fails
/// `io_uring_setup` with EPERM, as a container's default profile does),
/// `--mode uring` stops at start: one line saying why and what to use
/// instead, exit code 2.
#[test]
fn uring_refused_by_the_kernel_is_one_line_and_exit_2() {
    use std::os::unix::process::CommandExt;
    let cwd = TempDir::new("binary");
    let mut command = Command::new(BIN);
    command
        .current_dir(cwd.path())
        .args(["serve", "--mode", "uring", "echo@127.0.0.1:0"]);
    // SAFETY: between fork and exec the hook only makes two prctl calls.
    unsafe { command.pre_exec(forbid_io_uring) };
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--mode uring: io_uring is not allowed here")
            && stderr.contains("seccomp")
            && stderr.contains("use --mode evloop"),
        "{stderr}"
    );
}

/// Installs a seccomp filter on this process: `io_uring_setup` fails with
/// EPERM, every other system call is allowed.
fn forbid_io_uring() -> std::io::Result<()> {
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        // The system call's number is the first field of `seccomp_data`.
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            jt: 0,
            jf: 1,
            ..statement(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_io_uring_setup as u32,
            )
        },
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `program` outlives the second one.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn unknown_services_and_bad_addresses_exit_2_without_a_backtrace() {
    for (arg, says) in [
        ("ech@0", "unknown service 'ech'"),
        ("echo@nowhere:x", "bad address"),
        ("echo@99999", "bad address"),
    ] {
        let output = run(&["serve", arg]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arg}: {stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{arg}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{arg}: {stderr}");
    }
}

/// Processes whose parent is `pid`, with their state letter (Z: zombie).
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if ppid.parse() == Ok(pid) {
            let child = head.split_whitespace().next().unwrap().parse().unwrap();
            children.push((child, state.chars().next().unwrap()));
        }
    }
    children
}

#[test]
fn forking_mode_serves_each_client_in_a_child_and_leaves_no_zombie() {
    let (server, addrs) = serve(&["--mode", "forking", "upper@127.0.0.1:0"], &["upper"]);
    let pid = server.child.id();
    let mut clients: Vec<_> = (0..5).map(|_| connect(addrs[0])).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("child {i}\n").as_bytes()).unwrap();
        expect(client, format!("CHILD {i}\n").as_bytes());
    }
    assert_eq!(children_of(pid).len(), 5, "one process per client");
    drop(clients);
    // Each child exits when its client leaves; the parent reaps it within a tick.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !children_of(pid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        children_of(pid),
        vec![],
        "children (Z = zombie) left behind"
    );
}

#[test]
fn an_upload_dir_that_cannot_be_created_is_one_clear_line_and_exit_2() {
    let file = crate::util::TempDir::new("not-a-dir");
    let blocker = file.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let dir = blocker.join("uploads"); // under a plain file: cannot exist
    let output = run(&[
        "serve",
        "upload@127.0.0.1:0",
        "--upload-dir",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the upload directory") && stderr.contains("--upload-dir"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn loops_2_serves_from_both_loops() {
    let (_server, addrs) = serve(
        &["--loops", "2", "upper@127.0.0.1:0", "http@127.0.0.1:0"],
        &["upper", "http", "upper", "http"],
    );
    let (upper, http) = (addrs[0], addrs[1]);
    assert_eq!(addrs[2], upper, "loop 1 listens on the same port");
    // SO_REUSEPORT spreads connections by a hash of their addresses: with
    // 40 of them, the chance that one loop gets none is 2^-39.
    for i in 0..40 {
        let mut client = connect(upper);
        client.write_all(format!("c{i}\n").as_bytes()).unwrap();
        expect(&mut client, format!("C{i}\n").as_bytes());
    }
    let mut client = connect(http);
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = String::from_utf8(crate::util::read_to_end(&mut client)).unwrap();
    let samples = crate::util::parse_metrics(response.split_once("\r\n\r\n").unwrap().1);
    let per_loop: Vec<f64> = (0..2)
        .map(|i| {
            crate::util::sample(
                &samples,
                &format!("readyloop_loop_accepted_total{{loop=\"{i}\"}}"),
            )
        })
        .collect();
    assert!(
        per_loop.iter().all(|&n| n > 0.0),
        "connections per loop: {per_loop:?}"
    );
    assert_eq!(per_loop.iter().sum::<f64>(), 41.0);
}

#[test]
fn the_console_answers_stats_conns_and_quit_on_stdin() {
    let cwd = TempDir::new("console");
    let mut child = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["serve", "--console", "on", "upper@127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = stderr
        .lines()
        .map(|line| line.unwrap())
        .find_map(|line| {
            line.split_once(" listening on ")
                .map(|(_, a)| a.trim().parse().unwrap())
        })
        .expect("the server logs its port");
    let mut client = connect(addr);
    client.write_all(b"x\n").unwrap();
    expect(&mut client, b"X\n");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"stats\nconns\nquit\n").unwrap();
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("quitting") {
            break;
        }
    }
    drop(client); // quit waits for connections to finish: let this one go
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {out}");
    assert!(out.contains("stats: active=1 accepted=1"), "{out}");
    assert!(
        out.contains("1 connections\nconn=0/1 peer=127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("quitting"), "{out}");
}

/// SIGTERM, then the whole log once the server says it stopped (lines
/// arrive in order, so every earlier line is in by then).
fn stop_and_read_log(server: &BinServer) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    let start = std::time::Instant::now();
    loop {
        let log = server.log.lock().unwrap().clone();
        if log.contains("] stopped") {
            return log;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "no 'stopped' line:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Client bytes never reach the log raw: a hello line with CR and ESC in
/// it (on a terminal they would wipe the line and forge an ERROR line) is
/// logged escaped at -v. At the default level, requests (hello lines, UDP
/// datagrams) are not logged at all.
#[test]
fn client_bytes_are_logged_escaped_and_requests_only_at_debug() {
    use std::io::BufRead;
    let forged = "x\r\x1b[2K2026-01-01T00:00:00.000Z ERROR [readyloop] forged";
    for (verbose, per_request) in [(true, true), (false, false)] {
        let mut args = vec!["hello@127.0.0.1:0", "udp@127.0.0.1:0"];
        if verbose {
            args.push("-v");
        }
        let server = BinServer::start(&args, &["hello", "udp"]);
        let mut client = connect(server.addr("hello"));
        client.write_all(format!("{forged}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(&mut client).read_line(&mut reply).unwrap();
        assert_eq!(reply, format!("Hello {}\n", forged.to_uppercase()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(crate::util::TIMEOUT)).unwrap();
        udp.send_to(b"dgram\x1b[31m\n", server.addr("udp")).unwrap();
        let mut buf = [0; 64];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"dgram\x1b[31m\n");

        let log = stop_and_read_log(&server);
        assert!(!log.contains(['\x1b', '\r']), "raw client bytes: {log:?}");
        assert_eq!(log.contains("processed: "), per_request, "{log}");
        assert_eq!(log.contains(r"\u{1b}[2K"), per_request, "{log}");
        assert_eq!(log.contains("udp peer="), per_request, "{log}");
    }
}

/// The help texts say what things do, not which seed or Python class they
/// come from (a user of the binary knows neither; the README compares).
#[test]
fn help_texts_name_no_seed_and_no_python_class() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["client", "--help"],
        &["bench", "--help"],
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout).to_lowercase();
        for word in ["seed", "socketserver", "tcpserver", "python", ".py"] {
            assert!(!help.contains(word), "{args:?} mentions {word}:\n{help}");
        }
    }
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).into_owned();
    assert!(
        help.contains("see the reply before the next prompt"),
        "{help}"
    );
}

#[test]
fn max_body_bounds_http_request_bodies() {
    let (_server, addrs) = serve(&["http@127.0.0.1:0", "--max-body", "10"], &["http"]);
    let post = |body: &str| {
        let mut client = connect(addrs[0]);
        let head = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client
            .write_all(format!("{head}{body}").as_bytes())
            .unwrap();
        let mut status = String::new();
        BufReader::new(client).read_line(&mut status).unwrap();
        status
    };
    assert_eq!(post("0123456789"), "HTTP/1.1 405 Method Not Allowed\r\n");
    assert_eq!(post("0123456789a"), "HTTP/1.1 413 Content Too Large\r\n");
}
