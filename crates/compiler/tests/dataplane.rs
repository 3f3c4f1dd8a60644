//! The compiled pipeline on real Open vSwitch bridges with real packets: two
//! hypervisor bridges joined to a "physical" bridge, instances as network
//! namespaces on them, a public gateway and an external host behind it.
//! The model is built by hand here (the EC2 API drives it in the end-to-end
//! tests); what is checked is that the flows do what EC2 promises.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use compiler::{Address, Cidr, Direction, Group, Peer, Rule, Service};
use support::{Cloud, EIP, EXTERNAL};

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
    web.wait_listening(80, false, Duration::from_secs(10)).unwrap();
    ext.exec(&["sh", "-c", &format!("echo hi | nc -n -w 2 -q 0 {EIP} 80")])
        .unwrap();
    let _ = server.wait_timeout(Duration::from_secs(3));
    let seen = server.stderr().unwrap_or_default();
    assert!(seen.contains(&EXTERNAL.to_string()), "instance saw {seen:?}");
    // The instance connects out; the external host sees the public address.
    let mut outside = ext.spawn(&["nc", "-l", "-n", "-v", "-p", "9000"]).unwrap();
    ext.wait_listening(9000, false, Duration::from_secs(10)).unwrap();
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
