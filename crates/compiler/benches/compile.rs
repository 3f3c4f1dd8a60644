//! Compiler benchmark: a full compile of a large cloud (10,000 instances on
//! 200 hypervisors, 2,000 groups, 50,000 rules, 5,000 Elastic IPs) and
//! one-change incremental compiles, with memory. The baseline measured in
//! the same run is the cost of merely building the flow values for the same
//! number of flows (the floor of any compiler that outputs them).
//!
//! `cargo bench -p compiler --bench compile`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use compiler::{
    Address, Cidr, Compiler, Direction, FlowSpec, Group, Hypervisor, Instance, Network, Peer, PublicGateway,
    Rule, Service, Stage,
};
use openflow::{Action, MacAddr, OxmField, PortNo};

const HYPERVISORS: usize = 200;
const INSTANCES: usize = 10_000;
const GROUPS: usize = 2_000;
const RULES_PER_GROUP: usize = 25;
const ADDRESSES: usize = 5_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn group_rules(g: usize) -> Vec<Rule> {
    (0..RULES_PER_GROUP)
        .map(|r| {
            let id = format!("sgr-{g:05}-{r:02}");
            match r {
                0 => Rule {
                    id,
                    direction: Direction::Egress,
                    service: Service::All,
                    peer: any(),
                },
                1 => Rule {
                    id,
                    direction: Direction::Ingress,
                    service: Service::Tcp { from: 22, to: 22 },
                    peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8)),
                },
                2 => Rule {
                    id,
                    direction: Direction::Ingress,
                    service: Service::All,
                    // Members of the neighbouring group.
                    peer: Peer::Group(format!("sg-{:05}", (g + 1) % GROUPS)),
                },
                3 => Rule {
                    id,
                    direction: Direction::Ingress,
                    service: Service::Icmp {
                        icmp_type: None,
                        code: None,
                    },
                    peer: any(),
                },
                r => Rule {
                    id,
                    direction: Direction::Ingress,
                    service: Service::Tcp {
                        from: 1000 + r as u16 * 10,
                        to: 1000 + r as u16 * 10 + 7,
                    },
                    peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(172, 16, (r % 200) as u8, 0), 24)),
                },
            }
        })
        .collect()
}

fn any() -> Peer {
    Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0))
}

fn instance(i: usize) -> Instance {
    Instance {
        id: format!("i-{i:017x}"),
        hypervisor: Some(format!("hv{}", i % HYPERVISORS)),
        port: Some(10 + (i / HYPERVISORS) as u32),
        mac: MacAddr([0x02, 0xfc, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        ip: Ipv4Addr::from(0x0a00_0000 + 10 + i as u32),
        network: "subnet-1".into(),
        groups: vec![format!("sg-{:05}", i % GROUPS)],
    }
}

fn build() -> Compiler {
    let mut c = Compiler::new();
    c.bulk_load(load);
    c
}

fn load(c: &mut Compiler) {
    for h in 0..HYPERVISORS {
        c.upsert_hypervisor(Hypervisor {
            name: format!("hv{h}"),
            datapath_id: 0x1000 + h as u64,
            uplink_port: 1,
        });
    }
    c.upsert_network(Network {
        id: "subnet-1".into(),
        cidr: Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8),
        gateway: Ipv4Addr::new(10, 0, 0, 1),
    });
    c.set_public_gateway(Some(PublicGateway {
        ip: Ipv4Addr::new(198, 18, 0, 1),
        mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
    }));
    for g in 0..GROUPS {
        c.upsert_group(Group {
            id: format!("sg-{g:05}"),
            rules: group_rules(g),
        });
    }
    for i in 0..INSTANCES {
        c.upsert_instance(instance(i));
    }
    for a in 0..ADDRESSES {
        c.upsert_address(Address {
            allocation_id: format!("eipalloc-{a:017x}"),
            public_ip: Ipv4Addr::from(0xc612_0000 + 10 + a as u32),
            instance: Some(instance(a * 2).id),
        });
    }
}

fn main() {
    let rss_before = rss_bytes();
    let t = Instant::now();
    let mut c = build();
    let updates = c.flush();
    let full = t.elapsed();
    let rss_after = rss_bytes();
    let flows: usize = updates.iter().map(|u| u.flows.len()).sum();
    let per_hv: Vec<usize> = c
        .snapshot()
        .values()
        .map(|owners| owners.values().map(|(_, f)| f.len()).sum())
        .collect();
    let max_hv = per_hv.iter().max().copied().unwrap_or(0);
    let mean_hv = flows / per_hv.len().max(1);
    drop(updates);

    // Floor: building as many flow values of a typical shape.
    let t = Instant::now();
    let floor_flows: Vec<FlowSpec> = (0..flows)
        .map(|i| {
            FlowSpec::new(
                Stage::IngressRules,
                1000,
                vec![
                    OxmField::EthType(0x800),
                    OxmField::Reg {
                        index: 2,
                        value: openflow::Masked::exact(i as u32),
                    },
                ],
                vec![Action::output(PortNo(i as u32))],
                Some(Stage::IngressCommit),
            )
        })
        .collect();
    black_box(&floor_flows);
    let floor = t.elapsed();
    drop(floor_flows);

    // One change at a time: a rule's port, an instance's groups, an
    // Elastic IP moving.
    let mut incremental = Vec::new();
    for round in 0..200usize {
        let g = (round * 7) % GROUPS;
        let t = Instant::now();
        match round % 3 {
            0 => {
                let mut rules = group_rules(g);
                rules[5].service = Service::Tcp {
                    from: 2000 + round as u16,
                    to: 2000 + round as u16,
                };
                c.upsert_group(Group {
                    id: format!("sg-{g:05}"),
                    rules,
                });
            }
            1 => {
                let mut inst = instance(round * 13);
                inst.groups.push(format!("sg-{:05}", (g + 5) % GROUPS));
                c.upsert_instance(inst);
            }
            _ => c.upsert_address(Address {
                allocation_id: format!("eipalloc-{:017x}", round),
                public_ip: Ipv4Addr::from(0xc612_0000 + 10 + round as u32),
                instance: Some(instance(round * 2 + 1).id),
            }),
        }
        let updates = c.flush();
        incremental.push(t.elapsed());
        black_box(updates);
    }
    incremental.sort();
    let p50 = incremental[incremental.len() / 2];
    let p99 = incremental[incremental.len() * 99 / 100];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "full compile: {INSTANCES} instances on {HYPERVISORS} hypervisors, {GROUPS} groups, {} rules, {ADDRESSES} Elastic IPs",
        GROUPS * RULES_PER_GROUP
    );
    println!(
        "  time {:8.1} ms   flows {flows} (per hypervisor mean {mean_hv}, max {max_hv})",
        ms(full)
    );
    println!(
        "  memory: RSS grew by {:.0} MiB",
        (rss_after.saturating_sub(rss_before)) as f64 / 1048576.0
    );
    println!(
        "  floor: building {flows} flow values: {:8.1} ms ({:.1}x)",
        ms(floor),
        ms(full) / ms(floor)
    );
    println!("  flows per instance: {:.1}", flows as f64 / INSTANCES as f64);
    println!(
        "one-change incremental compile (200 changes): p50 {:.3} ms, p99 {:.3} ms",
        ms(p50),
        ms(p99)
    );
    println!(
        "  targets: full <= 500 ms and <= 1 GiB: {}; incremental <= 1 ms: {}",
        if ms(full) <= 500.0 && rss_after.saturating_sub(rss_before) <= 1 << 30 {
            "PASS"
        } else {
            "MISS"
        },
        if ms(p50) <= 1.0 { "PASS" } else { "MISS" }
    );
}
