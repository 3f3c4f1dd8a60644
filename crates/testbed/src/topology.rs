//! The standard cloud test bed: what flowgate's end-to-end tests and its
//! demo run on.
//!
//! ```text
//!            controller (flowgate serve)          unix:RUNDIR/flowgate-of.sock
//!               │                │
//!        ┌──────┴─────┐   ┌──────┴─────┐
//!        │    hv1     │   │    hv2     │   hypervisor bridges (fail_mode=secure)
//!        │ instances… │   │ instances… │   instances: namespaces on veth ports
//!        └─────┬──────┘   └─────┬──────┘
//!              │ uplink (patch) │ uplink (patch)
//!        ┌─────┴────────────────┴──────────────┐
//!        │                phys                 │   the physical L2 network
//!        └───────┬─────────────────────┬───────┘   (a learning switch)
//!                │                     │
//!         gw 198.51.100.1/24     ext 203.0.113.10/24
//!            203.0.113.1/24          (default route via gw)
//!        public gateway, routes   external host on the internet side
//! ```
//!
//! The private networks and the public network (198.51.100.0/24, where
//! Elastic IPs live) share the physical L2 network; the public gateway
//! routes between it and the external host's network (203.0.113.0/24), so
//! traffic to and from an Elastic IP crosses a real router.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::host::{Host, HostSpec};
use crate::lab::{BridgeOptions, FailMode, Lab};
use crate::mac::MacAddr;

/// The public network, where Elastic IPs are allocated.
pub const PUBLIC_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 0), 24);
/// The public gateway's address on the public network.
pub const PUBLIC_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The external host's network, behind the public gateway.
pub const EXTERNAL_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);
/// The public gateway's address on the external network.
pub const EXTERNAL_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The external host's address.
pub const EXTERNAL_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// One hypervisor bridge of the topology.
#[derive(Debug, Clone)]
pub struct HypervisorBridge {
    /// Bridge name (`hv1`, `hv2`, ...).
    pub name: String,
    /// Its datapath id.
    pub datapath_id: u64,
    /// Name of its uplink port (a patch port to `phys`).
    pub uplink: String,
    /// OpenFlow port number of the uplink.
    pub uplink_port: u32,
}

/// The cloud test bed: a lab with hypervisor bridges, the physical network,
/// a public gateway and an external host.
#[derive(Debug)]
pub struct CloudTopology {
    /// The lab everything lives in.
    pub lab: Lab,
    /// The hypervisor bridges.
    pub hypervisors: Vec<HypervisorBridge>,
    /// The public gateway (a router namespace).
    pub gateway: Host,
    /// The external host.
    pub external: Host,
}

impl CloudTopology {
    /// Name of the physical network's bridge.
    pub const PHYSICAL_BRIDGE: &'static str = "phys";

    /// Builds the topology with `hypervisors` bridges named `hv1`,
    /// `hv2`, ..., datapath ids `datapath_id_base + 1`, `+ 2`, ....
    pub fn start(hypervisors: usize, datapath_id_base: u64) -> Result<CloudTopology> {
        let lab = Lab::start()?;
        // The physical network is a plain learning switch.
        lab.add_bridge_with(
            Self::PHYSICAL_BRIDGE,
            &BridgeOptions::default().fail_mode(FailMode::Standalone),
        )?;
        lab.ofctl(&["add-flow", Self::PHYSICAL_BRIDGE, "priority=0,actions=NORMAL"])?;
        let mut bridges = Vec::with_capacity(hypervisors);
        for i in 1..=hypervisors {
            let name = format!("hv{i}");
            let datapath_id = datapath_id_base + i as u64;
            lab.add_bridge_with(&name, &BridgeOptions::default().datapath_id(datapath_id))?;
            let (uplink, _) = lab.add_patch(&name, Self::PHYSICAL_BRIDGE)?;
            let uplink_port = lab.ofport(&uplink)?;
            bridges.push(HypervisorBridge {
                name,
                datapath_id,
                uplink,
                uplink_port,
            });
        }
        let gateway = lab.add_host(HostSpec::new(
            "gw",
            Self::PHYSICAL_BRIDGE,
            PUBLIC_GATEWAY,
            PUBLIC_NETWORK.1,
            MacAddr::local(0x00fe),
        ))?;
        gateway.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{EXTERNAL_GATEWAY}/{}", EXTERNAL_NETWORK.1),
            "dev",
            crate::host::HOST_IFACE,
        ])?;
        gateway.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let external = lab.add_host(
            HostSpec::new(
                "ext",
                Self::PHYSICAL_BRIDGE,
                EXTERNAL_HOST,
                EXTERNAL_NETWORK.1,
                MacAddr::local(0x00fd),
            )
            .gateway(EXTERNAL_GATEWAY),
        )?;
        Ok(CloudTopology {
            lab,
            hypervisors: bridges,
            gateway,
            external,
        })
    }

    /// Points every hypervisor bridge at a controller target (`unix:` inside
    /// the lab's run directory, or `tcp:` inside the lab's namespace).
    pub fn connect_controller(&self, target: &str) -> Result<()> {
        for hv in &self.hypervisors {
            self.lab.set_controller(&hv.name, target)?;
        }
        Ok(())
    }
}
