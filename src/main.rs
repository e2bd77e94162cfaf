//! The `readyloop` binary: parse flags, run a subcommand, print what failed.

use std::process::ExitCode;

use clap::Parser;
use log::LevelFilter;
use readyloop::cli::{Cli, Command};
use readyloop::{bench, client, logger, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match &cli.command {
        Command::Serve(args) => serve::run(args).map_err(Into::into),
        Command::Client(args) => client::run(&args.addr).map_err(Into::into),
        Command::Bench(args) => logger::init(LevelFilter::Warn, None)
            .map_err(Into::into)
            .and_then(|_| bench::run(args).map_err(Into::into)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readyloop: error: {e}");
            ExitCode::from(2)
        }
    }
}
