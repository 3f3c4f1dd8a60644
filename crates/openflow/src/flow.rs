//! Flow table messages: `OFPT_FLOW_MOD`, `OFPT_FLOW_REMOVED`, and the
//! bodies of flow and aggregate statistics.

use crate::instruction::Instruction;
use crate::oxm::Match;
use crate::types::{PortNo, Version};
use crate::wire::{DecodeError, EncodeError, Put, Reader};

/// `buffer_id` meaning the packet is not buffered on the switch.
pub const OFP_NO_BUFFER: u32 = 0xffff_ffff;
/// Group wildcard (`OFPG_ANY`) for `out_group` filters.
pub const OFPG_ANY: u32 = 0xffff_ffff;
/// Table wildcard (`OFPTT_ALL`) for deletes and statistics.
pub const OFPTT_ALL: u8 = 0xff;

/// Flags of a flow entry (`OFPFF_*`).
pub mod flow_mod_flags {
    /// Send `OFPT_FLOW_REMOVED` when the flow expires or is deleted.
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    /// Refuse to add a flow that overlaps an existing one.
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    /// Reset the counters of a modified flow.
    pub const RESET_COUNTS: u16 = 1 << 2;
    /// Do not keep packet counts.
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    /// Do not keep byte counts.
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
}

/// What a flow-mod does (`ofp_flow_mod_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    /// Add a flow, replacing one with the same match and priority.
    Add,
    /// Modify all matching flows.
    Modify,
    /// Modify the flow with exactly this match and priority.
    ModifyStrict,
    /// Delete all matching flows.
    Delete,
    /// Delete the flow with exactly this match and priority.
    DeleteStrict,
    /// A command this codec does not know.
    Unknown(u8),
}

impl FlowModCommand {
    fn to_wire(self) -> u8 {
        match self {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
            FlowModCommand::Unknown(v) => v,
        }
    }

    fn from_wire(v: u8) -> Self {
        match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            v => FlowModCommand::Unknown(v),
        }
    }
}

/// `OFPT_FLOW_MOD`: add, change or remove flow entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowMod {
    /// Opaque id chosen by the controller (flowgate encodes the owner).
    pub cookie: u64,
    /// For modify and delete: only flows whose cookie matches under this
    /// mask are affected (0 = all).
    pub cookie_mask: u64,
    /// Table to act on (`OFPTT_ALL` for deletes across tables).
    pub table_id: u8,
    /// What to do.
    pub command: FlowModCommand,
    /// Idle time before discarding, in seconds (0 = never).
    pub idle_timeout: u16,
    /// Time before discarding, in seconds (0 = never).
    pub hard_timeout: u16,
    /// Priority; higher wins.
    pub priority: u16,
    /// Buffered packet to apply to, or [`OFP_NO_BUFFER`].
    pub buffer_id: u32,
    /// For deletes: only flows that output to this port (`ANY` = all).
    pub out_port: PortNo,
    /// For deletes: only flows that output to this group ([`OFPG_ANY`]).
    pub out_group: u32,
    /// [`flow_mod_flags`] bits.
    pub flags: u16,
    /// Eviction importance (OpenFlow 1.4+; must be 0 in 1.3).
    pub importance: u16,
    /// The match.
    pub match_: Match,
    /// The instructions.
    pub instructions: Vec<Instruction>,
}

impl FlowMod {
    /// An `OFPFC_ADD` with the usual defaults (no buffer, no timeouts).
    pub fn add(table_id: u8, priority: u16, match_: Match, instructions: Vec<Instruction>) -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority,
            buffer_id: OFP_NO_BUFFER,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            flags: 0,
            importance: 0,
            match_,
            instructions,
        }
    }

    /// An `OFPFC_DELETE_STRICT` of the flow with this table, priority and
    /// match.
    pub fn delete_strict(table_id: u8, priority: u16, match_: Match) -> Self {
        FlowMod {
            command: FlowModCommand::DeleteStrict,
            ..FlowMod::add(table_id, priority, match_, Vec::new())
        }
    }

    /// An `OFPFC_DELETE` of every flow in every table.
    pub fn delete_all() -> Self {
        FlowMod {
            command: FlowModCommand::Delete,
            ..FlowMod::add(OFPTT_ALL, 0, Match::default(), Vec::new())
        }
    }

    pub(crate) fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        out.put_u8(self.table_id);
        out.put_u8(self.command.to_wire());
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.priority);
        out.put_u32(self.buffer_id);
        out.put_u32(self.out_port.0);
        out.put_u32(self.out_group);
        out.put_u16(self.flags);
        put_importance(self.importance, version, out)?;
        self.match_.encode(out)?;
        Instruction::encode_list(&self.instructions, out)
    }

    pub(crate) fn decode(version: Version, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FlowMod {
            cookie: r.u64("flow_mod cookie")?,
            cookie_mask: r.u64("flow_mod cookie_mask")?,
            table_id: r.u8("flow_mod table_id")?,
            command: FlowModCommand::from_wire(r.u8("flow_mod command")?),
            idle_timeout: r.u16("flow_mod idle_timeout")?,
            hard_timeout: r.u16("flow_mod hard_timeout")?,
            priority: r.u16("flow_mod priority")?,
            buffer_id: r.u32("flow_mod buffer_id")?,
            out_port: PortNo(r.u32("flow_mod out_port")?),
            out_group: r.u32("flow_mod out_group")?,
            flags: r.u16("flow_mod flags")?,
            importance: get_importance(version, r)?,
            match_: Match::decode(r)?,
            instructions: Instruction::decode_list(r)?,
        })
    }
}

/// OpenFlow 1.4 turned two padding bytes into `importance`.
fn put_importance(importance: u16, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if version < Version::OF14 && importance != 0 {
        return Err(EncodeError::Unencodable {
            what: "importance",
            reason: "needs OpenFlow 1.4 or later",
        });
    }
    out.put_u16(importance);
    Ok(())
}

fn get_importance(version: Version, r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let v = r.u16("importance")?;
    Ok(if version >= Version::OF14 { v } else { 0 })
}

/// `OFPT_FLOW_REMOVED`: a flow expired or was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowRemoved {
    /// The flow's cookie.
    pub cookie: u64,
    /// The flow's priority.
    pub priority: u16,
    /// Why (`OFPRR_*`: 0 idle timeout, 1 hard timeout, 2 delete, 3 group
    /// delete).
    pub reason: u8,
    /// The flow's table.
    pub table_id: u8,
    /// Seconds the flow was alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// The flow's idle timeout.
    pub idle_timeout: u16,
    /// The flow's hard timeout.
    pub hard_timeout: u16,
    /// Packets it matched.
    pub packet_count: u64,
    /// Bytes it matched.
    pub byte_count: u64,
    /// The flow's match.
    pub match_: Match,
}

impl FlowRemoved {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u64(self.cookie);
        out.put_u16(self.priority);
        out.put_u8(self.reason);
        out.put_u8(self.table_id);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        self.match_.encode(out)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FlowRemoved {
            cookie: r.u64("flow_removed cookie")?,
            priority: r.u16("flow_removed priority")?,
            reason: r.u8("flow_removed reason")?,
            table_id: r.u8("flow_removed table_id")?,
            duration_sec: r.u32("flow_removed duration_sec")?,
            duration_nsec: r.u32("flow_removed duration_nsec")?,
            idle_timeout: r.u16("flow_removed idle_timeout")?,
            hard_timeout: r.u16("flow_removed hard_timeout")?,
            packet_count: r.u64("flow_removed packet_count")?,
            byte_count: r.u64("flow_removed byte_count")?,
            match_: Match::decode(r)?,
        })
    }
}

/// Body of a flow or aggregate statistics request: which flows to report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowStatsRequest {
    /// Table to read, or [`OFPTT_ALL`].
    pub table_id: u8,
    /// Only flows that output to this port (`ANY` = all).
    pub out_port: PortNo,
    /// Only flows that output to this group ([`OFPG_ANY`] = all).
    pub out_group: u32,
    /// Only flows whose cookie matches under `cookie_mask`.
    pub cookie: u64,
    /// Cookie bits to compare (0 = all flows).
    pub cookie_mask: u64,
    /// Only flows this match covers (empty = all).
    pub match_: Match,
}

impl FlowStatsRequest {
    /// Every flow in every table.
    pub fn all() -> Self {
        FlowStatsRequest {
            table_id: OFPTT_ALL,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::default(),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u8(self.table_id);
        out.put_zeros(3);
        out.put_u32(self.out_port.0);
        out.put_u32(self.out_group);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        self.match_.encode(out)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let table_id = r.u8("flow stats request table_id")?;
        r.skip(3, "flow stats request padding")?;
        let out_port = PortNo(r.u32("flow stats request out_port")?);
        let out_group = r.u32("flow stats request out_group")?;
        r.skip(4, "flow stats request padding")?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie: r.u64("flow stats request cookie")?,
            cookie_mask: r.u64("flow stats request cookie_mask")?,
            match_: Match::decode(r)?,
        })
    }
}

/// One flow entry in a flow statistics reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowStats {
    /// The flow's table.
    pub table_id: u8,
    /// Seconds the flow has been installed.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// Priority.
    pub priority: u16,
    /// Idle timeout.
    pub idle_timeout: u16,
    /// Hard timeout.
    pub hard_timeout: u16,
    /// [`flow_mod_flags`] bits.
    pub flags: u16,
    /// Eviction importance (OpenFlow 1.4+).
    pub importance: u16,
    /// Cookie.
    pub cookie: u64,
    /// Packets matched.
    pub packet_count: u64,
    /// Bytes matched.
    pub byte_count: u64,
    /// The match.
    pub match_: Match,
    /// The instructions.
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    /// Bytes this entry occupies in a reply.
    pub fn wire_len(&self) -> Result<usize, EncodeError> {
        let mut buf = Vec::new();
        self.encode(Version::OF14, &mut buf)?;
        Ok(buf.len())
    }

    pub(crate) fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u16(0);
        out.put_u8(self.table_id);
        out.put_u8(0);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.priority);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.flags);
        put_importance(self.importance, version, out)?;
        out.put_zeros(2);
        out.put_u64(self.cookie);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        self.match_.encode(out)?;
        Instruction::encode_list(&self.instructions, out)?;
        out.patch_len16(start, start, "flow stats entry")
    }

    pub(crate) fn decode(version: Version, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let length = usize::from(r.u16("flow stats length")?);
        if length < 2 {
            return Err(DecodeError::BadLength {
                what: "flow stats entry",
                length,
            });
        }
        let mut e = r.sub(length - 2, "flow stats entry")?;
        let table_id = e.u8("flow stats table_id")?;
        e.skip(1, "flow stats padding")?;
        let duration_sec = e.u32("flow stats duration_sec")?;
        let duration_nsec = e.u32("flow stats duration_nsec")?;
        let priority = e.u16("flow stats priority")?;
        let idle_timeout = e.u16("flow stats idle_timeout")?;
        let hard_timeout = e.u16("flow stats hard_timeout")?;
        let flags = e.u16("flow stats flags")?;
        let importance = get_importance(version, &mut e)?;
        e.skip(2, "flow stats padding")?;
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            importance,
            cookie: e.u64("flow stats cookie")?,
            packet_count: e.u64("flow stats packet_count")?,
            byte_count: e.u64("flow stats byte_count")?,
            match_: Match::decode(&mut e)?,
            instructions: Instruction::decode_list(&mut e)?,
        })
    }
}

/// Body of an aggregate statistics reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AggregateStats {
    /// Packets matched by the selected flows.
    pub packet_count: u64,
    /// Bytes matched by the selected flows.
    pub byte_count: u64,
    /// Number of selected flows.
    pub flow_count: u32,
}

impl AggregateStats {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        out.put_u32(self.flow_count);
        out.put_zeros(4);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let stats = AggregateStats {
            packet_count: r.u64("aggregate packet_count")?,
            byte_count: r.u64("aggregate byte_count")?,
            flow_count: r.u32("aggregate flow_count")?,
        };
        r.skip(4, "aggregate padding")?;
        Ok(stats)
    }
}
