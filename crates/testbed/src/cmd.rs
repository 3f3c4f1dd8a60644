//! Running external commands with a deadline.
//!
//! Every tool this crate drives is an external program, and any of them can
//! hang (a daemon that never answers, a ping into the void). So every command
//! runs with a deadline and is killed, with its whole process group, when it
//! passes it.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Deadline for commands run on the user's behalf (`exec`).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `--timeout` given to the OVS tools themselves, in seconds.
pub(crate) const OVS_TIMEOUT_SECS: u64 = 10;

/// Our own deadline for an OVS tool: a little longer than its own, so its
/// (more informative) error wins when it gives up.
pub(crate) const OVS_COMMAND_TIMEOUT: Duration = Duration::from_secs(OVS_TIMEOUT_SECS + 5);

/// How long to keep reading a finished command's output. A daemon that
/// detached can hold the pipe for a moment after its parent exits.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Renders a command as a shell-like line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Locks a mutex, ignoring poisoning: the data guarded here (byte buffers,
/// name lists) stays consistent even if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads a pipe on a helper thread so stdout and stderr cannot deadlock
/// each other, keeping whatever arrived even if EOF never comes.
struct Collector {
    buffer: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Collector {
    fn start<R: Read + Send + 'static>(mut pipe: R) -> io::Result<Collector> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&buffer);
        thread::Builder::new()
            .name("testbed-output".into())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => lock(&sink).extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                // The receiver may be gone already; nothing to do then.
                let _ = tx.send(());
            })?;
        Ok(Collector { buffer, done })
    }

    fn finish(self, grace: Duration) -> Vec<u8> {
        let _ = self.done.recv_timeout(grace);
        std::mem::take(&mut *lock(&self.buffer))
    }
}

/// Sends SIGKILL to a whole process group. Best effort: the group may
/// already be gone. `kill(1)` is used because the crate forbids `unsafe`.
pub(crate) fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGKILL to the given processes. Best effort, like [`kill_group`].
pub(crate) fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for `child` until `deadline`; `Ok(None)` means it is still running.
pub(crate) fn wait_deadline(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    // Most commands finish in a few milliseconds: poll fast, then back off.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills a child we started in its own process group, and reaps it.
pub(crate) fn kill_child(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a command to completion (or to its deadline) and returns its output,
/// whatever its exit status.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_described(cmd, timeout).map(|(_, output)| output)
}

fn run_described(cmd: &mut Command, timeout: Duration) -> Result<(String, Output)> {
    let command = describe(cmd);
    // A group of its own lets a timeout kill the command's children too.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let deadline = Instant::now() + timeout;
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let collectors = start_collectors(&mut child);
    let (stdout, stderr) = match collectors {
        Ok(pair) => pair,
        Err(source) => {
            kill_child(&mut child);
            return Err(Error::Io {
                context: format!("reading the output of `{command}`"),
                source,
            });
        }
    };
    let status = match wait_deadline(&mut child, deadline) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill_child(&mut child);
            return Err(Error::CommandTimeout { command, timeout });
        }
        Err(source) => {
            kill_child(&mut child);
            return Err(Error::Io {
                context: format!("waiting for `{command}`"),
                source,
            });
        }
    };
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(100), OUTPUT_GRACE);
    let output = Output {
        status,
        stdout: stdout.map(|c| c.finish(grace)).unwrap_or_default(),
        stderr: stderr.map(|c| c.finish(grace)).unwrap_or_default(),
    };
    Ok((command, output))
}

type Collectors = (Option<Collector>, Option<Collector>);

fn start_collectors(child: &mut Child) -> io::Result<Collectors> {
    let stdout = child.stdout.take().map(Collector::start).transpose()?;
    let stderr = child.stderr.take().map(Collector::start).transpose()?;
    Ok((stdout, stderr))
}

/// Runs a command and returns its stdout, or an error carrying the command
/// line and its stderr if it failed.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let (command, output) = run_described(cmd, timeout)?;
    check(command, output)
}

/// Turns a finished command's output into its stdout or an error.
pub(crate) fn check(command: String, output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(Error::Failed {
            command,
            status: output.status,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Checks that an argument vector names a program.
pub(crate) fn require_program(argv: &[&str]) -> Result<()> {
    match argv.first() {
        Some(program) if !program.is_empty() => Ok(()),
        _ => Err(Error::Invalid {
            what: "command",
            value: argv.join(" "),
            reason: "it names no program".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_stdout_of_a_successful_command() -> Result<()> {
        let out = run_ok(
            Command::new("sh").args(["-c", "echo hello; echo noise >&2"]),
            DEFAULT_TIMEOUT,
        )?;
        assert_eq!(out, "hello\n");
        Ok(())
    }

    #[test]
    fn a_failure_carries_the_command_line_and_stderr() {
        let err = run_ok(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            DEFAULT_TIMEOUT,
        );
        match err {
            Err(e @ Error::Failed { .. }) => {
                let text = e.to_string();
                assert!(text.contains("sh -c 'echo oops >&2; exit 3'"), "{text}");
                assert!(text.contains("oops") && text.contains('3'), "{text}");
            }
            other => panic!("expected Error::Failed, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run_ok(&mut Command::new("/nonexistent/testbed-tool"), DEFAULT_TIMEOUT);
        assert!(matches!(err, Err(Error::Spawn { .. })), "{err:?}");
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_deadline() {
        let started = Instant::now();
        // The child of the shell must die too, or it would hold the pipes.
        let err = run_ok(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        );
        assert!(matches!(err, Err(Error::CommandTimeout { .. })), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn environment_overrides_appear_in_the_description() {
        let mut cmd = Command::new("ovs-ofctl");
        cmd.env("OVS_RUNDIR", "/tmp/x y").args(["dump-flows", "br0"]);
        assert_eq!(describe(&cmd), "OVS_RUNDIR='/tmp/x y' ovs-ofctl dump-flows br0");
    }
}
