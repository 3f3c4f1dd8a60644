//! Reconciliation, the pure core of a switch session: from what the switch
//! has and what it should have, decide the fewest flow-mods, frame them as
//! an atomic bundle (or plain flow-mods where bundles are unavailable)
//! confirmed by a barrier, and learn from the switch's answers which flows
//! it applied and which it rejected.
//!
//! No sockets and no clocks here: the session feeds in messages and desired
//! sets and sends what comes out. Rejected flows are quarantined until their
//! owner publishes something different, so a flow the switch refuses is
//! reported once instead of being retried in a hot loop.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use openflow::bundle::{BundleAdd, BundleControl, BundleCtrlType, bundle_flags};
use openflow::{ErrorMsg, FlowMod, FlowModCommand, FlowStats, Message, OfpMessage, Version};

use crate::flow::{Fingerprint, Flow, FlowSet};

/// One change to a switch's flow table.
#[derive(Debug, Clone)]
pub enum Op {
    /// Add a flow, or replace one with the same key but another owner.
    Add(Arc<Flow>),
    /// Change the instructions of a flow, keeping its counters.
    Modify(Arc<Flow>),
    /// Remove a flow.
    Delete(Arc<Flow>),
}

impl Op {
    /// The flow the operation is about.
    pub fn flow(&self) -> &Arc<Flow> {
        match self {
            Op::Add(f) | Op::Modify(f) | Op::Delete(f) => f,
        }
    }

    /// The flow-mod that performs it.
    pub fn flow_mod(&self) -> FlowMod {
        let f = self.flow();
        match self {
            Op::Add(_) => FlowMod {
                cookie: f.cookie(),
                ..FlowMod::add(
                    f.table(),
                    f.priority(),
                    f.match_().clone(),
                    f.instructions().to_vec(),
                )
            },
            Op::Modify(_) => FlowMod {
                command: FlowModCommand::ModifyStrict,
                cookie: f.cookie(),
                ..FlowMod::add(
                    f.table(),
                    f.priority(),
                    f.match_().clone(),
                    f.instructions().to_vec(),
                )
            },
            Op::Delete(_) => FlowMod::delete_strict(f.table(), f.priority(), f.match_().clone()),
        }
    }

    fn kind(&self) -> usize {
        match self {
            Op::Add(_) => 0,
            Op::Modify(_) => 1,
            Op::Delete(_) => 2,
        }
    }
}

/// A flow the switch refused, with its error.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The flow (its cookie names the owner).
    pub flow: Arc<Flow>,
    /// What the switch said.
    pub error: ErrorMsg,
}

/// What a completed round did.
#[derive(Debug, Clone, Default)]
pub struct RoundReport {
    /// Flows added (or replaced).
    pub adds: usize,
    /// Flows modified in place.
    pub modifies: usize,
    /// Flows deleted.
    pub deletes: usize,
    /// Flow-mods sent (applied or not).
    pub flow_mods_sent: usize,
    /// Whether the round used a bundle.
    pub bundled: bool,
    /// Flows the switch refused; quarantined until their owner changes them.
    pub rejected: Vec<Rejection>,
    /// Errors not tied to a flow (a failed bundle open or commit).
    pub other_errors: Vec<ErrorMsg>,
}

/// What to do next.
#[derive(Debug)]
pub enum Next {
    /// Nothing to change (and nothing in flight).
    Idle,
    /// Send these messages; a report follows when the barrier is answered.
    Send(Vec<OfpMessage>),
    /// A round is in flight; wait for it.
    Busy,
}

#[derive(Debug)]
struct Round {
    ops: Vec<Op>,
    /// xid of each op's flow-mod (or bundle add), in `ops` order.
    first_op_xid: u32,
    barrier_xid: u32,
    bundle: Option<BundleXids>,
    op_errors: Vec<(usize, ErrorMsg)>,
    other_errors: Vec<ErrorMsg>,
    bundle_open_failed: bool,
    bundle_commit_failed: bool,
}

#[derive(Debug, Clone, Copy)]
struct BundleXids {
    open: u32,
    commit: u32,
}

/// Fingerprints are already uniformly distributed: hashing them again would
/// only cost time.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type ByKey<V> = HashMap<Fingerprint, V, BuildHasherDefault<FingerprintHasher>>;
type KeySet = HashSet<Fingerprint, BuildHasherDefault<FingerprintHasher>>;

/// A table entry as the diff needs it: what to compare kept next to the key,
/// so that comparing two tables never leaves the hash tables' memory.
#[derive(Debug, Clone)]
struct Slot {
    cookie: u64,
    body: Fingerprint,
    flow: Arc<Flow>,
}

impl Slot {
    fn of(flow: &Arc<Flow>) -> Slot {
        Slot {
            cookie: flow.cookie(),
            body: flow.body(),
            flow: flow.clone(),
        }
    }
}

/// The reconciliation state of one switch.
#[derive(Debug)]
pub struct Reconciler {
    version: Version,
    installed: ByKey<Slot>,
    desired: Arc<FlowSet>,
    desired_index: ByKey<Slot>,
    /// Keys to re-evaluate; `None` means all of them.
    dirty: Option<KeySet>,
    /// Keys that two owners claimed at once.
    conflicted: KeySet,
    /// Flows the switch refused, as (cookie, body) by key.
    rejected: ByKey<(u64, Fingerprint)>,
    use_bundles: bool,
    next_bundle_id: u32,
    in_flight: Option<Round>,
}

impl Reconciler {
    /// A reconciler for a switch speaking `version` whose flow table holds
    /// `actual` (read with a flow statistics request).
    pub fn new(
        version: Version,
        actual: Vec<FlowStats>,
        desired: Arc<FlowSet>,
        use_bundles: bool,
    ) -> Reconciler {
        let installed = actual
            .into_iter()
            .map(|s| {
                let f = Arc::new(Flow::from_stats(s));
                (f.key(), Slot::of(&f))
            })
            .collect();
        let mut r = Reconciler {
            version,
            installed,
            desired: Arc::new(FlowSet::new()),
            desired_index: ByKey::default(),
            dirty: None,
            conflicted: KeySet::default(),
            rejected: ByKey::default(),
            use_bundles,
            next_bundle_id: 1,
            in_flight: None,
        };
        r.rebuild_desired_index(desired);
        r
    }

    /// Flows the switch is known to have.
    pub fn installed_len(&self) -> usize {
        self.installed.len()
    }

    /// Flows the switch should have.
    pub fn desired_len(&self) -> usize {
        self.desired_index.len()
    }

    /// Flows currently quarantined after the switch refused them.
    pub fn rejected_len(&self) -> usize {
        self.rejected.len()
    }

    /// Whether bundles are (still) used.
    pub fn uses_bundles(&self) -> bool {
        self.use_bundles
    }

    /// Whether the switch is known to hold exactly the desired flows
    /// (quarantined flows aside) and nothing is in flight.
    pub fn in_sync(&self) -> bool {
        self.in_flight.is_none() && self.compute_ops().is_empty()
    }

    /// Takes a newly published desired set; only the owners that changed
    /// are looked at.
    pub fn set_desired(&mut self, desired: Arc<FlowSet>) {
        if Arc::ptr_eq(&desired, &self.desired) {
            return;
        }
        let changed = self.desired.changed_owners(&desired);
        let previous = self.desired.clone();
        let mut needs_rebuild = false;
        for cookie in changed {
            for old in previous.owner(cookie) {
                let key = old.key();
                if self.conflicted.contains(&key) {
                    needs_rebuild = true;
                }
                if self
                    .desired_index
                    .get(&key)
                    .is_some_and(|slot| Arc::ptr_eq(&slot.flow, old))
                {
                    self.desired_index.remove(&key);
                }
                self.mark_dirty(key);
            }
            for new in desired.owner(cookie) {
                let key = new.key();
                if let Some(existing) = self.desired_index.get(&key)
                    && existing.cookie != cookie
                {
                    self.conflicted.insert(key);
                    needs_rebuild = true;
                }
                self.desired_index.insert(key, Slot::of(new));
                self.mark_dirty(key);
            }
        }
        if needs_rebuild {
            self.rebuild_desired_index(desired);
        } else {
            self.desired = desired;
        }
    }

    /// Rebuilds the index from scratch: when owners conflict, the lowest
    /// cookie wins, deterministically.
    fn rebuild_desired_index(&mut self, desired: Arc<FlowSet>) {
        let mut index: ByKey<Slot> = ByKey::with_capacity_and_hasher(desired.len(), Default::default());
        for (_, flows) in desired.owners() {
            for f in flows {
                match index.entry(f.key()) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        tracing::warn!(
                            table = f.table(),
                            priority = f.priority(),
                            cookie = format_args!("{:#x}", f.cookie()),
                            "two owners want the same flow; the lower cookie wins"
                        );
                        self.conflicted.insert(f.key());
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Slot::of(f));
                    }
                }
            }
        }
        self.desired_index = index;
        self.desired = desired;
        self.dirty = None;
    }

    fn mark_dirty(&mut self, key: Fingerprint) {
        if let Some(dirty) = &mut self.dirty {
            dirty.insert(key);
        }
    }

    /// Operations that would bring the switch to the desired state.
    fn compute_ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut consider = |key: &Fingerprint| {
            let desired = self.desired_index.get(key);
            let installed = self.installed.get(key);
            match (desired, installed) {
                (Some(d), _) if self.rejected.get(key) == Some(&(d.cookie, d.body)) => {}
                (Some(d), None) => ops.push(Op::Add(d.flow.clone())),
                (Some(d), Some(i)) => {
                    if d.cookie != i.cookie {
                        ops.push(Op::Add(d.flow.clone()));
                    } else if d.body != i.body {
                        tracing::debug!(desired = ?d.flow, installed = ?i.flow, "flow differs: modify");
                        ops.push(Op::Modify(d.flow.clone()));
                    }
                }
                (None, Some(i)) => ops.push(Op::Delete(i.flow.clone())),
                (None, None) => {}
            }
        };
        match &self.dirty {
            Some(keys) => keys.iter().for_each(&mut consider),
            None => {
                self.desired_index.keys().for_each(&mut consider);
                self.installed
                    .keys()
                    .filter(|k| !self.desired_index.contains_key(*k))
                    .for_each(&mut consider);
            }
        }
        // Make before break: later tables first so that a goto never points
        // at a missing flow, additions before deletions.
        ops.sort_by(|a, b| {
            let (fa, fb) = (a.flow(), b.flow());
            let a_del = matches!(a, Op::Delete(_));
            let b_del = matches!(b, Op::Delete(_));
            a_del
                .cmp(&b_del)
                .then_with(|| {
                    if a_del {
                        fa.table().cmp(&fb.table())
                    } else {
                        fb.table().cmp(&fa.table())
                    }
                })
                .then_with(|| a.kind().cmp(&b.kind()))
                .then_with(|| fb.priority().cmp(&fa.priority()))
        });
        ops
    }

    /// Starts the next round if there is something to change; `xid` hands
    /// out transaction ids.
    pub fn next(&mut self, mut xid: impl FnMut() -> u32) -> Next {
        if self.in_flight.is_some() {
            return Next::Busy;
        }
        let ops = self.compute_ops();
        self.dirty = Some(KeySet::default());
        if ops.is_empty() {
            return Next::Idle;
        }
        let v = self.version;
        let mut messages = Vec::with_capacity(ops.len() + 3);
        let bundle = if self.use_bundles {
            let id = self.next_bundle_id;
            self.next_bundle_id = self.next_bundle_id.wrapping_add(1);
            let flags = bundle_flags::ATOMIC | bundle_flags::ORDERED;
            let open = xid();
            messages.push(OfpMessage::new(
                v,
                open,
                Message::BundleControl(BundleControl::new(id, BundleCtrlType::OPEN_REQUEST, flags)),
            ));
            Some((id, flags, open))
        } else {
            None
        };
        let mut first_op_xid = 0;
        for (i, op) in ops.iter().enumerate() {
            let x = xid();
            if i == 0 {
                first_op_xid = x;
            }
            let flow_mod = OfpMessage::new(v, x, Message::FlowMod(op.flow_mod()));
            messages.push(match bundle {
                Some((id, flags, _)) => OfpMessage::new(
                    v,
                    x,
                    Message::BundleAdd(BundleAdd {
                        bundle_id: id,
                        flags,
                        message: Box::new(flow_mod),
                        properties: Vec::new(),
                    }),
                ),
                None => flow_mod,
            });
        }
        let bundle = bundle.map(|(id, flags, open)| {
            let commit = xid();
            messages.push(OfpMessage::new(
                v,
                commit,
                Message::BundleControl(BundleControl::new(id, BundleCtrlType::COMMIT_REQUEST, flags)),
            ));
            BundleXids { open, commit }
        });
        let barrier_xid = xid();
        messages.push(OfpMessage::new(v, barrier_xid, Message::BarrierRequest));
        self.in_flight = Some(Round {
            ops,
            first_op_xid,
            barrier_xid,
            bundle,
            op_errors: Vec::new(),
            other_errors: Vec::new(),
            bundle_open_failed: false,
            bundle_commit_failed: false,
        });
        Next::Send(messages)
    }

    /// Feeds a message from the switch. Returns `(consumed, report)`:
    /// whether the message belonged to the round in flight, and the report
    /// once its barrier reply has arrived.
    pub fn on_message(&mut self, msg: &OfpMessage) -> (bool, Option<RoundReport>) {
        let Some(round) = &mut self.in_flight else {
            return (false, None);
        };
        match &msg.body {
            Message::Error(e) => {
                if let Some(b) = round.bundle {
                    if msg.xid == b.open {
                        round.bundle_open_failed = true;
                        round.other_errors.push(e.clone());
                        return (true, None);
                    }
                    if msg.xid == b.commit {
                        round.bundle_commit_failed = true;
                        round.other_errors.push(e.clone());
                        return (true, None);
                    }
                }
                let offset = msg.xid.wrapping_sub(round.first_op_xid) as usize;
                if offset < round.ops.len() {
                    round.op_errors.push((offset, e.clone()));
                    return (true, None);
                }
                (false, None)
            }
            Message::BundleControl(_)
                if round
                    .bundle
                    .is_some_and(|b| msg.xid == b.open || msg.xid == b.commit) =>
            {
                (true, None)
            }
            Message::BarrierReply if msg.xid == round.barrier_xid => {
                let report = self.finish_round();
                (true, Some(report))
            }
            _ => (false, None),
        }
    }

    fn finish_round(&mut self) -> RoundReport {
        let Some(round) = self.in_flight.take() else {
            return RoundReport::default();
        };
        let mut report = RoundReport {
            flow_mods_sent: round.ops.len(),
            bundled: round.bundle.is_some(),
            other_errors: round.other_errors,
            ..RoundReport::default()
        };
        let mut failed = vec![false; round.ops.len()];
        // When the bundle could not even be opened, the errors for its
        // messages are about the bundle, not about the flows.
        let op_errors = if round.bundle_open_failed {
            Vec::new()
        } else {
            round.op_errors
        };
        for (i, error) in op_errors {
            if let Some(slot) = failed.get_mut(i) {
                *slot = true;
            }
            let flow = round.ops[i].flow().clone();
            if !matches!(round.ops[i], Op::Delete(_)) {
                self.rejected.insert(flow.key(), (flow.cookie(), flow.body()));
            }
            report.rejected.push(Rejection { flow, error });
        }
        let nothing_applied = round.bundle_open_failed || round.bundle_commit_failed;
        if round.bundle_open_failed {
            // The switch does not do bundles: plain flow-mods from now on.
            self.use_bundles = false;
        }
        if round.bundle_commit_failed && report.rejected.is_empty() {
            // A failed commit that names no culprit: find it without bundles.
            self.use_bundles = false;
        }
        for (op, failed) in round.ops.into_iter().zip(failed) {
            if failed {
                continue;
            }
            if nothing_applied {
                self.mark_dirty(op.flow().key());
                continue;
            }
            match op {
                Op::Add(f) => {
                    report.adds += 1;
                    self.installed.insert(f.key(), Slot::of(&f));
                }
                Op::Modify(f) => {
                    report.modifies += 1;
                    self.installed.insert(f.key(), Slot::of(&f));
                }
                Op::Delete(f) => {
                    report.deletes += 1;
                    self.installed.remove(&f.key());
                }
            }
        }
        // A quarantined flow whose owner has moved on is forgotten.
        let desired = &self.desired_index;
        self.rejected
            .retain(|key, rejected| desired.get(key).is_some_and(|d| (d.cookie, d.body) == *rejected));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::error_msg::ErrorCode;
    use openflow::{Action, Instruction, Masked, Match, OxmField, PortNo};

    fn flow(reg: u32, port: u32) -> Flow {
        Flow::new(
            0,
            10,
            Match::new(vec![OxmField::Reg {
                index: 0,
                value: Masked::exact(reg),
            }]),
            vec![Instruction::ApplyActions(vec![Action::output(PortNo(port))])],
        )
    }

    /// A switch that applies everything and answers barriers.
    fn run(r: &mut Reconciler, xid: &mut u32) -> Option<(Vec<OfpMessage>, RoundReport)> {
        let Next::Send(msgs) = r.next(|| {
            *xid += 1;
            *xid
        }) else {
            return None;
        };
        let barrier = msgs.last().unwrap().xid;
        let (consumed, report) =
            r.on_message(&OfpMessage::new(Version::OF13, barrier, Message::BarrierReply));
        assert!(consumed);
        Some((msgs, report.unwrap()))
    }

    fn set_of(owners: &[(u64, Vec<Flow>)]) -> Arc<FlowSet> {
        let mut s = FlowSet::new();
        for (c, flows) in owners {
            s.set_owner(*c, flows.clone());
        }
        Arc::new(s)
    }

    #[test]
    fn in_sync_switch_gets_no_flow_mods() {
        let desired = set_of(&[(1, vec![flow(1, 1), flow(2, 2)]), (2, vec![flow(3, 3)])]);
        let actual = desired.flows().map(|f| f.to_stats()).collect();
        let mut r = Reconciler::new(Version::OF13, actual, desired, true);
        assert!(r.in_sync());
        assert!(matches!(r.next(|| 1), Next::Idle));
    }

    #[test]
    fn initial_sync_adds_modifies_and_deletes() {
        let desired = set_of(&[(1, vec![flow(1, 1), flow(2, 2)])]);
        let actual = vec![
            Flow::to_stats(&flow(1, 1).with_cookie(1)), // in sync
            Flow::to_stats(&flow(2, 9).with_cookie(1)), // wrong output: modify
            Flow::to_stats(&flow(7, 7).with_cookie(5)), // not wanted: delete
        ];
        let mut r = Reconciler::new(Version::OF13, actual, desired, true);
        let mut xid = 0;
        let (msgs, report) = run(&mut r, &mut xid).unwrap();
        assert_eq!((report.adds, report.modifies, report.deletes), (0, 1, 1));
        // open + 2 adds + commit + barrier
        assert_eq!(msgs.len(), 5);
        assert!(r.in_sync());
        assert!(run(&mut r, &mut xid).is_none());
    }

    #[test]
    fn only_the_changed_owner_is_touched() {
        let desired = set_of(&[(1, vec![flow(1, 1)]), (2, vec![flow(2, 2), flow(3, 3)])]);
        let actual = desired.flows().map(|f| f.to_stats()).collect();
        let mut r = Reconciler::new(Version::OF13, actual, desired.clone(), false);
        let mut next = (*desired).clone();
        next.set_owner(2, vec![flow(2, 2), flow(4, 4)]);
        r.set_desired(Arc::new(next));
        let mut xid = 0;
        let (msgs, report) = run(&mut r, &mut xid).unwrap();
        // flow(2,2) is unchanged in content but republished: no flow-mod.
        assert_eq!((report.adds, report.modifies, report.deletes), (1, 0, 1));
        assert_eq!(msgs.len(), 3, "add + delete + barrier, no bundle");
    }

    #[test]
    fn a_rejected_flow_is_quarantined_not_retried() {
        let desired = set_of(&[(1, vec![flow(1, 1)]), (2, vec![flow(2, 2)])]);
        let mut r = Reconciler::new(Version::OF13, vec![], desired.clone(), false);
        let mut x = 0;
        let Next::Send(msgs) = r.next(|| {
            x += 1;
            x
        }) else {
            panic!()
        };
        // The switch refuses the flow of owner 2.
        let bad = msgs
            .iter()
            .find(|m| matches!(&m.body, Message::FlowMod(f) if f.cookie == 2))
            .unwrap();
        let error = ErrorMsg {
            code: ErrorCode::Standard { err_type: 2, code: 4 },
            data: vec![],
        };
        let (consumed, _) = r.on_message(&OfpMessage::new(Version::OF13, bad.xid, Message::Error(error)));
        assert!(consumed);
        let barrier = msgs.last().unwrap().xid;
        let (_, report) = r.on_message(&OfpMessage::new(Version::OF13, barrier, Message::BarrierReply));
        let report = report.unwrap();
        assert_eq!(report.adds, 1);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].flow.cookie(), 2);
        assert_eq!(r.rejected_len(), 1);
        // Nothing more to do until the owner changes the flow.
        assert!(matches!(r.next(|| 99), Next::Idle));
        let mut changed = (*desired).clone();
        changed.set_owner(2, vec![flow(2, 3)]);
        r.set_desired(Arc::new(changed));
        let mut xid = 100;
        let (_, report) = run(&mut r, &mut xid).unwrap();
        assert_eq!(report.adds, 1);
        assert_eq!(r.rejected_len(), 0);
    }

    #[test]
    fn a_failed_commit_applies_nothing_and_retries_the_rest() {
        let desired = set_of(&[(1, vec![flow(1, 1), flow(2, 2)])]);
        let mut r = Reconciler::new(Version::OF13, vec![], desired, true);
        let mut x = 0;
        let Next::Send(msgs) = r.next(|| {
            x += 1;
            x
        }) else {
            panic!()
        };
        // open, add, add, commit, barrier
        let culprit = msgs[2].xid;
        let commit = msgs[3].xid;
        let barrier = msgs[4].xid;
        let err = |name| ErrorMsg {
            code: ErrorCode::from_name(Version::OF13, name).unwrap(),
            data: vec![],
        };
        r.on_message(&OfpMessage::new(
            Version::OF13,
            culprit,
            Message::Error(err("OFPFMFC_OVERLAP")),
        ));
        r.on_message(&OfpMessage::new(
            Version::OF13,
            commit,
            Message::Error(err("OFPBFC_MSG_FAILED")),
        ));
        let (_, report) = r.on_message(&OfpMessage::new(Version::OF13, barrier, Message::BarrierReply));
        let report = report.unwrap();
        assert_eq!(report.adds, 0);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(r.installed_len(), 0);
        // The innocent flow goes in the next round.
        let mut xid = 10;
        let (_, report) = run(&mut r, &mut xid).unwrap();
        assert_eq!(report.adds, 1);
        assert!(r.in_sync());
    }

    #[test]
    fn no_bundle_support_falls_back_to_plain_flow_mods() {
        let desired = set_of(&[(1, vec![flow(1, 1)])]);
        let mut r = Reconciler::new(Version::OF13, vec![], desired, true);
        let mut x = 0;
        let Next::Send(msgs) = r.next(|| {
            x += 1;
            x
        }) else {
            panic!()
        };
        let err = ErrorMsg {
            code: ErrorCode::from_name(Version::OF13, "OFPBRC_BAD_EXPERIMENTER")
                .unwrap_or(ErrorCode::Standard { err_type: 1, code: 3 }),
            data: vec![],
        };
        r.on_message(&OfpMessage::new(Version::OF13, msgs[0].xid, Message::Error(err)));
        let (_, report) = r.on_message(&OfpMessage::new(
            Version::OF13,
            msgs.last().unwrap().xid,
            Message::BarrierReply,
        ));
        assert_eq!(report.unwrap().adds, 0);
        assert!(!r.uses_bundles());
        let mut xid = 10;
        let (msgs, report) = run(&mut r, &mut xid).unwrap();
        assert_eq!(report.adds, 1);
        assert!(matches!(msgs[0].body, Message::FlowMod(_)));
    }
}
