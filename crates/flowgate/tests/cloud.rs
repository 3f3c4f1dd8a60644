//! flowgate end to end on the cloud test bed (testbed::CloudTopology: two
//! hypervisor bridges, the physical network, a public gateway, an external
//! host): the real `flowgate serve` with its controller, data plane and
//! netns driver, driven by boto3, checked with real packets.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::cloud::{Cloud, DEFAULT_ZONE};

#[test]
fn the_seed_scenario_end_to_end_with_real_packets() {
    let cloud = Cloud::start();
    cloud.server.client_env_ok(
        "cloud_seed_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &cloud.env(),
        Duration::from_secs(300),
    );
}

#[test]
fn a_restarted_flowgate_keeps_instances_bound_and_flows_untouched() {
    let mut cloud = Cloud::start();
    let state = cloud.server.data_dir().with_file_name("restart-state.json");
    let state = state.to_str().unwrap();
    let env = cloud.env();
    let run = |cloud: &Cloud, phase: &str| {
        cloud.server.client_args_env_ok(
            "cloud_restart_boto3.py",
            &[phase, state],
            &[("A", &cloud.keys)],
            &cloud.image,
            &env,
            Duration::from_secs(120),
        );
    };
    run(&cloud, "setup");
    let before = cloud.flows();
    let taken = std::time::Instant::now();

    cloud.server.kill();
    run(&cloud, "outage");
    let log_before = cloud.server.log().len();
    cloud.server.launch();
    // Both bridges reconnect and their sessions report being in sync.
    let hypervisors = cloud.topology.hypervisors.len();
    testbed::wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        cloud.server.log()[log_before..].matches("switch in sync").count() >= hypervisors
    })
    .unwrap_or_else(|_| panic!("the switches did not sync again:\n{}", cloud.server.log()));
    run(&cloud, "after");

    // Nothing was deleted, added or re-added: the same flows, older by the
    // time since they were first dumped.
    // Taken before the dump: a flow untouched since the first dump is at
    // least this much older when dumped again, however slow the dumps.
    let elapsed = taken.elapsed().as_secs_f64();
    let after = cloud.flows();
    let log = &cloud.server.log()[log_before..];
    let before_keys: Vec<&String> = before.keys().collect();
    let after_keys: Vec<&String> = after.keys().collect();
    assert_eq!(
        before_keys, after_keys,
        "the flows changed across the restart:\n{log}"
    );
    for (flow, age) in &after {
        assert!(
            *age >= before[flow] + elapsed - 1.0,
            "re-installed across the restart ({age}s old, was {}s {elapsed}s ago): {flow}\n{log}",
            before[flow]
        );
    }
    let log = &cloud.server.log()[log_before..];
    assert!(
        !log.contains("flows reconciled"),
        "a restart with nothing changed sends no flow-mod:\n{log}"
    );
}

#[test]
fn an_external_hypervisor_binds_the_ports_its_virtualization_plugs() {
    let cloud = Cloud::start_with(&[("netns", DEFAULT_ZONE), ("external", "flowgate-1b")]);
    let mut env = cloud.env();
    env.push(("FLOWGATE_NETNS_ZONE", DEFAULT_ZONE.to_string()));
    env.push(("FLOWGATE_EXTERNAL_ZONE", "flowgate-1b".to_string()));
    env.push((
        "FLOWGATE_EXTERNAL_BRIDGE",
        cloud.topology.hypervisors[1].name.clone(),
    ));
    let vm_ns = format!("{}-vm", cloud.topology.lab.name());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cloud.server.client_env_ok(
            "cloud_external_boto3.py",
            &[("A", &cloud.keys)],
            &cloud.image,
            &env,
            Duration::from_secs(300),
        )
    }));
    // The script removes its "VM"; a script killed at its deadline cannot.
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &vm_ns])
        .output();
    result.unwrap();
}

#[test]
fn flowgate_trace_and_flows_agree_with_real_packets() {
    let cloud = Cloud::start();
    cloud.server.client_env_ok(
        "cloud_trace_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &cloud.env(),
        Duration::from_secs(300),
    );
}
