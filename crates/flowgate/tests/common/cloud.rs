//! The cloud test bed (testbed::CloudTopology: two hypervisor bridges,
//! the physical network, a public gateway, an external host) with a real
//! `flowgate serve` managing it through the netns driver.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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
        let lab = &topology.lab;
        let socket = lab.run_dir().join("flowgate-of.sock");
        // The lab's bridges reach the controller through a Unix socket in
        // the lab's run directory; the public gateway is ARPed often.
        let mut server = Server::prepare(&format!(
            "[openflow]\nunix_sockets = [\"{}\"]\n[network]\narp_refresh_seconds = 1\n",
            socket.display()
        ));
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
        let keys = server.account("alice");
        let image = server.image("debian");
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
        let (public, prefix) = PUBLIC_NETWORK;
        let (external, external_prefix) = EXTERNAL_NETWORK;
        vec![
            ("FLOWGATE_POOL_CIDR", format!("{public}/{prefix}")),
            ("FLOWGATE_EXTERNAL_NS", self.topology.external.netns().to_string()),
            ("FLOWGATE_EXTERNAL_IP", EXTERNAL_HOST.to_string()),
            ("FLOWGATE_EXTERNAL_CIDR", format!("{external}/{external_prefix}")),
            ("FLOWGATE_GATEWAY_NS", self.topology.gateway.netns().to_string()),
            (
                "FLOWGATE_OVSDB",
                format!("unix:{}", self.topology.lab.db_socket().display()),
            ),
            ("FLOWGATE_LAB_NS", self.topology.lab.name().to_string()),
            (
                "FLOWGATE_OVS_RUNDIR",
                self.topology.lab.run_dir().display().to_string(),
            ),
            (
                "FLOWGATE_BRIDGES",
                self.topology
                    .hypervisors
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            (
                "FLOWGATE_APPCTL_TARGET",
                self.topology.lab.vswitchd_ctl().display().to_string(),
            ),
            ("FLOWGATE_BIN", super::FLOWGATE.to_string()),
            ("FLOWGATE_CONFIG", self.server.config.display().to_string()),
            ("FLOWGATE_DATA_DIR", self.server.data_dir().display().to_string()),
            (
                "FLOWGATE_ADMIN",
                format!(
                    "{} admin --config {} --data-dir {}",
                    super::FLOWGATE,
                    self.server.config.display(),
                    self.server.data_dir().display()
                ),
            ),
        ]
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.server.kill();
        // Instances the netns driver started and a failed test did not
        // terminate: their namespaces live outside the lab.
        if let Ok(dirs) = std::fs::read_dir(self.server.data_dir().join("instances")) {
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
    }
}
