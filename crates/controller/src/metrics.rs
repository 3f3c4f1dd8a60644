//! Counters, gauges and a histogram for the controller, rendered in the
//! Prometheus text exposition format. Hand-rolled on atomics: the handful of
//! metrics here do not justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration histogram buckets.
const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters keyed by a label value (packet-in reasons, error names).
#[derive(Debug, Default)]
pub struct LabeledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabeledCounter {
    /// Adds one to the counter for `label`.
    pub fn inc(&self, label: &str) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry(label.to_string()).or_default() += 1;
        }
    }

    /// The counter for `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.values
            .lock()
            .ok()
            .and_then(|v| v.get(label).copied())
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        if let Ok(values) = self.values.lock() {
            for (value, count) in values.iter() {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(value));
            }
        }
    }
}

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
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge(
            &mut out,
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
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for s in switches {
                let _ = writeln!(out, "{name}{{datapath_id=\"{:016x}\"}} {}", s.datapath_id, get(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP flowgate_openflow_role The role each switch granted this controller (1 for the current one).\n# TYPE flowgate_openflow_role gauge"
        );
        for s in switches {
            let _ = writeln!(
                out,
                "flowgate_openflow_role{{datapath_id=\"{:016x}\",role=\"{}\"}} 1",
                s.datapath_id, s.role
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            &mut out,
            "flowgate_switch_connections_total",
            "Switch connections accepted.",
            load(&self.connections),
        );
        let _ = writeln!(
            out,
            "# HELP flowgate_flow_mods_sent_total Flow-mods sent to switches.\n# TYPE flowgate_flow_mods_sent_total counter"
        );
        for (command, c) in ["add", "modify", "delete"].iter().zip(&self.flow_mods_sent) {
            let _ = writeln!(
                out,
                "flowgate_flow_mods_sent_total{{command=\"{command}\"}} {}",
                load(c)
            );
        }
        counter(
            &mut out,
            "flowgate_reconciles_total",
            "Reconcile rounds completed.",
            load(&self.reconciles),
        );
        self.reconcile_duration.render(
            &mut out,
            "flowgate_reconcile_duration_seconds",
            "Time from sending a round of flow-mods to its barrier reply.",
        );
        self.packet_ins.render(
            &mut out,
            "flowgate_packet_ins_total",
            "reason",
            "Packet-ins received, by reason.",
        );
        counter(
            &mut out,
            "flowgate_packet_ins_dropped_total",
            "Packet-ins dropped by the rate limit.",
            load(&self.packet_ins_dropped),
        );
        self.errors.render(
            &mut out,
            "flowgate_openflow_errors_total",
            "type",
            "OpenFlow errors received, by name.",
        );
        counter(
            &mut out,
            "flowgate_malformed_connections_total",
            "Connections dropped for malformed OpenFlow.",
            load(&self.malformed),
        );
        counter(
            &mut out,
            "flowgate_dead_peers_total",
            "Connections dropped because the switch stopped answering.",
            load(&self.dead_peers),
        );
        counter(
            &mut out,
            "flowgate_tls_refused_total",
            "TLS connections refused: no valid client certificate, or no completed handshake.",
            load(&self.tls_refused),
        );
        out
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.flow_mods_sent[0].fetch_add(3, Ordering::Relaxed);
        m.errors.inc("OFPBAC_BAD_OUT_PORT");
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
