//! The harness's error type.

use std::time::Duration;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building or driving an Open vSwitch lab failed.
    #[error(transparent)]
    Testbed(#[from] testbed::Error),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A command ran but failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line (abridged).
        command: String,
        /// Its standard error, or why it could not run.
        detail: String,
    },
    /// The OpenFlow probe of a bridge failed.
    #[error("OpenFlow probe: {0}")]
    Probe(String),
    /// An EC2 API call failed or answered something unexpected.
    #[error("EC2 API: {0}")]
    Api(String),
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// The emulated-switch run failed.
    #[error("scale run: {0}")]
    Scale(String),
}

/// The harness's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
