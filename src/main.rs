//! The `readyloop` binary: parse flags, run a subcommand, print what failed.

use std::error::Error;
use std::io;
use std::process::ExitCode;

use clap::Parser;
use log::LevelFilter;
use readyloop::cli::{Cli, Command};
use readyloop::serve::Stopped;
use readyloop::{bench, client, logger, serve, signals};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<ExitCode, Box<dyn Error>> = match &cli.command {
        Command::Serve(args) => serve::run(args)
            .map(|stopped| match stopped {
                Stopped::Clean => ExitCode::SUCCESS,
                Stopped::CutOff(_) => ExitCode::from(signals::EXIT_CUT_OFF),
            })
            .map_err(Into::into),
        Command::Client(args) => client::run(&args.addr)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Bench(args) => {
            logger::init(LevelFilter::Warn);
            bench::run(args)
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(code) => code,
        // The reader of our stdout left (`readyloop ... | head -1`): that
        // is how a pipeline ends, not an error (ripgrep does the same).
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readyloop: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// True if `e`, or any error it wraps, is an `EPIPE` write.
fn is_broken_pipe(e: &(dyn Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        next = e.source();
    }
    false
}
