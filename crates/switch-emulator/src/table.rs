//! One switch's flow table in memory: this module's one job is storing
//! flows compactly and applying the five flow-mod commands to them with
//! Open vSwitch's semantics, reversibly (so that a bundle can be undone).
//!
//! Each flow is one B-tree entry of 48 bytes plus one heap allocation that
//! holds its canonical match followed by its encoded instructions. The key
//! orders flows by table, then priority (highest first), then match, so a
//! table is a contiguous range and a strict lookup is a B-tree search.
//!
//! Semantics follow `ofproto.c`:
//! * add: a flow with the same table, priority and match is replaced (new
//!   cookie, instructions, flags, timeouts, and duration restarting at 0);
//!   otherwise `CHECK_OVERLAP` refuses a flow of equal priority that some
//!   packet could match together with an existing one.
//! * modify / modify-strict: replace the instructions of the selected flows,
//!   keeping cookie, flags, timeouts and duration; selecting nothing is not
//!   an error and adds nothing (OpenFlow 1.2 and later).
//! * delete / delete-strict: remove the selected flows.
//! * Selection: the table (or all with `OFPTT_ALL`), the cookie under
//!   `cookie_mask`, and for deletes `out_port` and `out_group`; strict
//!   commands need the same priority and match, loose ones a flow at least
//!   as specific as the request's match (priority ignored).

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use openflow::{Action, Instruction, OFPG_ANY, OFPTT_ALL, PortNo};

use crate::compact::decode_flow;
use crate::matching::{covers, overlaps};

/// A flow-mod command, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `OFPFC_ADD`.
    Add,
    /// `OFPFC_MODIFY`.
    Modify,
    /// `OFPFC_MODIFY_STRICT`.
    ModifyStrict,
    /// `OFPFC_DELETE`.
    Delete,
    /// `OFPFC_DELETE_STRICT`.
    DeleteStrict,
}

impl Command {
    fn is_strict(self) -> bool {
        matches!(self, Command::ModifyStrict | Command::DeleteStrict)
    }
}

/// Which flows a command, or a statistics request, is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    /// Table, or [`OFPTT_ALL`].
    pub table_id: u8,
    /// Canonical match (see [`crate::matching`]).
    pub match_: Box<[u8]>,
    /// For strict selection, the priority; `None` selects loosely.
    pub strict_priority: Option<u16>,
    /// Cookie the flows must have under `cookie_mask`.
    pub cookie: u64,
    /// Cookie bits that must match (0 = any cookie).
    pub cookie_mask: u64,
    /// Only flows that output to this port (`ANY` = no filter).
    pub out_port: PortNo,
    /// Only flows that output to this group (`OFPG_ANY` = no filter).
    pub out_group: u32,
}

/// A validated flow-mod, ready to apply to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// What to do.
    pub command: Command,
    /// Table (or [`OFPTT_ALL`] for deletes), priority, canonical match and
    /// encoded instructions, in the one allocation an added flow keeps.
    pub flow: FlowKey,
    /// For add: the new flow's cookie. For the others: the cookie filter.
    pub cookie: u64,
    /// Cookie filter mask for modify and delete.
    pub cookie_mask: u64,
    /// Output-port filter for deletes.
    pub out_port: PortNo,
    /// Output-group filter for deletes.
    pub out_group: u32,
    /// `OFPFF_*` flags.
    pub flags: u16,
    /// Idle timeout in seconds.
    pub idle_timeout: u16,
    /// Hard timeout in seconds.
    pub hard_timeout: u16,
    /// Eviction importance (OpenFlow 1.4 adds only).
    pub importance: u16,
}

impl FlowSpec {
    /// The flows this spec selects, for modify and delete commands.
    pub fn criteria(&self) -> Criteria {
        let deleting = matches!(self.command, Command::Delete | Command::DeleteStrict);
        Criteria {
            table_id: self.flow.table,
            match_: self.flow.match_bytes().into(),
            strict_priority: self.command.is_strict().then_some(self.flow.priority),
            cookie: self.cookie,
            cookie_mask: self.cookie_mask,
            // Modify ignores the output filters (ofproto's modify criteria
            // use OFPP_ANY and OFPG_ANY).
            out_port: if deleting { self.out_port } else { PortNo::ANY },
            out_group: if deleting { self.out_group } else { OFPG_ANY },
        }
    }
}

/// The key of a stored flow: table, priority and match, with the flow's
/// instructions sharing the match's allocation (`bytes` is the match
/// followed by the instructions; only the match takes part in ordering).
#[derive(Debug, Clone)]
pub struct FlowKey {
    table: u8,
    priority: u16,
    match_len: u16,
    bytes: Box<[u8]>,
}

impl FlowKey {
    /// Table, priority, canonical match and encoded instructions, in one
    /// allocation.
    pub fn new(table: u8, priority: u16, match_: &[u8], instructions: &[u8]) -> FlowKey {
        let mut bytes = Vec::with_capacity(match_.len() + instructions.len());
        bytes.extend_from_slice(match_);
        bytes.extend_from_slice(instructions);
        FlowKey {
            table,
            priority,
            // Canonical matches come from one OpenFlow message, so their
            // length fits in 16 bits.
            match_len: u16::try_from(match_.len()).unwrap_or(u16::MAX),
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// The flow's table.
    pub fn table(&self) -> u8 {
        self.table
    }

    /// The flow's priority.
    pub fn priority(&self) -> u16 {
        self.priority
    }

    /// The flow's canonical match.
    pub fn match_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.match_len)).unwrap_or(&[])
    }

    /// The flow's encoded instructions.
    pub fn instruction_bytes(&self) -> &[u8] {
        self.bytes.get(usize::from(self.match_len)..).unwrap_or(&[])
    }

    fn ordering_tuple(&self) -> (u8, Reverse<u16>, &[u8]) {
        (self.table, Reverse(self.priority), self.match_bytes())
    }
}

impl PartialEq for FlowKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FlowKey {}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FlowKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ordering_tuple().cmp(&other.ordering_tuple())
    }
}

/// What a stored flow has besides its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    /// Cookie.
    pub cookie: u64,
    /// When the flow was added, in milliseconds of the emulator's clock.
    pub created_ms: u64,
    /// Idle timeout in seconds.
    pub idle_timeout: u16,
    /// Hard timeout in seconds.
    pub hard_timeout: u16,
    /// `OFPFF_*` flags.
    pub flags: u16,
    /// Eviction importance.
    pub importance: u16,
}

impl FlowEntry {
    fn has_timeout(&self) -> bool {
        self.idle_timeout != 0 || self.hard_timeout != 0
    }
}

/// How to reverse one change, recorded while applying a bundle.
#[derive(Debug)]
pub enum Undo {
    /// A flow was inserted: remove it.
    Remove(FlowKey),
    /// A flow was removed or replaced: put it back.
    Restore(FlowKey, FlowEntry),
}

/// Why a flow-mod could not be applied to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// `CHECK_OVERLAP` found an overlapping flow: `OFPFMFC_OVERLAP`.
    #[error("the flow overlaps an existing flow of the same priority")]
    Overlap,
    /// The switch's flow limit is reached: `OFPFMFC_TABLE_FULL`.
    #[error("the flow table is full")]
    TableFull,
}

impl ApplyError {
    /// The OpenFlow error name Open vSwitch sends.
    pub fn error_name(self) -> &'static str {
        match self {
            ApplyError::Overlap => "OFPFMFC_OVERLAP",
            ApplyError::TableFull => "OFPFMFC_TABLE_FULL",
        }
    }
}

/// What applying a flow-mod changed.
#[derive(Debug, Default)]
pub struct Effect {
    /// Flows added (not counting replacements).
    pub added: usize,
    /// Flows replaced or modified.
    pub modified: usize,
    /// Flows deleted, with what a flow-removed message needs; only those
    /// with `OFPFF_SEND_FLOW_REM` are kept.
    pub removed_notify: Vec<(FlowKey, FlowEntry)>,
    /// Number of flows deleted.
    pub deleted: usize,
}

/// The flow table of one switch.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: BTreeMap<FlowKey, FlowEntry>,
    /// Flows with an idle or hard timeout, so that expiry scans only when
    /// there is something to expire.
    timed: usize,
}

/// `OFPFF_SEND_FLOW_REM`.
const SEND_FLOW_REM: u16 = 1;
/// `OFPFF_CHECK_OVERLAP`.
const CHECK_OVERLAP: u16 = 2;

impl FlowTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of flows in all tables.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Every flow, ordered by table, priority (highest first) and match.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.flows.iter()
    }

    fn insert(&mut self, key: FlowKey, entry: FlowEntry) -> Option<FlowEntry> {
        if entry.has_timeout() {
            self.timed += 1;
        }
        let old = self.flows.insert(key, entry);
        if old.is_some_and(|o| o.has_timeout()) {
            self.timed -= 1;
        }
        old
    }

    fn remove(&mut self, key: &FlowKey) -> Option<(FlowKey, FlowEntry)> {
        let removed = self.flows.remove_entry(key);
        if removed.as_ref().is_some_and(|(_, e)| e.has_timeout()) {
            self.timed -= 1;
        }
        removed
    }

    /// The flows `criteria` select, in table order.
    pub fn select<'a>(&'a self, c: &'a Criteria) -> impl Iterator<Item = (&'a FlowKey, &'a FlowEntry)> + 'a {
        let range: Box<dyn Iterator<Item = (&FlowKey, &FlowEntry)>> = match (c.table_id, c.strict_priority) {
            (OFPTT_ALL, _) => Box::new(self.flows.iter()),
            (t, Some(priority)) => {
                let probe = FlowKey::new(t, priority, &c.match_, &[]);
                Box::new(self.flows.get_key_value(&probe).into_iter())
            }
            (t, None) => {
                let start = FlowKey::new(t, u16::MAX, &[], &[]);
                Box::new(self.flows.range(start..).take_while(move |(k, _)| k.table == t))
            }
        };
        range.filter(move |(k, e)| {
            let selected_by_match = match c.strict_priority {
                Some(p) => k.priority == p && k.match_bytes() == &*c.match_,
                None => covers(&c.match_, k.match_bytes()),
            };
            selected_by_match
                && (e.cookie ^ c.cookie) & c.cookie_mask == 0
                && (c.out_port == PortNo::ANY || outputs_to(k.instruction_bytes(), c.out_port))
                && (c.out_group == OFPG_ANY || outputs_to_group(k.instruction_bytes(), c.out_group))
        })
    }

    /// Applies one flow-mod. With `undo`, records how to reverse it (for
    /// bundles); `max_flows` bounds the number of flows an add may create.
    /// An added flow keeps the spec's allocation.
    pub fn apply(
        &mut self,
        spec: FlowSpec,
        now_ms: u64,
        max_flows: Option<usize>,
        mut undo: Option<&mut Vec<Undo>>,
    ) -> Result<Effect, ApplyError> {
        let mut effect = Effect::default();
        match spec.command {
            Command::Add => {
                let entry = FlowEntry {
                    cookie: spec.cookie,
                    created_ms: now_ms,
                    idle_timeout: spec.idle_timeout,
                    hard_timeout: spec.hard_timeout,
                    flags: spec.flags,
                    importance: spec.importance,
                };
                let key = spec.flow;
                let exists = self.flows.contains_key(&key);
                if !exists {
                    if spec.flags & CHECK_OVERLAP != 0 && self.overlaps_any(&key) {
                        return Err(ApplyError::Overlap);
                    }
                    if max_flows.is_some_and(|max| self.flows.len() >= max) {
                        return Err(ApplyError::TableFull);
                    }
                }
                // The old key must go too: its allocation holds the old
                // instructions.
                if let Some((old_key, old_entry)) = self.remove(&key) {
                    if let Some(u) = undo.as_deref_mut() {
                        u.push(Undo::Restore(old_key, old_entry));
                    }
                    effect.modified += 1;
                } else {
                    effect.added += 1;
                }
                if let Some(u) = undo.as_deref_mut() {
                    u.push(Undo::Remove(key.clone()));
                }
                self.insert(key, entry);
            }
            Command::Modify | Command::ModifyStrict => {
                let criteria = spec.criteria();
                let keys: Vec<FlowKey> = self.select(&criteria).map(|(k, _)| k.clone()).collect();
                for key in keys {
                    if key.instruction_bytes() == spec.flow.instruction_bytes() {
                        effect.modified += 1;
                        continue;
                    }
                    let Some((old_key, entry)) = self.remove(&key) else {
                        continue;
                    };
                    let new_key = FlowKey::new(
                        old_key.table,
                        old_key.priority,
                        old_key.match_bytes(),
                        spec.flow.instruction_bytes(),
                    );
                    if let Some(u) = undo.as_deref_mut() {
                        u.push(Undo::Restore(old_key, entry));
                        u.push(Undo::Remove(new_key.clone()));
                    }
                    self.insert(new_key, entry);
                    effect.modified += 1;
                }
            }
            Command::Delete | Command::DeleteStrict => {
                let criteria = spec.criteria();
                let keys: Vec<FlowKey> = self.select(&criteria).map(|(k, _)| k.clone()).collect();
                for key in keys {
                    let Some((old_key, entry)) = self.remove(&key) else {
                        continue;
                    };
                    effect.deleted += 1;
                    if entry.flags & SEND_FLOW_REM != 0 {
                        effect.removed_notify.push((old_key.clone(), entry));
                    }
                    if let Some(u) = undo.as_deref_mut() {
                        u.push(Undo::Restore(old_key, entry));
                    }
                }
            }
        }
        Ok(effect)
    }

    /// Reverses the changes recorded in `undo` (most recent first).
    pub fn revert(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Remove(key) => {
                    self.remove(&key);
                }
                Undo::Restore(key, entry) => {
                    self.insert(key, entry);
                }
            }
        }
    }

    fn overlaps_any(&self, key: &FlowKey) -> bool {
        let start = FlowKey::new(key.table, key.priority, &[], &[]);
        self.flows
            .range(start..)
            .take_while(|(k, _)| k.table == key.table && k.priority == key.priority)
            .any(|(k, _)| overlaps(k.match_bytes(), key.match_bytes()))
    }

    /// Removes flows whose idle or hard timeout has passed at `now_ms` and
    /// returns them with the `OFPRR_*` reason (0 idle, 1 hard). No traffic
    /// passes an emulated switch, so a flow is idle since it was added.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(FlowKey, FlowEntry, u8)> {
        if self.timed == 0 {
            return Vec::new();
        }
        let due = |e: &FlowEntry| {
            let age = now_ms.saturating_sub(e.created_ms);
            if e.hard_timeout != 0 && age >= u64::from(e.hard_timeout) * 1000 {
                Some(1)
            } else if e.idle_timeout != 0 && age >= u64::from(e.idle_timeout) * 1000 {
                Some(0)
            } else {
                None
            }
        };
        let expired: Vec<(FlowKey, u8)> = self
            .flows
            .iter()
            .filter_map(|(k, e)| due(e).map(|reason| (k.clone(), reason)))
            .collect();
        expired
            .into_iter()
            .filter_map(|(k, reason)| self.remove(&k).map(|(k, e)| (k, e, reason)))
            .collect()
    }
}

/// Whether encoded instructions output to `port` (Open vSwitch's
/// `ofproto_rule_has_out_port`: output actions, controller actions for the
/// `CONTROLLER` port, also inside `ct`).
fn outputs_to(instructions: &[u8], port: PortNo) -> bool {
    any_action(instructions, &mut |a| match a {
        Action::Output { port: p, .. } => *p == port,
        Action::Controller { .. } | Action::Controller2(_) => port == PortNo::CONTROLLER,
        _ => false,
    })
}

/// Whether encoded instructions send to `group`.
fn outputs_to_group(instructions: &[u8], group: u32) -> bool {
    any_action(
        instructions,
        &mut |a| matches!(a, Action::Group(g) if *g == group),
    )
}

fn any_action(instructions: &[u8], pred: &mut dyn FnMut(&Action) -> bool) -> bool {
    fn walk(actions: &[Action], pred: &mut dyn FnMut(&Action) -> bool) -> bool {
        actions.iter().any(|a| match a {
            Action::Ct(ct) => pred(a) || walk(&ct.actions, pred),
            _ => pred(a),
        })
    }
    let Ok((_, list)) = decode_flow(&[], instructions) else {
        return false;
    };
    list.iter().any(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => walk(a, pred),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::encode_instructions;
    use crate::matching::canonicalize;
    use openflow::{Masked, Match, OxmField};

    fn reg0(v: u32) -> Box<[u8]> {
        canonicalize(&Match::new(vec![OxmField::Reg {
            index: 0,
            value: Masked::exact(v),
        }]))
        .unwrap()
    }

    fn out(port: u32) -> Vec<u8> {
        encode_instructions(&[Instruction::ApplyActions(vec![Action::output(PortNo(port))])]).unwrap()
    }

    fn spec(command: Command, table: u8, priority: u16, m: Box<[u8]>, cookie: u64, ins: Vec<u8>) -> FlowSpec {
        FlowSpec {
            command,
            flow: FlowKey::new(table, priority, &m, &ins),
            cookie,
            cookie_mask: 0,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            flags: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            importance: 0,
        }
    }

    #[test]
    fn add_replaces_modify_keeps_cookie_delete_filters() {
        let mut t = FlowTable::new();
        t.apply(spec(Command::Add, 0, 10, reg0(1), 0x100, out(1)), 0, None, None)
            .unwrap();
        t.apply(spec(Command::Add, 0, 10, reg0(1), 0x101, out(2)), 5, None, None)
            .unwrap();
        assert_eq!(t.len(), 1);
        let (k, e) = t.iter().next().unwrap();
        assert_eq!(
            (e.cookie, e.created_ms, k.instruction_bytes()),
            (0x101, 5, out(2).as_slice())
        );

        t.apply(spec(Command::Add, 0, 20, reg0(2), 0x200, out(1)), 0, None, None)
            .unwrap();
        let e = t
            .apply(
                spec(
                    Command::Modify,
                    0,
                    0,
                    canonicalize(&Match::default()).unwrap(),
                    0,
                    out(9),
                ),
                9,
                None,
                None,
            )
            .unwrap();
        assert_eq!(e.modified, 2);
        assert!(
            t.iter()
                .all(|(k, e)| k.instruction_bytes() == out(9).as_slice() && e.cookie & 0xff00 != 0)
        );

        let mut del = spec(
            Command::Delete,
            OFPTT_ALL,
            0,
            canonicalize(&Match::default()).unwrap(),
            0x200,
            vec![],
        );
        del.cookie_mask = 0xff00;
        assert_eq!(t.apply(del.clone(), 0, None, None).unwrap().deleted, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn bundles_revert_exactly() {
        let mut t = FlowTable::new();
        t.apply(spec(Command::Add, 0, 10, reg0(1), 1, out(1)), 0, None, None)
            .unwrap();
        let before: Vec<_> = t.iter().map(|(k, e)| (k.clone(), *e)).collect();
        let mut undo = Vec::new();
        t.apply(
            spec(Command::Add, 0, 10, reg0(1), 2, out(2)),
            1,
            None,
            Some(&mut undo),
        )
        .unwrap();
        t.apply(
            spec(Command::Add, 0, 10, reg0(2), 3, out(3)),
            1,
            None,
            Some(&mut undo),
        )
        .unwrap();
        t.apply(
            spec(Command::Modify, 0, 0, reg0(2), 0, out(4)),
            1,
            None,
            Some(&mut undo),
        )
        .unwrap();
        t.revert(undo);
        let after: Vec<_> = t.iter().map(|(k, e)| (k.clone(), *e)).collect();
        assert_eq!(before.len(), after.len());
        for ((k1, e1), (k2, e2)) in before.iter().zip(&after) {
            assert_eq!((k1.bytes.as_ref(), e1), (k2.bytes.as_ref(), e2));
        }
    }

    #[test]
    fn check_overlap_and_out_port() {
        let mut t = FlowTable::new();
        t.apply(spec(Command::Add, 0, 10, reg0(2), 1, out(7)), 0, None, None)
            .unwrap();
        let even = canonicalize(&Match::new(vec![OxmField::Reg {
            index: 0,
            value: Masked::new(0, 1),
        }]))
        .unwrap();
        let mut overlapping = spec(Command::Add, 0, 10, even.clone(), 2, vec![]);
        overlapping.flags = CHECK_OVERLAP;
        assert_eq!(
            t.apply(overlapping.clone(), 0, None, None).unwrap_err(),
            ApplyError::Overlap
        );
        overlapping.flow.priority = 11;
        assert!(t.apply(overlapping.clone(), 0, None, None).is_ok());
        assert_eq!(
            t.apply(spec(Command::Add, 0, 1, reg0(3), 0, vec![]), 0, Some(2), None)
                .unwrap_err(),
            ApplyError::TableFull
        );
        let mut del = spec(
            Command::Delete,
            OFPTT_ALL,
            0,
            canonicalize(&Match::default()).unwrap(),
            0,
            vec![],
        );
        del.out_port = PortNo(7);
        assert_eq!(t.apply(del.clone(), 0, None, None).unwrap().deleted, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn timeouts_expire() {
        let mut t = FlowTable::new();
        let mut s = spec(Command::Add, 0, 10, reg0(1), 1, vec![]);
        s.hard_timeout = 2;
        t.apply(s, 1000, None, None).unwrap();
        assert!(t.expire(2999).is_empty());
        let gone = t.expire(3000);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].2, 1);
        assert!(t.is_empty());
    }
}
