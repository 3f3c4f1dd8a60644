//! Private Open vSwitch test beds with real hosts, for flowgate's tests and
//! its demo.
//!
//! The crate's one job: build, on demand and in isolation, the network a
//! test needs (an Open vSwitch with userspace bridges, and hosts that are
//! network namespaces plugged into them by veth pairs) and take it all
//! down again, even when the test panics or its process is killed.
//!
//! A [`Lab`] runs its own `ovsdb-server` and `ovs-vswitchd` inside a network
//! namespace of its own, because only one userspace `ovs-vswitchd` works per
//! namespace; labs of parallel tests therefore never see each other, and a
//! controller in a lab can listen on fixed loopback ports. Everything is
//! done by running the standard tools (`ip`, `ovs-vsctl`, `ovs-ofctl`,
//! `ovs-appctl`, `ethtool`) with a deadline each, behind a small typed,
//! blocking API; errors carry the command line and its stderr.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use testbed::{HostSpec, Lab, MacAddr};
//!
//! # fn main() -> testbed::Result<()> {
//! let lab = Lab::start()?;
//! lab.add_bridge("br0")?;
//! lab.ofctl(&["add-flow", "br0", "priority=0,actions=NORMAL"])?;
//! let a = lab.add_host(HostSpec::new("a", "br0", Ipv4Addr::new(10, 0, 0, 1), 24, MacAddr::local(1)))?;
//! let b = lab.add_host(HostSpec::new("b", "br0", Ipv4Addr::new(10, 0, 0, 2), 24, MacAddr::local(2)))?;
//! a.ping(b.ip())?;
//! lab.shutdown() // or just drop it
//! # }
//! ```
//!
//! Cleanup: dropping a lab kills every process in its namespaces (and in
//! namespaces plugged into it from outside by veth pairs), deletes them and
//! its directory. What a killed process leaves behind is removed by
//! [`sweep_stale`] (called by [`Lab::start`], and by the `testbed-sweep`
//! binary), which recognises leftovers by the dead pid in their names.

mod cmd;
mod error;
mod host;
mod lab;
mod mac;
mod netns;
pub mod pki;
mod port;
mod prereq;
mod process;
mod sweep;
pub mod topology;
mod wait;

pub use error::{Error, Result};
pub use host::{HOST_IFACE, Host, HostSpec};
pub use lab::{Bridge, BridgeOptions, FailMode, Lab};
pub use mac::MacAddr;
pub use netns::delete_netns;
pub use port::free_port;
pub use prereq::check_prerequisites;
pub use process::BackgroundProcess;
pub use sweep::{SweepReport, base_dir, sweep_stale};
pub use topology::{CloudTopology, HypervisorBridge};
pub use wait::wait_until;
