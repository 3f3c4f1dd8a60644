//! The crate's error type.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building or tearing down a test bed.
///
/// Command errors carry the full command line (environment overrides
/// included) so a failing test says exactly what to re-run by hand.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command could not be started at all (missing binary, bad path).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why the operating system refused.
        source: io::Error,
    },

    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {}", detail(.stderr, .stdout))]
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on standard output.
        stdout: String,
        /// What it printed on standard error.
        stderr: String,
    },

    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// How long it was given.
        timeout: Duration,
    },

    /// A polled condition did not become true in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long it was waited for.
        timeout: Duration,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },

    /// An argument was rejected before anything was run.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// The kind of value (for example "interface name").
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A tool answered with something this crate could not interpret.
    #[error("unexpected output from `{command}`: {output:?}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },

    /// Programs or files a lab needs are not installed.
    #[error(
        "the test bed needs {} (Debian packages: openvswitch-switch iproute2 ethtool procps)",
        .missing.join(", ")
    )]
    Prerequisites {
        /// What is missing: program names, or paths of files.
        missing: Vec<String>,
    },

    /// Teardown hit one or more errors (it carries on past each one).
    #[error("cleanup of {what} was incomplete: {}", join(.errors))]
    Cleanup {
        /// What was being cleaned up (a lab name).
        what: String,
        /// Every error met on the way.
        errors: Vec<Error>,
    },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most useful part of a failed command's output: stderr, else stdout.
fn detail(stderr: &str, stdout: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        stdout.trim().to_owned()
    } else {
        stderr.to_owned()
    }
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
