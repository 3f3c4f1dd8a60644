//! Removal of what dead test processes left behind.
//!
//! `Drop` does not run when a test process is killed (a timeout's SIGKILL,
//! an abort), so its namespaces, daemons and directory would outlive it.
//! Every name this crate creates embeds the creating process's pid, which
//! tells a leftover (pid gone) from a lab in use (pid alive).

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::lab::remove_dir;
use crate::netns;
use crate::process;

/// Prefix of every lab name: `fgt-<pid>-<n>`; hosts are `fgt-<pid>-<n>-<host>`.
pub(crate) const LAB_PREFIX: &str = "fgt-";

/// What [`sweep_stale`] removed, and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Namespaces deleted (after killing their processes).
    pub namespaces: Vec<String>,
    /// Lab directories deleted.
    pub directories: Vec<PathBuf>,
    /// Leftovers that could not be removed, with the reason.
    pub failures: Vec<String>,
}

impl SweepReport {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.directories.is_empty() && self.failures.is_empty()
    }
}

/// The directory holding every lab's private directory:
/// `$TMPDIR/flowgate-testbed`.
pub fn base_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join("flowgate-testbed");
    // Daemons chdir to / when they detach, so every path must be absolute.
    std::path::absolute(&dir).map_err(|source| Error::Io {
        context: format!("making {} absolute", dir.display()),
        source,
    })
}

/// The pid a lab or host name embeds, if the name is one of ours.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(LAB_PREFIX)?.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let counter = parts.next()?;
    (!counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

fn stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| !process::alive(pid))
}

/// The namespaces plugged into namespace `owner` by veth pairs that belong
/// to it and go when it goes: every peer except another lab or another
/// lab's host (names of our scheme not under `owner`).
pub(crate) fn plugged_into(owner: &str) -> Result<Vec<String>> {
    let own_hosts = format!("{owner}-");
    Ok(netns::veth_peers(owner)?
        .into_iter()
        .filter(|peer| peer != owner && (owner_pid(peer).is_none() || peer.starts_with(&own_hosts)))
        .collect())
}

/// Removes the leftovers of test processes that are no longer alive: every
/// namespace named `fgt-<pid>-...` whose process is gone (killing what runs
/// in it first, daemons included), every namespace plugged into such a
/// namespace by a veth pair (instances that flowgate's netns driver plugged
/// into a lab's bridges), and every such directory under [`base_dir`].
/// Labs of live processes are never touched, so this is safe to run while
/// other tests run; [`Lab::start`](crate::Lab::start) calls it.
///
/// Fails only if the namespaces or directories cannot be listed; each
/// leftover that resists removal is reported in [`SweepReport::failures`].
pub fn sweep_stale() -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for ns in netns::list()? {
        if !stale(&ns) {
            continue;
        }
        // Read before the namespace goes: deleting it cuts the veths that
        // lead to what was plugged into it.
        let plugged = match plugged_into(&ns) {
            Ok(plugged) => plugged,
            Err(e) => {
                report.failures.push(format!("netns {ns}: {e}"));
                Vec::new()
            }
        };
        for peer in plugged.into_iter().chain([ns]) {
            if !netns::exists(&peer) {
                continue;
            }
            match netns::delete(&peer) {
                Ok(()) => report.namespaces.push(peer),
                Err(e) => report.failures.push(format!("netns {peer}: {e}")),
            }
        }
    }
    let base = base_dir()?;
    let entries = match fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(source) => {
            return Err(Error::Io {
                context: format!("listing {}", base.display()),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !stale(&name) {
            continue;
        }
        let path = entry.path();
        // Another process's sweep may remove it at the same time; that
        // counts as done.
        let existed = path.exists();
        match remove_dir(&path) {
            Ok(()) if existed => report.directories.push(path),
            Ok(()) => {}
            Err(e) => report.failures.push(e.to_string()),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_our_names() {
        assert_eq!(owner_pid("fgt-123-0"), Some(123));
        assert_eq!(owner_pid("fgt-123-45-web"), Some(123));
        assert_eq!(owner_pid("fgt-123"), None);
        assert_eq!(owner_pid("fgt-123-"), None);
        assert_eq!(owner_pid("fgt-x-1"), None);
        assert_eq!(owner_pid("labx"), None);
        assert_eq!(owner_pid("fgt-123-a"), None);
    }

    #[test]
    fn live_processes_are_not_stale() {
        let me = std::process::id();
        assert!(!stale(&format!("fgt-{me}-0")));
        assert!(stale("fgt-999999999-0"));
        assert!(!stale("something-else"));
    }
}
