//! Shared parts of the worker-node binaries: command lines, logging, the one error line.
//!
//! The logic lives in `layercrypt-node`; these binaries only wire it to fds, arguments and
//! the exit status (see `docs/worker-node.md`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;

use std::io::Write;

/// Environment variable enabling logs (a `tracing` filter such as `debug`); off by default.
pub const ENV_LOG: &str = "LAYERCRYPT_LOG";

/// Installs a stderr-only subscriber if `LAYERCRYPT_LOG` is set. stdout carries data (the
/// layer, the key-provider reply), so logs must never go there.
pub fn init_logging() {
    let Ok(filter) = std::env::var(ENV_LOG) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Writes exactly one line `PREFIX: MESSAGE` to stderr (newlines in the message become
/// spaces) and flushes it. containerd returns a failed processor's stderr verbatim.
pub fn error_line(prefix: &str, message: &str) {
    let one_line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{prefix}: {}", one_line.trim());
    let _ = err.flush();
}
