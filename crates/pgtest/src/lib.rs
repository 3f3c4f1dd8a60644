//! A private PostgreSQL server for flowgate's tests and benchmarks.
//!
//! The crate's one job: start a PostgreSQL server that belongs to one test
//! (or one benchmark run) and to nothing else, and make sure it is gone
//! afterwards. No system-wide service is needed or touched:
//!
//! * the server runs from a data directory of its own under
//!   `$TMPDIR/flowgate-pg/pg-<pid>-<n>`, copied from a template that
//!   `initdb` makes once per machine (copying takes about 0.1 s, `initdb`
//!   about 0.7 s);
//! * it listens only on a Unix socket inside that directory (no TCP port,
//!   so parallel tests never collide), trusts local connections, and its
//!   superuser is `flowgate`;
//! * as root it runs as the unprivileged `postgres` user (PostgreSQL
//!   refuses to run as root), through `setpriv`, which also asks the kernel
//!   to kill it if the test process dies without cleaning up;
//! * [`Postgres::start_tls`] starts one that also listens on a TCP port of
//!   127.0.0.1 and takes TCP connections only over TLS, with a
//!   certificate for 127.0.0.1 from a CA made for it
//!   ([`testbed::pki`]);
//! * dropping the [`Postgres`] shuts it down (immediate mode) and removes its
//!   directory; what a killed test left behind is removed by
//!   [`sweep_stale`], which [`Postgres::start`] calls, recognising leftovers
//!   by the dead pid in their names.
//!
//! ```no_run
//! # fn main() -> pgtest::Result<()> {
//! let server = pgtest::Postgres::start()?;
//! let url = server.url(); // postgres://flowgate@localhost/postgres?host=/tmp/flowgate-pg/pg-…
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Names the directory of PostgreSQL's binaries (default: the newest
/// `/usr/lib/postgresql/<version>/bin`, where Debian puts them).
pub const ENV_BINDIR: &str = "FLOWGATE_PG_BINDIR";

/// The database role every server is created with (a superuser).
pub const USER: &str = "flowgate";

/// The database every server has from the start.
pub const DATABASE: &str = "postgres";

/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong starting or stopping a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL's server binaries are missing.
    #[error("PostgreSQL is not installed ({0}); run ./scripts/setup.sh (Debian package postgresql)")]
    NotInstalled(String),
    /// The unprivileged user to run the server as does not exist.
    #[error("there is no user {0:?} to run PostgreSQL as (root may not run it)")]
    NoUser(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// A helper command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The TLS certificates could not be made.
    #[error("making the server's TLS certificates: {0}")]
    Certificates(String),
    /// The server did not start.
    #[error("PostgreSQL in {dir} did not become ready: {reason}\n{log}")]
    NotReady {
        /// Its directory.
        dir: PathBuf,
        /// Why we stopped waiting.
        reason: String,
        /// Its log.
        log: String,
    },
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The directory holding every server's directory and the template:
/// `$TMPDIR/flowgate-pg`.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("flowgate-pg")
}

/// A running private PostgreSQL server; shut down and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    child: Option<Child>,
    install: Install,
    settings: Vec<(String, String)>,
    /// The server's port: its TCP port, and the number in its Unix
    /// socket's name.
    port: u16,
}

/// PostgreSQL's default port.
const DEFAULT_PORT: u16 = 5432;

impl Postgres {
    /// Starts a server with PostgreSQL's default settings (durable commits).
    pub fn start() -> Result<Postgres> {
        Postgres::start_with(&[])
    }

    /// Starts a server with extra settings (`-c name=value`), e.g.
    /// `("fsync", "off")`.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Postgres> {
        let mut server = Postgres::prepare(settings)?;
        server.launch()?;
        Ok(server)
    }

    /// Starts a server that also listens on a free TCP port of 127.0.0.1
    /// ([`Postgres::tcp_url`]) where it takes connections over TLS only
    /// (`hostnossl` connections are rejected). Its certificate, for
    /// 127.0.0.1 and localhost, is signed by a CA made for this server
    /// alone ([`Postgres::tls_ca`]). The Unix socket stays as it is.
    pub fn start_tls() -> Result<Postgres> {
        let port = testbed::free_port();
        let port_text = port.to_string();
        let mut server = Postgres::prepare(&[
            ("listen_addresses", "127.0.0.1"),
            ("port", &port_text),
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ])?;
        server.port = port;
        let tls = server.dir.join("tls");
        fs::create_dir_all(&tls).map_err(io_error(format!("creating {}", tls.display())))?;
        let certificates =
            testbed::pki::make_certificates(&tls).map_err(|e| Error::Certificates(e.to_string()))?;
        let data = server.dir.join("data");
        for (from, to) in [
            (&certificates.server, "server.crt"),
            (&certificates.server_key, "server.key"),
        ] {
            let target = data.join(to);
            fs::copy(from, &target).map_err(io_error(format!("copying {}", from.display())))?;
            // The server refuses a key others may read, or one it does not own.
            set_mode(&target, 0o600)?;
            if let Some((uid, gid)) = server.install.run_as {
                std::os::unix::fs::chown(&target, Some(uid), Some(gid)).map_err(io_error(format!(
                    "giving {} to the server's user",
                    target.display()
                )))?;
            }
        }
        // The first line that matches decides: TCP without TLS is refused.
        let hba = data.join("pg_hba.conf");
        let rules = fs::read_to_string(&hba).map_err(io_error("reading pg_hba.conf"))?;
        fs::write(&hba, format!("hostnossl all all all reject\n{rules}"))
            .map_err(io_error("writing pg_hba.conf"))?;
        server.launch()?;
        Ok(server)
    }

    /// The CA certificate (PEM) that signed a [`Postgres::start_tls`]
    /// server's certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// A connection URL for the `postgres` database over TCP (TLS only, on
    /// a [`Postgres::start_tls`] server), without TLS parameters.
    pub fn tcp_url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// A server's directory, copied from the template, not yet started.
    fn prepare(settings: &[(&str, &str)]) -> Result<Postgres> {
        static N: AtomicU32 = AtomicU32::new(0);
        // Leftovers of killed test processes would pile up otherwise.
        let _ = sweep_stale();
        let install = Install::find()?;
        let template = install.template()?;
        let dir = base_dir().join(format!(
            "pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        // `cp -a` keeps the template's owner (the server's user) and modes.
        run(Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(dir.join("data")))?;
        Ok(Postgres {
            dir,
            child: None,
            install,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port: DEFAULT_PORT,
        })
    }

    /// The server's directory (data directory, socket and log inside).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A connection URL for the server's `postgres` database as `flowgate`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// A connection URL for `database` on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{USER}@localhost:{}/{database}?host={}",
            self.port,
            self.socket_dir().display()
        )
    }

    /// The process id of the server (the postmaster), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs SQL with `psql` as the superuser on `database`; returns its
    /// output (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let out = run(Command::new(self.install.bindir.join("psql"))
            .arg("-X")
            .arg("-q")
            .arg("-A")
            .arg("-t")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(USER)
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql))?;
        Ok(out)
    }

    /// Stops the server at once, as a crash would (immediate shutdown: no
    /// checkpoint, clients cut off), and starts it again on the same data;
    /// it recovers from its write-ahead log as after a power failure.
    pub fn restart(&mut self) -> Result<()> {
        self.shutdown();
        self.launch()
    }

    fn launch(&mut self) -> Result<()> {
        let data = self.dir.join("data");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .map_err(io_error("opening the server log"))?;
        let log_err = log.try_clone().map_err(io_error("opening the server log"))?;
        let mut command = self.install.command("postgres", true);
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&data)
            .arg("-c")
            .arg("listen_addresses=")
            .arg("-c")
            .arg("log_min_messages=warning");
        for (name, value) in &self.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_error(format!(
                "starting {}",
                self.install.bindir.join("postgres").display()
            )))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until `postmaster.pid` says the server accepts connections.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pidfile = self.dir.join("data/postmaster.pid");
        loop {
            // Line 8 of postmaster.pid is the server's status; "ready" once
            // it accepts connections.
            let ready = fs::read_to_string(&pidfile)
                .map(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Ok(None)) => None,
                Some(Err(err)) => Some(err.to_string()),
                None => Some("not started".into()),
            };
            let reason = match exited {
                Some(status) => Some(format!("the server exited ({status})")),
                None if Instant::now() > deadline => Some(format!("not ready within {READY_TIMEOUT:?}")),
                None => None,
            };
            if let Some(reason) = reason {
                return Err(Error::NotReady {
                    dir: self.dir.clone(),
                    reason,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Immediate shutdown (SIGQUIT), then SIGKILL if it lingers.
    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGQUIT: the postmaster stops its backends and removes its shared
        // memory; SIGKILL would leave both to the kernel's slow cleanup.
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shutdown();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Where PostgreSQL is installed and who runs it.
#[derive(Debug, Clone)]
struct Install {
    bindir: PathBuf,
    /// The major version (names the template).
    version: String,
    /// The (uid, gid) to run as when we are root.
    run_as: Option<(u32, u32)>,
}

impl Install {
    fn find() -> Result<Install> {
        let bindir = match std::env::var_os(ENV_BINDIR) {
            Some(dir) => PathBuf::from(dir),
            None => newest_debian_bindir()
                .ok_or_else(|| Error::NotInstalled("no /usr/lib/postgresql/*/bin/postgres".into()))?,
        };
        for program in ["initdb", "postgres", "psql"] {
            if !bindir.join(program).exists() {
                return Err(Error::NotInstalled(format!(
                    "{} is missing",
                    bindir.join(program).display()
                )));
            }
        }
        let version = bindir
            .parent()
            .and_then(Path::file_name)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pg".into());
        let run_as = if is_root() {
            Some(user_ids("postgres")?)
        } else {
            None
        };
        Ok(Install {
            bindir,
            version,
            run_as,
        })
    }

    /// A command running `program` as the server's user; with `pdeathsig`
    /// the kernel kills it when the process that started it dies.
    fn command(&self, program: &str, pdeathsig: bool) -> Command {
        let mut command = Command::new("setpriv");
        if let Some((uid, gid)) = self.run_as {
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups");
        }
        if pdeathsig {
            command.arg("--pdeathsig").arg("KILL");
        }
        command.arg("--").arg(self.bindir.join(program));
        command
    }

    /// The template data directory (made once with `initdb`; later calls
    /// reuse it). Parallel first callers each build one; one wins the rename.
    fn template(&self) -> Result<PathBuf> {
        let base = base_dir();
        let template = base.join(format!("template-{}", self.version));
        if template.join("complete").exists() {
            return Ok(template);
        }
        fs::create_dir_all(&base).map_err(io_error(format!("creating {}", base.display())))?;
        static N: AtomicU32 = AtomicU32::new(0);
        let build = base.join(format!(
            "build-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&build);
        fs::create_dir_all(&build).map_err(io_error(format!("creating {}", build.display())))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&build, Some(uid), Some(gid)).map_err(io_error(format!(
                "handing {} to the server's user",
                build.display()
            )))?;
        }
        let result = run(self
            .command("initdb", false)
            .arg("-D")
            .arg(build.join("data"))
            .arg("-U")
            .arg(USER)
            .arg("--auth=trust")
            .arg("--no-sync")
            .arg("--no-instructions")
            // 1 MiB WAL segments instead of 16: a smaller copy per server.
            .arg("--wal-segsize=1")
            .arg("-E")
            .arg("UTF8")
            .arg("--no-locale"))
        .and_then(|_| {
            fs::write(build.join("complete"), b"").map_err(io_error("marking the template complete"))
        });
        if let Err(err) = result {
            let _ = fs::remove_dir_all(&build);
            return Err(err);
        }
        if fs::rename(&build, &template).is_err() {
            // Another process won the race; its template is as good.
            let _ = fs::remove_dir_all(&build);
        }
        if template.join("complete").exists() {
            Ok(template)
        } else {
            Err(Error::NotReady {
                dir: template,
                reason: "the template was not made".into(),
                log: String::new(),
            })
        }
    }
}

/// Sets the permission bits of `path`.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("setting the mode of {}", path.display())))
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // The effective uid, from /proc: std has no getuid and unsafe is forbidden.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of `name`, from /etc/passwd.
fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() != Some(&name) {
                return None;
            }
            Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
        })
        .ok_or_else(|| Error::NoUser(name.into()))
}

/// Runs a short command; returns its stdout or an error with its stderr.
fn run(command: &mut Command) -> Result<String> {
    let described = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(format!("running {described}")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: described,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name; a zombie is dead.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pid a server or build directory name embeds: `pg-<pid>-<n>`, `build-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pg-").or_else(|| name.strip_prefix("build-"))?;
    let (pid, n) = rest.split_once('-')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes the servers and template builds of test processes that are no
/// longer alive (killing a server that still runs there first). Servers of
/// live processes are never touched. Returns the directories removed.
pub fn sweep_stale() -> Result<Vec<PathBuf>> {
    let base = base_dir();
    let entries = match fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error(format!("listing {}", base.display()))(err)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if owner_pid(&name).is_none_or(alive) {
            continue;
        }
        let dir = entry.path();
        if let Some(pid) = fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        {
            // Only if that pid is really this directory's server.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_are_read_from_our_names_only() {
        assert_eq!(owner_pid("pg-123-4"), Some(123));
        assert_eq!(owner_pid("build-77-0"), Some(77));
        assert_eq!(owner_pid("template-15"), None);
        assert_eq!(owner_pid("pg-123-"), None);
        assert_eq!(owner_pid("pg-x-1"), None);
    }
}
