//! Property tests: arbitrary sequences of EC2 and admin operations keep the
//! model's invariants (unique public and private addresses and MACs,
//! references that resolve, quotas), a refused operation changes nothing,
//! the journal replayed elsewhere reproduces the state, and the state
//! rebuilt from its objects equals it (indexes are consistent).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use model::*;
use proptest::prelude::*;

const QUOTA: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Allocate(usize, bool),
    Release(usize, usize, bool),
    Associate(usize, usize, usize, bool),
    Disassociate(usize, usize),
    CreateGroup(usize, usize),
    DeleteGroup(usize, usize),
    Authorize(usize, usize, u8, i32, Option<usize>),
    Revoke(usize, usize, usize),
    Run(usize, u32, Vec<usize>),
    Terminate(usize, usize),
    Finish(usize, usize),
    SetGroups(usize, usize, Vec<usize>),
    Tag(usize, usize, usize),
    Untag(usize, usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..2usize;
    let i = 0..6usize;
    prop_oneof![
        (a.clone(), any::<bool>()).prop_map(|(a, v)| Op::Allocate(a, v)),
        (a.clone(), i.clone(), any::<bool>()).prop_map(|(a, x, by_ip)| Op::Release(a, x, by_ip)),
        (a.clone(), i.clone(), i.clone(), any::<bool>()).prop_map(|(a, x, y, r)| Op::Associate(a, x, y, r)),
        (a.clone(), i.clone()).prop_map(|(a, x)| Op::Disassociate(a, x)),
        (a.clone(), 0..4usize).prop_map(|(a, n)| Op::CreateGroup(a, n)),
        (a.clone(), i.clone()).prop_map(|(a, x)| Op::DeleteGroup(a, x)),
        (
            a.clone(),
            i.clone(),
            0..4u8,
            0..3i32,
            proptest::option::of(i.clone())
        )
            .prop_map(|(a, g, p, port, src)| Op::Authorize(a, g, p, port, src)),
        (a.clone(), i.clone(), i.clone()).prop_map(|(a, g, r)| Op::Revoke(a, g, r)),
        (a.clone(), 1..4u32, proptest::collection::vec(i.clone(), 0..3))
            .prop_map(|(a, n, g)| Op::Run(a, n, g)),
        (a.clone(), i.clone()).prop_map(|(a, x)| Op::Terminate(a, x)),
        (a.clone(), i.clone()).prop_map(|(a, x)| Op::Finish(a, x)),
        (a.clone(), i.clone(), proptest::collection::vec(i.clone(), 0..3))
            .prop_map(|(a, x, g)| Op::SetGroups(a, x, g)),
        (a.clone(), i.clone(), 0..3usize).prop_map(|(a, x, k)| Op::Tag(a, x, k)),
        (a, i).prop_map(|(a, x)| Op::Untag(a, x)),
        Just(Op::Purge),
    ]
}

struct World {
    state: State,
    accounts: Vec<AccountId>,
    entropy: SeededEntropy,
}

fn world() -> World {
    let mut entropy = SeededEntropy(7);
    let mut state = State::new();
    let accounts = ["a", "b"]
        .iter()
        .map(|n| state.create_account(n, 0, &mut entropy).unwrap().0.id)
        .collect();
    // A small pool and network so that exhaustion happens too.
    state
        .add_pool(
            "198.51.100.0/29".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            None,
            &mut entropy,
        )
        .unwrap();
    state
        .add_network(
            "10.1.0.0/29".parse().unwrap(),
            "10.1.0.1".parse().unwrap(),
            None,
            &mut entropy,
        )
        .unwrap();
    state.add_image("img", "", &mut entropy).unwrap();
    state.take_journal();
    World {
        state,
        accounts,
        entropy,
    }
}

fn nth<T: Clone>(items: Vec<T>, n: usize) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[n % items.len()].clone())
    }
}

impl World {
    fn groups(&self, a: &AccountId) -> Vec<GroupId> {
        self.state.tenant(a).unwrap().groups.keys().cloned().collect()
    }
    fn addresses(&self, a: &AccountId) -> Vec<Address> {
        self.state
            .tenant(a)
            .unwrap()
            .addresses
            .values()
            .cloned()
            .collect()
    }
    fn instances(&self, a: &AccountId) -> Vec<InstanceId> {
        self.state.tenant(a).unwrap().instances.keys().cloned().collect()
    }

    /// Applies one operation; returns whether it succeeded.
    fn apply(&mut self, op: &Op) -> bool {
        let missing_group = GroupId::parse("sg-00000000").unwrap();
        let missing_instance = InstanceId::parse("i-00000000").unwrap();
        match op.clone() {
            Op::Allocate(a, vpc) => {
                let a = self.accounts[a].clone();
                let domain = if vpc { Domain::Vpc } else { Domain::Standard };
                self.state
                    .allocate_address(&a, domain, QUOTA, &mut self.entropy)
                    .is_ok()
            }
            Op::Release(a, x, by_ip) => {
                let a = self.accounts[a].clone();
                let Some(addr) = nth(self.addresses(&a), x) else {
                    return false;
                };
                let r = if by_ip {
                    AddressRef::PublicIp(addr.public_ip)
                } else {
                    AddressRef::Allocation(addr.allocation_id)
                };
                self.state.release_address(&a, &r).is_ok()
            }
            Op::Associate(a, x, y, allow) => {
                let a = self.accounts[a].clone();
                let Some(addr) = nth(self.addresses(&a), x) else {
                    return false;
                };
                let inst = nth(self.instances(&a), y).unwrap_or(missing_instance);
                let r = AddressRef::Allocation(addr.allocation_id);
                self.state
                    .associate_address(&a, &r, &inst, None, allow, &mut self.entropy)
                    .is_ok()
            }
            Op::Disassociate(a, x) => {
                let a = self.accounts[a].clone();
                let Some(addr) = nth(self.addresses(&a), x) else {
                    return false;
                };
                self.state
                    .disassociate_address(&a, &DisassociateRef::PublicIp(addr.public_ip))
                    .is_ok()
            }
            Op::CreateGroup(a, n) => {
                let a = self.accounts[a].clone();
                self.state
                    .create_security_group(&a, &format!("g{n}"), "group", &mut self.entropy)
                    .is_ok()
            }
            Op::DeleteGroup(a, x) => {
                let a = self.accounts[a].clone();
                let g = nth(self.groups(&a), x).unwrap_or(missing_group);
                self.state.delete_security_group(&a, &GroupRef::Id(g)).is_ok()
            }
            Op::Authorize(a, x, p, port, src) => {
                let a = self.accounts[a].clone();
                let g = nth(self.groups(&a), x).unwrap_or(missing_group);
                let source = match src {
                    // Sometimes another account's group: must be refused.
                    Some(s) => {
                        let owner = self.accounts[s % 2].clone();
                        let Some(group_id) = nth(self.groups(&owner), s) else {
                            return false;
                        };
                        Source::Group {
                            group_id,
                            account_id: owner,
                        }
                    }
                    None => Source::Cidr(format!("10.{port}.0.0/16").parse().unwrap()),
                };
                let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::All][p as usize];
                let Ok(permission) = Permission::new(protocol, Some(port), Some(port), source) else {
                    return false;
                };
                let request = RuleRequest {
                    permission,
                    description: None,
                };
                self.state
                    .authorize(
                        &a,
                        &GroupRef::Id(g),
                        Direction::Ingress,
                        vec![request],
                        &mut self.entropy,
                    )
                    .is_ok()
            }
            Op::Revoke(a, x, r) => {
                let a = self.accounts[a].clone();
                let Some(g) = nth(self.groups(&a), x) else {
                    return false;
                };
                let rules = self.state.tenant(&a).unwrap().groups[&g].ingress.clone();
                let Some(rule) = nth(rules, r) else { return false };
                self.state
                    .revoke(&a, &GroupRef::Id(g), Direction::Ingress, &[], &[rule.id])
                    .is_ok()
            }
            Op::Run(a, n, groups) => {
                let a = self.accounts[a].clone();
                let own = self.groups(&a);
                let groups = groups
                    .iter()
                    .filter_map(|g| nth(own.clone(), *g))
                    .map(GroupRef::Id)
                    .collect();
                let request = LaunchRequest {
                    image_id: self.state.images().next().unwrap().id.clone(),
                    instance_type: "m1.small".into(),
                    min_count: 1,
                    max_count: n,
                    groups,
                    subnet_id: None,
                    private_ip: None,
                    user_data: None,
                    key_name: None,
                    client_token: None,
                    availability_zone: "z".into(),
                };
                self.state
                    .run_instances(&a, &request, 0, &mut self.entropy)
                    .is_ok()
            }
            Op::Terminate(a, x) => {
                let a = self.accounts[a].clone();
                let i = nth(self.instances(&a), x).unwrap_or(missing_instance);
                self.state.terminate_instances(&a, &[i]).is_ok()
            }
            Op::Finish(a, x) => {
                let a = self.accounts[a].clone();
                let Some(i) = nth(self.instances(&a), x) else {
                    return false;
                };
                let next = match self.state.resolve_instance(&a, &i).unwrap().state {
                    InstanceState::Pending => InstanceState::Running,
                    InstanceState::ShuttingDown => InstanceState::Terminated,
                    _ => return false,
                };
                self.state.set_instance_state(&i, next, 1).is_ok()
            }
            Op::SetGroups(a, x, groups) => {
                let a = self.accounts[a].clone();
                let Some(i) = nth(self.instances(&a), x) else {
                    return false;
                };
                let own = self.groups(&a);
                let ids: Vec<GroupId> = groups.iter().filter_map(|g| nth(own.clone(), *g)).collect();
                self.state.set_instance_groups(&a, &i, &ids).is_ok()
            }
            Op::Tag(a, x, k) => {
                let a = self.accounts[a].clone();
                let Some(i) = nth(self.instances(&a), x) else {
                    return false;
                };
                self.state
                    .create_tags(&a, &[i.to_string()], &[(format!("k{k}"), "v".into())])
                    .is_ok()
            }
            Op::Untag(a, x) => {
                let a = self.accounts[a].clone();
                let Some(i) = nth(self.instances(&a), x) else {
                    return false;
                };
                self.state.delete_tags(&a, &[i.to_string()], &[]).is_ok()
            }
            Op::Purge => {
                self.state.purge_terminated(2);
                true
            }
        }
    }

    fn check_invariants(&self) {
        let s = &self.state;
        let mut public = HashSet::new();
        let mut private = HashSet::new();
        let mut macs = HashSet::new();
        for t in s.tenants() {
            assert!(t.addresses.len() <= QUOTA, "quota");
            for addr in t.addresses.values() {
                assert!(public.insert(addr.public_ip), "public IP held twice");
                if let Some(assoc) = &addr.association {
                    let inst = &t.instances[&assoc.instance_id];
                    assert!(
                        matches!(inst.state, InstanceState::Pending | InstanceState::Running),
                        "associated with a dead instance"
                    );
                    assert_eq!(assoc.private_ip, inst.private_ip);
                }
            }
            let bound: Vec<_> = t
                .addresses
                .values()
                .filter_map(|a| a.association.as_ref())
                .map(|x| &x.instance_id)
                .collect();
            assert_eq!(
                bound.len(),
                bound.iter().collect::<HashSet<_>>().len(),
                "an instance holds two addresses"
            );
            for inst in t.instances.values().filter(|i| i.state.is_live()) {
                assert!(
                    private.insert((inst.subnet_id.clone(), inst.private_ip)),
                    "private IP held twice"
                );
                assert!(macs.insert(inst.mac), "MAC held twice");
                assert!(!inst.group_ids.is_empty());
                for g in &inst.group_ids {
                    assert!(t.groups.contains_key(g), "instance in a missing group");
                }
            }
            assert!(t.group_by_name("default").is_some(), "default group lost");
            for g in t.groups.values() {
                for rule in g.ingress.iter().chain(&g.egress) {
                    if let Source::Group { group_id, account_id } = &rule.permission.source {
                        assert_eq!(account_id, &t.account.id, "a rule refers to another account");
                        assert!(
                            t.groups.contains_key(group_id),
                            "a rule refers to a missing group"
                        );
                    }
                }
            }
            for resource in t.tags.keys() {
                assert_eq!(
                    s.resource_owner(resource),
                    Some(&t.account.id),
                    "tags of a missing resource"
                );
            }
        }
        let rebuilt = State::from_objects(s.objects());
        assert_eq!(
            rebuilt.objects(),
            s.objects(),
            "state rebuilt from its objects differs"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = world();
        let mut replica = w.state.clone();
        for op in &ops {
            let before = w.state.objects();
            let ok = w.apply(op);
            let journal = w.state.take_journal();
            if !ok {
                prop_assert!(journal.is_empty(), "{op:?} failed but journaled changes");
                prop_assert_eq!(&w.state.objects(), &before, "{:?} failed but changed the state", op);
            }
            for change in &journal {
                replica.apply(change);
            }
            w.check_invariants();
        }
        prop_assert_eq!(replica.objects(), w.state.objects());
    }
}
