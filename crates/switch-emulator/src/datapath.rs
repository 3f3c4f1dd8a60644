//! The state of one emulated switch that outlives its connections: this
//! module's one job is holding it (flow table, ports, roles, counters,
//! faults) and answering questions about it. Per-connection protocol state
//! lives in [`crate::session`].

use openflow::{ControllerRole, FlowStats, PortNo, PortStatus, SwitchDescription};

use crate::compact::decode_flow;
use crate::counters::Counters;
use crate::faults::Faults;
use crate::ports::PortSet;
use crate::table::{FlowEntry, FlowKey, FlowTable};

/// Identifies one controller connection of a switch.
pub type ConnId = u64;

/// What makes one emulated switch itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSpec {
    /// Position among the emulator's switches (0-based); seeds port MACs.
    pub index: u64,
    /// Datapath id reported in features replies.
    pub datapath_id: u64,
    /// Bridge name: the `LOCAL` port's name (at most 15 bytes).
    pub name: String,
    /// Number of numbered ports.
    pub ports: u32,
    /// Numbered ports are named `{port_prefix}{n}`.
    pub port_prefix: String,
    /// Most flows the switch accepts (`OFPFMFC_TABLE_FULL` beyond).
    pub max_flows: Option<usize>,
}

/// The lasting state of one emulated switch.
#[derive(Debug)]
pub struct Datapath {
    pub(crate) spec: SwitchSpec,
    pub(crate) table: FlowTable,
    pub(crate) ports: PortSet,
    pub(crate) counters: Counters,
    pub(crate) faults: Faults,
    /// Connections closed so far by the drop-after-K fault.
    pub(crate) drops_done: u32,
    /// Master election generation id, once a master or slave request set
    /// it (Open vSwitch keeps it per switch, across connections).
    pub(crate) generation_id: Option<u64>,
    /// Role of each negotiated connection.
    roles: Vec<(ConnId, ControllerRole)>,
    /// When the switch came up, in milliseconds of the emulator's clock.
    pub(crate) booted_ms: u64,
}

impl Datapath {
    /// A switch with an empty flow table.
    pub fn new(spec: SwitchSpec, faults: Faults, now_ms: u64) -> Datapath {
        let ports = PortSet::new(spec.index, &spec.name, &spec.port_prefix, spec.ports);
        Datapath {
            spec,
            table: FlowTable::new(),
            ports,
            counters: Counters {
                switches: 1,
                ..Counters::default()
            },
            faults,
            drops_done: 0,
            generation_id: None,
            roles: Vec::new(),
            booted_ms: now_ms,
        }
    }

    /// The switch's datapath id.
    pub fn datapath_id(&self) -> u64 {
        self.spec.datapath_id
    }

    /// The switch's description (`OFPMP_DESC`).
    pub fn description(&self) -> SwitchDescription {
        SwitchDescription {
            mfr_desc: "flowgate".to_string(),
            hw_desc: "flowgate switch emulator".to_string(),
            sw_desc: env!("CARGO_PKG_VERSION").to_string(),
            serial_num: format!("{:016x}", self.spec.datapath_id),
            dp_desc: self.spec.name.clone(),
        }
    }

    /// Number of flows.
    pub fn flow_count(&self) -> usize {
        self.table.len()
    }

    /// The counters, with the current flow count and connection state.
    pub fn counters(&self) -> Counters {
        Counters {
            flows: self.table.len() as u64,
            connected: u64::from(!self.roles.is_empty()),
            ..self.counters
        }
    }

    /// Number of negotiated controller connections.
    pub fn connections(&self) -> usize {
        self.roles.len()
    }

    /// Every flow as a flow statistics entry at `now_ms`. Flows whose
    /// stored bytes would not decode (which would be a bug) are skipped.
    pub fn flows(&self, now_ms: u64) -> Vec<FlowStats> {
        self.table
            .iter()
            .filter_map(|(k, e)| flow_stats(k, e, now_ms))
            .collect()
    }

    /// The ports, `LOCAL` last.
    pub fn ports(&self) -> &PortSet {
        &self.ports
    }

    /// Adds a port; returns its number and the status message to announce.
    pub fn add_port(&mut self, name: &str) -> (PortNo, PortStatus) {
        self.ports.add(name)
    }

    /// Removes a port; returns the status message to announce.
    pub fn remove_port(&mut self, port_no: PortNo) -> Option<PortStatus> {
        self.ports.remove(port_no)
    }

    /// Sets a port's link state; returns the status message to announce.
    pub fn set_port_link(&mut self, port_no: PortNo, up: bool) -> Option<PortStatus> {
        self.ports.set_link(port_no, up)
    }

    /// The faults in force.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Replaces the faults in force.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.drops_done = 0;
    }

    pub(crate) fn attach(&mut self, conn: ConnId) {
        if !self.roles.iter().any(|(c, _)| *c == conn) {
            self.roles.push((conn, ControllerRole::EQUAL));
        }
    }

    pub(crate) fn detach(&mut self, conn: ConnId) -> bool {
        let before = self.roles.len();
        self.roles.retain(|(c, _)| *c != conn);
        before != self.roles.len()
    }

    /// The role of connection `conn` (`EQUAL` until it asks for another).
    pub fn role(&self, conn: ConnId) -> ControllerRole {
        self.roles
            .iter()
            .find(|(c, _)| *c == conn)
            .map_or(ControllerRole::EQUAL, |(_, r)| *r)
    }

    /// Sets `conn`'s role; a new master demotes any other master to slave.
    pub(crate) fn set_role(&mut self, conn: ConnId, role: ControllerRole) {
        if role == ControllerRole::MASTER {
            for (c, r) in &mut self.roles {
                if *c != conn && *r == ControllerRole::MASTER {
                    *r = ControllerRole::SLAVE;
                }
            }
        }
        match self.roles.iter_mut().find(|(c, _)| *c == conn) {
            Some((_, r)) => *r = role,
            None => self.roles.push((conn, role)),
        }
    }
}

/// A stored flow as a statistics entry.
pub(crate) fn flow_stats(k: &FlowKey, e: &FlowEntry, now_ms: u64) -> Option<FlowStats> {
    let (match_, instructions) = decode_flow(k.match_bytes(), k.instruction_bytes()).ok()?;
    let age = now_ms.saturating_sub(e.created_ms);
    Some(FlowStats {
        table_id: k.table(),
        duration_sec: u32::try_from(age / 1000).unwrap_or(u32::MAX),
        duration_nsec: ((age % 1000) * 1_000_000) as u32,
        priority: k.priority(),
        idle_timeout: e.idle_timeout,
        hard_timeout: e.hard_timeout,
        flags: e.flags,
        importance: e.importance,
        cookie: e.cookie,
        packet_count: 0,
        byte_count: 0,
        match_,
        instructions,
    })
}
