//! The compiler proper: what the cloud looks like in, flows per hypervisor
//! out, incrementally.
//!
//! Flows are grouped by owner (the pipeline of a hypervisor, an instance, a
//! network on a hypervisor, a security group rule on a hypervisor, an
//! Elastic IP). A change to the model marks the owners it can affect as
//! dirty; [`Compiler::flush`] recompiles just those and reports the owners
//! whose flows actually changed. Compiling every owner from scratch gives
//! the same result (tested), so the incremental path is an optimisation,
//! never a second source of truth.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use openflow::action::{Ct, CtZone, NX_CT_RECIRC_NONE, ct_flags};
use openflow::oxm::ct_state;
use openflow::{Action, FieldId, Instruction, MacAddr, Masked, Match, OxmField, PortNo, Subfield};
use xxhash_rust::xxh3::xxh3_64;

use crate::cookie::{OwnerKey, OwnerKind, probe};
use crate::input::{
    Address, Cidr, Direction, Group, Hypervisor, Instance, Network, Peer, PublicGateway, Service,
};
use crate::ports::range_to_masks;
use crate::stage::{
    GROUP_TAGS, REG_DST_GROUPS, REG_DST_PORT, REG_SRC_GROUPS, REG_SRC_PORT, ROUTER_MAC, Stage, elastic_ip_mac,
};

/// Priorities of security group rules lie in this band, one per rule on a
/// hypervisor, so that the clause flows of different rules never collide.
const RULE_PRIORITY_BASE: u16 = 1000;
const RULE_PRIORITY_SLOTS: u16 = 29_000;

/// One flow of the compiled pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowSpec {
    /// Its stage (table).
    pub stage: Stage,
    /// Its priority.
    pub priority: u16,
    /// Its match, in canonical form.
    pub match_: Match,
    /// Its instructions.
    pub instructions: Vec<Instruction>,
}

impl FlowSpec {
    /// A flow that applies `actions` then continues at `goto`; no actions
    /// and no goto is a drop. (An empty apply-actions instruction is left
    /// out, as Open vSwitch reports it, so flows compare equal to what the
    /// switch holds.)
    pub fn new(
        stage: Stage,
        priority: u16,
        fields: Vec<OxmField>,
        actions: Vec<Action>,
        goto: Option<Stage>,
    ) -> Self {
        let mut instructions = Vec::new();
        if !actions.is_empty() {
            instructions.push(Instruction::ApplyActions(actions));
        }
        if let Some(next) = goto {
            instructions.push(Instruction::GotoTable(next.table()));
        }
        FlowSpec {
            stage,
            priority,
            match_: Match::new(fields).canonical(),
            instructions,
        }
    }
}

/// One owner's flows on one hypervisor changed (`flows` empty: the owner
/// has no flows there any more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The hypervisor's datapath id.
    pub datapath_id: u64,
    /// The owner's cookie on that hypervisor.
    pub cookie: u64,
    /// The owner.
    pub owner: OwnerKey,
    /// Its flows now (shared with the compiler's own copy).
    pub flows: Arc<[FlowSpec]>,
}

/// Everything compiled: datapath id -> cookie -> (owner, flows).
pub type Snapshot = BTreeMap<u64, BTreeMap<u64, (OwnerKey, Arc<[FlowSpec]>)>>;

/// What the compiler remembers of an owner's flows on a hypervisor: a
/// fingerprint, enough to tell whether a recompile changed anything, and
/// the flows themselves unless [`Compiler::forget_flows`] said not to.
#[derive(Debug, Clone)]
struct Compiled {
    cookie: u64,
    fingerprint: u128,
    flows: Option<Arc<[FlowSpec]>>,
}

/// A 128-bit hash of a list of flows: two lists with the same fingerprint
/// are, for every practical purpose, equal.
fn fingerprint(flows: &[FlowSpec]) -> u128 {
    use std::hash::Hash;
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    flows.hash(&mut h);
    h.digest128()
}

/// What an id was given in a hypervisor's assignment list (rule priority
/// slots, group tags; see [`HvOutput`]).
fn assigned_to(list: &[(u64, String, u16)], id: &str) -> Option<u16> {
    let hash = xxh3_64(id.as_bytes());
    list.binary_search_by(|(h, i, _)| (*h, i.as_str()).cmp(&(hash, id)))
        .ok()
        .map(|i| list[i].2)
}

/// Gives each of `ids` (with the hash of each, sorted and deduplicated) one
/// of `n` values, `base + (hash % n)` or the next free one: deterministic
/// from the set of ids alone. Ids beyond `n` get nothing.
fn assign(ids: Vec<(u64, &str)>, n: u16, base: u16) -> Vec<(u64, &str, u16)> {
    let mut used = vec![false; usize::from(n)];
    let mut assigned = Vec::with_capacity(ids.len().min(usize::from(n)));
    for (hash, id) in ids.into_iter().take(usize::from(n)) {
        let mut v = (hash % u64::from(n)) as u16;
        while used[usize::from(v)] {
            v = (v + 1) % n;
        }
        used[usize::from(v)] = true;
        assigned.push((hash, id, base + v));
    }
    assigned
}

/// The new assignment list and the ids whose value came, went or changed.
/// Both lists are sorted by (hash, id): they are walked side by side, and
/// the previous list's strings are reused.
fn reassign(
    previous: Vec<(u64, String, u16)>,
    assigned: Vec<(u64, &str, u16)>,
) -> (Vec<(u64, String, u16)>, Vec<String>) {
    use std::cmp::Ordering;
    let mut list = Vec::with_capacity(assigned.len());
    let mut moved: Vec<String> = Vec::new();
    let mut previous = previous.into_iter().peekable();
    let mut assigned = assigned.into_iter().peekable();
    loop {
        let order = match (previous.peek(), assigned.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((h, r, _)), Some((h2, r2, _))) => (*h, r.as_str()).cmp(&(*h2, *r2)),
        };
        match order {
            Ordering::Less => {
                if let Some((_, gone, _)) = previous.next() {
                    moved.push(gone);
                }
            }
            Ordering::Greater => {
                if let Some((hash, new, v)) = assigned.next() {
                    moved.push(new.to_string());
                    list.push((hash, new.to_string(), v));
                }
            }
            Ordering::Equal => {
                if let (Some((hash, id, old)), Some((_, _, v))) = (previous.next(), assigned.next()) {
                    if old != v {
                        moved.push(id.clone());
                    }
                    list.push((hash, id, v));
                }
            }
        }
    }
    (list, moved)
}

/// Whether an assignment list already says what `assigned` says.
fn same_assignment(previous: &[(u64, String, u16)], assigned: &[(u64, &str, u16)]) -> bool {
    previous.len() == assigned.len()
        && previous
            .iter()
            .zip(assigned)
            .all(|((h, r, v), (h2, r2, v2))| h == h2 && v == v2 && r == r2)
}

/// The compiled flows of one hypervisor.
#[derive(Debug, Default, Clone)]
struct HvOutput {
    owners: BTreeMap<OwnerKey, Compiled>,
    cookies: HashSet<u64>,
    /// Priority of each security group rule present on the hypervisor, as
    /// (hash of its id, id, priority) sorted by hash and id.
    slots: Vec<(u64, String, u16)>,
    /// Tag of each security group with members placed on the hypervisor
    /// (see [`GROUP_TAGS`]), as (hash of its id, id, tag) sorted likewise.
    tags: Vec<(u64, String, u16)>,
    datapath_id: u64,
}

/// The policy compiler. Feed it the model with the `upsert_*` and
/// `remove_*` methods (in any order), then [`flush`](Compiler::flush).
#[derive(Debug, Default, Clone)]
pub struct Compiler {
    hypervisors: BTreeMap<String, Hypervisor>,
    networks: BTreeMap<String, Network>,
    public_gateway: Option<PublicGateway>,
    instances: BTreeMap<String, Instance>,
    groups: BTreeMap<String, Group>,
    addresses: BTreeMap<String, Address>,
    /// Instances by security group.
    members: BTreeMap<String, BTreeSet<String>>,
    /// Hypervisors hosting members of each group, with how many members
    /// each hosts: a change to a group touches these without walking every
    /// member (which made binding N instances cost O(N^2)).
    group_hosts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Rules that name a group as their peer: source group -> (group, rule).
    referencing: BTreeMap<String, BTreeSet<(String, String)>>,
    /// The Elastic IPs associated with each instance (EC2 allows one; a
    /// second can appear transiently while changes arrive).
    address_of: BTreeMap<String, BTreeSet<String>>,
    /// The group of each rule.
    rule_group: HashMap<String, String>,
    /// Instances by the hypervisor they are placed on.
    placed: BTreeMap<String, BTreeSet<String>>,
    out: BTreeMap<String, HvOutput>,
    dirty: BTreeSet<(String, OwnerKey)>,
    dirty_slots: BTreeSet<String>,
    /// While bulk loading, nothing is marked: everything is at the end.
    loading: bool,
    /// Keep only fingerprints of compiled flows (see [`Compiler::forget_flows`]).
    forget_flows: bool,
}

impl Compiler {
    /// A compiler that knows nothing yet.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// From now on, remember only a 128-bit fingerprint of each owner's
    /// flows instead of the flows: [`flush`](Compiler::flush) still
    /// reports exactly the owners whose flows changed, and the flows live
    /// on only where the caller keeps them (the controller does). This
    /// halves what a data plane holds per flow; [`snapshot`](Compiler::snapshot)
    /// then recompiles.
    pub fn forget_flows(&mut self) {
        self.forget_flows = true;
        for out in self.out.values_mut() {
            for compiled in out.owners.values_mut() {
                compiled.flows = None;
            }
        }
    }

    fn mark(&mut self, hv: &str, kind: OwnerKind, id: &str) {
        if !self.loading {
            self.dirty.insert((hv.to_string(), OwnerKey::new(kind, id)));
        }
    }

    /// Loads a whole model at once: `load` calls the `upsert_*` methods,
    /// and instead of tracking what each one touches, every owner is
    /// recompiled at the next flush. The result is the same; only faster
    /// for a cold start.
    pub fn bulk_load(&mut self, load: impl FnOnce(&mut Compiler)) {
        self.loading = true;
        load(self);
        self.loading = false;
        self.mark_everything();
    }

    /// Marks every owner that can have flows.
    fn mark_everything(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for name in self.hypervisors.keys() {
            dirty.insert((name.clone(), OwnerKey::new(OwnerKind::Pipeline, "")));
            self.dirty_slots.insert(name.clone());
            let mut networks = BTreeSet::new();
            let mut rules = BTreeSet::new();
            for inst in self.placed_on(name) {
                dirty.insert((name.clone(), OwnerKey::new(OwnerKind::Instance, inst.id.as_str())));
                networks.insert(inst.network.as_str());
                for alloc in self.address_of.get(&inst.id).into_iter().flatten() {
                    dirty.insert((name.clone(), OwnerKey::new(OwnerKind::Address, alloc.as_str())));
                }
                for g in inst.groups.iter().filter_map(|g| self.groups.get(g)) {
                    rules.extend(g.rules.iter().map(|r| r.id.as_str()));
                }
            }
            for n in networks {
                dirty.insert((name.clone(), OwnerKey::new(OwnerKind::Network, n)));
            }
            for r in rules {
                dirty.insert((name.clone(), OwnerKey::new(OwnerKind::Rule, r)));
            }
            // Owners compiled before and possibly gone now.
            if let Some(out) = self.out.get(name) {
                dirty.extend(out.owners.keys().map(|o| (name.clone(), o.clone())));
            }
        }
        // Hypervisors removed while loading lose their flows.
        for (name, out) in &self.out {
            if !self.hypervisors.contains_key(name) {
                dirty.extend(out.owners.keys().map(|o| (name.clone(), o.clone())));
            }
        }
        self.dirty = dirty;
    }

    /// Hypervisors where members of `group` are placed.
    fn hypervisors_of_group(&self, group: &str) -> BTreeSet<String> {
        self.group_hosts
            .get(group)
            .map(|hosts| hosts.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks everything an instance's presence influences.
    fn touch_instance(&mut self, inst: &Instance) {
        if self.loading {
            return;
        }
        self.touch_instance_here(inst);
        // Its address is a peer of every rule that names one of its groups.
        let referencing: Vec<(String, String)> = inst
            .groups
            .iter()
            .flat_map(|g| self.referencing.get(g).into_iter().flatten().cloned())
            .collect();
        for (group, rule) in referencing {
            for hv in self.hypervisors_of_group(&group) {
                self.mark(&hv, OwnerKind::Rule, &rule);
            }
        }
    }

    /// Marks what an instance influences on its own hypervisor: all that a
    /// change of its port (binding) alters, since peers of group-sourced
    /// rules are members whether bound or not.
    fn touch_instance_here(&mut self, inst: &Instance) {
        if self.loading {
            return;
        }
        if let Some(hv) = inst.hypervisor.clone() {
            self.mark(&hv, OwnerKind::Instance, &inst.id);
            self.mark(&hv, OwnerKind::Network, &inst.network);
            for alloc in self.address_of.get(&inst.id).cloned().unwrap_or_default() {
                self.mark(&hv, OwnerKind::Address, &alloc);
            }
            // Its groups' rules apply to it there.
            let rules: Vec<String> = inst
                .groups
                .iter()
                .filter_map(|g| self.groups.get(g))
                .flat_map(|g| g.rules.iter().map(|r| r.id.clone()))
                .collect();
            for r in rules {
                self.mark(&hv, OwnerKind::Rule, &r);
            }
            self.dirty_slots.insert(hv);
        }
    }

    fn touch_group(&mut self, group: &Group) {
        let rules: Vec<String> = group.rules.iter().map(|r| r.id.clone()).collect();
        self.touch_rules(&group.id, &rules);
    }

    /// Marks some rules of a group on every hypervisor hosting members.
    fn touch_rules(&mut self, group: &str, rules: &[String]) {
        if self.loading {
            return;
        }
        for hv in self.hypervisors_of_group(group) {
            for r in rules {
                self.mark(&hv, OwnerKind::Rule, r);
            }
            self.dirty_slots.insert(hv);
        }
    }

    fn touch_address(&mut self, address: &Address) {
        let Some(instance) = &address.instance else {
            return;
        };
        if let Some(hv) = self.instances.get(instance).and_then(|i| i.hypervisor.clone()) {
            // Every address of the instance: which one sends is decided
            // among them.
            let mut allocations = self.address_of.get(instance).cloned().unwrap_or_default();
            allocations.insert(address.allocation_id.clone());
            for alloc in allocations {
                self.mark(&hv, OwnerKind::Address, &alloc);
            }
        }
    }

    /// Marks every owner of a hypervisor.
    fn touch_hypervisor(&mut self, name: &str) {
        self.mark(name, OwnerKind::Pipeline, "");
        let owners: Vec<OwnerKey> = self
            .out
            .get(name)
            .map(|o| o.owners.keys().cloned().collect())
            .unwrap_or_default();
        for owner in owners {
            self.dirty.insert((name.to_string(), owner));
        }
        let placed: Vec<Instance> = self.placed_on(name).cloned().collect();
        for inst in placed {
            self.touch_instance(&inst);
        }
    }

    /// Adds or changes a hypervisor.
    pub fn upsert_hypervisor(&mut self, hv: Hypervisor) {
        let name = hv.name.clone();
        if let Some(old) = self.hypervisors.get(&name)
            && old.datapath_id != hv.datapath_id
        {
            // Another bridge: the old one loses everything.
            self.remove_hypervisor(&name);
        }
        if self.hypervisors.get(&name) == Some(&hv) {
            // Nothing to recompile: the data plane re-upserts hypervisors
            // whenever a bridge reports ports.
            return;
        }
        self.hypervisors.insert(name.clone(), hv);
        self.touch_hypervisor(&name);
    }

    /// Removes a hypervisor; its flows are withdrawn at the next flush.
    pub fn remove_hypervisor(&mut self, name: &str) {
        self.hypervisors.remove(name);
        // Owners still present are withdrawn by flush, which compiles them
        // to nothing now that the hypervisor is unknown.
        self.touch_hypervisor(name);
    }

    /// Adds or changes a private network.
    pub fn upsert_network(&mut self, network: Network) {
        let id = network.id.clone();
        self.networks.insert(id.clone(), network);
        self.touch_network(&id);
    }

    /// Removes a private network.
    pub fn remove_network(&mut self, id: &str) {
        self.networks.remove(id);
        self.touch_network(id);
    }

    fn touch_network(&mut self, id: &str) {
        // Every pipeline drops routed traffic into every network.
        let all: Vec<String> = self.hypervisors.keys().cloned().collect();
        for hv in all {
            self.mark(&hv, OwnerKind::Pipeline, "");
        }
        let placed: Vec<(String, String)> = self
            .instances
            .values()
            .filter(|i| i.network == id)
            .filter_map(|i| Some((i.hypervisor.clone()?, i.id.clone())))
            .collect();
        for (hv, instance) in placed {
            self.mark(&hv, OwnerKind::Network, id);
            self.mark(&hv, OwnerKind::Instance, &instance);
        }
    }

    /// Sets (or clears) the public network's gateway.
    pub fn set_public_gateway(&mut self, gateway: Option<PublicGateway>) {
        if self.public_gateway == gateway {
            return;
        }
        self.public_gateway = gateway;
        let hvs: Vec<String> = self.hypervisors.keys().cloned().collect();
        for hv in hvs {
            self.mark(&hv, OwnerKind::Pipeline, "");
        }
        let addresses: Vec<Address> = self.addresses.values().cloned().collect();
        for a in addresses {
            self.touch_address(&a);
        }
    }

    /// Adds or changes an instance.
    pub fn upsert_instance(&mut self, inst: Instance) {
        if let Some(old) = self.instances.get(&inst.id).cloned() {
            if old == inst {
                return;
            }
            if old.port != inst.port
                && (Instance {
                    port: inst.port,
                    ..old.clone()
                }) == inst
            {
                // Bound, unbound or moved to another port: nothing changes
                // beyond its own hypervisor.
                self.touch_instance_here(&old);
                self.instances.insert(inst.id.clone(), inst.clone());
                self.touch_instance_here(&inst);
                return;
            }
            self.touch_instance(&old);
            self.unindex_instance(&old);
        }
        for g in &inst.groups {
            self.members.entry(g.clone()).or_default().insert(inst.id.clone());
            if let Some(hv) = &inst.hypervisor {
                *self
                    .group_hosts
                    .entry(g.clone())
                    .or_default()
                    .entry(hv.clone())
                    .or_default() += 1;
            }
        }
        if let Some(hv) = &inst.hypervisor {
            self.placed.entry(hv.clone()).or_default().insert(inst.id.clone());
        }
        self.instances.insert(inst.id.clone(), inst.clone());
        self.touch_instance(&inst);
    }

    /// Removes an instance (terminated).
    pub fn remove_instance(&mut self, id: &str) {
        if let Some(old) = self.instances.get(id).cloned() {
            self.touch_instance(&old);
            self.unindex_instance(&old);
            self.instances.remove(id);
        }
    }

    fn unindex_instance(&mut self, old: &Instance) {
        for g in &old.groups {
            if let Some(m) = self.members.get_mut(g) {
                m.remove(&old.id);
            }
            if let Some(hv) = &old.hypervisor
                && let Some(hosts) = self.group_hosts.get_mut(g)
                && let Some(count) = hosts.get_mut(hv)
            {
                *count -= 1;
                if *count == 0 {
                    hosts.remove(hv);
                }
                if hosts.is_empty() {
                    self.group_hosts.remove(g);
                }
            }
        }
        if let Some(hv) = &old.hypervisor
            && let Some(set) = self.placed.get_mut(hv)
        {
            set.remove(&old.id);
        }
    }

    /// Instances placed on a hypervisor.
    fn placed_on<'a>(&'a self, hv: &str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.placed
            .get(hv)
            .into_iter()
            .flatten()
            .filter_map(|i| self.instances.get(i))
    }

    /// Adds or changes a security group with all its rules.
    pub fn upsert_group(&mut self, group: Group) {
        let old = self.groups.get(&group.id).cloned();
        if let Some(old) = &old {
            if *old == group {
                return;
            }
            self.unindex_rules(old);
        }
        for r in &group.rules {
            if let Peer::Group(source) = &r.peer {
                self.referencing
                    .entry(source.clone())
                    .or_default()
                    .insert((group.id.clone(), r.id.clone()));
            }
            self.rule_group.insert(r.id.clone(), group.id.clone());
        }
        self.groups.insert(group.id.clone(), group.clone());
        match old {
            // Only the rules that came or went are recompiled (a rule is
            // never edited in place: a changed one has a new id or new
            // content, so it shows up here); rules whose priority moves as
            // a consequence are marked by `assign_slots`.
            Some(old) => {
                let changed: Vec<String> = old
                    .rules
                    .iter()
                    .filter(|r| !group.rules.contains(r))
                    .chain(group.rules.iter().filter(|r| !old.rules.contains(r)))
                    .map(|r| r.id.clone())
                    .collect();
                self.touch_rules(&group.id, &changed);
            }
            None => self.touch_group(&group),
        }
    }

    /// Removes a security group.
    pub fn remove_group(&mut self, id: &str) {
        if let Some(old) = self.groups.remove(id) {
            self.touch_group(&old);
            self.unindex_rules(&old);
        }
    }

    fn unindex_rules(&mut self, group: &Group) {
        for r in &group.rules {
            if let Peer::Group(source) = &r.peer
                && let Some(set) = self.referencing.get_mut(source)
            {
                set.remove(&(group.id.clone(), r.id.clone()));
            }
            if self.rule_group.get(&r.id) == Some(&group.id) {
                self.rule_group.remove(&r.id);
            }
        }
    }

    /// Adds or changes an Elastic IP (and its association).
    pub fn upsert_address(&mut self, address: Address) {
        if let Some(old) = self.addresses.get(&address.allocation_id).cloned() {
            if old == address {
                return;
            }
            self.touch_address(&old);
            if let Some(i) = &old.instance {
                self.unlink_address(i, &old.allocation_id);
            }
        }
        if let Some(i) = &address.instance {
            self.address_of
                .entry(i.clone())
                .or_default()
                .insert(address.allocation_id.clone());
        }
        self.addresses
            .insert(address.allocation_id.clone(), address.clone());
        self.touch_address(&address);
    }

    /// Removes an Elastic IP (released).
    pub fn remove_address(&mut self, allocation_id: &str) {
        if let Some(old) = self.addresses.remove(allocation_id) {
            self.touch_address(&old);
            if let Some(i) = &old.instance {
                self.unlink_address(i, allocation_id);
            }
        }
    }

    fn unlink_address(&mut self, instance: &str, allocation_id: &str) {
        if let Some(set) = self.address_of.get_mut(instance) {
            set.remove(allocation_id);
            if set.is_empty() {
                self.address_of.remove(instance);
            }
        }
    }

    /// Hypervisors currently hosting an Elastic IP's instance (for
    /// gratuitous ARP when an address moves).
    pub fn address_location(&self, allocation_id: &str) -> Option<(u64, u32, Ipv4Addr)> {
        let a = self.addresses.get(allocation_id)?;
        let inst = self.instances.get(a.instance.as_ref()?)?;
        inst.port?;
        let hv = self.hypervisors.get(inst.hypervisor.as_ref()?)?;
        Some((hv.datapath_id, hv.uplink_port, a.public_ip))
    }

    /// Recompiles every dirty owner and returns the owners whose flows
    /// changed, sorted by datapath and cookie.
    pub fn flush(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        self.flush_each(|u| updates.push(u));
        updates.sort_by_key(|u| (u.datapath_id, u.cookie));
        updates
    }

    /// Like [`flush`](Compiler::flush), but hands each update to `each` as
    /// soon as it is compiled (by hypervisor name and owner, not sorted):
    /// a caller that turns updates into something else as they come never
    /// holds the whole cloud's flows twice (a cold start compiles them all).
    pub fn flush_each(&mut self, mut each: impl FnMut(Update)) {
        for hv in std::mem::take(&mut self.dirty_slots) {
            self.assign_slots(&hv);
        }
        for (hv_name, owner) in std::mem::take(&mut self.dirty) {
            let (flows, datapath_id) = match self.hypervisors.get(&hv_name) {
                Some(hv) => (self.compile_owner(hv, &owner), Some(hv.datapath_id)),
                None => (Vec::new(), None),
            };
            let out = match self.out.get_mut(&hv_name) {
                Some(out) => out,
                None => self.out.entry(hv_name).or_default(),
            };
            if let Some(dpid) = datapath_id {
                out.datapath_id = dpid;
            }
            let fingerprint = fingerprint(&flows);
            let previous = out.owners.get(&owner);
            if previous.is_some_and(|c| c.fingerprint == fingerprint)
                || (previous.is_none() && flows.is_empty())
            {
                continue;
            }
            let cookie = match previous {
                Some(c) => c.cookie,
                None => {
                    let mut c = owner.preferred_cookie();
                    while out.cookies.contains(&c) {
                        c = probe(c);
                    }
                    c
                }
            };
            let flows: Arc<[FlowSpec]> = flows.into();
            if flows.is_empty() {
                out.owners.remove(&owner);
                out.cookies.remove(&cookie);
            } else {
                out.owners.insert(
                    owner.clone(),
                    Compiled {
                        cookie,
                        fingerprint,
                        flows: (!self.forget_flows).then(|| flows.clone()),
                    },
                );
                out.cookies.insert(cookie);
            }
            each(Update {
                datapath_id: out.datapath_id,
                cookie,
                owner,
                flows,
            });
        }
        self.out
            .retain(|name, o| self.hypervisors.contains_key(name) || !o.owners.is_empty());
    }

    /// Every compiled owner of every hypervisor: datapath id -> cookie ->
    /// (owner, flows), as last reported by [`flush`](Compiler::flush)
    /// (recompiled from the model after [`forget_flows`](Compiler::forget_flows)).
    pub fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        for (name, o) in &self.out {
            let per: &mut BTreeMap<u64, (OwnerKey, Arc<[FlowSpec]>)> = out.entry(o.datapath_id).or_default();
            for (owner, compiled) in &o.owners {
                let flows = match (&compiled.flows, self.hypervisors.get(name)) {
                    (Some(flows), _) => flows.clone(),
                    (None, Some(hv)) => self.compile_owner(hv, owner).into(),
                    (None, None) => Arc::from(Vec::new()),
                };
                per.insert(compiled.cookie, (owner.clone(), flows));
            }
        }
        out
    }

    /// The owner of a cookie on a datapath.
    pub fn owner_of(&self, datapath_id: u64, cookie: u64) -> Option<OwnerKey> {
        self.out
            .values()
            .find(|o| o.datapath_id == datapath_id)?
            .owners
            .iter()
            .find(|(_, c)| c.cookie == cookie)
            .map(|(o, _)| o.clone())
    }

    /// Gives each rule present on a hypervisor a priority of its own,
    /// deterministically from the set of rules there; rules whose priority
    /// moved are recompiled.
    /// Gives each rule present on a hypervisor a priority of its own and
    /// each group present there a tag, deterministically from the sets of
    /// rules and groups there; what moved is recompiled: rules whose
    /// priority or group tag moved, and members whose group tag moved.
    fn assign_slots(&mut self, hv: &str) {
        // Ids in the order of their hashes: deterministic from the sets
        // alone, and cheap to sort and compare (this runs for every
        // hypervisor a change touches, all of them for a rule of a group
        // everyone is in, and mostly finds nothing moved).
        let mut rules: Vec<(u64, &str)> = Vec::new();
        let mut groups: Vec<(u64, &str)> = Vec::new();
        for inst in self
            .placed
            .get(hv)
            .into_iter()
            .flatten()
            .filter_map(|i| self.instances.get(i))
        {
            for g in inst.groups.iter().filter_map(|g| self.groups.get(g)) {
                groups.push((xxh3_64(g.id.as_bytes()), g.id.as_str()));
                rules.extend(g.rules.iter().map(|r| (xxh3_64(r.id.as_bytes()), r.id.as_str())));
            }
        }
        for ids in [&mut rules, &mut groups] {
            ids.sort_unstable();
            ids.dedup();
        }
        let slots = assign(rules, RULE_PRIORITY_SLOTS, RULE_PRIORITY_BASE);
        let tags = assign(groups, GROUP_TAGS, 0);
        let out = self.out.entry(hv.to_string()).or_default();
        let mut moved_rules = Vec::new();
        let mut moved_groups = Vec::new();
        if !same_assignment(&out.slots, &slots) {
            let (list, moved) = reassign(std::mem::take(&mut out.slots), slots);
            out.slots = list;
            moved_rules = moved;
        }
        if !same_assignment(&out.tags, &tags) {
            let (list, moved) = reassign(std::mem::take(&mut out.tags), tags);
            out.tags = list;
            moved_groups = moved;
        }
        for r in moved_rules {
            self.mark(hv, OwnerKind::Rule, &r);
        }
        for g in moved_groups {
            // Its rules match the tag, its members' flows set it.
            let rules: Vec<String> = self
                .groups
                .get(&g)
                .map(|g| g.rules.iter().map(|r| r.id.clone()).collect())
                .unwrap_or_default();
            for r in rules {
                self.mark(hv, OwnerKind::Rule, &r);
            }
            let members: Vec<(String, Vec<String>)> = self
                .placed
                .get(hv)
                .into_iter()
                .flatten()
                .filter_map(|i| self.instances.get(i))
                .filter(|i| i.groups.contains(&g))
                .map(|i| {
                    let addresses = self
                        .address_of
                        .get(&i.id)
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect();
                    (i.id.clone(), addresses)
                })
                .collect();
            for (inst, addresses) in members {
                self.mark(hv, OwnerKind::Instance, &inst);
                for a in addresses {
                    self.mark(hv, OwnerKind::Address, &a);
                }
            }
        }
    }

    /// `SetField` actions loading an instance's group tags on a hypervisor
    /// into the four registers from `first` (none for a register it has no
    /// tag in, which stays zero).
    fn tag_actions(&self, hv: &Hypervisor, inst: &Instance, first: u8) -> Vec<Action> {
        let Some(tags) = self.out.get(&hv.name).map(|o| &o.tags) else {
            return Vec::new();
        };
        let mut words = [0u32; 4];
        for tag in inst.groups.iter().filter_map(|g| assigned_to(tags, g)) {
            words[usize::from(tag / 32)] |= 1 << (tag % 32);
        }
        words
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0)
            .map(|(k, w)| {
                Action::SetField(OxmField::Reg {
                    index: first + k as u8,
                    value: Masked::exact(*w),
                })
            })
            .collect()
    }

    fn compile_owner(&self, hv: &Hypervisor, owner: &OwnerKey) -> Vec<FlowSpec> {
        match owner.kind {
            OwnerKind::Pipeline => self.pipeline_flows(hv),
            OwnerKind::Instance => self.instance_flows(hv, &owner.id),
            OwnerKind::Network => self.network_flows(hv, &owner.id),
            OwnerKind::Address => self.address_flows(hv, &owner.id),
            OwnerKind::Rule => self.rule_flows(hv, &owner.id),
        }
    }

    /// The instance, if it is bound to a port of this hypervisor.
    fn bound_here<'a>(&'a self, hv: &Hypervisor, id: &str) -> Option<(&'a Instance, u32)> {
        let inst = self.instances.get(id)?;
        if inst.hypervisor.as_deref() != Some(hv.name.as_str()) {
            return None;
        }
        Some((inst, inst.port?))
    }

    fn pipeline_flows(&self, hv: &Hypervisor) -> Vec<FlowSpec> {
        use Stage::*;
        let mut flows: Vec<FlowSpec> = Stage::ALL
            .into_iter()
            .filter(|s| *s != Deliver)
            .map(|s| FlowSpec::new(s, 0, vec![], vec![], None))
            .collect();
        let uplink = PortNo(hv.uplink_port);
        flows.push(FlowSpec::new(
            Classify,
            100,
            vec![OxmField::InPort(uplink)],
            vec![],
            Some(FromUplink),
        ));
        // From the physical network: unicast to local instances.
        flows.push(FlowSpec::new(FromUplink, 50, vec![ip()], vec![], Some(Deliver)));
        flows.push(FlowSpec::new(
            FromUplink,
            100,
            vec![arp(), OxmField::ArpOp(2)],
            vec![],
            Some(Deliver),
        ));
        if let Some(gw) = self.public_gateway {
            // The public gateway's ARP replies feed the controller's resolver.
            flows.push(FlowSpec::new(
                FromUplink,
                300,
                vec![arp(), OxmField::ArpOp(2), OxmField::ArpSpa(Masked::exact(gw.ip))],
                vec![Action::Output {
                    port: PortNo::CONTROLLER,
                    max_len: openflow::action::OFPCML_NO_BUFFER,
                }],
                None,
            ));
        }
        // ARP replies from instances are unicast: deliver them.
        flows.push(FlowSpec::new(
            ArpFromInstance,
            100,
            vec![arp(), OxmField::ArpOp(2)],
            vec![],
            Some(Deliver),
        ));
        for (ct_table, rules, commit, after, zone) in [
            (EgressConntrack, EgressRules, EgressCommit, Route, REG_SRC_PORT),
            (
                IngressConntrack,
                IngressRules,
                IngressCommit,
                Output,
                REG_DST_PORT,
            ),
        ] {
            let zone = CtZone::Field(Subfield::bits(zone, 0, 16));
            flows.push(FlowSpec::new(
                ct_table,
                100,
                vec![ip()],
                vec![Action::Ct(Ct {
                    flags: 0,
                    zone,
                    recirc_table: rules.table(),
                    alg: 0,
                    actions: vec![],
                })],
                None,
            ));
            let trk = ct_state::TRK;
            let state = |bits: u32, mask: u32| OxmField::CtState(Masked::new(bits | trk, mask | trk));
            flows.push(FlowSpec::new(
                rules,
                65535,
                vec![state(ct_state::INV, ct_state::INV)],
                vec![],
                None,
            ));
            // Replies and related packets of tracked connections pass; every
            // packet in the original direction is checked against the rules,
            // so revoking a rule also stops established connections.
            flows.push(FlowSpec::new(
                rules,
                65534,
                vec![state(ct_state::RPL, ct_state::RPL)],
                vec![],
                Some(after),
            ));
            flows.push(FlowSpec::new(
                rules,
                65533,
                vec![state(ct_state::REL, ct_state::REL)],
                vec![],
                Some(after),
            ));
            // An established connection is in the zone already: committing
            // it again would cost a conntrack execution per packet.
            flows.push(FlowSpec::new(
                commit,
                110,
                vec![state(ct_state::EST, ct_state::EST)],
                vec![],
                Some(after),
            ));
            flows.push(FlowSpec::new(
                commit,
                100,
                vec![ip()],
                vec![Action::Ct(Ct {
                    flags: ct_flags::COMMIT,
                    zone,
                    recirc_table: NX_CT_RECIRC_NONE,
                    alg: 0,
                    actions: vec![],
                })],
                Some(after),
            ));
        }
        // Traffic for the router with no Elastic IP to leave with is dropped,
        // and the router never routes into a private network: those drops
        // are on every hypervisor, whatever instances it hosts. (Traffic
        // within a network is delivered at L2 by the network's own flows;
        // anything else is dropped by the table's default.)
        flows.push(FlowSpec::new(Route, 100, vec![eth_dst(ROUTER_MAC)], vec![], None));
        for net in self.networks.values() {
            flows.push(FlowSpec::new(
                Route,
                250,
                vec![eth_dst(ROUTER_MAC), ip(), OxmField::Ipv4Dst(cidr_match(net.cidr))],
                vec![],
                None,
            ));
        }
        // Broadcast and multicast beyond ARP go nowhere.
        let group_bit = MacAddr([1, 0, 0, 0, 0, 0]);
        flows.push(FlowSpec::new(
            Deliver,
            10,
            vec![OxmField::EthDst(Masked::new(group_bit, group_bit))],
            vec![],
            None,
        ));
        // Unknown destinations: from an instance to the physical network,
        // from the physical network nowhere.
        flows.push(FlowSpec::new(
            Deliver,
            1,
            vec![reg(REG_SRC_PORT, 0)],
            vec![],
            None,
        ));
        flows.push(FlowSpec::new(
            Deliver,
            0,
            vec![],
            vec![Action::output(uplink)],
            None,
        ));
        flows
    }

    fn instance_flows(&self, hv: &Hypervisor, id: &str) -> Vec<FlowSpec> {
        use Stage::*;
        let Some((inst, port)) = self.bound_here(hv, id) else {
            return Vec::new();
        };
        let Some(network) = self.networks.get(&inst.network) else {
            return Vec::new();
        };
        let (mac, ip_addr) = (inst.mac, inst.ip);
        let mut source = vec![set_reg(REG_SRC_PORT, port)];
        source.extend(self.tag_actions(hv, inst, REG_SRC_GROUPS));
        let mut destination = vec![set_reg(REG_DST_PORT, port)];
        destination.extend(self.tag_actions(hv, inst, REG_DST_GROUPS));
        vec![
            FlowSpec::new(
                Classify,
                100,
                vec![OxmField::InPort(PortNo(port))],
                source,
                Some(PortSecurity),
            ),
            // Only its own MAC and IP, in ARP as in IP.
            FlowSpec::new(
                PortSecurity,
                100,
                vec![
                    reg(REG_SRC_PORT, port),
                    eth_src(mac),
                    arp(),
                    OxmField::ArpSpa(Masked::exact(ip_addr)),
                    OxmField::ArpSha(Masked::exact(mac)),
                ],
                vec![],
                Some(ArpFromInstance),
            ),
            FlowSpec::new(
                PortSecurity,
                100,
                vec![
                    reg(REG_SRC_PORT, port),
                    eth_src(mac),
                    ip(),
                    OxmField::Ipv4Src(Masked::exact(ip_addr)),
                ],
                vec![],
                Some(EgressConntrack),
            ),
            FlowSpec::new(
                Deliver,
                100,
                vec![eth_dst(mac), arp()],
                vec![Action::output(PortNo(port))],
                None,
            ),
            // IP only for its own address and from its own network: nothing
            // from outside (or another network) reaches a private address.
            FlowSpec::new(
                Deliver,
                100,
                vec![
                    eth_dst(mac),
                    ip(),
                    OxmField::Ipv4Dst(Masked::exact(ip_addr)),
                    OxmField::Ipv4Src(cidr_match(network.cidr)),
                ],
                destination,
                Some(IngressConntrack),
            ),
            FlowSpec::new(
                Output,
                100,
                vec![reg(REG_DST_PORT, port)],
                vec![Action::output(PortNo(port))],
                None,
            ),
        ]
    }

    fn network_flows(&self, hv: &Hypervisor, id: &str) -> Vec<FlowSpec> {
        use Stage::*;
        let Some(net) = self.networks.get(id) else {
            return Vec::new();
        };
        let mut ports: Vec<u32> = self
            .placed_on(&hv.name)
            .filter(|i| i.network == id)
            .filter_map(|i| i.port)
            .collect();
        if ports.is_empty() {
            return Vec::new();
        }
        ports.sort_unstable();
        let spa = OxmField::ArpSpa(cidr_match(net.cidr));
        let mut flood: Vec<Action> = ports.iter().map(|p| Action::output(PortNo(*p))).collect();
        let local_only = flood.clone();
        flood.push(Action::output(PortNo(hv.uplink_port)));
        vec![
            // The private gateway is the virtual router, answered here.
            FlowSpec::new(
                ArpFromInstance,
                300,
                vec![
                    arp(),
                    OxmField::ArpOp(1),
                    spa.clone(),
                    OxmField::ArpTpa(Masked::exact(net.gateway)),
                ],
                arp_responder(ROUTER_MAC, net.gateway),
                None,
            ),
            // Other ARP requests reach the network's instances here and on
            // the other hypervisors.
            FlowSpec::new(
                ArpFromInstance,
                200,
                vec![arp(), OxmField::ArpOp(1), spa],
                flood,
                None,
            ),
            FlowSpec::new(
                FromUplink,
                200,
                vec![arp(), OxmField::ArpOp(1), OxmField::ArpTpa(cidr_match(net.cidr))],
                local_only,
                None,
            ),
            // Within the network, traffic goes at L2: on to delivery.
            FlowSpec::new(
                Route,
                10,
                vec![
                    ip(),
                    OxmField::Ipv4Src(cidr_match(net.cidr)),
                    OxmField::Ipv4Dst(cidr_match(net.cidr)),
                ],
                vec![],
                Some(Deliver),
            ),
        ]
    }

    fn address_flows(&self, hv: &Hypervisor, allocation_id: &str) -> Vec<FlowSpec> {
        use Stage::*;
        let Some(address) = self.addresses.get(allocation_id) else {
            return Vec::new();
        };
        let Some((inst, port)) = address.instance.as_deref().and_then(|i| self.bound_here(hv, i)) else {
            return Vec::new();
        };
        let public = address.public_ip;
        let public_mac = elastic_ip_mac(public);
        let mut flows = vec![
            // Only the hypervisor hosting the instance answers for its
            // public address.
            FlowSpec::new(
                FromUplink,
                300,
                vec![arp(), OxmField::ArpOp(1), OxmField::ArpTpa(Masked::exact(public))],
                arp_responder(public_mac, public),
                None,
            ),
            // Inbound: rewritten 1:1 to the instance, then its ingress rules.
            FlowSpec::new(
                FromUplink,
                100,
                // Only frames addressed to the address's own MAC: a flooded
                // copy meant for someone else is not ours to rewrite.
                vec![
                    eth_dst(public_mac),
                    ip(),
                    OxmField::Ipv4Dst(Masked::exact(public)),
                ],
                [
                    Action::DecNwTtl,
                    Action::SetField(OxmField::Ipv4Dst(Masked::exact(inst.ip))),
                    Action::SetField(OxmField::EthSrc(Masked::exact(ROUTER_MAC))),
                    Action::SetField(OxmField::EthDst(Masked::exact(inst.mac))),
                    set_reg(REG_DST_PORT, port),
                ]
                .into_iter()
                .chain(self.tag_actions(hv, inst, REG_DST_GROUPS))
                .collect(),
                Some(IngressConntrack),
            ),
        ];
        // Outbound through the router: rewritten to the public address and
        // sent to the public gateway, once its MAC is known. Should an
        // instance have two addresses, the first one sends.
        let sends = self
            .address_of
            .get(&inst.id)
            .and_then(|a| a.iter().next())
            .is_some_and(|first| first == allocation_id);
        if let Some(gateway_mac) = self.public_gateway.and_then(|g| g.mac).filter(|_| sends) {
            flows.push(FlowSpec::new(
                Route,
                200,
                vec![reg(REG_SRC_PORT, port), eth_dst(ROUTER_MAC), ip()],
                vec![
                    Action::DecNwTtl,
                    Action::SetField(OxmField::Ipv4Src(Masked::exact(public))),
                    Action::SetField(OxmField::EthSrc(Masked::exact(public_mac))),
                    Action::SetField(OxmField::EthDst(Masked::exact(gateway_mac))),
                    Action::output(PortNo(hv.uplink_port)),
                ],
                None,
            ));
        }
        flows
    }

    fn rule_flows(&self, hv: &Hypervisor, rule_id: &str) -> Vec<FlowSpec> {
        let Some(slot) = self
            .out
            .get(&hv.name)
            .and_then(|o| assigned_to(&o.slots, rule_id))
        else {
            return Vec::new();
        };
        let Some((group, rule)) = self
            .rule_group
            .get(rule_id)
            .and_then(|g| self.groups.get(g))
            .and_then(|g| g.rules.iter().find(|r| r.id == rule_id).map(|r| (g, r)))
        else {
            return Vec::new();
        };
        let (table, commit, target_reg, tag_regs) = match rule.direction {
            Direction::Ingress => (
                Stage::IngressRules,
                Stage::IngressCommit,
                REG_DST_PORT,
                REG_DST_GROUPS,
            ),
            Direction::Egress => (
                Stage::EgressRules,
                Stage::EgressCommit,
                REG_SRC_PORT,
                REG_SRC_GROUPS,
            ),
        };
        // Who the rule protects here: members bound to this hypervisor,
        // found from whichever is smaller, the group or the hypervisor (a
        // group everyone is in would otherwise cost every member on every
        // hypervisor).
        let members = self.members.get(&group.id);
        let placed = self.placed.get(&hv.name);
        let candidates: Box<dyn Iterator<Item = &String>> = match (members, placed) {
            (Some(members), Some(placed)) if placed.len() < members.len() => {
                Box::new(placed.iter().filter(|i| members.contains(*i)))
            }
            (Some(members), _) => Box::new(members.iter()),
            (None, _) => Box::new(std::iter::empty()),
        };
        let mut targets: Vec<u32> = candidates
            .filter_map(|i| self.bound_here(hv, i).map(|(_, p)| p))
            .collect();
        targets.sort_unstable();
        targets.dedup();
        // Whom it allows.
        let peers: Vec<Cidr> = match &rule.peer {
            Peer::Cidr(c) => vec![*c],
            Peer::Group(source) => {
                let mut ips: Vec<Cidr> = self
                    .members
                    .get(source)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| self.instances.get(i))
                    .map(|i| Cidr::host(i.ip))
                    .collect();
                ips.sort();
                ips.dedup();
                ips
            }
        };
        if targets.is_empty() || peers.is_empty() {
            return Vec::new();
        }
        let peer_field = |c: &Cidr| match rule.direction {
            Direction::Ingress => OxmField::Ipv4Src(cidr_match(*c)),
            Direction::Egress => OxmField::Ipv4Dst(cidr_match(*c)),
        };
        // Fields every flow of the rule carries, and the dimensions along
        // which it varies.
        let mut common = vec![ip()];
        let mut dimensions: Vec<Vec<OxmField>> = Vec::new();
        // Whom it protects: its group's tag, which the members' own flows
        // set (one field, whatever the number of members), or else, for a
        // group beyond the tags, each member's port.
        match self
            .out
            .get(&hv.name)
            .and_then(|o| assigned_to(&o.tags, &group.id))
        {
            Some(tag) => {
                let bit = 1u32 << (tag % 32);
                common.push(OxmField::Reg {
                    index: tag_regs + (tag / 32) as u8,
                    value: Masked::new(bit, bit),
                });
            }
            None => dimensions.push(targets.iter().map(|p| reg(target_reg, *p)).collect()),
        }
        if !peers.iter().any(Cidr::is_any) {
            dimensions.push(peers.iter().map(peer_field).collect());
        }
        match rule.service {
            Service::All => {}
            Service::Tcp { from, to } | Service::Udp { from, to } => {
                let tcp = matches!(rule.service, Service::Tcp { .. });
                common.push(OxmField::IpProto(if tcp { 6 } else { 17 }));
                if (from, to) != (0, 65535) {
                    dimensions.push(
                        range_to_masks(from, to)
                            .into_iter()
                            .map(|(v, m)| {
                                let value = if m == 0xffff {
                                    Masked::exact(v)
                                } else {
                                    Masked::new(v, m)
                                };
                                if tcp {
                                    OxmField::TcpDst(value)
                                } else {
                                    OxmField::UdpDst(value)
                                }
                            })
                            .collect(),
                    );
                }
            }
            Service::Icmp { icmp_type, code } => {
                common.push(OxmField::IpProto(1));
                common.extend(icmp_type.map(OxmField::Icmpv4Type));
                common.extend(code.map(OxmField::Icmpv4Code));
            }
            Service::Protocol(n) => common.push(OxmField::IpProto(n)),
        }
        // A dimension of one value is just another common field.
        let (single, clauses): (Vec<_>, Vec<_>) = dimensions.into_iter().partition(|d| d.len() == 1);
        common.extend(single.into_iter().flatten());
        let with = |extra: &OxmField| {
            let mut fields = common.clone();
            fields.push(extra.clone());
            fields
        };
        match clauses.len() {
            0 => vec![FlowSpec::new(table, slot, common.clone(), vec![], Some(commit))],
            1 => clauses[0]
                .iter()
                .map(|f| FlowSpec::new(table, slot, with(f), vec![], Some(commit)))
                .collect(),
            n => {
                // N sources x M ports cost N + M flows, not N * M.
                let id = u32::from(slot);
                let mut flows: Vec<FlowSpec> = clauses
                    .iter()
                    .enumerate()
                    .flat_map(|(k, clause)| clause.iter().map(move |f| (k, f)))
                    .map(|(k, f)| {
                        FlowSpec::new(
                            table,
                            slot,
                            with(f),
                            vec![Action::Conjunction {
                                id,
                                clause: k as u8,
                                n_clauses: n as u8,
                            }],
                            None,
                        )
                    })
                    .collect();
                flows.push(FlowSpec::new(
                    table,
                    slot,
                    vec![OxmField::ConjId(id)],
                    vec![],
                    Some(commit),
                ));
                flows
            }
        }
    }
}

fn ip() -> OxmField {
    OxmField::EthType(0x0800)
}

fn arp() -> OxmField {
    OxmField::EthType(0x0806)
}

fn eth_src(mac: MacAddr) -> OxmField {
    OxmField::EthSrc(Masked::exact(mac))
}

fn eth_dst(mac: MacAddr) -> OxmField {
    OxmField::EthDst(Masked::exact(mac))
}

fn reg(field: FieldId, value: u32) -> OxmField {
    match field {
        FieldId::Reg(index) => OxmField::Reg {
            index,
            value: Masked::exact(value),
        },
        _ => unreachable!("registers only"),
    }
}

fn set_reg(field: FieldId, value: u32) -> Action {
    Action::SetField(reg(field, value))
}

fn cidr_match(c: Cidr) -> Masked<Ipv4Addr> {
    if c.prefix == 32 {
        Masked::exact(c.addr)
    } else {
        Masked::new(c.addr, c.mask())
    }
}

/// Turns an ARP request into the reply for `ip` at `mac`, sent back out of
/// the port it came in on.
fn arp_responder(mac: MacAddr, ip: Ipv4Addr) -> Vec<Action> {
    let mv = |src: FieldId, dst: FieldId| Action::RegMove {
        n_bits: (src.byte_len() * 8) as u16,
        src_ofs: 0,
        dst_ofs: 0,
        src: src.header(),
        dst: dst.header(),
    };
    vec![
        mv(FieldId::EthSrc, FieldId::EthDst),
        Action::SetField(OxmField::EthSrc(Masked::exact(mac))),
        Action::SetField(OxmField::ArpOp(2)),
        mv(FieldId::ArpSha, FieldId::ArpTha),
        Action::SetField(OxmField::ArpSha(Masked::exact(mac))),
        mv(FieldId::ArpSpa, FieldId::ArpTpa),
        Action::SetField(OxmField::ArpSpa(Masked::exact(ip))),
        Action::output(PortNo::IN_PORT),
    ]
}
