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
#[derive(Debug, Clone)]
pub struct Flow {
    table: u8,
    priority: u16,
    match_: Match,
    cookie: u64,
    instructions: Vec<Instruction>,
    key: Fingerprint,
    body: Fingerprint,
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
        let (key, body) = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.push(table);
            buf.extend_from_slice(&priority.to_be_bytes());
            // A match too long to encode cannot be installed either; its
            // partial encoding still identifies it.
            let _ = match_.encode(&mut buf);
            let key = xxh3_128(&buf);
            buf.clear();
            let _ = Instruction::encode_list(&instructions, &mut buf);
            (key, xxh3_128(&buf))
        });
        Flow {
            table,
            priority,
            match_,
            cookie: 0,
            instructions,
            key,
            body,
        }
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

    /// The match, in canonical form.
    pub fn match_(&self) -> &Match {
        &self.match_
    }

    /// The owner's cookie.
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The instructions.
    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
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
#[derive(Debug, Clone, Default)]
pub struct FlowSet {
    owners: BTreeMap<u64, Arc<[Arc<Flow>]>>,
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
            self.owners.remove(&cookie);
        } else {
            self.owners.insert(cookie, flows);
        }
    }

    /// Removes every flow of `cookie`.
    pub fn remove_owner(&mut self, cookie: u64) {
        self.owners.remove(&cookie);
    }

    /// The flows of `cookie`.
    pub fn owner(&self, cookie: u64) -> &[Arc<Flow>] {
        self.owners.get(&cookie).map(|f| &f[..]).unwrap_or(&[])
    }

    /// Owners and their flows, by cookie.
    pub fn owners(&self) -> impl Iterator<Item = (u64, &[Arc<Flow>])> {
        self.owners.iter().map(|(c, f)| (*c, &f[..]))
    }

    /// Every flow.
    pub fn flows(&self) -> impl Iterator<Item = &Arc<Flow>> {
        self.owners.values().flat_map(|f| f.iter())
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.owners.values().map(|f| f.len()).sum()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Owners whose flows differ between `self` and `newer` (compared by
    /// pointer, which is what publishing through `set_owner` changes).
    pub fn changed_owners(&self, newer: &FlowSet) -> Vec<u64> {
        let mut changed = Vec::new();
        let mut a = self.owners.iter().peekable();
        let mut b = newer.owners.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((ca, _)), None) => {
                    changed.push(**ca);
                    a.next();
                }
                (None, Some((cb, _))) => {
                    changed.push(**cb);
                    b.next();
                }
                (Some((ca, fa)), Some((cb, fb))) => match ca.cmp(cb) {
                    std::cmp::Ordering::Less => {
                        changed.push(**ca);
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        changed.push(**cb);
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if !Arc::ptr_eq(fa, fb) {
                            changed.push(**ca);
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
        changed
    }
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
}
