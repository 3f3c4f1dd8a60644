//! Three `flowgate serve` nodes on one PostgreSQL store manage the cloud
//! test bed from inside its namespace; every hypervisor bridge connects to
//! all three over TCP. The nodes elect one master of the switches; the
//! others are slaves.
//!
//! * The seed scenario runs through node A while node B is master; then B
//!   is killed with SIGKILL in the middle of a stream of API writes
//!   (through A and through B) and of a TCP connection through an Elastic
//!   IP (tests/clients/cloud_failover_boto3.py): no acknowledged write is
//!   lost, the connection never breaks, and rules written during the
//!   failover are enforced once another node took over (the takeover time
//!   is printed, and written down in docs/nodes.md).
//! * Then the new master is killed with nothing changing: the last node
//!   takes over without a single flow-mod, every flow untouched.
//! * A frozen master (SIGSTOP) is replaced, and once thawed, with a stale
//!   model and still believing it leads, it changes nothing: the switches
//!   fence it, and it steps down.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::cloud::CloudNodes;

/// Waits until `node`'s log has `count` lines containing `text`.
fn wait_log(nodes: &CloudNodes, node: usize, text: &str, count: usize) {
    testbed::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        nodes.nodes[node].log().matches(text).count() >= count
    })
    .unwrap_or_else(|_| {
        panic!(
            "node {node} did not log {text:?} {count} times:\n{}",
            nodes.nodes[node].log()
        )
    });
}

#[test]
fn a_node_killed_while_master_is_replaced_without_losing_writes_or_connections() {
    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;
    let mut cloud = CloudNodes::prepare(&["a", "b", "c"]);
    // B starts first, so that it is elected; A and C follow it.
    cloud.nodes[B].launch();
    wait_log(&cloud, B, "elected leader", 1);
    cloud.nodes[A].launch();
    cloud.nodes[C].launch();
    cloud.connect_all();
    let hypervisors = cloud.topology.hypervisors.len();
    wait_log(&cloud, B, "switch in sync", hypervisors);
    for follower in [A, C] {
        wait_log(&cloud, follower, "taking part in the election", 1);
        assert!(
            !cloud.nodes[follower].log().contains("elected leader"),
            "only B leads:\n{}",
            cloud.nodes[follower].log()
        );
    }

    let pid = cloud.nodes[B].child.as_ref().unwrap().id();
    let mut env = cloud.env(A);
    env.push(("FLOWGATE_PORT_B", cloud.nodes[B].port.to_string()));
    env.push(("FLOWGATE_PORT_C", cloud.nodes[C].port.to_string()));
    env.push(("FLOWGATE_KILL_PID", pid.to_string()));
    let logs: Vec<String> = [A, C]
        .iter()
        .map(|&n| cloud.nodes[n].dir.0.join("serve.log").display().to_string())
        .collect();
    env.push(("FLOWGATE_NODE_LOGS", logs.join(" ")));
    cloud.nodes[A].client_env_ok(
        "cloud_failover_boto3.py",
        &[("A", &cloud.keys)],
        &cloud.image,
        &env,
        Duration::from_secs(300),
    );
    cloud.nodes[B].kill();

    // Exactly one of A and C took over.
    let took_over: Vec<usize> = [A, C]
        .into_iter()
        .filter(|&n| {
            cloud.nodes[n]
                .log()
                .contains("took over as master: every switch in sync")
        })
        .collect();
    let [master] = took_over[..] else {
        panic!(
            "one new master, not {took_over:?}:\nA:\n{}\nC:\n{}",
            cloud.nodes[A].log(),
            cloud.nodes[C].log()
        )
    };
    let last = if master == A { C } else { A };

    // Nothing changes; the new master dies too. The last node takes over
    // without touching a flow.
    let before = cloud.flows();
    let taken = Instant::now();
    let log_before = cloud.nodes[last].log().len();
    cloud.nodes[master].kill();
    testbed::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        cloud.nodes[last].log()[log_before..].contains("took over as master: every switch in sync")
    })
    .unwrap_or_else(|_| panic!("the last node did not take over:\n{}", cloud.nodes[last].log()));
    let log = cloud.nodes[last].log()[log_before..].to_string();
    println!(
        "second takeover: {}",
        log.lines()
            .find(|l| l.contains("took over as master"))
            .unwrap_or_default()
    );
    assert!(
        !log.contains("flows reconciled"),
        "a takeover with nothing changed sends no flow-mod:\n{log}"
    );
    // Taken before the dump: a flow untouched since the first dump is at
    // least this much older when dumped again, however slow the dumps.
    let elapsed = taken.elapsed().as_secs_f64();
    let after = cloud.flows();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the flows changed across the takeover:\n{log}"
    );
    for (flow, age) in &after {
        assert!(
            *age >= before[flow] + elapsed - 1.0,
            "re-installed across the takeover ({age}s old, was {}s {elapsed}s ago): {flow}\n{log}",
            before[flow]
        );
    }
}

/// Sends `signal` (STOP, CONT) to a node's process.
fn signal(nodes: &CloudNodes, node: usize, signal: &str) {
    let pid = nodes.nodes[node].child.as_ref().unwrap().id().to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The flows of the hypervisor bridges that name `text`.
fn flows_naming(nodes: &CloudNodes, text: &str) -> usize {
    nodes.flows().keys().filter(|flow| flow.contains(text)).count()
}

#[test]
fn a_frozen_master_is_replaced_and_fenced_when_it_thaws() {
    const A: usize = 0;
    const B: usize = 1;
    // Faster than the defaults (3 s, 5 s): the database ends a silent
    // node's session after 4 s. A lease much shorter could lapse on a busy
    // machine before the freeze, and the test would not freeze a leader.
    let timing = "election_interval_ms = 100\nlease_ms = 2000\nsession_timeout_ms = 4000\n";
    let mut cloud = CloudNodes::prepare_with(&["a", "b"], timing);
    cloud.nodes[A].launch();
    wait_log(&cloud, A, "elected leader", 1);
    cloud.nodes[B].launch();
    cloud.connect_all();
    let hypervisors = cloud.topology.hypervisors.len();
    wait_log(&cloud, A, "switch in sync", hypervisors);
    wait_log(&cloud, B, "taking part in the election", 1);

    // A freezes (SIGSTOP: a paused VM, a stalled process). Its database
    // session goes silent and is ended; B is elected and takes over.
    signal(&cloud, A, "STOP");
    wait_log(&cloud, B, "took over as master: every switch in sync", 1);

    // A change only B knows of: a network, which the router on every
    // hypervisor never routes into.
    assert_eq!(flows_naming(&cloud, "10.9.0.0/24"), 0);
    cloud.nodes[B].admin(&["network", "add", "--cidr", "10.9.0.0/24", "--gateway", "10.9.0.1"]);
    testbed::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        flows_naming(&cloud, "10.9.0.0/24") >= hypervisors
    })
    .unwrap_or_else(|_| {
        panic!(
            "B did not install the new network's flows:\n{}",
            cloud.nodes[B].log()
        )
    });
    let before = cloud.flows();

    // A thaws, still believing it leads, with a model from before the
    // network: were the switches to let it write, it would remove the
    // network's flows. They refuse it (B claimed MASTER with a larger
    // generation id), and A notices it lost and follows.
    let log_before = cloud.nodes[A].log().len();
    signal(&cloud, A, "CONT");
    testbed::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        cloud.nodes[A].log()[log_before..].contains("this node no longer leads")
    })
    .unwrap_or_else(|_| panic!("A did not step down after thawing:\n{}", cloud.nodes[A].log()));
    // Give a stale writer every chance to do harm: its data plane catches
    // up, its sessions run, the switches answer.
    std::thread::sleep(Duration::from_secs(3));
    let after = cloud.flows();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the thawed node changed the flows:\nA:\n{}",
        &cloud.nodes[A].log()[log_before..]
    );
    assert_eq!(flows_naming(&cloud, "10.9.0.0/24"), hypervisors);
    println!("A after thawing:\n{}", &cloud.nodes[A].log()[log_before..]);
}
