//! The compiler without a switch: what it emits for a small cloud, that it
//! is deterministic, and that incremental compilation always equals
//! compiling from scratch.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use compiler::{
    Address, Cidr, Compiler, Direction, FlowSpec, Group, Hypervisor, Instance, Network, OwnerKind, Peer,
    PublicGateway, Rule, Service, Stage,
};
use openflow::{Action, Instruction, MacAddr, OxmField};
use proptest::prelude::*;

fn net() -> Network {
    Network {
        id: "subnet-1".into(),
        cidr: Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 16),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
    }
}

fn hv(n: u64) -> Hypervisor {
    Hypervisor {
        name: format!("hv{n}"),
        datapath_id: 0xfa00 + n,
        uplink_port: 1,
    }
}

fn inst(n: u8, hv: u64, groups: &[&str]) -> Instance {
    Instance {
        id: format!("i-{n:017x}"),
        hypervisor: Some(format!("hv{hv}")),
        port: Some(10 + u32::from(n)),
        mac: MacAddr([0x02, 0xfc, 0, 0, 0, n]),
        ip: Ipv4Addr::new(10, 1, 0, 10 + n),
        network: "subnet-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
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

fn web_group() -> Group {
    Group {
        id: "sg-web".into(),
        rules: vec![
            rule("sgr-egress-all", Direction::Egress, Service::All, anywhere()),
            rule(
                "sgr-http",
                Direction::Ingress,
                Service::Tcp { from: 80, to: 80 },
                anywhere(),
            ),
            rule(
                "sgr-ssh-admin",
                Direction::Ingress,
                Service::Tcp { from: 22, to: 22 },
                Peer::Cidr(Cidr::new(Ipv4Addr::new(192, 0, 2, 0), 24)),
            ),
            rule(
                "sgr-from-db",
                Direction::Ingress,
                Service::All,
                Peer::Group("sg-db".into()),
            ),
        ],
    }
}

fn db_group() -> Group {
    Group {
        id: "sg-db".into(),
        rules: vec![
            rule("sgr-db-egress", Direction::Egress, Service::All, anywhere()),
            rule(
                "sgr-pg",
                Direction::Ingress,
                Service::Tcp { from: 5432, to: 5433 },
                Peer::Group("sg-web".into()),
            ),
        ],
    }
}

fn small_cloud() -> Compiler {
    let mut c = Compiler::new();
    c.upsert_hypervisor(hv(1));
    c.upsert_hypervisor(hv(2));
    c.upsert_network(net());
    c.set_public_gateway(Some(PublicGateway {
        ip: Ipv4Addr::new(198, 51, 100, 1),
        mac: Some(MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99])),
    }));
    c.upsert_group(web_group());
    c.upsert_group(db_group());
    c.upsert_instance(inst(1, 1, &["sg-web"]));
    c.upsert_instance(inst(2, 1, &["sg-web"]));
    c.upsert_instance(inst(3, 2, &["sg-db"]));
    c.upsert_address(Address {
        allocation_id: "eipalloc-1".into(),
        public_ip: Ipv4Addr::new(198, 51, 100, 10),
        instance: Some(inst(1, 1, &[]).id),
    });
    c
}

fn flows_of(c: &Compiler, dpid: u64, kind: OwnerKind, id: &str) -> Vec<FlowSpec> {
    c.snapshot()
        .get(&dpid)
        .into_iter()
        .flatten()
        .find(|(_, (o, _))| o.kind == kind && o.id == id)
        .map(|(_, (_, f))| f.to_vec())
        .unwrap_or_default()
}

#[test]
fn a_small_cloud_compiles_to_the_expected_owners() {
    let mut c = small_cloud();
    let updates = c.flush();
    assert!(!updates.is_empty());
    let snap = c.snapshot();
    let kinds = |dpid: u64| -> Vec<(OwnerKind, String)> {
        snap[&dpid]
            .values()
            .map(|(o, _)| (o.kind, o.id.clone()))
            .collect()
    };
    let hv1 = kinds(0xfa01);
    for (kind, id) in [
        (OwnerKind::Pipeline, ""),
        (OwnerKind::Network, "subnet-1"),
        (OwnerKind::Instance, "i-00000000000000001"),
        (OwnerKind::Instance, "i-00000000000000002"),
        (OwnerKind::Address, "eipalloc-1"),
        (OwnerKind::Rule, "sgr-http"),
        (OwnerKind::Rule, "sgr-from-db"),
    ] {
        assert!(
            hv1.contains(&(kind, id.to_string())),
            "{kind:?} {id} missing on hv1: {hv1:?}"
        );
    }
    // The database's rules apply on hv2 only.
    assert!(!hv1.contains(&(OwnerKind::Rule, "sgr-pg".to_string())));
    assert!(kinds(0xfa02).contains(&(OwnerKind::Rule, "sgr-pg".to_string())));

    // Two web instances on hv1, HTTP from anywhere: the members are one
    // field (their group's tag), so one flow, however many members.
    let http = flows_of(&c, 0xfa01, OwnerKind::Rule, "sgr-http");
    assert_eq!(http.len(), 1, "{http:#?}");
    assert!(http.iter().all(|f| f.stage == Stage::IngressRules));
    assert!(
        http.iter()
            .all(|f| f.instructions == vec![Instruction::GotoTable(Stage::IngressCommit.table())])
    );

    // Postgres from the two web instances to ports 5432-5433 on the one db
    // instance: peers (2) x ports (1 mask) -> the single-valued dimensions
    // fold into the common match, leaving the peers as direct flows.
    let pg = flows_of(&c, 0xfa02, OwnerKind::Rule, "sgr-pg");
    assert_eq!(pg.len(), 2, "{pg:#?}");
    assert!(pg.iter().all(|f| {
        f.match_
            .fields
            .contains(&OxmField::TcpDst(openflow::Masked::new(5432, 0xfffe)))
    }));

    // The Elastic IP: ARP, DNAT in, SNAT out.
    let eip = flows_of(&c, 0xfa01, OwnerKind::Address, "eipalloc-1");
    assert_eq!(eip.len(), 3);
    assert!(eip.iter().any(|f| f.stage == Stage::Route
        && f.instructions.iter().any(|i| matches!(i, Instruction::ApplyActions(a)
            if a.contains(&Action::SetField(OxmField::Ipv4Src(openflow::Masked::exact(Ipv4Addr::new(198, 51, 100, 10)))))))));
    // Nothing of it on hv2.
    assert!(flows_of(&c, 0xfa02, OwnerKind::Address, "eipalloc-1").is_empty());
}

#[test]
fn many_sources_and_ports_use_a_conjunction() {
    let mut c = Compiler::new();
    c.upsert_hypervisor(hv(1));
    c.upsert_network(net());
    let sources: Vec<Cidr> = (0..5)
        .map(|i| Cidr::new(Ipv4Addr::new(172, 16, i, 0), 24))
        .collect();
    let mut rules = vec![];
    for (i, s) in sources.iter().enumerate() {
        // Five rules with the same ports but different sources would each
        // get their own flows; one rule per source keeps the test simple:
        // here a single rule names a group instead.
        let _ = (i, s);
    }
    // Source group with 5 members, port range 1000-1999 (4 masks), 3 targets.
    rules.push(rule(
        "sgr-range",
        Direction::Ingress,
        Service::Tcp { from: 1000, to: 1999 },
        Peer::Group("sg-clients".into()),
    ));
    c.upsert_group(Group {
        id: "sg-app".into(),
        rules,
    });
    c.upsert_group(Group {
        id: "sg-clients".into(),
        rules: vec![],
    });
    for n in 1..=3 {
        c.upsert_instance(inst(n, 1, &["sg-app"]));
    }
    for n in 11..=15 {
        let mut i = inst(n, 1, &["sg-clients"]);
        i.hypervisor = None; // elsewhere; their addresses still count
        i.port = None;
        c.upsert_instance(i);
    }
    c.flush();
    let flows = flows_of(&c, 0xfa01, OwnerKind::Rule, "sgr-range");
    let masks = compiler::ports::range_to_masks(1000, 1999).len();
    assert_eq!(
        flows.len(),
        5 + masks + 1,
        "sources + port masks + the conj_id flow (the 3 targets are one tag)"
    );
    let conj = flows
        .iter()
        .filter(|f| f.match_.fields.iter().any(|x| matches!(x, OxmField::ConjId(_))))
        .count();
    assert_eq!(conj, 1);
}

#[test]
fn groups_beyond_the_tags_match_their_members_ports() {
    // One more group on a hypervisor than there are tags: every member
    // sets its group's tag, every rule matches it, except for the group
    // left without one, whose rule matches its member's port instead.
    let mut c = Compiler::new();
    c.upsert_hypervisor(hv(1));
    c.upsert_network(net());
    let n = usize::from(compiler::GROUP_TAGS) + 1;
    for g in 0..n {
        c.upsert_group(Group {
            id: format!("sg-{g:03}"),
            rules: vec![rule(
                &format!("sgr-{g:03}"),
                Direction::Ingress,
                Service::Tcp { from: 80, to: 80 },
                anywhere(),
            )],
        });
        let mut i = inst(0, 1, &[&format!("sg-{g:03}")]);
        i.id = format!("i-{g:017x}");
        i.port = Some(100 + g as u32);
        i.ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 1, 0)) + g as u32);
        i.mac = MacAddr([0x02, 0xfc, 0, 0, 1, g as u8]);
        c.upsert_instance(i);
    }
    c.flush();
    let tag_match = |f: &FlowSpec| {
        f.match_.fields.iter().any(|x| {
            matches!(x, OxmField::Reg { index, .. } if (compiler::REG_DST_GROUPS..compiler::REG_DST_GROUPS + 4).contains(index))
        })
    };
    let (mut tagged, mut by_port) = (0, 0);
    for g in 0..n {
        let flows = flows_of(&c, 0xfa01, OwnerKind::Rule, &format!("sgr-{g:03}"));
        assert_eq!(flows.len(), 1, "{flows:#?}");
        if tag_match(&flows[0]) {
            tagged += 1;
        } else {
            assert!(flows[0].match_.fields.contains(&OxmField::Reg {
                index: 2,
                value: openflow::Masked::exact(100 + g as u32),
            }));
            by_port += 1;
            // Its member sets no tag.
            let own = flows_of(&c, 0xfa01, OwnerKind::Instance, &format!("i-{g:017x}"));
            assert!(!own.iter().any(|f| f.instructions.iter().any(|i| matches!(i,
                Instruction::ApplyActions(a) if a.iter().any(|a| matches!(a, Action::SetField(OxmField::Reg { index, .. }) if *index >= compiler::REG_SRC_GROUPS))))));
        }
    }
    assert_eq!((tagged, by_port), (usize::from(compiler::GROUP_TAGS), 1));
}

#[test]
fn insertion_order_does_not_matter() {
    let mut a = small_cloud();
    a.flush();
    let mut b = Compiler::new();
    b.upsert_address(Address {
        allocation_id: "eipalloc-1".into(),
        public_ip: Ipv4Addr::new(198, 51, 100, 10),
        instance: Some(inst(1, 1, &[]).id),
    });
    b.upsert_instance(inst(3, 2, &["sg-db"]));
    b.upsert_instance(inst(2, 1, &["sg-web"]));
    b.upsert_instance(inst(1, 1, &["sg-web"]));
    b.upsert_group(db_group());
    b.flush();
    b.upsert_group(web_group());
    b.set_public_gateway(Some(PublicGateway {
        ip: Ipv4Addr::new(198, 51, 100, 1),
        mac: Some(MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x99])),
    }));
    b.upsert_network(net());
    b.upsert_hypervisor(hv(2));
    b.upsert_hypervisor(hv(1));
    b.flush();
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn a_rule_change_touches_only_that_rule() {
    let mut c = small_cloud();
    c.flush();
    let mut web = web_group();
    web.rules[1].service = Service::Tcp { from: 8080, to: 8080 };
    c.upsert_group(web);
    let updates = c.flush();
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0].owner.id, "sgr-http");
    assert_eq!(updates[0].datapath_id, 0xfa01);
}

#[test]
fn a_new_member_updates_every_rule_that_names_its_group() {
    let mut c = small_cloud();
    c.flush();
    // A second database instance on hv2: sgr-from-db on hv1 gains a peer.
    c.upsert_instance(inst(4, 2, &["sg-db"]));
    let updates = c.flush();
    let touched: Vec<(u64, String)> = updates
        .iter()
        .map(|u| (u.datapath_id, u.owner.id.clone()))
        .collect();
    assert!(
        touched.contains(&(0xfa01, "sgr-from-db".to_string())),
        "{touched:?}"
    );
    assert!(
        touched.contains(&(0xfa02, "i-00000000000000004".to_string())),
        "{touched:?}"
    );
    assert!(!touched.iter().any(|(_, id)| id == "sgr-http"), "{touched:?}");
}

#[test]
fn terminating_and_unbinding_withdraw_flows() {
    let mut c = small_cloud();
    c.flush();
    c.remove_instance(&inst(1, 1, &[]).id);
    c.flush();
    assert!(flows_of(&c, 0xfa01, OwnerKind::Instance, "i-00000000000000001").is_empty());
    // Its Elastic IP stays allocated but has nowhere to go.
    assert!(flows_of(&c, 0xfa01, OwnerKind::Address, "eipalloc-1").is_empty());
    let mut unbound = inst(2, 1, &["sg-web"]);
    unbound.port = None;
    c.upsert_instance(unbound);
    c.flush();
    assert!(flows_of(&c, 0xfa01, OwnerKind::Instance, "i-00000000000000002").is_empty());
    assert!(flows_of(&c, 0xfa01, OwnerKind::Rule, "sgr-http").is_empty());
}

/// A random edit of the small cloud.
#[derive(Debug, Clone)]
enum Edit {
    Instance {
        n: u8,
        hv: u64,
        bound: bool,
        groups: Vec<&'static str>,
    },
    RemoveInstance(u8),
    Group(usize, Vec<Rule>),
    RemoveGroup(usize),
    Address {
        n: u8,
        target: Option<u8>,
    },
    RemoveAddress(u8),
    Gateway(Option<u8>),
    Hypervisor(u64, u32),
}

const GROUPS: [&str; 3] = ["sg-a", "sg-b", "sg-c"];

fn edit() -> impl Strategy<Value = Edit> {
    let groups = proptest::sample::subsequence(GROUPS.to_vec(), 0..=3);
    let service = prop_oneof![
        Just(Service::All),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Service::Tcp {
            from: a.min(b),
            to: a.max(b)
        }),
        (0u16..100, 0u16..100).prop_map(|(a, b)| Service::Udp {
            from: a.min(b),
            to: a.max(b)
        }),
        (proptest::option::of(0u8..20), proptest::option::of(0u8..5)).prop_map(|(t, c)| Service::Icmp {
            icmp_type: t,
            code: if t.is_some() { c } else { None }
        }),
        (1u8..255).prop_map(Service::Protocol),
    ];
    let peer = prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Peer::Cidr(Cidr::new(Ipv4Addr::from(a), p))),
        (0usize..3).prop_map(|g| Peer::Group(GROUPS[g].to_string())),
    ];
    let rule = (0u8..6, any::<bool>(), service, peer).prop_map(|(id, ingress, service, peer)| Rule {
        id: format!("sgr-{id}"),
        direction: if ingress {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        service,
        peer,
    });
    prop_oneof![
        4 => (0u8..6, 1u64..=2, any::<bool>(), groups).prop_map(|(n, hv, bound, groups)| Edit::Instance { n, hv, bound, groups }),
        1 => (0u8..6).prop_map(Edit::RemoveInstance),
        3 => (0usize..3, proptest::collection::vec(rule, 0..4)).prop_map(|(g, mut rules)| {
            // Rule ids are unique across groups in the model.
            for r in &mut rules {
                r.id = format!("{}-{}", GROUPS[g], r.id);
            }
            rules.sort_by(|a, b| a.id.cmp(&b.id));
            rules.dedup_by(|a, b| a.id == b.id);
            Edit::Group(g, rules)
        }),
        1 => (0usize..3).prop_map(Edit::RemoveGroup),
        2 => (0u8..3, proptest::option::of(0u8..6)).prop_map(|(n, target)| Edit::Address { n, target }),
        1 => (0u8..3).prop_map(Edit::RemoveAddress),
        1 => proptest::option::of(0u8..3).prop_map(Edit::Gateway),
        1 => (1u64..=2, 1u32..3).prop_map(|(n, up)| Edit::Hypervisor(n, up)),
    ]
}

fn apply(c: &mut Compiler, e: &Edit) {
    match e {
        Edit::Instance { n, hv, bound, groups } => {
            let mut i = inst(*n, *hv, groups);
            if !bound {
                i.port = None;
            }
            c.upsert_instance(i);
        }
        Edit::RemoveInstance(n) => c.remove_instance(&inst(*n, 1, &[]).id),
        Edit::Group(g, rules) => c.upsert_group(Group {
            id: GROUPS[*g].into(),
            rules: rules.clone(),
        }),
        Edit::RemoveGroup(g) => c.remove_group(GROUPS[*g]),
        Edit::Address { n, target } => c.upsert_address(Address {
            allocation_id: format!("eipalloc-{n}"),
            public_ip: Ipv4Addr::new(198, 51, 100, 10 + n),
            instance: target.map(|t| inst(t, 1, &[]).id),
        }),
        Edit::RemoveAddress(n) => c.remove_address(&format!("eipalloc-{n}")),
        Edit::Gateway(mac) => c.set_public_gateway(Some(PublicGateway {
            ip: Ipv4Addr::new(198, 51, 100, 1),
            mac: mac.map(|m| MacAddr([2, 0, 0, 0, 0, m])),
        })),
        Edit::Hypervisor(n, uplink) => c.upsert_hypervisor(Hypervisor {
            uplink_port: *uplink,
            ..hv(*n)
        }),
    }
}

/// The model an edit sequence leaves, replayed from scratch in a fixed
/// order (latest value of each object wins).
fn from_scratch(edits: &[Edit]) -> Compiler {
    let mut last: BTreeMap<String, Edit> = BTreeMap::new();
    for e in edits {
        let key = match e {
            Edit::Instance { n, .. } | Edit::RemoveInstance(n) => format!("i{n}"),
            Edit::Group(g, _) | Edit::RemoveGroup(g) => format!("g{g}"),
            Edit::Address { n, .. } | Edit::RemoveAddress(n) => format!("a{n}"),
            Edit::Gateway(_) => "gw".into(),
            Edit::Hypervisor(n, _) => format!("h{n}"),
        };
        last.insert(key, e.clone());
    }
    let mut c = Compiler::new();
    c.bulk_load(|c| {
        c.upsert_network(net());
        c.upsert_hypervisor(hv(1));
        c.upsert_hypervisor(hv(2));
        // Reverse key order on purpose: the result must not depend on it.
        for e in last.values().rev() {
            apply(c, e);
        }
    });
    c.flush();
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn incremental_compilation_equals_compiling_from_scratch(edits in proptest::collection::vec(edit(), 1..40), flush_every in 1usize..8) {
        let mut c = Compiler::new();
        c.upsert_network(net());
        c.upsert_hypervisor(hv(1));
        c.upsert_hypervisor(hv(2));
        c.flush();
        for (i, e) in edits.iter().enumerate() {
            apply(&mut c, e);
            if i % flush_every == 0 {
                c.flush();
            }
        }
        c.flush();
        let full = from_scratch(&edits);
        prop_assert_eq!(c.snapshot(), full.snapshot());
    }

    #[test]
    fn forgetting_flows_reports_the_same_updates(edits in proptest::collection::vec(edit(), 1..40), flush_every in 1usize..8) {
        let mut keep = Compiler::new();
        let mut forget = Compiler::new();
        forget.forget_flows();
        for c in [&mut keep, &mut forget] {
            c.upsert_network(net());
            c.upsert_hypervisor(hv(1));
            c.upsert_hypervisor(hv(2));
        }
        prop_assert_eq!(keep.flush(), forget.flush());
        for (i, e) in edits.iter().enumerate() {
            apply(&mut keep, e);
            apply(&mut forget, e);
            if i % flush_every == 0 {
                prop_assert_eq!(keep.flush(), forget.flush());
            }
        }
        prop_assert_eq!(keep.flush(), forget.flush());
        prop_assert_eq!(keep.snapshot(), forget.snapshot());
    }
}
