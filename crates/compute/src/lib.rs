//! Compute drivers: what makes an instance record real on a hypervisor.
//!
//! * [`netns`]: the instance is a network namespace on this machine, plugged
//!   into the hypervisor's bridge, running its UserData as init. Real,
//!   lightweight: the demo and the tests use it.
//! * [`external`]: the operator's virtualization runs the VM and plugs its
//!   port with the name flowgate assigned; flowgate only binds it.
//! * [`iface_ids`]: for external hypervisors, which port carries which
//!   instance's `external_ids:iface-id`, read from their Open vSwitch
//!   database.
//! * [`drivers`]: the one driver `flowgate serve` runs, choosing between
//!   them by the instance's hypervisor.
//!
//! A placed instance stays `pending` until the data plane sees its port on
//! the bridge, then becomes `running`.

mod cmd;
pub mod drivers;
pub mod external;
pub mod iface_ids;
pub mod netns;

pub use drivers::Drivers;
