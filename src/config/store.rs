//! `--store`, `--store-wait`, `--data-dir` and `--fsync`, checked together
//! into a [`StoreConfig`]: where todo and kv keep their data.

use std::path::{Path, PathBuf};

use super::{absolute, bad};
use crate::cli::ServeArgs;
use crate::error::StartupError;
use crate::remote::Redis;
use crate::store::Fsync;

/// Where todo and kv keep their data, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store (`--store file:DIR`, `--data-dir`, the default).
    File {
        /// Its directory, absolute.
        dir: PathBuf,
        /// When its log is fsynced (`--fsync`).
        fsync: Fsync,
    },
    /// A Redis server (`--store redis://`) or cluster
    /// (`--store redis-cluster://`).
    Redis {
        /// Where.
        url: Redis,
        /// Retry at start until it answers (`--store-wait`).
        wait: bool,
    },
}

impl StoreConfig {
    /// Checks `--store`, `--store-wait`, `--data-dir` and `--fsync`
    /// together: the directory and the fsync policy are the file store's,
    /// so they are refused with a Redis store, and `--data-dir` is refused
    /// with any `--store` (two ways to say one thing could disagree).
    pub(super) fn from_args(args: &ServeArgs) -> Result<StoreConfig, StartupError> {
        let fsync = args.fsync.map(Fsync::from);
        let config = match args.store.as_deref() {
            None => StoreConfig::file(
                "--data-dir",
                args.data_dir
                    .as_deref()
                    .unwrap_or(Path::new(crate::store::DEFAULT_DATA_DIR)),
                fsync,
            )?,
            Some(_) if args.data_dir.is_some() => {
                return Err(bad(
                    "--data-dir",
                    "names the file store's directory, and so does --store: pass one of \
                     them (--store file:DIR, or --store redis://... for no directory)",
                ));
            }
            Some(text) if text.starts_with("redis://") || text.starts_with("redis-cluster://") => {
                let url = text
                    .parse::<Redis>()
                    .map_err(|reason| bad("--store", &reason))?;
                if fsync.is_some() {
                    return Err(bad(
                        "--fsync",
                        "is the file store's policy: with --store redis:// durability is \
                         Redis' own (appendonly and appendfsync in its redis.conf); drop --fsync",
                    ));
                }
                StoreConfig::Redis {
                    url,
                    wait: args.store_wait,
                }
            }
            Some(text) => match text.strip_prefix("file:") {
                Some(dir) => StoreConfig::file("--store", Path::new(dir), fsync)?,
                None => {
                    return Err(bad(
                        "--store",
                        &format!(
                            "'{text}' is neither file:DIR nor redis://HOST:PORT[/DB] nor \
                             redis-cluster://HOST:PORT[,HOST:PORT...], e.g. --store \
                             file:./readyloop-data or --store redis://127.0.0.1:6379/0"
                        ),
                    ));
                }
            },
        };
        if args.store_wait && !matches!(config, StoreConfig::Redis { .. }) {
            return Err(bad(
                "--store-wait",
                "waits for a Redis store: add --store redis://HOST:PORT, or drop it",
            ));
        }
        Ok(config)
    }

    fn file(
        flag: &'static str,
        dir: &Path,
        fsync: Option<Fsync>,
    ) -> Result<StoreConfig, StartupError> {
        if dir.as_os_str().is_empty() {
            return Err(bad(
                flag,
                "must name a directory, e.g. --data-dir ./readyloop-data",
            ));
        }
        Ok(StoreConfig::File {
            dir: absolute(flag, dir)?,
            fsync: fsync.unwrap_or(Fsync::Everysec),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_of(flags: &[&str]) -> Result<StoreConfig, String> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["readyloop", "serve"].iter().chain(flags))
            .map_err(|e| e.to_string())?;
        let crate::cli::Command::Serve(args) = cli.command else {
            unreachable!("serve was parsed")
        };
        StoreConfig::from_args(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn store_flags() {
        let url: Redis = "redis://127.0.0.1:6390/2".parse().unwrap();
        assert_eq!(
            store_of(&["--store", "redis://127.0.0.1:6390/2", "--store-wait"]),
            Ok(StoreConfig::Redis { url, wait: true })
        );
        let cluster = "redis-cluster://127.0.0.1:7000,127.0.0.1:7001";
        assert_eq!(
            store_of(&["--store", cluster]),
            Ok(StoreConfig::Redis {
                url: cluster.parse().unwrap(),
                wait: false
            })
        );
        let Ok(StoreConfig::File { dir, fsync }) =
            store_of(&["--store", "file:d", "--fsync", "no"])
        else {
            panic!("file:d is the file store")
        };
        assert!(dir.is_absolute() && dir.ends_with("d"), "{dir:?}");
        assert_eq!(fsync, Fsync::No);
        let Ok(StoreConfig::File { dir, fsync }) = store_of(&[]) else {
            panic!("the default is the file store")
        };
        assert!(dir.ends_with("readyloop-data"));
        assert_eq!(fsync, Fsync::Everysec);
        for (flags, says) in [
            (
                &["--store", "redis://h", "--fsync", "always"][..],
                "--fsync: is the file store's",
            ),
            (
                &["--store", "redis://h", "--data-dir", "d"],
                "--data-dir: names",
            ),
            (
                &["--store", "file:a", "--data-dir", "b"],
                "pass one of them",
            ),
            (&["--store", "redis://h:0"], "not a TCP port"),
            (&["--store", "redis-cluster://h:1/3"], "database 0 only"),
            (
                &["--store", "redis-cluster://h:1", "--fsync", "no"],
                "--fsync: is the file store's",
            ),
            (&["--store", "mysql://h"], "neither file:DIR nor redis://"),
            (&["--store", "file:"], "must name a directory"),
            (&["--store-wait"], "--store-wait: waits for a Redis store"),
        ] {
            let error = store_of(flags).unwrap_err();
            assert!(error.contains(says), "{flags:?}: {error}");
        }
    }
}
