//! Data-plane benchmarks: flowgate's parts wired as `flowgate serve` wires
//! them (SQLite store, EC2 API over HTTP, OpenFlow controller, data plane)
//! in this process, managing the bridges of a real Open vSwitch (the cloud
//! test bed: hypervisor bridges hv1 and hv2 on a physical bridge), with
//! instances as namespaces plugged into them. Each figure comes with a
//! baseline measured in the same run.
//!
//! * `latency`: a signed AuthorizeSecurityGroupIngress or
//!   RevokeSecurityGroupIngress over HTTP until the switch has acknowledged
//!   the resulting flow change (bundle committed, barrier answered: the
//!   controller's `Reconciled` event). Baselines: the API call alone (it
//!   returns once the change is durably committed), and the controller
//!   alone publishing a one-flow change until its barrier reply.
//! * `throughput`: iperf3 (TCP, one stream) between two instances on one
//!   hypervisor through the whole pipeline (port security, conntrack and
//!   security group rules in both directions), against the same transfer
//!   between two namespaces on a bridge with only the NORMAL action, in
//!   the same lab, alternating; also across hypervisors.
//!
//! `cargo bench -p flowgate --bench dataplane [latency|throughput]
//! [--rounds N] [--transfers N]` as root (N authorize/revoke pairs, default
//! 300; N rounds of transfers, default 5). Results go to
//! docs/benchmarks.md by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use controller::{Controller, ControllerConfig, ControllerEvent, Flow, ListenAddr, Listener};
use ec2api::actions::OsEntropy;
use ec2api::{Api, ApiConfig};
use model::{AccessKey, DriverKind, Hypervisor, Instance, State};
use openflow::{Instruction, Masked, Match, OxmField};
use store::{Store, StoreOptions};
use testbed::{BridgeOptions, CloudTopology, FailMode, Host, HostSpec, MacAddr};
use tokio::sync::broadcast;

const ZONES: [&str; 2] = ["bench-a", "bench-b"];
const DPID_BASE: u64 = 0xbe00;
/// Owner of the controller-only baseline's flow: a kind the compiler never uses.
const BASELINE_COOKIE: u64 = 0x7f00_0000_0000_0001;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-') && a.parse::<u32>().is_err())
        .collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
    };
    let run = |name: &str| which.is_empty() || which.contains(&name);
    let cloud = BenchCloud::start();
    println!("machine: {}", machine());
    if run("latency") {
        bench_latency(&cloud, option("--rounds").unwrap_or(300));
    }
    if run("throughput") {
        bench_throughput(&cloud, option("--transfers").unwrap_or(5));
    }
}

/// flowgate on the cloud test bed, in this process.
struct BenchCloud {
    rt: tokio::runtime::Runtime,
    // Dropped last: the namespaces and Open vSwitch.
    topology: CloudTopology,
    store: Store,
    controller: Controller,
    api: SocketAddr,
    key: AccessKey,
    image: String,
    _data: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl BenchCloud {
    fn start() -> BenchCloud {
        testbed::check_prerequisites().expect("run as root with Open vSwitch installed");
        let topology = CloudTopology::start(2, DPID_BASE).expect("the cloud test bed");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let data = TempDir(std::env::temp_dir().join(format!("flowgate-bench-{}", std::process::id())));
        let store = rt
            .block_on(Store::open_sqlite(&data.0, StoreOptions::default()))
            .expect("open the store");
        // What `flowgate admin` would set up: a network, an account, an
        // image, and each hypervisor bridge in a zone of its own (so that
        // placement is explicit).
        let hypervisors: Vec<Hypervisor> = topology
            .hypervisors
            .iter()
            .zip(ZONES)
            .map(|(hv, zone)| Hypervisor {
                name: hv.name.clone(),
                bridge: Some(hv.name.clone()),
                datapath_id: None,
                uplink: hv.uplink.clone(),
                driver: DriverKind::External,
                ovsdb: None,
                netns: None,
                zone: zone.to_string(),
            })
            .collect();
        let (key, image) = rt
            .block_on(store.mutate(move |state: &mut State| {
                let entropy = &mut OsEntropy;
                state.add_network(
                    "10.1.0.0/16".parse().expect("a CIDR"),
                    Ipv4Addr::new(10, 1, 0, 1),
                    None,
                    entropy,
                )?;
                for hv in hypervisors {
                    state.add_hypervisor(hv)?;
                }
                let (_, key) = state.create_account("bench", now_ms(), entropy)?;
                let image = state.add_image("bench", "", entropy)?;
                Ok::<_, model::AdminError>((key, image.id.to_string()))
            }))
            .expect("set up the model");

        let controller = Controller::new(ControllerConfig::default());
        let socket = topology.lab.run_dir().join("bench-of.sock");
        let listener = rt
            .block_on(Listener::bind(&ListenAddr::Unix(socket.clone())))
            .expect("bind the OpenFlow socket");
        let c = controller.clone();
        rt.spawn(async move { c.serve(listener).await });
        let (_ids_tx, ids_rx) = tokio::sync::watch::channel(dataplane::IfaceIds::new());
        // The sender stays alive with the runtime: no external iface-ids here.
        rt.spawn(async move {
            let _keep = _ids_tx;
            std::future::pending::<()>().await
        });
        rt.spawn(dataplane::run(
            store.clone(),
            controller.clone(),
            dataplane::DataplaneConfig::default(),
            ids_rx,
        ));
        let http = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the API");
        let api_addr = http.local_addr().unwrap();
        let api = Arc::new(Api::new(
            store.clone(),
            ApiConfig {
                listen: api_addr,
                endpoint: api_addr.to_string(),
                ..ApiConfig::default()
            },
        ));
        rt.spawn(ec2api::serve(api, http, std::future::pending()));
        topology
            .connect_controller(&format!("unix:{}", socket.display()))
            .expect("point the bridges at the controller");
        for hv in &topology.hypervisors {
            rt.block_on(controller.wait_synced(hv.datapath_id, 1, Duration::from_secs(20)))
                .expect("hypervisor bridges in sync");
        }
        BenchCloud {
            rt,
            topology,
            store,
            controller,
            api: api_addr,
            key,
            image,
            _data: data,
        }
    }

    fn client(&self) -> HttpClient {
        HttpClient {
            addr: self.api,
            stream: None,
            key: self.key.clone(),
        }
    }

    /// Runs an instance in `zone` and group, plugs a namespace in as its
    /// VM (the port named as flowgate expects) and waits until it runs.
    fn instance(&self, http: &mut HttpClient, name: &str, zone: &str, group: &str) -> (Instance, Host) {
        let xml = http.call(&[
            ("Action", "RunInstances"),
            ("ImageId", &self.image),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("SecurityGroupId.1", group),
            ("Placement.AvailabilityZone", zone),
        ]);
        let id = element(&xml, "instanceId").expect("an instance id").to_string();
        let inst = self
            .store
            .read()
            .tenant(&self.key.account_id)
            .and_then(|t| t.instances.values().find(|i| i.id.as_str() == id).cloned())
            .expect("the instance in the model");
        let hv = inst.hypervisor.clone().expect("placed");
        let host = self
            .topology
            .lab
            .add_host(
                HostSpec::new(name, &hv, inst.private_ip, 16, MacAddr::new(inst.mac.0))
                    .port_name(&inst.interface_name)
                    .gateway(Ipv4Addr::new(10, 1, 0, 1)),
            )
            .expect("plug the instance in");
        testbed::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            let state = self.store.read();
            state
                .tenant(&self.key.account_id)
                .and_then(|t| t.instances.values().find(|i| i.id.as_str() == id))
                .is_some_and(|i| i.state == model::InstanceState::Running)
        })
        .expect("the instance runs once its port is bound");
        (inst, host)
    }

    fn dpid(&self, hv: &str) -> u64 {
        self.topology
            .hypervisors
            .iter()
            .find(|h| h.name == hv)
            .map(|h| h.datapath_id)
            .expect("a hypervisor of the test bed")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A blocking HTTP/1.1 keep-alive client that signs every request with
/// SigV4, as boto3 does.
struct HttpClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    key: AccessKey,
}

impl HttpClient {
    /// Sends one signed request; panics unless it answers 200.
    fn call(&mut self, pairs: &[(&str, &str)]) -> String {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", ec2api::auth::uri_encode(k), ec2api::auth::uri_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let secs = now_ms() / 1000;
        let headers = ec2api::auth::sign_v4_post(
            &self.addr.to_string(),
            body.as_bytes(),
            &self.key.access_key_id,
            &self.key.secret_access_key,
            &ApiConfig::default().region,
            &ec2api::auth::format_amz_date(secs),
        );
        let mut request = String::from("POST / HTTP/1.1\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).expect("connect to the API");
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().unwrap();
        stream.write_all(request.as_bytes()).expect("send a request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let (head_end, length) = loop {
            let n = stream.read(&mut chunk).expect("read an answer");
            assert!(n > 0, "the API closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content-length");
                assert!(
                    head.starts_with("http/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&buf)
                );
                break (pos + 4, length);
            }
        };
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).expect("read the body");
            assert!(n > 0, "the API closed the connection mid-body");
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned()
    }
}

fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// The p-th percentile (0..=100) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
    println!(
        "{name}: n={} p50 {} p99 {} max {}",
        samples.len(),
        ms(p50),
        ms(p99),
        ms(samples[samples.len() - 1])
    );
    (p50, p99)
}

/// Waits for the switch's report of a round that `done` accepts.
fn wait_round(
    rt: &tokio::runtime::Runtime,
    events: &mut broadcast::Receiver<ControllerEvent>,
    dpid: u64,
    done: impl Fn(&controller::RoundReport) -> bool,
) {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(ControllerEvent::Reconciled { datapath_id, report })
                        if datapath_id == dpid && done(&report) =>
                    {
                        return;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => panic!("missed {n} controller events"),
                    Err(broadcast::error::RecvError::Closed) => panic!("the controller stopped"),
                }
            }
        })
        .await
        .expect("the switch acknowledges within 10 s")
    })
}

fn bench_latency(cloud: &BenchCloud, rounds: usize) {
    println!(
        "\n== latency: API call -> flows acknowledged by the switch ({rounds} authorize + {rounds} revoke)"
    );
    let mut http = cloud.client();
    let xml = http.call(&[
        ("Action", "CreateSecurityGroup"),
        ("GroupName", "latency"),
        ("GroupDescription", "latency"),
    ]);
    let group = element(&xml, "groupId").expect("a group id").to_string();
    let (inst, _host) = cloud.instance(&mut http, "lat", ZONES[0], &group);
    let dpid = cloud.dpid(inst.hypervisor.as_deref().unwrap());
    let mut events = cloud.controller.subscribe();
    let (mut api_only, mut to_ack, mut publish_ack) = (Vec::new(), Vec::new(), Vec::new());
    let mut after_answer = Vec::new();
    let mut kinds = [Vec::new(), Vec::new()];
    for i in 0..rounds {
        let port = (10_000 + i).to_string();
        for (k, action) in ["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]
            .into_iter()
            .enumerate()
        {
            // Nothing else changes the bridge meanwhile: drop stale events.
            while events.try_recv().is_ok() {}
            let started = Instant::now();
            http.call(&[
                ("Action", action),
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", &port),
                ("IpPermissions.1.ToPort", &port),
                ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
            ]);
            let answered = started.elapsed();
            api_only.push(answered);
            wait_round(&cloud.rt, &mut events, dpid, |r| {
                if k == 0 { r.adds > 0 } else { r.deletes > 0 }
            });
            let took = started.elapsed();
            to_ack.push(took);
            after_answer.push(took.saturating_sub(answered));
            kinds[k].push(took);
        }
        // Baseline: the controller alone, one flow in and out.
        for add in [true, false] {
            let started = Instant::now();
            let generation = cloud.controller.desired().update(dpid, |set| {
                if add {
                    set.set_owner(BASELINE_COOKIE, [baseline_flow(i as u32)]);
                } else {
                    set.remove_owner(BASELINE_COOKIE);
                }
            });
            cloud
                .rt
                .block_on(
                    cloud
                        .controller
                        .wait_synced(dpid, generation, Duration::from_secs(10)),
                )
                .expect("baseline flow acknowledged");
            publish_ack.push(started.elapsed());
        }
    }
    let (p50, p99) = summary("API call -> switch ack (authorize and revoke)", &mut to_ack);
    summary("  authorize only", &mut kinds[0]);
    summary("  revoke only", &mut kinds[1]);
    let (api50, _) = summary("baseline: the API call alone (durable commit)", &mut api_only);
    let (pub50, _) = summary("baseline: controller publish -> barrier reply", &mut publish_ack);
    summary(
        "switch ack after the API's answer (the data plane overlaps the answer)",
        &mut after_answer,
    );
    println!(
        "ratios at p50: API -> ack / API alone {:.2}x, / controller alone {:.1}x",
        p50.as_secs_f64() / api50.as_secs_f64(),
        p50.as_secs_f64() / pub50.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "{}: API call -> flows barrier-acked p50 {} (target <= 5 ms), p99 {} (target <= 20 ms)",
        verdict(p50 <= Duration::from_millis(5) && p99 <= Duration::from_millis(20)),
        ms(p50),
        ms(p99)
    );
}

/// A flow no packet matches, in a table the pipeline does not use.
fn baseline_flow(i: u32) -> Flow {
    Flow::new(
        200,
        10,
        Match::new(vec![OxmField::Reg {
            index: 7,
            value: Masked::exact(i),
        }]),
        vec![Instruction::ApplyActions(vec![])],
    )
}

/// What one transfer measured.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    /// Received, in Gbit/s.
    gbits: f64,
    /// CPU seconds `ovs-vswitchd` spent per GB carried: the datapath's own
    /// cost, much less sensitive than the rate to what else the machine runs.
    cpu_per_gb: f64,
}

/// CPU seconds (user and system) a process has used.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses, possibly with spaces):
    // state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / ticks
}

/// Clock ticks per second, as /proc counts CPU time.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One iperf3 transfer from `client` to `server`, with the CPU time the
/// switch (`vswitchd`, ticks per second `ticks`) spent meanwhile.
fn transfer(client: &Host, server: &Host, seconds: u32, vswitchd: u32, ticks: f64) -> Transfer {
    let before = cpu_seconds(vswitchd, ticks);
    let gbits = iperf(client, server, seconds);
    let cpu = cpu_seconds(vswitchd, ticks) - before;
    let gigabytes = gbits * f64::from(seconds) / 8.0;
    Transfer {
        gbits,
        cpu_per_gb: cpu / gigabytes.max(1e-9),
    }
}

/// One iperf3 transfer from `client` to `server`; returns Gbit/s received.
fn iperf(client: &Host, server: &Host, seconds: u32) -> f64 {
    let mut daemon = server
        .spawn(&["iperf3", "-s", "-1", "-p", "5201"])
        .expect("start iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .exec_timeout(
            &[
                "iperf3",
                "-c",
                &server.ip().to_string(),
                "-p",
                "5201",
                "-t",
                &seconds.to_string(),
                "-f",
                "g",
            ],
            Duration::from_secs(u64::from(seconds) + 20),
        )
        .expect("iperf3 -c");
    let _ = daemon.wait_timeout(Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out.stdout);
    // "[  5]   0.00-5.00   sec  ...  X Gbits/sec  ...  receiver"
    let line = text
        .lines()
        .find(|l| l.trim_end().ends_with("receiver"))
        .unwrap_or_else(|| {
            panic!(
                "no iperf3 summary in {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| *f == "Gbits/sec")
        .expect("a rate in Gbits/sec");
    fields[at - 1].parse().expect("a number")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_throughput(cloud: &BenchCloud, rounds: usize) {
    const SECONDS: u32 = 5;
    println!("\n== throughput: iperf3 TCP, {SECONDS} s per transfer, {rounds} rounds, alternating");
    let mut http = cloud.client();
    let xml = http.call(&[
        ("Action", "CreateSecurityGroup"),
        ("GroupName", "iperf"),
        ("GroupDescription", "iperf"),
    ]);
    let group = element(&xml, "groupId").expect("a group id").to_string();
    http.call(&[
        ("Action", "AuthorizeSecurityGroupIngress"),
        ("GroupId", &group),
        ("IpPermissions.1.IpProtocol", "tcp"),
        ("IpPermissions.1.FromPort", "5201"),
        ("IpPermissions.1.ToPort", "5201"),
        ("IpPermissions.1.Groups.1.GroupId", &group),
        // Pings tell when the pairs reach each other.
        ("IpPermissions.2.IpProtocol", "icmp"),
        ("IpPermissions.2.FromPort", "-1"),
        ("IpPermissions.2.ToPort", "-1"),
        ("IpPermissions.2.Groups.1.GroupId", &group),
    ]);
    let (_, a) = cloud.instance(&mut http, "tpa", ZONES[0], &group);
    let (_, b) = cloud.instance(&mut http, "tpb", ZONES[0], &group);
    let (_, c) = cloud.instance(&mut http, "tpc", ZONES[1], &group);
    // The baseline: a bridge with only NORMAL, in the same Open vSwitch.
    let lab = &cloud.topology.lab;
    lab.add_bridge_with(
        "normal",
        &BridgeOptions::default().fail_mode(FailMode::Standalone),
    )
    .expect("the NORMAL bridge");
    lab.ofctl(&["del-flows", "normal"]).unwrap();
    lab.ofctl(&["add-flow", "normal", "priority=0,actions=NORMAL"])
        .unwrap();
    let x = lab
        .add_host(HostSpec::new(
            "tpx",
            "normal",
            Ipv4Addr::new(10, 9, 0, 1),
            24,
            MacAddr::local(91),
        ))
        .unwrap();
    let y = lab
        .add_host(HostSpec::new(
            "tpy",
            "normal",
            Ipv4Addr::new(10, 9, 0, 2),
            24,
            MacAddr::local(92),
        ))
        .unwrap();
    for (from, to) in [(&a, &b), (&a, &c), (&x, &y)] {
        testbed::wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            from.ping(to.ip()).is_ok()
        })
        .expect("the pair reaches each other");
    }
    let vswitchd = lab.vswitchd_pid().expect("the lab's ovs-vswitchd");
    let ticks = clock_ticks();
    let (mut pipeline, mut normal, mut cross) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so that neither always gets the
        // quieter moment.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for which in order {
            match which {
                0 => pipeline.push(transfer(&a, &b, SECONDS, vswitchd, ticks)),
                1 => normal.push(transfer(&x, &y, SECONDS, vswitchd, ticks)),
                _ => cross.push(transfer(&a, &c, SECONDS, vswitchd, ticks)),
            }
        }
        let (p, n, x) = (pipeline[round], normal[round], cross[round]);
        println!(
            "round {}: pipeline {:.2} Gbit/s ({:.2} vswitchd CPU s/GB), NORMAL {:.2} Gbit/s ({:.2} s/GB), \
             pipeline across hypervisors {:.2} Gbit/s ({:.2} s/GB)",
            round + 1,
            p.gbits,
            p.cpu_per_gb,
            n.gbits,
            n.cpu_per_gb,
            x.gbits,
            x.cpu_per_gb
        );
    }
    // Each round's two transfers ran back to back: their ratio is less
    // exposed to what else the machine does than the ratio of medians.
    let ratio = median(
        pipeline
            .iter()
            .zip(&normal)
            .map(|(p, n)| p.gbits / n.gbits)
            .collect(),
    );
    let gbits = |v: &[Transfer]| median(v.iter().map(|t| t.gbits).collect());
    let cpu = |v: &[Transfer]| median(v.iter().map(|t| t.cpu_per_gb).collect());
    let (p, n, x) = (gbits(&pipeline), gbits(&normal), gbits(&cross));
    println!(
        "median: pipeline (one hypervisor) {p:.2} Gbit/s, NORMAL {n:.2} Gbit/s, across hypervisors {x:.2} Gbit/s"
    );
    println!(
        "median vswitchd CPU per GB: pipeline {:.2} s, NORMAL {:.2} s ({:.2}x), across hypervisors {:.2} s",
        cpu(&pipeline),
        cpu(&normal),
        cpu(&pipeline) / cpu(&normal),
        cpu(&cross)
    );
    println!(
        "{}: pipeline / NORMAL = {:.1}% (median of the rounds' ratios; ratio of the medians {:.1}%; target >= 90%)",
        if ratio >= 0.9 { "PASS" } else { "FAIL" },
        100.0 * ratio,
        100.0 * p / n
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}")
}
