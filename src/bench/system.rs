//! What `bench` reads about the machine and about a server process from
//! `/proc` and `libc`: the machine's description for the report, the CPU
//! time and memory of a server's process tree (itself and its children). Linux only; on failure each reader returns
//! `None` and the report leaves the column empty.

use std::fs;

/// The machine a run was measured on, recorded in `results.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Online CPUs (`nproc`).
    pub nproc: usize,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU's `model name` from `/proc/cpuinfo`.
    pub cpu: String,
}

impl Machine {
    /// Describes this machine; unknown parts are `"unknown"`.
    pub fn current() -> Self {
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model(&text))
            .unwrap_or_else(|| UNKNOWN.into());
        Machine {
            nproc,
            kernel: kernel_release().unwrap_or_else(|| UNKNOWN.into()),
            cpu,
        }
    }
}

const UNKNOWN: &str = "unknown";

/// `uname -r`, through `libc::uname`.
fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

/// The first `model name` line of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

/// CPU seconds (user + system) used by process `pid` and its descendants:
/// the process's own time and its reaped children's (`utime` + `stime` +
/// `cutime` + `cstime` from `/proc/PID/stat`, divided by
/// `sysconf(_SC_CLK_TCK)`), plus every live descendant's. A forking server
/// does its work in per-connection children, so its own time alone would
/// read as almost zero.
///
/// A live descendant's time is read in nanoseconds from the
/// `/proc/PID/task/TID/schedstat` of its threads: the kernel rounds each
/// process's `stat` time down to whole ticks (10 ms), and a thousand
/// children that each ran 5 ms in a window would add up to nothing.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let ticks = stat_fields(pid).map(|f| f.ticks + f.child_ticks)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return None;
    }
    let live: f64 = descendants(pid)
        .into_iter()
        .filter_map(|child| {
            run_time_ns(child)
                .map(|ns| ns as f64 / 1e9)
                .or_else(|| stat_fields(child).map(|f| f.ticks as f64 / per_second as f64))
        })
        .sum();
    Some(ticks as f64 / per_second as f64 + live)
}

/// Time on a CPU of every thread of `pid`, in nanoseconds: the first field
/// of each `/proc/PID/task/TID/schedstat`.
fn run_time_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    // A thread may end between listing and reading: skip it.
    let times: Vec<u64> = tasks
        .filter_map(|task| {
            let text = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse().ok()
        })
        .collect();
    (!times.is_empty()).then(|| times.iter().sum())
}

/// What `bench` needs from one `/proc/PID/stat` line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// The parent's pid (field 4).
    ppid: u32,
    /// utime + stime (fields 14, 15), in clock ticks.
    ticks: u64,
    /// cutime + cstime (fields 16, 17): reaped children's time, in ticks.
    child_ticks: u64,
}

fn stat_fields(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name, state is field 3: field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().take(15).collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)?,
        child_ticks: field(16)? + field(17)?,
    })
}

/// Every live descendant of `pid` (children, grandchildren, ...), found by
/// scanning `/proc/*/stat` for parent pids.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_fields(p)?.ppid)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|&&(_, pp)| pp == parent) {
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

/// Memory of process `pid` and its live descendants, in bytes: the sum of
/// their proportional set sizes (`Pss` in `/proc/PID/smaps_rollup`), so a
/// page shared by a forking server and its children counts once; `VmRSS`
/// where `smaps_rollup` cannot be read. For a single process the two grow
/// alike as connections add private memory.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let own = memory_of(pid)?;
    let children: u64 = descendants(pid).into_iter().filter_map(memory_of).sum();
    Some(own + children)
}

fn memory_of(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| kib_field(&text, "Pss:"))
        .or_else(|| {
            kib_field(
                &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
                "VmRSS:",
            )
        })
}

/// A `NAME:   1234 kB` line's value, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line
        .trim_start_matches(name)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 3 2 20 0 1 0";
        let expected = Stat {
            ppid: 1,
            ticks: 12,
            child_ticks: 5,
        };
        assert_eq!(parse_stat(stat), Some(expected));
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t    1234 kB\n", "VmRSS:"),
            Some(1234 * 1024)
        );
        assert_eq!(kib_field("Rss: 8 kB\nPss:  4 kB\n", "Pss:"), Some(4096));
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n").as_deref(),
            Some("Some CPU @ 2GHz")
        );
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        assert!(run_time_ns(me).is_some());
        assert_eq!(
            stat_fields(me).map(|s| s.ppid),
            Some(std::os::unix::process::parent_id())
        );
        assert!(Machine::current().nproc >= 1);
    }
}
