//! The test bed the data-plane tests share: the testbed's cloud topology
//! (two hypervisor bridges joined to a "physical" bridge, a public gateway
//! and an external host behind it), an in-process controller that installs
//! compiled flows, and instances as network namespaces plugged into the
//! hypervisor bridges.
//!
//! * the reference evaluator, EC2's verdict on a packet, is the `explain`
//!   crate.
//! * [`trace`]: `ofproto/trace` run and read: where a packet leaves.

// Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub mod trace;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use compiler::{Cidr, Compiler, Hypervisor, Instance, Network, PublicGateway};
use controller::{Controller, ControllerConfig, Flow, FlowSet, ListenAddr, Listener};
use openflow::MacAddr;
use testbed::{CloudTopology, Host, HostSpec, Lab};

/// `subnet-1`, the private network of the original data-plane test.
pub const NET: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const PUBLIC_GW: Ipv4Addr = testbed::topology::PUBLIC_GATEWAY;
/// The public network behind [`PUBLIC_GW`], where Elastic IPs live (a /24).
pub const PUBLIC_NET: Ipv4Addr = testbed::topology::PUBLIC_NETWORK.0;
pub const EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const EXTERNAL: Ipv4Addr = testbed::topology::EXTERNAL_HOST;
/// The hypervisor bridges, in the order of [`Cloud::datapaths`] (as
/// [`CloudTopology`] names them).
pub const HYPERVISORS: [&str; 2] = ["hv1", "hv2"];
/// The bridge that stands for the physical network.
pub const PHYSICAL: &str = CloudTopology::PHYSICAL_BRIDGE;

/// The private network every instance of the original data-plane test is on.
pub fn subnet_1() -> Network {
    Network {
        id: "subnet-1".into(),
        cidr: Cidr::new(NET, 16),
        gateway: GATEWAY,
    }
}

/// Two hypervisors, a physical network, a gateway and an external host.
pub struct Cloud {
    pub lab: Lab,
    pub rt: tokio::runtime::Runtime,
    pub controller: Controller,
    /// The model of the tests that change it step by step (see
    /// [`Cloud::sync`]); it already knows the hypervisors, `subnet-1` and
    /// the public gateway.
    pub compiler: Compiler,
    pub datapaths: [u64; 2],
    /// The hypervisors as the compiler knows them (uplink ports included).
    pub hypervisors: [Hypervisor; 2],
    pub hosts: BTreeMap<String, Host>,
    pub external: Host,
    pub public_gateway: PublicGateway,
}

impl Cloud {
    pub fn new() -> Cloud {
        let topology = CloudTopology::start(HYPERVISORS.len(), 0xf1_0000).expect("start the cloud test bed");
        let (gw, external) = (topology.gateway.clone(), topology.external.clone());
        let socket = topology.lab.run_dir().join("of.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let controller = Controller::new(ControllerConfig::default());
        let listener = rt
            .block_on(Listener::bind(&ListenAddr::Unix(socket.clone())))
            .unwrap();
        let c = controller.clone();
        rt.spawn(async move { c.serve(listener).await });

        let mut compiler = Compiler::new();
        let hypervisors: Vec<Hypervisor> = topology
            .hypervisors
            .iter()
            .map(|hv| Hypervisor {
                name: hv.name.clone(),
                datapath_id: hv.datapath_id,
                uplink_port: hv.uplink_port,
            })
            .collect();
        for hv in &hypervisors {
            compiler.upsert_hypervisor(hv.clone());
        }
        let datapaths = [hypervisors[0].datapath_id, hypervisors[1].datapath_id];
        compiler.upsert_network(subnet_1());
        let public_gateway = PublicGateway {
            ip: PUBLIC_GW,
            mac: Some(MacAddr(gw.mac().octets())),
        };
        compiler.set_public_gateway(Some(public_gateway));
        topology
            .connect_controller(&format!("unix:{}", socket.display()))
            .unwrap();
        let mut cloud = Cloud {
            lab: topology.lab,
            rt,
            controller,
            compiler,
            datapaths,
            hypervisors: hypervisors.try_into().expect("two hypervisors"),
            hosts: BTreeMap::new(),
            external,
            public_gateway,
        };
        cloud.hosts.insert("gw".into(), gw);
        cloud
    }

    /// Plugs a namespace for an instance into hypervisor `hv` (0 or 1) and
    /// returns the instance as the compiler should know it (in no group);
    /// the model is left to the caller.
    pub fn plug(&mut self, name: &str, hv: usize, network: &Network, n: u8, port: u32) -> Instance {
        let mac = [0x02, 0xfc, 0, 0, 0, n];
        let o = network.cidr.addr.octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], n);
        let host = self
            .lab
            .add_host(
                HostSpec::new(
                    name,
                    HYPERVISORS[hv],
                    ip,
                    network.cidr.prefix,
                    testbed::MacAddr::new(mac),
                )
                .gateway(network.gateway)
                .ofport(port),
            )
            .unwrap();
        self.hosts.insert(name.into(), host);
        Instance {
            id: format!("i-{name}"),
            hypervisor: Some(HYPERVISORS[hv].into()),
            port: Some(port),
            mac: MacAddr(mac),
            ip,
            network: network.id.clone(),
            groups: Vec::new(),
        }
    }

    /// An instance `n` (10.1.0.n) on hypervisor `hv` (0 or 1), added to the
    /// model.
    pub fn launch(&mut self, name: &str, hv: usize, n: u8, groups: &[&str]) {
        let mut instance = self.plug(name, hv, &subnet_1(), n, 100 + u32::from(n));
        instance.groups = groups.iter().map(|g| g.to_string()).collect();
        self.compiler.upsert_instance(instance);
    }

    /// Compiles what changed and waits until both switches hold it.
    pub fn sync(&mut self) {
        let mut generations = BTreeMap::new();
        for update in self.compiler.flush() {
            let flows: Vec<Flow> = update.flows.iter().map(to_flow).collect();
            let g = self
                .controller
                .desired()
                .update(update.datapath_id, |set| set.set_owner(update.cookie, flows));
            generations.insert(update.datapath_id, g);
        }
        self.wait_synced(generations);
    }

    /// Replaces everything on both switches by what `compiler` holds (a
    /// whole other model, as the differential test installs one per case)
    /// and waits until both switches hold it.
    pub fn install(&self, compiler: &Compiler) {
        let snapshot = compiler.snapshot();
        let mut generations = BTreeMap::new();
        for dpid in self.datapaths {
            let mut set = FlowSet::new();
            for (cookie, (_, flows)) in snapshot.get(&dpid).into_iter().flatten() {
                set.set_owner(*cookie, flows.iter().map(to_flow));
            }
            generations.insert(dpid, self.controller.desired().publish(dpid, set));
        }
        self.wait_synced(generations);
    }

    fn wait_synced(&self, generations: BTreeMap<u64, u64>) {
        for (dpid, g) in generations {
            self.rt
                .block_on(self.controller.wait_synced(dpid, g, Duration::from_secs(30)))
                .expect("switch in sync");
        }
        for dpid in self.datapaths {
            let info = self.controller.switch(dpid).expect("hypervisor connected");
            assert_eq!(info.flows_rejected, 0, "a compiled flow was rejected on {dpid:x}");
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// Whether `from` reaches `to` with ping.
    pub fn pings(&self, from: &Host, to: Ipv4Addr) -> bool {
        from.exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", &to.to_string()])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Whether a TCP connection from `from` to `to:port` carries a line,
    /// with `server` listening.
    pub fn tcp(&self, server: &Host, from: &Host, to: Ipv4Addr, port: u16) -> bool {
        let port_text = port.to_string();
        let mut listener = server.spawn(&["nc", "-l", "-n", "-p", &port_text]).unwrap();
        server
            .wait_listening(port, false, Duration::from_secs(10))
            .unwrap();
        let sent = from
            .exec(&[
                "sh",
                "-c",
                &format!("echo flowgate | nc -n -w 2 -q 0 {to} {port_text}"),
            ])
            .map(|o| o.status.success())
            .unwrap_or(false);
        let _ = listener.wait_timeout(Duration::from_secs(3));
        listener.kill();
        sent && listener.stdout().unwrap_or_default().contains("flowgate")
    }
}

/// A compiled flow as the controller installs it.
pub fn to_flow(f: &compiler::FlowSpec) -> Flow {
    Flow::new(
        f.stage.table(),
        f.priority,
        f.match_.clone(),
        f.instructions.clone(),
    )
}
