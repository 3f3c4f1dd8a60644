//! The data plane's conductor: keeps every hypervisor's flows equal to what
//! the store says, within milliseconds of each change.
//!
//! * [`translate`]: the store's model plus what switches report (bridges,
//!   ports) become the policy compiler's input; an instance is bound when
//!   a port with its interface name appears on its hypervisor's bridge.
//! * [`arp`]: frames for resolving the public gateway and announcing
//!   Elastic IPs.
//! * [`counters`]: per-rule packet counts read back from the switches.
//! * [`run`]: the task that subscribes to the store's change feed and the
//!   controller's events, compiles, publishes the flows, records bindings
//!   (`pending` -> `running`), resolves the gateway and sends gratuitous
//!   ARP when an address moves.

pub mod arp;
pub mod counters;
mod runner;
pub mod translate;

pub use runner::{DataplaneConfig, IfaceIds, controller_flows, run};
pub use translate::{BindingChange, Translator};
