//! flowgate's domain model: EC2's objects (accounts, networks, public pools,
//! images, hypervisors, instances, security groups and rules, Elastic IPs,
//! tags), their identifiers, and EC2's rules as pure operations on an
//! in-memory [`State`] that journals every change. No I/O: the store
//! persists the journal, the API turns requests into operations.

pub mod error;
pub mod ids;
pub mod objects;
pub mod ops;
pub mod rule;
pub mod state;

pub use error::{AdminError, Ec2Error};
pub use ids::{
    AccountId, AllocationId, AssociationId, Entropy, GroupId, ImageId, InstanceId, PoolId, ReservationId,
    RuleId, SeededEntropy, SubnetId,
};
pub use objects::{
    AccessKey, Account, Address, Association, Domain, DriverKind, Hypervisor, Image, Instance, InstanceState,
    MacAddr, Network, PublicPool, SecurityGroup, Tag,
};
pub use ops::{AddressRef, DEFAULT_GROUP, DisassociateRef, GroupRef, LaunchRequest, RuleRequest};
pub use rule::{Direction, Permission, Protocol, Rule, Source};
pub use state::{Change, Kind, Object, State, Tenant};
