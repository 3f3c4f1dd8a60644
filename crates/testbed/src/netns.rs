//! Named network namespaces, through `ip netns`.

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, kill_pids};
use crate::error::{Error, Result};
use crate::process;
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

/// SIGKILLs every process in the namespace and waits until each is gone.
/// A dying process leaves the namespace before it has finished exiting, so
/// an empty namespace alone does not say the processes are gone.
pub(crate) fn kill_all(name: &str) -> Result<()> {
    let me = std::process::id();
    let mut last_error = None;
    let mut killed: Vec<(u32, u64)> = Vec::new();
    let done = wait_for(
        &format!("the processes in netns {name} to exit"),
        KILL_TIMEOUT,
        Duration::from_millis(20),
        || match pids(name) {
            Ok(pids) => {
                // Never shoot ourselves, whatever namespace we were started in.
                let pids: Vec<u32> = pids.into_iter().filter(|&p| p != me).collect();
                for &pid in &pids {
                    if let Some(started) = process::start_time(pid)
                        && !killed.contains(&(pid, started))
                    {
                        killed.push((pid, started));
                    }
                }
                kill_pids(&pids);
                pids.is_empty()
                    && killed
                        .iter()
                        .all(|&(pid, started)| !process::still_running(pid, started))
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

/// Names of the namespaces at the far end of the veth pairs whose near end
/// is in `name`: whatever was plugged into it from outside, such as
/// instances that flowgate's netns driver plugs into a lab's bridges. `ip`
/// prints `link-netns NAME` for a peer in a named namespace; peers in
/// unnamed namespaces (the root one) print only an id and are not listed.
/// Empty if the namespace is gone.
pub(crate) fn veth_peers(name: &str) -> Result<Vec<String>> {
    if !exists(name) {
        return Ok(Vec::new());
    }
    let output = match ip(name, &["-o", "link", "show", "type", "veth"]) {
        Ok(output) => output,
        Err(_) if !exists(name) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(parse_veth_peers(&output))
}

fn parse_veth_peers(output: &str) -> Vec<String> {
    let mut peers: Vec<String> = output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "link-netns")?;
            words.next().map(str::to_owned)
        })
        .collect();
    peers.sort();
    peers.dedup();
    peers
}

/// Kills every process in a named network namespace and deletes it (with
/// its interfaces, and so the far ends of its veth pairs). A namespace that
/// does not exist counts as deleted.
///
/// For what lives outside a [`Lab`](crate::Lab) but belongs to it, such as
/// the namespaces of instances a test started through flowgate.
pub fn delete_netns(name: &str) -> Result<()> {
    delete(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_peers_are_read_from_link_netns() {
        let output = "\
7: fg6cc91db0c5a79@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master ovs-system \\    link/ether ae:5a:47:15:64:cb brd ff:ff:ff:ff:ff:ff link-netns fg6cc91db0c5a79
8: h-ext@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN \\    link/ether 02:00:00:00:00:fd brd ff:ff:ff:ff:ff:ff link-netns fgt-12-0-ext
9: h-gw@if2: <BROADCAST,MULTICAST> mtu 1500 \\    link/ether 02:00:00:00:00:fe brd ff:ff:ff:ff:ff:ff link-netns fgt-12-0-ext
10: v9@if3: <BROADCAST,MULTICAST> mtu 1500 \\    link/ether 02:00:00:00:00:09 brd ff:ff:ff:ff:ff:ff link-netnsid 0
";
        assert_eq!(parse_veth_peers(output), vec!["fg6cc91db0c5a79", "fgt-12-0-ext"]);
        assert!(parse_veth_peers("").is_empty());
    }
}
