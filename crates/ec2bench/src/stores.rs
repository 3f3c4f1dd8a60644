//! flowgate on its stores side by side, in one run: SQLite, PostgreSQL with
//! one `flowgate serve` node, and PostgreSQL with two and three nodes
//! (clients spread over them), on the same workloads as the moto comparison; then how long
//! a write through one node takes to show through the other. PostgreSQL is
//! a private server (crates/pgtest) with its default, durable settings.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Connection, Target, call, element};
use crate::{Options, Process, Workload, json_field, measure_on, ms, populate, wait_listening};
use testbed::free_port;

/// Runs the store comparison in a scratch directory and returns its
/// report: a Markdown table and notes (progress goes to stderr).
pub fn run_stores(options: &Options) -> Result<String, String> {
    let work = std::env::temp_dir().join(format!("flowgate-ec2bench-stores-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = bench_stores(options, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `flowgate admin` on a store: SQLite in `data`, or the PostgreSQL `url`.
fn admin(flowgate: &Path, data: &Path, url: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(flowgate);
    command.arg("admin").arg("--data-dir").arg(data);
    if let Some(url) = url {
        command.arg("--store").arg(url);
    }
    let out = command
        .args(args)
        .output()
        .map_err(|e| format!("flowgate admin: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "flowgate admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nodes` flowgate serve processes on one store (SQLite: one only), with
/// an account and a pool; each node has ports of its own. Request limits
/// are off: the benchmark loads them on purpose.
pub(crate) fn start_nodes(
    flowgate: &Path,
    work: &Path,
    name: &'static str,
    url: Option<&str>,
    nodes: usize,
) -> Result<(Vec<Process>, Vec<Target>), String> {
    let data = work.join(format!("data-{}", name.replace(' ', "-")));
    let account = admin(flowgate, &data, url, &["account", "create", "bench", "--json"])?;
    admin(
        flowgate,
        &data,
        url,
        &[
            "pool",
            "add",
            "--cidr",
            "100.64.0.0/16",
            "--gateway",
            "100.64.0.1",
        ],
    )?;
    let config = work.join("flowgate-stores.toml");
    // No metrics endpoint: several nodes run on one machine.
    std::fs::write(
        &config,
        "[api]\naddresses_per_account = 1000\n\
         write_requests_per_second = 0\nread_requests_per_second = 0\nmax_requests_in_progress = 0\n[metrics]\nlisten = \"\"\n[log]\nlevel = \"warn\"\n",
    )
    .map_err(|e| e.to_string())?;
    let (key, secret) = (
        json_field(&account, "access_key_id")?,
        json_field(&account, "secret_access_key")?,
    );
    let mut processes = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..nodes {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let openflow = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(flowgate);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data);
        if let Some(url) = url {
            command.arg("--store").arg(url);
        }
        let mut child = command
            .arg("--api-listen")
            .arg(addr.to_string())
            .arg("--openflow-listen")
            .arg(openflow.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("flowgate serve: {e}"))?;
        wait_listening(addr, &mut child, "flowgate serve")?;
        processes.push(Process(child));
        targets.push(Target {
            name,
            addr,
            region: "flowgate-1",
            key: key.clone(),
            secret: secret.clone(),
        });
    }
    Ok((processes, targets))
}

/// Waits until every node lists the 100 groups `populate` made through the first.
async fn await_groups(nodes: &[Target]) -> Result<(), String> {
    for node in nodes {
        let mut conn = Connection::new(node.addr);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let xml = call(
                &mut conn,
                node,
                &[("Action", "DescribeSecurityGroups"), ("Version", "2016-11-15")],
            )
            .await?;
            if String::from_utf8_lossy(&xml).matches("<groupId>").count() >= 101 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("node {} did not show the groups within 10 s", node.addr));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// How long after node A answers an AllocateAddress node B lists the
/// address: (p50, p99, max) over `samples` allocations, each released after.
async fn propagation(
    a: &Target,
    b: &Target,
    samples: usize,
) -> Result<(Duration, Duration, Duration), String> {
    let (mut to_a, mut to_b) = (Connection::new(a.addr), Connection::new(b.addr));
    let mut delays = Vec::with_capacity(samples);
    for _ in 0..samples {
        let xml = call(
            &mut to_a,
            a,
            &[
                ("Action", "AllocateAddress"),
                ("Version", "2016-11-15"),
                ("Domain", "vpc"),
            ],
        )
        .await?;
        let answered = Instant::now();
        let xml = String::from_utf8_lossy(&xml);
        let id = element(&xml, "allocationId")
            .ok_or("no allocationId")?
            .to_string();
        loop {
            let listed = call(
                &mut to_b,
                b,
                &[
                    ("Action", "DescribeAddresses"),
                    ("Version", "2016-11-15"),
                    ("AllocationId.1", &id),
                ],
            )
            .await;
            if listed.is_ok_and(|xml| String::from_utf8_lossy(&xml).contains(&id)) {
                break;
            }
            if answered.elapsed() > Duration::from_secs(10) {
                return Err(format!("node B did not list {id} within 10 s"));
            }
        }
        delays.push(answered.elapsed());
        call(
            &mut to_a,
            a,
            &[
                ("Action", "ReleaseAddress"),
                ("Version", "2016-11-15"),
                ("AllocationId", &id),
            ],
        )
        .await?;
    }
    delays.sort();
    let pick = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    Ok((pick(0.5), pick(0.99), delays[delays.len() - 1]))
}

fn bench_stores(options: &Options, work: &Path) -> Result<String, String> {
    let mut report = String::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    let postgres = pgtest::Postgres::start().map_err(|e| e.to_string())?;
    for database in ["one_node", "two_nodes", "three_nodes"] {
        postgres
            .psql(pgtest::DATABASE, &format!("CREATE DATABASE {database}"))
            .map_err(|e| e.to_string())?;
    }
    let flowgate = &options.flowgate;
    let (_sqlite, sqlite) = start_nodes(flowgate, work, "SQLite", None, 1)?;
    let url = postgres.url_for("one_node");
    let (_one, one) = start_nodes(flowgate, work, "PostgreSQL 1 node", Some(&url), 1)?;
    let url = postgres.url_for("two_nodes");
    let (_two, two) = start_nodes(flowgate, work, "PostgreSQL 2 nodes", Some(&url), 2)?;
    let url = postgres.url_for("three_nodes");
    let (_three, three) = start_nodes(flowgate, work, "PostgreSQL 3 nodes", Some(&url), 3)?;
    let clouds = [&sqlite, &one, &two, &three];
    local.block_on(&runtime, async {
        for nodes in clouds {
            populate(&nodes[0]).await?;
            await_groups(nodes).await?;
        }
        let mut header = String::from("| Workload | Clients |");
        let mut rule = String::from("|---|---:|");
        for nodes in clouds {
            let _ = write!(header, " {0} req/s | {0} p50 ms | {0} p99 ms |", nodes[0].name);
            rule.push_str("---:|---:|---:|");
        }
        let _ = writeln!(report, "{header}\n{rule}");
        let mut pair_notes = Vec::new();
        for workload in [
            Workload::DescribeAddresses,
            Workload::DescribeSecurityGroups,
            Workload::AllocateRelease,
        ] {
            for &clients in &options.clients {
                let mut row = format!("| {} | {clients} |", workload.name());
                let mut singles = Vec::new();
                for nodes in clouds {
                    let m = measure_on(nodes, workload, clients, options.duration).await?;
                    let _ = write!(row, " {:.0} | {} | {} |", m.per_second, ms(m.p50), ms(m.p99));
                    singles.push(format!("{} {} ms", nodes[0].name, ms(m.request_p99)));
                    eprintln!("  ({} {} samples)", m.count, nodes[0].name);
                }
                let _ = writeln!(report, "{row}");
                if workload == Workload::AllocateRelease {
                    pair_notes.push(format!(
                        "{clients} clients: p99 of a single AllocateAddress or ReleaseAddress request: {}",
                        singles.join(", ")
                    ));
                }
            }
        }
        report.push('\n');
        for note in pair_notes {
            let _ = writeln!(report, "* {note}");
        }
        let (p50, p99, max) = propagation(&two[0], &two[1], 500).await?;
        let _ = writeln!(
            report,
            "* Propagation between the two nodes (AllocateAddress answered by node A until \
             DescribeAddresses on node B lists it, 500 samples): p50 {} ms, p99 {} ms, max {} ms",
            ms(p50),
            ms(p99),
            ms(max)
        );
        Ok::<_, String>(())
    })?;
    Ok(report)
}
