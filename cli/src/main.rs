//! `layercrypt`: encrypt container images per layer before they reach a registry.
#![forbid(unsafe_code)]

mod cli;
mod exit;
mod group;
mod paths;
mod progress;
mod run;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or a CI log gets no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `layercrypt inspect | head`: the reader has all it wanted. Like other filters
        // (ripgrep, cat), stop quietly instead of reporting an error.
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
