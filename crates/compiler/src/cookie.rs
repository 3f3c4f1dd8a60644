//! Flow cookies name the object that owns a flow: the top byte is the kind
//! of owner, the rest a hash of its id. The controller diffs, counts and
//! deletes flows by cookie, and `flowgate flows` turns cookies back into
//! "rule sgr-... of sg-..." through the compiler's owner table.

use std::collections::{BTreeMap, BTreeSet};
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

/// The cookie mask that selects every flow of one kind of owner (with the
/// cookie `(kind as u64) << 56`).
pub const COOKIE_KIND_MASK: u64 = !COOKIE_ID_MASK;

/// The cookie every hypervisor gives each of `ids` (owners of `kind`),
/// known without the compiler's owner table: the preferred cookie, unless
/// the compiler may have had to probe past it.
///
/// [`crate::Compiler`] gives an owner its preferred cookie unless another
/// owner of the same kind already holds it, and then probes upwards. So an
/// owner's cookie can differ from its preferred one, or its preferred one
/// belong to someone else, only if another owner of the kind prefers a
/// cookie at most `n - 1` below it (each probe step passes one taken
/// cookie; `n` owners in all). Such owners get `None` (with 56-bit hashes,
/// about one owner in 10^7 at 50,000 owners); readers of per-owner counters
/// report nothing for them rather than someone else's counts.
///
/// `ids` must include every owner of `kind` the compiler knows.
pub fn settled_cookies<'a>(
    kind: OwnerKind,
    ids: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<&'a str, Option<u64>> {
    let preferred: BTreeMap<&str, u64> = ids
        .into_iter()
        .map(|id| (id, OwnerKey::new(kind, id).preferred_cookie()))
        .collect();
    let crowded = crowded(preferred.values().map(|c| c & COOKIE_ID_MASK).collect());
    preferred
        .into_iter()
        .map(|(id, cookie)| {
            let settled = !crowded.contains(&(cookie & COOKIE_ID_MASK));
            (id, settled.then_some(cookie))
        })
        .collect()
}

/// Of 56-bit cookie ids (with repeats), those with another id at most
/// `n - 1` below them, cyclically as probing wraps.
fn crowded(mut ids: Vec<u64>) -> BTreeSet<u64> {
    let n = ids.len();
    ids.sort_unstable();
    let mut out = BTreeSet::new();
    if n < 2 {
        return out;
    }
    let window = (n - 1) as u64;
    for i in 0..n {
        let id = ids[i];
        let below = ids[(i + n - 1) % n];
        let above = ids[(i + 1) % n];
        if id.wrapping_sub(below) & COOKIE_ID_MASK <= window || above == id {
            out.insert(id);
        }
    }
    out
}

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

    #[test]
    fn owners_near_another_are_not_settled() {
        let top = COOKIE_ID_MASK;
        // Seven ids, so a window of six: 10 and 12 are within it of 7 and
        // 10, 0 of `top` (probing wraps), 7 is repeated; 500 and `top` are
        // far from anything below them.
        let crowded = crowded(vec![10, 12, 500, top, 0, 7, 7]);
        assert_eq!(crowded.into_iter().collect::<Vec<_>>(), vec![0, 7, 10, 12]);
        assert!(super::crowded(vec![5]).is_empty());
        assert!(super::crowded(vec![5, 5]).contains(&5));
    }

    #[test]
    fn settled_cookies_are_the_preferred_ones() {
        let ids = ["sgr-1", "sgr-2", "sgr-3"];
        let settled = settled_cookies(OwnerKind::Rule, ids);
        for id in ids {
            let preferred = OwnerKey::new(OwnerKind::Rule, id).preferred_cookie();
            assert_eq!(settled[id], Some(preferred));
            assert_eq!(preferred & COOKIE_KIND_MASK, (OwnerKind::Rule as u64) << 56);
        }
    }
}
