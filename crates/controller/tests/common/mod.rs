//! Shared pieces of the controller's integration tests: a controller on its
//! own runtime (so the tests' blocking test-bed calls never stall it), a lab
//! with two hosts, and the flows that connect them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use controller::{Controller, ControllerConfig, ControllerEvent, Flow, FlowSet, ListenAddr, Listener};
use openflow::{Action, Instruction, Masked, Match, OxmField, PortNo};
use testbed::{BridgeOptions, Host, HostSpec, Lab, MacAddr};
use tokio::sync::broadcast;

/// Owner of the flows that forward between the two hosts.
pub const FORWARDING: u64 = 0x0100_0000_0000_0001;
/// Owner of some flows that carry no traffic.
pub const OTHER: u64 = 0x0200_0000_0000_0002;

/// A controller running on a runtime of its own.
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub controller: Controller,
    pub socket: PathBuf,
    pub events: broadcast::Receiver<ControllerEvent>,
}

impl Harness {
    /// Starts a controller listening on `socket`.
    pub fn start(socket: PathBuf, config: ControllerConfig) -> Harness {
        Harness::start_with_desired(socket, config, |_| {})
    }

    /// Starts a controller whose desired flows `publish` sets before it
    /// listens on `socket`: a switch that connects at once reconciles
    /// against them, never against an empty set.
    pub fn start_with_desired(
        socket: PathBuf,
        config: ControllerConfig,
        publish: impl FnOnce(&Controller),
    ) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let controller = Controller::new(config);
        publish(&controller);
        let listener = rt
            .block_on(Listener::bind(&ListenAddr::Unix(socket.clone())))
            .expect("bind the controller socket");
        let events = controller.subscribe();
        let c = controller.clone();
        rt.spawn(async move { c.serve(listener).await });
        Harness {
            rt,
            controller,
            socket,
            events,
        }
    }

    /// Publishes and waits until the switch holds the result.
    pub fn publish_and_sync(&self, dpid: u64, change: impl FnOnce(&mut FlowSet)) {
        let generation = self.controller.desired().update(dpid, change);
        self.rt
            .block_on(
                self.controller
                    .wait_synced(dpid, generation, Duration::from_secs(20)),
            )
            .expect("switch in sync");
    }

    /// Drops the events so far, so that the next wait sees only later ones.
    pub fn forget_events(&mut self) {
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }

    /// Waits for an event matching `pred`.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ControllerEvent) -> bool,
    ) -> ControllerEvent {
        let events = &mut self.events;
        self.rt.block_on(async {
            tokio::time::timeout(timeout, async {
                loop {
                    match events.recv().await {
                        Ok(e) if pred(&e) => return e,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
                    }
                }
            })
            .await
            .expect("event in time")
        })
    }
}

/// A lab with bridge `br0` (datapath id `DPID`) pointed at a controller
/// socket in its run directory, and hosts h1 and h2 on it.
pub struct Bed {
    pub lab: Lab,
    pub h1: Host,
    pub h2: Host,
    pub socket: PathBuf,
}

pub const DPID: u64 = 0x00fa_0000_0000_0001;

impl Bed {
    pub fn new() -> Bed {
        let lab = Lab::start().expect("start a lab");
        let socket = lab.run_dir().join("flowgate-of.sock");
        lab.add_bridge_with("br0", &BridgeOptions::default().datapath_id(DPID))
            .unwrap();
        let h1 = lab
            .add_host(HostSpec::new("h1", "br0", Ipv4Addr::new(10, 7, 0, 1), 24, MacAddr::local(1)).ofport(1))
            .unwrap();
        let h2 = lab
            .add_host(HostSpec::new("h2", "br0", Ipv4Addr::new(10, 7, 0, 2), 24, MacAddr::local(2)).ofport(2))
            .unwrap();
        Bed { lab, h1, h2, socket }
    }

    /// Points the bridge at the controller socket.
    pub fn connect(&self) {
        self.lab
            .set_controller("br0", &format!("unix:{}", self.socket.display()))
            .unwrap();
    }

    /// The flows of `br0` as `ovs-ofctl` prints them, one per line.
    pub fn dump(&self) -> Vec<String> {
        let text = self
            .lab
            .ofctl(&["-O", "OpenFlow13", "dump-flows", "br0"])
            .unwrap();
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("cookie="))
            .map(String::from)
            .collect()
    }
}

/// Flows that forward everything between port 1 and port 2.
pub fn forwarding_flows() -> Vec<Flow> {
    [(1u32, 2u32), (2, 1)]
        .into_iter()
        .map(|(from, to)| {
            Flow::new(
                0,
                100,
                Match::new(vec![OxmField::InPort(PortNo(from))]),
                vec![Instruction::ApplyActions(vec![Action::output(PortNo(to))])],
            )
        })
        .collect()
}

/// `n` flows in table 5 that match register values no packet carries.
pub fn other_flows(n: u32, out: u32) -> Vec<Flow> {
    (0..n)
        .map(|i| {
            Flow::new(
                5,
                10,
                Match::new(vec![OxmField::Reg {
                    index: 3,
                    value: Masked::exact(i),
                }]),
                vec![Instruction::ApplyActions(vec![Action::output(PortNo(out))])],
            )
        })
        .collect()
}

/// A `ping` summary: (transmitted, received).
pub fn ping_counts(output: &str) -> (u32, u32) {
    let line = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {output:?}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

/// The value of `name` (e.g. `"duration="`) in a flow as `ovs-ofctl` prints it.
pub fn field<'a>(flow: &'a str, name: &str) -> &'a str {
    flow.split([',', ' '])
        .find_map(|kv| kv.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {flow}"))
}

/// A printed flow's age in seconds.
pub fn duration_of(flow: &str) -> f64 {
    field(flow, "duration=").trim_end_matches('s').parse().unwrap()
}

/// A printed flow's packet counter.
pub fn packets_of(flow: &str) -> u64 {
    field(flow, "n_packets=").parse().unwrap()
}
