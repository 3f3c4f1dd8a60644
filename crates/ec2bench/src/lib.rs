//! `ec2bench`: measures the EC2 API of flowgate and of moto_server side by
//! side in one run: requests/s and p50/p99 latency of DescribeAddresses,
//! DescribeSecurityGroups over 100 groups x 5 rules, and
//! AllocateAddress+ReleaseAddress pairs, each with 1 and 16 concurrent
//! clients, every request signed with SigV4.
//!
//! The load generator is a minimal HTTP/1.1 keep-alive client on one
//! thread ([`client`]; the server gets the rest of the machine); each
//! request is signed afresh, as a real client does. [`run`] is the whole
//! comparison; the `ec2bench` binary (through `scripts/bench-ec2api.sh`) and
//! `flowgate-bench compare` print its table.

pub mod client;
mod stores;

pub use stores::run_stores;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::{Connection, Target, call, element};

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    DescribeAddresses,
    DescribeSecurityGroups,
    AllocateRelease,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::DescribeAddresses => "DescribeAddresses",
            Workload::DescribeSecurityGroups => "DescribeSecurityGroups (100x5)",
            Workload::AllocateRelease => "AllocateAddress+ReleaseAddress",
        }
    }
}

/// Runs one sample of `workload`; pushes the latency of each request it made onto `requests`.
async fn one(
    conn: &mut Connection,
    target: &Target,
    workload: Workload,
    requests: &mut Vec<Duration>,
) -> Result<(), String> {
    let t = Instant::now();
    match workload {
        Workload::DescribeAddresses => {
            call(
                conn,
                target,
                &[("Action", "DescribeAddresses"), ("Version", "2016-11-15")],
            )
            .await?;
        }
        Workload::DescribeSecurityGroups => {
            let xml = call(
                conn,
                target,
                &[("Action", "DescribeSecurityGroups"), ("Version", "2016-11-15")],
            )
            .await?;
            if xml.len() < 10_000 {
                return Err(format!(
                    "DescribeSecurityGroups answered only {} bytes",
                    xml.len()
                ));
            }
        }
        Workload::AllocateRelease => {
            let xml = call(
                conn,
                target,
                &[
                    ("Action", "AllocateAddress"),
                    ("Version", "2016-11-15"),
                    ("Domain", "vpc"),
                ],
            )
            .await?;
            let xml = String::from_utf8_lossy(&xml);
            let id = element(&xml, "allocationId")
                .ok_or("no allocationId")?
                .to_string();
            requests.push(t.elapsed());
            let t = Instant::now();
            call(
                conn,
                target,
                &[
                    ("Action", "ReleaseAddress"),
                    ("Version", "2016-11-15"),
                    ("AllocationId", &id),
                ],
            )
            .await?;
            requests.push(t.elapsed());
            return Ok(());
        }
    }
    requests.push(t.elapsed());
    Ok(())
}

/// Results of one measurement.
struct Measurement {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    count: usize,
    /// p99 of single requests (differs from `p99` where a sample is a pair).
    request_p99: Duration,
}

async fn measure(
    target: &Target,
    workload: Workload,
    clients: usize,
    duration: Duration,
) -> Result<Measurement, String> {
    measure_on(std::slice::from_ref(target), workload, clients, duration).await
}

/// Like [`measure`], with the clients spread over the nodes of one cloud:
/// client `i` talks to `nodes[i % nodes.len()]`.
async fn measure_on(
    nodes: &[Target],
    workload: Workload,
    clients: usize,
    duration: Duration,
) -> Result<Measurement, String> {
    // Warm up each connection, then run all clients until the deadline.
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + duration;
    for client in 0..clients {
        let target = nodes[client % nodes.len()].clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Connection::new(target.addr);
            one(&mut conn, &target, workload, &mut Vec::new()).await?;
            tokio::time::sleep_until(start.into()).await;
            let mut latencies = Vec::new();
            let mut requests = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                one(&mut conn, &target, workload, &mut requests).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, String>((latencies, requests))
        }));
    }
    let mut all = Vec::new();
    let mut requests = Vec::new();
    for task in tasks {
        let (samples, singles) = task.await.map_err(|e| e.to_string())??;
        all.extend(samples);
        requests.extend(singles);
    }
    requests.sort();
    let elapsed = Instant::now().saturating_duration_since(start).max(duration);
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let request_p99 = requests
        .get(((requests.len() as f64 * 0.99) as usize).min(requests.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(Measurement {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        count: all.len(),
        request_p99,
    })
}

/// 100 groups with 5 ingress rules each, and 5 addresses, made through the API.
async fn populate(target: &Target) -> Result<(), String> {
    let mut conn = Connection::new(target.addr);
    for g in 0..100 {
        let name = format!("bench-{g}");
        let xml = call(
            &mut conn,
            target,
            &[
                ("Action", "CreateSecurityGroup"),
                ("Version", "2016-11-15"),
                ("GroupName", &name),
                ("GroupDescription", "bench group"),
            ],
        )
        .await?;
        let xml = String::from_utf8_lossy(&xml);
        let id = element(&xml, "groupId").ok_or("no groupId")?.to_string();
        let mut pairs: Vec<(String, String)> = vec![
            ("Action".into(), "AuthorizeSecurityGroupIngress".into()),
            ("Version".into(), "2016-11-15".into()),
            ("GroupId".into(), id),
        ];
        for r in 1..=5 {
            let port = (1000 + r).to_string();
            pairs.push((format!("IpPermissions.{r}.IpProtocol"), "tcp".into()));
            pairs.push((format!("IpPermissions.{r}.FromPort"), port.clone()));
            pairs.push((format!("IpPermissions.{r}.ToPort"), port));
            pairs.push((
                format!("IpPermissions.{r}.IpRanges.1.CidrIp"),
                format!("10.{g}.{r}.0/24"),
            ));
        }
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        call(&mut conn, target, &borrowed).await?;
    }
    for _ in 0..5 {
        call(
            &mut conn,
            target,
            &[
                ("Action", "AllocateAddress"),
                ("Version", "2016-11-15"),
                ("Domain", "vpc"),
            ],
        )
        .await?;
    }
    Ok(())
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn json_field(json: &str, name: &str) -> Result<String, String> {
    let needle = format!("\"{name}\":\"");
    let start = json.find(&needle).ok_or(format!("no {name} in {json}"))? + needle.len();
    let end = json[start..].find('"').ok_or("unterminated")? + start;
    Ok(json[start..end].to_string())
}

fn start_moto(moto: &Path) -> Result<(Process, Target), String> {
    let port = testbed::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("moto_server ({}): {e}", moto.display()))?;
    wait_listening(addr, &mut child, "moto_server")?;
    Ok((
        Process(child),
        Target {
            name: "moto",
            addr,
            region: "us-east-1",
            key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "moto".into(),
        },
    ))
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `flowgate` binary.
    pub flowgate: PathBuf,
    /// moto_server, or `None` to measure flowgate alone.
    pub moto: Option<PathBuf>,
    /// How long each measurement runs.
    pub duration: Duration,
    /// Numbers of concurrent clients to measure with.
    pub clients: Vec<usize>,
}

impl Options {
    /// The defaults: the repository's release build and venv, 5 s, 1 and 16 clients.
    pub fn new() -> Options {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Options {
            flowgate: root.join("target/release/flowgate"),
            moto: Some(root.join(".venv/bin/moto_server")),
            duration: Duration::from_secs(5),
            clients: vec![1, 16],
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs the whole comparison in a scratch directory and returns its
/// report: a Markdown table and notes (progress goes to stderr).
pub fn run(options: &Options) -> Result<String, String> {
    let work = std::env::temp_dir().join(format!("flowgate-ec2bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = bench(options, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(options: &Options, work: &Path) -> Result<String, String> {
    use std::fmt::Write as _;
    let mut report = String::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let (_flowgate_process, mut nodes) = stores::start_nodes(&options.flowgate, work, "flowgate", None, 1)?;
    let flowgate = nodes.remove(0);
    let moto = match &options.moto {
        Some(path) => Some(start_moto(path)?),
        None => None,
    };
    let mut targets = vec![&flowgate];
    if let Some((_, target)) = &moto {
        targets.push(target);
    }
    local.block_on(&runtime, async {
        for target in &targets {
            populate(target).await?;
        }
        report.push_str(
            "| Workload | Clients | flowgate req/s | flowgate p50 ms | flowgate p99 ms | moto req/s | moto p50 ms | moto p99 ms | flowgate / moto |\n",
        );
        report.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let mut pair_notes = Vec::new();
        for workload in [Workload::DescribeAddresses, Workload::DescribeSecurityGroups, Workload::AllocateRelease] {
            for &clients in &options.clients {
                let ours = measure(&flowgate, workload, clients, options.duration).await?;
                let theirs = match &moto {
                    Some((_, target)) => Some(measure(target, workload, clients, options.duration).await?),
                    None => None,
                };
                let (moto_cols, ratio) = match &theirs {
                    Some(m) => (
                        format!("{:.0} | {} | {}", m.per_second, ms(m.p50), ms(m.p99)),
                        format!("{:.1}x", ours.per_second / m.per_second.max(1e-9)),
                    ),
                    None => ("- | - | -".into(), "-".into()),
                };
                let _ = writeln!(
                    report,
                    "| {} | {clients} | {:.0} | {} | {} | {moto_cols} | {ratio} |",
                    workload.name(),
                    ours.per_second,
                    ms(ours.p50),
                    ms(ours.p99)
                );
                if workload == Workload::AllocateRelease {
                    pair_notes.push(format!(
                        "{clients} clients: p99 of a single AllocateAddress or ReleaseAddress request: flowgate {} ms{}",
                        ms(ours.request_p99),
                        theirs.as_ref().map(|m| format!(", moto {} ms", ms(m.request_p99))).unwrap_or_default()
                    ));
                }
                eprintln!(
                    "  ({} flowgate samples{})",
                    ours.count,
                    theirs.map(|m| format!(", {} moto samples", m.count)).unwrap_or_default()
                );
            }
        }
        report.push('\n');
        for note in pair_notes {
            let _ = writeln!(report, "* {note}");
        }
        Ok::<_, String>(())
    })?;
    Ok(report)
}
