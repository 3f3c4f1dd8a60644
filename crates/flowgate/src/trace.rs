//! `flowgate trace`: what happens to one packet, and why. The verdict comes
//! from the model (the `explain` crate: EC2's semantics, rule by rule, the
//! NAT of Elastic IPs); with `--live` the same packet is also traced on the
//! hypervisor's switch (`ovs-appctl ofproto/trace`) and the two are
//! compared. Nothing in AWS answers "why was this dropped" this directly.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use clap::Args;
use compiler::{Cidr, ROUTER_MAC, elastic_ip_mac};
use explain::ofproto_trace::{self, DatapathPorts, Output, Trace};
use explain::{ConnState, Judgement, Model, Origin, Packet, Protocol, Verdict};
use model::{Instance, State};
use openflow::MacAddr;
use serde_json::{Value, json};

use crate::admin::StoreArgs;
use crate::ovs;

/// `flowgate trace FROM TO [--protocol P] [--port N] ...`
#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Who sends: an instance id (the packet leaves it with its own private
    /// address and MAC), or an IPv4 address outside the cloud (the packet
    /// arrives from the internet through the public gateway).
    from: String,
    /// The destination address: an instance's private address, an Elastic
    /// IP, or an address outside the cloud.
    to: Ipv4Addr,
    /// tcp, udp, icmp, or an IP protocol number.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Destination port (tcp, udp).
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Source port (tcp, udp).
    #[arg(long, default_value_t = 40000)]
    source_port: u16,
    /// ICMP type (icmp; 8 is an echo request).
    #[arg(long, default_value_t = 8)]
    icmp_type: u8,
    /// ICMP code (icmp).
    #[arg(long, default_value_t = 0)]
    icmp_code: u8,
    /// Where the packet stands in its connection: new, established (a later
    /// packet from the connection's initiator), reply, related (an ICMP
    /// error about it).
    #[arg(long, default_value = "new", value_parser = ["new", "established", "reply", "related"])]
    state: String,
    /// Also trace the packet on the live switch of the hypervisor where it
    /// enters (`ovs-appctl ofproto/trace`, run on that hypervisor) and say
    /// whether the switch agrees.
    #[arg(long)]
    live: bool,
    /// The `ovs-appctl -t` target of that switch's ovs-vswitchd (default:
    /// the system's).
    #[arg(long, value_name = "TARGET", requires = "live")]
    appctl_target: Option<String>,
}

/// Runs `flowgate trace`.
pub fn run(args: TraceArgs) -> Result<(), String> {
    let json = args.json;
    let report = args.store.clone().open(|store, _| async move {
        let state = store.read();
        trace(&state, &args)
    })?;
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

/// What `flowgate trace` found.
struct Report {
    packet: Packet,
    judgement: Judgement,
    live: Option<LiveTrace>,
}

/// The switch's side of the story.
struct LiveTrace {
    bridge: String,
    trace: Trace,
    agrees: bool,
}

fn trace(state: &State, args: &TraceArgs) -> Result<Report, String> {
    let protocol = parse_protocol(args)?;
    let conn = match args.state.as_str() {
        "established" => ConnState::Established,
        "reply" => ConnState::Reply,
        "related" => ConnState::Related,
        _ => ConnState::New,
    };
    let model = explain_model(state);
    let sender = if args.from.starts_with("i-") {
        Some(find_instance(state, &args.from)?)
    } else {
        None
    };
    let packet = match sender {
        Some(i) => Packet {
            origin: Origin::Instance {
                id: i.id.to_string(),
                mac: MacAddr(i.mac.0),
            },
            src: i.private_ip,
            dst: args.to,
            protocol,
            state: conn,
        },
        None => Packet {
            origin: Origin::Internet,
            src: args
                .from
                .parse()
                .map_err(|_| format!("{}: neither an instance id (i-…) nor an IPv4 address", args.from))?,
            dst: args.to,
            protocol,
            state: conn,
        },
    };
    let judgement = explain::evaluate(&model, &packet);
    let live = if args.live {
        Some(live_trace(state, args, sender, &packet, &judgement)?)
    } else {
        None
    };
    Ok(Report {
        packet,
        judgement,
        live,
    })
}

fn parse_protocol(args: &TraceArgs) -> Result<Protocol, String> {
    Ok(match args.protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Protocol::Tcp {
            src_port: args.source_port,
            dst_port: args.port,
        },
        "udp" | "17" => Protocol::Udp {
            src_port: args.source_port,
            dst_port: args.port,
        },
        "icmp" | "1" => Protocol::Icmp {
            icmp_type: args.icmp_type,
            code: args.icmp_code,
        },
        other => Protocol::Other(
            other
                .parse()
                .map_err(|_| format!("--protocol {other}: not tcp, udp, icmp or a protocol number"))?,
        ),
    })
}

fn find_instance<'a>(state: &'a State, id: &str) -> Result<&'a Instance, String> {
    state
        .tenants()
        .find_map(|t| t.instances.values().find(|i| i.id.as_str() == id))
        .ok_or_else(|| format!("no instance {id}"))
}

/// The model as the evaluator sees it. The public gateway's MAC is what the
/// controller resolves at run time; the model assumes it was.
fn explain_model(state: &State) -> Model {
    let inputs = dataplane::translate::policy_inputs(state);
    let (public_gateway, public_network) = match inputs.public_gateway {
        Some((ip, network)) => (
            Some(compiler::PublicGateway {
                ip,
                mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0])),
            }),
            network,
        ),
        None => (None, Cidr::new(Ipv4Addr::UNSPECIFIED, 32)),
    };
    Model {
        hypervisors: inputs.hypervisors,
        networks: inputs.networks,
        instances: inputs.instances,
        groups: inputs.groups,
        addresses: inputs.addresses,
        public_gateway,
        public_network,
    }
}

/// Traces the packet where it enters: the sender's port, or the uplink of
/// the hypervisor holding the Elastic IP it is sent to.
fn live_trace(
    state: &State,
    args: &TraceArgs,
    sender: Option<&Instance>,
    packet: &Packet,
    judgement: &Judgement,
) -> Result<LiveTrace, String> {
    let instances: Vec<&Instance> = state.tenants().flat_map(|t| t.instances.values()).collect();
    let (hypervisor, in_port, dl_src, dl_dst) = match sender {
        Some(i) => {
            let receiver = instances
                .iter()
                .find(|r| r.subnet_id == i.subnet_id && r.private_ip == packet.dst && r.id != i.id);
            let dl_dst = match receiver {
                Some(r) => MacAddr(r.mac.0),
                None => ROUTER_MAC,
            };
            let hv = i
                .hypervisor
                .clone()
                .ok_or_else(|| format!("{} is not placed on a hypervisor", i.id))?;
            (hv, i.interface_name.clone(), MacAddr(i.mac.0), dl_dst)
        }
        None => {
            let holder = state
                .tenants()
                .flat_map(|t| t.addresses.values())
                .find(|a| a.public_ip == packet.dst)
                .and_then(|a| a.association.as_ref())
                .and_then(|assoc| instances.iter().find(|i| i.id == assoc.instance_id))
                .and_then(|i| i.hypervisor.clone());
            let hv = match holder {
                Some(hv) => hv,
                None => state
                    .hypervisors()
                    .next()
                    .map(|h| h.name.clone())
                    .ok_or("no hypervisor to trace on")?,
            };
            let uplink = state
                .hypervisors()
                .find(|h| h.name == hv)
                .map(|h| h.uplink.clone())
                .ok_or_else(|| format!("hypervisor {hv} is not registered"))?;
            (
                hv,
                uplink,
                MacAddr([0x02, 0, 0, 0, 0, 0]),
                elastic_ip_mac(packet.dst),
            )
        }
    };
    let bridge = state
        .hypervisors()
        .find(|h| h.name == hypervisor)
        .and_then(|h| h.bridge.clone())
        .ok_or_else(|| {
            format!("hypervisor {hypervisor} is registered without a bridge name: cannot trace")
        })?;
    let flow = format!(
        "{},in_port={in_port},dl_src={dl_src},dl_dst={dl_dst},nw_src={},nw_dst={},nw_ttl=64{}",
        match packet.protocol {
            Protocol::Tcp { .. } => "tcp".to_string(),
            Protocol::Udp { .. } => "udp".to_string(),
            Protocol::Icmp { .. } => "icmp".to_string(),
            Protocol::Other(n) => format!("ip,nw_proto={n}"),
        },
        packet.src,
        packet.dst,
        match packet.protocol {
            Protocol::Tcp { src_port, dst_port } | Protocol::Udp { src_port, dst_port } =>
                format!(",tp_src={src_port},tp_dst={dst_port}"),
            Protocol::Icmp { icmp_type, code } => format!(",icmp_type={icmp_type},icmp_code={code}"),
            Protocol::Other(_) => String::new(),
        }
    );
    let ct_state = match packet.state {
        ConnState::New => "trk,new",
        ConnState::Established => "trk,est",
        ConnState::Reply => "trk,est,rpl",
        ConnState::Related => "trk,rel",
    };
    let appctl = |rest: Vec<String>| {
        let mut all = Vec::new();
        if let Some(target) = &args.appctl_target {
            all.extend(["-t".to_string(), target.clone()]);
        }
        all.extend(rest);
        ovs::run("ovs-appctl", &all, None)
    };
    let ports = DatapathPorts::from_dpif_show(&appctl(vec!["dpif/show".into()])?);
    let text = appctl(ofproto_trace::trace_args(&bridge, &flow, ct_state))?;
    let trace = ofproto_trace::read_trace(text, &ports).map_err(|e| format!("ofproto/trace: {e}"))?;
    let agrees = agrees(&judgement.verdict, packet, &trace, &ports, &instances);
    Ok(LiveTrace {
        bridge,
        trace,
        agrees,
    })
}

/// Whether the switch did what the model says, as far as this switch can
/// tell: a delivery to an instance in this datapath must leave by its port
/// with the delivered addresses (one to an instance elsewhere, by another
/// port); a packet for the internet must leave by a port that is no
/// instance's, with the translated addresses; a dropped packet must reach
/// no instance and leave translated nowhere (an untouched copy may still
/// leave for another hypervisor, which decides there).
fn agrees(
    verdict: &Verdict,
    packet: &Packet,
    trace: &Trace,
    ports: &DatapathPorts,
    instances: &[&Instance],
) -> bool {
    let instance_ports: BTreeSet<&str> = instances.iter().map(|i| i.interface_name.as_str()).collect();
    let to_instance = |o: &Output| instance_ports.contains(o.interface.as_str());
    let carries =
        |o: &Output, src: Ipv4Addr, dst: Ipv4Addr| o.headers.ip_src == src && o.headers.ip_dst == dst;
    match verdict {
        Verdict::Dropped => trace
            .outputs
            .iter()
            .all(|o| !to_instance(o) && carries(o, packet.src, packet.dst)),
        Verdict::Delivered { instance, src, dst } => {
            let port = instances
                .iter()
                .find(|i| i.id.as_str() == instance)
                .map(|i| i.interface_name.as_str())
                .filter(|p| ports.contains(p));
            trace.outputs.iter().any(|o| {
                carries(o, *src, *dst)
                    && match port {
                        Some(p) => o.interface == p,
                        None => !to_instance(o),
                    }
            })
        }
        Verdict::Internet { src, dst } => {
            !trace.outputs.iter().any(to_instance) && trace.outputs.iter().any(|o| carries(o, *src, *dst))
        }
    }
}

impl Report {
    /// The verdict in a word, and the translations applied.
    fn outcome(&self) -> (&'static str, Vec<String>) {
        let p = &self.packet;
        let (word, src, dst) = match &self.judgement.verdict {
            Verdict::Dropped => return ("dropped", Vec::new()),
            Verdict::Delivered { src, dst, .. } => ("delivered", *src, *dst),
            Verdict::Internet { src, dst } => ("internet", *src, *dst),
        };
        let mut nat = Vec::new();
        if src != p.src {
            nat.push(format!("source {} -> {src}", p.src));
        }
        if dst != p.dst {
            nat.push(format!("destination {} -> {dst}", p.dst));
        }
        (word, nat)
    }

    fn text(&self) -> String {
        let mut out = format!("packet: {}\n", self.packet);
        let (_, nat) = self.outcome();
        out += &match &self.judgement.verdict {
            Verdict::Dropped => "verdict: dropped\n".to_string(),
            Verdict::Delivered { instance, src, dst } => {
                format!("verdict: delivered to {instance} as {src} -> {dst}\n")
            }
            Verdict::Internet { src, dst } => format!("verdict: leaves for the internet as {src} -> {dst}\n"),
        };
        for n in &nat {
            out += &format!("NAT: {n}\n");
        }
        out += "because:\n";
        for step in &self.judgement.reasoning {
            out += &format!("  - {step}\n");
        }
        if let Some(live) = &self.live {
            out += &format!("switch ({}, ofproto/trace):\n", live.bridge);
            if live.trace.outputs.is_empty() {
                out += "  leaves by no port\n";
            }
            for o in &live.trace.outputs {
                out += &format!(
                    "  leaves by {}: {} -> {}\n",
                    o.interface, o.headers.ip_src, o.headers.ip_dst
                );
            }
            out += if live.agrees {
                "  agrees with the model\n"
            } else {
                "  DISAGREES with the model: the flows on the switch are not what the model compiles to\n"
            };
        }
        out
    }

    fn json(&self) -> Value {
        let (word, nat) = self.outcome();
        let (instance, src, dst) = match &self.judgement.verdict {
            Verdict::Dropped => (None, None, None),
            Verdict::Delivered { instance, src, dst } => (Some(instance.clone()), Some(*src), Some(*dst)),
            Verdict::Internet { src, dst } => (None, Some(*src), Some(*dst)),
        };
        json!({
            "packet": self.packet.to_string(),
            "verdict": word,
            "instance": instance,
            "src": src.map(|a| a.to_string()),
            "dst": dst.map(|a| a.to_string()),
            "nat": nat,
            "reasoning": self.judgement.reasoning,
            "live": self.live.as_ref().map(|l| json!({
                "bridge": l.bridge,
                "outputs": l.trace.outputs.iter().map(|o| json!({
                    "interface": o.interface,
                    "src": o.headers.ip_src.to_string(),
                    "dst": o.headers.ip_dst.to_string(),
                })).collect::<Vec<_>>(),
                "to_controller": l.trace.to_controller,
                "agrees": l.agrees,
            })),
        })
    }
}
