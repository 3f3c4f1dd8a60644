//! Processes started in the background, killed when their guard drops.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cmd::{self, describe, kill_child};
use crate::error::{Error, Result};

/// Numbers log files of background processes, unique within this process.
static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// Whether a process exists and is not a zombie. A zombie is dead for every
/// purpose here; only its parent's `wait` is missing.
pub(crate) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name,
        // which may itself contain spaces and parentheses.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => state != "Z" && state != "X",
            None => true,
        },
        Err(_) => false,
    }
}

/// When `pid` started (field 22 of `/proc/PID/stat`, clock ticks since
/// boot): with the pid, it names one process, whatever reuses the pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_command = &stat[stat.rfind(')')? + 1..];
    // After the command: the state is field 3, the start time field 22.
    after_command.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that started as `pid` at `started` ([`start_time`])
/// is still running: not gone, not a zombie, its pid not reused.
pub(crate) fn still_running(pid: u32, started: u64) -> bool {
    alive(pid) && start_time(pid) == Some(started)
}

/// A process running in the background (a server in a host, a controller in
/// a lab). Dropping the guard kills the process and everything in its
/// process group, then reaps it.
///
/// Standard output and error go to files in the lab's directory rather than
/// pipes, so a chatty process can never block on a full pipe, and what it
/// printed can be read at any time with [`stdout`](Self::stdout).
#[derive(Debug)]
pub struct BackgroundProcess {
    child: Child,
    command: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl BackgroundProcess {
    /// Starts `cmd` in a process group of its own, logging to files named
    /// after `label` in `log_dir`.
    pub(crate) fn spawn(mut cmd: Command, log_dir: &Path, label: &str) -> Result<Self> {
        let command = describe(&cmd);
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        fs::create_dir_all(log_dir).map_err(|source| Error::Io {
            context: format!("creating {}", log_dir.display()),
            source,
        })?;
        let stdout_path = log_dir.join(format!("{n}-{label}.out"));
        let stderr_path = log_dir.join(format!("{n}-{label}.err"));
        let create = |path: &Path| {
            File::create(path).map_err(|source| Error::Io {
                context: format!("creating {}", path.display()),
                source,
            })
        };
        let stdout = create(&stdout_path)?;
        let stderr = create(&stderr_path)?;
        // Its own group, so that dropping the guard can kill its children too.
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        Ok(BackgroundProcess {
            child,
            command,
            stdout_path,
            stderr_path,
            status: None,
        })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| Error::Io {
                context: format!("checking on `{}`", self.command),
                source,
            })?;
        }
        Ok(self.status)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.try_wait()?.is_none())
    }

    /// Waits up to `timeout` for it to exit on its own. On timeout it keeps
    /// running (drop the guard or call [`kill`](Self::kill) to stop it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        match cmd::wait_deadline(&mut self.child, Instant::now() + timeout) {
            Ok(Some(status)) => {
                self.status = Some(status);
                Ok(status)
            }
            Ok(None) => Err(Error::Timeout {
                what: format!("`{}` to exit", self.command),
                timeout,
            }),
            Err(source) => Err(Error::Io {
                context: format!("waiting for `{}`", self.command),
                source,
            }),
        }
    }

    /// Kills it and its process group, and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            kill_child(&mut self.child);
            self.status = self.child.try_wait().ok().flatten();
        }
    }

    /// Everything it has written to standard output so far.
    pub fn stdout(&self) -> Result<String> {
        read_log(&self.stdout_path)
    }

    /// Everything it has written to standard error so far.
    pub fn stderr(&self) -> Result<String> {
        read_log(&self.stderr_path)
    }

    /// Waits, at most `limit`, until it has written `text` to standard
    /// error: tcpdump's "listening on", say, after which it sees every
    /// packet.
    pub fn wait_for_stderr(&self, text: &str, limit: std::time::Duration) -> Result<()> {
        crate::wait::wait_for(
            &format!("{text:?} from {}", self.command),
            limit,
            std::time::Duration::from_millis(20),
            || self.stderr().is_ok_and(|written| written.contains(text)),
        )
    }

    /// The file its standard output goes to.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// The file its standard error goes to.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }
}

fn read_log(path: &Path) -> Result<String> {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|source| Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })
}

impl Drop for BackgroundProcess {
    fn drop(&mut self) {
        // Once the leader is reaped its pid (= the group id) may be reused,
        // so the group is only signalled before reaping (in `kill`). Children
        // that outlive a reaped leader die with the namespace at teardown.
        self.kill();
    }
}
