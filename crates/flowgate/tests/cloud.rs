//! flowgate end to end on the cloud test bed (testbed::CloudTopology: two
//! hypervisor bridges, the physical network, a public gateway, an external
//! host): the real `flowgate serve` with its controller, data plane and
//! netns driver, driven by boto3, checked with real packets.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::cloud::Cloud;

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
