//! Reading what Open vSwitch's `ovs-appctl ofproto/trace` says a switch
//! does with a packet: every copy that leaves, by which interface, with
//! which addresses. Pure text in, [`Trace`] out; running the tracer is the
//! caller's business (`flowgate trace --live`, the compiler's differential
//! test).
//!
//! What the tracer does, as seen on Open vSwitch 3.1's userspace datapath:
//! * It follows patch ports: a packet traced on a hypervisor bridge that
//!   leaves by its uplink goes on through the bridges behind it (when they
//!   run in the same `ovs-vswitchd`), so one trace can cover a whole path.
//! * Each `ct(table=...)` forks a recirculation, traced in a section of its
//!   own that starts with the recirculated packet (`Flow: recirc_id=...`)
//!   and takes the next `--ct-next` state (`trk,new` once they run out).
//! * Every section ends with its datapath actions, in order: `set(...)`
//!   rewrites, numbers (datapath ports, not OpenFlow ports), `ct`, `recirc`,
//!   `userspace` (to the controller). Replaying them over the section's
//!   packet gives every copy that leaves, with its headers.
//! * Flow syntax: a field needs its prerequisite first (`tcp,nw_ttl=64`,
//!   not `nw_ttl=64,tcp`), and a traced flow's TTL defaults to 0, which a
//!   `dec_ttl` turns into a packet-in, so traces should set `nw_ttl=64`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use openflow::MacAddr;

/// How many `--ct-next` states a trace gets: more than the `ct` actions on
/// any path through flowgate's pipeline (two per bridge crossed), so that
/// every one takes the state asked for rather than the tracer's default.
pub const CT_NEXT_REPEAT: usize = 6;

/// Tracer output this reader cannot make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// Datapath actions before any `Flow:` line.
    #[error("datapath actions before any traced flow")]
    NoFlow,
    /// An address that does not parse.
    #[error("unreadable {what} {text:?} in the trace")]
    Unreadable {
        /// What it should have been.
        what: &'static str,
        /// The text.
        text: String,
    },
}

/// The headers of a packet at some point of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Source MAC.
    pub eth_src: MacAddr,
    /// Destination MAC.
    pub eth_dst: MacAddr,
    /// Source IPv4 address.
    pub ip_src: Ipv4Addr,
    /// Destination IPv4 address.
    pub ip_dst: Ipv4Addr,
}

/// A copy of the packet leaving the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The interface it leaves by.
    pub interface: String,
    /// Its headers as it leaves.
    pub headers: Headers,
}

/// What a trace found.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The tracer's output.
    pub text: String,
    /// Every copy that left by a port.
    pub outputs: Vec<Output>,
    /// Whether a copy went to the controller.
    pub to_controller: bool,
    /// Datapath actions this reader does not know (they make its reading
    /// incomplete).
    pub unknown_actions: Vec<String>,
}

/// Interface names by datapath port number, from `ovs-appctl dpif/show`.
#[derive(Debug, Clone, Default)]
pub struct DatapathPorts(BTreeMap<u32, String>);

impl DatapathPorts {
    /// Reads `ovs-appctl dpif/show`: lines such as `    h-a 111/6:
    /// (system)` (OpenFlow port / datapath port); patch ports show
    /// `1/none` and never appear in datapath actions.
    pub fn from_dpif_show(text: &str) -> DatapathPorts {
        DatapathPorts(
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let name = words.next()?;
                    let numbers = words.next()?.strip_suffix(':')?;
                    let (_, odp) = numbers.split_once('/')?;
                    Some((odp.parse().ok()?, name.to_string()))
                })
                .collect(),
        )
    }
}

impl DatapathPorts {
    /// Whether an interface of that name is in the datapath.
    pub fn contains(&self, interface: &str) -> bool {
        self.0.values().any(|name| name == interface)
    }
}

/// The `ovs-appctl` arguments that trace `flow` entering `bridge`, every
/// conntrack lookup answering `ct_state` (e.g. `trk,est,rpl`).
pub fn trace_args(bridge: &str, flow: &str, ct_state: &str) -> Vec<String> {
    let mut args = vec!["ofproto/trace".to_string(), bridge.to_string(), flow.to_string()];
    for _ in 0..CT_NEXT_REPEAT {
        args.extend(["--ct-next".to_string(), ct_state.to_string()]);
    }
    args
}

/// Reads the output of `ofproto/trace`.
pub fn read_trace(text: String, ports: &DatapathPorts) -> Result<Trace, TraceError> {
    let mut trace = Trace {
        text: String::new(),
        outputs: Vec::new(),
        to_controller: false,
        unknown_actions: Vec::new(),
    };
    let mut packet = None;
    for line in text.lines() {
        if let Some(flow) = line.strip_prefix("Flow: ") {
            packet = Some(parse_headers(flow)?);
        } else if let Some(actions) = line.strip_prefix("Datapath actions: ") {
            let start = packet.ok_or(TraceError::NoFlow)?;
            replay(ports, &split_actions(actions), start, &mut trace)?;
        }
    }
    trace.text = text;
    Ok(trace)
}

/// Applies datapath actions in order to `packet`, recording outputs.
fn replay(
    ports: &DatapathPorts,
    actions: &[&str],
    mut packet: Headers,
    trace: &mut Trace,
) -> Result<(), TraceError> {
    for &action in actions {
        if let Ok(port) = action.parse::<u32>() {
            let interface = ports
                .0
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
                    "src" => packet.eth_src = mac(value)?,
                    "dst" => packet.eth_dst = mac(value)?,
                    _ => {}
                }
            }
        } else if let Some(fields) = inner(action, "set(ipv4(") {
            for (key, value) in key_values(fields) {
                match key {
                    "src" => packet.ip_src = ip(value)?,
                    "dst" => packet.ip_dst = ip(value)?,
                    _ => {}
                }
            }
        } else if let Some(nested) = inner(action, "clone(") {
            // A clone works on a copy; the original goes on unchanged.
            replay(ports, &split_actions(nested), packet, trace)?;
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
    Ok(())
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
/// whole addresses are all a trace of flowgate's flows shows).
fn key_values(fields: &str) -> impl Iterator<Item = (&str, &str)> {
    fields.split(',').filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((k.trim(), v.split('/').next().unwrap_or(v).trim()))
    })
}

fn parse_headers(flow: &str) -> Result<Headers, TraceError> {
    let mut headers = Headers {
        eth_src: MacAddr([0; 6]),
        eth_dst: MacAddr([0; 6]),
        ip_src: Ipv4Addr::UNSPECIFIED,
        ip_dst: Ipv4Addr::UNSPECIFIED,
    };
    for (key, value) in key_values(flow) {
        match key {
            "dl_src" => headers.eth_src = mac(value)?,
            "dl_dst" => headers.eth_dst = mac(value)?,
            "nw_src" => headers.ip_src = ip(value)?,
            "nw_dst" => headers.ip_dst = ip(value)?,
            _ => {}
        }
    }
    Ok(headers)
}

fn mac(text: &str) -> Result<MacAddr, TraceError> {
    text.parse().map_err(|_| TraceError::Unreadable {
        what: "MAC address",
        text: text.to_string(),
    })
}

fn ip(text: &str) -> Result<Ipv4Addr, TraceError> {
    text.parse().map_err(|_| TraceError::Unreadable {
        what: "IPv4 address",
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DPIF_SHOW: &str = "netdev@ovs-netdev: hit:10 missed:4\n  hv1:\n    fgabc 2/3: (system)\n    hv1 65534/1: (tap)\n    up1 1/none: (patch: peer=down1)\n";

    #[test]
    fn replays_rewrites_and_outputs_across_recirculations() {
        let ports = DatapathPorts::from_dpif_show(DPIF_SHOW);
        let text = "\
Flow: tcp,in_port=1,dl_src=02:00:00:00:00:fe,dl_dst=02:fb:c6:33:64:02,nw_src=203.0.113.10,nw_dst=198.51.100.2
Datapath actions: ct(zone=2),recirc(0x1)
Flow: recirc_id=0x1,ct_state=new|trk,tcp,in_port=1,dl_src=02:00:00:00:00:fe,dl_dst=02:fb:c6:33:64:02,nw_src=203.0.113.10,nw_dst=198.51.100.2
Datapath actions: set(eth(src=02:fa:00:00:00:01,dst=02:f6:67:00:00:02)),set(ipv4(dst=10.1.0.2)),3,userspace(pid=0)
"
        .to_string();
        let trace = read_trace(text, &ports).unwrap();
        assert_eq!(trace.outputs.len(), 1);
        assert_eq!(trace.outputs[0].interface, "fgabc");
        assert_eq!(trace.outputs[0].headers.ip_dst, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(trace.outputs[0].headers.ip_src, Ipv4Addr::new(203, 0, 113, 10));
        assert!(trace.to_controller);
        assert!(trace.unknown_actions.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let ports = DatapathPorts::default();
        assert_eq!(
            read_trace("Datapath actions: 3\n".into(), &ports).unwrap_err(),
            TraceError::NoFlow
        );
        assert!(read_trace("Flow: nw_src=300.1.1.1\n".into(), &ports).is_err());
    }
}
