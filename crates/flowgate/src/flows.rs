//! `flowgate flows`: the flows on a hypervisor's bridge grouped by the
//! object that owns them (instance, security group rule, Elastic IP,
//! network, the fixed pipeline), with their packet counts. Every flow's
//! cookie names its owner (`compiler::cookie`); the owners' ids come from
//! the model, the flows and counters from the switch (`ovs-ofctl
//! dump-flows`, run where it can reach the bridge).

use std::collections::BTreeMap;

use clap::Args;
use compiler::{Direction, OwnerKey, OwnerKind, cookie_kind, settled_cookies};
use model::State;
use serde_json::{Value, json};

use crate::admin::StoreArgs;
use crate::ovs;

/// `flowgate flows HYPERVISOR`
#[derive(Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The hypervisor, by the name it was registered with.
    hypervisor: String,
    /// Where `ovs-ofctl` reaches the bridge (anything `ovs-ofctl` accepts:
    /// unix:/run/openvswitch/br-int.mgmt, tcp:HOST:PORT; default: the
    /// hypervisor's bridge name, on this machine).
    #[arg(long, value_name = "TARGET")]
    target: Option<String>,
    /// Open vSwitch's run directory, where `ovs-ofctl` finds BRIDGE.mgmt
    /// (default: the system's).
    #[arg(long, value_name = "DIR")]
    ovs_rundir: Option<String>,
}

/// Runs `flowgate flows`.
pub fn run(args: FlowsArgs) -> Result<(), String> {
    let json = args.json;
    let owners = args.store.clone().open(|store, _| async move {
        let state = store.read();
        let target = match &args.target {
            Some(t) => t.clone(),
            None => state
                .hypervisors()
                .find(|h| h.name == args.hypervisor)
                .ok_or_else(|| format!("no hypervisor {}", args.hypervisor))?
                .bridge
                .clone()
                .ok_or("the hypervisor was registered by datapath id: give --target")?,
        };
        let dump = ovs::run(
            "ovs-ofctl",
            &["-O".into(), "OpenFlow13".into(), "dump-flows".into(), target],
            args.ovs_rundir.as_deref(),
        )?;
        Ok(group_by_owner(&state, &dump))
    })?;
    if json {
        println!("{}", Value::Array(owners.iter().map(OwnerFlows::json).collect()));
    } else {
        for owner in &owners {
            print!("{}", owner.text());
        }
    }
    Ok(())
}

/// One flow as `ovs-ofctl dump-flows` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DumpedFlow {
    cookie: u64,
    table: u8,
    packets: u64,
    bytes: u64,
    /// Priority, match and actions as printed.
    flow: String,
}

/// Reads one line of `ovs-ofctl dump-flows`; `None` for other lines.
fn parse_flow_line(line: &str) -> Option<DumpedFlow> {
    let line = line.trim();
    let mut flow = DumpedFlow {
        cookie: 0,
        table: 0,
        packets: 0,
        bytes: 0,
        flow: String::new(),
    };
    let mut rest = line;
    let mut saw_cookie = false;
    // The statistics come first as "key=value, "; the flow follows.
    while let Some((token, after)) = rest.split_once(", ") {
        let Some((key, value)) = token.split_once('=') else {
            break;
        };
        match key {
            "cookie" => {
                flow.cookie = u64::from_str_radix(value.trim_start_matches("0x"), 16).ok()?;
                saw_cookie = true;
            }
            "table" => flow.table = value.parse().ok()?,
            "n_packets" => flow.packets = value.parse().ok()?,
            "n_bytes" => flow.bytes = value.parse().ok()?,
            "duration" | "idle_timeout" | "hard_timeout" | "idle_age" | "hard_age" | "importance" => {}
            _ => break,
        }
        rest = after;
    }
    flow.flow = rest.to_string();
    saw_cookie.then_some(flow)
}

/// An owner's flows on the bridge.
struct OwnerFlows {
    /// `None`: no object of the model has this cookie (a stale flow, or an
    /// owner whose cookie collided).
    owner: Option<OwnerKey>,
    cookie: u64,
    description: String,
    flows: Vec<DumpedFlow>,
}

impl OwnerFlows {
    fn packets(&self) -> u64 {
        self.flows.iter().map(|f| f.packets).sum()
    }

    fn bytes(&self) -> u64 {
        self.flows.iter().map(|f| f.bytes).sum()
    }

    fn text(&self) -> String {
        let mut out = format!(
            "{}  [{} flows, {} packets, {} bytes]\n",
            self.description,
            self.flows.len(),
            self.packets(),
            self.bytes()
        );
        for f in &self.flows {
            out += &format!("    table={} n_packets={} {}\n", f.table, f.packets, f.flow);
        }
        out
    }

    fn json(&self) -> Value {
        json!({
            "kind": self.owner.as_ref().map(|o| o.kind.name()),
            "id": self.owner.as_ref().map(|o| o.id.clone()),
            "cookie": format!("{:#x}", self.cookie),
            "description": self.description,
            "packets": self.packets(),
            "bytes": self.bytes(),
            "flows": self.flows.iter().map(|f| json!({
                "table": f.table,
                "packets": f.packets,
                "bytes": f.bytes,
                "flow": f.flow,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The owners of the model, by the cookie each has on every hypervisor.
fn owners_by_cookie(state: &State) -> BTreeMap<u64, (OwnerKey, String)> {
    // What each rule means, in the compiler's terms (ports, peers).
    let inputs = dataplane::translate::policy_inputs(state);
    let rules: BTreeMap<&str, &compiler::Rule> = inputs
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| (r.id.as_str(), r)))
        .collect();
    let mut described: Vec<(OwnerKind, String, String)> = vec![(
        OwnerKind::Pipeline,
        String::new(),
        "pipeline: the fixed tables".to_string(),
    )];
    for tenant in state.tenants() {
        let account = &tenant.account.name;
        for i in tenant.instances.values() {
            described.push((
                OwnerKind::Instance,
                i.id.to_string(),
                format!(
                    "instance {} ({account}, {}, port {})",
                    i.id, i.private_ip, i.interface_name
                ),
            ));
        }
        for a in tenant.addresses.values() {
            let to = a
                .association
                .as_ref()
                .map(|x| format!(" -> {}", x.instance_id))
                .unwrap_or_default();
            described.push((
                OwnerKind::Address,
                a.allocation_id.to_string(),
                format!("address {} ({account}, {}{to})", a.allocation_id, a.public_ip),
            ));
        }
        for g in tenant.groups.values() {
            for r in g.ingress.iter().chain(&g.egress) {
                let meaning = rules
                    .get(r.id.as_str())
                    .map(|r| match r.direction {
                        Direction::Ingress => format!("ingress {} from {}", r.service, r.peer),
                        Direction::Egress => format!("egress {} to {}", r.service, r.peer),
                    })
                    .unwrap_or_default();
                described.push((
                    OwnerKind::Rule,
                    r.id.to_string(),
                    format!("rule {} of {} \"{}\" ({account}): {meaning}", r.id, g.id, g.name),
                ));
            }
        }
    }
    for n in state.networks() {
        described.push((
            OwnerKind::Network,
            n.id.to_string(),
            format!("network {} ({})", n.id, n.cidr),
        ));
    }
    let mut by_kind: BTreeMap<OwnerKind, Vec<(String, String)>> = BTreeMap::new();
    for (kind, id, text) in described {
        by_kind.entry(kind).or_default().push((id, text));
    }
    let mut out = BTreeMap::new();
    for (kind, owners) in by_kind {
        let cookies = settled_cookies(kind, owners.iter().map(|(id, _)| id.as_str()));
        for (id, text) in &owners {
            if let Some(Some(cookie)) = cookies.get(id.as_str()) {
                out.insert(*cookie, (OwnerKey::new(kind, id.clone()), text.clone()));
            }
        }
    }
    out
}

/// The dumped flows grouped by owner, owners in kind and id order.
fn group_by_owner(state: &State, dump: &str) -> Vec<OwnerFlows> {
    let owners = owners_by_cookie(state);
    let mut groups: BTreeMap<u64, Vec<DumpedFlow>> = BTreeMap::new();
    for flow in dump.lines().filter_map(parse_flow_line) {
        groups.entry(flow.cookie).or_default().push(flow);
    }
    let mut out: Vec<OwnerFlows> = groups
        .into_iter()
        .map(|(cookie, flows)| {
            let (owner, description) = match owners.get(&cookie) {
                Some((key, text)) => (Some(key.clone()), text.clone()),
                None => (
                    None,
                    format!(
                        "unknown {} (cookie {cookie:#x}): no object of the model owns it",
                        cookie_kind(cookie).map_or("owner", OwnerKind::name)
                    ),
                ),
            };
            OwnerFlows {
                owner,
                cookie,
                description,
                flows,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.owner.is_none(), &a.owner).cmp(&(b.owner.is_none(), &b.owner)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dump_flows_lines() {
        let line = " cookie=0x5f5eec0af4d9272, duration=3.2s, table=30, n_packets=7, n_bytes=686, idle_age=1, priority=200,ip,reg0=0x2 actions=dec_ttl,output:1";
        let flow = parse_flow_line(line).unwrap();
        assert_eq!(flow.cookie, 0x5f5eec0af4d9272);
        assert_eq!((flow.table, flow.packets, flow.bytes), (30, 7, 686));
        assert_eq!(flow.flow, "priority=200,ip,reg0=0x2 actions=dec_ttl,output:1");
        assert_eq!(parse_flow_line("NXST_FLOW reply (xid=0x4):"), None);
        assert_eq!(
            parse_flow_line(" cookie=0xzz, table=0, priority=0 actions=drop"),
            None
        );
    }
}
