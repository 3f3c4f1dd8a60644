//! The netns driver: an instance is a network namespace on the machine that
//! runs flowgate, plugged into its hypervisor's bridge with a veth pair whose
//! bridge end carries the instance's interface name (so the data plane binds
//! it by name), configured with the instance's MAC, private address and a
//! default route through its network's gateway, running the RunInstances
//! UserData as a shell script whose output is the console output.
//!
//! Everything it creates survives a restart of flowgate (the UserData runs
//! in a session of its own), and every step tolerates having been done
//! before, so a relaunch after a crash completes what was started.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use model::Instance;

use crate::cmd::{self, CommandError};

/// Where the bridge is and how the instance's network looks: what the
/// driver needs besides the instance itself.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The bridge to plug into.
    pub bridge: String,
    /// Its Open vSwitch database (`unix:/path`), if not the system's.
    pub ovsdb: Option<String>,
    /// The namespace its `ovs-vswitchd` runs in, if not the root one.
    pub ovs_netns: Option<String>,
    /// The instance's network prefix length.
    pub prefix_len: u8,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
}

/// Instances as network namespaces.
#[derive(Debug, Clone)]
pub struct NetnsDriver {
    state_dir: PathBuf,
}

/// The instance's side of the veth pair.
const INSTANCE_IFACE: &str = "eth0";

impl NetnsDriver {
    /// A driver keeping UserData and console output under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> NetnsDriver {
        NetnsDriver {
            state_dir: state_dir.into(),
        }
    }

    fn dir(&self, instance: &Instance) -> PathBuf {
        self.state_dir.join(instance.id.as_str())
    }

    /// The namespace's name: the instance's interface name, unique per
    /// instance like the instance id it is derived from.
    pub fn netns_name(instance: &Instance) -> &str {
        &instance.interface_name
    }

    /// Creates (or completes) the instance.
    pub async fn launch(&self, instance: &Instance, at: &Placement) -> Result<(), CommandError> {
        let ns = Self::netns_name(instance);
        let port = instance.interface_name.as_str();
        cmd::run_idempotent("ip", &["netns", "add", ns], &["File exists"]).await?;
        // The veth pair is made where ovs-vswitchd runs (it opens the port by
        // name in its own namespace), its peer straight in the instance's.
        let mut add = vec![];
        if let Some(ovs_ns) = &at.ovs_netns {
            add.extend(["-n", ovs_ns.as_str()]);
        }
        add.extend([
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            INSTANCE_IFACE,
            "netns",
            ns,
        ]);
        cmd::run_idempotent("ip", &add, &["File exists"]).await?;
        let mut up = vec![];
        if let Some(ovs_ns) = &at.ovs_netns {
            up.extend(["-n", ovs_ns.as_str()]);
        }
        up.extend(["link", "set", port, "up"]);
        cmd::run("ip", &up).await?;
        // Without this, TCP through flows that rewrite addresses fails in
        // the userspace datapath (checksums left to an offload that never
        // happens).
        match &at.ovs_netns {
            Some(ovs_ns) => {
                cmd::run(
                    "ip",
                    &["netns", "exec", ovs_ns, "ethtool", "-K", port, "tx", "off"],
                )
                .await?
            }
            None => cmd::run("ethtool", &["-K", port, "tx", "off"]).await?,
        };
        cmd::run(
            "ip",
            &["netns", "exec", ns, "ethtool", "-K", INSTANCE_IFACE, "tx", "off"],
        )
        .await?;
        let mut vsctl = vec!["--timeout=10".to_string()];
        if let Some(db) = &at.ovsdb {
            vsctl.push(format!("--db={db}"));
        }
        vsctl.extend(
            [
                "--may-exist",
                "add-port",
                &at.bridge,
                port,
                "--",
                "set",
                "Interface",
                port,
            ]
            .map(String::from),
        );
        vsctl.push(format!("external_ids:iface-id={}", instance.id));
        let vsctl: Vec<&str> = vsctl.iter().map(String::as_str).collect();
        cmd::run("ovs-vsctl", &vsctl).await?;
        // The instance's own network stack.
        cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ],
        )
        .await?;
        cmd::run("ip", &["-n", ns, "link", "set", "lo", "up"]).await?;
        cmd::run(
            "ip",
            &[
                "-n",
                ns,
                "link",
                "set",
                INSTANCE_IFACE,
                "address",
                &instance.mac.to_string(),
            ],
        )
        .await?;
        let address = format!("{}/{}", instance.private_ip, at.prefix_len);
        cmd::run_idempotent(
            "ip",
            &["-n", ns, "addr", "add", &address, "dev", INSTANCE_IFACE],
            &["File exists"],
        )
        .await?;
        cmd::run("ip", &["-n", ns, "link", "set", INSTANCE_IFACE, "up"]).await?;
        cmd::run_idempotent(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &at.gateway.to_string(),
            ],
            &["File exists"],
        )
        .await?;
        self.start_user_data(instance).await
    }

    /// Runs the UserData (once) as the instance's init, detached from
    /// flowgate so that it outlives a restart.
    async fn start_user_data(&self, instance: &Instance) -> Result<(), CommandError> {
        let dir = self.dir(instance);
        let console = dir.join("console.log");
        if console.exists() {
            return Ok(()); // started before
        }
        let io = |e: std::io::Error| CommandError {
            command: format!("write {}", dir.display()),
            detail: e.to_string(),
        };
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let script = match &instance.user_data {
            Some(encoded) => decode_user_data(encoded),
            None => Vec::new(),
        };
        if script.is_empty() {
            tokio::fs::write(&console, b"").await.map_err(io)?;
            return Ok(());
        }
        let path = dir.join("user-data");
        tokio::fs::write(&path, &script).await.map_err(io)?;
        tokio::fs::write(&console, b"").await.map_err(io)?;
        let shell = format!(
            "exec ip netns exec {ns} sh {script} >> {console} 2>&1 < /dev/null",
            ns = Self::netns_name(instance),
            script = shell_quote(&path),
            console = shell_quote(&console),
        );
        cmd::run("setsid", &["-f", "sh", "-c", &shell]).await.map(drop)
    }

    /// Removes everything of the instance; parts already gone are fine.
    pub async fn terminate(&self, instance: &Instance, at: &Placement) -> Result<(), CommandError> {
        let ns = Self::netns_name(instance);
        let port = instance.interface_name.as_str();
        // Its processes first, or the namespace would linger.
        if let Ok(pids) = cmd::run("ip", &["netns", "pids", ns]).await {
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if !pids.is_empty() {
                let mut args = vec!["-9"];
                args.extend(pids);
                let _ = cmd::run("kill", &args).await;
            }
        }
        let mut vsctl = vec!["--timeout=10".to_string()];
        if let Some(db) = &at.ovsdb {
            vsctl.push(format!("--db={db}"));
        }
        vsctl.extend(["--if-exists", "del-port", &at.bridge, port].map(String::from));
        let vsctl: Vec<&str> = vsctl.iter().map(String::as_str).collect();
        cmd::run("ovs-vsctl", &vsctl).await?;
        let mut del = vec![];
        if let Some(ovs_ns) = &at.ovs_netns {
            del.extend(["-n", ovs_ns.as_str()]);
        }
        del.extend(["link", "del", port]);
        cmd::run_idempotent("ip", &del, &["Cannot find device"]).await?;
        cmd::run_idempotent("ip", &["netns", "del", ns], &["No such file"]).await?;
        let _ = tokio::fs::remove_dir_all(self.dir(instance)).await;
        Ok(())
    }

    /// Whether the instance's namespace still exists.
    pub async fn exists(&self, instance: &Instance) -> bool {
        Path::new("/var/run/netns")
            .join(Self::netns_name(instance))
            .exists()
    }

    /// What the UserData printed so far (the last 64 KiB, as EC2 keeps).
    pub async fn console_output(&self, instance: &Instance) -> Option<String> {
        let text = tokio::fs::read(self.dir(instance).join("console.log"))
            .await
            .ok()?;
        let start = text.len().saturating_sub(64 * 1024);
        Some(String::from_utf8_lossy(&text[start..]).into_owned())
    }
}

/// EC2 clients send UserData base64-encoded; some send it plain. Decoded
/// when it decodes, taken as is otherwise.
fn decode_user_data(encoded: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_decoded_when_it_is_base64() {
        assert_eq!(decode_user_data("ZWNobyBoaQo="), b"echo hi\n");
        assert_eq!(decode_user_data("echo plain"), b"echo plain");
        assert_eq!(shell_quote(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
