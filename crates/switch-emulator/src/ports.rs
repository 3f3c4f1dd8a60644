//! An emulated switch's ports: this module's one job is the port list
//! (numbered ports `PREFIX<N>` plus `LOCAL` named after the switch) and its
//! encodings in the replies that describe it.
//!
//! OpenFlow 1.3 layouts come from the codec. OpenFlow 1.4 changed the port
//! and port-statistics layouts to carry properties and the codec keeps
//! those verbatim, so their encodings are written here (and checked against
//! `ovs-ofctl ofp-print` in the crate's tests).

use openflow::multipart::MultipartReplyBody;
use openflow::port::{port_reason, port_state};
use openflow::{MacAddr, Message, Port, PortNo, PortStats, PortStatus, Version};

/// `OFPMP_PORT_STATS`.
const OFPMP_PORT_STATS: u16 = 4;
/// `OFPMP_PORT_DESC`.
const OFPMP_PORT_DESC: u16 = 13;
/// `OFPT_PORT_STATUS`.
const OFPT_PORT_STATUS: u8 = 12;
/// `OFPPF_10GB_FD | OFPPF_COPPER`: what a userspace Open vSwitch port
/// typically reports.
const FEATURES_10G_COPPER: u32 = (1 << 6) | (1 << 11);
/// 10 Gbit/s in kbit/s.
const SPEED_10G_KBPS: u32 = 10_000_000;

/// The ports of one switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    /// Numbered ports in ascending order, then `LOCAL`.
    ports: Vec<Port>,
    /// Seed for the Ethernet addresses of ports added later.
    mac_seed: u64,
}

/// A locally administered address unique per switch index and port:
/// `02:ee:SS:SS:PP:PP`.
fn port_mac(switch_index: u64, port: u32) -> MacAddr {
    MacAddr::from_u64((0x02ee_u64 << 32) | ((switch_index & 0xffff) << 16) | u64::from(port & 0xffff))
}

fn port(port_no: PortNo, name: String, hw_addr: MacAddr) -> Port {
    Port {
        port_no,
        hw_addr,
        name,
        config: 0,
        state: port_state::LIVE,
        curr: FEATURES_10G_COPPER,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: SPEED_10G_KBPS,
        max_speed: 0,
    }
}

impl PortSet {
    /// Ports `1..=count` named `{prefix}{n}`, and `LOCAL` named `bridge`.
    pub fn new(switch_index: u64, bridge: &str, prefix: &str, count: u32) -> PortSet {
        let mut ports: Vec<Port> = (1..=count)
            .map(|n| port(PortNo(n), format!("{prefix}{n}"), port_mac(switch_index, n)))
            .collect();
        ports.push(port(PortNo::LOCAL, bridge.to_string(), port_mac(switch_index, 0)));
        PortSet {
            ports,
            mac_seed: switch_index,
        }
    }

    /// Every port, `LOCAL` last.
    pub fn all(&self) -> &[Port] {
        &self.ports
    }

    /// The port numbered `port_no`.
    pub fn get(&self, port_no: PortNo) -> Option<&Port> {
        self.ports.iter().find(|p| p.port_no == port_no)
    }

    /// Adds a port named `name` with the lowest free number; returns the
    /// port status message announcing it.
    pub fn add(&mut self, name: &str) -> (PortNo, PortStatus) {
        let mut n = 1;
        while self.ports.iter().any(|p| p.port_no == PortNo(n)) {
            n += 1;
        }
        // OpenFlow port names hold 15 bytes; a longer name is cut there
        // (on a character boundary) rather than breaking every reply.
        let mut end = name.len().min(15);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let new = port(PortNo(n), name[..end].to_string(), port_mac(self.mac_seed, n));
        let at = self
            .ports
            .iter()
            .position(|p| p.port_no.0 > n)
            .unwrap_or(self.ports.len());
        self.ports.insert(at, new.clone());
        (
            PortNo(n),
            PortStatus {
                reason: port_reason::ADD,
                desc: new,
            },
        )
    }

    /// Removes a numbered port; returns the announcement, or `None` if
    /// there is no such port (or it is `LOCAL`).
    pub fn remove(&mut self, port_no: PortNo) -> Option<PortStatus> {
        if port_no == PortNo::LOCAL {
            return None;
        }
        let at = self.ports.iter().position(|p| p.port_no == port_no)?;
        let desc = self.ports.remove(at);
        Some(PortStatus {
            reason: port_reason::DELETE,
            desc,
        })
    }

    /// Sets a port's link up or down; returns the announcement if the port
    /// exists.
    pub fn set_link(&mut self, port_no: PortNo, up: bool) -> Option<PortStatus> {
        let p = self.ports.iter_mut().find(|p| p.port_no == port_no)?;
        p.state = if up {
            port_state::LIVE
        } else {
            port_state::LINK_DOWN
        };
        Some(PortStatus {
            reason: port_reason::MODIFY,
            desc: p.clone(),
        })
    }

    /// The port description reply body for `version`.
    pub fn desc_reply(&self, version: Version) -> MultipartReplyBody {
        if version >= Version::OF14 {
            let mut body = Vec::with_capacity(self.ports.len() * 72);
            self.ports.iter().for_each(|p| put_of14_port(p, &mut body));
            MultipartReplyBody::Unknown {
                mp_type: OFPMP_PORT_DESC,
                body,
            }
        } else {
            MultipartReplyBody::PortDesc(self.ports.clone())
        }
    }

    /// The port statistics reply body for `version`: every port for
    /// `PortNo::ANY`, else the one asked for (none if it does not exist,
    /// as Open vSwitch answers). Counters are zero: no traffic passes an
    /// emulated switch.
    pub fn stats_reply(&self, version: Version, port_no: PortNo, uptime_ms: u64) -> MultipartReplyBody {
        let stats: Vec<PortStats> = self
            .ports
            .iter()
            .filter(|p| port_no == PortNo::ANY || p.port_no == port_no)
            .map(|p| PortStats {
                port_no: p.port_no,
                duration_sec: (uptime_ms / 1000) as u32,
                duration_nsec: ((uptime_ms % 1000) * 1_000_000) as u32,
                ..PortStats::default()
            })
            .collect();
        if version >= Version::OF14 {
            let mut body = Vec::with_capacity(stats.len() * 120);
            stats.iter().for_each(|s| put_of14_port_stats(s, &mut body));
            MultipartReplyBody::Unknown {
                mp_type: OFPMP_PORT_STATS,
                body,
            }
        } else {
            MultipartReplyBody::PortStats(stats)
        }
    }
}

/// A port status message for `version`.
pub fn port_status_message(status: &PortStatus, version: Version) -> Message {
    if version >= Version::OF14 {
        let mut body = vec![status.reason, 0, 0, 0, 0, 0, 0, 0];
        put_of14_port(&status.desc, &mut body);
        Message::Unknown {
            msg_type: OFPT_PORT_STATUS,
            body,
        }
    } else {
        Message::PortStatus(status.clone())
    }
}

/// `struct ofp14_port` with its Ethernet property (72 bytes).
fn put_of14_port(p: &Port, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.port_no.0.to_be_bytes());
    out.extend_from_slice(&72u16.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&p.hw_addr.0);
    out.extend_from_slice(&[0, 0]);
    let mut name = [0u8; 16];
    // Port names are at most 15 bytes (checked by the configuration).
    let n = p.name.len().min(15);
    name[..n].copy_from_slice(&p.name.as_bytes()[..n]);
    out.extend_from_slice(&name);
    out.extend_from_slice(&p.config.to_be_bytes());
    out.extend_from_slice(&p.state.to_be_bytes());
    // OFPPDPT_ETHERNET property.
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&32u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    for v in [
        p.curr,
        p.advertised,
        p.supported,
        p.peer,
        p.curr_speed,
        p.max_speed,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// `struct ofp14_port_stats` with its Ethernet property (120 bytes).
fn put_of14_port_stats(s: &PortStats, out: &mut Vec<u8>) {
    out.extend_from_slice(&120u16.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.port_no.0.to_be_bytes());
    out.extend_from_slice(&s.duration_sec.to_be_bytes());
    out.extend_from_slice(&s.duration_nsec.to_be_bytes());
    for v in [
        s.rx_packets,
        s.tx_packets,
        s.rx_bytes,
        s.tx_bytes,
        s.rx_dropped,
        s.tx_dropped,
        s.rx_errors,
        s.tx_errors,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    // OFPPSPT_ETHERNET property.
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&40u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    for v in [s.rx_frame_err, s.rx_over_err, s.rx_crc_err, s.collisions] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_ports_then_local() {
        let mut ports = PortSet::new(3, "emu3", "vm", 2);
        let names: Vec<_> = ports.all().iter().map(|p| (p.port_no, p.name.as_str())).collect();
        assert_eq!(
            names,
            vec![(PortNo(1), "vm1"), (PortNo(2), "vm2"), (PortNo::LOCAL, "emu3")]
        );
        assert_eq!(ports.all()[0].hw_addr.to_string(), "02:ee:00:03:00:01");
        assert!(ports.remove(PortNo(1)).is_some());
        let (n, status) = ports.add("tap9");
        assert_eq!((n, status.reason), (PortNo(1), port_reason::ADD));
        assert_eq!(ports.all()[0].name, "tap9");
        assert!(ports.set_link(PortNo(2), false).is_some_and(|s| !s.desc.is_up()));
        let MultipartReplyBody::Unknown { body, .. } = ports.desc_reply(Version::OF14) else {
            panic!("OpenFlow 1.4 port descriptions are raw")
        };
        assert_eq!(body.len(), 3 * 72);
    }
}
