//! EC2's verdict on one packet, worked out from the model alone: which
//! security group rule let it through or why it went nowhere, and the NAT
//! an Elastic IP applied. It is the oracle of the compiler's differential
//! test (`crates/compiler/tests/differential.rs`), so it is written from
//! EC2's documented semantics and flowgate's documented choices, never from
//! the flows the compiler emits; `flowgate trace` uses it to answer "why
//! was this dropped". Pure: no I/O.
//!
//! [`ofproto_trace`] reads what Open vSwitch says it does with the same
//! packet, for comparing the two.
//!
//! EC2 semantics it follows:
//! * Security groups are allow-only and stateful. An instance's rules are the
//!   union of the rules of all its groups; a group with no ingress rule lets
//!   nothing in, one with no egress rule lets nothing out (the "allow all
//!   egress" of a new group is an ordinary, revocable rule of the model).
//! * Between two instances, the sender's egress rules (remote side: the
//!   destination address) and the receiver's ingress rules (remote side: the
//!   source address) must both allow the packet.
//! * A rule's remote side is a CIDR, or a group, meaning the *private*
//!   addresses of that group's members (a public address never matches a
//!   group reference).
//! * tcp and udp rules allow destination ports `from..=to`; icmp rules a type
//!   and code, `None` meaning any; `All` every protocol; a protocol number
//!   every packet of that protocol.
//! * Replies of allowed connections and packets related to them (ICMP errors)
//!   pass whatever the rules say.
//! * An Elastic IP is a 1:1 NAT: traffic from outside to the public address
//!   reaches the instance's private address with its source unchanged, and
//!   the instance's traffic leaving the private network leaves from the
//!   public address. An instance without one cannot leave its private
//!   network, and private addresses cannot be reached from outside.
//! * Traffic to a public address goes out to the public gateway even when
//!   that address is an Elastic IP of the same cloud, and comes back in
//!   through it, from the sender's public address.
//!
//! flowgate's documented choices it follows:
//! * Every packet in the original direction of a connection is checked
//!   against the current rules, established or not (EC2 lets tracked
//!   connections outlive a revoked rule; flowgate stops them).
//! * Instances on the same private network talk at layer 2; there is no
//!   routing between different private networks.
//! * Port security: an instance can only send with its own MAC and private
//!   address, and an instance that is not placed and plugged in (or not in
//!   the model at all) neither sends nor receives.

pub mod ofproto_trace;

use std::fmt;
use std::net::Ipv4Addr;

use compiler::{
    Address, Cidr, Direction, Group, Hypervisor, Instance, Network, Peer, PublicGateway, Service,
};
use openflow::MacAddr;

/// Everything the evaluator knows: what the compiler is told, plus the
/// public network (where Elastic IPs live, which the public gateway routes
/// back in).
#[derive(Debug, Clone)]
pub struct Model {
    /// Hypervisors (an instance placed elsewhere does not run).
    pub hypervisors: Vec<Hypervisor>,
    /// Private networks.
    pub networks: Vec<Network>,
    /// Instances; one with a port is plugged in and running.
    pub instances: Vec<Instance>,
    /// Security groups with their rules.
    pub groups: Vec<Group>,
    /// Elastic IPs.
    pub addresses: Vec<Address>,
    /// The public gateway; nothing leaves while its MAC is unknown.
    pub public_gateway: Option<PublicGateway>,
    /// The public network (where Elastic IPs live).
    pub public_network: Cidr,
}

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP between two ports.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// UDP between two ports.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP of a type and code.
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp { .. } => 6,
            Protocol::Udp { .. } => 17,
            Protocol::Icmp { .. } => 1,
            Protocol::Other(n) => n,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp { src_port, dst_port } => write!(f, "tcp {src_port}->{dst_port}"),
            Protocol::Udp { src_port, dst_port } => write!(f, "udp {src_port}->{dst_port}"),
            Protocol::Icmp { icmp_type, code } => write!(f, "icmp type {icmp_type} code {code}"),
            Protocol::Other(n) => write!(f, "ip proto {n}"),
        }
    }
}

/// Where the packet stands in its connection, as conntrack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// The first packet of a connection.
    New,
    /// A later packet of an established connection, in its original
    /// direction.
    Established,
    /// A packet of an established (so: allowed) connection, in its reply
    /// direction.
    Reply,
    /// A packet related to an established connection (an ICMP error about
    /// it), in either direction.
    Related,
}

impl ConnState {
    /// Whether the packet belongs to a connection already allowed, so that
    /// rules are not consulted.
    fn rides_an_allowed_connection(self) -> bool {
        matches!(self, ConnState::Reply | ConnState::Related)
    }
}

/// Where a packet enters the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Sent by the instance plugged into that interface, with this source
    /// MAC.
    Instance {
        /// The instance id.
        id: String,
        /// The source MAC it sends with.
        mac: MacAddr,
    },
    /// Arriving from outside through the public gateway.
    Internet,
}

/// One packet, as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Where it enters.
    pub origin: Origin,
    /// Source address as sent.
    pub src: Ipv4Addr,
    /// Destination address as sent.
    pub dst: Ipv4Addr,
    /// Transport.
    pub protocol: Protocol,
    /// Where it stands in its connection.
    pub state: ConnState,
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Instance { id, mac } => write!(f, "from {id} (mac {mac})")?,
            Origin::Internet => write!(f, "from the internet")?,
        }
        write!(
            f,
            ": {} -> {}, {}, {:?}",
            self.src, self.dst, self.protocol, self.state
        )
    }
}

/// What happens to a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reaches an instance, with these addresses (after any NAT).
    Delivered {
        /// The receiving instance.
        instance: String,
        /// Source address on arrival.
        src: Ipv4Addr,
        /// Destination address on arrival.
        dst: Ipv4Addr,
    },
    /// Leaves through the public gateway to the internet, with these
    /// addresses.
    Internet {
        /// Source address as it leaves.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// Goes nowhere.
    Dropped,
}

/// A verdict and the reasoning that led to it, step by step.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// What happens.
    pub verdict: Verdict,
    /// Why, in order: each check made and its outcome.
    pub reasoning: Vec<String>,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}", self.verdict)?;
        for step in &self.reasoning {
            writeln!(f, "  - {step}")?;
        }
        Ok(())
    }
}

/// EC2's verdict on `packet` in `model`.
pub fn evaluate(model: &Model, packet: &Packet) -> Judgement {
    let mut eval = Evaluation {
        model,
        reasoning: Vec::new(),
    };
    let verdict = match &packet.origin {
        Origin::Instance { id, mac } => eval.sent_by_instance(id, *mac, packet),
        Origin::Internet => eval.arriving_from_outside(packet.src, packet.dst, packet),
    };
    Judgement {
        verdict,
        reasoning: eval.reasoning,
    }
}

struct Evaluation<'a> {
    model: &'a Model,
    reasoning: Vec<String>,
}

impl Evaluation<'_> {
    fn note(&mut self, step: String) {
        self.reasoning.push(step);
    }

    fn drop(&mut self, why: String) -> Verdict {
        self.note(why);
        Verdict::Dropped
    }

    fn sent_by_instance(&mut self, id: &str, mac: MacAddr, packet: &Packet) -> Verdict {
        let model = self.model;
        let Some(sender) = model.instances.iter().find(|i| i.id == id) else {
            return self.drop(format!("{id} is not in the model: nothing forwards its packets"));
        };
        if !self.running(sender) {
            return self.drop(format!("{id} is not placed and plugged in"));
        }
        if mac != sender.mac {
            return self.drop(format!(
                "port security: source MAC {mac} is not {id}'s {}",
                sender.mac
            ));
        }
        if packet.src != sender.ip {
            return self.drop(format!(
                "port security: source address {} is not {id}'s {}",
                packet.src, sender.ip
            ));
        }
        let Some(network) = model.networks.iter().find(|n| n.id == sender.network) else {
            return self.drop(format!("{id}'s network {} is not in the model", sender.network));
        };

        if network.cidr.contains(packet.dst) {
            // Layer 2 within the private network.
            let receiver = model
                .instances
                .iter()
                .find(|i| i.network == network.id && i.ip == packet.dst);
            let Some(receiver) = receiver else {
                return self.drop(format!("no instance has {} on {}", packet.dst, network.id));
            };
            if receiver.id == sender.id {
                return self.drop("an instance's traffic to itself never reaches the switch".into());
            }
            if !self.running(receiver) {
                return self.drop(format!("{} is not placed and plugged in", receiver.id));
            }
            self.note(format!("same network {}: layer 2 to {}", network.id, receiver.id));
            if !self.rules_allow(sender, Direction::Egress, packet.dst, packet) {
                return Verdict::Dropped;
            }
            if !self.rules_allow(receiver, Direction::Ingress, packet.src, packet) {
                return Verdict::Dropped;
            }
            return Verdict::Delivered {
                instance: receiver.id.clone(),
                src: packet.src,
                dst: packet.dst,
            };
        }
        if let Some(other) = model.networks.iter().find(|n| n.cidr.contains(packet.dst)) {
            return self.drop(format!(
                "{} is on private network {}: no routing between private networks",
                packet.dst, other.id
            ));
        }

        // A public destination: out through the public gateway, from the
        // instance's Elastic IP.
        let Some(public) = self.elastic_ip_of(sender) else {
            return self.drop(format!(
                "{id} has no Elastic IP: it cannot leave its private network"
            ));
        };
        if !self.rules_allow(sender, Direction::Egress, packet.dst, packet) {
            return Verdict::Dropped;
        }
        if model.public_gateway.and_then(|g| g.mac).is_none() {
            return self.drop("the public gateway's MAC is unknown: nothing can leave".into());
        }
        self.note(format!("leaves from Elastic IP {public} to the public gateway"));
        if model.public_network.contains(packet.dst) {
            // The gateway hands it straight back to the public network.
            self.note(format!(
                "{} is on the public network: the gateway sends it back in",
                packet.dst
            ));
            return self.arriving_from_outside(public, packet.dst, packet);
        }
        Verdict::Internet {
            src: public,
            dst: packet.dst,
        }
    }

    fn arriving_from_outside(&mut self, src: Ipv4Addr, dst: Ipv4Addr, packet: &Packet) -> Verdict {
        let model = self.model;
        let holder = model
            .addresses
            .iter()
            .find(|a| a.public_ip == dst)
            .and_then(|a| a.instance.as_ref())
            .and_then(|id| model.instances.iter().find(|i| &i.id == id));
        if let Some(receiver) = holder {
            if !self.running(receiver) {
                return self.drop(format!(
                    "{dst} belongs to {}, which is not placed and plugged in",
                    receiver.id
                ));
            }
            self.note(format!(
                "Elastic IP {dst} of {}: destination becomes {}",
                receiver.id, receiver.ip
            ));
            if !self.rules_allow(receiver, Direction::Ingress, src, packet) {
                return Verdict::Dropped;
            }
            return Verdict::Delivered {
                instance: receiver.id.clone(),
                src,
                dst: receiver.ip,
            };
        }
        if model.networks.iter().any(|n| n.cidr.contains(dst)) {
            return self.drop(format!("{dst} is private: not reachable from outside"));
        }
        if model.public_network.contains(dst) {
            return self.drop(format!("no instance holds public address {dst}"));
        }
        Verdict::Internet { src, dst }
    }

    /// Placed on a hypervisor of the model and plugged into a port.
    fn running(&self, instance: &Instance) -> bool {
        instance.port.is_some()
            && instance
                .hypervisor
                .as_ref()
                .is_some_and(|h| self.model.hypervisors.iter().any(|hv| &hv.name == h))
    }

    fn elastic_ip_of(&self, instance: &Instance) -> Option<Ipv4Addr> {
        self.model
            .addresses
            .iter()
            .find(|a| a.instance.as_deref() == Some(instance.id.as_str()))
            .map(|a| a.public_ip)
    }

    /// Whether a rule of `instance`'s groups in `direction` allows the
    /// packet with `remote` on the other side. Replies and related packets
    /// need no rule.
    fn rules_allow(
        &mut self,
        instance: &Instance,
        direction: Direction,
        remote: Ipv4Addr,
        packet: &Packet,
    ) -> bool {
        let what = match direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        if packet.state.rides_an_allowed_connection() {
            self.note(format!(
                "{what} of {}: {:?} of an allowed connection, no rule needed",
                instance.id, packet.state
            ));
            return true;
        }
        let model = self.model;
        for group_id in &instance.groups {
            let Some(group) = model.groups.iter().find(|g| &g.id == group_id) else {
                continue;
            };
            for rule in group.rules.iter().filter(|r| r.direction == direction) {
                if service_matches(rule.service, packet.protocol) && self.peer_matches(&rule.peer, remote) {
                    self.note(format!(
                        "{what} of {}: allowed by {} of {} ({} {} {})",
                        instance.id,
                        rule.id,
                        group.id,
                        rule.service,
                        if direction == Direction::Ingress {
                            "from"
                        } else {
                            "to"
                        },
                        rule.peer
                    ));
                    return true;
                }
            }
        }
        self.note(format!(
            "{what} of {} (groups {:?}): no rule allows {} with remote {remote}",
            instance.id, instance.groups, packet.protocol
        ));
        false
    }

    fn peer_matches(&self, peer: &Peer, remote: Ipv4Addr) -> bool {
        match peer {
            Peer::Cidr(cidr) => cidr.contains(remote),
            Peer::Group(group) => self
                .model
                .instances
                .iter()
                .any(|i| i.groups.contains(group) && i.ip == remote),
        }
    }
}

fn service_matches(service: Service, protocol: Protocol) -> bool {
    let within = |from: u16, to: u16, port: u16| from <= port && port <= to;
    match (service, protocol) {
        (Service::All, _) => true,
        (Service::Tcp { from, to }, Protocol::Tcp { dst_port, .. }) => within(from, to, dst_port),
        (Service::Udp { from, to }, Protocol::Udp { dst_port, .. }) => within(from, to, dst_port),
        (
            Service::Icmp { icmp_type, code },
            Protocol::Icmp {
                icmp_type: t,
                code: c,
            },
        ) => icmp_type.is_none_or(|want| want == t) && code.is_none_or(|want| want == c),
        (Service::Protocol(n), p) => p.number() == n,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compiler::Rule;

    fn model() -> Model {
        let instance = |id: &str, ip: [u8; 4], mac: u8, groups: &[&str]| Instance {
            id: id.into(),
            hypervisor: Some("hv1".into()),
            port: Some(u32::from(mac)),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            ip: Ipv4Addr::from(ip),
            network: "subnet-1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        Model {
            hypervisors: vec![Hypervisor {
                name: "hv1".into(),
                datapath_id: 1,
                uplink_port: 100,
            }],
            networks: vec![Network {
                id: "subnet-1".into(),
                cidr: Cidr::new(Ipv4Addr::new(10, 1, 0, 0), 16),
                gateway: Ipv4Addr::new(10, 1, 0, 1),
            }],
            instances: vec![
                instance("i-web", [10, 1, 0, 2], 2, &["sg-web"]),
                instance("i-client", [10, 1, 0, 3], 3, &["sg-client"]),
            ],
            groups: vec![
                Group {
                    id: "sg-web".into(),
                    rules: vec![Rule {
                        id: "sgr-http".into(),
                        direction: Direction::Ingress,
                        service: Service::Tcp { from: 80, to: 80 },
                        peer: Peer::Group("sg-client".into()),
                    }],
                },
                Group {
                    id: "sg-client".into(),
                    rules: vec![Rule {
                        id: "sgr-out".into(),
                        direction: Direction::Egress,
                        service: Service::All,
                        peer: Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
                    }],
                },
            ],
            addresses: vec![Address {
                allocation_id: "eipalloc-1".into(),
                public_ip: Ipv4Addr::new(198, 51, 100, 7),
                instance: Some("i-web".into()),
            }],
            public_gateway: Some(PublicGateway {
                ip: Ipv4Addr::new(198, 51, 100, 1),
                mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            }),
            public_network: Cidr::new(Ipv4Addr::new(198, 51, 100, 0), 24),
        }
    }

    fn tcp_from_client(dst_port: u16, state: ConnState) -> Packet {
        Packet {
            origin: Origin::Instance {
                id: "i-client".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 3]),
            },
            src: Ipv4Addr::new(10, 1, 0, 3),
            dst: Ipv4Addr::new(10, 1, 0, 2),
            protocol: Protocol::Tcp {
                src_port: 40000,
                dst_port,
            },
            state,
        }
    }

    #[test]
    fn a_group_member_reaches_the_port_its_group_is_allowed() {
        let j = evaluate(&model(), &tcp_from_client(80, ConnState::New));
        assert_eq!(
            j.verdict,
            Verdict::Delivered {
                instance: "i-web".into(),
                src: Ipv4Addr::new(10, 1, 0, 3),
                dst: Ipv4Addr::new(10, 1, 0, 2),
            }
        );
        assert!(
            j.reasoning
                .iter()
                .any(|r| r.contains("sgr-http") && r.contains("members of sg-client"))
        );
    }

    #[test]
    fn other_ports_are_dropped_with_the_reason() {
        let j = evaluate(&model(), &tcp_from_client(22, ConnState::New));
        assert_eq!(j.verdict, Verdict::Dropped);
        assert!(
            j.reasoning
                .last()
                .unwrap()
                .contains("no rule allows tcp 40000->22")
        );
        // An established connection's packets are checked too (revocation
        // cuts them), but its replies ride on the connection.
        assert_eq!(
            evaluate(&model(), &tcp_from_client(22, ConnState::Established)).verdict,
            Verdict::Dropped
        );
    }

    #[test]
    fn an_elastic_ip_is_translated_both_ways() {
        let from_outside = Packet {
            origin: Origin::Internet,
            src: Ipv4Addr::new(203, 0, 113, 10),
            dst: Ipv4Addr::new(198, 51, 100, 7),
            protocol: Protocol::Tcp {
                src_port: 5000,
                dst_port: 80,
            },
            state: ConnState::New,
        };
        // sg-web admits only sg-client's members: the internet is refused.
        assert_eq!(evaluate(&model(), &from_outside).verdict, Verdict::Dropped);
        let reply = Packet {
            state: ConnState::Reply,
            ..from_outside
        };
        assert_eq!(
            evaluate(&model(), &reply).verdict,
            Verdict::Delivered {
                instance: "i-web".into(),
                src: Ipv4Addr::new(203, 0, 113, 10),
                dst: Ipv4Addr::new(10, 1, 0, 2),
            }
        );
    }

    #[test]
    fn a_forged_source_goes_nowhere() {
        let mut p = tcp_from_client(80, ConnState::New);
        p.src = Ipv4Addr::new(10, 1, 0, 9);
        let j = evaluate(&model(), &p);
        assert_eq!(j.verdict, Verdict::Dropped);
        assert!(j.reasoning[0].starts_with("port security"));
    }
}
