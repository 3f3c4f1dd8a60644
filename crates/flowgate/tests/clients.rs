//! End-to-end tests of the EC2 API with the real clients: the `flowgate`
//! binary serves a private data directory; accounts come from `flowgate
//! admin`; Python scripts in tests/clients drive boto 2, boto3 and the AWS
//! CLI from the repo's venv and check every result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;

#[test]
fn seed_scenario_through_boto2_unchanged() {
    let server = Server::start("");
    let a = server.account("alice");
    let image = server.image("debian-12");
    server.client_ok("seed_boto2.py", &[], &[("A", &a)], &image);
}

#[test]
fn seed_scenario_through_boto3() {
    let server = Server::start("");
    let a = server.account("alice");
    let image = server.image("debian-12");
    server.client_ok("seed_boto3.py", &[], &[("A", &a)], &image);
}

#[test]
fn seed_scenario_through_the_aws_cli() {
    let server = Server::start("");
    let a = server.account("alice");
    let image = server.image("debian-12");
    server.client_ok("seed_awscli.py", &[], &[("A", &a)], &image);
}

#[test]
fn every_error_code_with_its_http_status() {
    let server = Server::start("[api]\naddresses_per_account = 3\n");
    let a = server.account("alice");
    let read_only_json = server.admin(&["key", "create", "alice", "--read-only", "--json"]);
    let r = common::Keys {
        account_id: a.account_id.clone(),
        access_key_id: common::field(&read_only_json, "access_key_id"),
        secret_access_key: common::field(&read_only_json, "secret_access_key"),
    };
    let image = server.image("debian-12");
    server.client_ok("errors.py", &[], &[("A", &a), ("R", &r)], &image);
}

#[test]
fn bad_expired_and_missing_signatures_sigv4_and_sigv2() {
    let server = Server::start("");
    let a = server.account("alice");
    server.client_ok("auth.py", &[], &[("A", &a)], "ami-00000000");
}

#[test]
fn accounts_are_isolated() {
    let server = Server::start("");
    let a = server.account("alice");
    let b = server.account("bob");
    let image = server.image("debian-12");
    server.client_ok("cross_account.py", &[], &[("A", &a), ("B", &b)], &image);
}

#[test]
fn everything_acknowledged_survives_a_kill_and_restart() {
    let mut server = Server::start("");
    let a = server.account("alice");
    let image = server.image("debian-12");
    let state = server.dir.0.join("acknowledged.json");
    let state = state.to_str().unwrap();
    server.client_ok("restart.py", &["populate", state], &[("A", &a)], &image);
    server.kill();
    server.launch();
    server.client_ok("restart.py", &["verify", state], &[("A", &a)], &image);
}

#[test]
fn admin_changes_reach_a_running_server_without_restart() {
    let server = Server::start("");
    let a = server.account("alice");
    let first = server.image("debian-12");
    // Added while serve runs: serve must pick it up by itself.
    let second = server.image("ubuntu-24.04");
    assert_ne!(first, second);
    server.client_ok("admin_live.py", &[&second], &[("A", &a)], &first);
    // And an account created while serve runs can sign requests at once.
    let b = server.account("bob");
    server.client_ok("admin_live.py", &[&second], &[("A", &b)], &first);
}

#[test]
fn admin_cli_shapes_and_refusals() {
    let server = Server::start("");
    let json = server.admin(&["account", "create", "carol", "--json"]);
    for field in ["account_id", "access_key_id", "secret_access_key"] {
        assert!(json.contains(&format!("\"{field}\":")), "{json}");
    }
    assert_eq!(common::field(&json, "account_id").len(), 12);
    let image = server.admin(&["image", "add", "alpine", "--json"]);
    assert!(common::field(&image, "image_id").starts_with("ami-"));
    let dup = server.admin_output(&["account", "create", "carol"]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("exists already"));
    let overlap = server.admin_output(&[
        "network",
        "add",
        "--cidr",
        "10.0.0.128/25",
        "--gateway",
        "10.0.0.129",
    ]);
    assert!(!overlap.status.success(), "overlapping networks are refused");
    let bad_gateway = server.admin_output(&[
        "pool",
        "add",
        "--cidr",
        "198.51.100.0/24",
        "--gateway",
        "192.0.2.1",
    ]);
    assert!(
        !bad_gateway.status.success(),
        "a gateway outside the pool is refused"
    );
    server.admin(&[
        "hypervisor",
        "add",
        "hv1",
        "--bridge",
        "br-int",
        "--uplink",
        "eth1",
        "--driver",
        "external",
    ]);
    let list = server.admin(&["hypervisor", "list", "--json"]);
    assert!(
        list.contains("\"name\":\"hv1\"") && list.contains("\"driver\":\"external\""),
        "{list}"
    );
    let accounts = server.admin(&["account", "list", "--json"]);
    assert!(accounts.contains("carol"));
    let status = server.admin(&["status", "--json"]);
    assert!(status.contains("\"accounts\":1"), "{status}");
}
