//! Emulated switches driven end to end over TCP by an in-process fake
//! controller written with the codec: handshake, features, ports, echo,
//! flow-mods, bundles (including atomic failure), multi-part flow stats,
//! deletes by cookie, barrier ordering, roles, errors, port status, fault
//! injection and reconnection.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Controller, WAIT};
use openflow::bundle::bundle_flags;
use openflow::flow::flow_mod_flags;
use openflow::message::{ControllerRole, Experimenter, Role, SwitchConfig};
use openflow::multipart::{MultipartReplyBody, MultipartRequestBody};
use openflow::port::port_reason;
use openflow::{
    Action, BundleControl, BundleCtrlType, FlowMod, FlowModCommand, FlowStatsRequest, Instruction, Masked,
    Match, Message, MultipartRequest, NX_VENDOR_ID, OfpMessage, OxmField, PortNo, Version,
};
use switch_emulator::{CookieRejection, Emulator, EmulatorConfig, Faults, SwitchView};

const V13: &[Version] = &[Version::OF13];

fn reg0(v: u32) -> OxmField {
    OxmField::Reg {
        index: 0,
        value: Masked::exact(v),
    }
}

fn flow(table: u8, priority: u16, cookie: u64, fields: Vec<OxmField>, actions: Vec<Action>) -> FlowMod {
    FlowMod {
        cookie,
        ..FlowMod::add(
            table,
            priority,
            Match::new(fields),
            vec![Instruction::ApplyActions(actions)],
        )
    }
}

fn config(ctl: &Controller, switches: usize) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(ctl.target(), switches);
    c.ports_per_switch = 4;
    c.backoff.initial = Duration::from_millis(20);
    c.backoff.max = Duration::from_millis(200);
    c
}

fn error_names(version: Version, errors: &[openflow::ErrorMsg]) -> Vec<String> {
    errors.iter().map(|e| e.code.describe(version)).collect()
}

#[tokio::test]
async fn fifty_switches_handshake_and_describe_themselves() {
    let ctl = Controller::bind().await;
    let mut cfg = config(&ctl, 50);
    // Connections wait unread while the others are described: no echo
    // probe may time them out on a slow machine.
    cfg.session.echo_interval = None;
    let emulator = Emulator::start(cfg).unwrap();
    let mut dpids = BTreeSet::new();
    for _ in 0..50 {
        let mut c = ctl.accept(V13).await;
        assert_eq!(c.version, Version::OF13);
        let features = c.features().await;
        assert_eq!(features.n_tables, 254);
        assert!(dpids.insert(features.datapath_id), "datapath ids are distinct");
        let switch = emulator
            .switch(features.datapath_id)
            .expect("the API knows the switch");

        let (MultipartReplyBody::PortDesc(ports), _) = c.multipart(MultipartRequestBody::PortDesc).await
        else {
            panic!("no port descriptions")
        };
        let names: Vec<(PortNo, String)> = ports.iter().map(|p| (p.port_no, p.name.clone())).collect();
        let mut expected: Vec<(PortNo, String)> = (1..=4).map(|n| (PortNo(n), format!("vm{n}"))).collect();
        expected.push((PortNo::LOCAL, switch.name()));
        assert_eq!(names, expected);
        assert!(ports.iter().all(|p| p.is_up()));

        let xid = c.send(Message::EchoRequest(b"ping".to_vec())).await;
        assert_eq!(
            c.recv_where(|m| m.xid == xid).await.body,
            Message::EchoReply(b"ping".to_vec())
        );

        let config = SwitchConfig {
            flags: 0,
            miss_send_len: 200,
        };
        assert!(c.transact(Message::SetConfig(config)).await.is_empty());
        let xid = c.send(Message::GetConfigRequest).await;
        assert_eq!(
            c.recv_where(|m| m.xid == xid).await.body,
            Message::GetConfigReply(config)
        );

        let (MultipartReplyBody::Desc(desc), _) = c.multipart(MultipartRequestBody::Desc).await else {
            panic!("no description")
        };
        assert_eq!(desc.dp_desc, switch.name());
        let (MultipartReplyBody::PortStats(stats), _) = c
            .multipart(MultipartRequestBody::PortStats { port_no: PortNo::ANY })
            .await
        else {
            panic!("no port stats")
        };
        assert_eq!(stats.len(), 5);
        // Keep the connection open for the connected count below.
        std::mem::forget(c);
    }
    let expected: BTreeSet<u64> = emulator.datapath_ids().into_iter().collect();
    assert_eq!(dpids, expected);
    emulator.wait_connected(50, WAIT).await.unwrap();
    let counters = emulator.counters();
    assert_eq!(
        (counters.switches, counters.connected, counters.connects),
        (50, 50, 50)
    );
    emulator.stop().await;
}

#[tokio::test]
async fn flow_mods_and_bundles_read_back_over_several_replies_and_delete_by_cookie() {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 1)).unwrap();
    let mut c = ctl.accept(V13).await;
    let dpid = c.features().await.datapath_id;
    let switch = emulator.switch(dpid).unwrap();

    // Plain flow-mods.
    for i in 0..20u32 {
        let fm = flow(
            0,
            100,
            0x100 + u64::from(i),
            vec![reg0(i)],
            vec![Action::resubmit_table(1)],
        );
        c.send(Message::FlowMod(fm)).await;
    }
    assert!(c.barrier().await.is_empty(), "no errors");
    // A bundle of 2,000 flows: more than one 64 KiB reply holds.
    let bundled: Vec<FlowMod> = (0..2000u32)
        .map(|i| {
            flow(
                1,
                10,
                0x2000_0000 + u64::from(i),
                vec![
                    OxmField::EthType(0x0800),
                    OxmField::Ipv4Src(Masked::exact(i.into())),
                ],
                vec![Action::output(PortNo(2))],
            )
        })
        .collect();
    let outcome = c.bundle(7, bundle_flags::ATOMIC, bundled).await;
    assert!(
        outcome.errors(c.version).is_empty(),
        "{:?}",
        outcome.errors(c.version)
    );
    assert_eq!(
        outcome.replies(),
        vec![
            (outcome.open, BundleCtrlType::OPEN_REPLY),
            (outcome.commit, BundleCtrlType::COMMIT_REPLY)
        ]
    );

    let (flows, parts) = c.dump_flows_where(FlowStatsRequest::all()).await;
    assert_eq!(flows.len(), 2020);
    assert!(parts >= 3, "2,020 flows need several replies, got {parts}");
    assert_eq!(switch.flow_count(), 2020);
    assert_eq!(switch.flows().len(), 2020);
    let f = flows.iter().find(|f| f.cookie == 0x2000_0005).unwrap();
    assert_eq!((f.table_id, f.priority), (1, 10));
    assert_eq!(
        f.match_.fields,
        vec![
            OxmField::EthType(0x0800),
            OxmField::Ipv4Src(Masked::exact(5u32.into()))
        ]
    );
    assert_eq!(
        f.instructions,
        vec![Instruction::ApplyActions(vec![Action::output(PortNo(2))])]
    );

    // One table only, and a cookie filter.
    let (table0, _) = c
        .dump_flows_where(FlowStatsRequest {
            table_id: 0,
            ..FlowStatsRequest::all()
        })
        .await;
    assert_eq!(table0.len(), 20);
    let (some, _) = c
        .dump_flows_where(FlowStatsRequest {
            cookie: 0x2000_0100,
            cookie_mask: 0xffff_ff00,
            ..FlowStatsRequest::all()
        })
        .await;
    assert_eq!(some.len(), 256);
    let (MultipartReplyBody::Aggregate(agg), _) = c
        .multipart(MultipartRequestBody::Aggregate(FlowStatsRequest::all()))
        .await
    else {
        panic!("no aggregate")
    };
    assert_eq!(agg.flow_count, 2020);

    // Delete everything the bundle installed, by cookie under a mask.
    let by_cookie = FlowMod {
        cookie: 0x2000_0000,
        cookie_mask: 0xffff_0000,
        ..FlowMod::delete_all()
    };
    assert!(c.transact(Message::FlowMod(by_cookie)).await.is_empty());
    assert_eq!(switch.flow_count(), 20);
    let left = c.dump_flows().await;
    assert!(left.iter().all(|f| f.cookie >> 8 == 1));

    // Modify strict keeps the cookie and changes the instructions.
    let strict = FlowMod {
        command: FlowModCommand::ModifyStrict,
        ..flow(0, 100, 0, vec![reg0(3)], vec![Action::output(PortNo(4))])
    };
    assert!(c.transact(Message::FlowMod(strict)).await.is_empty());
    let f = switch.flows().into_iter().find(|f| f.cookie == 0x103).unwrap();
    assert_eq!(
        f.instructions,
        vec![Instruction::ApplyActions(vec![Action::output(PortNo(4))])]
    );

    let counters = switch.counters();
    assert_eq!(counters.flow_mods.add, 2020);
    assert_eq!(
        (counters.flow_mods.delete, counters.flow_mods.modify_strict),
        (1, 1)
    );
    assert_eq!(counters.bundles_committed, 1);
    emulator.stop().await;
}

async fn bundles_are_atomic(version: Version) {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 1)).unwrap();
    let mut c = ctl.accept(&[version]).await;
    assert_eq!(c.version, version);
    let switch = emulator.switch(c.features().await.datapath_id).unwrap();

    let good: Vec<FlowMod> = (0..3)
        .map(|i| flow(0, 10, i, vec![reg0(i as u32)], vec![]))
        .collect();
    let outcome = c.bundle(1, bundle_flags::ATOMIC, good).await;
    assert!(outcome.errors(version).is_empty());
    assert_eq!(switch.flow_count(), 3);

    // Refused when added (goto_table backwards): an error for that add,
    // and the commit of the rest succeeds.
    let bad = FlowMod {
        cookie: 98,
        ..FlowMod::add(5, 1, Match::default(), vec![Instruction::GotoTable(1)])
    };
    let outcome = c.bundle(2, bundle_flags::ATOMIC, vec![bad]).await;
    assert_eq!(
        outcome.errors(version),
        vec![(outcome.add_xids[0], "OFPBIC_BAD_TABLE_ID".to_string())]
    );
    assert!(
        outcome
            .replies()
            .contains(&(outcome.commit, BundleCtrlType::COMMIT_REPLY))
    );

    // Refused when applied (check_overlap): the flow-mod's error, then
    // OFPBFC_MSG_FAILED for the commit, and nothing of the bundle applied.
    let mut mixed: Vec<FlowMod> = (10..12)
        .map(|i| flow(0, 10, i, vec![reg0(i as u32)], vec![]))
        .collect();
    mixed.push(FlowMod {
        flags: flow_mod_flags::CHECK_OVERLAP,
        ..flow(
            0,
            10,
            99,
            vec![OxmField::Reg {
                index: 0,
                value: Masked::new(0, 1),
            }],
            vec![],
        )
    });
    let outcome = c.bundle(3, bundle_flags::ATOMIC, mixed).await;
    assert_eq!(
        outcome.errors(version),
        vec![
            (outcome.add_xids[2], "OFPFMFC_OVERLAP".to_string()),
            (outcome.commit, "OFPBFC_MSG_FAILED".to_string())
        ]
    );
    assert!(
        !outcome
            .replies()
            .contains(&(outcome.commit, BundleCtrlType::COMMIT_REPLY))
    );
    assert_eq!(switch.flow_count(), 3, "nothing of the failed bundle is applied");

    // The cookie fault fails a commit the same way, with the chosen error;
    // deletes earlier in the bundle are undone too.
    switch.set_faults(Faults {
        reject_cookie: Some(CookieRejection::new(0xbad0, 0xfff0, "OFPFMFC_EPERM").unwrap()),
        ..Faults::default()
    });
    let mut batch = vec![FlowMod::delete_all()];
    batch.extend((20..25).map(|i| flow(0, 10, i, vec![reg0(i as u32)], vec![])));
    batch.push(flow(0, 10, 0xbad3, vec![reg0(99)], vec![]));
    let outcome = c.bundle(4, bundle_flags::ATOMIC, batch).await;
    assert_eq!(
        outcome.errors(version),
        vec![
            (outcome.add_xids[6], "OFPFMFC_EPERM".to_string()),
            (outcome.commit, "OFPBFC_MSG_FAILED".to_string())
        ]
    );
    let cookies: BTreeSet<u64> = switch.flows().iter().map(|f| f.cookie).collect();
    assert_eq!(cookies, BTreeSet::from([0, 1, 2]));
    // Without the fault the same flows go in.
    switch.set_faults(Faults::default());
    let outcome = c
        .bundle(
            5,
            bundle_flags::ATOMIC,
            vec![flow(0, 10, 0xbad3, vec![reg0(99)], vec![])],
        )
        .await;
    assert!(outcome.errors(version).is_empty());

    // Committing a bundle that was never opened; discarding one.
    let missing = c
        .transact(Message::BundleControl(BundleControl::new(
            77,
            BundleCtrlType::COMMIT_REQUEST,
            0,
        )))
        .await;
    assert_eq!(error_names(version, &missing), vec!["OFPBFC_BAD_ID"]);
    let open = c
        .send(Message::BundleControl(BundleControl::new(
            8,
            BundleCtrlType::OPEN_REQUEST,
            0,
        )))
        .await;
    let discard = c
        .send(Message::BundleControl(BundleControl::new(
            8,
            BundleCtrlType::DISCARD_REQUEST,
            0,
        )))
        .await;
    let replies: Vec<(u32, Message)> = c.barrier().await.into_iter().map(|m| (m.xid, m.body)).collect();
    assert_eq!(
        replies,
        vec![
            (
                open,
                Message::BundleControl(BundleControl::new(8, BundleCtrlType::OPEN_REPLY, 0))
            ),
            (
                discard,
                Message::BundleControl(BundleControl::new(8, BundleCtrlType::DISCARD_REPLY, 0))
            ),
        ]
    );
    let counters = switch.counters();
    assert_eq!((counters.bundles_committed, counters.bundles_failed), (3, 2));
    emulator.stop().await;
}

#[tokio::test]
async fn bundles_are_atomic_in_openflow_1_3() {
    bundles_are_atomic(Version::OF13).await;
}

#[tokio::test]
async fn bundles_are_atomic_in_openflow_1_4() {
    bundles_are_atomic(Version::OF14).await;
}

#[tokio::test]
async fn barrier_replies_follow_everything_before_them() {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 1)).unwrap();
    let mut c = ctl.accept(V13).await;
    let switch = emulator.switch(c.features().await.datapath_id).unwrap();

    // 500 flow-mods, one of them refused, then a barrier: when its reply
    // arrives every flow-mod has been applied and the error came first.
    let mut bad_xid = 0;
    for i in 0..500u32 {
        let fm = if i == 250 {
            FlowMod::add(255, 1, Match::default(), vec![])
        } else {
            flow(0, 1, u64::from(i), vec![reg0(i)], vec![])
        };
        let xid = c.send(Message::FlowMod(fm)).await;
        if i == 250 {
            bad_xid = xid;
        }
    }
    let before = c.barrier().await;
    assert_eq!(switch.flow_count(), 499);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].xid, bad_xid);
    assert!(
        matches!(&before[0].body, Message::Error(e) if e.code.describe(Version::OF13) == "OFPFMFC_BAD_TABLE_ID")
    );

    // A late barrier delays its reply, and what follows waits behind it.
    switch.set_faults(Faults {
        barrier_delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    });
    let started = Instant::now();
    let barrier = c.send(Message::BarrierRequest).await;
    let echo = c.send(Message::EchoRequest(vec![1])).await;
    let first = c.recv().await;
    let second = c.recv().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((first.xid, first.body), (barrier, Message::BarrierReply));
    assert_eq!(second.xid, echo);
    assert_eq!(switch.counters().barriers, 2);
    emulator.stop().await;
}

#[tokio::test]
async fn switches_reconnect_and_keep_their_flows() {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 3)).unwrap();
    emulator.wait_connected(0, WAIT).await.unwrap();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(ctl.accept(V13).await);
    }
    emulator.wait_connected(3, WAIT).await.unwrap();
    let mut c = conns.remove(0);
    let dpid = c.features().await.datapath_id;
    let switch = emulator.switch(dpid).unwrap();
    c.send(Message::FlowMod(flow(0, 5, 0x55, vec![reg0(5)], vec![])))
        .await;
    assert!(c.barrier().await.is_empty());

    // The controller closes the connection: the switch comes back, flows
    // intact.
    drop(c);
    let mut c = ctl.accept(V13).await;
    assert_eq!(c.features().await.datapath_id, dpid);
    let flows = c.dump_flows().await;
    assert_eq!(flows.iter().map(|f| f.cookie).collect::<Vec<_>>(), vec![0x55]);
    emulator
        .wait_until(WAIT, |_| switch.counters().connects == 2)
        .await
        .unwrap();

    // The API can drop a switch's connection too.
    emulator.disconnect(dpid);
    assert!(
        c.read_message().await.is_none(),
        "the switch closed the connection"
    );
    let mut c = ctl.accept(V13).await;
    assert_eq!(c.features().await.datapath_id, dpid);

    // Offline switches stay away until back online.
    switch.set_online(false);
    assert!(c.read_message().await.is_none());
    emulator
        .wait_until(WAIT, |e| e.connected() == 2)
        .await
        .expect("one switch fewer");
    switch.set_online(true);
    let mut c = ctl.accept(V13).await;
    assert_eq!(c.features().await.datapath_id, dpid);

    // Fault: the connection drops after 5 messages (HELLO included), once.
    switch.set_faults(Faults {
        drop_after_messages: Some(5),
        drop_times: Some(1),
        ..Faults::default()
    });
    drop(c);
    let mut c = ctl.accept(V13).await;
    for _ in 0..3 {
        c.send(Message::EchoRequest(vec![])).await;
    }
    let mut replies = 0;
    while let Some(m) = c.read_message().await {
        assert_eq!(m.body, Message::EchoReply(vec![]));
        replies += 1;
        if replies == 3 {
            c.send(Message::EchoRequest(vec![])).await;
        }
    }
    assert_eq!(
        replies, 4,
        "the fifth message is answered, then the connection drops"
    );
    let mut c = ctl.accept(V13).await;
    for _ in 0..10 {
        c.send(Message::EchoRequest(vec![])).await;
    }
    assert!(c.barrier().await.len() == 10, "dropped only once");
    emulator.stop().await;
}

#[tokio::test]
async fn the_switch_probes_an_idle_controller_and_gives_up_on_a_silent_one() {
    let ctl = Controller::bind().await;
    let mut cfg = config(&ctl, 1);
    // Long enough that a stalled test runtime does not miss a probe.
    cfg.session.echo_interval = Some(Duration::from_secs(1));
    let emulator = Emulator::start(cfg).unwrap();
    let mut c = ctl.accept(V13).await;
    c.auto_echo = false;
    let probe = c.recv().await;
    assert!(matches!(probe.body, Message::EchoRequest(_)), "{probe:?}");
    // Answering keeps the connection; silence ends it.
    c.send_msg(&OfpMessage::new(
        Version::OF13,
        probe.xid,
        Message::EchoReply(vec![]),
    ))
    .await;
    let probe = c.recv().await;
    assert!(matches!(probe.body, Message::EchoRequest(_)));
    assert!(c.read_message().await.is_none(), "silent controller dropped");
    let _again = ctl.accept(V13).await;
    let counters = emulator.stop().await;
    assert!(counters.echo_probes >= 2);
}

#[tokio::test]
async fn roles_follow_generation_ids() {
    let ctl = Controller::bind().await;
    let mut cfg = config(&ctl, 1);
    cfg.controllers.push(cfg.controllers[0].clone());
    let emulator = Emulator::start(cfg).unwrap();
    let mut a = ctl.accept(V13).await;
    let mut b = ctl.accept(V13).await;
    emulator
        .wait_until(WAIT, |e| e.counters().connects == 2)
        .await
        .unwrap();

    let role = |role, generation_id| Message::RoleRequest(Role { role, generation_id });
    let xid = a.send(role(ControllerRole::MASTER, 10)).await;
    assert_eq!(
        a.recv_where(|m| m.xid == xid).await.body,
        Message::RoleReply(Role {
            role: ControllerRole::MASTER,
            generation_id: 10
        })
    );
    let stale = b.transact(role(ControllerRole::MASTER, 9)).await;
    assert_eq!(error_names(Version::OF13, &stale), vec!["OFPRRFC_STALE"]);
    // A newer master demotes the old one.
    let xid = b.send(role(ControllerRole::MASTER, 11)).await;
    assert!(matches!(
        b.recv_where(|m| m.xid == xid).await.body,
        Message::RoleReply(_)
    ));
    let xid = a.send(role(ControllerRole::NOCHANGE, 0)).await;
    assert_eq!(
        a.recv_where(|m| m.xid == xid).await.body,
        Message::RoleReply(Role {
            role: ControllerRole::SLAVE,
            generation_id: 11
        })
    );
    let refused = a.transact(Message::FlowMod(flow(0, 1, 0, vec![], vec![]))).await;
    assert_eq!(error_names(Version::OF13, &refused), vec!["OFPBRC_IS_SECONDARY"]);
    assert!(
        b.transact(Message::FlowMod(flow(0, 1, 0, vec![], vec![])))
            .await
            .is_empty()
    );
    emulator.stop().await;
}

#[tokio::test]
async fn unsupported_requests_get_the_errors_open_vswitch_sends() {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 1)).unwrap();
    let mut c = ctl.accept(V13).await;
    let cases: Vec<(&str, Message)> = vec![
        (
            "OFPBRC_BAD_TYPE",
            Message::Unknown {
                msg_type: 99,
                body: vec![],
            },
        ),
        (
            "OFPBRC_BAD_STAT",
            Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Unknown {
                mp_type: 0x1234,
                body: vec![],
            })),
        ),
        (
            "OFPBRC_BAD_SUBTYPE",
            Message::Experimenter(Experimenter {
                experimenter: NX_VENDOR_ID,
                exp_type: 9999,
                data: vec![],
            }),
        ),
        (
            "OFPBRC_BAD_VENDOR",
            Message::Experimenter(Experimenter {
                experimenter: 0x00ab_cdef,
                exp_type: 1,
                data: vec![],
            }),
        ),
        (
            "OFPBMC_BAD_PREREQ",
            Message::FlowMod(flow(0, 1, 0, vec![OxmField::TcpDst(Masked::exact(80))], vec![])),
        ),
        (
            "OFPBAC_BAD_OUT_PORT",
            Message::FlowMod(flow(0, 1, 0, vec![], vec![Action::output(PortNo(0xffff_ff01))])),
        ),
        ("OFPBRC_BAD_TYPE", Message::BarrierReply),
    ];
    for (want, msg) in cases {
        let bytes = OfpMessage::new(Version::OF13, 0, msg.clone()).to_bytes().unwrap();
        let xid = c.send(msg).await;
        let errors = c.errors_for(xid).await;
        assert_eq!(error_names(Version::OF13, &errors), vec![want]);
        // The data is the request's first 64 bytes (its xid patched in).
        let data = &errors[0].data;
        assert_eq!(data.len(), bytes.len().min(64));
        assert_eq!(errors[0].offending_header().unwrap().xid, xid);
    }
    // Accepted without a reply, as Open vSwitch does.
    let set_controller_id = Message::Experimenter(Experimenter {
        experimenter: NX_VENDOR_ID,
        exp_type: 20,
        data: vec![0; 8],
    });
    assert!(c.transact(set_controller_id).await.is_empty());
    assert!(
        c.transact(Message::PacketOut(openflow::PacketOut {
            buffer_id: openflow::OFP_NO_BUFFER,
            in_port: PortNo::CONTROLLER,
            actions: vec![Action::output(PortNo(1))],
            data: vec![0; 60],
        }))
        .await
        .is_empty()
    );
    let counters = emulator.stop().await;
    assert_eq!(counters.packet_outs, 1);
    assert_eq!(counters.errors_sent, 7);
}

#[tokio::test]
async fn ports_come_and_go_and_flows_report_their_removal() {
    let ctl = Controller::bind().await;
    let emulator = Emulator::start(config(&ctl, 1)).unwrap();
    let mut c = ctl.accept(V13).await;
    let switch: SwitchView = emulator.switch(c.features().await.datapath_id).unwrap();

    let port = switch.add_port("tap-i-1234");
    assert_eq!(port, PortNo(5));
    let Message::PortStatus(added) = c
        .recv_where(|m| matches!(m.body, Message::PortStatus(_)))
        .await
        .body
    else {
        unreachable!()
    };
    assert_eq!(
        (added.reason, added.desc.name.as_str(), added.desc.port_no),
        (port_reason::ADD, "tap-i-1234", port)
    );
    assert!(switch.set_port_link(port, false));
    let Message::PortStatus(down) = c
        .recv_where(|m| matches!(m.body, Message::PortStatus(_)))
        .await
        .body
    else {
        unreachable!()
    };
    assert!(!down.desc.is_up());
    assert!(switch.remove_port(port));
    let Message::PortStatus(gone) = c
        .recv_where(|m| matches!(m.body, Message::PortStatus(_)))
        .await
        .body
    else {
        unreachable!()
    };
    assert_eq!(gone.reason, port_reason::DELETE);

    // Deleting a flow with send_flow_rem announces it.
    c.send(Message::FlowMod(FlowMod {
        flags: flow_mod_flags::SEND_FLOW_REM,
        ..flow(2, 5, 0x99, vec![reg0(9)], vec![])
    }))
    .await;
    c.send(Message::FlowMod(FlowMod::delete_strict(
        2,
        5,
        Match::new(vec![reg0(9)]),
    )))
    .await;
    let Message::FlowRemoved(removed) = c
        .recv_where(|m| matches!(m.body, Message::FlowRemoved(_)))
        .await
        .body
    else {
        unreachable!()
    };
    assert_eq!(
        (removed.cookie, removed.priority, removed.table_id, removed.reason),
        (0x99, 5, 2, 2)
    );
    assert_eq!(removed.match_.fields, vec![reg0(9)]);
    emulator.stop().await;
}
