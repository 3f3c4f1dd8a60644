//! The objects flowgate stores, each named as EC2 names it.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::ids::{
    AccountId, AllocationId, AssociationId, GroupId, ImageId, InstanceId, PoolId, ReservationId, SubnetId,
};
use crate::rule::Rule;

/// A tenant: owns access keys, groups, addresses, instances and tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The 12-digit owner id.
    pub id: AccountId,
    /// A name the operator chose, unique.
    pub name: String,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

/// A key pair a client signs requests with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// `AKIA…`.
    pub access_key_id: String,
    /// The shared secret (stored, as it must be to verify HMAC signatures).
    pub secret_access_key: String,
    /// The account that signs with it.
    pub account_id: AccountId,
    /// A read-only key may call Describe* only; mutations answer `UnauthorizedOperation`.
    pub read_only: bool,
    /// When it was created (milliseconds since the Unix epoch).
    pub created_ms: u64,
}

/// A private L2 network (EC2's subnet) instances get their private IP from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// `subnet-…`.
    pub id: SubnetId,
    /// The network's prefix, e.g. 10.0.0.0/24.
    pub cidr: Ipv4Net,
    /// The virtual router address inside the CIDR.
    pub gateway: Ipv4Addr,
    /// An optional VLAN tag on the physical network.
    pub vlan: Option<u16>,
}

/// A range of public IPv4 addresses on the public network, handed out as Elastic IPs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicPool {
    /// `ipv4pool-…`.
    pub id: PoolId,
    /// The public network's prefix.
    pub cidr: Ipv4Net,
    /// The upstream router on the public network.
    pub gateway: Ipv4Addr,
    /// First and last address handed out (inclusive); by default every host
    /// address of the CIDR except the gateway.
    pub first: Ipv4Addr,
    /// See `first`.
    pub last: Ipv4Addr,
}

impl PublicPool {
    /// Whether the pool hands out `ip`.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip >= self.first && ip <= self.last && ip != self.gateway
    }
}

/// A machine image in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `ami-…`.
    pub id: ImageId,
    /// A unique name.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// How instances on a hypervisor come to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// flowgate starts the instance as a network namespace.
    Netns,
    /// The operator's virtualization starts it; flowgate binds its port.
    External,
}

impl DriverKind {
    /// The name used in the CLI and config.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Netns => "netns",
            DriverKind::External => "external",
        }
    }
}

/// An Open vSwitch integration bridge that hosts instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypervisor {
    /// A unique name.
    pub name: String,
    /// The bridge's name, when the bridge is recognised by name.
    pub bridge: Option<String>,
    /// The bridge's datapath id, when it is recognised by id.
    pub datapath_id: Option<u64>,
    /// The port towards the physical network.
    pub uplink: String,
    /// How instances are started there.
    pub driver: DriverKind,
    /// Where the netns driver finds the bridge's Open vSwitch database.
    pub ovsdb: Option<String>,
    /// The network namespace the bridge's `ovs-vswitchd` runs in, when it
    /// is not flowgate's own (a test bed's lab); the netns driver creates
    /// instance ports there.
    #[serde(default)]
    pub netns: Option<String>,
    /// The availability zone it belongs to.
    pub zone: String,
}

/// EC2's instance states, with their codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Accepted, not yet running.
    Pending,
    /// Running.
    Running,
    /// Being terminated.
    ShuttingDown,
    /// Gone (still listed for a while).
    Terminated,
}

impl InstanceState {
    /// EC2's numeric state code.
    pub fn code(self) -> u16 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
        }
    }

    /// EC2's state name.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }

    /// Whether EC2 allows moving from `self` to `next`.
    pub fn can_become(self, next: InstanceState) -> bool {
        use InstanceState::*;
        matches!(
            (self, next),
            (Pending, Running)
                // An externally managed VM's port was unplugged.
                | (Running, Pending)
                | (Pending, ShuttingDown)
                | (Running, ShuttingDown)
                | (ShuttingDown, Terminated)
        ) || self == next
    }

    /// Whether the instance still holds its private IP, MAC and group memberships.
    pub fn is_live(self) -> bool {
        !matches!(self, InstanceState::Terminated)
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An instance (a VM or, with the netns driver, a namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-…`.
    pub id: InstanceId,
    /// Its owner.
    pub account_id: AccountId,
    /// The RunInstances call that made it.
    pub reservation_id: ReservationId,
    /// Its position among the instances of that call.
    pub launch_index: u32,
    /// The image it runs.
    pub image_id: ImageId,
    /// e.g. m1.small.
    pub instance_type: String,
    /// EC2's state machine.
    pub state: InstanceState,
    /// Why it is in its state, when EC2 would tell (e.g. a user's terminate).
    pub state_reason: Option<String>,
    /// Its network.
    pub subnet_id: SubnetId,
    /// Its private address inside the network.
    pub private_ip: Ipv4Addr,
    /// Its interface's MAC.
    pub mac: MacAddr,
    /// Its security groups (at least one).
    pub group_ids: Vec<GroupId>,
    /// The hypervisor it is placed on (chosen in step 4; none until then).
    pub hypervisor: Option<String>,
    /// The OVS port name of its interface.
    pub interface_name: String,
    /// The availability zone.
    pub availability_zone: String,
    /// RunInstances' UserData, base64 as sent.
    pub user_data: Option<String>,
    /// RunInstances' KeyName.
    pub key_name: Option<String>,
    /// RunInstances' ClientToken.
    pub client_token: Option<String>,
    /// When it was launched (milliseconds since the Unix epoch).
    pub launch_ms: u64,
    /// When it reached `terminated`, so it can be forgotten later as EC2 does.
    pub terminated_ms: Option<u64>,
}

/// An Elastic IP's domain (EC2-Classic `standard` or `vpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// EC2-Classic style: addressed by public IP.
    Standard,
    /// VPC style: addressed by allocation and association ids.
    Vpc,
}

impl Domain {
    /// EC2's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Standard => "standard",
            Domain::Vpc => "vpc",
        }
    }
}

/// The binding of an Elastic IP to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    /// `eipassoc-…`.
    pub id: AssociationId,
    /// The instance.
    pub instance_id: InstanceId,
    /// The instance's private IP the public one maps to.
    pub private_ip: Ipv4Addr,
}

/// An Elastic IP allocated to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `eipalloc-…`.
    pub allocation_id: AllocationId,
    /// Its owner.
    pub account_id: AccountId,
    /// The public address.
    pub public_ip: Ipv4Addr,
    /// The pool it came from.
    pub pool_id: PoolId,
    /// standard or vpc.
    pub domain: Domain,
    /// The instance it is bound to, if any.
    pub association: Option<Association>,
}

/// A security group with its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: GroupId,
    /// Its owner.
    pub account_id: AccountId,
    /// Unique within the account.
    pub name: String,
    /// Free text, required by EC2.
    pub description: String,
    /// Inbound allow rules.
    pub ingress: Vec<Rule>,
    /// Outbound allow rules.
    pub egress: Vec<Rule>,
}

/// A key/value tag on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The tagged resource's id (`i-…`, `sg-…`, `eipalloc-…`, …).
    pub resource_id: String,
    /// Owner of the resource.
    pub account_id: AccountId,
    /// Tag key.
    pub key: String,
    /// Tag value (may be empty).
    pub value: String,
}

impl Tag {
    /// The stored id of a tag: its resource and key.
    pub fn storage_id(resource_id: &str, key: &str) -> String {
        format!("{resource_id}/{key}")
    }
}
