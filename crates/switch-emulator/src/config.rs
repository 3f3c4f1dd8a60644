//! How to run an emulator: this module's one job is the configuration
//! types ([`EmulatorConfig`], [`Target`], [`Backoff`]) and their parsing
//! and checking.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::faults::Faults;
use crate::session::SessionConfig;

/// Where an emulated switch connects: a controller's passive socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
}

/// A target string is not `tcp:HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid controller target {0:?}: expected tcp:HOST:PORT or unix:PATH")]
pub struct TargetParseError(pub String);

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TargetParseError(s.to_string());
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(err)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(err());
            }
            Ok(Target::Tcp(rest.to_string()))
        } else if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(err());
            }
            Ok(Target::Unix(PathBuf::from(path)))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "tcp:{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Reconnection backoff: the first retry waits `initial`, each failure
/// doubles the wait up to `max`, and a successful handshake resets it (Open
/// vSwitch's rconn uses 1 s and 8 s). Waits get up to 25% of jitter, drawn
/// per switch, so that many switches do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
        }
    }
}

/// Everything an emulator needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Controllers every switch connects to (one connection per target, as
    /// a bridge with several controllers has).
    pub controllers: Vec<Target>,
    /// Number of switches.
    pub switches: usize,
    /// Datapath id of the first switch; the others follow consecutively.
    pub datapath_id_base: u64,
    /// Numbered ports per switch.
    pub ports_per_switch: u32,
    /// Numbered ports are named `{port_prefix}{n}` (`vm1`, `vm2`, ...).
    pub port_prefix: String,
    /// Switch `i` is named `{bridge_prefix}{i}`, which is also its `LOCAL`
    /// port's name.
    pub bridge_prefix: String,
    /// Protocol behaviour of each connection.
    pub session: SessionConfig,
    /// Reconnection backoff.
    pub backoff: Backoff,
    /// Faults of every switch (change one switch's with
    /// [`crate::SwitchView::set_faults`]).
    pub faults: Faults,
    /// Most flows one switch accepts (`OFPFMFC_TABLE_FULL` beyond).
    pub max_flows: Option<usize>,
    /// Spread the switches' first connection attempts over this long, so
    /// that a large emulator does not overflow the controller's listen
    /// backlog at once.
    pub connect_spread: Duration,
}

impl EmulatorConfig {
    /// `switches` switches with 8 ports each connecting to `controller`,
    /// with Open vSwitch's timers.
    pub fn new(controller: Target, switches: usize) -> Self {
        EmulatorConfig {
            controllers: vec![controller],
            switches,
            datapath_id_base: DEFAULT_DATAPATH_ID_BASE,
            ports_per_switch: 8,
            port_prefix: "vm".to_string(),
            bridge_prefix: "emu".to_string(),
            session: SessionConfig::default(),
            backoff: Backoff::default(),
            faults: Faults::default(),
            max_flows: None,
            connect_spread: Duration::ZERO,
        }
    }

    /// Checks what the wire format or common sense limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.controllers.is_empty() {
            return Err(ConfigError("no controller target".into()));
        }
        if self.switches == 0 {
            return Err(ConfigError("no switches".into()));
        }
        self.datapath_id_base
            .checked_add(self.switches as u64 - 1)
            .ok_or_else(|| ConfigError("datapath ids overflow 64 bits".into()))?;
        let longest_bridge = format!("{}{}", self.bridge_prefix, self.switches - 1);
        if longest_bridge.len() > 15 {
            return Err(ConfigError(format!(
                "bridge name {longest_bridge:?} is longer than OpenFlow's 15 bytes"
            )));
        }
        let longest_port = format!("{}{}", self.port_prefix, self.ports_per_switch);
        if longest_port.len() > 15 {
            return Err(ConfigError(format!(
                "port name {longest_port:?} is longer than OpenFlow's 15 bytes"
            )));
        }
        if self.ports_per_switch >= 0xff00 {
            return Err(ConfigError("at most 65279 ports per switch".into()));
        }
        if !self
            .session
            .versions
            .iter()
            .any(|v| *v == openflow::Version::OF13 || *v == openflow::Version::OF14)
        {
            return Err(ConfigError("versions must include OpenFlow 1.3 or 1.4".into()));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(ConfigError("backoff needs 0 < initial <= max".into()));
        }
        Ok(())
    }
}

/// Datapath id of the first emulated switch unless configured: `ee` in the
/// upper bytes marks emulated switches in logs.
pub const DEFAULT_DATAPATH_ID_BASE: u64 = 0x0000_00ee_0000_0001;

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid emulator configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        let t: Target = "tcp:127.0.0.1:6653".parse().unwrap();
        assert_eq!(t, Target::Tcp("127.0.0.1:6653".into()));
        assert_eq!(t.to_string(), "tcp:127.0.0.1:6653");
        let u: Target = "unix:/run/of.sock".parse().unwrap();
        assert_eq!(u.to_string(), "unix:/run/of.sock");
        for bad in ["tcp:nohost", "tcp::1", "ssl:1.2.3.4:6653", "unix:", "tcp:h:99999"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_must_fit_the_wire() {
        let mut c = EmulatorConfig::new("tcp:127.0.0.1:6653".parse().unwrap(), 10);
        assert!(c.validate().is_ok());
        c.bridge_prefix = "a-very-long-bridge".into();
        assert!(c.validate().is_err());
    }
}
