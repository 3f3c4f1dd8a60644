//! Flow statistics read on demand from a real Open vSwitch: per-cookie
//! packet counts after real traffic equal what `ovs-ofctl dump-flows`
//! reports, filtered by cookie as asked.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bed, DPID, FORWARDING, Harness, OTHER, field, forwarding_flows, other_flows, packets_of};
use controller::{ControllerConfig, ControllerError};

/// Packets `ovs-ofctl` reports for the flows of `cookie`.
fn ofctl_packets(bed: &Bed, cookie: u64) -> u64 {
    let wanted = format!("{cookie:#x}");
    bed.dump()
        .iter()
        .filter(|f| field(f, "cookie=") == wanted)
        .map(|f| packets_of(f))
        .sum()
}

#[test]
fn counters_per_cookie_match_what_the_switch_reports() {
    let bed = Bed::new();
    let h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    bed.connect();
    h.publish_and_sync(DPID, |set| {
        set.set_owner(FORWARDING, forwarding_flows());
        set.set_owner(OTHER, other_flows(4, 7));
    });
    let read = |cookie: u64, mask: u64| {
        h.rt.block_on(h.controller.flow_counters(cookie, mask, Duration::from_secs(5)))
            .unwrap()
    };
    let before = read(0, 0);
    assert_eq!(before[&FORWARDING].flows, 2);
    assert_eq!(before[&OTHER].flows, 4);

    let out = bed.h1.exec_ok(&[
        "ping",
        "-n",
        "-q",
        "-c",
        "5",
        "-i",
        "0.2",
        &bed.h2.ip().to_string(),
    ]);
    assert!(out.is_ok(), "{out:?}");
    // The datapath hands its counters to the flow table every few hundred
    // milliseconds: wait until the controller reads at least the five echo
    // requests and five replies (ARP comes on top) and agrees with what the
    // switch itself reports.
    let want = before[&FORWARDING].packets + 10;
    testbed::wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let now = read(FORWARDING, u64::MAX);
        now.len() == 1
            && now[&FORWARDING].packets >= want
            && now[&FORWARDING].packets == ofctl_packets(&bed, FORWARDING)
    })
    .expect("counters count the pings and agree with ovs-ofctl");
    let after = read(0, 0);
    assert!(after[&FORWARDING].bytes > before[&FORWARDING].bytes);
    assert_eq!(after[&OTHER].packets, 0, "no packet matches the other flows");

    // The mask selects by the cookie's kind byte only.
    let by_kind = read(OTHER & 0xff00_0000_0000_0000, 0xff00_0000_0000_0000);
    assert_eq!(by_kind.keys().copied().collect::<Vec<_>>(), vec![OTHER]);
}

#[test]
fn a_switch_that_is_not_connected_is_an_error() {
    let bed = Bed::new();
    let h = Harness::start(bed.socket.clone(), ControllerConfig::default());
    let result = h.rt.block_on(h.controller.flow_stats(
        DPID,
        openflow::FlowStatsRequest::all(),
        Duration::from_secs(1),
    ));
    assert!(
        matches!(result, Err(ControllerError::NotConnected(DPID))),
        "{result:?}"
    );
    // With no switch at all, the sum over switches is empty, not an error.
    let sums =
        h.rt.block_on(h.controller.flow_counters(0, 0, Duration::from_secs(1)));
    assert!(sums.unwrap().is_empty());
}
