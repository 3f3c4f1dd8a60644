//! `flowgate-bench scale`: flowgate's policy compiler and OpenFlow
//! controller with more hypervisors than one machine can run, emulated by
//! `flowgate-switch-emulator` (crates/switch-emulator) in a process of its
//! own.
//!
//! The cloud at H hypervisors (50 instances each by default): 50·H
//! instances; 5·H groups of 10 members spread over 10 hypervisors, each
//! with 20 rules (egress to anywhere, ssh from 10/8, everything from the
//! members of the next group, icmp, 16 tcp port ranges from /24s); every
//! instance also in one shared group (3 rules); an Elastic IP on every
//! fifth instance. At H = 1,000: 50,000 instances, 5,001 groups, 100,003
//! rules, 10,000 Elastic IPs.
//!
//! Measured as `flowgate serve` would live through it: compile the whole
//! model, publish every hypervisor's flows to the controller, then the
//! emulated switches connect and the controller installs everything (to
//! the last barrier); then single rule changes, compiled and published,
//! until every affected switch has acknowledged them: a rule of an
//! ordinary group (its members' 10 hypervisors) and a rule of the shared
//! group (every hypervisor). Memory is this process's resident set: the
//! compiler and the controller, as in `flowgate serve` (without its API
//! and store). Each size runs in a fresh child process so that one size's
//! allocations do not inflate the next one's figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compiler::{
    Address, Cidr, Compiler, Direction, Group, Hypervisor, Instance, Network, Peer, PublicGateway, Rule,
    Service,
};
use controller::{Controller, ControllerConfig, Flow, ListenAddr, Listener};
use openflow::MacAddr;

use crate::error::{Error, Result};
use crate::util::{human, load_average, median, rss};

/// What `scale` runs.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Hypervisors of each run.
    pub hypervisors: Vec<usize>,
    /// Instances per hypervisor.
    pub instances_per_hypervisor: usize,
    /// The switch emulator binary.
    pub emulator: PathBuf,
    /// Samples of each single change.
    pub repeats: usize,
}

/// Groups have this many members.
const GROUP_SIZE: usize = 10;
/// Rules per (ordinary) group.
const RULES_PER_GROUP: usize = 20;
/// Every this many instances, one has an Elastic IP.
const ADDRESS_EVERY: usize = 5;
const SHARED_GROUP: &str = "sg-shared";
const DPID_BASE: u64 = 0xee_0000_0001;
/// Port of every hypervisor's uplink; instances use the ports after it.
const UPLINK_PORT: u32 = 1;
/// The one-line result a child process prints for its parent.
const RESULT_PREFIX: &str = "scale-result ";

/// The cloud of one size.
#[derive(Debug, Clone, Copy)]
struct Cloud {
    hypervisors: usize,
    per_hypervisor: usize,
}

impl Cloud {
    fn instances(&self) -> usize {
        self.hypervisors * self.per_hypervisor
    }

    fn groups(&self) -> usize {
        (self.instances() / GROUP_SIZE).max(1)
    }

    fn instance_id(i: usize) -> String {
        format!("i-{i:017x}")
    }

    fn group_id(g: usize) -> String {
        format!("sg-{g:017x}")
    }

    fn group(&self, g: usize) -> Group {
        let any = Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0));
        let rules = (0..RULES_PER_GROUP)
            .map(|r| {
                let id = format!("sgr-{g:012x}{r:05x}");
                let (direction, service, peer) = match r {
                    0 => (Direction::Egress, Service::All, any.clone()),
                    1 => (
                        Direction::Ingress,
                        Service::Tcp { from: 22, to: 22 },
                        Peer::Cidr(Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8)),
                    ),
                    2 => (
                        Direction::Ingress,
                        Service::All,
                        Peer::Group(Cloud::group_id((g + 1) % self.groups())),
                    ),
                    3 => (
                        Direction::Ingress,
                        Service::Icmp {
                            icmp_type: None,
                            code: None,
                        },
                        any.clone(),
                    ),
                    r => (
                        Direction::Ingress,
                        Service::Tcp {
                            from: 1000 + r as u16 * 10,
                            to: 1000 + r as u16 * 10 + 7,
                        },
                        Peer::Cidr(Cidr::new(Ipv4Addr::new(172, 16, r as u8, 0), 24)),
                    ),
                };
                Rule {
                    id,
                    direction,
                    service,
                    peer,
                }
            })
            .collect();
        Group {
            id: Cloud::group_id(g),
            rules,
        }
    }

    fn shared_group(extra: &[Rule]) -> Group {
        let mut rules = vec![
            Rule {
                id: "sgr-shared-ssh".into(),
                direction: Direction::Ingress,
                service: Service::Tcp { from: 22, to: 22 },
                peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(192, 168, 0, 0), 16)),
            },
            Rule {
                id: "sgr-shared-icmp".into(),
                direction: Direction::Ingress,
                service: Service::Icmp {
                    icmp_type: Some(8),
                    code: None,
                },
                peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(192, 168, 0, 0), 16)),
            },
            Rule {
                id: "sgr-shared-egress".into(),
                direction: Direction::Egress,
                service: Service::All,
                peer: Peer::Cidr(Cidr::new(Ipv4Addr::UNSPECIFIED, 0)),
            },
        ];
        rules.extend_from_slice(extra);
        Group {
            id: SHARED_GROUP.into(),
            rules,
        }
    }

    fn instance(&self, i: usize) -> Instance {
        Instance {
            id: Cloud::instance_id(i),
            hypervisor: Some(format!("hv{}", i / self.per_hypervisor)),
            port: Some(UPLINK_PORT + 1 + (i % self.per_hypervisor) as u32),
            mac: MacAddr([0x02, 0xf6, 0x67, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            ip: Ipv4Addr::from(0x0a00_0000 + 10 + i as u32),
            network: "subnet-1".into(),
            groups: vec![Cloud::group_id(i % self.groups()), SHARED_GROUP.into()],
        }
    }

    fn load(&self, c: &mut Compiler) {
        for h in 0..self.hypervisors {
            c.upsert_hypervisor(Hypervisor {
                name: format!("hv{h}"),
                datapath_id: DPID_BASE + h as u64,
                uplink_port: UPLINK_PORT,
            });
        }
        c.upsert_network(Network {
            id: "subnet-1".into(),
            cidr: Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 8),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        });
        c.set_public_gateway(Some(PublicGateway {
            ip: Ipv4Addr::new(198, 18, 0, 1),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        }));
        for g in 0..self.groups() {
            c.upsert_group(self.group(g));
        }
        c.upsert_group(Cloud::shared_group(&[]));
        for i in 0..self.instances() {
            c.upsert_instance(self.instance(i));
        }
        for a in (0..self.instances()).step_by(ADDRESS_EVERY) {
            c.upsert_address(Address {
                allocation_id: format!("eipalloc-{a:017x}"),
                public_ip: Ipv4Addr::from(0xc612_0000 + 10 + a as u32),
                instance: Some(Cloud::instance_id(a)),
            });
        }
    }
}

/// Compiles what changed and hands it to the controller the way the data
/// plane does: each update becomes the controller's flows as soon as it is
/// compiled, then one publication per switch with every owner that changed
/// on it. Returns each switch's new generation.
fn flush_and_publish(compiler: &mut Compiler, controller: &Controller) -> Vec<(u64, u64)> {
    let mut by_switch: BTreeMap<u64, Vec<(u64, Vec<Flow>)>> = BTreeMap::new();
    compiler.flush_each(|u| {
        let (dpid, cookie) = (u.datapath_id, u.cookie);
        by_switch
            .entry(dpid)
            .or_default()
            .push((cookie, dataplane::controller_flows(u)));
    });
    by_switch
        .into_iter()
        .map(|(dpid, owners)| {
            let generation = controller.desired().update(dpid, |set| {
                for (cookie, flows) in owners {
                    set.set_owner(cookie, flows);
                }
            });
            (dpid, generation)
        })
        .collect()
}

/// Counts the flows of every switch's desired set.
fn desired_flows(controller: &Controller, generations: &[(u64, u64)]) -> usize {
    generations
        .iter()
        .map(|&(dpid, _)| controller.desired().get(dpid).len())
        .sum()
}

/// Waits until every switch acknowledged its generation.
async fn synced(controller: &Controller, generations: &[(u64, u64)], timeout: Duration) -> Result<()> {
    for &(dpid, generation) in generations {
        controller
            .wait_synced(dpid, generation, timeout)
            .await
            .map_err(|e| Error::Scale(format!("switch {dpid:x}: {e}")))?;
    }
    Ok(())
}

/// The emulator process, killed on drop.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one size measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    hypervisors: usize,
    instances: usize,
    groups: usize,
    rules: usize,
    addresses: usize,
    flows: usize,
    /// Compiling the whole model into the controller's desired flows.
    compile: Duration,
    sync: Duration,
    /// A rule of an ordinary group: samples, and hypervisors reached.
    group_rule: Vec<Duration>,
    group_rule_switches: usize,
    /// A rule of the shared group (every hypervisor).
    shared_rule: Vec<Duration>,
    shared_rule_switches: usize,
    rss_start: u64,
    /// After loading the model into the compiler (nothing compiled yet).
    rss_model: u64,
    /// After compiling it into the controller's desired flows.
    rss_published: u64,
    rss_synced: u64,
    emulator_rss: u64,
}

impl Outcome {
    /// One line of `key=value`s (durations in microseconds) for the parent.
    fn to_line(&self) -> String {
        let us = |d: &Duration| d.as_micros().to_string();
        let list = |v: &[Duration]| v.iter().map(us).collect::<Vec<_>>().join(",");
        format!(
            "{RESULT_PREFIX}hypervisors={} instances={} groups={} rules={} addresses={} flows={} \
             compile={} sync={} group_rule={} group_rule_switches={} shared_rule={} \
             shared_rule_switches={} rss_start={} rss_model={} rss_published={} rss_synced={} emulator_rss={}",
            self.hypervisors,
            self.instances,
            self.groups,
            self.rules,
            self.addresses,
            self.flows,
            us(&self.compile),
            us(&self.sync),
            list(&self.group_rule),
            self.group_rule_switches,
            list(&self.shared_rule),
            self.shared_rule_switches,
            self.rss_start,
            self.rss_model,
            self.rss_published,
            self.rss_synced,
            self.emulator_rss,
        )
    }

    fn from_line(line: &str) -> Result<Outcome> {
        let fields: BTreeMap<&str, &str> = line
            .strip_prefix(RESULT_PREFIX)
            .unwrap_or(line)
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let get = |k: &str| -> Result<&str> {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| Error::Scale(format!("no {k} in the child's result")))
        };
        let num = |k: &str| -> Result<u64> {
            get(k)?
                .parse()
                .map_err(|_| Error::Scale(format!("bad {k} in the child's result")))
        };
        let time = |k: &str| -> Result<Duration> { Ok(Duration::from_micros(num(k)?)) };
        let list = |k: &str| -> Result<Vec<Duration>> {
            get(k)?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map(Duration::from_micros)
                        .map_err(|_| Error::Scale(format!("bad {k} in the child's result")))
                })
                .collect()
        };
        Ok(Outcome {
            hypervisors: num("hypervisors")? as usize,
            instances: num("instances")? as usize,
            groups: num("groups")? as usize,
            rules: num("rules")? as usize,
            addresses: num("addresses")? as usize,
            flows: num("flows")? as usize,
            compile: time("compile")?,
            sync: time("sync")?,
            group_rule: list("group_rule")?,
            group_rule_switches: num("group_rule_switches")? as usize,
            shared_rule: list("shared_rule")?,
            shared_rule_switches: num("shared_rule_switches")? as usize,
            rss_start: num("rss_start")?,
            rss_model: num("rss_model")?,
            rss_published: num("rss_published")?,
            rss_synced: num("rss_synced")?,
            emulator_rss: num("emulator_rss")?,
        })
    }
}

fn self_rss() -> u64 {
    rss(std::process::id()).unwrap_or(0)
}

/// Measures one size in this process (the child's side).
pub fn run_one(
    cloud_hypervisors: usize,
    per_hypervisor: usize,
    emulator: &Path,
    repeats: usize,
) -> Result<String> {
    let cloud = Cloud {
        hypervisors: cloud_hypervisors,
        per_hypervisor,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime", e))?;
    let mut out = Outcome {
        hypervisors: cloud.hypervisors,
        instances: cloud.instances(),
        groups: cloud.groups() + 1,
        rules: cloud.groups() * RULES_PER_GROUP + Cloud::shared_group(&[]).rules.len(),
        addresses: cloud.instances().div_ceil(ADDRESS_EVERY),
        rss_start: self_rss(),
        ..Outcome::default()
    };

    // Compile and publish: what `flowgate serve` does when it starts with
    // this model (the compiler's output is converted as it comes).
    let t = Instant::now();
    let mut compiler = Compiler::new();
    // As the data plane does: the controller keeps the flows.
    compiler.forget_flows();
    compiler.bulk_load(|c| cloud.load(c));
    out.rss_model = self_rss();
    let controller = Controller::new(ControllerConfig::default());
    let generations = flush_and_publish(&mut compiler, &controller);
    out.compile = t.elapsed();
    out.flows = desired_flows(&controller, &generations);
    out.rss_published = self_rss();

    let listener = rt
        .block_on(Listener::bind(&ListenAddr::Tcp(([127, 0, 0, 1], 0).into())))
        .map_err(|e| Error::io("listening for switches", e))?;
    let target = match listener.local_addr() {
        Ok(ListenAddr::Tcp(a)) => format!("tcp:{a}"),
        other => return Err(Error::Scale(format!("unexpected listener address {other:?}"))),
    };
    let c = controller.clone();
    rt.spawn(async move { c.serve(listener).await });
    let t = Instant::now();
    let child = Command::new(emulator)
        .args([
            "--controller",
            &target,
            "--switches",
            &cloud.hypervisors.to_string(),
            "--ports",
            &(per_hypervisor as u32 + UPLINK_PORT + 8).to_string(),
            "--dpid-base",
            &DPID_BASE.to_string(),
            "--stats-interval",
            "0",
            "--echo-interval",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", emulator.display()), e))?;
    let emulator_process = Emulator(child);
    rt.block_on(synced(&controller, &generations, Duration::from_secs(1800)))?;
    out.sync = t.elapsed();
    out.rss_synced = self_rss();

    // Single rule changes, each compiled, published and acknowledged.
    let timeout = Duration::from_secs(120);
    let mut shared_extra: Vec<Rule> = Vec::new();
    for r in 0..repeats {
        let g = (r * 7919) % cloud.groups();
        let mut group = cloud.group(g);
        group.rules.push(Rule {
            id: format!("sgr-added-{r}"),
            direction: Direction::Ingress,
            service: Service::Tcp {
                from: 9000 + r as u16,
                to: 9000 + r as u16,
            },
            peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(192, 0, 2, 0), 24)),
        });
        let t = Instant::now();
        compiler.upsert_group(group);
        let generations = flush_and_publish(&mut compiler, &controller);
        rt.block_on(synced(&controller, &generations, timeout))?;
        out.group_rule.push(t.elapsed());
        out.group_rule_switches = generations.len();

        shared_extra.push(Rule {
            id: format!("sgr-shared-added-{r}"),
            direction: Direction::Ingress,
            service: Service::Tcp {
                from: 9500 + r as u16,
                to: 9500 + r as u16,
            },
            peer: Peer::Cidr(Cidr::new(Ipv4Addr::new(192, 0, 2, 0), 24)),
        });
        let t = Instant::now();
        compiler.upsert_group(Cloud::shared_group(&shared_extra));
        let generations = flush_and_publish(&mut compiler, &controller);
        rt.block_on(synced(&controller, &generations, timeout))?;
        out.shared_rule.push(t.elapsed());
        out.shared_rule_switches = generations.len();
    }
    out.emulator_rss = rss(emulator_process.0.id()).unwrap_or(0);
    drop(emulator_process);
    Ok(out.to_line())
}

/// Runs every size, each in a child process, and returns the report.
pub fn run(options: &ScaleOptions) -> Result<String> {
    let me = std::env::current_exe().map_err(|e| Error::io("finding this program", e))?;
    let mut outcomes = Vec::new();
    for &h in &options.hypervisors {
        eprintln!(
            "{h} hypervisors x {} instances: load average {}",
            options.instances_per_hypervisor,
            load_average()
        );
        let out = Command::new(&me)
            .args([
                "scale-one",
                "--hypervisors",
                &h.to_string(),
                "--instances-per-hypervisor",
                &options.instances_per_hypervisor.to_string(),
                "--emulator",
                &options.emulator.display().to_string(),
                "--repeats",
                &options.repeats.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| Error::io("running a scale child", e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(RESULT_PREFIX))
            .ok_or_else(|| Error::Scale(format!("the run with {h} hypervisors failed ({})", out.status)))?;
        let outcome = Outcome::from_line(line)?;
        eprintln!(
            "  {} flows, sync {}, group rule {}, shared rule {}, RSS {:.0} MiB",
            outcome.flows,
            human(outcome.sync),
            human(median(&outcome.group_rule)),
            human(median(&outcome.shared_rule)),
            outcome.rss_synced as f64 / 1048576.0
        );
        outcomes.push(outcome);
    }
    Ok(report(&outcomes))
}

fn report(outcomes: &[Outcome]) -> String {
    let mib = |b: u64| format!("{:.0}", b as f64 / 1048576.0);
    let mut t = String::new();
    t.push_str(
        "| hypervisors | instances | groups | rules | Elastic IPs | flows | compile | initial sync | \
         group rule change (switches) | shared rule change (switches) | RSS model MiB | RSS compiled MiB | \
         RSS synced MiB | bytes per flow | emulator RSS MiB |\n",
    );
    t.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let per_flow = o.rss_synced.saturating_sub(o.rss_start) as f64 / o.flows.max(1) as f64;
        let worst = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} (max {}, {}) | {} (max {}, {}) | {} | {} | {} | {:.0} | {} |",
            o.hypervisors,
            o.instances,
            o.groups,
            o.rules,
            o.addresses,
            o.flows,
            human(o.compile),
            human(o.sync),
            human(median(&o.group_rule)),
            human(worst(&o.group_rule)),
            o.group_rule_switches,
            human(median(&o.shared_rule)),
            human(worst(&o.shared_rule)),
            o.shared_rule_switches,
            mib(o.rss_model),
            mib(o.rss_published),
            mib(o.rss_synced),
            per_flow,
            mib(o.emulator_rss),
        );
    }
    if let (Some(first), Some(last)) = (outcomes.first(), outcomes.last())
        && last.flows > first.flows
    {
        let growth = |a: f64, b: f64| (b / a).ln() / (last.flows as f64 / first.flows as f64).ln();
        let _ = writeln!(
            t,
            "\nGrowth from {} to {} hypervisors, as the exponent k in cost ~ flows^k (1 = linear): \
             initial sync {:.2}, shared rule change {:.2}, RSS {:.2}; compile {:.2}.",
            first.hypervisors,
            last.hypervisors,
            growth(first.sync.as_secs_f64(), last.sync.as_secs_f64()),
            growth(
                median(&first.shared_rule).as_secs_f64(),
                median(&last.shared_rule).as_secs_f64()
            ),
            growth(first.rss_synced as f64, last.rss_synced as f64),
            growth(first.compile.as_secs_f64(), last.compile.as_secs_f64()),
        );
    }
    if let Some(o) = outcomes.iter().find(|o| o.instances >= 50_000) {
        let rule = median(&o.shared_rule).max(median(&o.group_rule));
        let _ = writeln!(
            t,
            "\nTargets at {} instances: one rule change to every affected hypervisor <= 1 s: {} ({}); \
             controller memory <= 2 GiB: {} ({} MiB).",
            o.instances,
            if rule <= Duration::from_secs(1) {
                "PASS"
            } else {
                "MISS"
            },
            human(rule),
            if o.rss_synced <= 2 << 30 { "PASS" } else { "MISS" },
            mib(o.rss_synced)
        );
    }
    t
}
