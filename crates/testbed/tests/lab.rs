//! Integration tests against a real Open vSwitch in userspace mode. They
//! need root (network namespaces) and the Open vSwitch tools, and only send
//! traffic between their own hosts in 10.x addresses.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use testbed::{BridgeOptions, HostSpec, Lab, MacAddr, Result, wait_until};

fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Pings until the first reply: ARP and MAC learning take a moment.
fn host(name: &str, bridge: &str, ip: [u8; 4], mac: u32) -> HostSpec {
    HostSpec::new(name, bridge, Ipv4Addr::from(ip), 24, MacAddr::local(mac))
}

#[test]
fn labs_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lab>();
    send_sync::<testbed::Host>();
}

#[test]
fn lab_lifecycle_leaves_nothing_behind() -> Result<()> {
    let lab = Lab::start()?;
    let bridge = lab.add_bridge_with("br0", &BridgeOptions::new().datapath_id(0xabc))?;
    assert_eq!(bridge.datapath_id(), 0xabc);
    assert_eq!(bridge.mgmt_socket(), lab.run_dir().join("br0.mgmt"));
    assert!(lab.vsctl(&["list-br"])?.lines().any(|line| line == "br0"));
    assert_eq!(lab.bridges()?, vec!["br0".to_owned()]);
    assert_eq!(
        lab.vsctl(&["get", "Bridge", "br0", "fail_mode"])?.trim(),
        "secure"
    );
    let flows = lab.ofctl(&["-O", "OpenFlow13", "dump-flows", "br0"])?;
    assert!(
        !flows.contains("actions="),
        "a secure bridge starts empty: {flows}"
    );

    // The management socket speaks OpenFlow to a client outside the lab.
    let mut of = UnixStream::connect(bridge.mgmt_socket()).map_err(|e| io("connect", e))?;
    of.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| io("timeout", e))?;
    of.write_all(&[0x04, 0, 0, 8, 0, 0, 0, 1])
        .map_err(|e| io("hello", e))?;
    let mut hello = [0u8; 8];
    of.read_exact(&mut hello).map_err(|e| io("hello reply", e))?;
    assert_eq!(hello[1], 0, "expected OFPT_HELLO, got {hello:?}");
    drop(of);

    let web = lab.add_host(host("web", "br0", [10, 91, 0, 1], 1))?;
    let name = lab.name().to_owned();
    let dir = lab.run_dir().to_owned();
    let daemons = [lab.vswitchd_pid()?, lab.ovsdb_pid()?];
    assert!(netns_exists(&name) && netns_exists(web.netns()) && dir.is_dir());
    assert!(daemons.iter().all(|&pid| alive(pid)));

    drop(lab);
    assert!(!netns_exists(&name), "lab netns {name} survived");
    assert!(!netns_exists(web.netns()), "host netns survived");
    assert!(!dir.exists(), "{} survived", dir.display());
    for pid in daemons {
        assert!(!alive(pid), "daemon {pid} survived");
    }
    Ok(())
}

#[test]
fn hosts_on_one_bridge_ping_and_talk_tcp() -> Result<()> {
    let lab = Lab::start()?;
    lab.add_bridge("br0")?;
    lab.ofctl(&["add-flow", "br0", "priority=0,actions=NORMAL"])?;
    let a = lab.add_host(
        host("a", "br0", [10, 92, 0, 1], 1)
            .ofport(7)
            .external_id("iface-id", "vm \"a\""),
    )?;
    let b = lab.add_host(host("b", "br0", [10, 92, 0, 2], 2).gateway(Ipv4Addr::new(10, 92, 0, 254)))?;
    assert_eq!(a.ofport(), 7);
    assert_eq!(lab.ofport(b.port())?, b.ofport());
    let ids = lab.vsctl(&["get", "Interface", a.port(), "external_ids:iface-id"])?;
    assert_eq!(ids.trim(), r#""vm \"a\"""#);
    assert!(
        lab.add_host(host("a", "br0", [10, 92, 0, 3], 3)).is_err(),
        "duplicate host name accepted"
    );
    assert!(
        lab.add_host(host("much-too-long-name", "br0", [10, 92, 0, 3], 3))
            .is_err()
    );

    // The host side looks as specified, with TX checksum offload off on both ends.
    let link = a.exec_ok(&["ip", "-o", "link", "show", "eth0"])?;
    assert!(link.contains(&a.mac().to_string()), "{link}");
    assert!(b.exec_ok(&["ip", "route"])?.contains("default via 10.92.0.254"));
    assert!(
        a.exec_ok(&["ethtool", "-k", "eth0"])?
            .contains("tx-checksumming: off")
    );
    assert!(
        lab.exec(&["ethtool", "-k", a.port()])?
            .contains("tx-checksumming: off")
    );
    assert!(
        a.exec_ok(&["ip", "-6", "addr", "show", "eth0"])?
            .trim()
            .is_empty(),
        "eth0 has IPv6"
    );

    a.ping_within(b.ip(), Duration::from_secs(10))?;
    b.ping(a.ip())?;

    let mut server = b.spawn(&["nc", "-l", "-p", "5000"])?;
    b.wait_listening(5000, false, Duration::from_secs(10))?;
    a.exec_ok(&["sh", "-c", "echo hi | nc -N -w 2 10.92.0.2 5000"])?;
    server.wait_timeout(Duration::from_secs(5))?;
    assert_eq!(server.stdout()?, "hi\n");

    // A failing command reports itself.
    let err = a
        .exec_ok(&["ip", "link", "show", "nonexistent0"])
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("nonexistent0") && e.contains("failed")),
        "{err:?}"
    );

    lab.remove_host(&b)?;
    assert!(!netns_exists(b.netns()));
    assert!(!lab.vsctl(&["list-ports", "br0"])?.contains(b.port()));
    assert!(a.ping(b.ip()).is_err());
    lab.shutdown()
}

#[test]
fn patch_ports_join_two_bridges() -> Result<()> {
    let lab = Lab::start()?;
    let left = lab.add_bridge_with("br-a", &BridgeOptions::new().datapath_id(1))?;
    let right = lab.add_bridge_with("br-b", &BridgeOptions::new().datapath_id(2))?;
    assert_eq!((left.datapath_id(), right.datapath_id()), (1, 2));
    let (pa, pb) = lab.add_patch("br-a", "br-b")?;
    assert!(pa.len() <= 15 && pb.len() <= 15 && pa != pb);
    assert!(lab.ofport(&pa)? > 0 && lab.ofport(&pb)? > 0);
    for br in ["br-a", "br-b"] {
        lab.ofctl(&["add-flow", br, "priority=0,actions=NORMAL"])?;
    }
    let a = lab.add_host(host("a", "br-a", [10, 93, 0, 1], 1))?;
    let b = lab.add_host(host("b", "br-b", [10, 93, 0, 2], 2))?;
    a.ping_within(b.ip(), Duration::from_secs(10))?;
    b.ping(a.ip())?;
    lab.shutdown()
}

#[test]
fn panic_in_a_test_still_cleans_up() {
    let mut names: Vec<String> = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = match Lab::start() {
            Ok(lab) => lab,
            Err(e) => panic!("lab did not start: {e}"),
        };
        names.push(lab.name().to_owned());
        if let Ok(host) = lab.add_host(host("x", "br0", [10, 94, 0, 1], 1)) {
            names.push(host.netns().to_owned());
        }
        if lab.add_bridge("br0").is_ok()
            && let Ok(host) = lab.add_host(host("y", "br0", [10, 94, 0, 2], 2))
        {
            names.push(host.netns().to_owned());
        }
        panic!("deliberate panic with a live lab");
    }));
    assert!(outcome.is_err());
    assert_eq!(
        names.len(),
        2,
        "the lab and host y should have existed: {names:?}"
    );
    for name in &names {
        assert!(!netns_exists(name), "{name} survived the panic");
    }
}

#[test]
fn sweep_removes_leftovers_of_dead_processes() -> Result<()> {
    // Pids above 4194304 (the largest pid_max) never exist, so the owner of
    // this name is certainly dead; our own pid keeps concurrent runs of
    // this test apart.
    let stale = &format!("fgt-{}-0", 900_000_000 + std::process::id());
    let dir: PathBuf = testbed::base_dir()?.join(stale);
    std::fs::create_dir_all(&dir).map_err(|e| io("mkdir", e))?;
    // A process in the stale namespace, as a dead lab's daemons would be.
    // It enters a fresh namespace first, which is then given the stale name:
    // a concurrent test's sweep may remove it at any moment, and must find
    // the process already inside.
    let mut sleeper = Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io("spawn", e))?;
    let pid = sleeper.id().to_string();
    let own_netns = std::fs::read_link("/proc/self/ns/net").map_err(|e| io("own netns", e))?;
    wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns != own_netns)
    })?;
    let attached = Command::new("ip")
        .args(["netns", "attach", stale, &pid])
        .status()
        .map_err(|e| io("ip netns attach", e))?;
    assert!(attached.success());

    let report = testbed::sweep_stale()?;
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(!netns_exists(stale), "stale netns survived: {report:?}");
    assert!(!dir.exists(), "stale dir survived: {report:?}");
    let mut exited = None;
    wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        exited = sleeper.try_wait().ok().flatten();
        exited.is_some()
    })?;
    assert!(exited.is_some_and(|status| !status.success()), "{exited:?}");

    // Live labs are left alone.
    let lab = Lab::start()?;
    let report = testbed::sweep_stale()?;
    assert!(!report.namespaces.iter().any(|ns| ns == lab.name()));
    assert!(netns_exists(lab.name()));
    lab.shutdown()
}

/// `sleep 30` inside a named namespace, as a child of the test.
fn sleeper_in(netns: &str) -> Result<std::process::Child> {
    Command::new("ip")
        .args(["netns", "exec", netns, "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io("spawn sleep", e))
}

/// Waits (bounded) for a child to be killed.
fn killed(child: &mut std::process::Child) -> Result<bool> {
    let mut status = None;
    wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    })?;
    Ok(status.is_some_and(|s| !s.success()))
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip").args(args).status().map_err(|e| io("ip", e))?;
    assert!(status.success(), "ip {args:?} failed");
    Ok(())
}

/// What flowgate's netns driver does: a namespace of its own, named outside
/// the lab's scheme, plugged into a lab bridge by a veth pair made in the
/// lab. It belongs to the lab; another lab plugged in the same way does not.
#[test]
fn namespaces_plugged_into_a_lab_go_with_it() -> Result<()> {
    let lab = Lab::start()?;
    let other = Lab::start()?;
    lab.add_bridge("br0")?;
    let plugged = format!("fgtest-plugged-{}", std::process::id());
    ip(&["netns", "add", &plugged])?;
    ip(&[
        "-n",
        lab.name(),
        "link",
        "add",
        "p0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &plugged,
    ])?;
    lab.vsctl(&["add-port", "br0", "p0"])?;
    ip(&[
        "-n",
        lab.name(),
        "link",
        "add",
        "p1",
        "type",
        "veth",
        "peer",
        "name",
        "x1",
        "netns",
        other.name(),
    ])?;
    let mut sleeper = sleeper_in(&plugged)?;
    wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        Command::new("ip")
            .args(["netns", "pids", &plugged])
            .output()
            .is_ok_and(|out| !out.stdout.is_empty())
    })?;

    let result = lab.shutdown();
    let survived = netns_exists(&plugged);
    // Removed by hand if the lab failed to, so a failure leaks nothing.
    let _ = testbed::delete_netns(&plugged);
    result?;
    assert!(!survived, "{plugged} survived its lab");
    assert!(killed(&mut sleeper)?, "the process in {plugged} survived");
    assert!(netns_exists(other.name()), "another lab went with it");
    other.shutdown()
}

/// Deletes namespaces on drop, also when an assertion panics.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = testbed::delete_netns(ns);
        }
    }
}

/// After a SIGKILL, the sweep also removes what was plugged into the dead
/// lab (the instances of a killed `flowgate demo`).
#[test]
fn sweep_removes_what_was_plugged_into_a_dead_lab() -> Result<()> {
    let me = std::process::id();
    // Built under names outside the lab scheme, then given a dead owner's
    // name once complete: a concurrent sweep may remove it from then on.
    let building = format!("fgtest-building-{me}");
    let plugged = format!("fgtest-plugged-dead-{me}");
    let stale = format!("fgt-{}-0", 900_000_000 + me);
    let _cleanup = Namespaces(vec![building.clone(), plugged.clone(), stale.clone()]);
    ip(&["netns", "add", &building])?;
    ip(&["netns", "add", &plugged])?;
    ip(&[
        "-n", &building, "link", "add", "p0", "type", "veth", "peer", "name", "eth0", "netns", &plugged,
    ])?;
    let mut in_lab = sleeper_in(&building)?;
    let mut in_plugged = sleeper_in(&plugged)?;
    let pid = in_lab.id().to_string();
    // `ip netns exec` has entered the namespace once its pid's netns
    // is no longer ours.
    let own_netns = std::fs::read_link("/proc/self/ns/net").map_err(|e| io("own netns", e))?;
    wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns != own_netns)
    })?;
    ip(&["netns", "attach", &stale, &pid])?;
    ip(&["netns", "del", &building])?;

    let report = testbed::sweep_stale()?;
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(!netns_exists(&stale), "the dead lab survived: {report:?}");
    assert!(
        !netns_exists(&plugged),
        "what was plugged into it survived: {report:?}"
    );
    assert!(killed(&mut in_lab)? && killed(&mut in_plugged)?);
    Ok(())
}

#[test]
fn vswitchd_restart_loses_flows_and_keeps_ports() -> Result<()> {
    let lab = Lab::start()?;
    lab.add_bridge("br0")?;
    lab.ofctl(&["add-flow", "br0", "priority=0,actions=NORMAL"])?;
    let a = lab.add_host(host("a", "br0", [10, 95, 0, 1], 1).ofport(11))?;
    let b = lab.add_host(host("b", "br0", [10, 95, 0, 2], 2).ofport(12))?;
    a.ping_within(b.ip(), Duration::from_secs(10))?;
    let before = lab.vswitchd_pid()?;

    lab.restart_vswitchd()?;
    assert_ne!(lab.vswitchd_pid()?, before);
    assert!(!alive(before));
    let flows = lab.ofctl(&["dump-flows", "br0"])?;
    assert!(!flows.contains("NORMAL"), "flows survived a restart: {flows}");
    assert_eq!((lab.ofport(a.port())?, lab.ofport(b.port())?), (11, 12));
    let ports = lab.ofctl(&["-O", "OpenFlow13", "dump-ports-desc", "br0"])?;
    assert!(ports.contains(a.port()) && ports.contains(b.port()), "{ports}");

    lab.ofctl(&["add-flow", "br0", "priority=0,actions=NORMAL"])?;
    a.ping_within(b.ip(), Duration::from_secs(10))?;

    lab.stop_vswitchd()?;
    lab.stop_vswitchd()?; // idempotent
    lab.start_vswitchd()?;
    lab.shutdown()
}

#[test]
fn controllers_can_be_set_and_removed() -> Result<()> {
    let lab = Lab::start()?;
    lab.add_bridge_with("br0", &BridgeOptions::new().controller("tcp:127.0.0.1:6653"))?;
    assert_eq!(
        lab.vsctl(&["get-controller", "br0"])?.trim(),
        "tcp:127.0.0.1:6653"
    );
    let socket = format!("unix:{}", lab.run_dir().join("of.sock").display());
    lab.set_controllers("br0", &["tcp:127.0.0.1:6654", &socket])?;
    let mut targets: Vec<String> = lab
        .vsctl(&["get-controller", "br0"])?
        .lines()
        .map(str::to_owned)
        .collect();
    targets.sort();
    assert_eq!(targets, vec!["tcp:127.0.0.1:6654".to_owned(), socket]);
    lab.del_controller("br0")?;
    assert!(lab.vsctl(&["get-controller", "br0"])?.trim().is_empty());

    // A process in the lab's namespace sees the lab's loopback.
    let mut listener = lab.spawn(&["nc", "-l", "-p", "6653"])?;
    lab.set_controller("br0", "tcp:127.0.0.1:6653")?;
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        lab.exec(&["ss", "-Htn", "state", "established", "sport = :6653"])
            .is_ok_and(|out| !out.trim().is_empty())
    })?;
    listener.kill();
    lab.shutdown()
}

fn io(what: &str, source: std::io::Error) -> testbed::Error {
    testbed::Error::Io {
        context: what.to_owned(),
        source,
    }
}

/// The cloud topology: the external host reaches the public network
/// through the gateway, and hypervisor uplinks reach the physical network.
#[test]
fn cloud_topology_routes_between_external_and_public_networks() {
    use testbed::topology::{CloudTopology, PUBLIC_GATEWAY};
    let topo = CloudTopology::start(2, 0xfa00).unwrap();
    assert_eq!(topo.hypervisors.len(), 2);
    assert_eq!(topo.hypervisors[1].datapath_id, 0xfa02);
    assert!(topo.hypervisors.iter().all(|h| h.uplink_port > 0));
    // The external host's default route is the gateway.
    topo.external
        .ping_within(PUBLIC_GATEWAY, Duration::from_secs(10))
        .unwrap();
    // A host on the public network behind hv1 (NORMAL there for this test)
    // is reached from the external host through the gateway.
    topo.lab
        .ofctl(&["add-flow", "hv1", "priority=0,actions=NORMAL"])
        .unwrap();
    let public = topo
        .lab
        .add_host(
            HostSpec::new(
                "pub",
                "hv1",
                std::net::Ipv4Addr::new(198, 51, 100, 20),
                24,
                MacAddr::local(0x20),
            )
            .gateway(PUBLIC_GATEWAY),
        )
        .unwrap();
    topo.external
        .ping_within(public.ip(), Duration::from_secs(10))
        .unwrap();
}
