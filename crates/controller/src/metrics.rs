//! The controller's metrics: counters, gauges per switch and the reconcile
//! duration histogram, rendered in the Prometheus text format with the
//! primitives of the `metrics` crate.

use std::sync::atomic::{AtomicU64, Ordering};

pub use ::metrics::{Histogram, LabeledCounter};
use ::metrics::{Kind, Text};

/// Per-switch figures for the gauges, gathered when rendering.
#[derive(Debug, Clone, Default)]
pub struct SwitchGauges {
    /// Datapath id.
    pub datapath_id: u64,
    /// Flows the switch should have.
    pub flows_desired: usize,
    /// Flows the switch is known to have.
    pub flows_installed: usize,
    /// Flows quarantined after being refused.
    pub flows_rejected: usize,
    /// What the switch granted this controller (`SwitchRole::name`).
    pub role: &'static str,
}

/// Every metric of the controller.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Switch connections accepted.
    pub connections: AtomicU64,
    /// Flow-mods sent, by command: add, modify, delete.
    pub flow_mods_sent: [AtomicU64; 3],
    /// Reconcile rounds completed.
    pub reconciles: AtomicU64,
    /// Time from starting a round to its barrier reply.
    pub reconcile_duration: Histogram,
    /// Packet-ins received, by reason.
    pub packet_ins: LabeledCounter,
    /// Packet-ins dropped by the rate limit.
    pub packet_ins_dropped: AtomicU64,
    /// Errors received from switches, by name.
    pub errors: LabeledCounter,
    /// Connections dropped for malformed OpenFlow.
    pub malformed: AtomicU64,
    /// Connections dropped because the peer stopped answering.
    pub dead_peers: AtomicU64,
    /// TLS connections refused: no valid client certificate, or no
    /// completed handshake.
    pub tls_refused: AtomicU64,
}

impl Metrics {
    /// Total flow-mods sent.
    pub fn flow_mods_total(&self) -> u64 {
        self.flow_mods_sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, switches: &[SwitchGauges]) -> String {
        let mut text = Text::new();
        self.write(&mut text, switches);
        text.finish()
    }

    /// Writes every metric to `text`.
    pub fn write(&self, text: &mut Text, switches: &[SwitchGauges]) {
        text.gauge(
            "flowgate_switches_connected",
            "Switches with an open OpenFlow session.",
            switches.len(),
        );
        for (name, help, get) in [
            (
                "flowgate_flows_desired",
                "Flows each switch should have.",
                (|s: &SwitchGauges| s.flows_desired) as fn(&SwitchGauges) -> usize,
            ),
            (
                "flowgate_flows_installed",
                "Flows each switch is known to have.",
                |s| s.flows_installed,
            ),
            (
                "flowgate_flows_rejected",
                "Flows each switch refused (quarantined).",
                |s| s.flows_rejected,
            ),
        ] {
            text.header(name, Kind::Gauge, help);
            for s in switches {
                text.sample(name, &[("datapath_id", &datapath_label(s.datapath_id))], get(s));
            }
        }
        text.header(
            "flowgate_openflow_role",
            Kind::Gauge,
            "The role each switch granted this controller (1 for the current one).",
        );
        for s in switches {
            text.sample(
                "flowgate_openflow_role",
                &[("datapath_id", &datapath_label(s.datapath_id)), ("role", s.role)],
                1,
            );
        }
        text.counter(
            "flowgate_switch_connections_total",
            "Switch connections accepted.",
            load(&self.connections),
        );
        text.header(
            "flowgate_flow_mods_sent_total",
            Kind::Counter,
            "Flow-mods sent to switches.",
        );
        for (command, c) in ["add", "modify", "delete"].iter().zip(&self.flow_mods_sent) {
            text.sample("flowgate_flow_mods_sent_total", &[("command", command)], load(c));
        }
        text.counter(
            "flowgate_reconciles_total",
            "Reconcile rounds completed.",
            load(&self.reconciles),
        );
        text.histogram(
            "flowgate_reconcile_duration_seconds",
            "Time from sending a round of flow-mods to its barrier reply.",
            &self.reconcile_duration,
        );
        text.labeled_counter(
            "flowgate_packet_ins_total",
            "Packet-ins received, by reason.",
            ["reason"],
            &self.packet_ins,
        );
        text.counter(
            "flowgate_packet_ins_dropped_total",
            "Packet-ins dropped by the rate limit.",
            load(&self.packet_ins_dropped),
        );
        text.labeled_counter(
            "flowgate_openflow_errors_total",
            "OpenFlow errors received, by name.",
            ["type"],
            &self.errors,
        );
        text.counter(
            "flowgate_malformed_connections_total",
            "Connections dropped for malformed OpenFlow.",
            load(&self.malformed),
        );
        text.counter(
            "flowgate_dead_peers_total",
            "Connections dropped because the switch stopped answering.",
            load(&self.dead_peers),
        );
        text.counter(
            "flowgate_tls_refused_total",
            "TLS connections refused: no valid client certificate, or no completed handshake.",
            load(&self.tls_refused),
        );
    }
}

/// A datapath id as its label value: 16 hex digits, as Open vSwitch shows it.
fn datapath_label(datapath_id: u64) -> String {
    format!("{datapath_id:016x}")
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.flow_mods_sent[0].fetch_add(3, Ordering::Relaxed);
        m.errors.inc(["OFPBAC_BAD_OUT_PORT"]);
        m.reconcile_duration.observe(Duration::from_millis(2));
        let text = m.render(&[SwitchGauges {
            datapath_id: 1,
            flows_desired: 5,
            flows_installed: 4,
            flows_rejected: 1,
            role: "master",
        }]);
        assert!(text.contains("flowgate_openflow_role{datapath_id=\"0000000000000001\",role=\"master\"} 1"));
        assert!(text.contains("flowgate_switches_connected 1"));
        assert!(text.contains("flowgate_flow_mods_sent_total{command=\"add\"} 3"));
        assert!(text.contains("flowgate_flows_installed{datapath_id=\"0000000000000001\"} 4"));
        assert!(text.contains("flowgate_openflow_errors_total{type=\"OFPBAC_BAD_OUT_PORT\"} 1"));
        assert!(text.contains("flowgate_reconcile_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("flowgate_reconcile_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert_eq!(m.flow_mods_total(), 3);
    }
}
