//! Open vSwitch's own decoder (`ovs-ofctl ofp-print HEX`) is the oracle for
//! the messages a *switch* sends: features, configuration, packet-in, port
//! status, flow-removed, statistics replies, role replies, errors and bundle
//! replies. flowgate's switch emulator encodes these; a real Open vSwitch
//! never lets a controller make it decode them, so the offline printer checks
//! that they mean what we intend.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use openflow::bundle::{BundleControl, BundleCtrlType, bundle_flags};
use openflow::error_msg::{ErrorCode, ErrorMsg};
use openflow::message::{AsyncConfig, ControllerRole, Role, SwitchConfig, SwitchFeatures};
use openflow::multipart::{MultipartReply, MultipartReplyBody, SwitchDescription, split_flow_stats};
use openflow::port::{Port, PortStats, PortStatus, port_reason};
use openflow::{
    Action, AggregateStats, FlowRemoved, FlowStats, Instruction, Masked, Match, Message, OFP_NO_BUFFER,
    OfpMessage, OxmField, PacketIn, PortNo, Version,
};

/// What `ovs-ofctl ofp-print` makes of `msg`.
fn ofp_print(msg: &OfpMessage) -> String {
    let hex: String = msg
        .to_bytes()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = Command::new("ovs-ofctl")
        .args(["ofp-print", &hex])
        .output()
        .expect("ovs-ofctl (openvswitch-common) must be installed: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "ovs-ofctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("decode error"),
        "Open vSwitch could not decode our bytes:\n{text}"
    );
    text
}

fn check(body: Message, expected: &str) {
    let text = ofp_print(&OfpMessage::new(Version::OF13, 7, body));
    assert_eq!(text.trim_end(), expected.trim_end(), "\n--- got ---\n{text}");
}

fn port() -> Port {
    Port {
        port_no: PortNo(3),
        hw_addr: "02:00:00:00:00:03".parse().unwrap(),
        name: "veth-a".into(),
        config: 0,
        state: openflow::port::port_state::LIVE,
        curr: 0x802,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 0,
    }
}

fn web_flow() -> (Match, Vec<Instruction>) {
    (
        Match::new(vec![OxmField::EthType(0x0800)]),
        vec![Instruction::ApplyActions(vec![Action::output(PortNo(2))])],
    )
}

#[test]
fn features_and_config_replies() {
    check(
        Message::FeaturesReply(SwitchFeatures {
            datapath_id: 0x1234,
            n_buffers: 0,
            n_tables: 254,
            auxiliary_id: 0,
            capabilities: 0x4f,
            reserved: 0,
        }),
        "OFPT_FEATURES_REPLY (OF1.3) (xid=0x7): dpid:0000000000001234\n\
         n_tables:254, n_buffers:0\n\
         capabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS QUEUE_STATS",
    );
    check(
        Message::GetConfigReply(SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
        "OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x7): frags=normal miss_send_len=128",
    );
    check(
        Message::EchoReply(vec![1, 2, 3]),
        "OFPT_ECHO_REPLY (OF1.3) (xid=0x7): 3 bytes of payload\n\
         00000000  01 02 03                                        |...             |",
    );
}

#[test]
fn packet_in_port_status_and_flow_removed() {
    check(
        Message::PacketIn(PacketIn {
            buffer_id: OFP_NO_BUFFER,
            total_len: 4,
            reason: 1,
            table_id: 3,
            cookie: 0xabc,
            match_: Match::new(vec![
                OxmField::InPort(PortNo(2)),
                OxmField::Reg {
                    index: 1,
                    value: Masked::exact(7),
                },
            ]),
            data: vec![1, 2, 3, 4],
        }),
        "OFPT_PACKET_IN (OF1.3) (xid=0x7): table_id=3 cookie=0xabc total_len=4 reg1=0x7,in_port=2 (via action) data_len=4 (unbuffered)\n\
         vlan_tci=0x0000,dl_src=00:00:00:00:00:00,dl_dst=00:00:00:00:00:00,dl_type=0x0000",
    );
    check(
        Message::PortStatus(PortStatus {
            reason: port_reason::ADD,
            desc: port(),
        }),
        "OFPT_PORT_STATUS (OF1.3) (xid=0x7): ADD: 3(veth-a): addr:02:00:00:00:00:03\n     config:     0\n     state:      LIVE\n     current:    10MB-FD COPPER\n     speed: 10000 Mbps now, 0 Mbps max",
    );
    check(
        Message::FlowRemoved(FlowRemoved {
            cookie: 0x10,
            priority: 7,
            reason: 2,
            table_id: 4,
            duration_sec: 3,
            duration_nsec: 500_000_000,
            idle_timeout: 0,
            hard_timeout: 10,
            packet_count: 11,
            byte_count: 1100,
            match_: Match::new(vec![OxmField::InPort(PortNo(1))]),
        }),
        "OFPT_FLOW_REMOVED (OF1.3) (xid=0x7): priority=7,in_port=1 reason=delete table_id=4 cookie:0x10 duration3.500s idle0 hard10 pkts11 bytes1100",
    );
}

#[test]
fn statistics_replies() {
    check(
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Desc(SwitchDescription {
                mfr_desc: "flowgate".into(),
                hw_desc: "emulator".into(),
                sw_desc: "0.1".into(),
                serial_num: "42".into(),
                dp_desc: "hv1".into(),
            }),
        }),
        "OFPST_DESC reply (OF1.3) (xid=0x7):\nManufacturer: flowgate\nHardware: emulator\nSoftware: 0.1\nSerial Num: 42\nDP Description: hv1",
    );
    let (match_, instructions) = web_flow();
    let entry = FlowStats {
        table_id: 1,
        duration_sec: 2,
        duration_nsec: 0,
        priority: 100,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        importance: 0,
        cookie: 5,
        packet_count: 3,
        byte_count: 180,
        match_,
        instructions,
    };
    check(
        Message::MultipartReply(MultipartReply {
            flags: 1,
            body: MultipartReplyBody::Flow(vec![entry.clone()]),
        }),
        "OFPST_FLOW reply (OF1.3) (xid=0x7): flags=[more]\n cookie=0x5, duration=2s, table=1, n_packets=3, n_bytes=180, priority=100,ip actions=output:2",
    );
    check(
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::PortStats(vec![PortStats {
                port_no: PortNo(3),
                rx_packets: 10,
                tx_packets: 20,
                rx_bytes: 1000,
                tx_bytes: 2000,
                ..PortStats::default()
            }]),
        }),
        "OFPST_PORT reply (OF1.3) (xid=0x7): 1 ports\n  port  3: rx pkts=10, bytes=1000, drop=0, errs=0, frame=0, over=0, crc=0\n           tx pkts=20, bytes=2000, drop=0, errs=0, coll=0\n           duration=0s",
    );
    check(
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::PortDesc(vec![port()]),
        }),
        "OFPST_PORT_DESC reply (OF1.3) (xid=0x7):\n 3(veth-a): addr:02:00:00:00:00:03\n     config:     0\n     state:      LIVE\n     current:    10MB-FD COPPER\n     speed: 10000 Mbps now, 0 Mbps max",
    );
    check(
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Aggregate(AggregateStats {
                packet_count: 5,
                byte_count: 500,
                flow_count: 2,
            }),
        }),
        "OFPST_AGGREGATE reply (OF1.3) (xid=0x7): packet_count=5 byte_count=500 flow_count=2",
    );

    // Splitting many flows: every part decodes, all but the last say "more".
    let flows: Vec<FlowStats> = (0..2000)
        .map(|i| FlowStats {
            cookie: i,
            ..entry.clone()
        })
        .collect();
    let parts = split_flow_stats(Version::OF13, flows, 65535).unwrap();
    assert!(parts.len() > 1);
    let last = parts.len() - 1;
    let mut total = 0;
    for (i, part) in parts.into_iter().enumerate() {
        let text = ofp_print(&OfpMessage::new(Version::OF13, 9, Message::MultipartReply(part)));
        assert_eq!(text.contains("flags=[more]"), i < last);
        total += text.matches("cookie=").count();
    }
    assert_eq!(total, 2000);
}

#[test]
fn asynchronous_configuration() {
    // Master: packet-ins for table misses and actions, every port status,
    // flow removals by idle timeout; slave: packet-ins for actions, port
    // additions and deletions.
    let config = AsyncConfig {
        packet_in_mask: [0b011, 0b010],
        port_status_mask: [0b111, 0b011],
        flow_removed_mask: [0b001, 0],
    };
    check(
        Message::SetAsync(config),
        "OFPT_SET_ASYNC (OF1.3) (xid=0x7):
 primary:
       PACKET_IN: no_match action
     PORT_STATUS: add delete modify
    FLOW_REMOVED: idle
     ROLE_STATUS: (off)
    TABLE_STATUS: (off)
  REQUESTFORWARD: (off)

 secondary:
       PACKET_IN: action
     PORT_STATUS: add delete
    FLOW_REMOVED: (off)
     ROLE_STATUS: (off)
    TABLE_STATUS: (off)
  REQUESTFORWARD: (off)",
    );
}

#[test]
fn role_error_and_bundle_replies() {
    check(
        Message::RoleReply(Role {
            role: ControllerRole::SLAVE,
            generation_id: 4,
        }),
        "OFPT_ROLE_REPLY (OF1.3) (xid=0x7): role=secondary generation_id=4",
    );
    let offending = OfpMessage::new(Version::OF13, 9, Message::BarrierRequest)
        .to_bytes()
        .unwrap();
    check(
        Message::Error(ErrorMsg {
            code: ErrorCode::from_name(Version::OF13, "OFPBAC_BAD_OUT_PORT").unwrap(),
            data: offending,
        }),
        "OFPT_ERROR (OF1.3) (xid=0x7): OFPBAC_BAD_OUT_PORT\nOFPT_BARRIER_REQUEST (OF1.3) (xid=0x9):",
    );
    check(
        Message::Error(ErrorMsg {
            code: ErrorCode::from_name(Version::OF13, "OFPBFC_MSG_FAILED").unwrap(),
            data: vec![],
        }),
        "OFPT_ERROR (OF1.3) (xid=0x7): OFPBFC_MSG_FAILED\nOpenFlow message is empty",
    );
    check(
        Message::Error(ErrorMsg {
            code: ErrorCode::from_name(Version::OF13, "NXBAC_BAD_CONJUNCTION").unwrap(),
            data: vec![],
        }),
        "OFPT_ERROR (OF1.3) (xid=0x7): NXBAC_BAD_CONJUNCTION\nOpenFlow message is empty",
    );
    check(
        Message::BundleControl(BundleControl::new(
            1,
            BundleCtrlType::COMMIT_REPLY,
            bundle_flags::ATOMIC,
        )),
        "ONFT_BUNDLE_CONTROL (OF1.3) (xid=0x7):\n bundle_id=0x1 type=COMMIT_REPLY flags=atomic",
    );
    let text = ofp_print(&OfpMessage::new(
        Version::OF14,
        7,
        Message::BundleControl(BundleControl::new(
            1,
            BundleCtrlType::OPEN_REPLY,
            bundle_flags::ORDERED,
        )),
    ));
    assert_eq!(
        text.trim_end(),
        "OFPT_BUNDLE_CONTROL (OF1.4) (xid=0x7):\n bundle_id=0x1 type=OPEN_REPLY flags=ordered"
    );
}
