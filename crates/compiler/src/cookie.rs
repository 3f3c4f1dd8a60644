//! Flow cookies name the object that owns a flow: the top byte is the kind
//! of owner, the rest a hash of its id. The controller diffs, counts and
//! deletes flows by cookie, and `flowgate flows` turns cookies back into
//! "rule sgr-... of sg-..." through the compiler's owner table.

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

/// What kind of object owns a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    /// The fixed part of the pipeline on a hypervisor.
    Pipeline = 1,
    /// One instance's port: classification, port security, delivery.
    Instance = 2,
    /// One security group rule as it applies on a hypervisor.
    Rule = 3,
    /// One Elastic IP: ARP, destination and source NAT.
    Address = 5,
    /// One private network on a hypervisor: gateway ARP, ARP flooding.
    Network = 6,
}

impl OwnerKind {
    fn from_u8(v: u8) -> Option<OwnerKind> {
        Some(match v {
            1 => OwnerKind::Pipeline,
            2 => OwnerKind::Instance,
            3 => OwnerKind::Rule,
            5 => OwnerKind::Address,
            6 => OwnerKind::Network,
            _ => return None,
        })
    }

    /// Name used in listings.
    pub fn name(self) -> &'static str {
        match self {
            OwnerKind::Pipeline => "pipeline",
            OwnerKind::Instance => "instance",
            OwnerKind::Rule => "rule",
            OwnerKind::Address => "address",
            OwnerKind::Network => "network",
        }
    }
}

/// The owner of a set of flows on a hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerKey {
    /// Its kind.
    pub kind: OwnerKind,
    /// The object's id (`i-...`, `sgr-...`, `eipalloc-...`, a network id;
    /// empty for the pipeline).
    pub id: String,
}

impl OwnerKey {
    /// An owner.
    pub fn new(kind: OwnerKind, id: impl Into<String>) -> OwnerKey {
        OwnerKey { kind, id: id.into() }
    }

    /// The owner's preferred cookie; [`crate::Compiler`] probes onwards in
    /// the unlikely case two owners of one hypervisor hash alike.
    pub fn preferred_cookie(&self) -> u64 {
        ((self.kind as u64) << 56) | (xxh3_64(self.id.as_bytes()) & COOKIE_ID_MASK)
    }
}

impl fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            f.write_str(self.kind.name())
        } else {
            write!(f, "{} {}", self.kind.name(), self.id)
        }
    }
}

const COOKIE_ID_MASK: u64 = (1 << 56) - 1;

/// The kind of owner a cookie names.
pub fn cookie_kind(cookie: u64) -> Option<OwnerKind> {
    OwnerKind::from_u8((cookie >> 56) as u8)
}

/// The next cookie to try after a collision, keeping the kind.
pub(crate) fn probe(cookie: u64) -> u64 {
    (cookie & !COOKIE_ID_MASK) | (cookie.wrapping_add(1) & COOKIE_ID_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_their_kind() {
        let key = OwnerKey::new(OwnerKind::Rule, "sgr-0123456789abcdef0");
        let cookie = key.preferred_cookie();
        assert_eq!(cookie_kind(cookie), Some(OwnerKind::Rule));
        assert_eq!(cookie_kind(probe(cookie)), Some(OwnerKind::Rule));
        assert_ne!(probe(cookie), cookie);
        assert_eq!(key.to_string(), "rule sgr-0123456789abcdef0");
    }
}
