//! Runs `ovs-appctl ofproto/trace` in a lab; `explain::ofproto_trace`
//! reads where the traced packet leaves the switch, and with which
//! addresses.

use explain::ofproto_trace::Trace;
use explain::ofproto_trace::{self, DatapathPorts};
use testbed::Lab;

/// Traces packets in a lab whose ports are all created.
pub struct Tracer {
    ports: DatapathPorts,
}

impl Tracer {
    /// Reads the datapath port numbers of the lab's interfaces; create the
    /// tracer after the last port.
    pub fn new(lab: &Lab) -> Tracer {
        let shown = lab.appctl(&["dpif/show"]).expect("dpif/show");
        Tracer {
            ports: DatapathPorts::from_dpif_show(&shown),
        }
    }

    /// Traces `flow` entering `bridge`, every conntrack lookup answering
    /// `ct_state` (e.g. `trk,est,rpl`).
    pub fn trace(&self, lab: &Lab, bridge: &str, flow: &str, ct_state: &str) -> Trace {
        let args = ofproto_trace::trace_args(bridge, flow, ct_state);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = lab
            .appctl(&args)
            .unwrap_or_else(|e| panic!("ofproto/trace {bridge} {flow}: {e}"));
        ofproto_trace::read_trace(text, &self.ports).unwrap_or_else(|e| panic!("{e}"))
    }
}
