//! Flows as the controller thinks of them: a flow table entry identified by
//! table, priority and match, owned by whoever its cookie names; and the
//! desired set of flows for one switch, grouped by owner.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use openflow::{FlowStats, Instruction, Match};
use xxhash_rust::xxh3::xxh3_128;

/// A 128-bit fingerprint of a flow's key (table, priority, match) or body
/// (instructions), taken over their wire encoding. Two flows are the same
/// table entry exactly when their key fingerprints are equal: at 128 bits a
/// collision among even millions of flows has a probability far below that
/// of a hardware error, and comparing fingerprints instead of nested
/// structures is what keeps diffs of 100,000 flows in the tens of
/// milliseconds.
pub type Fingerprint = u128;

/// A flow table entry. Immutable once built: its identity and content are
/// fingerprinted once.
///
/// The match and instructions are kept as their wire encoding, not as the
/// codec's typed values: a security-group flow takes about 80 bytes that
/// way instead of about 500, which is what lets one controller hold the
/// flows of a thousand hypervisors. [`Flow::match_`] and
/// [`Flow::instructions`] decode on demand (when a flow-mod is built).
#[derive(Debug, Clone)]
pub struct Flow {
    table: u8,
    priority: u16,
    cookie: u64,
    key: Fingerprint,
    body: Fingerprint,
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// The `ofp_match` (header, OXM fields, padding) followed by the
    /// instructions, as on the wire.
    Wire { bytes: Box<[u8]>, match_len: u16 },
    /// What the codec could not encode (a match or instruction list too
    /// long): kept as given, so that sending it fails as it would have.
    /// Boxed: it never happens in practice, and every flow would otherwise
    /// pay for its size.
    Typed(Box<(Match, Vec<Instruction>)>),
}

thread_local! {
    /// Scratch space for encoding flows before fingerprinting them.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Flow {
    /// A flow; the match is put in its canonical form so that it compares
    /// equal to what the switch reports back.
    pub fn new(table: u8, priority: u16, match_: Match, instructions: Vec<Instruction>) -> Flow {
        let match_ = match_.canonical();
        // Switches report some actions in another spelling than they were
        // sent in; both must fingerprint alike.
        let instructions: Vec<Instruction> = instructions.into_iter().map(Instruction::canonical).collect();
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.push(table);
            buf.extend_from_slice(&priority.to_be_bytes());
            // A match too long to encode cannot be installed either; its
            // partial encoding still identifies it.
            let match_ok = match_.encode(&mut buf).is_ok();
            let key = xxh3_128(&buf);
            let match_end = buf.len();
            let instructions_ok = Instruction::encode_list(&instructions, &mut buf).is_ok();
            let body = xxh3_128(&buf[match_end..]);
            let match_len = u16::try_from(match_end - 3).ok();
            let repr = match match_len {
                Some(match_len) if match_ok && instructions_ok => Repr::Wire {
                    bytes: buf[3..].into(),
                    match_len,
                },
                _ => Repr::Typed(Box::new((match_, instructions))),
            };
            Flow {
                table,
                priority,
                cookie: 0,
                key,
                body,
                repr,
            }
        })
    }

    /// The same flow owned by `cookie`.
    pub fn with_cookie(mut self, cookie: u64) -> Flow {
        self.cookie = cookie;
        self
    }

    /// A flow as a switch reported it in flow statistics.
    pub fn from_stats(stats: FlowStats) -> Flow {
        Flow::new(stats.table_id, stats.priority, stats.match_, stats.instructions).with_cookie(stats.cookie)
    }

    /// Table id.
    pub fn table(&self) -> u8 {
        self.table
    }

    /// Priority.
    pub fn priority(&self) -> u16 {
        self.priority
    }

    /// The match, in canonical form (decoded from the stored encoding).
    pub fn match_(&self) -> Match {
        match &self.repr {
            // The codec decodes whatever it encoded (property-tested).
            Repr::Wire { bytes, match_len } => {
                Match::decode_bytes(&bytes[..usize::from(*match_len)]).unwrap_or_default()
            }
            Repr::Typed(typed) => typed.0.clone(),
        }
    }

    /// The owner's cookie.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The instructions (decoded from the stored encoding).
    pub fn instructions(&self) -> Vec<Instruction> {
        match &self.repr {
            Repr::Wire { bytes, match_len } => {
                Instruction::decode_list_bytes(&bytes[usize::from(*match_len)..]).unwrap_or_default()
            }
            Repr::Typed(typed) => typed.1.clone(),
        }
    }

    /// The flow as a switch that has just installed it reports it in a
    /// flow-stats reply (no age, no counters, no timeouts): what tests,
    /// benchmarks and emulated switches start a flow table from.
    pub fn to_stats(&self) -> FlowStats {
        FlowStats {
            table_id: self.table(),
            duration_sec: 0,
            duration_nsec: 0,
            priority: self.priority,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            importance: 0,
            cookie: self.cookie,
            packet_count: 0,
            byte_count: 0,
            match_: self.match_(),
            instructions: self.instructions(),
        }
    }

    /// Fingerprint of the key: table, priority and match.
    pub fn key(&self) -> Fingerprint {
        self.key
    }

    /// Fingerprint of the instructions.
    pub fn body(&self) -> Fingerprint {
        self.body
    }

    /// Whether `other` is the same table entry (same table, priority and
    /// match), whatever its cookie and instructions.
    pub fn same_key(&self, other: &Flow) -> bool {
        self.key == other.key
    }

    /// Whether installing `other` over `self` would change nothing.
    pub fn same_body(&self, other: &Flow) -> bool {
        self.cookie == other.cookie && self.body == other.body
    }
}

/// The flows one switch should have, grouped by owner (cookie).
///
/// Cloning is cheap (owners share their flow lists), so a publisher can copy
/// the current set, replace one owner and publish the result; a switch
/// session sees which owners changed by pointer comparison and touches only
/// their flows.
///
/// Owners live in buckets by the top bits of their cookie (its kind and the
/// first bits of its hash), each bucket shared until changed: copying the
/// set to change one owner copies one bucket of a few dozen owners, not a
/// map of every owner of the switch (a rule every hypervisor has would
/// otherwise cost a thousand switches a thousand-owner copy each), and
/// comparing two sets skips every bucket they share.
#[derive(Debug, Clone, Default)]
pub struct FlowSet {
    buckets: BTreeMap<u64, Arc<Bucket>>,
}

type Bucket = BTreeMap<u64, Arc<[Arc<Flow>]>>;

/// Cookies sharing their top bits share a bucket (a prefix of the cookie,
/// so buckets in order hold owners in cookie order).
const BUCKET_SHIFT: u32 = 50;

fn bucket_of(cookie: u64) -> u64 {
    cookie >> BUCKET_SHIFT
}

impl FlowSet {
    /// An empty set.
    pub fn new() -> FlowSet {
        FlowSet::default()
    }

    /// Replaces every flow of `cookie` with `flows` (each gets the cookie);
    /// an empty list removes the owner.
    pub fn set_owner(&mut self, cookie: u64, flows: impl IntoIterator<Item = Flow>) {
        let flows: Arc<[Arc<Flow>]> = flows
            .into_iter()
            .map(|f| Arc::new(f.with_cookie(cookie)))
            .collect();
        if flows.is_empty() {
            self.remove_owner(cookie);
        } else {
            let bucket = self.buckets.entry(bucket_of(cookie)).or_default();
            Arc::make_mut(bucket).insert(cookie, flows);
        }
    }

    /// Removes every flow of `cookie`.
    pub fn remove_owner(&mut self, cookie: u64) {
        let key = bucket_of(cookie);
        if let Some(bucket) = self.buckets.get_mut(&key)
            && bucket.contains_key(&cookie)
        {
            Arc::make_mut(bucket).remove(&cookie);
            if bucket.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }

    /// The flows of `cookie`.
    pub fn owner(&self, cookie: u64) -> &[Arc<Flow>] {
        self.buckets
            .get(&bucket_of(cookie))
            .and_then(|b| b.get(&cookie))
            .map(|f| &f[..])
            .unwrap_or(&[])
    }

    /// Owners and their flows, by cookie.
    pub fn owners(&self) -> impl Iterator<Item = (u64, &[Arc<Flow>])> {
        self.buckets
            .values()
            .flat_map(|b| b.iter().map(|(c, f)| (*c, &f[..])))
    }

    /// Every flow.
    pub fn flows(&self) -> impl Iterator<Item = &Arc<Flow>> {
        self.owners().flat_map(|(_, f)| f.iter())
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.owners().map(|(_, f)| f.len()).sum()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Owners whose flows differ between `self` and `newer` (compared by
    /// pointer, which is what publishing through `set_owner` changes), in
    /// cookie order.
    pub fn changed_owners(&self, newer: &FlowSet) -> Vec<u64> {
        let mut changed = Vec::new();
        let empty = Bucket::new();
        for key in merged_keys(self.buckets.keys(), newer.buckets.keys()) {
            let (a, b) = (self.buckets.get(&key), newer.buckets.get(&key));
            if let (Some(a), Some(b)) = (a, b)
                && Arc::ptr_eq(a, b)
            {
                continue;
            }
            let (a, b) = (a.map_or(&empty, |a| &**a), b.map_or(&empty, |b| &**b));
            for cookie in merged_keys(a.keys(), b.keys()) {
                let same = match (a.get(&cookie), b.get(&cookie)) {
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                    _ => false,
                };
                if !same {
                    changed.push(cookie);
                }
            }
        }
        changed
    }
}

/// The union of two ascending key sequences, ascending, without repeats.
fn merged_keys<'a>(a: impl Iterator<Item = &'a u64>, b: impl Iterator<Item = &'a u64>) -> Vec<u64> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut out = Vec::new();
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), None) => **x,
            (None, Some(y)) => **y,
            (Some(x), Some(y)) => (**x).min(**y),
        };
        if a.peek().is_some_and(|x| **x == next) {
            a.next();
        }
        if b.peek().is_some_and(|y| **y == next) {
            b.next();
        }
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::{Action, Masked, OxmField, PortNo};

    fn flow(priority: u16, reg: u32, port: u32) -> Flow {
        Flow::new(
            0,
            priority,
            Match::new(vec![OxmField::Reg {
                index: 0,
                value: Masked::exact(reg),
            }]),
            vec![Instruction::ApplyActions(vec![Action::output(PortNo(port))])],
        )
    }

    #[test]
    fn keys_ignore_cookie_and_instructions_and_match_order() {
        let a = Flow::new(
            0,
            5,
            Match::new(vec![OxmField::EthType(0x800), OxmField::IpProto(6)]),
            vec![],
        );
        let b = Flow::new(
            0,
            5,
            Match::new(vec![OxmField::IpProto(6), OxmField::EthType(0x800)]),
            vec![Instruction::GotoTable(1)],
        )
        .with_cookie(9);
        assert!(a.same_key(&b));
        assert!(!a.same_body(&b));
        let c = Flow::new(
            0,
            6,
            Match::new(vec![OxmField::EthType(0x800), OxmField::IpProto(6)]),
            vec![],
        );
        assert!(!a.same_key(&c), "priority is part of the key");
    }

    #[test]
    fn match_and_instructions_come_back_in_canonical_form() {
        let m = Match::new(vec![OxmField::IpProto(6), OxmField::EthType(0x800)]);
        let i = vec![
            Instruction::ApplyActions(vec![Action::output(PortNo(3))]),
            Instruction::GotoTable(5),
        ];
        let f = Flow::new(1, 2, m.clone(), i.clone());
        assert_eq!(f.match_(), m.canonical());
        assert_eq!(
            f.instructions(),
            i.into_iter().map(Instruction::canonical).collect::<Vec<_>>()
        );
        assert!(matches!(f.repr, Repr::Wire { .. }));
    }

    #[test]
    fn changed_owners_are_found_by_pointer() {
        let mut old = FlowSet::new();
        old.set_owner(1, [flow(1, 1, 1)]);
        old.set_owner(2, [flow(1, 2, 1)]);
        old.set_owner(3, [flow(1, 3, 1)]);
        let mut new = old.clone();
        assert!(old.changed_owners(&new).is_empty());
        new.set_owner(2, [flow(1, 2, 5)]);
        new.remove_owner(3);
        new.set_owner(4, [flow(1, 4, 1)]);
        assert_eq!(old.changed_owners(&new), vec![2, 3, 4]);
        assert_eq!(new.len(), 3);
        assert_eq!(new.owner(2)[0].cookie(), 2);
    }

    #[test]
    fn owners_in_many_buckets_stay_in_cookie_order_and_changes_are_found() {
        let cookies: Vec<u64> = (0..200u64).map(|i| (3 << 56) | (i << 47) | i).collect();
        let mut old = FlowSet::new();
        for (i, c) in cookies.iter().enumerate() {
            old.set_owner(*c, [flow(1, i as u32, 1)]);
        }
        assert!(old.buckets.len() > 10, "spread over buckets");
        let listed: Vec<u64> = old.owners().map(|(c, _)| c).collect();
        assert_eq!(listed, cookies);
        let mut new = old.clone();
        new.set_owner(cookies[150], [flow(1, 999, 2)]);
        new.remove_owner(cookies[3]);
        new.set_owner(7 << 56, [flow(1, 1000, 1)]);
        assert_eq!(old.changed_owners(&new), vec![cookies[3], cookies[150], 7 << 56]);
        assert_eq!(new.changed_owners(&old), vec![cookies[3], cookies[150], 7 << 56]);
        assert_eq!(new.len(), 200);
        assert!(new.owner(cookies[3]).is_empty());
        assert_eq!(old.owner(cookies[3]).len(), 1);
        // Untouched buckets are shared, not copied.
        let shared = old
            .buckets
            .iter()
            .filter(|(k, b)| new.buckets.get(*k).is_some_and(|n| Arc::ptr_eq(b, n)))
            .count();
        assert_eq!(shared, old.buckets.len() - 2);
    }
}
