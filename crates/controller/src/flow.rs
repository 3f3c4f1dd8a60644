//! Flows as the controller thinks of them: a flow table entry identified by
//! table, priority and match, owned by whoever its cookie names; and the
//! desired set of flows for one switch, grouped by owner.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use openflow::{FlowStats, Instruction, Match};

/// A flow table entry. Immutable once built: its identity (table, priority,
/// canonical match) is hashed once, which keeps diffs of large tables fast.
#[derive(Debug, Clone)]
pub struct Flow {
    table: u8,
    priority: u16,
    match_: Match,
    cookie: u64,
    instructions: Vec<Instruction>,
    key_hash: u64,
}

impl Flow {
    /// A flow; the match is put in its canonical form so that it compares
    /// equal to what the switch reports back.
    pub fn new(table: u8, priority: u16, match_: Match, instructions: Vec<Instruction>) -> Flow {
        let match_ = match_.canonical();
        let key_hash = key_hash(table, priority, &match_);
        Flow {
            table,
            priority,
            match_,
            cookie: 0,
            instructions,
            key_hash,
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

    /// Whether `other` is the same table entry (same table, priority and
    /// match), whatever its cookie and instructions.
    pub fn same_key(&self, other: &Flow) -> bool {
        self.key_hash == other.key_hash
            && self.table == other.table
            && self.priority == other.priority
            && self.match_ == other.match_
    }

    /// Whether installing `other` over `self` would change nothing.
    pub fn same_body(&self, other: &Flow) -> bool {
        self.cookie == other.cookie && self.instructions == other.instructions
    }
}

fn key_hash(table: u8, priority: u16, match_: &Match) -> u64 {
    let mut h = DefaultHasher::new();
    table.hash(&mut h);
    priority.hash(&mut h);
    match_.hash(&mut h);
    h.finish()
}

/// A flow compared and hashed by its key only (table, priority, match), so
/// that a `HashSet<Keyed>` is a flow table.
#[derive(Debug, Clone)]
pub(crate) struct Keyed(pub(crate) Arc<Flow>);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.same_key(&other.0)
    }
}

impl Eq for Keyed {}

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.key_hash);
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
        assert_eq!(Keyed(Arc::new(a)), Keyed(Arc::new(b)));
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
