//! The cloud test bed (testbed::CloudTopology: two hypervisor bridges,
//! the physical network, a public gateway, an external host) with a real
//! `flowgate serve` managing it through the netns driver.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use testbed::CloudTopology;
use testbed::topology::{EXTERNAL_HOST, EXTERNAL_NETWORK, PUBLIC_GATEWAY, PUBLIC_NETWORK};

use super::{Keys, Server};

/// The availability zone flowgate puts hypervisors in by default.
pub const DEFAULT_ZONE: &str = "flowgate-1a";

/// The test bed with flowgate serving it.
pub struct Cloud {
    // Dropped in this order: the server first, then the lab.
    pub server: Server,
    pub topology: CloudTopology,
    /// Account `alice`.
    pub keys: Keys,
    /// An image id to launch.
    pub image: String,
}

impl Cloud {
    /// Starts the test bed and flowgate, registers a public pool, a private
    /// network 10.1.0.0/16 and every hypervisor.
    pub fn start() -> Cloud {
        Cloud::start_with(&[("netns", DEFAULT_ZONE), ("netns", DEFAULT_ZONE)])
    }

    /// Like [`Cloud::start`], with a (driver, availability zone) per
    /// hypervisor bridge.
    pub fn start_with(hypervisors: &[(&str, &str)]) -> Cloud {
        let topology = CloudTopology::start(hypervisors.len(), 0xfa00).expect("the cloud test bed");
        let socket = topology.lab.run_dir().join("flowgate-of.sock");
        let mut server = Server::prepare(&node_config(&socket, ""));
        let (keys, image) = register(&server, &topology, hypervisors);
        server.launch();
        topology
            .connect_controller(&format!("unix:{}", socket.display()))
            .unwrap();
        Cloud {
            server,
            topology,
            keys,
            image,
        }
    }

    /// What the scripts need to know about the test bed.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        bed_env(&self.topology, &self.server)
    }

    /// Every flow of every hypervisor bridge: identity -> age in seconds.
    pub fn flows(&self) -> BTreeMap<String, f64> {
        bridge_flows(&self.topology)
    }
}

/// A node's configuration: the lab's bridges reach it through a Unix
/// socket in the lab's run directory; the public gateway is ARPed often.
fn node_config(socket: &Path, more: &str) -> String {
    format!(
        "[openflow]\nunix_sockets = [\"{}\"]\n[network]\narp_refresh_seconds = 1\n{more}",
        socket.display()
    )
}

/// Registers a public pool, a private network 10.1.0.0/16 and every
/// hypervisor through `server`'s admin CLI; returns account `alice`'s keys
/// and an image id.
fn register(server: &Server, topology: &CloudTopology, hypervisors: &[(&str, &str)]) -> (Keys, String) {
    let (public, prefix) = PUBLIC_NETWORK;
    server.admin(&[
        "pool",
        "add",
        "--cidr",
        &format!("{public}/{prefix}"),
        "--gateway",
        &PUBLIC_GATEWAY.to_string(),
    ]);
    server.admin(&["network", "add", "--cidr", "10.1.0.0/16", "--gateway", "10.1.0.1"]);
    let lab = &topology.lab;
    let ovsdb = format!("unix:{}", lab.db_socket().display());
    for (hv, (driver, zone)) in topology.hypervisors.iter().zip(hypervisors) {
        server.admin(&[
            "hypervisor",
            "add",
            &hv.name,
            "--bridge",
            &hv.name,
            "--uplink",
            &hv.uplink,
            "--driver",
            driver,
            "--zone",
            zone,
            "--ovsdb",
            &ovsdb,
            "--netns",
            lab.name(),
        ]);
    }
    (server.account("alice"), server.image("debian"))
}

/// What the scripts need to know about the test bed, with `server` as the
/// one the admin CLI talks to.
fn bed_env(topology: &CloudTopology, server: &Server) -> Vec<(&'static str, String)> {
    let (public, prefix) = PUBLIC_NETWORK;
    let (external, external_prefix) = EXTERNAL_NETWORK;
    vec![
        ("FLOWGATE_POOL_CIDR", format!("{public}/{prefix}")),
        ("FLOWGATE_EXTERNAL_NS", topology.external.netns().to_string()),
        ("FLOWGATE_EXTERNAL_IP", EXTERNAL_HOST.to_string()),
        ("FLOWGATE_EXTERNAL_CIDR", format!("{external}/{external_prefix}")),
        ("FLOWGATE_GATEWAY_NS", topology.gateway.netns().to_string()),
        (
            "FLOWGATE_OVSDB",
            format!("unix:{}", topology.lab.db_socket().display()),
        ),
        ("FLOWGATE_LAB_NS", topology.lab.name().to_string()),
        (
            "FLOWGATE_OVS_RUNDIR",
            topology.lab.run_dir().display().to_string(),
        ),
        (
            "FLOWGATE_BRIDGES",
            topology
                .hypervisors
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "FLOWGATE_APPCTL_TARGET",
            topology.lab.vswitchd_ctl().display().to_string(),
        ),
        ("FLOWGATE_BIN", super::FLOWGATE.to_string()),
        ("FLOWGATE_CONFIG", server.config.display().to_string()),
        ("FLOWGATE_DATA_DIR", server.data_dir().display().to_string()),
        (
            "FLOWGATE_ADMIN",
            format!(
                "{} admin --config {} --data-dir {}",
                super::FLOWGATE,
                server.config.display(),
                server.data_dir().display()
            ),
        ),
    ]
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.server.kill();
        remove_instances(&self.server);
    }
}

/// Removes what the netns driver of `server` started and a failed test did
/// not terminate: instance namespaces, which live outside the lab.
fn remove_instances(server: &Server) {
    let Ok(dirs) = std::fs::read_dir(server.data_dir().join("instances")) else {
        return;
    };
    for dir in dirs.flatten() {
        let id = dir.file_name().to_string_lossy().into_owned();
        let ns = format!("fg{}", &id[id.len().saturating_sub(13)..]);
        if let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
    }
}

/// A flow as `ovs-ofctl dump-flows` prints it, without what changes while
/// it sits there (age, counters).
pub fn flow_identity(line: &str) -> String {
    line.split(", ")
        .filter(|kv| {
            !["duration=", "n_packets=", "n_bytes=", "idle_age=", "hard_age="]
                .iter()
                .any(|p| kv.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn flow_age(line: &str) -> f64 {
    line.split(", ")
        .find_map(|kv| kv.strip_prefix("duration="))
        .and_then(|d| d.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"))
}

/// Every flow of every hypervisor bridge: identity -> age in seconds.
pub fn bridge_flows(topology: &CloudTopology) -> BTreeMap<String, f64> {
    let mut flows = BTreeMap::new();
    for hv in &topology.hypervisors {
        let text = topology
            .lab
            .ofctl(&["-O", "OpenFlow13", "dump-flows", &hv.name])
            .unwrap();
        for line in text.lines().map(str::trim).filter(|l| l.starts_with("cookie=")) {
            flows.insert(format!("{} {}", hv.name, flow_identity(line)), flow_age(line));
        }
    }
    flows
}

/// The test bed managed by several `flowgate serve` nodes on one
/// PostgreSQL store. The nodes run inside the lab's namespace, where every
/// hypervisor bridge reaches every node over TCP (once
/// [`CloudNodes::connect_all`] is called), and so do the client scripts.
/// The nodes are prepared, not launched: the test decides in which order
/// they start.
pub struct CloudNodes {
    // Dropped in this order: the nodes first, then the lab, then the
    // database.
    pub nodes: Vec<Server>,
    pub topology: CloudTopology,
    /// Account `alice`.
    pub keys: Keys,
    /// An image id to launch.
    pub image: String,
    pub postgres: Arc<pgtest::Postgres>,
}

impl CloudNodes {
    /// Two hypervisors (netns driver) and one node per name (its `[nodes]
    /// name`), registered through the first.
    pub fn prepare(names: &[&str]) -> CloudNodes {
        CloudNodes::prepare_with(names, "")
    }

    /// Like [`CloudNodes::prepare`], with more of each node's
    /// `[nodes]` section (election timings).
    pub fn prepare_with(names: &[&str], nodes_toml: &str) -> CloudNodes {
        let postgres = Arc::new(pgtest::Postgres::start().expect("a private PostgreSQL server"));
        let topology = CloudTopology::start(2, 0xfa00).expect("the cloud test bed");
        let nodes: Vec<Server> = names
            .iter()
            .map(|name| {
                // The failover test's writers tell a node gone by its
                // errors: no request limits to mistake for one.
                let mut node = Server::prepare_on(
                    Some(postgres.clone()),
                    &format!(
                        "[network]\narp_refresh_seconds = 1\n[nodes]\nname = \"{name}\"\n{nodes_toml}[api]\n\
                         write_requests_per_second = 0\nread_requests_per_second = 0\n"
                    ),
                );
                node.netns = Some(topology.lab.name().to_string());
                node
            })
            .collect();
        let hypervisors = [("netns", DEFAULT_ZONE), ("netns", DEFAULT_ZONE)];
        let (keys, image) = register(&nodes[0], &topology, &hypervisors);
        CloudNodes {
            nodes,
            topology,
            keys,
            image,
            postgres,
        }
    }

    /// Points every hypervisor bridge at every node.
    pub fn connect_all(&self) {
        let targets: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("tcp:127.0.0.1:{}", node.openflow_port))
            .collect();
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        for hv in &self.topology.hypervisors {
            self.topology.lab.set_controllers(&hv.name, &targets).unwrap();
        }
    }

    /// What the scripts need to know, with node `i` as the admin CLI's.
    pub fn env(&self, i: usize) -> Vec<(&'static str, String)> {
        bed_env(&self.topology, &self.nodes[i])
    }

    /// Every flow of every hypervisor bridge: identity -> age in seconds.
    pub fn flows(&self) -> BTreeMap<String, f64> {
        bridge_flows(&self.topology)
    }
}

impl Drop for CloudNodes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for node in &self.nodes {
            remove_instances(node);
        }
    }
}
