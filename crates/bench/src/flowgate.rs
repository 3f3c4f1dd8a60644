//! The flowgate side: the real `flowgate serve` (release build) managing
//! one hypervisor bridge in a private test-bed lab, driven through its EC2
//! Query API with SigV4-signed requests, and watched from outside.
//!
//! The bridge (`br-int`, `fail_mode=secure`) runs in the lab's Open vSwitch
//! and connects to flowgate through a Unix socket in the lab's directory;
//! `flowgate serve` itself runs in the harness's namespace, so the API is on
//! the harness's loopback. The hypervisor uses the external driver: the
//! harness plugs each instance's port (an internal OVS port with the name
//! flowgate assigned) as a hypervisor's virtualization would.
//!
//! "Flows installed" is observed on the bridge, not taken from flowgate:
//! a [`Probe`] on the bridge's management socket asks how many flows carry
//! an owner's cookie (flowgate derives each owner's cookie from its id, see
//! `compiler::OwnerKey::preferred_cookie`, and installs an owner's flows in
//! one atomic bundle), so a change counts as installed when its owner's
//! flows are on the switch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use compiler::{OwnerKey, OwnerKind};
use ec2bench::client::{Connection, Target, call, element};
use testbed::{BridgeOptions, Lab};

use crate::error::{Error, Result};
use crate::figures::{Figures, Policy};
use crate::probe::Probe;
use crate::util::{self, cpu_time, elements, rss};

/// Prefix of the harness's scratch directories: `flowgate-bench-<pid>-<n>`.
const WORK_PREFIX: &str = "flowgate-bench-";
/// The bridge's datapath id.
const DATAPATH_ID: u64 = 0xfb00_0000_0001;
/// How long the bulk creation may take before the run gives up.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a single change may take before the run gives up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Clients making the Elastic IP calls of the bulk creation at once.
const ADDRESS_CLIENTS: usize = 8;

/// A scratch directory with a `flowgate serve` running on it; dropping it
/// kills the server and removes the directory. Its pid is written to
/// `serve.pid` so that [`sweep`] can stop it if the harness is killed.
struct Serve {
    child: Child,
    work: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Stops the servers and removes the scratch directories that harness runs
/// killed before they could clean up (their pid is gone).
pub fn sweep() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(WORK_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if let Some(serve) = std::fs::read_to_string(dir.join("serve.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            // Only if that pid is still a flowgate serving this directory.
            let cmdline = std::fs::read(format!("/proc/{serve}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill").args(["-9", &serve.to_string()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn work_dir() -> Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{WORK_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// The value of `"name":"..."` in a line of JSON from `flowgate admin --json`.
fn json_field(json: &str, name: &str) -> Result<String> {
    let needle = format!("\"{name}\":\"");
    let start = json
        .find(&needle)
        .ok_or_else(|| Error::Api(format!("no {name} in {json}")))?
        + needle.len();
    let end = json[start..]
        .find('"')
        .ok_or_else(|| Error::Api(format!("unterminated {name} in {json}")))?
        + start;
    Ok(json[start..end].to_string())
}

/// flowgate serving one lab bridge.
struct Cloud {
    // Dropped first: the server, then the lab.
    serve: Serve,
    lab: Lab,
    target: Target,
    image: String,
    network: String,
}

impl Cloud {
    fn start(flowgate: &Path) -> Result<Cloud> {
        let lab = Lab::start()?;
        let socket = lab.run_dir().join("flowgate-of.sock");
        lab.add_bridge_with(
            "br-int",
            &BridgeOptions::new()
                .datapath_id(DATAPATH_ID)
                .controller(&format!("unix:{}", socket.display())),
        )?;
        lab.vsctl(&[
            "add-port",
            "br-int",
            "up0",
            "--",
            "set",
            "Interface",
            "up0",
            "type=internal",
        ])?;

        let work = work_dir()?;
        let data = work.join("data");
        let config = work.join("flowgate.toml");
        // A load generator: no request rate limits and no bound on requests
        // in progress (the defaults protect a cloud from its tenants).
        let toml = format!(
            "[api]\naddresses_per_account = 1000000\n\
             write_requests_per_second = 0\nread_requests_per_second = 0\n\
             max_requests_in_progress = 0\n\
             [openflow]\nlisten = \"127.0.0.1:{}\"\nunix_sockets = [\"{}\"]\n\
             [network]\npublic_gateway_mac = \"02:00:00:00:00:01\"\n\
             [metrics]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n",
            testbed::free_port(),
            socket.display()
        );
        std::fs::write(&config, toml).map_err(|e| Error::io(format!("writing {}", config.display()), e))?;
        let admin = |args: &[&str]| -> Result<String> {
            util::run(
                Command::new(flowgate)
                    .arg("admin")
                    .arg("--config")
                    .arg(&config)
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("--json")
                    .args(args),
            )
        };
        let account = admin(&["account", "create", "bench"])?;
        admin(&[
            "pool",
            "add",
            "--cidr",
            "198.18.0.0/15",
            "--gateway",
            "198.18.0.1",
        ])?;
        let network = admin(&["network", "add", "--cidr", "10.0.0.0/16", "--gateway", "10.0.0.1"])?;
        let image = admin(&["image", "add", "bench"])?;
        admin(&[
            "hypervisor",
            "add",
            "hv1",
            "--bridge",
            "br-int",
            "--uplink",
            "up0",
            "--driver",
            "external",
            "--ovsdb",
            &format!("unix:{}", lab.db_socket().display()),
        ])?;

        let addr = SocketAddr::from(([127, 0, 0, 1], testbed::free_port()));
        let log =
            std::fs::File::create(work.join("serve.log")).map_err(|e| Error::io("creating serve.log", e))?;
        let child = Command::new(flowgate)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--api-listen")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::io(format!("starting {} serve", flowgate.display()), e))?;
        let serve = Serve { child, work };
        std::fs::write(serve.work.join("serve.pid"), serve.child.id().to_string())
            .map_err(|e| Error::io("writing serve.pid", e))?;
        let cloud = Cloud {
            serve,
            lab,
            target: Target {
                name: "flowgate",
                addr,
                region: "flowgate-1",
                key: json_field(&account, "access_key_id")?,
                secret: json_field(&account, "secret_access_key")?,
            },
            image: json_field(&image, "image_id")?,
            network: json_field(&network, "subnet_id")?,
        };
        // Serving once the bridge has its fixed pipeline.
        let mut probe = cloud.probe()?;
        let pipeline = OwnerKey::new(OwnerKind::Pipeline, "").preferred_cookie();
        wait_present(
            &mut probe,
            &[pipeline],
            Duration::from_secs(60),
            "flowgate's pipeline on the bridge",
        )?;
        Ok(cloud)
    }

    fn probe(&self) -> Result<Probe> {
        Probe::connect(self.lab.bridge("br-int")?.mgmt_socket())
    }
}

/// Waits until every cookie of `cookies` has flows on the bridge; returns
/// when the last one was seen. One cookie (the last still missing) is
/// polled until it appears, then all missing ones are asked for at once,
/// so the switch is not flooded with requests while it installs flows.
fn wait_present(probe: &mut Probe, cookies: &[u64], timeout: Duration, what: &str) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut missing: Vec<u64> = cookies.to_vec();
    while let Some(&sentinel) = missing.last() {
        if probe.present(sentinel)? {
            let selectors: Vec<(u64, u64)> = missing.iter().map(|&c| (c, u64::MAX)).collect();
            let counts = probe.counts(&selectors)?;
            missing = missing
                .iter()
                .zip(counts)
                .filter(|(_, n)| *n == 0)
                .map(|(c, _)| *c)
                .collect();
            continue;
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("{what} ({} of {} owners missing)", missing.len(), cookies.len()),
                timeout,
            });
        }
        // Often enough for sub-millisecond resolution, rarely enough to
        // cost the switch little.
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(Instant::now())
}

fn cookie(kind: OwnerKind, id: &str) -> u64 {
    OwnerKey::new(kind, id).preferred_cookie()
}

/// Signed API call with owned parameters.
async fn api(conn: &mut Connection, target: &Target, pairs: &[(String, String)]) -> Result<String> {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    call(conn, target, &borrowed)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(Error::Api)
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![("Version".into(), "2016-11-15".into())];
    v.extend(items.iter().map(|(k, val)| (k.to_string(), val.to_string())));
    v
}

fn first(xml: &str, tag: &str) -> Result<String> {
    element(xml, tag)
        .map(str::to_string)
        .ok_or_else(|| Error::Api(format!("no <{tag}> in the answer: {xml}")))
}

/// Allocates an Elastic IP and associates it with `instance`; returns the
/// allocation id.
async fn add_address(conn: &mut Connection, target: &Target, instance: &str) -> Result<String> {
    let xml = api(
        conn,
        target,
        &pairs(&[("Action", "AllocateAddress"), ("Domain", "vpc")]),
    )
    .await?;
    let allocation = first(&xml, "allocationId")?;
    api(
        conn,
        target,
        &pairs(&[
            ("Action", "AssociateAddress"),
            ("AllocationId", &allocation),
            ("InstanceId", instance),
        ]),
    )
    .await?;
    Ok(allocation)
}

/// Builds the policy on a fresh flowgate and measures it.
pub fn measure(flowgate: &Path, policy: &Policy) -> Result<Figures> {
    let cloud = Cloud::start(flowgate)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting a runtime", e))?;
    let target = cloud.target.clone();
    let mut conn = Connection::new(target.addr);
    let mut probe = cloud.probe()?;
    let n = policy.instances.to_string();

    // Bulk: the tenant's API calls, then the hypervisor plugs the ports.
    let serve_pid = cloud.serve.child.id();
    let vswitchd = cloud.lab.vswitchd_pid()?;
    let (cpu_before, switch_before) = (cpu_time(serve_pid), cpu_time(vswitchd));
    let start = Instant::now();
    let (group, instances, names, mut owners) = rt.block_on(async {
        let xml = api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "CreateSecurityGroup"),
                ("GroupName", "web"),
                ("GroupDescription", "flowgate-bench"),
            ]),
        )
        .await?;
        let group = first(&xml, "groupId")?;
        api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "AuthorizeSecurityGroupIngress"),
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", "22"),
                ("IpPermissions.1.ToPort", "22"),
                ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
                ("IpPermissions.2.IpProtocol", "tcp"),
                ("IpPermissions.2.FromPort", "80"),
                ("IpPermissions.2.ToPort", "80"),
                ("IpPermissions.2.IpRanges.1.CidrIp", "0.0.0.0/0"),
                ("IpPermissions.3.IpProtocol", "tcp"),
                ("IpPermissions.3.FromPort", "443"),
                ("IpPermissions.3.ToPort", "443"),
                ("IpPermissions.3.IpRanges.1.CidrIp", "0.0.0.0/0"),
                ("IpPermissions.4.IpProtocol", "icmp"),
                ("IpPermissions.4.FromPort", "-1"),
                ("IpPermissions.4.ToPort", "-1"),
                ("IpPermissions.4.IpRanges.1.CidrIp", "0.0.0.0/0"),
                ("IpPermissions.5.IpProtocol", "-1"),
                ("IpPermissions.5.Groups.1.GroupId", &group),
            ]),
        )
        .await?;
        let xml = api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "RunInstances"),
                ("ImageId", &cloud.image),
                ("MinCount", &n),
                ("MaxCount", &n),
                ("SecurityGroupId.1", &group),
            ]),
        )
        .await?;
        let instances: Vec<String> = elements(&xml, "instanceId")
            .into_iter()
            .map(String::from)
            .collect();
        let names: Vec<String> = elements(&xml, "flowgateInterfaceName")
            .into_iter()
            .map(String::from)
            .collect();
        if instances.len() != policy.instances || names.len() != policy.instances {
            return Err(Error::Api(format!(
                "RunInstances gave {} instances and {} port names for {}",
                instances.len(),
                names.len(),
                policy.instances
            )));
        }
        let xml = api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "DescribeSecurityGroupRules"),
                ("Filter.1.Name", "group-id"),
                ("Filter.1.Value.1", &group),
            ]),
        )
        .await?;
        let mut owners: Vec<u64> = elements(&xml, "securityGroupRuleId")
            .into_iter()
            .map(|id| cookie(OwnerKind::Rule, id))
            .collect();
        owners.push(cookie(OwnerKind::Network, &cloud.network));
        owners.extend(instances.iter().map(|i| cookie(OwnerKind::Instance, i)));
        // Elastic IPs from several clients at once, as a tenant's tooling would.
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..ADDRESS_CLIENTS {
            let mine: Vec<String> = instances[..policy.addresses]
                .iter()
                .skip(c)
                .step_by(ADDRESS_CLIENTS)
                .cloned()
                .collect();
            let target = target.clone();
            tasks.spawn(async move {
                let mut conn = Connection::new(target.addr);
                let mut allocations = Vec::new();
                for instance in mine {
                    allocations.push(add_address(&mut conn, &target, &instance).await?);
                }
                Ok::<_, Error>(allocations)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let allocations = done.map_err(|e| Error::Api(format!("a client task failed: {e}")))??;
            owners.extend(allocations.iter().map(|a| cookie(OwnerKind::Address, a)));
        }
        Ok::<_, Error>((group, instances, names, owners))
    })?;
    let ports_start = Instant::now();
    let mut ports: Vec<String> = Vec::new();
    for name in &names {
        ports.extend(
            [
                "--",
                "add-port",
                "br-int",
                name,
                "--",
                "set",
                "Interface",
                name,
                "type=internal",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    util::run(
        Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", cloud.lab.db_socket().display()))
            .arg("--timeout=900")
            .args(&ports),
    )?;
    let bulk_ports = ports_start.elapsed();
    owners.reverse();
    let done = wait_present(&mut probe, &owners, BULK_TIMEOUT, "the bulk creation's flows")?;
    let bulk = done - start;
    let bulk_cpu = cpu_time(serve_pid).saturating_sub(cpu_before);
    let bulk_switch_cpu = cpu_time(vswitchd).saturating_sub(switch_before);
    let flows = u64::from(probe.flow_count()?);
    eprintln!("    bulk {bulk:?}; single changes ...");

    let mut figures = Figures {
        system: "flowgate",
        bulk,
        bulk_ports,
        bulk_cpu,
        bulk_switch_cpu,
        flows,
        ..Figures::default()
    };
    for r in 0..policy.repeats {
        let port = Policy::added_rule_port(r).to_string();
        let t = Instant::now();
        let xml = rt.block_on(api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "AuthorizeSecurityGroupIngress"),
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", &port),
                ("IpPermissions.1.ToPort", &port),
                ("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0"),
            ]),
        ))?;
        let rule = first(&xml, "securityGroupRuleId")?;
        let seen = wait_present(
            &mut probe,
            &[cookie(OwnerKind::Rule, &rule)],
            CHANGE_TIMEOUT,
            "an added rule",
        )?;
        figures.rule.push(seen - t);

        let instance = &instances[policy.addresses + r];
        let t = Instant::now();
        let allocation = rt.block_on(add_address(&mut conn, &target, instance))?;
        let seen = wait_present(
            &mut probe,
            &[cookie(OwnerKind::Address, &allocation)],
            CHANGE_TIMEOUT,
            "an added Elastic IP",
        )?;
        figures.address.push(seen - t);

        // A write that changes no flow, then a barrier round trip to the
        // switch (OVN's `--wait=hv sync` ends with one too).
        let t = Instant::now();
        let value = r.to_string();
        rt.block_on(api(
            &mut conn,
            &target,
            &pairs(&[
                ("Action", "CreateTags"),
                ("ResourceId.1", &group),
                ("Tag.1.Key", "bench"),
                ("Tag.1.Value", &value),
            ]),
        ))?;
        probe.barrier()?;
        figures.noop.push(t.elapsed());
    }
    figures
        .control_memory
        .push(("flowgate serve".into(), rss(cloud.serve.child.id()).unwrap_or(0)));
    figures
        .switch_memory
        .push(("ovs-vswitchd".into(), rss(cloud.lab.vswitchd_pid()?).unwrap_or(0)));
    figures.switch_memory.push((
        "ovsdb-server (Open_vSwitch)".into(),
        rss(cloud.lab.ovsdb_pid()?).unwrap_or(0),
    ));
    Ok(figures)
}
