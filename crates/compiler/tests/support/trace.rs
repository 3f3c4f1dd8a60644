//! Runs `ovs-appctl ofproto/trace` in a lab and reads off where the traced
//! packet leaves the switch, and with which addresses.
//!
//! What the tracer does, as seen on Open vSwitch 3.1's userspace datapath:
//! * It follows patch ports: a packet traced on a hypervisor bridge that
//!   leaves by its uplink goes on through the physical bridge (NORMAL,
//!   flooding while no MAC is learned) into the other hypervisor bridge, so
//!   one trace covers the whole path.
//! * Each `ct(table=...)` forks a recirculation, traced in a section of its
//!   own that starts with the recirculated packet (`Flow: recirc_id=...`)
//!   and takes the next `--ct-next` state (`trk,new` once they run out).
//!   Such a section is labelled with the traced bridge's name even when it
//!   resumes the pipeline of a bridge reached through a patch port.
//! * Every section ends with its datapath actions, in order: `set(...)`
//!   rewrites, numbers (datapath ports, not OpenFlow ports), `ct`, `recirc`,
//!   `userspace` (to the controller). Replaying them over the section's
//!   packet gives every copy that leaves, with its headers.
//! * Flow syntax: a field needs its prerequisite first (`tcp,nw_ttl=64`,
//!   not `nw_ttl=64,tcp`), and a traced flow's TTL defaults to 0, which a
//!   `dec_ttl` turns into a packet-in, so traces set `nw_ttl=64`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use openflow::MacAddr;
use testbed::Lab;

/// How many `--ct-next` states a trace gets: more than the `ct` actions on
/// any path (two per bridge crossed), so that every one takes the state
/// asked for rather than the tracer's default.
const CT_NEXT_REPEAT: usize = 6;

/// The headers of a packet at some point of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub eth_src: MacAddr,
    pub eth_dst: MacAddr,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
}

/// A copy of the packet leaving the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The interface it leaves by.
    pub interface: String,
    pub headers: Headers,
}

/// What a trace found.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The tracer's output, for failure messages.
    pub text: String,
    /// Every copy that left by a port.
    pub outputs: Vec<Output>,
    /// Whether a copy went to the controller.
    pub to_controller: bool,
    /// Datapath actions this reader does not know (they would make its
    /// reading incomplete, so a caller should treat them as a failure).
    pub unknown_actions: Vec<String>,
}

/// Traces packets in a lab whose ports are all created.
pub struct Tracer {
    /// Interface name by datapath port number.
    interfaces: BTreeMap<u32, String>,
}

impl Tracer {
    /// Reads the datapath port numbers of the lab's interfaces; create the
    /// tracer after the last port.
    pub fn new(lab: &Lab) -> Tracer {
        let shown = lab.appctl(&["dpif/show"]).expect("dpif/show");
        // Lines such as "    h-a 111/6: (system)"; patch ports show
        // "1/none" and never appear in datapath actions.
        let interfaces = shown
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next()?;
                let numbers = words.next()?.strip_suffix(':')?;
                let (_, odp) = numbers.split_once('/')?;
                Some((odp.parse().ok()?, name.to_string()))
            })
            .collect();
        Tracer { interfaces }
    }

    /// Traces `flow` entering `bridge`, every conntrack lookup answering
    /// `ct_state` (e.g. `trk,est,rpl`).
    pub fn trace(&self, lab: &Lab, bridge: &str, flow: &str, ct_state: &str) -> Trace {
        let mut args = vec!["ofproto/trace", bridge, flow];
        for _ in 0..CT_NEXT_REPEAT {
            args.extend(["--ct-next", ct_state]);
        }
        let text = lab
            .appctl(&args)
            .unwrap_or_else(|e| panic!("ofproto/trace {bridge} {flow}: {e}"));
        self.read(text)
    }

    fn read(&self, text: String) -> Trace {
        let mut trace = Trace {
            text: String::new(),
            outputs: Vec::new(),
            to_controller: false,
            unknown_actions: Vec::new(),
        };
        let mut packet = None;
        for line in text.lines() {
            if let Some(flow) = line.strip_prefix("Flow: ") {
                packet = Some(parse_headers(flow));
            } else if let Some(actions) = line.strip_prefix("Datapath actions: ") {
                let start = packet.expect("a Flow: line before the datapath actions");
                self.replay(&split_actions(actions), start, &mut trace);
            }
        }
        trace.text = text;
        trace
    }

    /// Applies datapath actions in order to `packet`, recording outputs.
    fn replay(&self, actions: &[&str], mut packet: Headers, trace: &mut Trace) {
        for &action in actions {
            if let Ok(port) = action.parse::<u32>() {
                let interface = self
                    .interfaces
                    .get(&port)
                    .cloned()
                    .unwrap_or_else(|| format!("datapath port {port}"));
                trace.outputs.push(Output {
                    interface,
                    headers: packet,
                });
            } else if let Some(fields) = inner(action, "set(eth(") {
                for (key, value) in key_values(fields) {
                    match key {
                        "src" => packet.eth_src = mac(value),
                        "dst" => packet.eth_dst = mac(value),
                        _ => {}
                    }
                }
            } else if let Some(fields) = inner(action, "set(ipv4(") {
                for (key, value) in key_values(fields) {
                    match key {
                        "src" => packet.ip_src = ip(value),
                        "dst" => packet.ip_dst = ip(value),
                        _ => {}
                    }
                }
            } else if let Some(nested) = inner(action, "clone(") {
                // A clone works on a copy; the original goes on unchanged.
                self.replay(&split_actions(nested), packet, trace);
            } else if action.starts_with("userspace(") {
                trace.to_controller = true;
            } else if action == "drop"
                || action.starts_with("ct(")
                || action.starts_with("recirc(")
                || action.starts_with("set(tcp(")
                || action.starts_with("set(udp(")
            {
                // Conntrack and recirculation are traced in their own
                // sections; port rewrites do not matter here.
            } else {
                trace.unknown_actions.push(action.to_string());
            }
        }
    }
}

/// The text inside `prefix...)` (one closing parenthesis per opening one
/// in the prefix).
fn inner<'a>(action: &'a str, prefix: &str) -> Option<&'a str> {
    let depth = prefix.matches('(').count();
    let rest = action.strip_prefix(prefix)?;
    rest.get(..rest.len().checked_sub(depth)?)
}

/// Splits `a,b(c,d),e` at the commas outside parentheses.
fn split_actions(actions: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in actions.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(actions[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = actions[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// `k=v,k2=v2` pairs; a masked value `v/mask` keeps only `v` (rewrites of
/// whole addresses are all a trace of these flows shows).
fn key_values(fields: &str) -> impl Iterator<Item = (&str, &str)> {
    fields.split(',').filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((k.trim(), v.split('/').next().unwrap_or(v).trim()))
    })
}

fn parse_headers(flow: &str) -> Headers {
    let mut headers = Headers {
        eth_src: MacAddr([0; 6]),
        eth_dst: MacAddr([0; 6]),
        ip_src: Ipv4Addr::UNSPECIFIED,
        ip_dst: Ipv4Addr::UNSPECIFIED,
    };
    for (key, value) in key_values(flow) {
        match key {
            "dl_src" => headers.eth_src = mac(value),
            "dl_dst" => headers.eth_dst = mac(value),
            "nw_src" => headers.ip_src = ip(value),
            "nw_dst" => headers.ip_dst = ip(value),
            _ => {}
        }
    }
    headers
}

fn mac(text: &str) -> MacAddr {
    let parsed = testbed::MacAddr::from_str(text).unwrap_or_else(|e| panic!("MAC {text:?}: {e}"));
    MacAddr(parsed.octets())
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap_or_else(|e| panic!("address {text:?}: {e}"))
}
