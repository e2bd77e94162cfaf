//! Raise the open-file limit (`RLIMIT_NOFILE`) as far as the process may.
//!
//! Every TCP connection is a file descriptor, and the default soft limit on
//! many systems is 1,024: a server or a load generator that wants 10,000
//! sockets must first lift its soft limit up to the hard one (which only root
//! can raise further). Both the server and `bench` call this once at start.
//! It changes nothing else and never lowers a limit.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force.
///
/// When the hard limit is unlimited (`RLIM_INFINITY`), the soft limit is
/// raised to [`UNLIMITED_TARGET`] instead, since Linux refuses a soft limit
/// above `fs.nr_open`.
///
/// # Errors
///
/// The `getrlimit`/`setrlimit` error, as an [`io::Error`] (for example
/// `EPERM` inside a restricted sandbox). Callers may go on with the old limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_TARGET
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = target;
    }
    Ok(limit.rlim_cur)
}

/// The soft limit asked for when the hard limit is unlimited: Linux's default
/// `fs.nr_open` (1,048,576), the most a process may open without sysctl.
pub const UNLIMITED_TARGET: libc::rlim_t = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_gives_the_same_limit() {
        let first = raise_nofile_limit().expect("raise RLIMIT_NOFILE");
        assert!(first > 0);
        assert_eq!(raise_nofile_limit().unwrap(), first);
    }
}
