//! The policy both systems build, and what is measured on each.

use std::net::Ipv4Addr;
use std::time::Duration;

/// The EC2-like policy of the comparison: `instances` instances in one
/// group whose ingress is default-deny plus tcp 22 from 10.0.0.0/8, tcp 80,
/// tcp 443, icmp and all traffic from members of the group itself; egress
/// allows everything; `addresses` of the instances have an Elastic IP.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// N.
    pub instances: usize,
    /// K (N / 10 in the issue).
    pub addresses: usize,
    /// How many times each single change is measured (medians are shown).
    pub repeats: usize,
}

impl Policy {
    /// N instances, N/10 Elastic IPs, `repeats` samples per single change.
    pub fn new(instances: usize, repeats: usize) -> Policy {
        Policy {
            instances,
            addresses: instances / 10,
            repeats,
        }
    }

    /// The private address of instance `i` where the harness chooses it
    /// (OVN; flowgate hands them out itself from the same network).
    pub fn private_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, (1 + i / 250) as u8, (1 + i % 250) as u8)
    }

    /// The public address of the `k`th Elastic IP on OVN's router.
    pub fn public_ip(k: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, (1 + k / 250) as u8, (1 + k % 250) as u8)
    }

    /// The TCP port of the `r`th added rule.
    pub fn added_rule_port(r: usize) -> u16 {
        8000 + r as u16
    }
}

/// What one system measured for one policy size.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// "OVN" or "flowgate".
    pub system: &'static str,
    /// Bulk creation, from the first command to every flow installed.
    pub bulk: Duration,
    /// Of which: plugging the instances' ports into the bridge (one
    /// `ovs-vsctl` transaction, the same work for both systems).
    pub bulk_ports: Duration,
    /// CPU time the control plane's processes used during the bulk
    /// creation.
    pub bulk_cpu: Duration,
    /// CPU time ovs-vswitchd used during the bulk creation.
    pub bulk_switch_cpu: Duration,
    /// One added ingress rule (tcp to a new port from anywhere), each sample.
    pub rule: Vec<Duration>,
    /// One added Elastic IP on an instance that had none, each sample.
    pub address: Vec<Duration>,
    /// A change that alters no flow, each sample.
    pub noop: Vec<Duration>,
    /// Flows on the bridge after the bulk creation.
    pub flows: u64,
    /// Resident memory of each control-plane process after the run.
    pub control_memory: Vec<(String, u64)>,
    /// Resident memory of the switch's processes (ovs-vswitchd and its
    /// ovsdb-server), for reference: they are not part of either control
    /// plane, but hold its flows.
    pub switch_memory: Vec<(String, u64)>,
}

impl Figures {
    /// Total resident memory of the control plane.
    pub fn control_total(&self) -> u64 {
        self.control_memory.iter().map(|(_, b)| b).sum()
    }
}
