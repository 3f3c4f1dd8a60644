//! Open vSwitch is the oracle for every message type beyond flow contents:
//! handshake, echo, features, configuration, descriptions and statistics
//! (with multipart continuation), flow-mod commands and flags, packet-in and
//! packet-out with real frames, flow-removed, port status, roles, bundles in
//! both their OpenFlow 1.3 (ONF extension) and 1.4 encodings, experimenter
//! messages, and the names of the errors Open vSwitch sends back for
//! deliberately bad requests.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::Conn;
use openflow::action::{Ct, CtZone, NX_CT_RECIRC_NONE};
use openflow::bundle::{BundleAdd, BundleControl, BundleCtrlType, bundle_flags};
use openflow::flow::flow_mod_flags;
use openflow::message::{AsyncConfig, ControllerRole, Experimenter, Role, SwitchConfig};
use openflow::multipart::{MultipartReplyBody, MultipartRequestBody};
use openflow::oxm::{OxmHeader, UnknownOxm};
use openflow::packet::packet_in_reason;
use openflow::port::port_reason;
use openflow::{
    Action, ErrorMsg, FlowMod, FlowModCommand, Hello, Instruction, Masked, Match, Message, NX_VENDOR_ID,
    OFP_NO_BUFFER, OfpMessage, OxmField, PacketOut, PortNo, Version,
};
use testbed::{BridgeOptions, HostSpec, Lab, MacAddr};

const DPID: u64 = 0x0000_00fa_0000_0001;

fn lab_with_bridge(name: &str) -> (Lab, testbed::Bridge) {
    let lab = Lab::start().expect("start a lab");
    let bridge = lab
        .add_bridge_with(name, &BridgeOptions::default().datapath_id(DPID))
        .unwrap();
    (lab, bridge)
}

/// Accepts the bridge's own (primary) controller connection, which is the
/// one that receives packet-ins, port status and flow-removed messages.
fn primary(lab: &Lab, bridge: &str, version: Version) -> Conn {
    let path = lab.run_dir().join(format!("{bridge}-ctl.sock"));
    let listener = UnixListener::bind(&path).unwrap();
    lab.set_controller(bridge, &format!("unix:{}", path.display()))
        .unwrap();
    Conn::accept(&listener, version)
}

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

fn dump(lab: &Lab, bridge: &str) -> Vec<String> {
    let text = lab
        .ofctl(&["-O", "OpenFlow13", "--no-stats", "dump-flows", bridge])
        .unwrap();
    // --no-stats prints flows only, one per line.
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn error_names(version: Version, errors: &[ErrorMsg]) -> Vec<String> {
    errors.iter().map(|e| e.code.describe(version)).collect()
}

#[test]
fn handshake_echo_features_config_and_descriptions() {
    let (lab, bridge) = lab_with_bridge("br0");
    let mut c = Conn::connect(bridge.mgmt_socket(), Version::OF13);

    let xid = c.send(Message::EchoRequest(b"flowgate".to_vec()));
    let reply = c.recv_where(|m| m.xid == xid);
    assert_eq!(reply.body, Message::EchoReply(b"flowgate".to_vec()));

    let xid = c.send(Message::FeaturesRequest);
    let Message::FeaturesReply(features) = c.recv_where(|m| m.xid == xid).body else {
        panic!("no features reply")
    };
    assert_eq!(features.datapath_id, DPID);
    assert_eq!(features.datapath_id, bridge.datapath_id());
    assert_eq!(features.n_tables, 254);

    assert!(
        c.transact(Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 200
        }))
        .is_empty()
    );
    let xid = c.send(Message::GetConfigRequest);
    let reply = c.recv_where(|m| m.xid == xid);
    assert_eq!(
        reply.body,
        Message::GetConfigReply(SwitchConfig {
            flags: 0,
            miss_send_len: 200
        })
    );

    let MultipartReplyBody::Desc(desc) = c.multipart(MultipartRequestBody::Desc).0 else {
        panic!("no desc reply")
    };
    let text = lab.ofctl(&["-O", "OpenFlow13", "dump-desc", "br0"]).unwrap();
    assert!(
        text.contains(&format!("Manufacturer: {}", desc.mfr_desc)),
        "{text}\n{desc:?}"
    );
    assert!(
        text.contains(&format!("Software: {}", desc.sw_desc)),
        "{text}\n{desc:?}"
    );
    assert!(
        text.contains(&format!("DP Description: {}", desc.dp_desc)),
        "{text}\n{desc:?}"
    );
    assert_eq!(desc.mfr_desc, "Nicira, Inc.");
}

#[test]
fn port_descriptions_and_statistics_match_the_switch() {
    let (lab, _bridge) = lab_with_bridge("br0");
    let h1 = lab
        .add_host(HostSpec::new(
            "h1",
            "br0",
            Ipv4Addr::new(10, 9, 0, 1),
            24,
            MacAddr::local(1),
        ))
        .unwrap();
    let h2 = lab
        .add_host(HostSpec::new(
            "h2",
            "br0",
            Ipv4Addr::new(10, 9, 0, 2),
            24,
            MacAddr::local(2),
        ))
        .unwrap();
    let mut c = Conn::connect(lab.run_dir().join("br0.mgmt").as_path(), Version::OF13);

    let MultipartReplyBody::PortDesc(ports) = c.multipart(MultipartRequestBody::PortDesc).0 else {
        panic!("no port desc reply")
    };
    let local = ports
        .iter()
        .find(|p| p.port_no == PortNo::LOCAL)
        .expect("LOCAL port");
    assert_eq!(local.name, "br0");
    for host in [&h1, &h2] {
        let port = ports
            .iter()
            .find(|p| p.name == host.port())
            .expect("host port in port desc");
        assert_eq!(port.port_no, PortNo(host.ofport()));
        let mac = lab
            .vsctl(&["get", "Interface", host.port(), "mac_in_use"])
            .unwrap();
        assert_eq!(port.hw_addr.to_string(), mac.trim().trim_matches('"'));
        assert!(port.is_up(), "{port:?}");
    }

    // Three packets sent out of h2's port show up in its tx counter.
    let frame = udp_frame(
        MacAddr::local(9),
        h2.mac(),
        Ipv4Addr::new(10, 9, 0, 9),
        h2.ip(),
        9999,
    );
    let before = tx_packets(&mut c, h2.ofport());
    for _ in 0..3 {
        let out = PacketOut {
            buffer_id: OFP_NO_BUFFER,
            in_port: PortNo::CONTROLLER,
            actions: vec![Action::output(PortNo(h2.ofport()))],
            data: frame.clone(),
        };
        assert!(c.transact(Message::PacketOut(out)).is_empty());
    }
    assert_eq!(tx_packets(&mut c, h2.ofport()), before + 3);
    let text = lab
        .ofctl(&["-O", "OpenFlow13", "dump-ports", "br0", &h2.ofport().to_string()])
        .unwrap();
    assert!(text.contains(&format!("tx pkts={}", before + 3)), "{text}");

    // Aggregate statistics count the flows.
    for i in 0..3 {
        c.flow_mod(flow(0, 10, 0, vec![reg0(i)], vec![]));
    }
    let request = openflow::FlowStatsRequest::all();
    let MultipartReplyBody::Aggregate(agg) = c.multipart(MultipartRequestBody::Aggregate(request)).0 else {
        panic!("no aggregate reply")
    };
    assert_eq!(agg.flow_count, 3);
}

fn tx_packets(c: &mut Conn, port: u32) -> u64 {
    let MultipartReplyBody::PortStats(stats) = c
        .multipart(MultipartRequestBody::PortStats { port_no: PortNo::ANY })
        .0
    else {
        panic!("no port stats reply")
    };
    stats
        .iter()
        .find(|s| s.port_no == PortNo(port))
        .expect("port in stats")
        .tx_packets
}

/// An Ethernet + IPv4 + UDP frame with valid checksums.
fn udp_frame(src: MacAddr, dst: MacAddr, src_ip: Ipv4Addr, dst_ip: Ipv4Addr, dport: u16) -> Vec<u8> {
    let payload = b"flowgate";
    let mut f = Vec::new();
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4242u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // UDP checksum is optional over IPv4
    f.extend_from_slice(payload);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn flow_stats_continue_over_several_replies() {
    let (lab, bridge) = lab_with_bridge("br0");
    let n = 3000u32;
    let flows: Vec<String> = (0..n)
        .map(|i| format!("cookie={i},priority=5,reg0={i} actions=resubmit(,1)"))
        .collect();
    let file = lab.run_dir().join("many.flows");
    std::fs::write(&file, flows.join("\n")).unwrap();
    lab.ofctl(&["-O", "OpenFlow13", "add-flows", "br0", file.to_str().unwrap()])
        .unwrap();

    let mut c = Conn::connect(bridge.mgmt_socket(), Version::OF13);
    let (body, parts) = c.multipart(MultipartRequestBody::Flow(openflow::FlowStatsRequest::all()));
    let MultipartReplyBody::Flow(flows) = body else {
        panic!("no flow stats")
    };
    assert!(parts > 1, "3000 flows should need several replies, got {parts}");
    assert_eq!(flows.len(), n as usize);
    let mut cookies: Vec<u64> = flows.iter().map(|f| f.cookie).collect();
    cookies.sort_unstable();
    assert_eq!(cookies, (0..u64::from(n)).collect::<Vec<_>>());
    for f in &flows {
        assert_eq!(f.match_.fields, vec![reg0(f.cookie as u32)]);
        assert_eq!(
            f.instructions,
            vec![Instruction::ApplyActions(vec![Action::resubmit_table(1)])]
        );
    }

    // A filtered request (cookie under a mask) is honoured by the switch.
    let request = openflow::FlowStatsRequest {
        cookie: 0x100,
        cookie_mask: 0xff00,
        ..openflow::FlowStatsRequest::all()
    };
    let MultipartReplyBody::Flow(some) = c.multipart(MultipartRequestBody::Flow(request)).0 else {
        panic!()
    };
    assert_eq!(some.len(), 256);
    assert!(some.iter().all(|f| f.cookie & 0xff00 == 0x100));
}

#[test]
fn flow_mod_commands_filters_and_flags() {
    let (lab, bridge) = lab_with_bridge("br0");
    let mut c = Conn::connect(bridge.mgmt_socket(), Version::OF13);
    let reg1 = |v| OxmField::Reg {
        index: 1,
        value: Masked::exact(v),
    };
    let out = |p| Action::output(PortNo(p));
    c.flow_mod(flow(0, 10, 0x100, vec![reg0(1)], vec![out(1)]));
    c.flow_mod(flow(0, 10, 0x200, vec![reg0(2)], vec![out(1)]));
    c.flow_mod(flow(0, 20, 0x201, vec![reg0(2), reg1(3)], vec![out(2)]));

    // Modify (loose): every flow the match covers.
    let modify = FlowMod {
        command: FlowModCommand::Modify,
        ..flow(0, 0, 0, vec![reg0(2)], vec![out(5)])
    };
    c.flow_mod(modify);
    assert_eq!(
        dump(&lab, "br0"),
        vec![
            "cookie=0x100, priority=10,reg0=0x1 actions=output:1",
            "cookie=0x200, priority=10,reg0=0x2 actions=output:5",
            "cookie=0x201, priority=20,reg0=0x2,reg1=0x3 actions=output:5",
        ]
    );

    // Modify strict: only the flow with this exact match and priority.
    let strict = FlowMod {
        command: FlowModCommand::ModifyStrict,
        ..flow(0, 20, 0, vec![reg0(2), reg1(3)], vec![out(6)])
    };
    c.flow_mod(strict);
    assert!(
        dump(&lab, "br0")
            .contains(&"cookie=0x201, priority=20,reg0=0x2,reg1=0x3 actions=output:6".to_string())
    );
    assert!(dump(&lab, "br0").contains(&"cookie=0x200, priority=10,reg0=0x2 actions=output:5".to_string()));

    // Delete by cookie under a mask: 0x200 and 0x201 go, 0x100 stays.
    let by_cookie = FlowMod {
        cookie: 0x200,
        cookie_mask: 0xf00,
        ..FlowMod::delete_all()
    };
    c.flow_mod(by_cookie);
    assert_eq!(
        dump(&lab, "br0"),
        vec!["cookie=0x100, priority=10,reg0=0x1 actions=output:1"]
    );

    // Delete filtered by output port.
    c.flow_mod(flow(0, 10, 0x300, vec![reg0(3)], vec![out(7)]));
    let by_port = FlowMod {
        out_port: PortNo(7),
        ..FlowMod::delete_all()
    };
    c.flow_mod(by_port);
    assert_eq!(
        dump(&lab, "br0"),
        vec!["cookie=0x100, priority=10,reg0=0x1 actions=output:1"]
    );

    // Delete filtered by output group.
    lab.ofctl(&[
        "-O",
        "OpenFlow13",
        "add-group",
        "br0",
        "group_id=5,type=all,bucket=output:1",
    ])
    .unwrap();
    c.flow_mod(flow(0, 10, 0x500, vec![reg0(5)], vec![Action::Group(5)]));
    c.flow_mod(flow(0, 10, 0x600, vec![reg0(6)], vec![out(2)]));
    let by_group = FlowMod {
        out_group: 5,
        ..FlowMod::delete_all()
    };
    c.flow_mod(by_group);
    let lines = dump(&lab, "br0");
    assert!(!lines.iter().any(|l| l.contains("cookie=0x500")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("cookie=0x600")), "{lines:?}");
    c.flow_mod(FlowMod::delete_strict(0, 10, Match::new(vec![reg0(6)])));

    // Delete strict needs the exact priority.
    c.flow_mod(FlowMod::delete_strict(0, 11, Match::new(vec![reg0(1)])));
    assert_eq!(dump(&lab, "br0").len(), 1);
    c.flow_mod(FlowMod::delete_strict(0, 10, Match::new(vec![reg0(1)])));
    assert!(dump(&lab, "br0").is_empty());

    // Flags are stored and reported both ways.
    let flags = flow_mod_flags::SEND_FLOW_REM
        | flow_mod_flags::CHECK_OVERLAP
        | flow_mod_flags::RESET_COUNTS
        | flow_mod_flags::NO_PKT_COUNTS
        | flow_mod_flags::NO_BYT_COUNTS;
    c.flow_mod(FlowMod {
        flags,
        idle_timeout: 300,
        hard_timeout: 600,
        ..flow(1, 10, 0x400, vec![reg0(4)], vec![])
    });
    let line = dump(&lab, "br0").remove(0);
    for word in [
        "send_flow_rem",
        "check_overlap",
        "reset_counts",
        "no_packet_counts",
        "no_byte_counts",
        "idle_timeout=300",
        "hard_timeout=600",
    ] {
        assert!(line.contains(word), "{word} missing from {line}");
    }
    let got = c.dump_flows().remove(0);
    assert_eq!((got.flags, got.idle_timeout, got.hard_timeout), (flags, 300, 600));

    // Check-overlap refuses an overlapping flow of the same priority.
    let overlapping = FlowMod {
        flags: flow_mod_flags::CHECK_OVERLAP,
        ..flow(1, 10, 0x401, vec![], vec![])
    };
    let errors = c.transact(Message::FlowMod(overlapping));
    assert_eq!(error_names(Version::OF13, &errors), vec!["OFPFMFC_OVERLAP"]);
}

#[test]
fn packet_in_packet_out_flow_removed_and_port_status() {
    let (lab, _bridge) = lab_with_bridge("br0");
    let h1 = lab
        .add_host(HostSpec::new(
            "h1",
            "br0",
            Ipv4Addr::new(10, 9, 0, 1),
            24,
            MacAddr::local(1),
        ))
        .unwrap();
    let h2 = lab
        .add_host(HostSpec::new(
            "h2",
            "br0",
            Ipv4Addr::new(10, 9, 0, 2),
            24,
            MacAddr::local(2),
        ))
        .unwrap();
    let mut c = primary(&lab, "br0", Version::OF13);

    // ARP from h1 goes to the controller with the flow's cookie.
    c.flow_mod(flow(
        0,
        100,
        0x77,
        vec![OxmField::EthType(0x0806)],
        vec![Action::Output {
            port: PortNo::CONTROLLER,
            max_len: 0xffff,
        }],
    ));
    let _ping = h1
        .spawn(&["ping", "-c", "3", "-i", "0.2", &h2.ip().to_string()])
        .unwrap();
    let msg = c.recv_where(|m| matches!(m.body, Message::PacketIn(_)));
    let Message::PacketIn(pin) = msg.body else {
        unreachable!()
    };
    assert_eq!(pin.reason, packet_in_reason::ACTION);
    assert_eq!(pin.cookie, 0x77);
    assert_eq!(pin.table_id, 0);
    assert_eq!(pin.in_port(), Some(PortNo(h1.ofport())));
    assert_eq!(
        &pin.data[6..12],
        &h1.mac().octets(),
        "source MAC of the ARP request"
    );
    assert_eq!(&pin.data[12..14], &[0x08, 0x06]);
    assert_eq!(usize::from(pin.total_len), pin.data.len());

    // A frame sent with packet-out through the flow table reaches h2.
    c.flow_mod(flow(
        0,
        100,
        0x78,
        vec![OxmField::EthType(0x0800)],
        vec![Action::output(PortNo(h2.ofport()))],
    ));
    let mut capture = h2
        .spawn(&[
            "tcpdump", "-l", "-n", "-c", "1", "-i", "eth0", "udp", "port", "9999",
        ])
        .unwrap();
    capture
        .wait_for_stderr("listening on", Duration::from_secs(10))
        .unwrap();
    let frame = udp_frame(
        MacAddr::local(9),
        h2.mac(),
        Ipv4Addr::new(10, 9, 0, 9),
        h2.ip(),
        9999,
    );
    let out = PacketOut {
        buffer_id: OFP_NO_BUFFER,
        in_port: PortNo::CONTROLLER,
        actions: vec![Action::output(PortNo::TABLE)],
        data: frame,
    };
    assert!(c.transact(Message::PacketOut(out)).is_empty());
    capture
        .wait_timeout(Duration::from_secs(10))
        .expect("tcpdump saw the packet");
    let seen = capture.stdout().unwrap();
    assert!(seen.contains("10.9.0.9.4242 > 10.9.0.2.9999"), "{seen}");

    // Deleting a flow with send_flow_rem reports it.
    c.flow_mod(FlowMod {
        flags: flow_mod_flags::SEND_FLOW_REM,
        ..flow(2, 5, 0x99, vec![reg0(9)], vec![])
    });
    c.flow_mod(FlowMod::delete_strict(2, 5, Match::new(vec![reg0(9)])));
    let Message::FlowRemoved(removed) = c.recv_where(|m| matches!(m.body, Message::FlowRemoved(_))).body
    else {
        unreachable!()
    };
    assert_eq!(
        (removed.cookie, removed.priority, removed.table_id, removed.reason),
        (0x99, 5, 2, 2)
    );
    assert_eq!(removed.match_.fields, vec![reg0(9)]);

    // A hard timeout expires the flow by itself.
    c.flow_mod(FlowMod {
        flags: flow_mod_flags::SEND_FLOW_REM,
        hard_timeout: 1,
        ..flow(2, 6, 0x9a, vec![], vec![])
    });
    let Message::FlowRemoved(expired) = c
        .recv_where(|m| matches!(&m.body, Message::FlowRemoved(r) if r.cookie == 0x9a))
        .body
    else {
        unreachable!()
    };
    assert_eq!((expired.reason, expired.hard_timeout), (1, 1));

    // Ports coming and going are announced.
    let h3 = lab
        .add_host(HostSpec::new(
            "h3",
            "br0",
            Ipv4Addr::new(10, 9, 0, 3),
            24,
            MacAddr::local(3),
        ))
        .unwrap();
    let Message::PortStatus(added) = c
        .recv_where(|m| matches!(&m.body, Message::PortStatus(p) if p.reason == port_reason::ADD))
        .body
    else {
        unreachable!()
    };
    assert_eq!(added.desc.name, h3.port());
    assert_eq!(added.desc.port_no, PortNo(h3.ofport()));
    lab.remove_host(&h3).unwrap();
    let Message::PortStatus(deleted) = c
        .recv_where(|m| matches!(&m.body, Message::PortStatus(p) if p.reason == port_reason::DELETE))
        .body
    else {
        unreachable!()
    };
    assert_eq!(deleted.desc.name, h3.port());
}

#[test]
fn switch_echo_requests_are_decoded_and_answered() {
    let (lab, _bridge) = lab_with_bridge("br0");
    let mut c = primary(&lab, "br0", Version::OF13);
    lab.vsctl(&["set", "Controller", "br0", "inactivity_probe=1000"])
        .unwrap();
    let probe = c.recv_where(|m| matches!(m.body, Message::EchoRequest(_)));
    let reply = OfpMessage::new(
        Version::OF13,
        probe.xid,
        Message::EchoReply(match probe.body {
            Message::EchoRequest(d) => d,
            _ => unreachable!(),
        }),
    );
    c.send_msg(&reply);
    // The connection is still alive and usable afterwards.
    assert!(c.barrier().iter().all(|m| !matches!(m.body, Message::Error(_))));
}

#[test]
fn roles_follow_generation_ids() {
    let (lab, _bridge) = lab_with_bridge("br0");
    let mut c = primary(&lab, "br0", Version::OF13);
    let xid = c.send(Message::RoleRequest(Role {
        role: ControllerRole::MASTER,
        generation_id: 10,
    }));
    let reply = c.recv_where(|m| m.xid == xid);
    assert_eq!(
        reply.body,
        Message::RoleReply(Role {
            role: ControllerRole::MASTER,
            generation_id: 10
        })
    );

    let stale = c.transact(Message::RoleRequest(Role {
        role: ControllerRole::SLAVE,
        generation_id: 9,
    }));
    assert_eq!(error_names(Version::OF13, &stale), vec!["OFPRRFC_STALE"]);

    let xid = c.send(Message::RoleRequest(Role {
        role: ControllerRole::SLAVE,
        generation_id: 11,
    }));
    let reply = c.recv_where(|m| m.xid == xid);
    assert_eq!(
        reply.body,
        Message::RoleReply(Role {
            role: ControllerRole::SLAVE,
            generation_id: 11
        })
    );
    // A slave may not change the flow table.
    let refused = c.transact(Message::FlowMod(flow(0, 1, 0, vec![], vec![])));
    assert_eq!(error_names(Version::OF13, &refused), vec!["OFPBRC_IS_SECONDARY"]);
}

#[test]
fn asynchronous_configuration_is_set_and_read_back() {
    let (lab, _bridge) = lab_with_bridge("br0");
    let mut c = primary(&lab, "br0", Version::OF13);
    // Slaves told to receive packet-ins sent by actions, as flowgate's do.
    let config = AsyncConfig {
        packet_in_mask: [0b011, 0b010],
        port_status_mask: [0b111, 0b111],
        flow_removed_mask: [0b1111, 0],
    };
    assert!(c.transact(Message::SetAsync(config)).is_empty());
    let xid = c.send(Message::GetAsyncRequest);
    assert_eq!(
        c.recv_where(|m| m.xid == xid).body,
        Message::GetAsyncReply(config)
    );
}

/// Opens a bundle, adds `flows`, commits, and returns every error.
fn bundle(c: &mut Conn, id: u32, flows: Vec<FlowMod>) -> Vec<(u32, ErrorMsg)> {
    let v = c.version;
    let xid = c.send(Message::BundleControl(BundleControl::new(
        id,
        BundleCtrlType::OPEN_REQUEST,
        bundle_flags::ATOMIC,
    )));
    let Message::BundleControl(reply) = c.recv_where(|m| m.xid == xid).body else {
        panic!("no bundle reply")
    };
    assert_eq!(
        (reply.bundle_id, reply.ctrl_type),
        (id, BundleCtrlType::OPEN_REPLY)
    );
    let mut xids = Vec::new();
    for fm in flows {
        let xid = c.xid();
        xids.push(xid);
        let add = BundleAdd {
            bundle_id: id,
            flags: bundle_flags::ATOMIC,
            message: Box::new(OfpMessage::new(v, xid, Message::FlowMod(fm))),
            properties: Vec::new(),
        };
        c.send_msg(&OfpMessage::new(v, xid, Message::BundleAdd(add)));
    }
    let commit = c.send(Message::BundleControl(BundleControl::new(
        id,
        BundleCtrlType::COMMIT_REQUEST,
        bundle_flags::ATOMIC,
    )));
    let mut errors = Vec::new();
    for m in c.barrier() {
        match m.body {
            Message::Error(e) => errors.push((m.xid, e)),
            Message::BundleControl(b) if m.xid == commit => {
                assert_eq!(b.ctrl_type, BundleCtrlType::COMMIT_REPLY)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    errors
}

fn bundles_apply_atomically(version: Version) {
    let (lab, bridge) = lab_with_bridge("br0");
    let mut c = Conn::connect(bridge.mgmt_socket(), version);
    let good: Vec<FlowMod> = (0..3)
        .map(|i| flow(0, 10, i, vec![reg0(i as u32)], vec![]))
        .collect();
    assert!(bundle(&mut c, 1, good).is_empty());
    assert_eq!(dump(&lab, "br0").len(), 3);

    // A message the switch refuses when it is added (goto_table backwards)
    // is reported against that message.
    let bad = FlowMod {
        cookie: 98,
        ..FlowMod::add(5, 1, Match::default(), vec![Instruction::GotoTable(1)])
    };
    let errors = bundle(&mut c, 2, vec![bad]);
    assert_eq!(
        error_names(
            version,
            &errors.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()
        ),
        vec!["OFPBIC_BAD_TABLE_ID"]
    );

    // A message that fails only when applied (it overlaps an installed flow
    // under check_overlap) fails the commit, and nothing of the bundle is
    // applied: the two good flows stay out. (An identical match would
    // replace the flow; a partly overlapping one conflicts.)
    let mut mixed: Vec<FlowMod> = (10..12)
        .map(|i| flow(0, 10, i, vec![reg0(i as u32)], vec![]))
        .collect();
    let reg0_even = OxmField::Reg {
        index: 0,
        value: Masked::new(0, 1),
    };
    mixed.push(FlowMod {
        flags: flow_mod_flags::CHECK_OVERLAP,
        ..flow(0, 10, 99, vec![reg0_even], vec![])
    });
    let errors = bundle(&mut c, 3, mixed);
    let names = error_names(
        version,
        &errors.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
    );
    assert!(names.contains(&"OFPFMFC_OVERLAP".to_string()), "{names:?}");
    assert!(names.contains(&"OFPBFC_MSG_FAILED".to_string()), "{names:?}");
    assert_eq!(
        dump(&lab, "br0").len(),
        3,
        "nothing of the failed bundle may be applied"
    );

    // Committing a bundle that was never opened.
    let missing = c.transact(Message::BundleControl(BundleControl::new(
        77,
        BundleCtrlType::COMMIT_REQUEST,
        0,
    )));
    assert_eq!(error_names(version, &missing), vec!["OFPBFC_BAD_ID"]);
}

#[test]
fn bundles_apply_atomically_in_openflow_1_3() {
    bundles_apply_atomically(Version::OF13);
}

#[test]
fn bundles_apply_atomically_in_openflow_1_4() {
    bundles_apply_atomically(Version::OF14);
}

#[test]
fn experimenter_messages_both_ways() {
    let (_lab, bridge) = lab_with_bridge("br0");
    let mut c = Conn::connect(bridge.mgmt_socket(), Version::OF13);
    // NXT_SET_CONTROLLER_ID (20) is accepted.
    let set_id = Experimenter {
        experimenter: NX_VENDOR_ID,
        exp_type: 20,
        data: vec![0, 0, 0, 0, 0, 0, 0, 7],
    };
    assert!(c.transact(Message::Experimenter(set_id)).is_empty());
    // NXT_TLV_TABLE_REQUEST (25) is answered with NXT_TLV_TABLE_REPLY (26).
    let xid = c.send(Message::Experimenter(Experimenter {
        experimenter: NX_VENDOR_ID,
        exp_type: 25,
        data: vec![],
    }));
    let Message::Experimenter(reply) = c.recv_where(|m| m.xid == xid).body else {
        panic!("no TLV table reply")
    };
    assert_eq!((reply.experimenter, reply.exp_type), (NX_VENDOR_ID, 26));
}

/// Deliberately bad requests, each with the error name Open vSwitch must
/// answer and this codec must decode.
#[test]
fn errors_from_open_vswitch_decode_to_their_names() {
    let (lab, bridge) = lab_with_bridge("br0");
    let v = Version::OF13;
    let mut c = Conn::connect(bridge.mgmt_socket(), v);
    let ip = OxmField::EthType(0x0800);
    let apply = |a: Vec<Action>| vec![Instruction::ApplyActions(a)];
    let fm = |fields: Vec<OxmField>, instructions: Vec<Instruction>| {
        Message::FlowMod(FlowMod::add(0, 1, Match::new(fields), instructions))
    };
    let nx = |body: Vec<u8>| Action::Experimenter {
        experimenter: NX_VENDOR_ID,
        body,
    };
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
            Message::MultipartRequest(openflow::MultipartRequest::new(MultipartRequestBody::Unknown {
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
            fm(vec![OxmField::TcpDst(Masked::exact(80))], vec![]),
        ),
        (
            "OFPBMC_BAD_FIELD",
            fm(
                vec![OxmField::Unknown(UnknownOxm {
                    header: OxmHeader::new(0x8000, 120, false, 2),
                    payload: vec![0, 1],
                })],
                vec![],
            ),
        ),
        (
            "OFPBAC_BAD_OUT_PORT",
            fm(vec![], apply(vec![Action::output(PortNo(0xffff_ff01))])),
        ),
        (
            "OFPBAC_BAD_TYPE",
            fm(
                vec![],
                apply(vec![Action::Unknown {
                    action_type: 99,
                    body: vec![0; 4],
                }]),
            ),
        ),
        (
            "OFPBAC_BAD_VENDOR_TYPE",
            fm(vec![], apply(vec![nx(vec![0, 200, 0, 0, 0, 0, 0, 0])])),
        ),
        (
            "OFPBAC_BAD_VENDOR",
            fm(
                vec![],
                apply(vec![Action::Experimenter {
                    experimenter: 0x00ab_cdef,
                    body: vec![0; 8],
                }]),
            ),
        ),
        (
            "OFPBAC_BAD_SET_ARGUMENT",
            fm(vec![], apply(vec![Action::SetField(OxmField::InPort(PortNo(3)))])),
        ),
        (
            "OFPBAC_BAD_SET_ARGUMENT",
            fm(vec![], apply(vec![Action::SetField(OxmField::EthType(0x0800))])),
        ),
        (
            "OFPBAC_MATCH_INCONSISTENT",
            fm(
                vec![],
                apply(vec![Action::SetField(OxmField::Ipv4Src(Masked::exact(
                    Ipv4Addr::LOCALHOST,
                )))]),
            ),
        ),
        (
            "NXBAC_BAD_CONJUNCTION",
            fm(
                vec![ip.clone()],
                apply(vec![Action::Conjunction {
                    id: 1,
                    clause: 0,
                    n_clauses: 1,
                }]),
            ),
        ),
        (
            "OFPBAC_BAD_ARGUMENT",
            fm(
                vec![ip.clone()],
                // force without commit
                apply(vec![Action::Ct(Ct {
                    flags: openflow::action::ct_flags::FORCE,
                    zone: CtZone::Immediate(1),
                    recirc_table: NX_CT_RECIRC_NONE,
                    alg: 0,
                    actions: vec![],
                })]),
            ),
        ),
        (
            "OFPBIC_BAD_TABLE_ID",
            Message::FlowMod(FlowMod::add(
                3,
                1,
                Match::default(),
                vec![Instruction::GotoTable(1)],
            )),
        ),
        (
            "OFPBIC_UNKNOWN_INST",
            fm(
                vec![],
                vec![Instruction::Unknown {
                    instruction_type: 99,
                    body: vec![0; 4],
                }],
            ),
        ),
        (
            "OFPFMFC_BAD_COMMAND",
            Message::FlowMod(FlowMod {
                command: FlowModCommand::Unknown(9),
                ..FlowMod::add(0, 1, Match::default(), vec![])
            }),
        ),
        (
            "OFPFMFC_BAD_TABLE_ID",
            Message::FlowMod(FlowMod::add(255, 1, Match::default(), vec![])),
        ),
    ];
    let mut failures = Vec::new();
    for (want, msg) in cases {
        let label = format!("{msg:?}");
        let xid = c.send(msg);
        let errors = c.errors_for(xid);
        let names = error_names(v, &errors);
        if names != [want] {
            failures.push(format!("{want}: got {names:?} for {label}"));
        }
        for e in &errors {
            assert_eq!(
                e.offending_header().map(|h| h.xid),
                Some(xid),
                "error data carries the request"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A hello without a common version fails the handshake.
    let only13 = lab
        .add_bridge_with("br13", &BridgeOptions::default().protocols(&["OpenFlow13"]))
        .unwrap();
    let mut raw = std::os::unix::net::UnixStream::connect(only13.mgmt_socket()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = OfpMessage::new(
        Version::OF10,
        1,
        Message::Hello(Hello::with_versions(&[Version::OF10])),
    );
    use std::io::{Read, Write};
    raw.write_all(&hello.to_bytes().unwrap()).unwrap();
    let mut received = Vec::new();
    let _ = raw.read_to_end(&mut received);
    let mut rest = received.as_slice();
    let mut names = Vec::new();
    while let Ok(Some(len)) = openflow::message_length(rest) {
        if let Ok(OfpMessage {
            version,
            body: Message::Error(e),
            ..
        }) = OfpMessage::decode(&rest[..len])
        {
            names.push(e.code.describe(version));
        }
        rest = &rest[len..];
    }
    assert_eq!(names, vec!["OFPHFC_INCOMPATIBLE"]);
}
