//! The compiled pipeline on real Open vSwitch bridges with real packets: two
//! hypervisor bridges joined to a "physical" bridge, instances as network
//! namespaces on them, a public gateway and an external host behind it.
//! The model is built by hand here (the EC2 API drives it in the end-to-end
//! tests); what is checked is that the flows do what EC2 promises.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use compiler::{
    Address, Cidr, Compiler, Direction, Group, Hypervisor, Instance, Network, Peer, PublicGateway, Rule,
    Service,
};
use controller::{Controller, ControllerConfig, Flow, ListenAddr, Listener};
use openflow::MacAddr;
use testbed::{BridgeOptions, FailMode, Host, HostSpec, Lab};

const NET: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const PUBLIC_GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Two hypervisors, a physical network, a gateway and an external host.
struct Cloud {
    lab: Lab,
    rt: tokio::runtime::Runtime,
    controller: Controller,
    compiler: Compiler,
    datapaths: [u64; 2],
    hosts: BTreeMap<String, Host>,
    external: Host,
}

impl Cloud {
    fn new() -> Cloud {
        let lab = Lab::start().expect("start a lab");
        let socket = lab.run_dir().join("of.sock");
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

        // The physical network: a plain learning switch.
        lab.add_bridge_with("phys", &BridgeOptions::default().fail_mode(FailMode::Standalone))
            .unwrap();
        lab.ofctl(&["add-flow", "phys", "priority=0,actions=NORMAL"])
            .unwrap();
        let mut compiler = Compiler::new();
        let mut datapaths = [0; 2];
        for (i, name) in ["hv1", "hv2"].into_iter().enumerate() {
            let dpid = 0xf1_0000 + i as u64 + 1;
            lab.add_bridge_with(name, &BridgeOptions::default().datapath_id(dpid))
                .unwrap();
            let (uplink, _) = lab.add_patch(name, "phys").unwrap();
            compiler.upsert_hypervisor(Hypervisor {
                name: name.into(),
                datapath_id: dpid,
                uplink_port: lab.ofport(&uplink).unwrap(),
            });
            datapaths[i] = dpid;
        }
        compiler.upsert_network(Network {
            id: "subnet-1".into(),
            cidr: Cidr::new(NET, 16),
            gateway: GATEWAY,
        });

        // The public gateway routes between the public network and the
        // external host's network, both on the physical bridge.
        let gw = lab
            .add_host(HostSpec::new(
                "gw",
                "phys",
                PUBLIC_GW,
                24,
                testbed::MacAddr::local(0xfe),
            ))
            .unwrap();
        gw.exec_ok(&["ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"])
            .unwrap();
        gw.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        let external = lab
            .add_host(
                HostSpec::new("ext", "phys", EXTERNAL, 24, testbed::MacAddr::local(0xfd))
                    .gateway(Ipv4Addr::new(203, 0, 113, 1)),
            )
            .unwrap();
        compiler.set_public_gateway(Some(PublicGateway {
            ip: PUBLIC_GW,
            mac: Some(MacAddr(gw.mac().octets())),
        }));

        for name in ["hv1", "hv2"] {
            lab.set_controller(name, &format!("unix:{}", socket.display()))
                .unwrap();
        }
        let mut cloud = Cloud {
            lab,
            rt,
            controller,
            compiler,
            datapaths,
            hosts: BTreeMap::new(),
            external,
        };
        cloud.hosts.insert("gw".into(), gw);
        cloud
    }

    /// An instance `n` (10.1.0.n) on hypervisor `hv` (0 or 1).
    fn launch(&mut self, name: &str, hv: usize, n: u8, groups: &[&str]) {
        let mac = [0x02, 0xfc, 0, 0, 0, n];
        let port = 100 + u32::from(n);
        let host = self
            .lab
            .add_host(
                HostSpec::new(
                    name,
                    ["hv1", "hv2"][hv],
                    Ipv4Addr::new(10, 1, 0, n),
                    16,
                    testbed::MacAddr::new(mac),
                )
                .gateway(GATEWAY)
                .ofport(port),
            )
            .unwrap();
        self.compiler.upsert_instance(Instance {
            id: format!("i-{name}"),
            hypervisor: Some(["hv1", "hv2"][hv].into()),
            port: Some(port),
            mac: MacAddr(mac),
            ip: host.ip(),
            network: "subnet-1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        });
        self.hosts.insert(name.into(), host);
    }

    /// Compiles what changed and waits until both switches hold it.
    fn sync(&mut self) {
        let mut generations = BTreeMap::new();
        for update in self.compiler.flush() {
            let flows: Vec<Flow> = update
                .flows
                .iter()
                .map(|f| {
                    Flow::new(
                        f.stage.table(),
                        f.priority,
                        f.match_.clone(),
                        f.instructions.clone(),
                    )
                })
                .collect();
            let g = self
                .controller
                .desired()
                .update(update.datapath_id, |set| set.set_owner(update.cookie, flows));
            generations.insert(update.datapath_id, g);
        }
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

    fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// Whether `from` reaches `to` with ping.
    fn pings(&self, from: &Host, to: Ipv4Addr) -> bool {
        from.exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", &to.to_string()])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Whether a TCP connection from `from` to `to:port` carries a line,
    /// with `server` listening.
    fn tcp(&self, server: &Host, from: &Host, to: Ipv4Addr, port: u16) -> bool {
        let port = port.to_string();
        let mut listener = server.spawn(&["nc", "-l", "-n", "-p", &port]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let sent = from
            .exec(&[
                "sh",
                "-c",
                &format!("echo flowgate | nc -n -w 2 -q 0 {to} {port}"),
            ])
            .map(|o| o.status.success())
            .unwrap_or(false);
        let _ = listener.wait_timeout(Duration::from_secs(3));
        listener.kill();
        sent && listener.stdout().unwrap_or_default().contains("flowgate")
    }
}

fn rule(id: &str, direction: Direction, service: Service, peer: Peer) -> Rule {
    Rule {
        id: id.into(),
        direction,
        service,
        peer,
    }
}

fn anywhere() -> Peer {
    Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0))
}

/// EC2's `default` group: members accept everything from members.
fn default_group() -> Group {
    Group {
        id: "sg-default".into(),
        rules: vec![
            rule(
                "sgr-default-in",
                Direction::Ingress,
                Service::All,
                Peer::Group("sg-default".into()),
            ),
            rule("sgr-default-out", Direction::Egress, Service::All, anywhere()),
        ],
    }
}

fn web_group(extra: Vec<Rule>) -> Group {
    let mut rules = vec![rule("sgr-web-out", Direction::Egress, Service::All, anywhere())];
    rules.extend(extra);
    Group {
        id: "sg-web".into(),
        rules,
    }
}

#[test]
fn security_groups_and_elastic_ips_with_real_packets() {
    let mut cloud = Cloud::new();
    cloud.compiler.upsert_group(default_group());
    cloud.compiler.upsert_group(web_group(vec![]));
    cloud.launch("a", 0, 11, &["sg-default"]);
    cloud.launch("b", 0, 12, &["sg-default"]);
    cloud.launch("c", 1, 13, &["sg-default"]);
    cloud.launch("web", 1, 20, &["sg-web"]);
    cloud.sync();

    // Members of default reach each other, on one hypervisor and across.
    let (a, b, c, web) = (
        cloud.host("a"),
        cloud.host("b"),
        cloud.host("c"),
        cloud.host("web"),
    );
    assert!(cloud.pings(a, b.ip()), "a -> b, same hypervisor");
    assert!(cloud.pings(a, c.ip()), "a -> c, across hypervisors");
    assert!(cloud.pings(c, a.ip()), "c -> a");
    assert!(cloud.tcp(c, a, c.ip(), 7000), "tcp a -> c");

    // A new group denies all ingress.
    assert!(!cloud.pings(a, web.ip()), "web has no ingress rule");
    assert!(!cloud.tcp(web, a, web.ip(), 80));

    // Allow tcp 80 from anywhere.
    let http = rule(
        "sgr-http",
        Direction::Ingress,
        Service::Tcp { from: 80, to: 80 },
        anywhere(),
    );
    cloud.compiler.upsert_group(web_group(vec![http.clone()]));
    cloud.sync();
    let (a, web) = (cloud.host("a"), cloud.host("web"));
    assert!(cloud.tcp(web, a, web.ip(), 80), "tcp 80 allowed");
    assert!(!cloud.tcp(web, a, web.ip(), 81), "only port 80");
    assert!(!cloud.pings(a, web.ip()), "still no icmp");

    // An Elastic IP for web, reachable from the external host.
    let icmp = rule(
        "sgr-icmp",
        Direction::Ingress,
        Service::Icmp {
            icmp_type: None,
            code: None,
        },
        anywhere(),
    );
    cloud.compiler.upsert_group(web_group(vec![http.clone(), icmp]));
    cloud.compiler.upsert_address(Address {
        allocation_id: "eipalloc-1".into(),
        public_ip: EIP,
        instance: Some("i-web".into()),
    });
    cloud.sync();
    let (web, ext) = (cloud.host("web"), &cloud.external);
    assert!(cloud.pings(ext, EIP), "external host pings the Elastic IP");
    assert!(
        cloud.tcp(web, ext, EIP, 80),
        "external host reaches port 80 through the Elastic IP"
    );
    // The instance sees the external host's address.
    let mut server = web.spawn(&["nc", "-l", "-n", "-v", "-p", "80"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ext.exec(&["sh", "-c", &format!("echo hi | nc -n -w 2 -q 0 {EIP} 80")])
        .unwrap();
    let _ = server.wait_timeout(Duration::from_secs(3));
    let seen = server.stderr().unwrap_or_default();
    assert!(seen.contains(&EXTERNAL.to_string()), "instance saw {seen:?}");
    // The instance connects out; the external host sees the public address.
    let mut outside = ext.spawn(&["nc", "-l", "-n", "-v", "-p", "9000"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    web.exec(&["sh", "-c", &format!("echo out | nc -n -w 2 -q 0 {EXTERNAL} 9000")])
        .unwrap();
    let _ = outside.wait_timeout(Duration::from_secs(3));
    let seen = outside.stderr().unwrap_or_default();
    assert!(seen.contains(&EIP.to_string()), "external host saw {seen:?}");
    assert!(outside.stdout().unwrap_or_default().contains("out"));
    // Without an Elastic IP, an instance cannot leave the private network.
    assert!(!cloud.pings(cloud.host("a"), EXTERNAL));

    // Revoking closes port 80 again, and the Elastic IP goes with the
    // disassociation.
    cloud.compiler.upsert_group(web_group(vec![]));
    cloud.compiler.upsert_address(Address {
        allocation_id: "eipalloc-1".into(),
        public_ip: EIP,
        instance: None,
    });
    cloud.sync();
    let (a, web, ext) = (cloud.host("a"), cloud.host("web"), &cloud.external);
    assert!(!cloud.tcp(web, a, web.ip(), 80), "revoked");
    assert!(!cloud.pings(ext, EIP), "disassociated");
}

#[test]
fn instances_cannot_spoof() {
    let mut cloud = Cloud::new();
    cloud.compiler.upsert_group(default_group());
    cloud.launch("a", 0, 11, &["sg-default"]);
    cloud.launch("b", 1, 12, &["sg-default"]);
    cloud.sync();
    let (a, b) = (cloud.host("a"), cloud.host("b"));
    assert!(cloud.pings(a, b.ip()));
    // A second address on a's interface: traffic from it goes nowhere.
    a.exec_ok(&["ip", "addr", "add", "10.1.0.99/16", "dev", "eth0"])
        .unwrap();
    let spoofed = a
        .exec(&[
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "10.1.0.99",
            &b.ip().to_string(),
        ])
        .unwrap();
    assert!(
        !spoofed.status.success(),
        "a forged source address must not get through"
    );
    // Another MAC: nothing gets through, not even ARP.
    a.exec_ok(&["ip", "addr", "del", "10.1.0.99/16", "dev", "eth0"])
        .unwrap();
    a.exec_ok(&["ip", "neigh", "flush", "all"]).unwrap();
    a.exec_ok(&["ip", "link", "set", "eth0", "address", "02:fc:00:00:00:99"])
        .unwrap();
    assert!(!cloud.pings(a, b.ip()), "a forged MAC must not get through");
}
