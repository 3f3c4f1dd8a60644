//! Small value types that appear throughout OpenFlow: versions, port
//! numbers, Ethernet addresses.

use std::fmt;
use std::str::FromStr;

/// An OpenFlow protocol version, as carried in `ofp_header.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u8);

impl Version {
    /// OpenFlow 1.0 (wire version 0x01). Only HELLO, ERROR and ECHO are
    /// decoded in this version, enough to negotiate a newer one.
    pub const OF10: Version = Version(0x01);
    /// OpenFlow 1.3 (wire version 0x04): the version flowgate speaks.
    pub const OF13: Version = Version(0x04);
    /// OpenFlow 1.4 (wire version 0x05): bundles become standard messages.
    pub const OF14: Version = Version(0x05);
    /// OpenFlow 1.5 (wire version 0x06).
    pub const OF15: Version = Version(0x06);

    /// Whether message bodies of this version are decoded (1.3 and 1.4);
    /// bodies of other versions decode as [`crate::Message::Unknown`].
    pub fn has_bodies(self) -> bool {
        self == Version::OF13 || self == Version::OF14
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x01 => f.write_str("OpenFlow 1.0"),
            0x02 => f.write_str("OpenFlow 1.1"),
            0x03 => f.write_str("OpenFlow 1.2"),
            0x04 => f.write_str("OpenFlow 1.3"),
            0x05 => f.write_str("OpenFlow 1.4"),
            0x06 => f.write_str("OpenFlow 1.5"),
            v => write!(f, "OpenFlow version {v:#04x}"),
        }
    }
}

/// A 32-bit OpenFlow port number (`ofp_port_no`), including the reserved
/// ports.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PortNo(pub u32);

impl PortNo {
    /// Highest number of a physical port.
    pub const MAX: PortNo = PortNo(0xffff_ff00);
    /// Send the packet back out of its input port.
    pub const IN_PORT: PortNo = PortNo(0xffff_fff8);
    /// Submit the packet to the first flow table (packet-out only).
    pub const TABLE: PortNo = PortNo(0xffff_fff9);
    /// The switch's non-OpenFlow L2 forwarding.
    pub const NORMAL: PortNo = PortNo(0xffff_fffa);
    /// Flood along the spanning tree, excluding the input port.
    pub const FLOOD: PortNo = PortNo(0xffff_fffb);
    /// All ports except the input port.
    pub const ALL: PortNo = PortNo(0xffff_fffc);
    /// Send to the controller as a packet-in.
    pub const CONTROLLER: PortNo = PortNo(0xffff_fffd);
    /// The switch's local networking stack (its bridge interface).
    pub const LOCAL: PortNo = PortNo(0xffff_fffe);
    /// Wildcard: any port (also "no port" in `out_port` filters).
    pub const ANY: PortNo = PortNo(0xffff_ffff);

    /// The OpenFlow 1.0 16-bit encoding used by Nicira actions such as
    /// `resubmit`: reserved ports map from `0xffffff..` to `0xff..`.
    pub fn to_of10(self) -> u16 {
        if self.0 >= 0xffff_ff00 {
            (self.0 & 0xffff) as u16
        } else {
            self.0 as u16
        }
    }

    /// The inverse of [`PortNo::to_of10`].
    pub fn from_of10(port: u16) -> PortNo {
        if port >= 0xff00 {
            PortNo(0xffff_0000 | u32::from(port))
        } else {
            PortNo(u32::from(port))
        }
    }
}

impl fmt::Debug for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PortNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PortNo::IN_PORT => f.write_str("IN_PORT"),
            PortNo::TABLE => f.write_str("TABLE"),
            PortNo::NORMAL => f.write_str("NORMAL"),
            PortNo::FLOOD => f.write_str("FLOOD"),
            PortNo::ALL => f.write_str("ALL"),
            PortNo::CONTROLLER => f.write_str("CONTROLLER"),
            PortNo::LOCAL => f.write_str("LOCAL"),
            PortNo::ANY => f.write_str("ANY"),
            PortNo(n) => write!(f, "{n}"),
        }
    }
}

impl From<u32> for PortNo {
    fn from(n: u32) -> Self {
        PortNo(n)
    }
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address as a 48-bit integer.
    pub fn to_u64(self) -> u64 {
        self.0.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
    }

    /// The address from the low 48 bits of an integer.
    pub fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not six colon-separated hexadecimal octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by ':'")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let mac: MacAddr = "02:fa:00:00:00:01".parse().unwrap();
        assert_eq!(mac.0, [2, 0xfa, 0, 0, 0, 1]);
        assert_eq!(mac.to_string(), "02:fa:00:00:00:01");
        assert_eq!(MacAddr::from_u64(mac.to_u64()), mac);
        assert!("02:fa:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:fa:00:00:00:01:02".parse::<MacAddr>().is_err());
        assert!("zz:fa:00:00:00:01".parse::<MacAddr>().is_err());
    }

    #[test]
    fn reserved_ports_map_to_openflow_1_0() {
        assert_eq!(PortNo::IN_PORT.to_of10(), 0xfff8);
        assert_eq!(PortNo::from_of10(0xfff8), PortNo::IN_PORT);
        assert_eq!(PortNo(7).to_of10(), 7);
        assert_eq!(PortNo::from_of10(7), PortNo(7));
    }
}
