//! Writes the seed corpus of the `decode_message` fuzz target: real
//! messages encoded by the codec itself, of the kinds flowgate exchanges
//! with Open vSwitch (hello, flow-mods with `ct`/`nat`/`conjunction`,
//! packet-in, packet-out, flow statistics, bundles, errors), plus one
//! multi-message stream to exercise framing.
//!
//! Seeds give libFuzzer well-formed structure to mutate from; starting from
//! random bytes it would take far longer to reach the nested action and
//! match decoders.
//!
//! ```text
//! cd fuzz && cargo run --example gen_seeds            # writes fuzz/seeds/
//! cd fuzz && cargo run --example gen_seeds -- DIR     # writes DIR/
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;

use openflow::action::{OFPCML_NO_BUFFER, ct_flags, nat_flags};
use openflow::bundle::bundle_flags;
use openflow::flow::flow_mod_flags;
use openflow::multipart::{MultipartReply, MultipartReplyBody};
use openflow::oxm::ct_state;
use openflow::packet::packet_in_reason;
use openflow::{
    Action, BundleAdd, BundleControl, BundleCtrlType, Ct, CtZone, ErrorCode, ErrorMsg, FieldId, FlowMod,
    FlowStats, Hello, Instruction, MacAddr, Masked, Match, Message, Nat, OfpMessage, OxmField, PacketIn,
    PacketOut, PortNo, Subfield, SwitchFeatures, Version,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    std::fs::create_dir_all(&dir)?;

    let v13 = Version::OF13;
    let seeds: Vec<(&str, Vec<OfpMessage>)> = vec![
        (
            "hello",
            vec![OfpMessage::new(
                v13,
                1,
                Message::Hello(Hello::with_versions(&[Version::OF13, Version::OF14])),
            )],
        ),
        (
            "flow_mod_ct_nat",
            vec![OfpMessage::new(v13, 2, Message::FlowMod(ct_nat_flow()))],
        ),
        (
            "flow_mod_conjunction",
            vec![OfpMessage::new(v13, 3, Message::FlowMod(conjunction_flow()))],
        ),
        (
            "flow_mod_rewrite",
            vec![OfpMessage::new(v13, 4, Message::FlowMod(rewrite_flow()))],
        ),
        (
            "packet_in_arp",
            vec![OfpMessage::new(v13, 0, Message::PacketIn(packet_in()))],
        ),
        (
            "packet_out",
            vec![OfpMessage::new(v13, 5, Message::PacketOut(packet_out()))],
        ),
        (
            "flow_stats_reply",
            vec![OfpMessage::new(
                v13,
                6,
                Message::MultipartReply(flow_stats_reply()),
            )],
        ),
        (
            "bundle_add_of13",
            vec![OfpMessage::new(
                v13,
                7,
                Message::BundleAdd(BundleAdd {
                    bundle_id: 1,
                    flags: bundle_flags::ATOMIC | bundle_flags::ORDERED,
                    message: Box::new(OfpMessage::new(v13, 7, Message::FlowMod(conjunction_flow()))),
                    properties: Vec::new(),
                }),
            )],
        ),
        (
            "error_bad_action",
            vec![OfpMessage::new(
                v13,
                8,
                Message::Error(ErrorMsg {
                    // OFPET_BAD_ACTION / OFPBAC_BAD_OUT_PORT, with the
                    // offending message's first bytes as OVS sends them.
                    code: ErrorCode::Standard { err_type: 2, code: 4 },
                    data: vec![4, 14, 0, 0x70, 0, 0, 0, 2],
                }),
            )],
        ),
        // What a switch sends first on a new connection, back to back in
        // one read: exercises framing across message boundaries.
        (
            "stream_handshake",
            vec![
                OfpMessage::new(v13, 10, Message::Hello(Hello::with_versions(&[Version::OF13]))),
                OfpMessage::new(
                    v13,
                    11,
                    Message::FeaturesReply(SwitchFeatures {
                        datapath_id: 0x0000_0242_ac11_0002,
                        n_buffers: 0,
                        n_tables: 254,
                        auxiliary_id: 0,
                        capabilities: 0x4f,
                        reserved: 0,
                    }),
                ),
                OfpMessage::new(v13, 12, Message::EchoRequest(vec![1, 2, 3, 4])),
                OfpMessage::new(
                    v13,
                    13,
                    Message::BundleControl(BundleControl::new(
                        1,
                        BundleCtrlType::COMMIT_REPLY,
                        bundle_flags::ATOMIC,
                    )),
                ),
                OfpMessage::new(v13, 14, Message::BarrierReply),
            ],
        ),
    ];

    for (name, messages) in &seeds {
        let mut bytes = Vec::new();
        for m in messages {
            m.encode(&mut bytes)?;
        }
        let path = dir.join(format!("{name}.bin"));
        std::fs::write(&path, &bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

/// The connection-tracking flow flowgate installs for allowed new
/// connections: commit in the zone held in reg0, SNAT to an Elastic IP,
/// mark the connection, continue in the next table.
fn ct_nat_flow() -> FlowMod {
    let mut flow = FlowMod::add(
        20,
        1000,
        Match::new(vec![
            OxmField::InPort(PortNo(3)),
            OxmField::EthType(0x0800),
            OxmField::Ipv4Src(Masked::new(
                Ipv4Addr::new(10, 0, 1, 0),
                Ipv4Addr::new(255, 255, 255, 0),
            )),
            OxmField::IpProto(6),
            OxmField::TcpDst(Masked::new(0x0050, 0xfff0)),
            OxmField::Reg {
                index: 0,
                value: Masked::exact(7),
            },
            OxmField::CtState(Masked::new(
                ct_state::TRK | ct_state::NEW,
                ct_state::TRK | ct_state::NEW | ct_state::EST,
            )),
        ]),
        vec![Instruction::ApplyActions(vec![
            Action::Ct(Ct {
                flags: ct_flags::COMMIT,
                zone: CtZone::Field(Subfield::bits(FieldId::Reg(0), 0, 16)),
                recirc_table: 21,
                alg: 0,
                actions: vec![
                    Action::Nat(Nat {
                        flags: nat_flags::SRC,
                        ipv4_min: Some(Ipv4Addr::new(203, 0, 113, 5)),
                        ipv4_max: Some(Ipv4Addr::new(203, 0, 113, 5)),
                        proto_min: Some(1024),
                        proto_max: Some(65535),
                        ..Nat::default()
                    }),
                    Action::SetField(OxmField::CtMark(Masked::exact(0x10))),
                ],
            }),
            Action::resubmit_table(30),
        ])],
    );
    flow.cookie = 0x0100_0000_0000_002a;
    flow.flags = flow_mod_flags::SEND_FLOW_REM;
    flow
}

/// One clause of a security-group conjunction.
fn conjunction_flow() -> FlowMod {
    let mut flow = FlowMod::add(
        40,
        2000,
        Match::new(vec![
            OxmField::EthType(0x0800),
            OxmField::Ipv4Src(Masked::new(
                Ipv4Addr::new(192, 168, 0, 0),
                Ipv4Addr::new(255, 255, 0, 0),
            )),
            OxmField::Reg {
                index: 1,
                value: Masked::new(0x20, 0xffff),
            },
        ]),
        vec![Instruction::ApplyActions(vec![Action::Conjunction {
            id: 0x1234,
            clause: 0,
            n_clauses: 2,
        }])],
    );
    flow.cookie = 0x0200_0000_0000_1234;
    flow
}

/// Elastic IP DNAT by rewrite, with the remaining instruction kinds.
fn rewrite_flow() -> FlowMod {
    let mut flow = FlowMod::add(
        10,
        500,
        Match::new(vec![
            OxmField::InPort(PortNo(1)),
            OxmField::EthType(0x0800),
            OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::new(203, 0, 113, 5))),
            OxmField::Metadata(Masked::new(1, 0xff)),
        ]),
        vec![
            Instruction::ApplyActions(vec![
                Action::SetField(OxmField::EthDst(Masked::exact(MacAddr([2, 0xfa, 0, 0, 0, 1])))),
                Action::SetField(OxmField::Ipv4Dst(Masked::exact(Ipv4Addr::new(10, 0, 1, 17)))),
                Action::RegLoad {
                    dst: Subfield::bits(FieldId::Reg(2), 0, 16),
                    value: 9,
                },
                Action::output(PortNo(3)),
            ]),
            Instruction::WriteMetadata {
                metadata: 2,
                mask: 0xff,
            },
            Instruction::GotoTable(11),
        ],
    );
    flow.idle_timeout = 300;
    flow
}

/// A 60-byte ARP request (broadcast, who-has 10.0.1.1 tell 10.0.1.17).
fn arp_frame() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[2, 0xfa, 0, 0, 0, 17]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0xfa, 0, 0, 0, 17, 10, 0, 1, 17]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 1, 1]);
    f.resize(60, 0);
    f
}

fn packet_in() -> PacketIn {
    let data = arp_frame();
    PacketIn {
        buffer_id: openflow::OFP_NO_BUFFER,
        total_len: data.len() as u16,
        reason: packet_in_reason::ACTION,
        table_id: 0,
        cookie: 0x0300_0000_0000_0001,
        match_: Match::new(vec![
            OxmField::InPort(PortNo(3)),
            OxmField::Reg {
                index: 0,
                value: Masked::exact(7),
            },
        ]),
        data,
    }
}

fn packet_out() -> PacketOut {
    PacketOut {
        buffer_id: openflow::OFP_NO_BUFFER,
        in_port: PortNo::CONTROLLER,
        actions: vec![
            Action::SetField(OxmField::EthSrc(Masked::exact(MacAddr([2, 0xfa, 0, 0, 0, 1])))),
            Action::Output {
                port: PortNo(3),
                max_len: OFPCML_NO_BUFFER,
            },
        ],
        data: arp_frame(),
    }
}

fn flow_stats_reply() -> MultipartReply {
    let entry = |flow: FlowMod, packets: u64| FlowStats {
        table_id: flow.table_id,
        duration_sec: 42,
        duration_nsec: 5_000_000,
        priority: flow.priority,
        idle_timeout: flow.idle_timeout,
        hard_timeout: flow.hard_timeout,
        flags: flow.flags,
        importance: 0,
        cookie: flow.cookie,
        packet_count: packets,
        byte_count: packets * 64,
        match_: flow.match_,
        instructions: flow.instructions,
    };
    MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Flow(vec![entry(ct_nat_flow(), 10), entry(conjunction_flow(), 3)]),
    }
}
