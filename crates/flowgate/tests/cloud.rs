//! flowgate end to end on the cloud test bed (testbed::CloudTopology: two
//! hypervisor bridges, the physical network, a public gateway, an external
//! host): the real `flowgate serve` with its controller, data plane and
//! netns driver, driven by boto3, checked with real packets.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Keys, Server};
use testbed::CloudTopology;
use testbed::topology::{EXTERNAL_HOST, EXTERNAL_NETWORK, PUBLIC_GATEWAY, PUBLIC_NETWORK};

/// The test bed with flowgate serving it.
struct Cloud {
    // Dropped in this order: the server first, then the lab.
    server: Server,
    topology: CloudTopology,
    keys: Keys,
    image: String,
}

impl Cloud {
    fn start() -> Cloud {
        let topology = CloudTopology::start(2, 0xfa00).expect("the cloud test bed");
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
        for hv in &topology.hypervisors {
            server.admin(&[
                "hypervisor",
                "add",
                &hv.name,
                "--bridge",
                &hv.name,
                "--uplink",
                &hv.uplink,
                "--driver",
                "netns",
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
    fn env(&self) -> Vec<(&'static str, String)> {
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

#[test]
fn the_seed_scenario_end_to_end_with_real_packets() {
    let cloud = Cloud::start();
    cloud.server.client_env_ok(
        "cloud_seed_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &cloud.env(),
        Duration::from_secs(300),
    );
}
