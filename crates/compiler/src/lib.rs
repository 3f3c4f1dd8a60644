//! The policy compiler: a pure function from flowgate's model to the flows
//! of every hypervisor bridge. Deterministic (the same model always gives
//! the same flows and cookies), incremental (a change recompiles only the
//! owners it touches), and free of I/O: the store feeds it changes, the
//! controller installs what it returns.
//!
//! * [`stage`]: the pipeline's tables, registers and MAC addresses.
//! * [`input`]: what the compiler is told (hypervisors, networks,
//!   instances, security groups, Elastic IPs).
//! * [`compiler`]: the compiler itself.
//! * [`cookie`]: how a flow's cookie names its owner.
//!
//! Security groups are stateful through conntrack, in a zone per instance
//! (its port number): replies and related packets of tracked connections
//! pass; every packet in the original direction must be allowed by a rule
//! of the sender's egress and the receiver's ingress, so revoking a rule
//! (or taking an instance out of a group a rule names) stops new
//! connections and the established ones it admitted alike, with no
//! conntrack flush or `ct_mark` bookkeeping. Replies pass only while
//! conntrack holds the connection; with the originator's packets dropped,
//! nothing of it reaches the protected instance any more
//! (`docs/security-groups.md`). A rule with N sources and M port ranges
//! costs about N + M flows (`conjunction`); its packet count is the sum of
//! the counters of the flows carrying its cookie.

pub mod compiler;
pub mod cookie;
pub mod input;
pub mod ports;
pub mod stage;

pub use compiler::{Compiler, FlowSpec, Snapshot, Update};
pub use cookie::{COOKIE_KIND_MASK, OwnerKey, OwnerKind, cookie_kind, settled_cookies};
pub use input::{
    Address, Cidr, Direction, Group, Hypervisor, Instance, Network, Peer, PublicGateway, Rule, Service,
};
pub use stage::{
    GROUP_TAGS, REG_DST_GROUPS, REG_DST_PORT, REG_SRC_GROUPS, REG_SRC_PORT, ROUTER_MAC, Stage, elastic_ip_mac,
};
