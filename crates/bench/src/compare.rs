//! `flowgate-bench compare`: the same policy built in OVN and in flowgate,
//! one size after the other, printed side by side with ratios; then the
//! EC2 API against moto_server (crates/ec2bench).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::figures::{Figures, Policy};
use crate::util::{human, load_average, median, mib, ratio};
use crate::{flowgate, ovn};

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Policy sizes (N).
    pub sizes: Vec<usize>,
    /// Samples of each single change.
    pub repeats: usize,
    /// The `flowgate` binary.
    pub flowgate: PathBuf,
    /// Skip OVN (flowgate alone).
    pub no_ovn: bool,
    /// The EC2 API comparison, or `None` to skip it.
    pub api: Option<ec2bench::Options>,
}

/// Runs every comparison and returns the report (Markdown); progress goes
/// to stderr as it happens.
pub fn run(options: &CompareOptions) -> Result<String> {
    let mut report = String::new();
    let mut at_1000 = None;
    for &n in &options.sizes {
        let policy = Policy::new(n, options.repeats);
        eprintln!("N = {n}: load average {}", load_average());
        let ovn = if options.no_ovn {
            None
        } else {
            eprintln!("  OVN ...");
            let f = ovn::measure(&policy)?;
            eprintln!("  {} bulk {}", f.system, human(f.bulk));
            Some(f)
        };
        eprintln!("  flowgate ...");
        let fg = flowgate::measure(&options.flowgate, &policy)?;
        eprintln!("  {} bulk {}", fg.system, human(fg.bulk));
        report.push_str(&table(&policy, ovn.as_ref(), &fg));
        report.push('\n');
        if n == 1000 {
            at_1000 = ovn.map(|o| (o, fg));
        }
    }
    if let Some((ovn, fg)) = at_1000 {
        report.push_str(&targets(&ovn, &fg));
        report.push('\n');
    }
    if let Some(api) = &options.api {
        eprintln!("EC2 API against moto_server ...");
        let table = ec2bench::run(api).map_err(crate::error::Error::Api)?;
        report.push_str("EC2 API, flowgate against moto_server (requests signed with SigV4):\n\n");
        report.push_str(&table);
    }
    Ok(report)
}

/// The bulk creation without the plugging of ports, which is the same
/// `ovs-vsctl` transaction for both systems.
fn control_part(f: &Figures) -> Duration {
    f.bulk.saturating_sub(f.bulk_ports)
}

fn per_instance(f: &Figures, n: usize) -> f64 {
    f.flows as f64 / n.max(1) as f64
}

/// One row of a size's table.
struct Row {
    name: String,
    ovn: Option<String>,
    flowgate: String,
    ratio: Option<String>,
}

impl Row {
    /// A duration picked from both systems' figures, with OVN / flowgate.
    fn time(name: &str, ovn: Option<&Figures>, fg: &Figures, pick: impl Fn(&Figures) -> Duration) -> Row {
        let f = pick(fg);
        Row {
            name: name.into(),
            ovn: ovn.map(|o| human(pick(o))),
            flowgate: human(f),
            ratio: ovn.map(|o| ratio(pick(o).as_secs_f64(), f.as_secs_f64())),
        }
    }

    /// A quantity from both systems, with OVN / flowgate.
    fn amount(name: &str, ovn: Option<f64>, fg: f64, show: impl Fn(f64) -> String) -> Row {
        Row {
            name: name.into(),
            ovn: ovn.map(&show),
            flowgate: show(fg),
            ratio: ovn.map(|o| ratio(o, fg)),
        }
    }
}

/// One size's table: a row per figure, OVN | flowgate | OVN / flowgate.
fn table(policy: &Policy, ovn: Option<&Figures>, fg: &Figures) -> String {
    let n = policy.instances;
    let mut rows = vec![
        Row::time("bulk creation to flows installed", ovn, fg, |f| f.bulk),
        Row::time("  of which: plugging N ports (ovs-vsctl)", ovn, fg, |f| {
            f.bulk_ports
        }),
        Row::time("  the rest: control plane", ovn, fg, control_part),
        Row::time("control plane CPU time during the bulk", ovn, fg, |f| f.bulk_cpu),
        Row::time("ovs-vswitchd CPU time during the bulk", ovn, fg, |f| {
            f.bulk_switch_cpu
        }),
        Row::time("one added rule", ovn, fg, |f| median(&f.rule)),
        Row::time("one added Elastic IP", ovn, fg, |f| median(&f.address)),
        Row::time("no-op", ovn, fg, |f| median(&f.noop)),
        Row::amount(
            "flows on the bridge",
            ovn.map(|o| o.flows as f64),
            fg.flows as f64,
            |v| format!("{v:.0}"),
        ),
        Row::amount(
            "flows per instance",
            ovn.map(|o| per_instance(o, n)),
            per_instance(fg, n),
            |v| format!("{v:.1}"),
        ),
        Row::amount(
            "control plane memory (RSS, total)",
            ovn.map(|o| o.control_total() as f64),
            fg.control_total() as f64,
            |v| mib(v as u64),
        ),
    ];
    let processes = ovn
        .map(|o| o.control_memory.iter().map(|(name, b)| (name, Some(*b), None)))
        .into_iter()
        .flatten()
        .chain(fg.control_memory.iter().map(|(name, b)| (name, None, Some(*b))));
    for (name, o, f) in processes {
        rows.push(Row {
            name: format!("  {name}"),
            ovn: o.map(mib),
            flowgate: f.map(mib).unwrap_or_else(|| "-".into()),
            ratio: None,
        });
    }
    for (i, (name, bytes)) in fg.switch_memory.iter().enumerate() {
        let o = ovn.and_then(|o| o.switch_memory.get(i)).map(|(_, b)| *b as f64);
        rows.push(Row::amount(
            &format!("switch: {name} (not counted above)"),
            o,
            *bytes as f64,
            |v| mib(v as u64),
        ));
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "N = {n} instances, {} Elastic IPs (medians of {} samples for single changes):\n",
        policy.addresses, policy.repeats
    );
    t.push_str("| figure | OVN | flowgate | OVN / flowgate |\n|---|---:|---:|---:|\n");
    for r in rows {
        let dash = || "-".to_string();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} |",
            r.name,
            r.ovn.unwrap_or_else(dash),
            r.flowgate,
            r.ratio.unwrap_or_else(dash)
        );
    }
    t
}

/// The targets at N = 1000, against OVN measured in the same run.
fn targets(ovn: &Figures, fg: &Figures) -> String {
    let mut t = String::from("Targets at N = 1000 (against OVN in the same run):\n\n");
    let mut check = |what: &str, ok: bool, detail: String| {
        let _ = writeln!(t, "* {}: {what} ({detail})", if ok { "PASS" } else { "MISS" });
    };
    let (o_rule, f_rule) = (median(&ovn.rule), median(&fg.rule));
    check(
        "one added rule in <= 1/10 of OVN's time",
        f_rule * 10 <= o_rule,
        format!("{} vs {}", human(f_rule), human(o_rule)),
    );
    let (o_bulk, f_bulk) = (control_part(ovn), control_part(fg));
    check(
        "bulk creation (control plane, without plugging the ports) in <= 1/10 of OVN's time",
        f_bulk * 10 <= o_bulk,
        format!("{} vs {}", human(f_bulk), human(o_bulk)),
    );
    check(
        "flows per instance <= OVN's",
        fg.flows <= ovn.flows,
        format!("{} vs {} flows", fg.flows, ovn.flows),
    );
    check(
        "control plane memory <= OVN's",
        fg.control_total() <= ovn.control_total(),
        format!("{} vs {}", mib(fg.control_total()), mib(ovn.control_total())),
    );
    t
}
