//! A lab: one private Open vSwitch in a network namespace of its own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cmd::{self, OVS_COMMAND_TIMEOUT, OVS_TIMEOUT_SECS, lock};
use crate::error::{Error, Result};
use crate::netns;
use crate::prereq::{VSWITCH_SCHEMA, check_prerequisites};
use crate::process::{self, BackgroundProcess};
use crate::sweep::{self, LAB_PREFIX};

/// Numbers the labs of this process; with the pid it makes lab names unique
/// across every test process running at the same time.
static LABS_STARTED: AtomicU32 = AtomicU32::new(0);

/// Deadline for a daemon to start and detach.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a freshly started or restarted ovs-vswitchd gets to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for a value that ovs-vswitchd writes back to the
/// database (a datapath id, an ofport).
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Every OpenFlow version the userspace switch speaks, for probes that must
/// work whatever `protocols` a bridge was given.
const ALL_OPENFLOW: &str = "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15";

/// A private Open vSwitch test bed: an `ovsdb-server` and an `ovs-vswitchd`
/// (userspace datapath) running in a network namespace of their own, with a
/// private run directory, plus the hosts attached to its bridges.
///
/// Dropping the lab tears everything down (best effort, also while
/// unwinding from a panic); [`Lab::shutdown`] does the same and reports
/// errors. Every method takes `&self`, so a lab can be shared between
/// threads.
#[derive(Debug)]
pub struct Lab {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<State>,
    closed: bool,
}

/// What the lab has created beyond the fixed daemons, for teardown.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) hosts: Vec<HostRecord>,
    next_patch: u32,
}

#[derive(Debug)]
pub(crate) struct HostRecord {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) port: String,
}

/// What a bridge does when it has no controller connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Forward only by the flows installed (nothing without a controller).
    /// flowgate's choice: the data plane never falls back to learning.
    #[default]
    Secure,
    /// Fall back to acting as a learning switch.
    Standalone,
}

impl FailMode {
    /// The value of the bridge's `fail_mode` column.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Secure => "secure",
            FailMode::Standalone => "standalone",
        }
    }
}

/// How to create a bridge; [`Default`] gives a secure bridge speaking
/// OpenFlow 1.0 and 1.3 to 1.5, with a datapath id chosen by Open vSwitch
/// and no controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeOptions {
    /// Datapath id to force (`other_config:datapath-id`); must be non-zero.
    pub datapath_id: Option<u64>,
    /// Behaviour without a controller.
    pub fail_mode: FailMode,
    /// OpenFlow versions allowed, as Open vSwitch names them ("OpenFlow13").
    pub protocols: Vec<String>,
    /// Controller targets ("tcp:127.0.0.1:6653", "unix:/path"); empty for none.
    pub controllers: Vec<String>,
    /// Extra `external_ids` on the bridge.
    pub external_ids: Vec<(String, String)>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            datapath_id: None,
            fail_mode: FailMode::Secure,
            protocols: ["OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"]
                .into_iter()
                .map(String::from)
                .collect(),
            controllers: Vec::new(),
            external_ids: Vec::new(),
        }
    }
}

impl BridgeOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forces the datapath id.
    pub fn datapath_id(mut self, datapath_id: u64) -> Self {
        self.datapath_id = Some(datapath_id);
        self
    }

    /// Sets the fail mode.
    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = fail_mode;
        self
    }

    /// Replaces the allowed OpenFlow versions.
    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Adds a controller target.
    pub fn controller(mut self, target: &str) -> Self {
        self.controllers.push(target.to_owned());
        self
    }

    /// Adds an `external_ids` entry.
    pub fn external_id(mut self, key: &str, value: &str) -> Self {
        self.external_ids.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A bridge of a lab, as Open vSwitch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    name: String,
    datapath_id: u64,
    mgmt_socket: PathBuf,
}

impl Bridge {
    /// Its name (also the name of its local port).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its datapath id, read back from the database.
    pub fn datapath_id(&self) -> u64 {
        self.datapath_id
    }

    /// The Unix socket on which the bridge accepts OpenFlow connections
    /// (`RUNDIR/BRIDGE.mgmt`): a controller outside the lab's namespace can
    /// connect here instead of the bridge connecting to it.
    pub fn mgmt_socket(&self) -> &Path {
        &self.mgmt_socket
    }
}

impl Lab {
    /// Starts a new lab: sweeps leftovers of dead test processes, creates a
    /// namespace named `fgt-<pid>-<n>` and a private directory
    /// `$TMPDIR/flowgate-testbed/<name>`, starts `ovsdb-server` and
    /// `ovs-vswitchd` in the namespace, and waits until the switch answers.
    pub fn start() -> Result<Lab> {
        check_prerequisites()?;
        // Best effort: a leftover we cannot remove must not stop new labs.
        let _ = sweep::sweep_stale();

        let n = LABS_STARTED.fetch_add(1, Ordering::Relaxed);
        let name = format!("{LAB_PREFIX}{}-{n}", std::process::id());
        let dir = sweep::base_dir()?.join(&name);
        remove_leftovers(&name, &dir)?;
        // From here on, dropping `lab` cleans up whatever was created.
        let lab = Lab {
            name,
            dir,
            state: Mutex::new(State::default()),
            closed: false,
        };
        create_private_dir(&lab.dir)?;
        netns::add(&lab.name)?;
        // The loopback carries controller connections (tcp:127.0.0.1:6653).
        netns::ip(&lab.name, &["link", "set", "lo", "up"])?;
        // Ports created from now on get no IPv6, so the kernel never sends
        // router solicitations or MLD reports into the bridges. Best effort:
        // without IPv6 support in the kernel there is nothing to turn off.
        let _ = lab.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);

        cmd::run_ok(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(lab.dir.join("conf.db"))
                .arg(VSWITCH_SCHEMA),
            OVS_COMMAND_TIMEOUT,
        )?;
        lab.start_ovsdb()?;
        lab.vsctl(&["--no-wait", "init"])?;
        lab.start_vswitchd()?;
        Ok(lab)
    }

    /// The lab's network namespace (also the lab's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The private directory holding the database, sockets, pidfiles, logs
    /// and the output of background processes.
    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    /// The database socket (`ovs-vsctl --db=unix:...`).
    pub fn db_socket(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// The control socket of `ovs-vswitchd` (`ovs-appctl -t ...`).
    pub fn vswitchd_ctl(&self) -> PathBuf {
        self.dir.join("vswitchd.ctl")
    }

    /// The log file of `ovs-vswitchd`: the first place to look when a test
    /// fails.
    pub fn vswitchd_log(&self) -> PathBuf {
        self.dir.join("vswitchd.log")
    }

    /// The pid of the running `ovs-vswitchd`, from its pidfile.
    pub fn vswitchd_pid(&self) -> Result<u32> {
        read_pidfile(&self.dir.join("vswitchd.pid"))
    }

    /// The pid of the running `ovsdb-server`, from its pidfile.
    pub fn ovsdb_pid(&self) -> Result<u32> {
        read_pidfile(&self.dir.join("ovsdb.pid"))
    }

    /// Runs `ovs-vsctl` against the lab's database and returns its stdout.
    /// Put global options such as `--no-wait` first in `args`.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ovs-vsctl");
        cmd.arg(format!("--db=unix:{}", self.db_socket().display()))
            .arg(format!("--timeout={OVS_TIMEOUT_SECS}"))
            .args(args);
        cmd::run_ok(&mut cmd, OVS_COMMAND_TIMEOUT)
    }

    /// Runs `ovs-ofctl` with `OVS_RUNDIR` set to the lab's directory, so a
    /// bridge name as target reaches `RUNDIR/BRIDGE.mgmt`. Returns stdout.
    pub fn ofctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ovs-ofctl");
        cmd.env("OVS_RUNDIR", &self.dir)
            .arg(format!("--timeout={OVS_TIMEOUT_SECS}"))
            .args(args);
        cmd::run_ok(&mut cmd, OVS_COMMAND_TIMEOUT)
    }

    /// Runs `ovs-appctl -t RUNDIR/vswitchd.ctl` and returns its stdout.
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ovs-appctl");
        cmd.arg(format!("--timeout={OVS_TIMEOUT_SECS}"))
            .arg("-t")
            .arg(self.vswitchd_ctl())
            .args(args);
        cmd::run_ok(&mut cmd, OVS_COMMAND_TIMEOUT)
    }

    /// Runs a command inside the lab's namespace (bounded by a 30 s
    /// deadline) and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        cmd::require_program(args)?;
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        cmd::run_ok(&mut cmd, cmd::DEFAULT_TIMEOUT)
    }

    /// A [`Command`] that runs `program` inside the lab's namespace, for
    /// callers that need more control (environment, stdin). Unlike the other
    /// methods it has no deadline of its own.
    pub fn command(&self, program: &str) -> Command {
        netns::exec_command(&self.name, program)
    }

    /// Starts a command in the background inside the lab's namespace (a
    /// controller, say). It is killed when the guard drops, and at the
    /// latest when the lab is torn down.
    pub fn spawn(&self, args: &[&str]) -> Result<BackgroundProcess> {
        cmd::require_program(args)?;
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        BackgroundProcess::spawn(cmd, &self.spawn_dir(), &label(&self.name, args[0]))
    }

    pub(crate) fn spawn_dir(&self) -> PathBuf {
        self.dir.join("spawn")
    }

    /// Adds a bridge with [`BridgeOptions::default`].
    pub fn add_bridge(&self, name: &str) -> Result<Bridge> {
        self.add_bridge_with(name, &BridgeOptions::default())
    }

    /// Adds a userspace (`datapath_type=netdev`) bridge and returns it once
    /// ovs-vswitchd has created it.
    pub fn add_bridge_with(&self, name: &str, options: &BridgeOptions) -> Result<Bridge> {
        check_ifname("bridge name", name)?;
        let mut args: Vec<String> = ["add-br", name, "--", "set", "Bridge", name]
            .into_iter()
            .map(String::from)
            .collect();
        args.push("datapath_type=netdev".into());
        args.push(format!("fail_mode={}", options.fail_mode.as_str()));
        // The lab's bridges never carry their controller's traffic, and the
        // hidden flows in-band control would add only blur what tests see.
        args.push("other_config:disable-in-band=true".into());
        if !options.protocols.is_empty() {
            args.push(format!("protocols={}", options.protocols.join(",")));
        }
        if let Some(dpid) = options.datapath_id {
            if dpid == 0 {
                return Err(Error::Invalid {
                    what: "datapath id",
                    value: "0".into(),
                    reason: "Open vSwitch ignores an all-zero datapath id".into(),
                });
            }
            args.push(format!("other_config:datapath-id={dpid:016x}"));
        }
        for (key, value) in &options.external_ids {
            args.push(format!(
                "external_ids:{}={}",
                ovsdb_string(key),
                ovsdb_string(value)
            ));
        }
        if !options.controllers.is_empty() {
            args.extend(["--".into(), "set-controller".into(), name.into()]);
            args.extend(options.controllers.iter().cloned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&args)?;
        let bridge = self.bridge(name)?;
        if let Some(wanted) = options.datapath_id
            && bridge.datapath_id != wanted
        {
            return Err(Error::Invalid {
                what: "datapath id",
                value: format!("{wanted:016x}"),
                reason: format!("Open vSwitch chose {:016x} instead", bridge.datapath_id),
            });
        }
        Ok(bridge)
    }

    /// Describes an existing bridge, waiting (bounded) until ovs-vswitchd
    /// has written its datapath id.
    pub fn bridge(&self, name: &str) -> Result<Bridge> {
        let datapath_id = retry(
            &format!("the datapath id of bridge {name}"),
            READ_BACK_TIMEOUT,
            || {
                let out = self.vsctl(&["get", "Bridge", name, "datapath_id"])?;
                let hex = out.trim().trim_matches('"');
                Ok(u64::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 16))
            },
        )?;
        Ok(Bridge {
            name: name.to_owned(),
            datapath_id,
            mgmt_socket: self.dir.join(format!("{name}.mgmt")),
        })
    }

    /// Names of the lab's bridges.
    pub fn bridges(&self) -> Result<Vec<String>> {
        Ok(self.vsctl(&["list-br"])?.lines().map(str::to_owned).collect())
    }

    /// Deletes a bridge and its ports.
    pub fn del_bridge(&self, name: &str) -> Result<()> {
        self.vsctl(&["del-br", name]).map(drop)
    }

    /// Points a bridge at one controller, replacing any others.
    pub fn set_controller(&self, bridge: &str, target: &str) -> Result<()> {
        self.set_controllers(bridge, &[target])
    }

    /// Points a bridge at several controllers (all connected at once, as
    /// with redundant controllers), replacing any others.
    ///
    /// A `unix:` target must lie inside [`run_dir`](Self::run_dir): Open
    /// vSwitch refuses controller sockets elsewhere.
    pub fn set_controllers(&self, bridge: &str, targets: &[&str]) -> Result<()> {
        let mut args = vec!["set-controller", bridge];
        args.extend_from_slice(targets);
        self.vsctl(&args).map(drop)
    }

    /// Removes every controller of a bridge.
    pub fn del_controller(&self, bridge: &str) -> Result<()> {
        self.vsctl(&["del-controller", bridge]).map(drop)
    }

    /// Joins two bridges with a pair of patch ports and returns their names
    /// (the one on `bridge_a` first). Names are `patch<N>-a`/`patch<N>-b`,
    /// unique in the lab.
    pub fn add_patch(&self, bridge_a: &str, bridge_b: &str) -> Result<(String, String)> {
        let n = {
            let mut state = lock(&self.state);
            let n = state.next_patch;
            state.next_patch += 1;
            n
        };
        let a = format!("patch{n}-a");
        let b = format!("patch{n}-b");
        let peer_a = format!("options:peer={b}");
        let peer_b = format!("options:peer={a}");
        self.vsctl(&[
            "add-port",
            bridge_a,
            &a,
            "--",
            "set",
            "Interface",
            &a,
            "type=patch",
            &peer_a,
            "--",
            "add-port",
            bridge_b,
            &b,
            "--",
            "set",
            "Interface",
            &b,
            "type=patch",
            &peer_b,
        ])?;
        Ok((a, b))
    }

    /// The OpenFlow port number of an interface, waiting (bounded) until
    /// ovs-vswitchd has assigned it.
    pub fn ofport(&self, interface: &str) -> Result<u32> {
        let result = retry(
            &format!("an ofport for interface {interface}"),
            READ_BACK_TIMEOUT,
            || {
                let out = self.vsctl(&["get", "Interface", interface, "ofport"])?;
                // "[]" until assigned, -1 if the interface failed to open.
                Ok(out.trim().parse::<u32>().ok().filter(|&p| p > 0))
            },
        );
        result.map_err(|e| match self.vsctl(&["get", "Interface", interface, "error"]) {
            Ok(why) if why.trim() != "[]" => Error::Timeout {
                what: format!("an ofport for interface {interface} (its error: {})", why.trim()),
                timeout: READ_BACK_TIMEOUT,
            },
            _ => e,
        })
    }

    fn start_ovsdb(&self) -> Result<()> {
        let d = &self.dir;
        let mut cmd = self.command("ovsdb-server");
        self.ovs_env(&mut cmd);
        cmd.arg(d.join("conf.db"))
            .arg(format!("--remote=punix:{}", self.db_socket().display()))
            .arg(format!("--pidfile={}", d.join("ovsdb.pid").display()))
            .arg(format!("--unixctl={}", d.join("ovsdb.ctl").display()))
            .arg(format!("--log-file={}", d.join("ovsdb.log").display()))
            .args(["--detach", "-vconsole:off", "-vsyslog:off"]);
        cmd::run_ok(&mut cmd, DAEMON_START_TIMEOUT).map(drop)
    }

    /// Starts `ovs-vswitchd` in the lab's namespace and waits until it
    /// answers and has brought up every bridge in the database.
    pub fn start_vswitchd(&self) -> Result<()> {
        let d = &self.dir;
        let mut cmd = self.command("ovs-vswitchd");
        self.ovs_env(&mut cmd);
        cmd.arg(format!("unix:{}", self.db_socket().display()))
            .arg("--disable-system")
            .arg(format!("--pidfile={}", d.join("vswitchd.pid").display()))
            .arg(format!("--unixctl={}", self.vswitchd_ctl().display()))
            .arg(format!("--log-file={}", self.vswitchd_log().display()))
            .args(["--detach", "-vconsole:off", "-vsyslog:off"]);
        cmd::run_ok(&mut cmd, DAEMON_START_TIMEOUT)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        retry("ovs-vswitchd to answer", READY_TIMEOUT, || {
            self.appctl(&["version"]).map(|_| Some(()))
        })?;
        // After a restart the bridges come back from the database; a bridge
        // is usable once its management socket answers OpenFlow.
        for bridge in self.bridges()? {
            let left = deadline.saturating_duration_since(Instant::now());
            retry(&format!("bridge {bridge} to answer OpenFlow"), left, || {
                self.ofctl(&["-O", ALL_OPENFLOW, "show", &bridge])
                    .map(|_| Some(()))
            })?;
        }
        Ok(())
    }

    /// Stops `ovs-vswitchd` (gracefully, else with SIGKILL) and waits until
    /// it is gone. Its flows are lost; bridges and ports stay in the
    /// database. Does nothing if it is not running.
    pub fn stop_vswitchd(&self) -> Result<()> {
        let Ok(pid) = self.vswitchd_pid() else {
            return Ok(());
        };
        // `exit` removes its sockets and pidfile; its reply may be lost.
        let _ = self.appctl(&["exit"]);
        let what = format!("ovs-vswitchd (pid {pid}) to exit");
        if retry(&what, Duration::from_secs(10), || {
            Ok((!process::alive(pid)).then_some(()))
        })
        .is_err()
        {
            cmd::kill_pids(&[pid]);
            retry(&what, Duration::from_secs(5), || {
                Ok((!process::alive(pid)).then_some(()))
            })?;
        }
        Ok(())
    }

    /// Restarts `ovs-vswitchd`, as a switch reboot would: flows vanish,
    /// bridges and ports come back from the database (with their ofports).
    pub fn restart_vswitchd(&self) -> Result<()> {
        self.stop_vswitchd()?;
        self.start_vswitchd()
    }

    /// Tears the lab down and reports any error. Dropping the lab does the
    /// same but can only ignore errors.
    pub fn shutdown(mut self) -> Result<()> {
        self.teardown()
    }

    /// Kills every process in the hosts' and the lab's namespaces, and in
    /// the namespaces plugged into the lab from outside by veth pairs (such
    /// as instances of flowgate's netns driver), deletes the namespaces
    /// (their veths die with them) and the directory. Carries on past
    /// errors so one stuck piece does not leak the rest.
    fn teardown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let hosts = std::mem::take(&mut lock(&self.state).hosts);
        let mut errors = Vec::new();
        // Read first: deleting any namespace cuts the veths that say what
        // was plugged in.
        let plugged = sweep::plugged_into(&self.name).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        let hosts = hosts.iter().map(|h| h.netns.as_str());
        for ns in plugged
            .iter()
            .map(String::as_str)
            .chain(hosts)
            .chain([self.name.as_str()])
        {
            if let Err(e) = netns::delete(ns) {
                errors.push(e);
            }
        }
        if let Err(e) = remove_dir(&self.dir) {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Cleanup {
                what: format!("lab {}", self.name),
                errors,
            })
        }
    }

    fn ovs_env(&self, cmd: &mut Command) {
        cmd.env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            // Drop cannot fail; say what leaked so it can be found (and the
            // next sweep will retry). Writing to stderr must not panic.
            use std::io::Write;
            let _ = writeln!(io::stderr(), "testbed: {e}");
        }
    }
}

/// Retries `attempt` until it yields a value or `timeout` passes; on timeout
/// the error names the last failure, which usually says why.
pub(crate) fn retry<T>(
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match attempt() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        let now = Instant::now();
        if now >= deadline {
            let what = match last {
                Some(e) => format!("{what} (last error: {e})"),
                None => what.to_owned(),
            };
            return Err(Error::Timeout { what, timeout });
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline - now));
    }
}

/// Removes what an earlier process with our pid left under our name: it is
/// necessarily stale, since names embed the pid and this process's counter.
fn remove_leftovers(name: &str, dir: &Path) -> Result<()> {
    let hosts = format!("{name}-");
    for ns in netns::list()? {
        if ns == name || ns.starts_with(&hosts) {
            netns::delete(&ns)?;
        }
    }
    remove_dir(dir)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let io_error = |source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    };
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    // Owner-only: the directory holds the switch's control sockets.
    fs::DirBuilder::new().mode(0o700).create(dir).map_err(io_error)
}

pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            context: format!("removing {}", dir.display()),
            source,
        }),
    }
}

fn read_pidfile(path: &Path) -> Result<u32> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    text.trim().parse().map_err(|_| Error::UnexpectedOutput {
        command: format!("cat {}", path.display()),
        output: text.clone(),
    })
}

/// Checks a name that becomes a kernel interface name (or shares its
/// namespace, as OVS port names do): at most 15 bytes, and only characters
/// that need no quoting anywhere.
pub(crate) fn check_ifname(what: &'static str, name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::Invalid {
            what,
            value: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > 15 {
        return invalid("must be 1 to 15 characters (the kernel's limit for interface names)");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return invalid("only ASCII letters, digits, '-', '_' and '.' (not first) are allowed");
    }
    Ok(())
}

/// Quotes a string for ovs-vsctl's column syntax (`key="value"`).
pub(crate) fn ovsdb_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A file-name-friendly label for a background process's logs.
pub(crate) fn label(netns: &str, program: &str) -> String {
    let program = Path::new(program)
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{netns}-{program}")
}
