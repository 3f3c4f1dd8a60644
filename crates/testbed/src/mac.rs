//! Ethernet addresses.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An Ethernet MAC address, written `02:00:00:00:00:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address with these octets.
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// A locally administered unicast address (`02:00:` followed by `id` in
    /// big-endian order): distinct test addresses that can never clash with
    /// a vendor's.
    pub const fn local(id: u32) -> Self {
        let b = id.to_be_bytes();
        MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
    }

    /// The six octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether this is a multicast (or broadcast) address, which no
    /// interface can own.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::Invalid {
            what: "MAC address",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(|| invalid("fewer than six octets"))?;
            if part.is_empty() || part.len() > 2 {
                return Err(invalid("each octet is one or two hex digits"));
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid("not hexadecimal"))?;
        }
        if parts.next().is_some() {
            return Err(invalid("more than six octets"));
        }
        Ok(MacAddr(octets))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let mac = MacAddr::local(0x0102_0a0b);
        assert_eq!(mac.to_string(), "02:00:01:02:0a:0b");
        assert_eq!("02:00:01:02:0a:0b".parse::<MacAddr>().ok(), Some(mac));
        assert_eq!("2:0:1:2:A:B".parse::<MacAddr>().ok(), Some(mac));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "002:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} was accepted");
        }
        assert!(MacAddr::new([0xff; 6]).is_multicast());
        assert!(!MacAddr::local(1).is_multicast());
    }
}
