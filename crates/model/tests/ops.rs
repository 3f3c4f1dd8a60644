//! EC2's rules on the in-memory model, without any I/O.
#![allow(clippy::unwrap_used)]

use model::*;

fn setup() -> (State, AccountId, SeededEntropy) {
    let mut e = SeededEntropy(1);
    let mut s = State::new();
    let (account, _key) = s.create_account("alice", 0, &mut e).unwrap();
    s.add_pool(
        "203.0.113.0/29".parse().unwrap(),
        "203.0.113.1".parse().unwrap(),
        None,
        &mut e,
    )
    .unwrap();
    s.add_network(
        "10.0.0.0/24".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        None,
        &mut e,
    )
    .unwrap();
    s.add_image("debian", "", &mut e).unwrap();
    s.take_journal();
    (s, account.id, e)
}

fn launch(s: &mut State, account: &AccountId, e: &mut SeededEntropy, groups: Vec<GroupRef>) -> Instance {
    let image = s.images().next().unwrap().id.clone();
    let request = LaunchRequest {
        image_id: image,
        instance_type: "m1.small".into(),
        min_count: 1,
        max_count: 1,
        groups,
        subnet_id: None,
        private_ip: None,
        user_data: None,
        key_name: None,
        client_token: None,
        availability_zone: "z".into(),
    };
    s.run_instances(account, &request, 0, e).unwrap().remove(0)
}

#[test]
fn a_new_account_has_a_default_group_that_admits_its_members() {
    let (s, account, _) = setup();
    let default = s.tenant(&account).unwrap().group_by_name("default").unwrap();
    assert_eq!(default.ingress.len(), 1);
    assert!(
        matches!(&default.ingress[0].permission.source, Source::Group { group_id, .. } if group_id == &default.id)
    );
    assert_eq!(default.egress[0].permission, Permission::allow_all_to_anywhere());
}

#[test]
fn addresses_respect_the_quota_and_the_pool() {
    let (mut s, account, mut e) = setup();
    let a = s.allocate_address(&account, Domain::Vpc, 2, &mut e).unwrap();
    assert_eq!(
        a.public_ip.to_string(),
        "203.0.113.2",
        "the gateway .1 is skipped"
    );
    s.allocate_address(&account, Domain::Vpc, 2, &mut e).unwrap();
    assert_eq!(
        s.allocate_address(&account, Domain::Vpc, 2, &mut e).unwrap_err(),
        Ec2Error::AddressLimitExceeded
    );
    s.release_address(&account, &AddressRef::Allocation(a.allocation_id.clone()))
        .unwrap();
    let again = s.allocate_address(&account, Domain::Vpc, 2, &mut e).unwrap();
    assert_eq!(again.public_ip, a.public_ip);
}

#[test]
fn association_moves_only_when_allowed_and_vpc_release_needs_disassociation() {
    let (mut s, account, mut e) = setup();
    let one = launch(&mut s, &account, &mut e, vec![]);
    let two = launch(&mut s, &account, &mut e, vec![]);
    let a = s.allocate_address(&account, Domain::Vpc, 5, &mut e).unwrap();
    let by_id = AddressRef::Allocation(a.allocation_id.clone());
    s.associate_address(&account, &by_id, &one.id, None, false, &mut e)
        .unwrap();
    let err = s
        .associate_address(&account, &by_id, &two.id, None, false, &mut e)
        .unwrap_err();
    assert_eq!(err.code(), "Resource.AlreadyAssociated");
    s.associate_address(&account, &by_id, &two.id, None, true, &mut e)
        .unwrap();
    assert_eq!(
        s.release_address(&account, &by_id).unwrap_err().code(),
        "InvalidIPAddress.InUse"
    );
    s.disassociate_address(&account, &DisassociateRef::PublicIp(a.public_ip))
        .unwrap();
    s.release_address(&account, &by_id).unwrap();
}

#[test]
fn rules_are_unique_and_revocable() {
    let (mut s, account, mut e) = setup();
    let g = s
        .create_security_group(&account, "web", "web servers", &mut e)
        .unwrap();
    let by_name = GroupRef::Name("web".into());
    let http = Permission::new(
        Protocol::Tcp,
        Some(80),
        Some(80),
        Source::Cidr("0.0.0.0/0".parse().unwrap()),
    )
    .unwrap();
    let rule = RuleRequest {
        permission: http.clone(),
        description: None,
    };
    s.authorize(&account, &by_name, Direction::Ingress, vec![rule.clone()], &mut e)
        .unwrap();
    let dup = s
        .authorize(&account, &by_name, Direction::Ingress, vec![rule], &mut e)
        .unwrap_err();
    assert_eq!(dup.code(), "InvalidPermission.Duplicate");
    s.revoke(
        &account,
        &GroupRef::Id(g.id.clone()),
        Direction::Ingress,
        std::slice::from_ref(&http),
        &[],
    )
    .unwrap();
    let gone = s
        .revoke(&account, &by_name, Direction::Ingress, &[http], &[])
        .unwrap_err();
    assert_eq!(gone.code(), "InvalidPermission.NotFound");
    assert_eq!(
        s.create_security_group(&account, "web", "again", &mut e)
            .unwrap_err()
            .code(),
        "InvalidGroup.Duplicate"
    );
}

#[test]
fn groups_in_use_or_referenced_cannot_be_deleted() {
    let (mut s, account, mut e) = setup();
    let db = s
        .create_security_group(&account, "db", "databases", &mut e)
        .unwrap();
    let web = s.create_security_group(&account, "web", "web", &mut e).unwrap();
    let from_web = Permission::new(
        Protocol::Tcp,
        Some(5432),
        Some(5432),
        Source::Group {
            group_id: web.id.clone(),
            account_id: account.clone(),
        },
    )
    .unwrap();
    s.authorize(
        &account,
        &GroupRef::Id(db.id.clone()),
        Direction::Ingress,
        vec![RuleRequest {
            permission: from_web,
            description: None,
        }],
        &mut e,
    )
    .unwrap();
    assert_eq!(
        s.delete_security_group(&account, &GroupRef::Id(web.id.clone()))
            .unwrap_err()
            .code(),
        "DependencyViolation"
    );
    let instance = launch(&mut s, &account, &mut e, vec![GroupRef::Name("db".into())]);
    assert_eq!(instance.group_ids, vec![db.id.clone()]);
    assert_eq!(
        s.delete_security_group(&account, &GroupRef::Id(db.id.clone()))
            .unwrap_err()
            .code(),
        "DependencyViolation"
    );
    assert_eq!(
        s.delete_security_group(&account, &GroupRef::Name("default".into()))
            .unwrap_err()
            .code(),
        "CannotDelete"
    );
}

#[test]
fn other_accounts_see_nothing() {
    let (mut s, alice, mut e) = setup();
    let (bob, _) = s.create_account("bob", 0, &mut e).unwrap();
    let g = s.create_security_group(&alice, "web", "web", &mut e).unwrap();
    let a = s.allocate_address(&alice, Domain::Vpc, 5, &mut e).unwrap();
    let i = launch(&mut s, &alice, &mut e, vec![]);
    assert_eq!(
        s.resolve_group(&bob.id, &GroupRef::Id(g.id)).unwrap_err().code(),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        s.release_address(&bob.id, &AddressRef::PublicIp(a.public_ip))
            .unwrap_err()
            .code(),
        "InvalidAddress.NotFound"
    );
    assert_eq!(
        s.terminate_instances(&bob.id, &[i.id]).unwrap_err().code(),
        "InvalidInstanceID.NotFound"
    );
}

#[test]
fn rollback_restores_the_state_and_replay_reproduces_it() {
    let (mut s, account, mut e) = setup();
    let before = s.objects();
    let mark = s.journal_len();
    s.create_security_group(&account, "tmp", "tmp", &mut e).unwrap();
    s.allocate_address(&account, Domain::Standard, 5, &mut e).unwrap();
    s.rollback_to(mark);
    assert_eq!(s.objects(), before);

    let mut replica = s.clone();
    s.create_security_group(&account, "kept", "kept", &mut e).unwrap();
    launch(&mut s, &account, &mut e, vec![]);
    for change in s.take_journal() {
        replica.apply(&change);
    }
    assert_eq!(replica.objects(), s.objects());
    assert_eq!(State::from_objects(s.objects()).objects(), s.objects());
}

#[test]
fn terminating_lets_go_of_the_address_and_frees_the_private_ip_at_the_end() {
    let (mut s, account, mut e) = setup();
    let i = launch(&mut s, &account, &mut e, vec![]);
    let a = s.allocate_address(&account, Domain::Standard, 5, &mut e).unwrap();
    s.associate_address(
        &account,
        &AddressRef::PublicIp(a.public_ip),
        &i.id,
        None,
        false,
        &mut e,
    )
    .unwrap();
    let result = s
        .terminate_instances(&account, std::slice::from_ref(&i.id))
        .unwrap();
    assert_eq!(result[0].2, InstanceState::ShuttingDown);
    assert!(
        s.tenant(&account)
            .unwrap()
            .addresses
            .values()
            .all(|a| a.association.is_none())
    );
    assert!(s.private_ip_in_use(&i.subnet_id, i.private_ip));
    s.set_instance_state(&i.id, InstanceState::Terminated, 10)
        .unwrap();
    assert!(!s.private_ip_in_use(&i.subnet_id, i.private_ip));
    assert_eq!(s.purge_terminated(11), 1);
}

fn hypervisor(name: &str, zone: &str) -> Hypervisor {
    Hypervisor {
        name: name.into(),
        bridge: Some(format!("br-{name}")),
        datapath_id: None,
        uplink: "uplink".into(),
        driver: DriverKind::Netns,
        ovsdb: None,
        netns: None,
        zone: zone.into(),
    }
}

#[test]
fn instances_go_to_the_least_loaded_hypervisor_of_their_zone() {
    let (mut s, account, mut e) = setup();
    // Without hypervisors, instances are records placed nowhere.
    assert_eq!(launch(&mut s, &account, &mut e, vec![]).hypervisor, None);
    s.add_hypervisor(hypervisor("hv1", "z")).unwrap();
    s.add_hypervisor(hypervisor("hv2", "z")).unwrap();
    s.add_hypervisor(hypervisor("hv3", "other")).unwrap();
    let placed: Vec<Option<String>> = (0..4)
        .map(|_| launch(&mut s, &account, &mut e, vec![]).hypervisor)
        .collect();
    assert_eq!(
        placed,
        ["hv1", "hv2", "hv1", "hv2"].map(|h| Some(h.to_string())).to_vec(),
        "alternating between the two hypervisors of zone z, never hv3"
    );
    // One request for several instances spreads them too.
    let image = s.images().next().unwrap().id.clone();
    let request = LaunchRequest {
        image_id: image,
        instance_type: "m1.small".into(),
        min_count: 2,
        max_count: 2,
        groups: vec![],
        subnet_id: None,
        private_ip: None,
        user_data: None,
        key_name: None,
        client_token: None,
        availability_zone: "other".into(),
    };
    let both = s.run_instances(&account, &request, 0, &mut e).unwrap();
    assert!(both.iter().all(|i| i.hypervisor.as_deref() == Some("hv3")));
    // A zone without hypervisors cannot take instances once there are some.
    let mut nowhere = request.clone();
    nowhere.availability_zone = "empty".into();
    assert_eq!(
        s.run_instances(&account, &nowhere, 0, &mut e).unwrap_err().code(),
        "Unavailable"
    );
}
