//! The OVN side: Debian's OVN (`ovn-central`, `ovn-host`) with one chassis,
//! every daemon in userspace inside a private test-bed lab.
//!
//! The lab (crates/testbed) runs the chassis' Open vSwitch: its
//! `ovsdb-server` and `ovs-vswitchd` in a network namespace of their own.
//! The OVN northbound and southbound `ovsdb-server`s, `ovn-northd` and
//! `ovn-controller` run in the same namespace, with their databases, sockets
//! and logs in `LAB_DIR/ovn/`; they die with the lab (or its sweep after a
//! kill). Instances are logical switch ports bound to internal OVS ports
//! through `external_ids:iface-id`; they carry no traffic.
//!
//! The policy (see [`Policy`]): one logical switch behind a logical router
//! with a gateway port on this chassis (created before timing, as flowgate's
//! network, pool and hypervisor are), the instances' ports, a port group
//! with default-deny ingress and allow-related ACLs (the group-as-source
//! rule uses the port group's address set `$pg_ip4`), an allow-related
//! egress ACL, and `dnat_and_snat` rules for the Elastic IPs. Every change
//! is made with `ovn-nbctl --wait=hv`, which returns once the chassis has
//! installed the flows of the change.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::{BackgroundProcess, BridgeOptions, FailMode, Lab, wait_until};

use crate::error::{Error, Result};
use crate::figures::{Figures, Policy};
use crate::probe::Probe;
use crate::util::{self, cpu_time, cpu_total, rss, timed};

const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
const CHASSIS: &str = "chassis-1";
/// Seconds any OVN or OVS command may take before it gives up by itself.
const TOOL_TIMEOUT: &str = "--timeout=900";

/// A running OVN with one chassis. Dropping it stops every daemon and
/// removes the lab.
pub struct OvnChassis {
    // Fields drop in order: the daemons, then the lab with its namespace.
    controller: BackgroundProcess,
    northd: BackgroundProcess,
    sb: BackgroundProcess,
    nb: BackgroundProcess,
    dir: PathBuf,
    lab: Lab,
}

impl OvnChassis {
    /// Starts the lab, both OVN databases, `ovn-northd` and `ovn-controller`
    /// on the lab's Open vSwitch, and waits until the chassis is registered
    /// and in sync.
    pub fn start() -> Result<OvnChassis> {
        for program in ["ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl"] {
            which(program)?;
        }
        let lab = Lab::start()?;
        lab.add_bridge_with("br-int", &BridgeOptions::new())?;
        // The public side: the localnet port of the gateway's switch maps
        // to this bridge (ovn-controller joins them with patch ports).
        lab.add_bridge_with("br-ex", &BridgeOptions::new().fail_mode(FailMode::Standalone))?;
        let dir = lab.run_dir().join("ovn");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = |name: &str| dir.join(name).display().to_string();
        for (db, schema) in [("nb.db", NB_SCHEMA), ("sb.db", SB_SCHEMA)] {
            util::run(Command::new("ovsdb-tool").args(["create", &path(db), schema]))?;
        }
        let database = |name: &str| -> Result<BackgroundProcess> {
            Ok(lab.spawn(&[
                "ovsdb-server",
                &path(&format!("{name}.db")),
                &format!("--remote=punix:{}", path(&format!("{name}.sock"))),
                &format!("--unixctl={}", path(&format!("{name}.ctl"))),
                &format!("--log-file={}", path(&format!("{name}.log"))),
                "-vconsole:off",
                "--no-chdir",
            ])?)
        };
        let nb = database("nb")?;
        let sb = database("sb")?;
        for socket in ["nb.sock", "sb.sock"] {
            let socket = dir.join(socket);
            wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
                socket.exists()
            })?;
        }
        let northd = lab.spawn(&[
            "env",
            &format!("OVN_RUNDIR={}", dir.display()),
            "ovn-northd",
            &format!("--ovnnb-db=unix:{}", path("nb.sock")),
            &format!("--ovnsb-db=unix:{}", path("sb.sock")),
            &format!("--unixctl={}", path("northd.ctl")),
            &format!("--log-file={}", path("northd.log")),
            "-vconsole:off",
            "--no-chdir",
        ])?;
        lab.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={CHASSIS}"),
            &format!("external_ids:ovn-remote=unix:{}", path("sb.sock")),
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge=br-int",
            "external_ids:ovn-bridge-datapath-type=netdev",
            "external_ids:ovn-bridge-mappings=physnet:br-ex",
        ])?;
        // ovn-controller finds br-int's management socket in OVS_RUNDIR and
        // puts its control socket in OVN_RUNDIR.
        let controller = lab.spawn(&[
            "env",
            &format!("OVS_RUNDIR={}", lab.run_dir().display()),
            &format!("OVN_RUNDIR={}", dir.display()),
            "ovn-controller",
            &format!("unix:{}", lab.db_socket().display()),
            &format!("--log-file={}", path("controller.log")),
            "-vconsole:off",
            "--no-chdir",
        ])?;
        let chassis = OvnChassis {
            controller,
            northd,
            sb,
            nb,
            dir,
            lab,
        };
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            chassis
                .sbctl(&["--bare", "--columns=name", "list", "Chassis"])
                .is_ok_and(|out| out.contains(CHASSIS))
        })?;
        chassis.nbctl(&["--wait=hv", "sync"])?;
        Ok(chassis)
    }

    fn nbctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ovn-nbctl");
        cmd.arg(format!("--db=unix:{}", self.dir.join("nb.sock").display()))
            .arg(TOOL_TIMEOUT)
            .args(args);
        cmd
    }

    /// Runs `ovn-nbctl` on the northbound database.
    pub fn nbctl(&self, args: &[&str]) -> Result<String> {
        util::run(&mut self.nbctl_command(args))
    }

    /// Runs `ovn-sbctl` on the southbound database.
    pub fn sbctl(&self, args: &[&str]) -> Result<String> {
        util::run(
            Command::new("ovn-sbctl")
                .arg(format!("--db=unix:{}", self.dir.join("sb.sock").display()))
                .arg(TOOL_TIMEOUT)
                .args(args),
        )
    }

    /// The lab holding the chassis' Open vSwitch.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The control plane's processes with their pids.
    pub fn control_processes(&self) -> Vec<(&'static str, u32)> {
        vec![
            ("ovn-controller", self.controller.pid()),
            ("ovn-northd", self.northd.pid()),
            ("ovsdb-server (OVN NB)", self.nb.pid()),
            ("ovsdb-server (OVN SB)", self.sb.pid()),
        ]
    }
}

fn which(program: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Error::Command {
            command: program.into(),
            detail: "not installed (Debian packages ovn-central and ovn-host: run ./scripts/setup.sh)".into(),
        })
    }
}

/// `ovs-vsctl` commands plugging the instances' ports, bound to their
/// logical ports by `external_ids:iface-id`.
fn port_commands(policy: &Policy) -> Vec<String> {
    let mut args = Vec::new();
    for i in 0..policy.instances {
        args.extend([
            "--".into(),
            "add-port".into(),
            "br-int".into(),
            format!("vm{i}"),
            "--".into(),
            "set".into(),
            "Interface".into(),
            format!("vm{i}"),
            "type=internal".into(),
            format!("external_ids:iface-id=vm{i}"),
        ]);
    }
    args
}

/// The network, router and gateway port: what flowgate's operator
/// registers with `flowgate admin` before tenants arrive. Not timed.
const INFRASTRUCTURE: &[&str] = &[
    "ls-add",
    "ls0",
    "--",
    "lr-add",
    "lr0",
    "--",
    "lrp-add",
    "lr0",
    "lrp-ls0",
    "02:00:00:00:ff:01",
    "10.0.0.1/16",
    "--",
    "lsp-add",
    "ls0",
    "ls0-lr0",
    "--",
    "lsp-set-type",
    "ls0-lr0",
    "router",
    "--",
    "lsp-set-addresses",
    "ls0-lr0",
    "router",
    "--",
    "lsp-set-options",
    "ls0-lr0",
    "router-port=lrp-ls0",
    "--",
    "ls-add",
    "pub",
    "--",
    "lrp-add",
    "lr0",
    "lrp-pub",
    "02:00:00:00:ff:02",
    "198.18.0.2/16",
    "--",
    "lrp-set-gateway-chassis",
    "lrp-pub",
    CHASSIS,
    "--",
    "lsp-add",
    "pub",
    "pub-lr0",
    "--",
    "lsp-set-type",
    "pub-lr0",
    "router",
    "--",
    "lsp-set-addresses",
    "pub-lr0",
    "router",
    "--",
    "lsp-set-options",
    "pub-lr0",
    "router-port=lrp-pub",
    "--",
    "lsp-add",
    "pub",
    "ln-pub",
    "--",
    "lsp-set-type",
    "ln-pub",
    "localnet",
    "--",
    "lsp-set-addresses",
    "ln-pub",
    "unknown",
    "--",
    "lsp-set-options",
    "ln-pub",
    "network_name=physnet",
];

/// The tenant's objects: instance ports, the port group with its ACLs,
/// the Elastic IPs. One `ovn-nbctl` transaction.
fn tenant_commands(policy: &Policy) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| {
        args.push("--".into());
        args.extend(a.iter().map(|s| s.to_string()));
    };
    for i in 0..policy.instances {
        let ip = Policy::private_ip(i);
        let mac = format!("02:00:00:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff);
        let name = format!("vm{i}");
        push(&["lsp-add", "ls0", &name]);
        push(&["lsp-set-addresses", &name, &format!("{mac} {ip}")]);
    }
    let mut pg = vec!["pg-add".to_string(), "pg".to_string()];
    pg.extend((0..policy.instances).map(|i| format!("vm{i}")));
    push(&pg.iter().map(String::as_str).collect::<Vec<_>>());
    // Default-deny ingress, then the allow rules (stateful: allow-related).
    push(&[
        "acl-add",
        "pg",
        "to-lport",
        "1001",
        "outport == @pg && ip4",
        "drop",
    ]);
    for rule in [
        "outport == @pg && ip4 && ip4.src == 10.0.0.0/8 && tcp.dst == 22",
        "outport == @pg && ip4 && tcp.dst == 80",
        "outport == @pg && ip4 && tcp.dst == 443",
        "outport == @pg && icmp4",
        "outport == @pg && ip4 && ip4.src == $pg_ip4",
    ] {
        push(&["acl-add", "pg", "to-lport", "1002", rule, "allow-related"]);
    }
    push(&[
        "acl-add",
        "pg",
        "from-lport",
        "1002",
        "inport == @pg && ip4",
        "allow-related",
    ]);
    for k in 0..policy.addresses {
        push(&[
            "lr-nat-add",
            "lr0",
            "dnat_and_snat",
            &Policy::public_ip(k).to_string(),
            &Policy::private_ip(k).to_string(),
        ]);
    }
    // The leading "--" is for the global options before it.
    args.remove(0);
    args
}

/// Builds the policy on a fresh OVN and measures it.
pub fn measure(policy: &Policy) -> Result<Figures> {
    let ovn = OvnChassis::start()?;
    let lab = ovn.lab();
    ovn.nbctl(&[&["--wait=hv"][..], INFRASTRUCTURE].concat())?;

    // Bulk, in the order of a cloud (and of the flowgate side): the
    // tenant's objects, then the hypervisor plugs the ports, then every
    // port is up (ovn-controller sets a port up once its flows are
    // installed) and the chassis has caught up with everything.
    let control: Vec<u32> = ovn.control_processes().iter().map(|(_, pid)| *pid).collect();
    let vswitchd = lab.vswitchd_pid()?;
    let (cpu_before, switch_before) = (cpu_total(&control), cpu_time(vswitchd));
    let start = Instant::now();
    let tenant = tenant_commands(policy);
    let mut args: Vec<&str> = vec!["--wait=hv"];
    args.extend(tenant.iter().map(String::as_str));
    ovn.nbctl(&args)?;
    let ports = port_commands(policy);
    let ports_time = timed(
        Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", lab.db_socket().display()))
            .arg(TOOL_TIMEOUT)
            .args(&ports),
    )?;
    let mut up: Vec<String> = Vec::new();
    for i in 0..policy.instances {
        if i > 0 {
            up.push("--".into());
        }
        up.extend([
            "wait-until".into(),
            "Logical_Switch_Port".into(),
            format!("vm{i}"),
            "up=true".into(),
        ]);
    }
    ovn.nbctl(&up.iter().map(String::as_str).collect::<Vec<_>>())?;
    ovn.nbctl(&["--wait=hv", "sync"])?;
    let bulk = start.elapsed();
    let bulk_cpu = cpu_total(&control).saturating_sub(cpu_before);
    let bulk_switch_cpu = cpu_time(vswitchd).saturating_sub(switch_before);

    let mut probe = Probe::connect(lab.bridge("br-int")?.mgmt_socket())?;
    let flows = u64::from(probe.flow_count()?);
    let bound = ovn.sbctl(&["--bare", "--columns=chassis", "find", "Port_Binding", "type=\"\""])?;
    let bound = bound.lines().filter(|l| !l.trim().is_empty()).count();
    if bound < policy.instances {
        return Err(Error::Command {
            command: "ovn-sbctl find Port_Binding".into(),
            detail: format!(
                "only {bound} of {} ports are bound to the chassis",
                policy.instances
            ),
        });
    }

    eprintln!("    bulk {bulk:?}; single changes ...");
    let mut figures = Figures {
        system: "OVN",
        bulk,
        bulk_ports: ports_time,
        bulk_cpu,
        bulk_switch_cpu,
        flows,
        ..Figures::default()
    };
    for r in 0..policy.repeats {
        let rule = format!(
            "outport == @pg && ip4 && tcp.dst == {}",
            Policy::added_rule_port(r)
        );
        figures.rule.push(timed(&mut ovn.nbctl_command(&[
            "--wait=hv",
            "acl-add",
            "pg",
            "to-lport",
            "1002",
            &rule,
            "allow-related",
        ]))?);
        let k = policy.addresses + r;
        figures.address.push(timed(&mut ovn.nbctl_command(&[
            "--wait=hv",
            "lr-nat-add",
            "lr0",
            "dnat_and_snat",
            &Policy::public_ip(k).to_string(),
            &Policy::private_ip(k).to_string(),
        ]))?);
        figures
            .noop
            .push(timed(&mut ovn.nbctl_command(&["--wait=hv", "sync"]))?);
    }
    for (name, pid) in ovn.control_processes() {
        figures.control_memory.push((name.into(), rss(pid).unwrap_or(0)));
    }
    figures
        .switch_memory
        .push(("ovs-vswitchd".into(), rss(lab.vswitchd_pid()?).unwrap_or(0)));
    figures.switch_memory.push((
        "ovsdb-server (Open_vSwitch)".into(),
        rss(lab.ovsdb_pid()?).unwrap_or(0),
    ));
    drop(probe);
    Ok(figures)
}
