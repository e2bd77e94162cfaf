//! Fuzzes `upload`'s `put|<name>|<size>` header, through the service as a
//! client reaches it, up to the first job (creating the file). Checks,
//! besides "no panic":
//! - every cutting of the input gives the same reply and the same job
//!   (readyloop_fuzz);
//! - an accepted header asks to create exactly one plain file name in the
//!   upload directory, and the name is what the header said;
//! - a refused header gets one short, printable `error ...` line and a
//!   close: what one request can make the server send is bounded, and no
//!   client byte reaches it raw;
//! - the service never waits for more with over a header's worth buffered.

#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use readyloop::service::upload::{MAX_HEADER, MAX_NAME, Work};
use readyloop::service::{self, Backend, Job, Limits, Service, Shared};
use readyloop::stats::Stats;
use readyloop::store::Store;
use readyloop_fuzz::{End, same_for_every_cutting};

/// Never created or touched: the run stops at the job that would.
const UPLOAD_DIR: &str = "/nonexistent/readyloop-fuzz-uploads";
/// Small, so both sides of the size limit are reached.
const MAX_UPLOAD: u64 = 1000;
/// The longest refusal line.
const LONGEST_ERROR: usize = 200;

fn upload() -> Box<dyn Service> {
    let shared = Shared {
        backend: Backend::File(Store::in_memory()),
        broker: Default::default(),
        stats: Arc::new(Stats::default()),
        limits: Limits {
            upload_dir: PathBuf::from(UPLOAD_DIR),
            max_upload: MAX_UPLOAD,
            ..Limits::default()
        },
    };
    service::upload::factory(&shared).make()
}

fuzz_target!(|data: &[u8]| {
    let run = same_for_every_cutting(upload, data);
    match run.end {
        End::Job(Job::Upload(Work::Create { dir, name })) => {
            assert!(run.out.is_empty(), "a reply before the file exists");
            assert_eq!(dir, Path::new(UPLOAD_DIR));
            let components: Vec<Component<'_>> = Path::new(&name).components().collect();
            assert_eq!(
                components,
                [Component::Normal(name.as_ref())],
                "{name:?} is not one plain file name"
            );
            assert!(!name.chars().any(char::is_control), "{name:?}");
            assert!(name.len() <= MAX_NAME);
            // The header was `put|<name>|<digits>` with an optional '\r'.
            let line = &data[..data.iter().position(|&b| b == b'\n').unwrap()];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let size = line
                .strip_prefix(format!("put|{name}|").as_bytes())
                .unwrap_or_else(|| panic!("{name:?} is not the header's name"));
            let size: u64 = std::str::from_utf8(size).unwrap().parse().unwrap();
            assert!(size <= MAX_UPLOAD);
        }
        End::Job(job) => panic!("unexpected job {job:?}"),
        End::Closed => {
            assert!(run.out.starts_with(b"error ") && run.out.ends_with(b"\n"));
            assert!(
                run.out.len() <= LONGEST_ERROR,
                "{}-byte refusal",
                run.out.len()
            );
            let text = &run.out[..run.out.len() - 1];
            assert!(
                text.iter().all(|b| (b' '..=b'~').contains(b)),
                "{:?}",
                run.out.escape_ascii().to_string()
            );
        }
        End::Eof => {
            // Still waiting for the header's '\n'.
            assert!(
                !data.contains(&b'\n') && data.len() <= MAX_HEADER,
                "{run:?}"
            );
        }
    }
});
