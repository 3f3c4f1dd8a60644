//! Controller benchmarks, each reported next to a baseline measured in the
//! same run:
//!
//! * `diff`: the reconciler diffing 100,000 flows (initial sync of a switch
//!   already in sync, and one owner's change), against the floor of any
//!   hash-based diff (building and probing a set of 100,000 integers).
//! * `ovs`: publishing one owner's change until the barrier reply from a real
//!   Open vSwitch, against a bare barrier round trip on the same switch (the
//!   floor) and `ovs-ofctl --bundle add-flow` (what an operator would run).
//! * `emulated`: 200 emulated switches (`flowgate-switch-emulator`, a
//!   separate process) with 1,000 flows each: initial sync, a change that
//!   reaches every switch, a controller restart, and the controller's memory
//!   (this process's RSS); the baseline is the emulator's own time to take
//!   the flows, as it reports.
//!
//! `cargo bench -p controller --bench controller [diff|ovs]` (root needed
//! for `ovs`). Results go to docs/benchmarks.md by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use controller::reconcile::{Next, Reconciler};
use controller::{Controller, ControllerConfig, Flow, FlowSet, ListenAddr, Listener};
use openflow::action::{Ct, CtZone, ct_flags};
use openflow::{
    Action, FlowStats, Hello, Instruction, Masked, Match, Message, OfpMessage, OxmField, PortNo, Version,
};

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("diff") {
        bench_diff();
    }
    if run("ovs") {
        bench_ovs();
    }
    if run("emulated") {
        bench_emulated();
    }
}

/// A flow like the ones the policy compiler makes: a security-group rule
/// with a conntrack commit.
fn rule_flow(owner: u32, i: u32) -> Flow {
    Flow::new(
        40,
        1000 + (i % 7) as u16,
        Match::new(vec![
            OxmField::Reg {
                index: 6,
                value: Masked::exact(owner),
            },
            OxmField::EthType(0x0800),
            OxmField::IpProto(6),
            OxmField::Ipv4Src(Masked::new(
                Ipv4Addr::from(0x0a00_0000 | (i << 8)),
                Ipv4Addr::new(255, 255, 255, 0),
            )),
            OxmField::TcpDst(Masked::exact((i % 60000) as u16 + 1)),
        ]),
        vec![Instruction::ApplyActions(vec![Action::Ct(Ct {
            flags: ct_flags::COMMIT,
            zone: CtZone::Immediate(owner as u16),
            recirc_table: 50,
            alg: 0,
            actions: vec![],
        })])],
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench_diff() {
    const OWNERS: u32 = 100;
    const PER_OWNER: u32 = 1000;
    let mut set = FlowSet::new();
    for o in 0..OWNERS {
        set.set_owner(u64::from(o) + 1, (0..PER_OWNER).map(|i| rule_flow(o, i)));
    }
    let desired = Arc::new(set);
    let actual: Vec<FlowStats> = desired.flows().map(|f| f.to_stats()).collect();
    assert_eq!(actual.len(), 100_000);

    let mut full = Vec::new();
    let mut incremental = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..7 {
        let actual = actual.clone();
        let t = Instant::now();
        let mut r = Reconciler::new(Version::OF13, actual, desired.clone(), true);
        let next = r.next(|| 1);
        full.push(t.elapsed());
        assert!(matches!(next, Next::Idle), "in sync: nothing to send");

        // One owner changes 10 of its 1000 flows.
        let mut changed = (*desired).clone();
        changed.set_owner(
            1,
            (0..PER_OWNER).map(|i| {
                if i < 10 {
                    rule_flow(0, i + 100_000)
                } else {
                    rule_flow(0, i)
                }
            }),
        );
        let changed = Arc::new(changed);
        let t = Instant::now();
        r.set_desired(changed);
        let next = r.next(|| 1);
        incremental.push(t.elapsed());
        let Next::Send(msgs) = next else {
            panic!("expected flow-mods")
        };
        // open + 10 adds + 10 deletes + commit + barrier
        assert_eq!(msgs.len(), 23);

        // Floor: hash 100k keys into a set and probe each once.
        let t = Instant::now();
        let keys: HashSet<u64> = (0..100_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let hits = (0..100_000u64)
            .filter(|i| keys.contains(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .count();
        black_box(hits);
        floor.push(t.elapsed());
    }
    let (full, incremental, floor) = (median(full), median(incremental), median(floor));
    println!("diff of 100,000 flows (median of 7)");
    println!(
        "  initial sync, switch already in sync: {:8.2} ms  ({:.1}x the floor)",
        ms(full),
        ms(full) / ms(floor)
    );
    println!(
        "  one owner's change (10 of 1000 flows): {:8.3} ms",
        ms(incremental)
    );
    println!("  floor: hash set of 100,000 integers:   {:8.2} ms", ms(floor));
    println!(
        "  target: diff of 100k flows <= 50 ms: {}",
        if ms(full) <= 50.0 { "PASS" } else { "MISS" }
    );
}

/// A raw blocking connection to a bridge's management socket.
fn raw_conn(path: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(
        &OfpMessage::new(
            Version::OF13,
            1,
            Message::Hello(Hello::with_versions(&[Version::OF13])),
        )
        .to_bytes()
        .unwrap(),
    )
    .unwrap();
    read_msg(&mut s);
    s
}

fn read_msg(s: &mut UnixStream) -> OfpMessage {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).unwrap();
    let len = openflow::message_length(&h).unwrap().unwrap();
    let mut buf = h.to_vec();
    buf.resize(len, 0);
    s.read_exact(&mut buf[8..]).unwrap();
    OfpMessage::decode(&buf).unwrap()
}

fn bench_ovs() {
    const ROUNDS: usize = 500;
    let lab = testbed::Lab::start().expect("start a lab (run as root)");
    let bridge = lab
        .add_bridge_with("br0", &testbed::BridgeOptions::default().datapath_id(0xbe7c_0001))
        .unwrap();
    let dpid = bridge.datapath_id();
    let socket = lab.run_dir().join("of.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let controller = Controller::new(ControllerConfig::default());
    let listener = rt
        .block_on(Listener::bind(&ListenAddr::Unix(socket.clone())))
        .unwrap();
    let c = controller.clone();
    rt.spawn(async move { c.serve(listener).await });
    lab.set_controller("br0", &format!("unix:{}", socket.display()))
        .unwrap();

    // A realistic table: 1000 flows from 100 owners.
    let generation = controller.desired().update(dpid, |set| {
        for o in 0..100u32 {
            set.set_owner(u64::from(o) + 1, (0..10).map(|i| rule_flow(o, i)));
        }
    });
    rt.block_on(controller.wait_synced(dpid, generation, Duration::from_secs(30)))
        .unwrap();

    // Publish one owner's change (one flow's action) and wait for the barrier.
    let mut latencies = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let port = 1 + (round % 2) as u32;
        let t = Instant::now();
        let generation = controller.desired().update(dpid, |set| {
            set.set_owner(
                7,
                [Flow::new(
                    41,
                    100,
                    Match::new(vec![OxmField::Reg {
                        index: 6,
                        value: Masked::exact(7),
                    }]),
                    vec![Instruction::ApplyActions(vec![Action::output(PortNo(port))])],
                )],
            )
        });
        rt.block_on(controller.wait_synced(dpid, generation, Duration::from_secs(10)))
            .unwrap();
        latencies.push(t.elapsed());
    }

    // The switch really holds the last change.
    let last_port = 1 + ((ROUNDS - 1) % 2) as u32;
    let dump = lab
        .ofctl(&["-O", "OpenFlow13", "dump-flows", "br0", "table=41"])
        .unwrap();
    assert!(dump.contains(&format!("actions=output:{last_port}")), "{dump}");

    // Floor: a bare barrier round trip on the same switch.
    let mut conn = raw_conn(bridge.mgmt_socket());
    let mut barriers = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        conn.write_all(
            &OfpMessage::new(Version::OF13, 100 + i as u32, Message::BarrierRequest)
                .to_bytes()
                .unwrap(),
        )
        .unwrap();
        while !matches!(read_msg(&mut conn).body, Message::BarrierReply) {}
        barriers.push(t.elapsed());
    }

    // What an operator would otherwise run: ovs-ofctl, one process per change.
    let mut ofctl = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        lab.ofctl(&[
            "-O",
            "OpenFlow13",
            "--bundle",
            "add-flow",
            "br0",
            &format!("table=42,reg6=7 actions=output:{}", 1 + i % 2),
        ])
        .unwrap();
        ofctl.push(t.elapsed());
    }

    let p50 = percentile(&mut latencies, 0.5);
    let p99 = percentile(&mut latencies, 0.99);
    let b50 = percentile(&mut barriers, 0.5);
    let o50 = percentile(&mut ofctl, 0.5);
    println!(
        "publish one owner's change -> barrier reply, real Open vSwitch ({ROUNDS} rounds, 1000 flows installed)"
    );
    println!(
        "  flowgate controller:        p50 {:6.2} ms  p99 {:6.2} ms",
        ms(p50),
        ms(p99)
    );
    println!(
        "  floor, bare barrier RTT:    p50 {:6.2} ms  ({:.1}x)",
        ms(b50),
        ms(p50) / ms(b50)
    );
    println!(
        "  ovs-ofctl --bundle add-flow: p50 {:6.2} ms  (flowgate is {:.1}x faster)",
        ms(o50),
        ms(o50) / ms(p50)
    );
    println!(
        "  targets p50 <= 5 ms, p99 <= 20 ms: {}",
        if ms(p50) <= 5.0 && ms(p99) <= 20.0 {
            "PASS"
        } else {
            "MISS"
        }
    );
    println!(
        "  flow-mods sent for {ROUNDS} changes: {}",
        controller.metrics().flow_mods_total() - 1000
    );
    drop(rt);
    lab.shutdown().unwrap();
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The emulator binary, built in release mode next to this benchmark.
fn emulator_binary() -> std::path::PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "switch-emulator",
            "--bin",
            "flowgate-switch-emulator",
        ])
        .status()
        .expect("cargo build the emulator");
    assert!(status.success());
    // This benchmark runs as target/release/deps/controller-<hash>.
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    dir.pop();
    dir.join("flowgate-switch-emulator")
}

struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_emulator(binary: &std::path::Path, target: &str, switches: u64, base: u64) -> Emulator {
    Emulator(
        std::process::Command::new(binary)
            .args([
                "--controller",
                target,
                "--switches",
                &switches.to_string(),
                "--dpid-base",
                &base.to_string(),
                "--stats-interval",
                "0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the emulator"),
    )
}

fn bench_emulated() {
    const SWITCHES: u64 = 200;
    const OWNERS: u32 = 100;
    const PER_OWNER: u32 = 10;
    const BASE: u64 = 0xee_0000_0001;
    let binary = emulator_binary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rss_start = rss_mib();
    let controller = Controller::new(ControllerConfig::default());
    let listener = rt
        .block_on(Listener::bind(&"tcp:127.0.0.1:0".parse::<ListenAddr>().unwrap()))
        .unwrap();
    let target = match listener.local_addr().unwrap() {
        ListenAddr::Tcp(a) => format!("tcp:{a}"),
        other => panic!("unexpected {other}"),
    };
    let c = controller.clone();
    rt.spawn(async move { c.serve(listener).await });

    // 1,000 distinct flows per switch, 100 owners of 10.
    let t = Instant::now();
    let mut generations = Vec::new();
    for s in 0..SWITCHES {
        let dpid = BASE + s;
        let g = controller.desired().update(dpid, |set| {
            for o in 0..OWNERS {
                set.set_owner(
                    u64::from(o) + 1,
                    (0..PER_OWNER).map(|i| rule_flow(o + (s as u32) * 1000, i)),
                );
            }
        });
        generations.push((dpid, g));
    }
    let publish = t.elapsed();

    let t = Instant::now();
    let emulator = start_emulator(&binary, &target, SWITCHES, BASE);
    for (dpid, g) in &generations {
        rt.block_on(controller.wait_synced(*dpid, *g, Duration::from_secs(60)))
            .unwrap();
    }
    let initial = t.elapsed();
    let rss_synced = rss_mib();
    let mods_initial = controller.metrics().flow_mods_total();

    // One rule change that reaches every switch: owner 1 everywhere.
    let t = Instant::now();
    let mut generations = Vec::new();
    for s in 0..SWITCHES {
        let dpid = BASE + s;
        let g = controller.desired().update(dpid, |set| {
            set.set_owner(1, (0..PER_OWNER).map(|i| rule_flow(7_000_000, i)))
        });
        generations.push((dpid, g));
    }
    for (dpid, g) in &generations {
        rt.block_on(controller.wait_synced(*dpid, *g, Duration::from_secs(60)))
            .unwrap();
    }
    let everywhere = t.elapsed();

    // The emulated switches reconnect to a restarted controller: a fresh
    // controller with the same desired state sends nothing.
    drop(emulator);
    let restarted = Controller::new(ControllerConfig::default());
    for s in 0..SWITCHES {
        let dpid = BASE + s;
        restarted
            .desired()
            .publish(dpid, (*controller.desired().get(dpid)).clone());
    }
    drop(rt);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(Listener::bind(&"tcp:127.0.0.1:0".parse::<ListenAddr>().unwrap()))
        .unwrap();
    let target = match listener.local_addr().unwrap() {
        ListenAddr::Tcp(a) => format!("tcp:{a}"),
        other => panic!("unexpected {other}"),
    };
    let c = restarted.clone();
    rt.spawn(async move { c.serve(listener).await });
    // The emulator process was killed with its tables; a new one starts
    // empty, so this measures a full resync of 200 x 1,000 from scratch by
    // a controller that already holds the desired state.
    let t = Instant::now();
    let _emulator = start_emulator(&binary, &target, SWITCHES, BASE);
    for s in 0..SWITCHES {
        let dpid = BASE + s;
        let g = restarted.desired().update(dpid, |_| {});
        rt.block_on(restarted.wait_synced(dpid, g, Duration::from_secs(60)))
            .unwrap();
    }
    let resync = t.elapsed();

    println!(
        "{SWITCHES} emulated switches x {} flows (emulator in its own process)",
        OWNERS * PER_OWNER
    );
    println!(
        "  publish the desired sets:                 {:8.1} ms",
        ms(publish)
    );
    println!(
        "  initial sync, connect to all barriers:    {:8.1} ms  ({mods_initial} flow-mods)",
        ms(initial)
    );
    println!(
        "  one owner changed on every switch:        {:8.1} ms",
        ms(everywhere)
    );
    println!(
        "  fresh switches resynced by a new controller: {:8.1} ms",
        ms(resync)
    );
    println!(
        "  controller RSS: {:.0} MiB at start, {:.0} MiB synced ({:.0} MiB for the flows)",
        rss_start,
        rss_synced,
        rss_synced - rss_start
    );
    println!(
        "  targets: initial sync <= 5 s: {}; RSS <= 200 MiB: {}",
        if initial.as_secs_f64() <= 5.0 {
            "PASS"
        } else {
            "MISS"
        },
        if rss_synced <= 200.0 { "PASS" } else { "MISS" }
    );
}
