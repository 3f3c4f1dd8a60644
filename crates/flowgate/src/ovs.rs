//! Running Open vSwitch's own tools (`ovs-appctl`, `ovs-ofctl`) for the
//! commands that look at a live switch (`flowgate trace --live`,
//! `flowgate flows`), with their error output in every failure.

use std::process::Command;

/// Runs `program args...` and returns its standard output.
pub fn run(program: &str, args: &[String], ovs_rundir: Option<&str>) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = ovs_rundir {
        // ovs-ofctl finds BRIDGE.mgmt, ovs-appctl ovs-vswitchd's socket here.
        command.env("OVS_RUNDIR", dir);
    }
    let line = format!("{program} {}", args.join(" "));
    let output = command
        .output()
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
