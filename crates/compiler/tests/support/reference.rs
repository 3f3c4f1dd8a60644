//! The reference evaluator: what EC2 does with one packet, given the model
//! the compiler takes. It is the oracle of the differential test, so it is
//! written from EC2's documented semantics and flowgate's documented choices,
//! never from the flows the compiler emits.
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
    pub hypervisors: Vec<Hypervisor>,
    pub networks: Vec<Network>,
    pub instances: Vec<Instance>,
    pub groups: Vec<Group>,
    pub addresses: Vec<Address>,
    pub public_gateway: Option<PublicGateway>,
    pub public_network: Cidr,
}

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp {
        src_port: u16,
        dst_port: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        icmp_type: u8,
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
    Instance { id: String, mac: MacAddr },
    /// Arriving from outside through the public gateway.
    Internet,
}

/// One packet, as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub origin: Origin,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: Protocol,
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
        instance: String,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    /// Leaves through the public gateway to the internet, with these
    /// addresses.
    Internet { src: Ipv4Addr, dst: Ipv4Addr },
    /// Goes nowhere.
    Dropped,
}

/// A verdict and the reasoning that led to it, for failure messages.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub verdict: Verdict,
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
                        "{what} of {}: allowed by {} of {} ({:?} {:?})",
                        instance.id, rule.id, group.id, rule.service, rule.peer
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
