//! Hosts: network namespaces plugged into a lab's bridges by veth pairs.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::cmd::{self, lock};
use crate::error::{Error, Result};
use crate::lab::{HostRecord, Lab, check_ifname, label, ovsdb_string};
use crate::mac::MacAddr;
use crate::netns;
use crate::process::BackgroundProcess;

/// The name of a host's interface, inside its own namespace.
pub const HOST_IFACE: &str = "eth0";

/// Longest host name: the default port name `h-<name>` must fit in 15 bytes.
const MAX_HOST_NAME: usize = 13;

/// What a host should look like. Build it with [`HostSpec::new`] and the
/// chained setters, or fill in the fields directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Short name, unique in the lab (at most 13 characters).
    pub name: String,
    /// The bridge its port joins.
    pub bridge: String,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// The prefix length of its subnet (`24` for a /24).
    pub prefix_len: u8,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its default gateway, if it has one.
    pub gateway: Option<Ipv4Addr>,
    /// The OpenFlow port number to ask for (`ofport_request`).
    pub ofport: Option<u32>,
    /// The bridge-side port name; default `h-<name>`.
    pub port_name: Option<String>,
    /// `external_ids` on the port's Interface record (`iface-id`, ...).
    pub external_ids: Vec<(String, String)>,
    /// Keep IPv6 on the host's interface. Off by default so the kernel does
    /// not send router solicitations, MLD and DAD packets into the switch.
    pub ipv6: bool,
}

impl HostSpec {
    /// A host `name` on `bridge` with address `ip/prefix_len` and `mac`.
    pub fn new(name: &str, bridge: &str, ip: Ipv4Addr, prefix_len: u8, mac: MacAddr) -> Self {
        HostSpec {
            name: name.to_owned(),
            bridge: bridge.to_owned(),
            ip,
            prefix_len,
            mac,
            gateway: None,
            ofport: None,
            port_name: None,
            external_ids: Vec::new(),
            ipv6: false,
        }
    }

    /// Sets the default gateway.
    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Asks for a particular OpenFlow port number.
    pub fn ofport(mut self, ofport: u32) -> Self {
        self.ofport = Some(ofport);
        self
    }

    /// Names the bridge-side port.
    pub fn port_name(mut self, port_name: &str) -> Self {
        self.port_name = Some(port_name.to_owned());
        self
    }

    /// Adds an `external_ids` entry to the port's Interface record.
    pub fn external_id(mut self, key: &str, value: &str) -> Self {
        self.external_ids.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Keeps (or drops) IPv6 on the host's interface.
    pub fn ipv6(mut self, enabled: bool) -> Self {
        self.ipv6 = enabled;
        self
    }
}

/// A host: a network namespace with one interface, [`HOST_IFACE`], whose
/// veth peer is a port on a lab bridge.
///
/// A `Host` is a plain description plus helpers to run commands in it; the
/// [`Lab`] owns the namespace and removes it at teardown.
#[derive(Clone, Debug)]
pub struct Host {
    name: String,
    netns: String,
    bridge: String,
    port: String,
    ofport: u32,
    ip: Ipv4Addr,
    prefix_len: u8,
    mac: MacAddr,
    gateway: Option<Ipv4Addr>,
    spawn_dir: PathBuf,
}

impl Host {
    /// Its short name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The bridge it is plugged into.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The bridge-side port (the veth end in the lab's namespace).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// The port's OpenFlow port number, as Open vSwitch assigned it.
    pub fn ofport(&self) -> u32 {
        self.ofport
    }

    /// The interface inside the host, [`HOST_IFACE`].
    pub fn iface(&self) -> &'static str {
        HOST_IFACE
    }

    /// Its IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its subnet's prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Its MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Its default gateway.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.gateway
    }

    /// A [`Command`] running `program` in the host, for callers that need
    /// more control. It has no deadline of its own.
    pub fn command(&self, program: &str) -> Command {
        netns::exec_command(&self.netns, program)
    }

    /// Runs a command in the host with a 30 s deadline and returns its
    /// output whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        self.exec_timeout(args, cmd::DEFAULT_TIMEOUT)
    }

    /// Runs a command in the host with the given deadline and returns its
    /// output whatever its exit status.
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        cmd::require_program(args)?;
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        cmd::run(&mut cmd, timeout)
    }

    /// Runs a command in the host and returns its stdout, or an error with
    /// the command line and stderr if it failed.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        cmd::require_program(args)?;
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        cmd::run_ok(&mut cmd, cmd::DEFAULT_TIMEOUT)
    }

    /// Sends one ping to `target` (waiting at most a second for the reply).
    /// Poll it with [`wait_until`](crate::wait_until) while ARP or flows settle.
    pub fn ping(&self, target: Ipv4Addr) -> Result<()> {
        let target = target.to_string();
        self.exec_ok(&["ping", "-n", "-q", "-c", "1", "-W", "1", &target])
            .map(drop)
    }

    /// Pings `target` until an answer comes back, for at most `limit`: the
    /// first packets on a new path wait for ARP and the datapath's
    /// upcalls, which a busy machine can make slower than one ping's wait.
    pub fn ping_within(&self, target: Ipv4Addr, limit: std::time::Duration) -> Result<()> {
        crate::wait::wait_for(
            &format!("{} to answer ping from {}", target, self.name()),
            limit,
            std::time::Duration::from_millis(50),
            || self.ping(target).is_ok(),
        )
    }

    /// Waits, at most `limit`, until a socket of the host listens on TCP
    /// (or, with `udp`, is bound on UDP) `port`: a client started before
    /// then is refused, or its datagrams lost.
    pub fn wait_listening(&self, port: u16, udp: bool, limit: std::time::Duration) -> Result<()> {
        let filter = format!("sport = :{port}");
        let flags = if udp { "-Hlun" } else { "-Hltn" };
        crate::wait::wait_for(
            &format!("a listener on port {port} in {}", self.name()),
            limit,
            std::time::Duration::from_millis(20),
            || {
                self.exec_ok(&["ss", flags, &filter])
                    .is_ok_and(|out| !out.trim().is_empty())
            },
        )
    }

    /// Starts a command in the background in the host (a server, say). The
    /// guard kills it and its process group on drop; the lab's teardown
    /// kills anything left in the namespace anyway.
    pub fn spawn(&self, args: &[&str]) -> Result<BackgroundProcess> {
        cmd::require_program(args)?;
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]);
        BackgroundProcess::spawn(cmd, &self.spawn_dir, &label(&self.netns, args[0]))
    }
}

impl Lab {
    /// Creates a host: a namespace `<lab>-<name>`, a veth pair made in the
    /// lab's namespace with [`HOST_IFACE`] moved into the host, the lab end
    /// added to `spec.bridge`, TX checksum offload turned off on both ends
    /// (with it on, TCP through address-rewriting flows fails in the
    /// userspace datapath), and the host's MAC, address, loopback and route.
    pub fn add_host(&self, spec: HostSpec) -> Result<Host> {
        check_host_name(&spec.name)?;
        let port = spec
            .port_name
            .clone()
            .unwrap_or_else(|| format!("h-{}", spec.name));
        check_ifname("port name", &port)?;
        check_ifname("bridge name", &spec.bridge)?;
        let invalid = |what, value: String, reason: &str| {
            Err(Error::Invalid {
                what,
                value,
                reason: reason.to_owned(),
            })
        };
        if spec.prefix_len > 32 {
            return invalid("prefix length", spec.prefix_len.to_string(), "must be at most 32");
        }
        if spec.mac.is_multicast() {
            return invalid("host MAC address", spec.mac.to_string(), "must be unicast");
        }
        if let Some(ofport) = spec.ofport
            && !(1..0xff00).contains(&ofport)
        {
            return invalid("ofport", ofport.to_string(), "must be between 1 and 65279");
        }
        let netns = format!("{}-{}", self.name, spec.name);
        {
            let mut state = lock(&self.state);
            if state.hosts.iter().any(|h| h.name == spec.name) {
                return invalid(
                    "host name",
                    spec.name.clone(),
                    "the lab already has a host of that name",
                );
            }
            if state.hosts.iter().any(|h| h.port == port) {
                return invalid("port name", port, "the lab already has a host port of that name");
            }
            // Recorded before anything exists, so teardown covers a host
            // that fails half-way.
            state.hosts.push(HostRecord {
                name: spec.name.clone(),
                netns: netns.clone(),
                port: port.clone(),
            });
        }
        match self.build_host(&spec, &netns, &port) {
            Ok(host) => Ok(host),
            Err(e) => {
                // Undo, so that the caller may retry under the same name.
                let _ = self.vsctl(&["--if-exists", "del-port", &port]);
                let _ = netns::delete(&netns);
                lock(&self.state).hosts.retain(|h| h.name != spec.name);
                Err(e)
            }
        }
    }

    fn build_host(&self, spec: &HostSpec, netns: &str, port: &str) -> Result<Host> {
        netns::add(netns)?;
        let host_cmd = |args: &[&str]| {
            let mut cmd = netns::exec_command(netns, args[0]);
            cmd.args(&args[1..]);
            cmd::run_ok(&mut cmd, cmd::DEFAULT_TIMEOUT)
        };
        if !spec.ipv6 {
            // Before the veth exists, so eth0 is born without IPv6. Best
            // effort, as for the lab: no IPv6 in the kernel is fine too.
            let _ = host_cmd(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        let mac = spec.mac.to_string();
        let address = format!("{}/{}", spec.ip, spec.prefix_len);
        netns::ip(
            &self.name,
            &[
                "link", "add", port, "type", "veth", "peer", "name", HOST_IFACE, "netns", netns,
            ],
        )?;
        netns::ip(netns, &["link", "set", HOST_IFACE, "address", &mac])?;
        host_cmd(&["ethtool", "-K", HOST_IFACE, "tx", "off"])?;
        self.exec(&["ethtool", "-K", port, "tx", "off"])?;
        netns::ip(netns, &["addr", "add", &address, "dev", HOST_IFACE])?;
        netns::ip(netns, &["link", "set", "lo", "up"])?;
        netns::ip(netns, &["link", "set", HOST_IFACE, "up"])?;
        netns::ip(&self.name, &["link", "set", port, "up"])?;
        if let Some(gateway) = spec.gateway {
            let gateway = gateway.to_string();
            netns::ip(
                netns,
                &["route", "add", "default", "via", &gateway, "dev", HOST_IFACE],
            )?;
        }

        let mut args: Vec<String> = vec!["add-port".into(), spec.bridge.clone(), port.into()];
        let mut columns = Vec::new();
        if let Some(ofport) = spec.ofport {
            columns.push(format!("ofport_request={ofport}"));
        }
        for (key, value) in &spec.external_ids {
            columns.push(format!(
                "external_ids:{}={}",
                ovsdb_string(key),
                ovsdb_string(value)
            ));
        }
        if !columns.is_empty() {
            args.extend(["--".into(), "set".into(), "Interface".into(), port.into()]);
            args.extend(columns);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&args)?;
        let ofport = self.ofport(port)?;
        if let Some(wanted) = spec.ofport
            && wanted != ofport
        {
            return Err(Error::Invalid {
                what: "ofport request",
                value: wanted.to_string(),
                reason: format!("Open vSwitch assigned {ofport} instead (is {wanted} taken?)"),
            });
        }
        Ok(Host {
            name: spec.name.clone(),
            netns: netns.to_owned(),
            bridge: spec.bridge.clone(),
            port: port.to_owned(),
            ofport,
            ip: spec.ip,
            prefix_len: spec.prefix_len,
            mac: spec.mac,
            gateway: spec.gateway,
            spawn_dir: self.spawn_dir(),
        })
    }

    /// Removes a host: its port leaves the bridge, its processes are
    /// killed and its namespace deleted.
    pub fn remove_host(&self, host: &Host) -> Result<()> {
        self.vsctl(&["--if-exists", "del-port", host.port()])?;
        netns::delete(host.netns())?;
        lock(&self.state).hosts.retain(|h| h.netns != host.netns());
        Ok(())
    }
}

fn check_host_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOST_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "host name",
            value: name.to_owned(),
            reason: format!(
                "must be 1 to {MAX_HOST_NAME} ASCII letters, digits, '-' or '_', not starting with '-'"
            ),
        })
    }
}
