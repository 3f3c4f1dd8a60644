//! The pipeline every hypervisor bridge runs, declared once: each stage is
//! a named table (the single source of table numbers, as OVN's northd
//! declares its stages), plus the registers and MAC addresses the stages
//! share.
//!
//! ```text
//! Tables only go forward (goto_table), hence FROM_UPLINK right after
//! CLASSIFY.
//!
//! instance port ─► CLASSIFY ─► PORT_SECURITY ─┬─► ARP_FROM_INSTANCE ─► (responder | flood | DELIVER)
//!                                             └─► EGRESS_CONNTRACK ─► EGRESS_RULES ─► EGRESS_COMMIT ─► ROUTE
//! ROUTE ─► (Elastic IP: SNAT, out the uplink) | DELIVER
//! uplink ─► FROM_UPLINK ─► (ARP responder for Elastic IPs | ARP flood | Elastic IP DNAT | DELIVER)
//! DELIVER ─► (local instance: INGRESS_CONNTRACK ─► INGRESS_RULES ─► INGRESS_COMMIT ─► OUTPUT) | uplink
//! ```

use std::fmt;

use openflow::{FieldId, MacAddr};

/// A stage of the pipeline; its discriminant is its table number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Where a packet comes from: an instance port (recorded in
    /// [`REG_SRC_PORT`]) or the uplink.
    Classify = 0,
    /// Traffic from the physical network: ARP for Elastic IPs and local
    /// networks, Elastic IP destination NAT, delivery.
    FromUplink = 5,
    /// Traffic from an instance must carry its own MAC and IP address.
    PortSecurity = 10,
    /// ARP from instances: the private gateway answered in the switch,
    /// requests flooded within the network, replies delivered.
    ArpFromInstance = 15,
    /// Conntrack in the sending instance's zone.
    EgressConntrack = 20,
    /// The sender's security groups: replies pass, originals need a rule.
    EgressRules = 21,
    /// Commit the allowed connection in the sender's zone.
    EgressCommit = 22,
    /// Routing: Elastic IP source NAT towards the public gateway, or on to
    /// delivery.
    Route = 30,
    /// Delivery by destination MAC: to a local instance, else the uplink.
    Deliver = 35,
    /// Conntrack in the receiving instance's zone.
    IngressConntrack = 50,
    /// The receiver's security groups.
    IngressRules = 51,
    /// Commit the allowed connection in the receiver's zone.
    IngressCommit = 52,
    /// Out of the receiving instance's port.
    Output = 60,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 13] = [
        Stage::Classify,
        Stage::FromUplink,
        Stage::PortSecurity,
        Stage::ArpFromInstance,
        Stage::EgressConntrack,
        Stage::EgressRules,
        Stage::EgressCommit,
        Stage::Route,
        Stage::Deliver,
        Stage::IngressConntrack,
        Stage::IngressRules,
        Stage::IngressCommit,
        Stage::Output,
    ];

    /// The table number.
    pub fn table(self) -> u8 {
        self as u8
    }

    /// The stage of a table number.
    pub fn from_table(table: u8) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.table() == table)
    }

    /// A readable name, as `flowgate flows` and `flowgate trace` print it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Classify => "classify",
            Stage::PortSecurity => "port_security",
            Stage::ArpFromInstance => "arp_from_instance",
            Stage::EgressConntrack => "egress_conntrack",
            Stage::EgressRules => "egress_rules",
            Stage::EgressCommit => "egress_commit",
            Stage::Route => "route",
            Stage::Deliver => "deliver",
            Stage::FromUplink => "from_uplink",
            Stage::IngressConntrack => "ingress_conntrack",
            Stage::IngressRules => "ingress_rules",
            Stage::IngressCommit => "ingress_commit",
            Stage::Output => "output",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The OpenFlow port of the sending instance (0 when the packet came from
/// the uplink); its low 16 bits are also the sender's conntrack zone.
pub const REG_SRC_PORT: FieldId = FieldId::Reg(0);
/// The OpenFlow port of the receiving instance; its low 16 bits are also the
/// receiver's conntrack zone.
pub const REG_DST_PORT: FieldId = FieldId::Reg(2);

/// How many security groups of a hypervisor get a tag: a bit that the
/// flows of each member set, so that a rule matches its group's bit instead
/// of every member's port (its cost no longer grows with its members).
/// Groups beyond (more than this many on one hypervisor) fall back to
/// matching their members' ports.
pub const GROUP_TAGS: u16 = 128;

/// First of the four registers holding the sending instance's group tags
/// (bit `t % 32` of register `REG_SRC_GROUPS + t / 32`), set where its
/// traffic enters the pipeline.
pub const REG_SRC_GROUPS: u8 = 4;

/// First of the four registers holding the receiving instance's group tags,
/// set where traffic is delivered to it.
pub const REG_DST_GROUPS: u8 = 8;

/// The MAC address of the virtual router that answers for every private
/// network's gateway address. It never leaves a hypervisor as a source
/// address (ARP replies go back out of the asking port only), so every
/// hypervisor can use the same one.
pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0xfa, 0x00, 0x00, 0x00, 0x01]);

/// The MAC address an Elastic IP answers with and sends from:
/// `02:fb:` followed by the address. Because it belongs to the address, not
/// to a hypervisor, moving the address moves the MAC with it: upstream ARP
/// caches stay right, and the physical network relearns the MAC's port from
/// the first frame (or gratuitous ARP) the new hypervisor sends.
pub fn elastic_ip_mac(ip: std::net::Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x02, 0xfb, o[0], o[1], o[2], o[3]])
}
