//! What the compiler knows about the cloud: plain values, copied from the
//! store's model and from what the controller learned at run time (which
//! OpenFlow port an instance is plugged into, the public gateway's MAC).

use std::net::Ipv4Addr;

use openflow::MacAddr;

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// Network address (host bits are cleared by [`Cidr::new`]).
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Cidr {
    /// `addr/prefix` with the host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask_bits(prefix)),
            prefix,
        }
    }

    /// A single address.
    pub fn host(addr: Ipv4Addr) -> Cidr {
        Cidr::new(addr, 32)
    }

    fn mask_bits(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// The netmask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_bits(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_bits(self.prefix) == u32::from(self.addr)
    }

    /// Whether this is 0.0.0.0/0.
    pub fn is_any(&self) -> bool {
        self.prefix == 0
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A hypervisor: one integration bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hypervisor {
    /// Its name.
    pub name: String,
    /// The bridge's datapath id.
    pub datapath_id: u64,
    /// OpenFlow port of the uplink to the physical network.
    pub uplink_port: u32,
}

/// A private network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Its id.
    pub id: String,
    /// Its prefix.
    pub cidr: Cidr,
    /// The gateway address instances route through, answered by the
    /// virtual router.
    pub gateway: Ipv4Addr,
}

/// The upstream gateway of the public network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicGateway {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC, once resolved (or configured); Elastic IP traffic cannot
    /// leave before.
    pub mac: Option<MacAddr>,
}

/// An instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`
    pub id: String,
    /// The hypervisor it is placed on.
    pub hypervisor: Option<String>,
    /// The OpenFlow port its interface is plugged into, once bound; an
    /// unbound instance gets no flows on its hypervisor (but its address
    /// still counts as a member of its groups).
    pub port: Option<u32>,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its private address.
    pub ip: Ipv4Addr,
    /// Its network.
    pub network: String,
    /// Its security groups.
    pub groups: Vec<String>,
}

/// Which traffic a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Traffic arriving at members.
    Ingress,
    /// Traffic leaving members.
    Egress,
}

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Every protocol (`-1`).
    All,
    /// TCP to ports `from..=to`.
    Tcp {
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// UDP to ports `from..=to`.
    Udp {
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// ICMP of a type (`None`: any) and code (`None`: any).
    Icmp {
        /// ICMP type.
        icmp_type: Option<u8>,
        /// ICMP code.
        code: Option<u8>,
    },
    /// Any other IP protocol, by number.
    Protocol(u8),
}

/// Who a rule allows: the remote side of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Addresses in a prefix.
    Cidr(Cidr),
    /// The private addresses of the members of a group.
    Group(String),
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let any = |v: Option<u8>| v.map_or_else(|| "any".to_string(), |v| v.to_string());
        match self {
            Service::All => f.write_str("all traffic"),
            Service::Tcp { from, to } if from == to => write!(f, "tcp {from}"),
            Service::Tcp { from, to } => write!(f, "tcp {from}-{to}"),
            Service::Udp { from, to } if from == to => write!(f, "udp {from}"),
            Service::Udp { from, to } => write!(f, "udp {from}-{to}"),
            Service::Icmp { icmp_type, code } => {
                write!(f, "icmp type {} code {}", any(*icmp_type), any(*code))
            }
            Service::Protocol(n) => write!(f, "ip protocol {n}"),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Cidr(cidr) => write!(f, "{cidr}"),
            Peer::Group(group) => write!(f, "members of {group}"),
        }
    }
}

/// One security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    /// `sgr-...`
    pub id: String,
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol and ports.
    pub service: Service,
    /// The remote side.
    pub peer: Peer,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `sg-...`
    pub id: String,
    /// Its rules, ingress and egress.
    pub rules: Vec<Rule>,
}

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `eipalloc-...`
    pub allocation_id: String,
    /// The public address.
    pub public_ip: Ipv4Addr,
    /// The instance it is associated with.
    pub instance: Option<String>,
}
