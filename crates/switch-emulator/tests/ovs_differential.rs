//! Open vSwitch is the judge: the same sequence of flow-mods and bundles is
//! applied to a real bridge (userspace, in a private lab) and to an
//! emulated switch (its pure session state machine), and both must refuse
//! the same requests with the same errors and end with the same flows,
//! compared as sets of (table, priority, cookie, flags, timeouts, match
//! fields, instructions), and with match fields in the same order.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use openflow::action::{Ct, CtZone, NX_CT_RECIRC_NONE, ct_flags};
use openflow::bundle::bundle_flags;
use openflow::flow::flow_mod_flags;
use openflow::oxm::ct_state;
use openflow::{
    Action, BundleAdd, BundleControl, BundleCtrlType, FlowMod, FlowModCommand, FlowStats, FlowStatsRequest,
    Hello, Instruction, MacAddr, Masked, Match, Message, MultipartAssembler, MultipartReplyBody,
    MultipartRequest, MultipartRequestBody, OFPTT_ALL, OfpMessage, OxmField, PortNo, Version, message_length,
};
use switch_emulator::session::{Output, Session, SessionConfig};
use switch_emulator::{Datapath, Faults, SwitchSpec};
use testbed::{BridgeOptions, Lab};

/// One step of the scenario: messages sent back to back, then a barrier.
enum Step {
    Flow(FlowMod),
    Bundle(Vec<FlowMod>),
}

/// Either side of the comparison.
trait Switch {
    /// The negotiated version.
    fn version(&self) -> Version;
    /// Sends `msgs` then a barrier; returns the messages received before
    /// the barrier reply.
    fn exchange(&mut self, msgs: &[OfpMessage]) -> Vec<OfpMessage>;
}

/// A real Open vSwitch bridge over its management socket.
struct Ovs {
    stream: UnixStream,
    version: Version,
}

impl Ovs {
    fn connect(path: &std::path::Path, version: Version) -> Ovs {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut ovs = Ovs { stream, version };
        let hello = OfpMessage::new(version, 1, Message::Hello(Hello::with_versions(&[version])));
        ovs.stream.write_all(&hello.to_bytes().unwrap()).unwrap();
        let reply = ovs.read();
        assert!(matches!(reply.body, Message::Hello(_)));
        ovs
    }

    fn read(&mut self) -> OfpMessage {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header).unwrap();
        let len = message_length(&header).unwrap().unwrap();
        let mut buf = header.to_vec();
        buf.resize(len, 0);
        self.stream.read_exact(&mut buf[8..]).unwrap();
        OfpMessage::decode(&buf).unwrap()
    }
}

impl Switch for Ovs {
    fn version(&self) -> Version {
        self.version
    }

    fn exchange(&mut self, msgs: &[OfpMessage]) -> Vec<OfpMessage> {
        for m in msgs {
            self.stream.write_all(&m.to_bytes().unwrap()).unwrap();
        }
        let barrier = OfpMessage::new(self.version, 0xbeef, Message::BarrierRequest);
        self.stream.write_all(&barrier.to_bytes().unwrap()).unwrap();
        let mut before = Vec::new();
        loop {
            let m = self.read();
            if m.xid == 0xbeef && m.body == Message::BarrierReply {
                return before;
            }
            before.push(m);
        }
    }
}

/// An emulated switch, driven through its pure state machine.
struct Emulated {
    session: Session,
    dp: Datapath,
    now: Duration,
}

impl Emulated {
    fn new(version: Version) -> Emulated {
        let spec = SwitchSpec {
            index: 0,
            datapath_id: 1,
            name: "br0".into(),
            ports: 4,
            port_prefix: "vm".into(),
            max_flows: None,
        };
        let mut dp = Datapath::new(spec, Faults::default(), 0);
        let mut session = Session::new(1, SessionConfig::default(), Duration::ZERO);
        let mut out = Vec::new();
        session.start(&mut dp, &mut out);
        let hello = OfpMessage::new(version, 1, Message::Hello(Hello::with_versions(&[version])));
        session.handle(&mut dp, &hello.to_bytes().unwrap(), Duration::ZERO, &mut out);
        assert_eq!(session.version(), Some(version));
        Emulated {
            session,
            dp,
            now: Duration::ZERO,
        }
    }
}

impl Switch for Emulated {
    fn version(&self) -> Version {
        self.session.version().unwrap()
    }

    fn exchange(&mut self, msgs: &[OfpMessage]) -> Vec<OfpMessage> {
        let v = self.version();
        let mut out = Vec::new();
        for m in msgs {
            self.now += Duration::from_millis(1);
            self.session
                .handle(&mut self.dp, &m.to_bytes().unwrap(), self.now, &mut out);
        }
        out.into_iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m),
                Output::Broadcast(body) => Some(OfpMessage::new(v, 0, body)),
                _ => None,
            })
            .collect()
    }
}

/// Runs the scenario; returns, per step, the error names with the index of
/// the message of the step they refer to (the commit is one past the adds).
fn run(switch: &mut dyn Switch, steps: &[Step]) -> Vec<Vec<(usize, String)>> {
    let v = switch.version();
    let mut xid = 100u32;
    let mut all = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let mut msgs = Vec::new();
        let mut next = |body: Message| {
            xid += 1;
            OfpMessage::new(v, xid, body)
        };
        match step {
            Step::Flow(fm) => msgs.push(next(Message::FlowMod(fm.clone()))),
            Step::Bundle(fms) => {
                let id = n as u32;
                let flags = bundle_flags::ATOMIC;
                msgs.push(next(Message::BundleControl(BundleControl::new(
                    id,
                    BundleCtrlType::OPEN_REQUEST,
                    flags,
                ))));
                for fm in fms {
                    let inner = next(Message::FlowMod(fm.clone()));
                    let add = BundleAdd {
                        bundle_id: id,
                        flags,
                        message: Box::new(inner.clone()),
                        properties: Vec::new(),
                    };
                    msgs.push(OfpMessage::new(v, inner.xid, Message::BundleAdd(add)));
                }
                msgs.push(next(Message::BundleControl(BundleControl::new(
                    id,
                    BundleCtrlType::COMMIT_REQUEST,
                    flags,
                ))));
            }
        }
        let replies = switch.exchange(&msgs);
        let errors = replies
            .iter()
            .filter_map(|m| match &m.body {
                Message::Error(e) => {
                    let at = msgs
                        .iter()
                        .position(|s| s.xid == m.xid)
                        .expect("error for a sent message");
                    Some((at, e.code.describe(v)))
                }
                _ => None,
            })
            .collect();
        all.push(errors);
    }
    all
}

fn dump(switch: &mut dyn Switch) -> Vec<FlowStats> {
    dump_where(switch, FlowStatsRequest::all())
}

fn dump_where(switch: &mut dyn Switch, request: FlowStatsRequest) -> Vec<FlowStats> {
    let request = OfpMessage::new(
        switch.version(),
        7,
        Message::MultipartRequest(MultipartRequest::new(MultipartRequestBody::Flow(request))),
    );
    let mut assembler = MultipartAssembler::new();
    let mut result = None;
    for m in switch.exchange(&[request]) {
        if let Message::MultipartReply(r) = m.body
            && let Some(MultipartReplyBody::Flow(flows)) = assembler.push(m.xid, r)
        {
            result = Some(flows);
        }
    }
    result.expect("a complete flow stats reply")
}

/// A flow as compared: everything but durations and counters, with the
/// match fields sorted.
type Key = (u8, u16, u64, u16, u16, u16, Vec<String>, String);

fn key(f: &FlowStats) -> Key {
    let mut fields: Vec<String> = f.match_.fields.iter().map(ToString::to_string).collect();
    fields.sort();
    (
        f.table_id,
        f.priority,
        f.cookie,
        f.flags,
        f.idle_timeout,
        f.hard_timeout,
        fields,
        format!("{:?}", f.instructions),
    )
}

fn reg(index: u8, value: u32, mask: Option<u32>) -> OxmField {
    OxmField::Reg {
        index,
        value: Masked { value, mask },
    }
}

fn add(
    table: u8,
    priority: u16,
    cookie: u64,
    fields: Vec<OxmField>,
    instructions: Vec<Instruction>,
) -> FlowMod {
    FlowMod {
        cookie,
        ..FlowMod::add(table, priority, Match::new(fields), instructions)
    }
}

fn apply(actions: Vec<Action>) -> Vec<Instruction> {
    vec![Instruction::ApplyActions(actions)]
}

fn out(p: u32) -> Action {
    Action::output(PortNo(p))
}

fn ip() -> OxmField {
    OxmField::EthType(0x0800)
}

fn scenario() -> Vec<Step> {
    use Step::{Bundle, Flow};
    let ip_src = |a, b, c, d| OxmField::Ipv4Src(Masked::exact(Ipv4Addr::new(a, b, c, d)));
    let tcp = OxmField::IpProto(6);
    let est = OxmField::CtState(Masked::new(
        ct_state::TRK | ct_state::EST,
        ct_state::TRK | ct_state::EST,
    ));
    let commit_ct = Action::Ct(Ct {
        flags: ct_flags::COMMIT,
        zone: CtZone::Immediate(7),
        recirc_table: NX_CT_RECIRC_NONE,
        alg: 0,
        actions: vec![],
    });
    vec![
        // Plain adds over several tables, with matches given in an order
        // Open vSwitch does not report them in.
        Flow(add(0, 100, 0x100, vec![reg(0, 1, None)], apply(vec![out(1)]))),
        Flow(add(0, 100, 0x101, vec![reg(0, 2, None)], apply(vec![out(2)]))),
        Flow(add(
            0,
            90,
            0x102,
            vec![ip(), ip_src(10, 0, 0, 1), OxmField::InPort(PortNo(3))],
            vec![Instruction::GotoTable(2)],
        )),
        Flow(add(
            2,
            50,
            0x200,
            vec![
                ip(),
                tcp.clone(),
                est.clone(),
                OxmField::TcpDst(Masked::exact(22)),
            ],
            apply(vec![commit_ct.clone(), out(4)]),
        )),
        Flow(add(
            2,
            40,
            0x201,
            vec![
                ip(),
                OxmField::Ipv4Dst(Masked::new(
                    Ipv4Addr::new(10, 1, 0, 0),
                    Ipv4Addr::new(255, 255, 0, 0),
                )),
            ],
            vec![
                Instruction::WriteMetadata {
                    metadata: 5,
                    mask: 0xff,
                },
                Instruction::ApplyActions(vec![Action::resubmit_table(3)]),
            ],
        )),
        Flow(add(
            3,
            1,
            0x300,
            vec![
                OxmField::EthType(0x0806),
                OxmField::ArpOp(1),
                OxmField::ArpTpa(Masked::exact(Ipv4Addr::new(10, 0, 0, 254))),
            ],
            apply(vec![
                Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr([2, 0, 0, 0, 0, 1])))),
                Action::output(PortNo::IN_PORT),
            ]),
        )),
        // A redundant full mask; a zero mask.
        Flow(add(
            1,
            7,
            0x110,
            vec![
                ip(),
                OxmField::Ipv4Src(Masked::new(Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::BROADCAST)),
            ],
            apply(vec![out(1)]),
        )),
        Flow(add(
            1,
            7,
            0x111,
            vec![reg(1, 0x0f, Some(0x0f)), reg(2, 0, Some(0))],
            apply(vec![out(1)]),
        )),
        Flow(add(
            1,
            8,
            0x112,
            vec![OxmField::Metadata(Masked::new(0x10, 0xf0))],
            vec![],
        )),
        // VLANs: an exact id with its priority, any tagged frame, and a
        // mask covering every bit of the id (exact, so it replaces).
        Flow(add(
            4,
            20,
            0x120,
            vec![OxmField::VlanVid(Masked::exact(0x1005)), OxmField::VlanPcp(3)],
            apply(vec![Action::PopVlan, out(1)]),
        )),
        Flow(add(
            4,
            19,
            0x121,
            vec![OxmField::VlanVid(Masked::new(0x1000, 0x1000))],
            apply(vec![out(2)]),
        )),
        Flow(add(
            4,
            18,
            0x122,
            vec![OxmField::VlanVid(Masked::exact(0x1007))],
            apply(vec![out(2)]),
        )),
        Flow(add(
            4,
            18,
            0x123,
            vec![OxmField::VlanVid(Masked::new(0x1007, 0x1fff))],
            apply(vec![out(3)]),
        )),
        // UDP, ICMP, ARP addresses, tunnel id, conntrack zone and mark,
        // conjunctions.
        Flow(add(
            4,
            17,
            0x124,
            vec![
                ip(),
                OxmField::IpProto(17),
                OxmField::UdpDst(Masked::exact(53)),
                OxmField::IpDscp(10),
            ],
            apply(vec![out(1)]),
        )),
        Flow(add(
            4,
            16,
            0x125,
            vec![
                ip(),
                OxmField::IpProto(1),
                OxmField::Icmpv4Type(8),
                OxmField::Icmpv4Code(0),
            ],
            apply(vec![out(1)]),
        )),
        Flow(add(
            4,
            15,
            0x126,
            vec![
                OxmField::EthType(0x0806),
                OxmField::ArpSha(Masked::exact(MacAddr([2, 0, 0, 0, 0, 9]))),
                OxmField::ArpSpa(Masked::new(
                    Ipv4Addr::new(10, 0, 0, 0),
                    Ipv4Addr::new(255, 0, 0, 0),
                )),
            ],
            apply(vec![out(1)]),
        )),
        Flow(add(
            4,
            14,
            0x127,
            vec![
                OxmField::CtMark(Masked::new(1, 1)),
                OxmField::CtZone(7),
                OxmField::TunnelId(Masked::exact(99)),
                OxmField::EthDst(Masked::new(
                    MacAddr([1, 0, 0, 0, 0, 0]),
                    MacAddr([1, 0, 0, 0, 0, 0]),
                )),
            ],
            apply(vec![out(1)]),
        )),
        Flow(add(
            4,
            13,
            0x128,
            vec![ip(), ip_src(10, 0, 0, 5)],
            apply(vec![Action::Conjunction {
                id: 7,
                clause: 0,
                n_clauses: 2,
            }]),
        )),
        Flow(add(
            4,
            13,
            0x129,
            vec![OxmField::ConjId(7), ip()],
            apply(vec![out(4)]),
        )),
        Flow(add(4, 12, 0x12a, vec![OxmField::VlanPcp(3)], vec![])),
        // Empty action lists.
        Flow(add(1, 9, 0x114, vec![reg(6, 1, None)], apply(vec![]))),
        Flow(add(
            1,
            9,
            0x115,
            vec![reg(6, 2, None)],
            vec![Instruction::WriteActions(vec![]), Instruction::ClearActions],
        )),
        // The same flows again, spelled differently: they replace them.
        Flow(add(
            1,
            7,
            0x113,
            vec![reg(1, 0x0f, Some(0x0f))],
            apply(vec![out(3)]),
        )),
        Flow(add(
            0,
            90,
            0x103,
            vec![OxmField::InPort(PortNo(3)), ip(), ip_src(10, 0, 0, 1)],
            vec![Instruction::GotoTable(2)],
        )),
        // Refusals: prerequisites out of order, value bits outside a mask,
        // a missing prerequisite, goto backwards, table 255, an unknown
        // command, a bad output port, a duplicate field, an overlap.
        Flow(add(0, 2, 0x3f0, vec![ip_src(10, 0, 0, 2), ip()], vec![])),
        Flow(add(0, 2, 0x3f1, vec![reg(1, 0xff, Some(0x0f))], vec![])),
        Flow(add(
            0,
            1,
            0x400,
            vec![OxmField::TcpDst(Masked::exact(80))],
            vec![],
        )),
        Flow(add(4, 1, 0x401, vec![], vec![Instruction::GotoTable(1)])),
        Flow(add(255, 1, 0x402, vec![], vec![])),
        Flow(FlowMod {
            command: FlowModCommand::Unknown(9),
            ..add(0, 1, 0x403, vec![], vec![])
        }),
        Flow(add(0, 1, 0x404, vec![], apply(vec![out(0xffff_ff01)]))),
        Flow(add(0, 1, 0x405, vec![reg(2, 1, None), reg(2, 2, None)], vec![])),
        Flow(FlowMod {
            flags: flow_mod_flags::CHECK_OVERLAP,
            ..add(0, 100, 0x406, vec![], vec![])
        }),
        // Flags and timeouts are kept.
        Flow(FlowMod {
            flags: flow_mod_flags::SEND_FLOW_REM | flow_mod_flags::NO_PKT_COUNTS,
            idle_timeout: 300,
            hard_timeout: 600,
            ..add(5, 5, 0x500, vec![reg(5, 5, None)], apply(vec![out(1)]))
        }),
        // Modify (loose) every flow with reg0 set; modify strict one;
        // modify with a cookie filter; modify that selects nothing.
        Flow(FlowMod {
            command: FlowModCommand::Modify,
            ..add(0, 0, 0, vec![reg(0, 0, Some(0))], apply(vec![out(9)]))
        }),
        Flow(FlowMod {
            command: FlowModCommand::Modify,
            ..add(0, 0, 0, vec![reg(0, 2, None)], apply(vec![out(5)]))
        }),
        Flow(FlowMod {
            command: FlowModCommand::ModifyStrict,
            flags: flow_mod_flags::RESET_COUNTS,
            ..add(5, 5, 0, vec![reg(5, 5, None)], apply(vec![out(6)]))
        }),
        Flow(FlowMod {
            command: FlowModCommand::Modify,
            cookie: 0x300,
            cookie_mask: 0xf00,
            ..add(OFPTT_ALL, 0, 0, vec![], apply(vec![out(7)]))
        }),
        Flow(FlowMod {
            command: FlowModCommand::Modify,
            ..add(0, 0, 0, vec![reg(7, 7, None)], apply(vec![out(8)]))
        }),
        // Bundles: one that commits, one refused at add time, one that
        // fails at commit (overlap) and must leave nothing behind.
        Bundle(
            (0..40)
                .map(|i| {
                    add(
                        6,
                        10,
                        0x600 + i,
                        vec![reg(3, i as u32, None)],
                        apply(vec![out(2)]),
                    )
                })
                .collect(),
        ),
        Bundle(vec![add(8, 1, 0x800, vec![], vec![Instruction::GotoTable(3)])]),
        Bundle(vec![
            add(7, 10, 0x700, vec![reg(4, 1, None)], apply(vec![out(1)])),
            FlowMod {
                flags: flow_mod_flags::CHECK_OVERLAP,
                ..add(0, 100, 0x701, vec![reg(0, 0, Some(1))], vec![])
            },
            FlowMod::delete_all(),
        ]),
        // A bundle whose delete comes first succeeds: check_overlap sees the
        // table as the bundle left it.
        Bundle(vec![
            FlowMod {
                table_id: 7,
                ..FlowMod::delete_all()
            },
            FlowMod {
                flags: flow_mod_flags::CHECK_OVERLAP,
                ..add(7, 10, 0x702, vec![reg(4, 2, None)], apply(vec![out(1)]))
            },
        ]),
        // Deletes: strict with the wrong priority (nothing), strict, loose by
        // match subset, by cookie mask, by output port, a whole table.
        Flow(FlowMod::delete_strict(0, 99, Match::new(vec![reg(0, 1, None)]))),
        Flow(FlowMod::delete_strict(0, 100, Match::new(vec![reg(0, 1, None)]))),
        Flow(FlowMod {
            table_id: 6,
            ..FlowMod {
                command: FlowModCommand::Delete,
                ..add(6, 0, 0, vec![reg(3, 0, Some(0x1))], vec![])
            }
        }),
        Flow(FlowMod {
            cookie: 0x620,
            cookie_mask: 0xff0,
            ..FlowMod::delete_all()
        }),
        Flow(FlowMod {
            out_port: PortNo(4),
            ..FlowMod::delete_all()
        }),
        Flow(FlowMod {
            table_id: 3,
            ..FlowMod::delete_all()
        }),
    ]
}

fn emulated_switch_matches_open_vswitch(version: Version) {
    let lab = Lab::start().expect("start a lab");
    let bridge = lab
        .add_bridge_with(
            "br0",
            &BridgeOptions::default().protocols(&["OpenFlow13", "OpenFlow14"]),
        )
        .unwrap();
    let mut ovs = Ovs::connect(bridge.mgmt_socket(), version);
    let mut emu = Emulated::new(version);
    let steps = scenario();

    let ovs_errors = run(&mut ovs, &steps);
    let emu_errors = run(&mut emu, &steps);
    let mismatched: Vec<String> = ovs_errors
        .iter()
        .zip(&emu_errors)
        .enumerate()
        .filter(|(_, (o, e))| o != e)
        .map(|(i, (o, e))| format!("step {i}: Open vSwitch {o:?}, emulator {e:?}"))
        .collect();
    assert!(mismatched.is_empty(), "errors differ:\n{}", mismatched.join("\n"));
    assert!(
        ovs_errors.iter().flatten().count() >= 11,
        "the scenario exercises refusals"
    );

    let ovs_flows = dump(&mut ovs);
    let emu_flows = dump(&mut emu);
    let ovs_set: BTreeSet<Key> = ovs_flows.iter().map(key).collect();
    let emu_set: BTreeSet<Key> = emu_flows.iter().map(key).collect();
    let only_ovs: Vec<_> = ovs_set.difference(&emu_set).collect();
    let only_emu: Vec<_> = emu_set.difference(&ovs_set).collect();
    assert!(
        only_ovs.is_empty() && only_emu.is_empty(),
        "flows differ\nonly in Open vSwitch: {only_ovs:#?}\nonly in the emulator: {only_emu:#?}"
    );
    assert!(
        ovs_set.len() >= 20,
        "the scenario leaves flows to compare: {}",
        ovs_set.len()
    );
    eprintln!(
        "{} steps, {} refusals and {} final flows identical",
        steps.len(),
        ovs_errors.iter().flatten().count(),
        ovs_set.len()
    );

    // Beyond set equality: match fields come in Open vSwitch's order.
    let order = |flows: &[FlowStats]| -> BTreeSet<(u8, u16, u64, Vec<String>)> {
        flows
            .iter()
            .map(|f| {
                (
                    f.table_id,
                    f.priority,
                    f.cookie,
                    f.match_.fields.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    };
    assert_eq!(order(&ovs_flows), order(&emu_flows), "match field order");

    // Filtered statistics select the same flows.
    let all = FlowStatsRequest::all;
    let requests = vec![
        FlowStatsRequest { table_id: 1, ..all() },
        FlowStatsRequest {
            cookie: 0x110,
            cookie_mask: 0xff0,
            ..all()
        },
        FlowStatsRequest {
            match_: Match::new(vec![reg(1, 0x0f, Some(0x0f))]),
            ..all()
        },
        FlowStatsRequest {
            match_: Match::new(vec![reg(1, 0x07, Some(0x07))]),
            ..all()
        },
        FlowStatsRequest {
            match_: Match::new(vec![ip()]),
            ..all()
        },
        FlowStatsRequest {
            out_port: PortNo(1),
            ..all()
        },
    ];
    for request in requests {
        let o: BTreeSet<Key> = dump_where(&mut ovs, request.clone()).iter().map(key).collect();
        let e: BTreeSet<Key> = dump_where(&mut emu, request.clone()).iter().map(key).collect();
        assert_eq!(o, e, "flow stats for {request:?}");
        assert!(!o.is_empty(), "{request:?} selects something");
    }
    lab.shutdown().unwrap();
}

#[test]
fn emulated_switch_matches_open_vswitch_in_openflow_1_3() {
    emulated_switch_matches_open_vswitch(Version::OF13);
}

#[test]
fn emulated_switch_matches_open_vswitch_in_openflow_1_4() {
    emulated_switch_matches_open_vswitch(Version::OF14);
}
