//! Running the system tools the drivers drive (`ip`, `ovs-vsctl`,
//! `ethtool`, `kill`, `setsid`), each with a deadline, with the command line
//! and its error output in every failure.

use std::time::Duration;

use tokio::process::Command;

/// A command failed or timed out.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// Its error output, exit status or timeout.
    pub detail: String,
}

/// How long any single command may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `program args...` and returns its standard output.
pub async fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let fail = |detail: String| CommandError {
        command: command.clone(),
        detail,
    };
    let output = tokio::time::timeout(
        DEADLINE,
        Command::new(program).args(args).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| fail(format!("no answer within {DEADLINE:?}")))?
    .map_err(|e| fail(format!("cannot start: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(fail(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Runs a command whose failure is expected when the thing it makes
/// already exists (or what it removes is already gone): such failures are
/// fine, others are returned.
pub async fn run_idempotent(program: &str, args: &[&str], benign: &[&str]) -> Result<(), CommandError> {
    match run(program, args).await {
        Ok(_) => Ok(()),
        Err(e) if benign.iter().any(|b| e.detail.contains(b)) => Ok(()),
        Err(e) => Err(e),
    }
}
