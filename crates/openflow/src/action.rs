//! Actions: the OpenFlow 1.3 standard actions and the Nicira extension
//! actions Open vSwitch implements (`resubmit`, `ct`, `nat`, `move`, `load`,
//! `conjunction`, `controller`, `note`, ...).
//!
//! Every action is a TLV (`type`, `len`, body) padded to 8 bytes. Nicira
//! actions use type `OFPAT_EXPERIMENTER` with vendor id
//! [`NX_VENDOR_ID`] and a 16-bit subtype. Actions this codec does not type
//! decode to [`Action::Unknown`] or [`Action::Experimenter`] with their bytes
//! and encode back unchanged.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::oxm::{OxmField, OxmHeader, Subfield};
use crate::types::PortNo;
use crate::wire::{DecodeError, EncodeError, Put, Reader, padding_to_8};

/// Nicira's experimenter (vendor) id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// The Open Networking Foundation's experimenter id.
pub const ONF_VENDOR_ID: u32 = 0x4f4e_4600;

/// How deep `ct` actions may nest inside each other when decoding.
const MAX_NESTING: usize = 4;

/// `max_len` value asking the switch to send the whole packet to the
/// controller (`OFPCML_NO_BUFFER`).
pub const OFPCML_NO_BUFFER: u16 = 0xffff;

// OpenFlow 1.3 action types.
const OFPAT_OUTPUT: u16 = 0;
const OFPAT_PUSH_VLAN: u16 = 17;
const OFPAT_POP_VLAN: u16 = 18;
const OFPAT_SET_QUEUE: u16 = 21;
const OFPAT_GROUP: u16 = 22;
const OFPAT_SET_NW_TTL: u16 = 23;
const OFPAT_DEC_NW_TTL: u16 = 24;
const OFPAT_SET_FIELD: u16 = 25;
const OFPAT_EXPERIMENTER: u16 = 0xffff;

// Nicira action subtypes (NXAST_*).
const NXAST_RESUBMIT: u16 = 1;
const NXAST_REG_MOVE: u16 = 6;
const NXAST_REG_LOAD: u16 = 7;
const NXAST_NOTE: u16 = 8;
const NXAST_RESUBMIT_TABLE: u16 = 14;
const NXAST_EXIT: u16 = 17;
const NXAST_CONTROLLER: u16 = 20;
const NXAST_REG_LOAD2: u16 = 33;
const NXAST_CONJUNCTION: u16 = 34;
const NXAST_CT: u16 = 35;
const NXAST_NAT: u16 = 36;
const NXAST_CONTROLLER2: u16 = 37;
const NXAST_CT_CLEAR: u16 = 43;

/// Flags of the `ct` action.
pub mod ct_flags {
    /// Commit the connection to the connection tracking table.
    pub const COMMIT: u16 = 1 << 0;
    /// Replace an existing connection in the opposite direction.
    pub const FORCE: u16 = 1 << 1;
}

/// Flags of the `nat` action.
pub mod nat_flags {
    /// Source NAT.
    pub const SRC: u16 = 1 << 0;
    /// Destination NAT.
    pub const DST: u16 = 1 << 1;
    /// Keep the same mapping across restarts where possible.
    pub const PERSISTENT: u16 = 1 << 2;
    /// Choose ports by hash.
    pub const PROTO_HASH: u16 = 1 << 3;
    /// Choose ports at random.
    pub const PROTO_RANDOM: u16 = 1 << 4;
}

/// `ct`'s `recirc_table` value meaning "do not recirculate".
pub const NX_CT_RECIRC_NONE: u8 = 0xff;

/// Where the `ct` action takes its zone from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtZone {
    /// A constant zone.
    Immediate(u16),
    /// Bits of a field (typically a register set earlier in the pipeline).
    Field(Subfield),
}

/// The Nicira `ct` action: send the packet through connection tracking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ct {
    /// [`ct_flags`] bits.
    pub flags: u16,
    /// Conntrack zone.
    pub zone: CtZone,
    /// Table to continue in after tracking, or [`NX_CT_RECIRC_NONE`].
    pub recirc_table: u8,
    /// Application-layer gateway port (0 for none).
    pub alg: u16,
    /// Actions applied to the connection (`nat`, `set_field` of `ct_mark`
    /// or `ct_label`); only allowed with `commit`.
    pub actions: Vec<Action>,
}

/// The Nicira `nat` action (only meaningful inside `ct`).
///
/// Each range bound is present or absent on the wire independently
/// (`range_present`), which this keeps as `Option`s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Nat {
    /// [`nat_flags`] bits.
    pub flags: u16,
    /// Lowest IPv4 address of the range.
    pub ipv4_min: Option<Ipv4Addr>,
    /// Highest IPv4 address of the range.
    pub ipv4_max: Option<Ipv4Addr>,
    /// Lowest IPv6 address of the range.
    pub ipv6_min: Option<Ipv6Addr>,
    /// Highest IPv6 address of the range.
    pub ipv6_max: Option<Ipv6Addr>,
    /// Lowest L4 port.
    pub proto_min: Option<u16>,
    /// Highest L4 port.
    pub proto_max: Option<u16>,
}

/// The Nicira `controller` action with properties (`NXAST_CONTROLLER2`),
/// which Open vSwitch uses when userdata or pause is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Controller2 {
    /// Bytes of the packet to send (`NXAC2PT_MAX_LEN`).
    pub max_len: Option<u16>,
    /// Controller connection id (`NXAC2PT_CONTROLLER_ID`).
    pub controller_id: Option<u16>,
    /// Packet-in reason (`NXAC2PT_REASON`).
    pub reason: Option<u8>,
    /// Opaque data returned in the packet-in (`NXAC2PT_USERDATA`).
    pub userdata: Option<Vec<u8>>,
    /// Pause the pipeline for later continuation (`NXAC2PT_PAUSE`).
    pub pause: bool,
    /// Meter for rate limiting (`NXAC2PT_METER_ID`).
    pub meter_id: Option<u32>,
}

const NXAC2PT_MAX_LEN: u16 = 0;
const NXAC2PT_CONTROLLER_ID: u16 = 1;
const NXAC2PT_REASON: u16 = 2;
const NXAC2PT_USERDATA: u16 = 3;
const NXAC2PT_PAUSE: u16 = 4;
const NXAC2PT_METER_ID: u16 = 5;

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `OFPAT_OUTPUT`: send to a port; `max_len` applies to
    /// [`PortNo::CONTROLLER`].
    Output {
        /// Output port (reserved ports such as `IN_PORT`, `LOCAL`,
        /// `CONTROLLER` included).
        port: PortNo,
        /// Bytes to send to the controller, or [`OFPCML_NO_BUFFER`].
        max_len: u16,
    },
    /// `OFPAT_PUSH_VLAN` with the given TPID (0x8100 or 0x88a8).
    PushVlan(u16),
    /// `OFPAT_POP_VLAN`.
    PopVlan,
    /// `OFPAT_SET_QUEUE`.
    SetQueue(u32),
    /// `OFPAT_GROUP`.
    Group(u32),
    /// `OFPAT_SET_NW_TTL`.
    SetNwTtl(u8),
    /// `OFPAT_DEC_NW_TTL`.
    DecNwTtl,
    /// `OFPAT_SET_FIELD`: overwrite a whole field (Open vSwitch also
    /// accepts Nicira fields such as `ct_mark` and registers here).
    SetField(OxmField),
    /// `NXAST_RESUBMIT_TABLE` (or the older `NXAST_RESUBMIT`, which
    /// decodes to the same value): look the packet up again, as if it came
    /// from `in_port`, in `table`. Always encoded as `NXAST_RESUBMIT_TABLE`,
    /// the form Open vSwitch reports back.
    Resubmit {
        /// Port to pretend the packet came in on; `IN_PORT` keeps it.
        in_port: PortNo,
        /// Table to search; 255 means the current table.
        table: u8,
    },
    /// `NXAST_REG_MOVE`: copy `n_bits` from one field to another.
    RegMove {
        /// Number of bits.
        n_bits: u16,
        /// First bit in the source.
        src_ofs: u16,
        /// First bit in the destination.
        dst_ofs: u16,
        /// Source field.
        src: OxmHeader,
        /// Destination field.
        dst: OxmHeader,
    },
    /// `NXAST_REG_LOAD`: load an immediate value into bits of a field.
    RegLoad {
        /// Destination bits.
        dst: Subfield,
        /// Value (right-aligned).
        value: u64,
    },
    /// `NXAST_REG_LOAD2`: load a value under a mask into a field, carried
    /// as a (possibly masked) OXM TLV.
    RegLoad2(OxmField),
    /// `NXAST_NOTE`: opaque bytes that do nothing. The switch pads them
    /// with zeros so that the action is a multiple of 8 bytes long; decoding
    /// returns the padded bytes.
    Note(Vec<u8>),
    /// `NXAST_EXIT`: stop processing actions.
    Exit,
    /// `NXAST_CONTROLLER`: send to the controller with a reason.
    Controller {
        /// Bytes of the packet to send.
        max_len: u16,
        /// Controller connection id.
        controller_id: u16,
        /// Packet-in reason (`OFPR_*`).
        reason: u8,
    },
    /// `NXAST_CONTROLLER2`.
    Controller2(Controller2),
    /// `NXAST_CONJUNCTION`: this flow is clause `clause` (0-based on the
    /// wire; `ovs-ofctl` prints it 1-based) of `n_clauses` of conjunctive
    /// flow `id`.
    Conjunction {
        /// Conjunction id matched later as `conj_id`.
        id: u32,
        /// Clause number, 0-based.
        clause: u8,
        /// Number of clauses, 2 to 64.
        n_clauses: u8,
    },
    /// `NXAST_CT`: connection tracking.
    Ct(Ct),
    /// `NXAST_NAT`: network address translation inside `ct`.
    Nat(Nat),
    /// `NXAST_CT_CLEAR`: forget the packet's conntrack state.
    CtClear,
    /// An experimenter action this codec does not type, kept verbatim.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Bytes after the experimenter id (for Nicira, starting with the
        /// subtype).
        body: Vec<u8>,
    },
    /// A standard action type this codec does not type, kept verbatim.
    Unknown {
        /// `ofp_action_header.type`.
        action_type: u16,
        /// Bytes after the 4-byte type/length header, padding included.
        body: Vec<u8>,
    },
}

impl Action {
    /// The canonical form of this action, for comparing what a controller
    /// sent with what a switch reports: field references in their
    /// [preferred spelling](OxmHeader::canonical).
    pub fn canonical(self) -> Action {
        match self {
            Action::RegMove {
                n_bits,
                src_ofs,
                dst_ofs,
                src,
                dst,
            } => Action::RegMove {
                n_bits,
                src_ofs,
                dst_ofs,
                src: src.canonical(),
                dst: dst.canonical(),
            },
            Action::RegLoad { dst, value } => Action::RegLoad {
                dst: Subfield {
                    field: dst.field.canonical(),
                    ..dst
                },
                value,
            },
            other => other,
        }
    }

    /// `output:port`.
    pub fn output(port: impl Into<PortNo>) -> Action {
        Action::Output {
            port: port.into(),
            max_len: 0,
        }
    }

    /// `resubmit(,table)`.
    pub fn resubmit_table(table: u8) -> Action {
        Action::Resubmit {
            in_port: PortNo::IN_PORT,
            table,
        }
    }

    /// Encodes a list of actions back to back.
    pub fn encode_list(actions: &[Action], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        actions.iter().try_for_each(|a| a.encode(out))
    }

    /// Decodes actions until `r` is exhausted.
    /// Decodes actions that fill `bytes` exactly, as written by
    /// [`Action::encode_list`].
    pub fn decode_list_bytes(bytes: &[u8]) -> Result<Vec<Action>, DecodeError> {
        Action::decode_list(&mut Reader::new(bytes))
    }

    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Action>, DecodeError> {
        Self::decode_list_at(r, 0)
    }

    fn decode_list_at(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Action>, DecodeError> {
        let mut actions = Vec::new();
        while !r.is_empty() {
            actions.push(Action::decode(r, depth)?);
        }
        Ok(actions)
    }

    /// Appends one action, padded to a multiple of 8 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        match self {
            Action::Output { port, max_len } => {
                out.put_u16(OFPAT_OUTPUT);
                out.put_u16(16);
                out.put_u32(port.0);
                out.put_u16(*max_len);
                out.put_zeros(6);
            }
            Action::PushVlan(tpid) => {
                out.put_u16(OFPAT_PUSH_VLAN);
                out.put_u16(8);
                out.put_u16(*tpid);
                out.put_zeros(2);
            }
            Action::PopVlan => simple(out, OFPAT_POP_VLAN),
            Action::SetQueue(q) => u32_action(out, OFPAT_SET_QUEUE, *q),
            Action::Group(g) => u32_action(out, OFPAT_GROUP, *g),
            Action::SetNwTtl(ttl) => {
                out.put_u16(OFPAT_SET_NW_TTL);
                out.put_u16(8);
                out.put_u8(*ttl);
                out.put_zeros(3);
            }
            Action::DecNwTtl => simple(out, OFPAT_DEC_NW_TTL),
            Action::SetField(field) => {
                out.put_u16(OFPAT_SET_FIELD);
                out.put_u16(0);
                field.encode(out);
                out.pad_to_8(start);
                out.patch_len16(start + 2, start, "set_field action")?;
            }
            Action::Experimenter { experimenter, body } => {
                out.put_u16(OFPAT_EXPERIMENTER);
                out.put_u16(0);
                out.put_u32(*experimenter);
                out.extend_from_slice(body);
                out.pad_to_8(start);
                out.patch_len16(start + 2, start, "experimenter action")?;
            }
            Action::Unknown { action_type, body } => {
                out.put_u16(*action_type);
                out.put_u16(0);
                out.extend_from_slice(body);
                out.pad_to_8(start);
                out.patch_len16(start + 2, start, "action")?;
            }
            nicira => encode_nicira(nicira, out, start)?,
        }
        Ok(())
    }

    /// Decodes one action. Only a TLV whose own length is impossible is an
    /// error; a well-framed action whose body this codec cannot type (an
    /// unknown type, or a known one shaped unexpectedly) is kept verbatim.
    fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Action, DecodeError> {
        let action_type = r.u16("action type")?;
        let len = usize::from(r.u16("action length")?);
        if len < 8 || len % 8 != 0 {
            return Err(DecodeError::BadLength {
                what: "action",
                length: len,
            });
        }
        let raw = r.take(len - 4, "action body")?;
        let mut body = Reader::new(raw);
        let typed = Self::decode_body(action_type, &mut body, depth);
        Ok(match typed {
            Ok(Some(action)) if is_padding(body.peek_rest()) => action,
            _ if action_type == OFPAT_EXPERIMENTER && raw.len() >= 4 => Action::Experimenter {
                experimenter: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                body: raw[4..].to_vec(),
            },
            _ => Action::Unknown {
                action_type,
                body: raw.to_vec(),
            },
        })
    }

    /// The typed form of an action body, `None` if it has none here.
    fn decode_body(
        action_type: u16,
        body: &mut Reader<'_>,
        depth: usize,
    ) -> Result<Option<Action>, DecodeError> {
        let action = match action_type {
            OFPAT_OUTPUT => {
                let port = PortNo(body.u32("output port")?);
                let max_len = body.u16("output max_len")?;
                Action::Output { port, max_len }
            }
            OFPAT_PUSH_VLAN => Action::PushVlan(body.u16("push_vlan ethertype")?),
            OFPAT_POP_VLAN => Action::PopVlan,
            OFPAT_SET_QUEUE => Action::SetQueue(body.u32("set_queue id")?),
            OFPAT_GROUP => Action::Group(body.u32("group id")?),
            OFPAT_SET_NW_TTL => Action::SetNwTtl(body.u8("set_nw_ttl")?),
            OFPAT_DEC_NW_TTL => Action::DecNwTtl,
            OFPAT_SET_FIELD => Action::SetField(OxmField::decode(body)?),
            OFPAT_EXPERIMENTER => match body.u32("action experimenter id")? {
                NX_VENDOR_ID => return decode_nicira(body, depth),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(action))
    }
}

/// Whether `rest` can be the zero padding that ends an action.
fn is_padding(rest: &[u8]) -> bool {
    rest.len() < 8 && rest.iter().all(|&b| b == 0)
}

fn simple(out: &mut Vec<u8>, action_type: u16) {
    out.put_u16(action_type);
    out.put_u16(8);
    out.put_zeros(4);
}

fn u32_action(out: &mut Vec<u8>, action_type: u16, v: u32) {
    out.put_u16(action_type);
    out.put_u16(8);
    out.put_u32(v);
}

/// Writes the 10-byte Nicira action header with a length to patch later.
fn nx_header(out: &mut Vec<u8>, subtype: u16) {
    out.put_u16(OFPAT_EXPERIMENTER);
    out.put_u16(0);
    out.put_u32(NX_VENDOR_ID);
    out.put_u16(subtype);
}

fn encode_nicira(action: &Action, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    match action {
        Action::Resubmit { in_port, table } => {
            nx_header(out, NXAST_RESUBMIT_TABLE);
            out.put_u16(in_port.to_of10());
            out.put_u8(*table);
            out.put_zeros(3);
        }
        Action::RegMove {
            n_bits,
            src_ofs,
            dst_ofs,
            src,
            dst,
        } => {
            nx_header(out, NXAST_REG_MOVE);
            out.put_u16(*n_bits);
            out.put_u16(*src_ofs);
            out.put_u16(*dst_ofs);
            src.encode(out);
            dst.encode(out);
        }
        Action::RegLoad { dst, value } => {
            nx_header(out, NXAST_REG_LOAD);
            out.put_u16(dst.ofs_nbits());
            if dst.field.experimenter.is_some() {
                return Err(EncodeError::Unencodable {
                    what: "reg_load destination",
                    reason: "experimenter fields need reg_load2",
                });
            }
            out.put_u32(dst.field.raw());
            out.put_u64(*value);
        }
        Action::RegLoad2(field) => {
            nx_header(out, NXAST_REG_LOAD2);
            field.encode(out);
        }
        Action::Note(bytes) => {
            nx_header(out, NXAST_NOTE);
            out.extend_from_slice(bytes);
            // A note is at least 16 bytes long.
            if out.len() - start < 16 {
                out.put_zeros(16 - (out.len() - start));
            }
        }
        Action::Exit => {
            nx_header(out, NXAST_EXIT);
            out.put_zeros(6);
        }
        Action::Controller {
            max_len,
            controller_id,
            reason,
        } => {
            nx_header(out, NXAST_CONTROLLER);
            out.put_u16(*max_len);
            out.put_u16(*controller_id);
            out.put_u8(*reason);
            out.put_u8(0);
        }
        Action::Controller2(c) => {
            nx_header(out, NXAST_CONTROLLER2);
            out.put_zeros(6);
            if let Some(v) = c.max_len {
                put_property(out, NXAC2PT_MAX_LEN, &v.to_be_bytes())?;
            }
            if let Some(v) = c.controller_id {
                put_property(out, NXAC2PT_CONTROLLER_ID, &v.to_be_bytes())?;
            }
            if let Some(v) = c.reason {
                put_property(out, NXAC2PT_REASON, &[v])?;
            }
            if let Some(data) = &c.userdata {
                put_property(out, NXAC2PT_USERDATA, data)?;
            }
            if c.pause {
                put_property(out, NXAC2PT_PAUSE, &[])?;
            }
            if let Some(v) = c.meter_id {
                put_property(out, NXAC2PT_METER_ID, &v.to_be_bytes())?;
            }
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            nx_header(out, NXAST_CONJUNCTION);
            out.put_u8(*clause);
            out.put_u8(*n_clauses);
            out.put_u32(*id);
        }
        Action::Ct(ct) => {
            nx_header(out, NXAST_CT);
            out.put_u16(ct.flags);
            match ct.zone {
                CtZone::Immediate(zone) => {
                    out.put_u32(0);
                    out.put_u16(zone);
                }
                CtZone::Field(sub) => {
                    out.put_u32(sub.field.raw());
                    out.put_u16(sub.ofs_nbits());
                }
            }
            out.put_u8(ct.recirc_table);
            out.put_zeros(3);
            out.put_u16(ct.alg);
            Action::encode_list(&ct.actions, out)?;
        }
        Action::Nat(nat) => {
            nx_header(out, NXAST_NAT);
            out.put_zeros(2);
            out.put_u16(nat.flags);
            let present = (u16::from(nat.ipv4_min.is_some()))
                | (u16::from(nat.ipv4_max.is_some()) << 1)
                | (u16::from(nat.ipv6_min.is_some()) << 2)
                | (u16::from(nat.ipv6_max.is_some()) << 3)
                | (u16::from(nat.proto_min.is_some()) << 4)
                | (u16::from(nat.proto_max.is_some()) << 5);
            out.put_u16(present);
            for addr in [nat.ipv4_min, nat.ipv4_max].into_iter().flatten() {
                out.extend_from_slice(&addr.octets());
            }
            for addr in [nat.ipv6_min, nat.ipv6_max].into_iter().flatten() {
                out.extend_from_slice(&addr.octets());
            }
            for port in [nat.proto_min, nat.proto_max].into_iter().flatten() {
                out.put_u16(port);
            }
        }
        Action::CtClear => {
            nx_header(out, NXAST_CT_CLEAR);
            out.put_zeros(6);
        }
        _ => unreachable!("standard actions are encoded by Action::encode"),
    }
    out.pad_to_8(start);
    out.patch_len16(start + 2, start, "Nicira action")
}

/// Appends an OpenFlow property (type, length, value, padding to 8).
fn put_property(out: &mut Vec<u8>, prop_type: u16, value: &[u8]) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u16(prop_type);
    out.put_u16(0);
    out.extend_from_slice(value);
    out.patch_len16(start + 2, start, "property")?;
    out.pad_to_8(start);
    Ok(())
}

/// Decodes a Nicira action; `body` starts at the subtype. `None` means the
/// subtype (or its shape) is not one this codec types: the caller keeps the
/// action verbatim.
fn decode_nicira(body: &mut Reader<'_>, depth: usize) -> Result<Option<Action>, DecodeError> {
    let subtype = body.u16("Nicira action subtype")?;
    let action = match subtype {
        NXAST_RESUBMIT | NXAST_RESUBMIT_TABLE => {
            let in_port = PortNo::from_of10(body.u16("resubmit in_port")?);
            let table = body.u8("resubmit table")?;
            body.rest();
            Action::Resubmit {
                in_port,
                // The plain form has no table: it searches the current one.
                table: if subtype == NXAST_RESUBMIT { 0xff } else { table },
            }
        }
        NXAST_REG_MOVE => {
            let n_bits = body.u16("reg_move n_bits")?;
            let src_ofs = body.u16("reg_move src_ofs")?;
            let dst_ofs = body.u16("reg_move dst_ofs")?;
            let src = OxmHeader::decode_field_ref(body, "reg_move source")?;
            let dst = OxmHeader::decode_field_ref(body, "reg_move destination")?;
            Action::RegMove {
                n_bits,
                src_ofs,
                dst_ofs,
                src,
                dst,
            }
        }
        NXAST_REG_LOAD => {
            let ofs_nbits = body.u16("reg_load ofs_nbits")?;
            let header = OxmHeader::decode_field_ref(body, "reg_load destination")?;
            if header.experimenter.is_some() {
                return Ok(None);
            }
            let value = body.u64("reg_load value")?;
            Action::RegLoad {
                dst: Subfield::from_ofs_nbits(header, ofs_nbits),
                value,
            }
        }
        NXAST_REG_LOAD2 => {
            let field = OxmField::decode(body)?;
            Action::RegLoad2(field)
        }
        NXAST_NOTE => Action::Note(body.rest().to_vec()),
        NXAST_EXIT => Action::Exit,
        NXAST_CONTROLLER => Action::Controller {
            max_len: body.u16("controller max_len")?,
            controller_id: body.u16("controller id")?,
            reason: body.u8("controller reason")?,
        },
        NXAST_CONTROLLER2 => {
            body.skip(6, "controller2 padding")?;
            match decode_controller2(body)? {
                Some(c) => Action::Controller2(c),
                None => return Ok(None),
            }
        }
        NXAST_CONJUNCTION => Action::Conjunction {
            clause: body.u8("conjunction clause")?,
            n_clauses: body.u8("conjunction n_clauses")?,
            id: body.u32("conjunction id")?,
        },
        NXAST_CT => {
            if depth >= MAX_NESTING {
                return Err(DecodeError::TooDeep {
                    what: "ct action",
                    limit: MAX_NESTING,
                });
            }
            let flags = body.u16("ct flags")?;
            let zone_src = body.u32("ct zone_src")?;
            let zone_value = body.u16("ct zone")?;
            let recirc_table = body.u8("ct recirc_table")?;
            body.skip(3, "ct padding")?;
            let alg = body.u16("ct alg")?;
            let zone = if zone_src == 0 {
                CtZone::Immediate(zone_value)
            } else {
                let header = OxmHeader::decode(&mut Reader::new(&zone_src.to_be_bytes()))?;
                CtZone::Field(Subfield::from_ofs_nbits(header, zone_value))
            };
            let actions = Action::decode_list_at(body, depth + 1)?;
            Action::Ct(Ct {
                flags,
                zone,
                recirc_table,
                alg,
                actions,
            })
        }
        NXAST_NAT => {
            body.skip(2, "nat padding")?;
            let flags = body.u16("nat flags")?;
            let present = body.u16("nat range_present")?;
            let mut nat = Nat {
                flags,
                ..Nat::default()
            };
            if present & 1 != 0 {
                nat.ipv4_min = Some(Ipv4Addr::from(body.array::<4>("nat ipv4 min")?));
            }
            if present & 2 != 0 {
                nat.ipv4_max = Some(Ipv4Addr::from(body.array::<4>("nat ipv4 max")?));
            }
            if present & 4 != 0 {
                nat.ipv6_min = Some(Ipv6Addr::from(body.array::<16>("nat ipv6 min")?));
            }
            if present & 8 != 0 {
                nat.ipv6_max = Some(Ipv6Addr::from(body.array::<16>("nat ipv6 max")?));
            }
            if present & 16 != 0 {
                nat.proto_min = Some(body.u16("nat port min")?);
            }
            if present & 32 != 0 {
                nat.proto_max = Some(body.u16("nat port max")?);
            }
            if present & !0x3f != 0 {
                return Ok(None);
            }
            Action::Nat(nat)
        }
        NXAST_CT_CLEAR => Action::CtClear,
        _ => return Ok(None),
    };
    Ok(Some(action))
}

/// Decodes `NXAC2PT_*` properties; `None` if one is not understood, so
/// the caller keeps the action verbatim.
fn decode_controller2(r: &mut Reader<'_>) -> Result<Option<Controller2>, DecodeError> {
    let mut c = Controller2::default();
    while !r.is_empty() {
        let prop_type = r.u16("controller2 property type")?;
        let len = usize::from(r.u16("controller2 property length")?);
        if len < 4 {
            return Err(DecodeError::BadLength {
                what: "controller2 property",
                length: len,
            });
        }
        let mut value = r.sub(len - 4, "controller2 property value")?;
        // The last property's padding may be cut by the action's own padding.
        let pad = padding_to_8(len).min(r.remaining());
        r.skip(pad, "controller2 property padding")?;
        match (prop_type, value.remaining()) {
            (NXAC2PT_MAX_LEN, 2) => c.max_len = Some(value.u16("max_len")?),
            (NXAC2PT_CONTROLLER_ID, 2) => c.controller_id = Some(value.u16("controller id")?),
            (NXAC2PT_REASON, 1) => c.reason = Some(value.u8("reason")?),
            (NXAC2PT_USERDATA, _) => c.userdata = Some(value.rest().to_vec()),
            (NXAC2PT_PAUSE, 0) => c.pause = true,
            (NXAC2PT_METER_ID, 4) => c.meter_id = Some(value.u32("meter id")?),
            _ => return Ok(None),
        }
    }
    Ok(Some(c))
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output {
                port: PortNo::CONTROLLER,
                max_len,
            } => write!(f, "controller:{max_len}"),
            Action::Output { port, .. } => write!(f, "output:{port}"),
            Action::PushVlan(tpid) => write!(f, "push_vlan:{tpid:#06x}"),
            Action::PopVlan => f.write_str("pop_vlan"),
            Action::SetQueue(q) => write!(f, "set_queue:{q}"),
            Action::Group(g) => write!(f, "group:{g}"),
            Action::SetNwTtl(t) => write!(f, "mod_nw_ttl:{t}"),
            Action::DecNwTtl => f.write_str("dec_ttl"),
            Action::SetField(field) => write!(f, "set_field:{field}"),
            Action::Resubmit { in_port, table } => match (in_port, table) {
                (&PortNo::IN_PORT, t) => write!(f, "resubmit(,{t})"),
                (p, 0xff) => write!(f, "resubmit:{p}"),
                (p, t) => write!(f, "resubmit({p},{t})"),
            },
            Action::RegMove {
                n_bits,
                src_ofs,
                dst_ofs,
                src,
                dst,
            } => write!(
                f,
                "move:{src}[{src_ofs}..{}]->{dst}[{dst_ofs}..{}]",
                src_ofs + n_bits.saturating_sub(1),
                dst_ofs + n_bits.saturating_sub(1)
            ),
            Action::RegLoad { dst, value } => write!(f, "load:{value:#x}->{dst}"),
            Action::RegLoad2(field) => write!(f, "load2:{field}"),
            Action::Note(bytes) => {
                f.write_str("note:")?;
                write_hex_dotted(f, bytes)
            }
            Action::Exit => f.write_str("exit"),
            Action::Controller {
                max_len,
                controller_id,
                reason,
            } => {
                write!(
                    f,
                    "controller(max_len={max_len},id={controller_id},reason={reason})"
                )
            }
            Action::Controller2(c) => write!(f, "controller({c:?})"),
            Action::Conjunction {
                id,
                clause,
                n_clauses,
            } => {
                write!(f, "conjunction({id},{}/{n_clauses})", u16::from(*clause) + 1)
            }
            Action::Ct(ct) => {
                f.write_str("ct(")?;
                if ct.flags & ct_flags::COMMIT != 0 {
                    f.write_str("commit,")?;
                }
                if ct.flags & ct_flags::FORCE != 0 {
                    f.write_str("force,")?;
                }
                if ct.recirc_table != NX_CT_RECIRC_NONE {
                    write!(f, "table={},", ct.recirc_table)?;
                }
                match ct.zone {
                    CtZone::Immediate(z) => write!(f, "zone={z}")?,
                    CtZone::Field(s) => write!(f, "zone={s}")?,
                }
                for a in &ct.actions {
                    write!(f, ",{a}")?;
                }
                f.write_str(")")
            }
            Action::Nat(nat) => write!(f, "nat({nat:?})"),
            Action::CtClear => f.write_str("ct_clear"),
            Action::Experimenter { experimenter, body } => {
                write!(f, "experimenter({experimenter:#x}):")?;
                write_hex_dotted(f, body)
            }
            Action::Unknown { action_type, body } => {
                write!(f, "unknown({action_type}):")?;
                write_hex_dotted(f, body)
            }
        }
    }
}

fn write_hex_dotted(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(".")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oxm::{FieldId, Masked};

    fn round_trip(action: Action) -> Vec<u8> {
        let mut out = Vec::new();
        action.encode(&mut out).unwrap();
        assert_eq!(out.len() % 8, 0, "{action:?} not padded");
        let mut r = Reader::new(&out);
        assert_eq!(Action::decode(&mut r, 0).unwrap(), action);
        assert!(r.is_empty());
        out
    }

    #[test]
    fn canonical_moves_use_the_oxm_spelling_open_vswitch_reports_as_nxm() {
        let sent = Action::RegMove {
            n_bits: 48,
            src_ofs: 0,
            dst_ofs: 0,
            src: FieldId::EthSrc.header(),
            dst: FieldId::ArpTha.header(),
        };
        // What Open vSwitch 3.1 returns in FLOW stats for the above.
        let reported = Action::RegMove {
            n_bits: 48,
            src_ofs: 0,
            dst_ofs: 0,
            src: OxmHeader::new(crate::oxm::OFPXMC_NXM_0, 2, false, 6),
            dst: OxmHeader::new(crate::oxm::OFPXMC_NXM_1, 18, false, 6),
        };
        assert_ne!(sent, reported);
        assert_eq!(sent.clone().canonical(), reported.canonical());
        assert_eq!(sent.clone().canonical(), sent, "already canonical");
        // Registers have one spelling only.
        let reg = FieldId::Reg(3).header();
        assert_eq!(reg.canonical(), reg);
    }

    #[test]
    fn output_bytes() {
        let bytes = round_trip(Action::output(PortNo::IN_PORT));
        assert_eq!(
            bytes,
            [0, 0, 0, 16, 0xff, 0xff, 0xff, 0xf8, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn nicira_actions_round_trip() {
        round_trip(Action::resubmit_table(4));
        round_trip(Action::Resubmit {
            in_port: PortNo(3),
            table: 0xff,
        });
        round_trip(Action::Conjunction {
            id: 5,
            clause: 0,
            n_clauses: 2,
        });
        round_trip(Action::Note(vec![1, 2, 3, 0, 0, 0]));
        round_trip(Action::Exit);
        round_trip(Action::CtClear);
        round_trip(Action::RegMove {
            n_bits: 48,
            src_ofs: 0,
            dst_ofs: 0,
            src: FieldId::EthSrc.header(),
            dst: FieldId::EthDst.header(),
        });
        round_trip(Action::RegLoad {
            dst: Subfield::bits(FieldId::Reg(1), 0, 8),
            value: 5,
        });
        round_trip(Action::RegLoad2(OxmField::CtMark(Masked::new(1, 0xff))));
        round_trip(Action::Controller {
            max_len: 128,
            controller_id: 0,
            reason: 1,
        });
        round_trip(Action::Controller2(Controller2 {
            reason: Some(0),
            userdata: Some(vec![1, 2]),
            ..Controller2::default()
        }));
        round_trip(Action::Ct(Ct {
            flags: ct_flags::COMMIT,
            zone: CtZone::Field(Subfield::bits(FieldId::Reg(0), 0, 16)),
            recirc_table: 3,
            alg: 0,
            actions: vec![
                Action::Nat(Nat {
                    flags: nat_flags::SRC,
                    ipv4_min: Some(Ipv4Addr::new(10, 0, 0, 1)),
                    ipv4_max: Some(Ipv4Addr::new(10, 0, 0, 5)),
                    proto_min: Some(100),
                    proto_max: Some(200),
                    ..Nat::default()
                }),
                Action::SetField(OxmField::CtMark(Masked::exact(1))),
            ],
        }));
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        // Length 4 is below the minimum of 8.
        let raw = [0, 0, 0, 4, 0, 0, 0, 0];
        assert!(Action::decode(&mut Reader::new(&raw), 0).is_err());
        // Length claims more than is there.
        let raw = [0, 0, 0, 16, 0, 0, 0, 0];
        assert!(Action::decode(&mut Reader::new(&raw), 0).is_err());
    }

    #[test]
    fn unknown_actions_are_kept() {
        let raw = [0, 11, 0, 8, 0, 0, 0, 0]; // OFPAT_COPY_TTL_OUT
        let mut r = Reader::new(&raw);
        let a = Action::decode(&mut r, 0).unwrap();
        assert_eq!(
            a,
            Action::Unknown {
                action_type: 11,
                body: vec![0; 4]
            }
        );
        let mut out = Vec::new();
        a.encode(&mut out).unwrap();
        assert_eq!(out, raw);
        // Nicira subtype 99.
        let raw = [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 99, 1, 2, 3, 4, 5, 6];
        let a = Action::decode(&mut Reader::new(&raw), 0).unwrap();
        assert!(matches!(
            a,
            Action::Experimenter {
                experimenter: NX_VENDOR_ID,
                ..
            }
        ));
        let mut out = Vec::new();
        a.encode(&mut out).unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn deeply_nested_ct_is_refused() {
        let mut action = Action::CtClear;
        for _ in 0..10 {
            action = Action::Ct(Ct {
                flags: ct_flags::COMMIT,
                zone: CtZone::Immediate(1),
                recirc_table: NX_CT_RECIRC_NONE,
                alg: 0,
                actions: vec![action],
            });
        }
        let mut out = Vec::new();
        action.encode(&mut out).unwrap();
        // The levels beyond the limit are kept verbatim, not recursed into.
        let mut decoded = Action::decode(&mut Reader::new(&out), 0).unwrap();
        let mut typed_levels = 0;
        while let Action::Ct(ct) = decoded {
            typed_levels += 1;
            decoded = ct.actions.into_iter().next().unwrap();
        }
        assert_eq!(typed_levels, MAX_NESTING);
        assert!(matches!(decoded, Action::Experimenter { .. }));
    }
}
