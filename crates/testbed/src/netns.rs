//! Named network namespaces, through `ip netns`.

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, kill_pids};
use crate::error::{Error, Result};
use crate::wait::wait_for;

/// Where `ip netns` keeps its namespace handles.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// How long processes in a namespace get to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline for one `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Names of all named namespaces, read from the directory `ip netns list`
/// itself reads (no fork).
pub(crate) fn list() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("listing {NETNS_DIR}"),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            context: format!("listing {NETNS_DIR}"),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) fn add(name: &str) -> Result<()> {
    cmd::run_ok(Command::new("ip").args(["netns", "add", name]), IP_TIMEOUT).map(drop)
}

/// `ip netns exec NAME PROGRAM`: `ip` execs the program after entering the
/// namespace, so the child's pid is the program's own.
pub(crate) fn exec_command(name: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name, program]);
    cmd
}

/// `ip -n NAME ARGS...`.
pub(crate) fn ip(name: &str, args: &[&str]) -> Result<String> {
    cmd::run_ok(Command::new("ip").args(["-n", name]).args(args), IP_TIMEOUT)
}

/// Pids of the processes whose network namespace is `name` (zombies are not
/// listed: they have no namespace any more). Empty if the namespace is gone.
pub(crate) fn pids(name: &str) -> Result<Vec<u32>> {
    if !exists(name) {
        return Ok(Vec::new());
    }
    let mut command = Command::new("ip");
    command.args(["netns", "pids", name]);
    let output = match cmd::run_ok(&mut command, IP_TIMEOUT) {
        Ok(output) => output,
        // Deleted between the check and the command: nothing left to list.
        Err(_) if !exists(name) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    output
        .split_whitespace()
        .map(|word| {
            word.parse().map_err(|_| Error::UnexpectedOutput {
                command: cmd::describe(&command),
                output: output.clone(),
            })
        })
        .collect()
}

/// SIGKILLs every process in the namespace and waits until none is left.
pub(crate) fn kill_all(name: &str) -> Result<()> {
    let me = std::process::id();
    let mut last_error = None;
    let done = wait_for(
        &format!("the processes in netns {name} to exit"),
        KILL_TIMEOUT,
        Duration::from_millis(20),
        || match pids(name) {
            Ok(pids) => {
                // Never shoot ourselves, whatever namespace we were started in.
                let pids: Vec<u32> = pids.into_iter().filter(|&p| p != me).collect();
                kill_pids(&pids);
                pids.is_empty()
            }
            Err(e) => {
                last_error = Some(e);
                false
            }
        },
    );
    match (done, last_error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e),
    }
}

/// Kills everything in the namespace and deletes it. Deleting a namespace
/// takes its interfaces (and so the peers of its veths) with it. A namespace
/// that is already gone counts as success, so concurrent sweeps do not fail.
pub(crate) fn delete(name: &str) -> Result<()> {
    kill_all(name)?;
    if !exists(name) {
        return Ok(());
    }
    match cmd::run_ok(Command::new("ip").args(["netns", "del", name]), IP_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(_) if !exists(name) => Ok(()),
        Err(e) => Err(e),
    }
}
