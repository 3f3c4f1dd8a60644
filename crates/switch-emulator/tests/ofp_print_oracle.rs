//! `ovs-ofctl ofp-print` is the judge of the messages the emulator encodes
//! itself: OpenFlow 1.4 port descriptions, port statistics and port status
//! (layouts the codec keeps verbatim), next to their 1.3 forms.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use openflow::multipart::MultipartRequestBody;
use openflow::{Hello, Message, MultipartRequest, OfpMessage, PortNo, Version};
use switch_emulator::session::{Output, Session, SessionConfig};
use switch_emulator::{Datapath, Faults, SwitchSpec};

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
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("decode error") && !text.contains("***"), "{text}");
    text
}

/// A negotiated session of `version` and its switch.
fn session(version: Version) -> (Session, Datapath) {
    let spec = SwitchSpec {
        index: 7,
        datapath_id: 0xee_0000_0008,
        name: "emu7".into(),
        ports: 2,
        port_prefix: "vm".into(),
        max_flows: None,
    };
    let mut dp = Datapath::new(spec, Faults::default(), 0);
    let mut s = Session::new(1, SessionConfig::default(), Duration::ZERO);
    let mut out = Vec::new();
    s.start(&mut dp, &mut out);
    let hello = OfpMessage::new(version, 1, Message::Hello(Hello::with_versions(&[version])));
    s.handle(&mut dp, &hello.to_bytes().unwrap(), Duration::ZERO, &mut out);
    assert_eq!(s.version(), Some(version));
    (s, dp)
}

fn ask(s: &mut Session, dp: &mut Datapath, body: MultipartRequestBody) -> OfpMessage {
    let v = s.version().unwrap();
    let req = OfpMessage::new(v, 9, Message::MultipartRequest(MultipartRequest::new(body)));
    let mut out = Vec::new();
    s.handle(dp, &req.to_bytes().unwrap(), Duration::from_secs(3), &mut out);
    match out.pop() {
        Some(Output::Send(m)) => m,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn port_messages_print_like_open_vswitch_ones_in_1_3_and_1_4() {
    for version in [Version::OF13, Version::OF14] {
        let (mut s, mut dp) = session(version);
        let desc = ofp_print(&ask(&mut s, &mut dp, MultipartRequestBody::PortDesc));
        for name in ["vm1", "vm2", "emu7"] {
            assert!(desc.contains(&format!("({name})")), "{version}: {desc}");
        }
        assert!(desc.contains("addr:02:ee:00:07:00:01"), "{desc}");
        assert!(desc.contains("10GB-FD COPPER"), "{desc}");
        assert!(desc.contains("speed: 10000 Mbps now"), "{desc}");

        let stats = ofp_print(&ask(
            &mut s,
            &mut dp,
            MultipartRequestBody::PortStats { port_no: PortNo::ANY },
        ));
        assert!(stats.contains("3 ports"), "{stats}");
        assert!(stats.contains("port LOCAL: rx pkts=0"), "{stats}");
        assert!(stats.contains("duration=3"), "{stats}");

        let (_, status) = dp.add_port("tap0");
        let msg = s.async_message(&mut dp, &Message::PortStatus(status)).unwrap();
        let text = ofp_print(&msg);
        assert!(
            text.contains("OFPT_PORT_STATUS") && text.contains("ADD: 3(tap0)"),
            "{text}"
        );
    }
}
