//! What an emulated switch counts: this module's one job is the
//! [`Counters`] value (per switch, and summed over switches) and its
//! one-line rendering.

use std::fmt;
use std::ops::AddAssign;

/// Flow-mods received, by command (directly or inside bundles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowModCounts {
    /// `OFPFC_ADD`.
    pub add: u64,
    /// `OFPFC_MODIFY`.
    pub modify: u64,
    /// `OFPFC_MODIFY_STRICT`.
    pub modify_strict: u64,
    /// `OFPFC_DELETE`.
    pub delete: u64,
    /// `OFPFC_DELETE_STRICT`.
    pub delete_strict: u64,
    /// A command number OpenFlow does not define.
    pub other: u64,
}

impl FlowModCounts {
    /// All flow-mods, whatever the command.
    pub fn total(&self) -> u64 {
        self.add + self.modify + self.modify_strict + self.delete + self.delete_strict + self.other
    }
}

impl AddAssign for FlowModCounts {
    fn add_assign(&mut self, o: Self) {
        self.add += o.add;
        self.modify += o.modify;
        self.modify_strict += o.modify_strict;
        self.delete += o.delete;
        self.delete_strict += o.delete_strict;
        self.other += o.other;
    }
}

/// Counters of one switch, or of several added together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Switches these counters cover (1 for one switch).
    pub switches: u64,
    /// Switches with a negotiated controller connection right now.
    pub connected: u64,
    /// Flows in the tables right now.
    pub flows: u64,
    /// Connections that completed version negotiation.
    pub connects: u64,
    /// Connections that ended (closed by either side, or failed).
    pub disconnects: u64,
    /// OpenFlow messages received.
    pub messages_received: u64,
    /// OpenFlow messages sent.
    pub messages_sent: u64,
    /// Flow-mods received, by command.
    pub flow_mods: FlowModCounts,
    /// Flow-mods refused (with an error), directly or within a bundle.
    pub flow_mods_failed: u64,
    /// Bundles opened (explicitly or by a first add).
    pub bundles_opened: u64,
    /// Bundles committed successfully.
    pub bundles_committed: u64,
    /// Bundle commits that failed (nothing applied).
    pub bundles_failed: u64,
    /// Bundles discarded (explicitly, by timeout, or by a disconnect).
    pub bundles_discarded: u64,
    /// Barrier requests answered.
    pub barriers: u64,
    /// Echo requests received from the controller.
    pub echo_requests: u64,
    /// Echo requests the switch sent because the connection was idle.
    pub echo_probes: u64,
    /// Flow statistics requests answered.
    pub flow_stats_requests: u64,
    /// Flow statistics reply messages sent (several per request when the
    /// flows do not fit in one).
    pub flow_stats_replies: u64,
    /// Packet-outs received.
    pub packet_outs: u64,
    /// Error messages sent.
    pub errors_sent: u64,
    /// Flow-removed messages sent.
    pub flow_removed_sent: u64,
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.switches += o.switches;
        self.connected += o.connected;
        self.flows += o.flows;
        self.connects += o.connects;
        self.disconnects += o.disconnects;
        self.messages_received += o.messages_received;
        self.messages_sent += o.messages_sent;
        self.flow_mods += o.flow_mods;
        self.flow_mods_failed += o.flow_mods_failed;
        self.bundles_opened += o.bundles_opened;
        self.bundles_committed += o.bundles_committed;
        self.bundles_failed += o.bundles_failed;
        self.bundles_discarded += o.bundles_discarded;
        self.barriers += o.barriers;
        self.echo_requests += o.echo_requests;
        self.echo_probes += o.echo_probes;
        self.flow_stats_requests += o.flow_stats_requests;
        self.flow_stats_replies += o.flow_stats_replies;
        self.packet_outs += o.packet_outs;
        self.errors_sent += o.errors_sent;
        self.flow_removed_sent += o.flow_removed_sent;
    }
}

impl fmt::Display for Counters {
    /// One line, `key=value` pairs, stable for scripts to parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.flow_mods;
        write!(
            f,
            "switches={} connected={} flows={} flow_mods={} (add={} modify={} modify_strict={} delete={} \
             delete_strict={}) flow_mods_failed={} bundles_committed={} bundles_failed={} barriers={} \
             flow_stats={} packet_outs={} errors={} echo_in={} echo_probes={} connects={} disconnects={} \
             msgs_in={} msgs_out={}",
            self.switches,
            self.connected,
            self.flows,
            m.total(),
            m.add,
            m.modify,
            m.modify_strict,
            m.delete,
            m.delete_strict,
            self.flow_mods_failed,
            self.bundles_committed,
            self.bundles_failed,
            self.barriers,
            self.flow_stats_requests,
            self.packet_outs,
            self.errors_sent,
            self.echo_requests,
            self.echo_probes,
            self.connects,
            self.disconnects,
            self.messages_received,
            self.messages_sent,
        )
    }
}
