//! `OFPT_MULTIPART_REQUEST` / `OFPT_MULTIPART_REPLY`: statistics and
//! descriptions, possibly spread over several replies.
//!
//! A reply with [`OFPMPF_REPLY_MORE`] set is followed by more replies with
//! the same xid; [`MultipartAssembler`] joins them, and
//! [`split_flow_stats`] does the opposite for a switch (or emulator) that
//! has more flows than fit in one 64 KiB message.

use std::collections::HashMap;

use crate::flow::{AggregateStats, FlowStats, FlowStatsRequest};
use crate::port::{Port, PortStats};
use crate::types::{PortNo, Version};
use crate::wire::{DecodeError, EncodeError, Put, Reader, put_fixed_str, read_fixed_str};

/// Request flag: more requests with this xid follow.
pub const OFPMPF_REQ_MORE: u16 = 1;
/// Reply flag: more replies with this xid follow.
pub const OFPMPF_REPLY_MORE: u16 = 1;

const OFPMP_DESC: u16 = 0;
const OFPMP_FLOW: u16 = 1;
const OFPMP_AGGREGATE: u16 = 2;
const OFPMP_PORT_STATS: u16 = 4;
const OFPMP_PORT_DESC: u16 = 13;

/// Bytes of a multipart message before its body: OpenFlow header plus
/// type, flags and padding.
pub const MULTIPART_HEADER_LEN: usize = 16;

/// A multipart request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultipartRequest {
    /// [`OFPMPF_REQ_MORE`] or 0.
    pub flags: u16,
    /// What is asked for.
    pub body: MultipartRequestBody,
}

/// The body of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MultipartRequestBody {
    /// `OFPMP_DESC`: switch description.
    Desc,
    /// `OFPMP_FLOW`: individual flow statistics.
    Flow(FlowStatsRequest),
    /// `OFPMP_AGGREGATE`: aggregate flow statistics.
    Aggregate(FlowStatsRequest),
    /// `OFPMP_PORT_STATS`: counters of one port or of all (`PortNo::ANY`).
    PortStats {
        /// The port.
        port_no: PortNo,
    },
    /// `OFPMP_PORT_DESC`: descriptions of all ports.
    PortDesc,
    /// A multipart type this codec does not type, kept verbatim.
    Unknown {
        /// `ofp_multipart_type`.
        mp_type: u16,
        /// The body.
        body: Vec<u8>,
    },
}

/// A multipart reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MultipartReply {
    /// [`OFPMPF_REPLY_MORE`] or 0.
    pub flags: u16,
    /// The answer.
    pub body: MultipartReplyBody,
}

impl MultipartReply {
    /// Whether more replies with the same xid follow.
    pub fn more(&self) -> bool {
        self.flags & OFPMPF_REPLY_MORE != 0
    }
}

/// The body of a multipart reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MultipartReplyBody {
    /// `OFPMP_DESC`.
    Desc(SwitchDescription),
    /// `OFPMP_FLOW`: flow entries.
    Flow(Vec<FlowStats>),
    /// `OFPMP_AGGREGATE`.
    Aggregate(AggregateStats),
    /// `OFPMP_PORT_STATS`.
    PortStats(Vec<PortStats>),
    /// `OFPMP_PORT_DESC`.
    PortDesc(Vec<Port>),
    /// A multipart type this codec does not type (or, in OpenFlow 1.4, a
    /// port layout it does not decode), kept verbatim.
    Unknown {
        /// `ofp_multipart_type`.
        mp_type: u16,
        /// The body.
        body: Vec<u8>,
    },
}

/// The switch's self-description (`ofp_desc`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SwitchDescription {
    /// Manufacturer (255 bytes at most).
    pub mfr_desc: String,
    /// Hardware (255 bytes at most).
    pub hw_desc: String,
    /// Software (255 bytes at most).
    pub sw_desc: String,
    /// Serial number (31 bytes at most).
    pub serial_num: String,
    /// Datapath description (255 bytes at most).
    pub dp_desc: String,
}

const DESC_STR_LEN: usize = 256;
const SERIAL_NUM_LEN: usize = 32;

impl SwitchDescription {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        put_fixed_str(out, &self.mfr_desc, DESC_STR_LEN, "mfr_desc")?;
        put_fixed_str(out, &self.hw_desc, DESC_STR_LEN, "hw_desc")?;
        put_fixed_str(out, &self.sw_desc, DESC_STR_LEN, "sw_desc")?;
        put_fixed_str(out, &self.serial_num, SERIAL_NUM_LEN, "serial_num")?;
        put_fixed_str(out, &self.dp_desc, DESC_STR_LEN, "dp_desc")
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SwitchDescription {
            mfr_desc: read_fixed_str(r, DESC_STR_LEN, "mfr_desc")?,
            hw_desc: read_fixed_str(r, DESC_STR_LEN, "hw_desc")?,
            sw_desc: read_fixed_str(r, DESC_STR_LEN, "sw_desc")?,
            serial_num: read_fixed_str(r, SERIAL_NUM_LEN, "serial_num")?,
            dp_desc: read_fixed_str(r, DESC_STR_LEN, "dp_desc")?,
        })
    }
}

impl MultipartRequest {
    /// A single request with `body`.
    pub fn new(body: MultipartRequestBody) -> Self {
        MultipartRequest { flags: 0, body }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mp_type = match &self.body {
            MultipartRequestBody::Desc => OFPMP_DESC,
            MultipartRequestBody::Flow(_) => OFPMP_FLOW,
            MultipartRequestBody::Aggregate(_) => OFPMP_AGGREGATE,
            MultipartRequestBody::PortStats { .. } => OFPMP_PORT_STATS,
            MultipartRequestBody::PortDesc => OFPMP_PORT_DESC,
            MultipartRequestBody::Unknown { mp_type, .. } => *mp_type,
        };
        out.put_u16(mp_type);
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartRequestBody::Desc | MultipartRequestBody::PortDesc => {}
            MultipartRequestBody::Flow(req) | MultipartRequestBody::Aggregate(req) => req.encode(out)?,
            MultipartRequestBody::PortStats { port_no } => {
                out.put_u32(port_no.0);
                out.put_zeros(4);
            }
            MultipartRequestBody::Unknown { body, .. } => out.extend_from_slice(body),
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mp_type = r.u16("multipart type")?;
        let flags = r.u16("multipart flags")?;
        r.skip(4, "multipart padding")?;
        let raw = r.peek_rest();
        let body = match mp_type {
            OFPMP_DESC if r.is_empty() => MultipartRequestBody::Desc,
            OFPMP_PORT_DESC if r.is_empty() => MultipartRequestBody::PortDesc,
            OFPMP_FLOW => MultipartRequestBody::Flow(FlowStatsRequest::decode(r)?),
            OFPMP_AGGREGATE => MultipartRequestBody::Aggregate(FlowStatsRequest::decode(r)?),
            OFPMP_PORT_STATS => {
                let port_no = PortNo(r.u32("port stats request port_no")?);
                r.skip(4, "port stats request padding")?;
                MultipartRequestBody::PortStats { port_no }
            }
            _ => {
                r.rest();
                MultipartRequestBody::Unknown {
                    mp_type,
                    body: raw.to_vec(),
                }
            }
        };
        Ok(MultipartRequest { flags, body })
    }
}

impl MultipartReply {
    pub(crate) fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mp_type = match &self.body {
            MultipartReplyBody::Desc(_) => OFPMP_DESC,
            MultipartReplyBody::Flow(_) => OFPMP_FLOW,
            MultipartReplyBody::Aggregate(_) => OFPMP_AGGREGATE,
            MultipartReplyBody::PortStats(_) => OFPMP_PORT_STATS,
            MultipartReplyBody::PortDesc(_) => OFPMP_PORT_DESC,
            MultipartReplyBody::Unknown { mp_type, .. } => *mp_type,
        };
        out.put_u16(mp_type);
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartReplyBody::Desc(d) => d.encode(out)?,
            MultipartReplyBody::Flow(flows) => {
                for f in flows {
                    f.encode(version, out)?;
                }
            }
            MultipartReplyBody::Aggregate(a) => a.encode(out),
            MultipartReplyBody::PortStats(stats) => {
                crate::message::port_layout_is_1_3(version)?;
                stats.iter().for_each(|s| s.encode(out))
            }
            MultipartReplyBody::PortDesc(ports) => {
                crate::message::port_layout_is_1_3(version)?;
                for p in ports {
                    p.encode(out)?;
                }
            }
            MultipartReplyBody::Unknown { body, .. } => out.extend_from_slice(body),
        }
        Ok(())
    }

    pub(crate) fn decode(version: Version, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mp_type = r.u16("multipart type")?;
        let flags = r.u16("multipart flags")?;
        r.skip(4, "multipart padding")?;
        let raw = r.peek_rest();
        // OpenFlow 1.4 changed the port layouts; those stay verbatim.
        let ports_typed = version == Version::OF13;
        let body = match mp_type {
            OFPMP_DESC => MultipartReplyBody::Desc(SwitchDescription::decode(r)?),
            OFPMP_FLOW => {
                let mut flows = Vec::new();
                while !r.is_empty() {
                    flows.push(FlowStats::decode(version, r)?);
                }
                MultipartReplyBody::Flow(flows)
            }
            OFPMP_AGGREGATE => MultipartReplyBody::Aggregate(AggregateStats::decode(r)?),
            OFPMP_PORT_STATS if ports_typed => {
                let mut stats = Vec::new();
                while !r.is_empty() {
                    stats.push(PortStats::decode(r)?);
                }
                MultipartReplyBody::PortStats(stats)
            }
            OFPMP_PORT_DESC if ports_typed => {
                let mut ports = Vec::new();
                while !r.is_empty() {
                    ports.push(Port::decode(r)?);
                }
                MultipartReplyBody::PortDesc(ports)
            }
            _ => {
                r.rest();
                MultipartReplyBody::Unknown {
                    mp_type,
                    body: raw.to_vec(),
                }
            }
        };
        Ok(MultipartReply { flags, body })
    }
}

/// Splits flow entries into as many replies as needed so that each encoded
/// message stays within `max_message_len` bytes (at most 65535); every
/// reply but the last has [`OFPMPF_REPLY_MORE`] set.
pub fn split_flow_stats(
    version: Version,
    flows: Vec<FlowStats>,
    max_message_len: usize,
) -> Result<Vec<MultipartReply>, EncodeError> {
    let budget = max_message_len
        .min(usize::from(u16::MAX))
        .checked_sub(MULTIPART_HEADER_LEN)
        .ok_or(EncodeError::Unencodable {
            what: "flow stats reply",
            reason: "maximum message length below the multipart header",
        })?;
    let mut replies = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    let mut scratch = Vec::new();
    for flow in flows {
        scratch.clear();
        flow.encode(version, &mut scratch)?;
        if scratch.len() > budget {
            return Err(EncodeError::TooLong {
                what: "flow stats entry",
                length: scratch.len(),
            });
        }
        if used + scratch.len() > budget {
            replies.push(std::mem::take(&mut current));
            used = 0;
        }
        used += scratch.len();
        current.push(flow);
    }
    replies.push(current);
    let last = replies.len() - 1;
    Ok(replies
        .into_iter()
        .enumerate()
        .map(|(i, flows)| MultipartReply {
            flags: if i < last { OFPMPF_REPLY_MORE } else { 0 },
            body: MultipartReplyBody::Flow(flows),
        })
        .collect())
}

/// Joins multipart replies that arrive in several messages, per xid.
///
/// Sans-io: feed it every multipart reply; it hands back the whole body once
/// the last part (without [`OFPMPF_REPLY_MORE`]) has arrived. Memory is
/// bounded by what the peer has sent for still-open xids; callers drop an
/// xid with [`MultipartAssembler::abandon`] when they give up on it.
#[derive(Debug, Default)]
pub struct MultipartAssembler {
    pending: HashMap<u32, MultipartReplyBody>,
}

impl MultipartAssembler {
    /// An assembler with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one reply; returns the complete body when `reply` was the last
    /// part for `xid`.
    pub fn push(&mut self, xid: u32, reply: MultipartReply) -> Option<MultipartReplyBody> {
        let more = reply.more();
        let body = match self.pending.remove(&xid) {
            None => reply.body,
            Some(mut acc) => {
                append(&mut acc, reply.body);
                acc
            }
        };
        if more {
            self.pending.insert(xid, body);
            None
        } else {
            Some(body)
        }
    }

    /// Forgets a partially received reply.
    pub fn abandon(&mut self, xid: u32) {
        self.pending.remove(&xid);
    }

    /// Number of xids with parts still missing.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

fn append(acc: &mut MultipartReplyBody, next: MultipartReplyBody) {
    match (acc, next) {
        (MultipartReplyBody::Flow(a), MultipartReplyBody::Flow(b)) => a.extend(b),
        (MultipartReplyBody::PortStats(a), MultipartReplyBody::PortStats(b)) => a.extend(b),
        (MultipartReplyBody::PortDesc(a), MultipartReplyBody::PortDesc(b)) => a.extend(b),
        (MultipartReplyBody::Unknown { body: a, .. }, MultipartReplyBody::Unknown { body: b, .. }) => {
            a.extend(b)
        }
        // Single-part bodies (or a peer mixing types): the latest part wins.
        (acc, next) => *acc = next,
    }
}
