//! Two controllers on one real Open vSwitch bridge, as two flowgate nodes
//! share every switch: only the MASTER changes flows; a SLAVE sends nothing
//! whatever it wants, yet hears packet-ins; a slave promoted with a larger
//! generation id takes over without a single flow-mod when its desired set
//! equals the switch's flows; the master it replaced, unaware, has its
//! changes refused by the switch (fencing), and a stale claim is refused.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Bed, DPID, FORWARDING, Harness, OTHER, duration_of, forwarding_flows, other_flows};
use controller::{ControllerConfig, ControllerEvent, Flow, RoleClaim, SwitchRole};
use openflow::{Action, Instruction, Match, PacketOut, PortNo};

fn harness(bed: &Bed, name: &str, role: RoleClaim) -> Harness {
    let socket: PathBuf = bed.lab.run_dir().join(format!("{name}.sock"));
    let config = ControllerConfig {
        role,
        ..ControllerConfig::default()
    };
    Harness::start(socket, config)
}

/// Points the bridge at every harness's socket.
fn connect_all(bed: &Bed, harnesses: &[&Harness]) {
    let targets: Vec<String> = harnesses
        .iter()
        .map(|h| format!("unix:{}", h.socket.display()))
        .collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    bed.lab.set_controllers("br0", &targets).unwrap();
}

fn wait_role(h: &Harness, role: SwitchRole) {
    testbed::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        h.controller.switch(DPID).is_some_and(|s| s.role == role)
    })
    .unwrap_or_else(|_| {
        panic!(
            "the switch did not grant {role:?}: {:?}",
            h.controller.switch(DPID).map(|s| s.role)
        )
    });
}

/// The flows of the bridge without what changes as they sit there.
fn identities(bed: &Bed) -> Vec<String> {
    let mut flows: Vec<String> = bed
        .dump()
        .iter()
        .map(|f| {
            f.split(", ")
                .filter(|kv| {
                    !["duration=", "n_packets=", "n_bytes=", "idle_age="]
                        .iter()
                        .any(|p| kv.starts_with(p))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    flows.sort();
    flows
}

#[test]
fn a_promoted_slave_takes_over_without_a_flow_mod_and_the_old_master_is_fenced() {
    let bed = Bed::new();
    let a = harness(&bed, "a", RoleClaim::Master { generation_id: 1 });
    let b = harness(&bed, "b", RoleClaim::Slave { generation_id: 1 });
    connect_all(&bed, &[&a, &b]);
    wait_role(&a, SwitchRole::Master);
    wait_role(&b, SwitchRole::Slave);
    a.publish_and_sync(DPID, |set| {
        set.set_owner(FORWARDING, forwarding_flows());
        set.set_owner(OTHER, other_flows(10, 7));
    });
    let installed = identities(&bed);
    assert_eq!(installed.len(), 12);

    // The slave wants something else: it sends nothing.
    b.controller
        .desired()
        .update(DPID, |set| set.set_owner(OTHER, other_flows(3, 9)));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(identities(&bed), installed, "a slave changed the flows");
    assert_eq!(b.controller.metrics().flow_mods_total(), 0);
    // Now it wants what the master installed, as a node that compiled the
    // same model would.
    b.controller.desired().update(DPID, |set| {
        set.set_owner(FORWARDING, forwarding_flows());
        set.set_owner(OTHER, other_flows(10, 7));
    });
    let before = bed.dump();
    std::thread::sleep(Duration::from_millis(1100)); // flow ages advance a second

    // B takes over while A, unaware, still claims to be master.
    b.controller.set_role(RoleClaim::Master { generation_id: 2 });
    wait_role(&b, SwitchRole::Master);
    let generation = b.controller.desired().update(DPID, |_| {});
    b.rt.block_on(
        b.controller
            .wait_synced(DPID, generation, Duration::from_secs(20)),
    )
    .expect("the new master in sync");
    assert_eq!(
        b.controller.metrics().flow_mods_total(),
        0,
        "a takeover with nothing changed sends no flow-mod"
    );
    let after = bed.dump();
    assert_eq!(identities(&bed), installed);
    for (then, now) in before.iter().zip(&after) {
        assert!(
            duration_of(now) > duration_of(then),
            "re-installed: {then} / {now}"
        );
    }
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();

    // The old master's change is refused by the switch, which demoted it.
    let sent_by_a = a.controller.metrics().flow_mods_total();
    a.controller
        .desired()
        .update(DPID, |set| set.remove_owner(FORWARDING));
    wait_role(&a, SwitchRole::Fenced);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(identities(&bed), installed, "a demoted master changed the flows");
    assert!(
        a.controller.metrics().flow_mods_total() - sent_by_a <= 2,
        "at most the one round the switch refused"
    );
    bed.h1.ping_within(bed.h2.ip(), Duration::from_secs(10)).unwrap();

    // Claiming MASTER again with its old generation id is refused too.
    a.controller.set_role(RoleClaim::Slave { generation_id: 2 });
    wait_role(&a, SwitchRole::Slave);
    a.controller.set_role(RoleClaim::Master { generation_id: 1 });
    wait_role(&a, SwitchRole::Fenced);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(identities(&bed), installed, "a stale master changed the flows");
    // The new master's changes go through.
    b.publish_and_sync(DPID, |set| set.remove_owner(OTHER));
    assert_eq!(bed.dump().len(), 2);
}

#[test]
fn slaves_hear_the_packet_ins_of_controller_actions() {
    let bed = Bed::new();
    let mut a = harness(&bed, "a", RoleClaim::Master { generation_id: 5 });
    let mut b = harness(&bed, "b", RoleClaim::Slave { generation_id: 5 });
    connect_all(&bed, &[&a, &b]);
    wait_role(&a, SwitchRole::Master);
    wait_role(&b, SwitchRole::Slave);
    let to_controller = Flow::new(
        0,
        1,
        Match::default(),
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: PortNo::CONTROLLER,
            max_len: 0xffff,
        }])],
    );
    a.publish_and_sync(DPID, |set| set.set_owner(OTHER, [to_controller]));
    // The master sends a frame through the table; both hear it back.
    let frame = vec![0xff; 60];
    let out = PacketOut {
        buffer_id: openflow::OFP_NO_BUFFER,
        in_port: PortNo(1),
        actions: vec![Action::output(PortNo::TABLE)],
        data: frame.clone(),
    };
    a.rt.block_on(a.controller.packet_out(DPID, out.clone())).unwrap();
    for h in [&mut a, &mut b] {
        let event = h.wait_event(Duration::from_secs(10), |e| {
            matches!(e, ControllerEvent::PacketIn { .. })
        });
        let ControllerEvent::PacketIn { packet_in, .. } = event else {
            unreachable!()
        };
        assert_eq!(packet_in.data, frame);
    }
    // A slave's own packet-outs are not sent.
    b.rt.block_on(b.controller.packet_out(DPID, out)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.controller.metrics().packet_ins.get(["action"]), 1);
}
