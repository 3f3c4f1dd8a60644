//! Checking that the machine has what a lab needs.

use std::env;
use std::path::Path;

use crate::error::{Error, Result};

/// The Open vSwitch database schema a lab's database is created from.
pub(crate) const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Programs every lab runs. `ping` and `nc` are only needed by the tests
/// that use them, so they are not required here.
const REQUIRED_TOOLS: &[&str] = &[
    "ip",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
    "ethtool",
    "kill",
    "sysctl",
];

/// Checks that the programs and files a [`Lab`](crate::Lab) needs are
/// installed, naming every missing one (on Debian they come from
/// `openvswitch-switch`, `iproute2`, `ethtool` and `procps`). Labs also need
/// root, which is not checked here: `ip netns add` says so itself.
///
/// [`Lab::start`](crate::Lab::start) calls it; callers may use it to skip
/// tests on machines without Open vSwitch.
pub fn check_prerequisites() -> Result<()> {
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = env::split_paths(&path).collect();
    let mut missing: Vec<String> = REQUIRED_TOOLS
        .iter()
        .filter(|tool| !dirs.iter().any(|dir| dir.join(tool).is_file()))
        .map(|tool| (*tool).to_owned())
        .collect();
    if !Path::new(VSWITCH_SCHEMA).is_file() {
        missing.push(VSWITCH_SCHEMA.to_owned());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Prerequisites { missing })
    }
}
