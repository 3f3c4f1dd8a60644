//! `OFPT_PACKET_IN` and `OFPT_PACKET_OUT`: packets between switch and
//! controller.

use crate::action::Action;
use crate::oxm::Match;
use crate::types::PortNo;
use crate::wire::{DecodeError, EncodeError, Put, Reader};

/// Why a packet was sent to the controller (`ofp_packet_in_reason`).
pub mod packet_in_reason {
    /// No flow matched (table miss).
    pub const NO_MATCH: u8 = 0;
    /// An `output:CONTROLLER` or `controller` action.
    pub const ACTION: u8 = 1;
    /// The packet had an invalid TTL.
    pub const INVALID_TTL: u8 = 2;
}

/// `OFPT_PACKET_IN`: a packet the switch sends to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketIn {
    /// Buffer holding the packet on the switch, or `OFP_NO_BUFFER`.
    pub buffer_id: u32,
    /// Full length of the frame (the data may be truncated).
    pub total_len: u16,
    /// [`packet_in_reason`].
    pub reason: u8,
    /// Table the packet was being looked up in.
    pub table_id: u8,
    /// Cookie of the flow that sent it.
    pub cookie: u64,
    /// Pipeline fields: `in_port` and any registers or metadata.
    pub match_: Match,
    /// The frame, possibly truncated.
    pub data: Vec<u8>,
}

impl PacketIn {
    /// The ingress port from the match, if present.
    pub fn in_port(&self) -> Option<PortNo> {
        self.match_.fields.iter().find_map(|f| match f {
            crate::oxm::OxmField::InPort(p) => Some(*p),
            _ => None,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u32(self.buffer_id);
        out.put_u16(self.total_len);
        out.put_u8(self.reason);
        out.put_u8(self.table_id);
        out.put_u64(self.cookie);
        self.match_.encode(out)?;
        out.put_zeros(2);
        out.extend_from_slice(&self.data);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let buffer_id = r.u32("packet_in buffer_id")?;
        let total_len = r.u16("packet_in total_len")?;
        let reason = r.u8("packet_in reason")?;
        let table_id = r.u8("packet_in table_id")?;
        let cookie = r.u64("packet_in cookie")?;
        let match_ = Match::decode(r)?;
        r.skip(2, "packet_in padding")?;
        Ok(PacketIn {
            buffer_id,
            total_len,
            reason,
            table_id,
            cookie,
            match_,
            data: r.rest().to_vec(),
        })
    }
}

/// `OFPT_PACKET_OUT`: a packet the controller asks the switch to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketOut {
    /// Buffered packet to send, or `OFP_NO_BUFFER` to send `data`.
    pub buffer_id: u32,
    /// Port the packet is treated as coming from (`CONTROLLER` if none).
    pub in_port: PortNo,
    /// Actions to apply (`output:TABLE` runs it through the flow tables).
    pub actions: Vec<Action>,
    /// The frame.
    pub data: Vec<u8>,
}

impl PacketOut {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u32(self.buffer_id);
        out.put_u32(self.in_port.0);
        let len_at = out.len();
        out.put_u16(0);
        out.put_zeros(6);
        let actions_start = out.len();
        Action::encode_list(&self.actions, out)?;
        out.patch_len16(len_at, actions_start, "packet_out actions")?;
        out.extend_from_slice(&self.data);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let buffer_id = r.u32("packet_out buffer_id")?;
        let in_port = PortNo(r.u32("packet_out in_port")?);
        let actions_len = usize::from(r.u16("packet_out actions_len")?);
        r.skip(6, "packet_out padding")?;
        let mut actions = r.sub(actions_len, "packet_out actions")?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            actions: Action::decode_list(&mut actions)?,
            data: r.rest().to_vec(),
        })
    }
}
