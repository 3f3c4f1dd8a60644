//! Readers of per-owner counters find an owner's flows by the cookie
//! `settled_cookies` names, without the compiler's owner table: it must be
//! the cookie the compiler actually gave.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use compiler::{
    Cidr, Compiler, Direction, Group, Hypervisor, Instance, Network, OwnerKind, Peer, Rule, Service,
    cookie_kind, settled_cookies,
};
use openflow::MacAddr;

#[test]
fn settled_cookies_are_the_cookies_the_compiler_gave_on_every_hypervisor() {
    let mut c = Compiler::new();
    c.upsert_network(Network {
        id: "subnet-1".into(),
        cidr: Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 16),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
    });
    for n in 1..=2u8 {
        c.upsert_hypervisor(Hypervisor {
            name: format!("hv{n}"),
            datapath_id: 0xfa00 + u64::from(n),
            uplink_port: 1,
        });
        c.upsert_instance(Instance {
            id: format!("i-{n:017x}"),
            hypervisor: Some(format!("hv{n}")),
            port: Some(10),
            mac: MacAddr([0x02, 0xfc, 0, 0, 0, n]),
            ip: Ipv4Addr::new(10, 1, 0, 10 + n),
            network: "subnet-1".into(),
            groups: vec!["sg-1".into()],
        });
    }
    let ids: Vec<String> = (0..2000).map(|i| format!("sgr-{i:017x}")).collect();
    c.upsert_group(Group {
        id: "sg-1".into(),
        rules: ids
            .iter()
            .enumerate()
            .map(|(i, id)| Rule {
                id: id.clone(),
                direction: Direction::Ingress,
                service: Service::Tcp {
                    from: i as u16,
                    to: i as u16,
                },
                peer: Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
            })
            .collect(),
    });
    c.flush();
    let settled = settled_cookies(OwnerKind::Rule, ids.iter().map(String::as_str));
    let snapshot = c.snapshot();
    assert_eq!(snapshot.len(), 2);
    for owners in snapshot.values() {
        let rules: Vec<_> = owners
            .iter()
            .filter(|(cookie, _)| cookie_kind(**cookie) == Some(OwnerKind::Rule))
            .collect();
        assert_eq!(rules.len(), ids.len());
        for (cookie, (owner, flows)) in rules {
            assert!(!flows.is_empty());
            assert_eq!(settled[owner.id.as_str()], Some(*cookie), "{owner}");
        }
    }
}
