//! Security groups end to end on the cloud test bed, driven by boto3 and
//! checked with real packets: groups as sources across hypervisors and
//! their membership changes, two accounts' isolation, anti-spoofing, and
//! per-rule packet counts read back from the switches.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::cloud::Cloud;

/// What the scripts of this file need beyond `Cloud::env`.
fn env(cloud: &Cloud) -> Vec<(&'static str, String)> {
    let mut env = cloud.env();
    env.push(("FLOWGATE_LAB_NS", cloud.topology.lab.name().to_string()));
    env.push(("FLOWGATE_A_ACCOUNT", cloud.keys.account_id.clone()));
    env
}

#[test]
fn a_group_admits_its_members_across_hypervisors_as_membership_changes() {
    let cloud = Cloud::start();
    cloud.server.client_env_ok(
        "cloud_groups_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &env(&cloud),
        Duration::from_secs(300),
    );
}

#[test]
fn accounts_are_isolated_and_instances_cannot_spoof() {
    let cloud = Cloud::start();
    let bob = cloud.server.account("bob");
    cloud.server.client_env_ok(
        "cloud_isolation_boto3.py",
        &[("A", &cloud.keys), ("B", &bob)],
        &cloud.image,
        &env(&cloud),
        Duration::from_secs(300),
    );
}

#[test]
fn rules_count_the_packets_they_admit() {
    let cloud = Cloud::start();
    cloud.server.client_env_ok(
        "cloud_counters_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &env(&cloud),
        Duration::from_secs(300),
    );
}
