//! The controller against a real Open vSwitch: flows get installed and stay
//! equal to the desired set through owner changes, switch restarts and
//! controller restarts, with real traffic between hosts in namespaces.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Bed, DPID, FORWARDING, Harness, OTHER, duration_of, forwarding_flows, other_flows, packets_of};
use controller::{ControllerConfig, ControllerEvent, Flow};
use openflow::{Action, Instruction, Match, Message, OfpMessage, PacketOut, PortNo, Version};

#[test]
fn installs_the_desired_flows_and_only_changes_what_changed() {
    let bed = Bed::new();
    let h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    h.publish_and_sync(DPID, |set| {
        set.set_owner(FORWARDING, forwarding_flows());
        set.set_owner(OTHER, other_flows(10, 7));
    });
    let flows = bed.dump();
    assert_eq!(flows.len(), 12, "{flows:#?}");
    assert!(
        flows
            .iter()
            .any(|f| f.contains("cookie=0x100000000000001") && f.contains("in_port=1 actions=output:2"))
    );
    assert_eq!(
        flows
            .iter()
            .filter(|f| f.contains("cookie=0x200000000000002"))
            .count(),
        10
    );
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();
    let info = h.controller.switch(DPID).unwrap();
    assert!(info.bundles, "Open vSwitch supports bundles");
    assert_eq!((info.flows_desired, info.flows_installed), (12, 12));

    // Change one owner: five of its ten flows go to another port.
    let sent_before = h.controller.metrics().flow_mods_total();
    let forwarding_before: Vec<String> = bed.dump().into_iter().filter(|f| f.contains("in_port")).collect();
    std::thread::sleep(Duration::from_millis(1100)); // durations advance a second
    h.publish_and_sync(DPID, |set| {
        let mut flows = other_flows(10, 7);
        flows.splice(5.., other_flows(10, 8).into_iter().skip(5));
        set.set_owner(OTHER, flows);
    });
    assert_eq!(
        h.controller.metrics().flow_mods_total() - sent_before,
        5,
        "only the five changed flows"
    );
    let after = bed.dump();
    assert_eq!(after.iter().filter(|f| f.contains("actions=output:8")).count(), 5);
    // The forwarding flows were not touched: their counters (non-zero from
    // the ping above) were not reset and their age kept growing.
    for (before, now) in forwarding_before
        .iter()
        .zip(after.iter().filter(|f| f.contains("in_port")))
    {
        assert!(duration_of(now) > duration_of(before), "{before} / {now}");
        assert!(packets_of(before) > 0, "{before}");
        assert!(packets_of(now) >= packets_of(before), "{before} / {now}");
    }

    // Removing an owner removes exactly its flows.
    h.publish_and_sync(DPID, |set| set.remove_owner(OTHER));
    assert_eq!(bed.dump().len(), 2);
}

#[test]
fn a_restarted_switch_gets_its_flows_and_traffic_back() {
    let bed = Bed::new();
    let mut h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    h.publish_and_sync(DPID, |set| set.set_owner(FORWARDING, forwarding_flows()));
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();

    // The first sync's reconcile added two flows too.
    h.forget_events();
    bed.lab.restart_vswitchd().unwrap();
    // Open vSwitch lost its flows; the controller sees the switch come back
    // with an empty table and reinstalls them.
    h.wait_event(Duration::from_secs(30), |e| {
        matches!(e, ControllerEvent::Reconciled { datapath_id, report } if *datapath_id == DPID && report.adds == 2)
    });
    assert_eq!(bed.dump().len(), 2);
    testbed::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        bed.h1.ping(bed.h2.ip()).is_ok()
    })
    .expect("traffic back after the switch restart");
}

#[test]
fn a_flow_the_switch_rejects_is_reported_once_and_not_retried() {
    let bed = Bed::new();
    let mut h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    let bad = Flow::new(
        0,
        50,
        Match::default(),
        vec![Instruction::ApplyActions(vec![Action::output(PortNo(
            0xffff_ff01,
        ))])],
    );
    h.controller.desired().update(DPID, |set| {
        set.set_owner(FORWARDING, forwarding_flows());
        set.set_owner(OTHER, [bad]);
    });
    let event = h.wait_event(
        Duration::from_secs(20),
        |e| matches!(e, ControllerEvent::Reconciled { report, .. } if !report.rejected.is_empty()),
    );
    let ControllerEvent::Reconciled { report, .. } = event else {
        unreachable!()
    };
    assert_eq!(report.rejected[0].flow.cookie(), OTHER);
    assert_eq!(
        report.rejected[0].error.code.describe(Version::OF13),
        "OFPBAC_BAD_OUT_PORT"
    );
    assert_eq!(h.controller.metrics().errors.get(["OFPBAC_BAD_OUT_PORT"]), 1);
    // The good flows got in (a bundle commit never applies a refused flow,
    // and the rest is retried without it).
    testbed::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        bed.dump().len() == 2
    })
    .unwrap();
    let sent = h.controller.metrics().flow_mods_total();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(h.controller.metrics().flow_mods_total(), sent, "no retry loop");
    assert_eq!(h.controller.switch(DPID).unwrap().flows_rejected, 1);
}

#[test]
fn packet_ins_are_rate_limited_and_packet_outs_reach_hosts() {
    let bed = Bed::new();
    let config = ControllerConfig {
        packet_in_rate: 1,
        packet_in_burst: 3,
        ..ControllerConfig::default()
    };
    let mut h = Harness::start(bed.socket.clone(), config);
    bed.connect();
    // Table 0 sends everything to the controller.
    let to_controller = Flow::new(
        0,
        1,
        Match::default(),
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: PortNo::CONTROLLER,
            max_len: 0xffff,
        }])],
    );
    h.publish_and_sync(DPID, |set| set.set_owner(OTHER, [to_controller]));

    // Twenty frames through the table come back as packet-ins: the first
    // three pass, the rest are dropped by the bucket.
    let frame = arp_request(bed.h1.mac().octets(), [10, 7, 0, 1], [10, 7, 0, 9]);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let out = PacketOut {
            buffer_id: openflow::OFP_NO_BUFFER,
            in_port: PortNo(1),
            actions: vec![Action::output(PortNo::TABLE)],
            data: frame.clone(),
        };
        h.rt.block_on(h.controller.packet_out(DPID, out)).unwrap();
    }
    let event = h.wait_event(Duration::from_secs(10), |e| {
        matches!(e, ControllerEvent::PacketIn { .. })
    });
    let ControllerEvent::PacketIn { packet_in, .. } = event else {
        unreachable!()
    };
    assert_eq!(packet_in.data, frame);
    assert_eq!(packet_in.in_port(), Some(PortNo(1)));
    testbed::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        h.controller.metrics().packet_ins.get(["action"]) == 20
    })
    .unwrap();
    // The bucket refills one a second: a slow machine that took longer to
    // bring the twenty back lets through one more for each second.
    let refills = started.elapsed().as_secs_f64().ceil() as u64;
    let dropped = h
        .controller
        .metrics()
        .packet_ins_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped <= 17 && dropped + 3 + refills >= 20,
        "{dropped} of 20 dropped in {refills} s"
    );

    // A packet-out to h2's port is seen by h2.
    let mut capture = bed
        .h2
        .spawn(&["tcpdump", "-l", "-n", "-c", "1", "-i", "eth0", "arp"])
        .unwrap();
    capture
        .wait_for_stderr("listening on", Duration::from_secs(10))
        .unwrap();
    let out = PacketOut {
        buffer_id: openflow::OFP_NO_BUFFER,
        in_port: PortNo::CONTROLLER,
        actions: vec![Action::output(PortNo(2))],
        data: frame,
    };
    h.rt.block_on(h.controller.packet_out(DPID, out)).unwrap();
    capture
        .wait_timeout(Duration::from_secs(10))
        .expect("h2 saw the frame");
    assert!(
        capture
            .stdout()
            .unwrap()
            .contains("Request who-has 10.7.0.9 tell 10.7.0.1")
    );
}

/// An ARP request from `mac`/`spa` for `tpa`.
fn arp_request(mac: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

#[test]
fn a_malformed_peer_is_dropped_and_other_switches_are_unaffected() {
    use std::io::{Read, Write};
    let bed = Bed::new();
    let h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    h.publish_and_sync(DPID, |set| set.set_owner(FORWARDING, forwarding_flows()));

    let attempts: [&[u8]; 3] = [
        // A header claiming a length shorter than itself.
        &[4, 0, 0, 4, 0, 0, 0, 1],
        // A hello, then a flow-mod whose match length points past its end.
        &{
            let mut b = OfpMessage::new(
                Version::OF13,
                1,
                Message::Hello(openflow::Hello::with_versions(&[Version::OF13])),
            )
            .to_bytes()
            .unwrap();
            b.extend_from_slice(&[4, 6, 0, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
            b
        },
        // Half a header, then silence: the handshake times out.
        &[4, 0],
    ];
    let config_timeout = ControllerConfig::default().handshake_timeout;
    for bytes in attempts {
        let mut s = std::os::unix::net::UnixStream::connect(&bed.socket).unwrap();
        s.set_read_timeout(Some(config_timeout + Duration::from_secs(5)))
            .unwrap();
        s.write_all(bytes).unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        // The controller closes the connection (read returns EOF).
        let _ = s.read_to_end(&mut sink);
        assert!(started.elapsed() < config_timeout + Duration::from_secs(5));
    }
    assert!(
        h.controller
            .metrics()
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    // The real switch is still connected and still obeys.
    assert!(h.controller.switch(DPID).is_some());
    h.publish_and_sync(DPID, |set| set.set_owner(OTHER, other_flows(3, 7)));
    assert_eq!(bed.dump().len(), 5);
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();
}

#[test]
fn metrics_render_as_prometheus_text() {
    let bed = Bed::new();
    let h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    h.publish_and_sync(DPID, |set| set.set_owner(FORWARDING, forwarding_flows()));
    let text = h.controller.render_metrics();
    assert!(text.contains("flowgate_switches_connected 1"), "{text}");
    assert!(
        text.contains(&format!(
            "flowgate_flows_installed{{datapath_id=\"{DPID:016x}\"}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains("flowgate_flow_mods_sent_total{command=\"add\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("flowgate_reconcile_duration_seconds_count 1"),
        "{text}"
    );
}

#[test]
fn a_restarted_controller_waits_for_its_publisher_before_touching_flows() {
    let bed = Bed::new();
    let first = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    first.publish_and_sync(DPID, |set| set.set_owner(FORWARDING, forwarding_flows()));
    drop(first);

    // The new controller knows nothing yet; its publisher (the data plane)
    // republishes only once it has seen the switch.
    let config = ControllerConfig {
        initial_desired_wait: Some(Duration::from_secs(60)),
        ..ControllerConfig::default()
    };
    let mut second = Harness::start(bed.socket.clone(), config);
    let holding = second.wait_event(
        Duration::from_secs(30),
        |e| matches!(e, ControllerEvent::Holding { datapath_id, .. } if *datapath_id == DPID),
    );
    let ControllerEvent::Holding { ticket, .. } = holding else {
        unreachable!()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bed.dump().len(), 2, "an empty desired set deleted nothing");
    assert_eq!(second.controller.metrics().flow_mods_total(), 0);

    // Publishing alone does not end the wait: the publisher may still be
    // learning what the switch needs.
    let desired = second.controller.desired();
    desired.update(DPID, |set| set.set_owner(OTHER, other_flows(3, 7)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bed.dump().len(), 2, "a partial set is not applied");

    let generation = desired.update(DPID, |set| {
        set.remove_owner(OTHER);
        set.set_owner(FORWARDING, forwarding_flows());
    });
    // Releasing an older wait does not end this one.
    desired.release(DPID, ticket - 1);
    let early = second.rt.block_on(second.controller.wait_synced(
        DPID,
        generation,
        Duration::from_millis(500),
    ));
    assert!(early.is_err(), "released by an older ticket");
    desired.release(DPID, ticket);
    second
        .rt
        .block_on(
            second
                .controller
                .wait_synced(DPID, generation, Duration::from_secs(20)),
        )
        .expect("in sync once released");
    assert_eq!(
        second.controller.metrics().flow_mods_total(),
        0,
        "the same flows: nothing to send"
    );
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();
}
