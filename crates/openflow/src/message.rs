//! OpenFlow messages: the header, the [`Message`] enum of every message
//! type, and the small messages (hello, echo, features, config, role,
//! asynchronous configuration, experimenter) that need no module of their
//! own.

use crate::action::ONF_VENDOR_ID;
use crate::bundle::{BundleAdd, BundleControl, ONFT_BUNDLE_ADD_MESSAGE, ONFT_BUNDLE_CONTROL};
use crate::error_msg::{ErrorCode, ErrorMsg};
use crate::flow::{FlowMod, FlowRemoved};
use crate::multipart::{MultipartReply, MultipartRequest};
use crate::packet::{PacketIn, PacketOut};
use crate::port::PortStatus;
use crate::types::Version;
use crate::wire::{DecodeError, EncodeError, Put, Reader, padding_to_8};

/// Size of `ofp_header`.
pub const OFP_HEADER_LEN: usize = 8;

/// Bundled messages may not themselves be bundles; this bounds recursion.
const MAX_BUNDLE_DEPTH: usize = 1;

// Message types (`ofp_type`); 0-3 are the same in every version.
const OFPT_HELLO: u8 = 0;
const OFPT_ERROR: u8 = 1;
const OFPT_ECHO_REQUEST: u8 = 2;
const OFPT_ECHO_REPLY: u8 = 3;
const OFPT_EXPERIMENTER: u8 = 4;
const OFPT_FEATURES_REQUEST: u8 = 5;
const OFPT_FEATURES_REPLY: u8 = 6;
const OFPT_GET_CONFIG_REQUEST: u8 = 7;
const OFPT_GET_CONFIG_REPLY: u8 = 8;
const OFPT_SET_CONFIG: u8 = 9;
const OFPT_PACKET_IN: u8 = 10;
const OFPT_FLOW_REMOVED: u8 = 11;
const OFPT_PORT_STATUS: u8 = 12;
const OFPT_PACKET_OUT: u8 = 13;
const OFPT_FLOW_MOD: u8 = 14;
const OFPT_MULTIPART_REQUEST: u8 = 18;
const OFPT_MULTIPART_REPLY: u8 = 19;
const OFPT_BARRIER_REQUEST: u8 = 20;
const OFPT_BARRIER_REPLY: u8 = 21;
const OFPT_ROLE_REQUEST: u8 = 24;
const OFPT_ROLE_REPLY: u8 = 25;
const OFPT_GET_ASYNC_REQUEST: u8 = 26;
const OFPT_GET_ASYNC_REPLY: u8 = 27;
const OFPT_SET_ASYNC: u8 = 28;
const OFPT_BUNDLE_CONTROL: u8 = 33;
const OFPT_BUNDLE_ADD_MESSAGE: u8 = 34;

const OFPHET_VERSIONBITMAP: u16 = 1;

/// The fixed `ofp_header` that starts every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version.
    pub version: Version,
    /// Message type (`ofp_type`).
    pub msg_type: u8,
    /// Length of the whole message including this header.
    pub length: u16,
    /// Transaction id.
    pub xid: u32,
}

impl Header {
    /// Parses the first 8 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(buf);
        let header = Header {
            version: Version(r.u8("ofp_header version")?),
            msg_type: r.u8("ofp_header type")?,
            length: r.u16("ofp_header length")?,
            xid: r.u32("ofp_header xid")?,
        };
        if usize::from(header.length) < OFP_HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "ofp_header",
                length: usize::from(header.length),
            });
        }
        Ok(header)
    }
}

/// Framing for a byte stream: the length of the message at the start of
/// `buf`, `None` if not even its header has arrived yet, or an error if the
/// header claims an impossible length (the stream cannot be resynchronized
/// and the connection should be dropped).
pub fn message_length(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < OFP_HEADER_LEN {
        return Ok(None);
    }
    Header::parse(buf).map(|h| Some(usize::from(h.length)))
}

/// A controller role (`ofp_controller_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerRole(pub u32);

impl ControllerRole {
    /// Ask for the current role without changing it.
    pub const NOCHANGE: Self = Self(0);
    /// Full access, shared with other equal controllers.
    pub const EQUAL: Self = Self(1);
    /// Full access; at most one master per switch.
    pub const MASTER: Self = Self(2);
    /// Read-only access.
    pub const SLAVE: Self = Self(3);
}

/// Body of `OFPT_ROLE_REQUEST` and `OFPT_ROLE_REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Role {
    /// The role.
    pub role: ControllerRole,
    /// Master election generation; stale requests are refused.
    pub generation_id: u64,
}

/// One element of a HELLO message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HelloElement {
    /// `OFPHET_VERSIONBITMAP`: bit `n` of word `n / 32` set means version
    /// `n` is supported.
    VersionBitmap(Vec<u32>),
    /// An element this codec does not know, kept verbatim.
    Unknown {
        /// Element type.
        element_type: u16,
        /// Element body, without padding.
        data: Vec<u8>,
    },
}

/// `OFPT_HELLO`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hello {
    /// Hello elements (usually one version bitmap).
    pub elements: Vec<HelloElement>,
}

impl Hello {
    /// A hello advertising exactly `versions`.
    pub fn with_versions(versions: &[Version]) -> Hello {
        let mut words = Vec::new();
        for v in versions {
            let word = usize::from(v.0 / 32);
            if words.len() <= word {
                words.resize(word + 1, 0u32);
            }
            words[word] |= 1 << (v.0 % 32);
        }
        Hello {
            elements: vec![HelloElement::VersionBitmap(words)],
        }
    }

    /// Versions the sender supports: its bitmap if it sent one, otherwise
    /// every version up to the one in its header (OpenFlow 1.0 semantics).
    pub fn versions(&self, header_version: Version) -> Vec<Version> {
        for element in &self.elements {
            if let HelloElement::VersionBitmap(words) = element {
                return (0u8..=255)
                    .filter(|v| {
                        words
                            .get(usize::from(v / 32))
                            .is_some_and(|w| w & (1 << (v % 32)) != 0)
                    })
                    .map(Version)
                    .collect();
            }
        }
        (1..=header_version.0).map(Version).collect()
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for element in &self.elements {
            let start = out.len();
            match element {
                HelloElement::VersionBitmap(words) => {
                    out.put_u16(OFPHET_VERSIONBITMAP);
                    out.put_u16(0);
                    words.iter().for_each(|w| out.put_u32(*w));
                }
                HelloElement::Unknown { element_type, data } => {
                    out.put_u16(*element_type);
                    out.put_u16(0);
                    out.extend_from_slice(data);
                }
            }
            out.patch_len16(start + 2, start, "hello element")?;
            out.pad_to_8(start);
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Hello, DecodeError> {
        let mut elements = Vec::new();
        while !r.is_empty() {
            let element_type = r.u16("hello element type")?;
            let len = usize::from(r.u16("hello element length")?);
            if len < 4 {
                return Err(DecodeError::BadLength {
                    what: "hello element",
                    length: len,
                });
            }
            let mut body = r.sub(len - 4, "hello element")?;
            // Tolerate a missing pad after the last element.
            let pad = padding_to_8(len).min(r.remaining());
            r.skip(pad, "hello element padding")?;
            let element = match element_type {
                OFPHET_VERSIONBITMAP if body.remaining() % 4 == 0 => {
                    let mut words = Vec::new();
                    while !body.is_empty() {
                        words.push(body.u32("version bitmap")?);
                    }
                    HelloElement::VersionBitmap(words)
                }
                _ => HelloElement::Unknown {
                    element_type,
                    data: body.rest().to_vec(),
                },
            };
            elements.push(element);
        }
        Ok(Hello { elements })
    }
}

/// The highest version both sides support, per OpenFlow's negotiation
/// rules, or `None` if they share none.
pub fn negotiate_version(ours: &[Version], their_header: Version, their_hello: &Hello) -> Option<Version> {
    let theirs = their_hello.versions(their_header);
    ours.iter().copied().filter(|v| theirs.contains(v)).max()
}

/// `OFPT_FEATURES_REPLY` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SwitchFeatures {
    /// Datapath id: identifies the switch (bridge).
    pub datapath_id: u64,
    /// Packets the switch can buffer.
    pub n_buffers: u32,
    /// Flow tables.
    pub n_tables: u8,
    /// Auxiliary connection id (0 for the main connection).
    pub auxiliary_id: u8,
    /// `OFPC_*` capability bits.
    pub capabilities: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `OFPT_GET_CONFIG_REPLY` / `OFPT_SET_CONFIG` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SwitchConfig {
    /// `OFPC_FRAG_*` bits.
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

/// Which asynchronous messages a controller connection receives, in the
/// OpenFlow 1.3 layout (`ofp_async_config`): each pair of masks is indexed
/// by role, `[0]` for master and equal, `[1]` for slave; bit `n` set lets
/// messages with reason `n` through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AsyncConfig {
    /// Packet-ins by `OFPR_*` reason.
    pub packet_in_mask: [u32; 2],
    /// Port status by `OFPPR_*` reason.
    pub port_status_mask: [u32; 2],
    /// Flow-removed by `OFPRR_*` reason.
    pub flow_removed_mask: [u32; 2],
}

impl AsyncConfig {
    fn encode(&self, version: Version, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if version != Version::OF13 {
            // OpenFlow 1.4 replaced the masks with properties.
            return Err(EncodeError::Unencodable {
                what: "asynchronous configuration",
                reason: "only the OpenFlow 1.3 layout is implemented",
            });
        }
        for mask in [self.packet_in_mask, self.port_status_mask, self.flow_removed_mask] {
            out.put_u32(mask[0]);
            out.put_u32(mask[1]);
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<AsyncConfig, DecodeError> {
        let mut pair = |what| -> Result<[u32; 2], DecodeError> { Ok([r.u32(what)?, r.u32(what)?]) };
        Ok(AsyncConfig {
            packet_in_mask: pair("packet_in_mask")?,
            port_status_mask: pair("port_status_mask")?,
            flow_removed_mask: pair("flow_removed_mask")?,
        })
    }
}

/// `OFPT_EXPERIMENTER`: a vendor message this codec does not type further.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Experimenter {
    /// Experimenter id.
    pub experimenter: u32,
    /// Experimenter-defined type.
    pub exp_type: u32,
    /// Body.
    pub data: Vec<u8>,
}

/// Every OpenFlow message, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// `OFPT_HELLO`.
    Hello(Hello),
    /// `OFPT_ERROR`.
    Error(ErrorMsg),
    /// `OFPT_ECHO_REQUEST` with its payload.
    EchoRequest(Vec<u8>),
    /// `OFPT_ECHO_REPLY` with the request's payload.
    EchoReply(Vec<u8>),
    /// `OFPT_EXPERIMENTER`.
    Experimenter(Experimenter),
    /// `OFPT_FEATURES_REQUEST`.
    FeaturesRequest,
    /// `OFPT_FEATURES_REPLY`.
    FeaturesReply(SwitchFeatures),
    /// `OFPT_GET_CONFIG_REQUEST`.
    GetConfigRequest,
    /// `OFPT_GET_CONFIG_REPLY`.
    GetConfigReply(SwitchConfig),
    /// `OFPT_SET_CONFIG`.
    SetConfig(SwitchConfig),
    /// `OFPT_PACKET_IN`.
    PacketIn(PacketIn),
    /// `OFPT_FLOW_REMOVED`.
    FlowRemoved(FlowRemoved),
    /// `OFPT_PORT_STATUS`.
    PortStatus(PortStatus),
    /// `OFPT_PACKET_OUT`.
    PacketOut(PacketOut),
    /// `OFPT_FLOW_MOD`.
    FlowMod(FlowMod),
    /// `OFPT_MULTIPART_REQUEST`.
    MultipartRequest(MultipartRequest),
    /// `OFPT_MULTIPART_REPLY`.
    MultipartReply(MultipartReply),
    /// `OFPT_BARRIER_REQUEST`.
    BarrierRequest,
    /// `OFPT_BARRIER_REPLY`.
    BarrierReply,
    /// `OFPT_ROLE_REQUEST`.
    RoleRequest(Role),
    /// `OFPT_ROLE_REPLY`.
    RoleReply(Role),
    /// `OFPT_GET_ASYNC_REQUEST`.
    GetAsyncRequest,
    /// `OFPT_GET_ASYNC_REPLY` (OpenFlow 1.3 layout).
    GetAsyncReply(AsyncConfig),
    /// `OFPT_SET_ASYNC` (OpenFlow 1.3 layout).
    SetAsync(AsyncConfig),
    /// `OFPT_BUNDLE_CONTROL` (an ONF experimenter message in 1.3).
    BundleControl(BundleControl),
    /// `OFPT_BUNDLE_ADD_MESSAGE` (an ONF experimenter message in 1.3).
    BundleAdd(BundleAdd),
    /// A message type this codec does not type in this version, kept
    /// verbatim.
    Unknown {
        /// `ofp_header.type`.
        msg_type: u8,
        /// Everything after the header.
        body: Vec<u8>,
    },
}

impl Message {
    /// The OpenFlow name of the message type, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "OFPT_HELLO",
            Message::Error(_) => "OFPT_ERROR",
            Message::EchoRequest(_) => "OFPT_ECHO_REQUEST",
            Message::EchoReply(_) => "OFPT_ECHO_REPLY",
            Message::Experimenter(_) => "OFPT_EXPERIMENTER",
            Message::FeaturesRequest => "OFPT_FEATURES_REQUEST",
            Message::FeaturesReply(_) => "OFPT_FEATURES_REPLY",
            Message::GetConfigRequest => "OFPT_GET_CONFIG_REQUEST",
            Message::GetConfigReply(_) => "OFPT_GET_CONFIG_REPLY",
            Message::SetConfig(_) => "OFPT_SET_CONFIG",
            Message::PacketIn(_) => "OFPT_PACKET_IN",
            Message::FlowRemoved(_) => "OFPT_FLOW_REMOVED",
            Message::PortStatus(_) => "OFPT_PORT_STATUS",
            Message::PacketOut(_) => "OFPT_PACKET_OUT",
            Message::FlowMod(_) => "OFPT_FLOW_MOD",
            Message::MultipartRequest(_) => "OFPT_MULTIPART_REQUEST",
            Message::MultipartReply(_) => "OFPT_MULTIPART_REPLY",
            Message::BarrierRequest => "OFPT_BARRIER_REQUEST",
            Message::BarrierReply => "OFPT_BARRIER_REPLY",
            Message::RoleRequest(_) => "OFPT_ROLE_REQUEST",
            Message::RoleReply(_) => "OFPT_ROLE_REPLY",
            Message::GetAsyncRequest => "OFPT_GET_ASYNC_REQUEST",
            Message::GetAsyncReply(_) => "OFPT_GET_ASYNC_REPLY",
            Message::SetAsync(_) => "OFPT_SET_ASYNC",
            Message::BundleControl(_) => "OFPT_BUNDLE_CONTROL",
            Message::BundleAdd(_) => "OFPT_BUNDLE_ADD_MESSAGE",
            Message::Unknown { .. } => "unknown",
        }
    }
}

/// A message with its version and transaction id: what travels on the
/// wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OfpMessage {
    /// Protocol version of the encoding.
    pub version: Version,
    /// Transaction id (replies carry the request's).
    pub xid: u32,
    /// The message.
    pub body: Message,
}

impl OfpMessage {
    /// A message of `version` with transaction id `xid`.
    pub fn new(version: Version, xid: u32, body: Message) -> Self {
        OfpMessage { version, xid, body }
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Appends the encoded message to `out`. On error `out` may hold a
    /// partial message; callers that reuse a buffer truncate it.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let v = self.version;
        let bundles_are_experimenter = v < Version::OF14;
        let msg_type = match &self.body {
            Message::Hello(_) => OFPT_HELLO,
            Message::Error(_) => OFPT_ERROR,
            Message::EchoRequest(_) => OFPT_ECHO_REQUEST,
            Message::EchoReply(_) => OFPT_ECHO_REPLY,
            Message::Experimenter(_) => OFPT_EXPERIMENTER,
            Message::FeaturesRequest => OFPT_FEATURES_REQUEST,
            Message::FeaturesReply(_) => OFPT_FEATURES_REPLY,
            Message::GetConfigRequest => OFPT_GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => OFPT_GET_CONFIG_REPLY,
            Message::SetConfig(_) => OFPT_SET_CONFIG,
            Message::PacketIn(_) => OFPT_PACKET_IN,
            Message::FlowRemoved(_) => OFPT_FLOW_REMOVED,
            Message::PortStatus(_) => OFPT_PORT_STATUS,
            Message::PacketOut(_) => OFPT_PACKET_OUT,
            Message::FlowMod(_) => OFPT_FLOW_MOD,
            Message::MultipartRequest(_) => OFPT_MULTIPART_REQUEST,
            Message::MultipartReply(_) => OFPT_MULTIPART_REPLY,
            Message::BarrierRequest => OFPT_BARRIER_REQUEST,
            Message::BarrierReply => OFPT_BARRIER_REPLY,
            Message::RoleRequest(_) => OFPT_ROLE_REQUEST,
            Message::RoleReply(_) => OFPT_ROLE_REPLY,
            Message::GetAsyncRequest => OFPT_GET_ASYNC_REQUEST,
            Message::GetAsyncReply(_) => OFPT_GET_ASYNC_REPLY,
            Message::SetAsync(_) => OFPT_SET_ASYNC,
            Message::BundleControl(_) | Message::BundleAdd(_) if bundles_are_experimenter => {
                OFPT_EXPERIMENTER
            }
            Message::BundleControl(_) => OFPT_BUNDLE_CONTROL,
            Message::BundleAdd(_) => OFPT_BUNDLE_ADD_MESSAGE,
            Message::Unknown { msg_type, .. } => *msg_type,
        };
        out.put_u8(v.0);
        out.put_u8(msg_type);
        out.put_u16(0);
        out.put_u32(self.xid);
        match &self.body {
            Message::Hello(h) => h.encode(out)?,
            Message::Error(e) => {
                let (err_type, code, experimenter) = e.code.to_wire();
                out.put_u16(err_type);
                out.put_u16(code);
                if let Some(id) = experimenter {
                    out.put_u32(id);
                }
                out.extend_from_slice(&e.data);
            }
            Message::EchoRequest(data) | Message::EchoReply(data) => out.extend_from_slice(data),
            Message::Experimenter(x) => {
                out.put_u32(x.experimenter);
                out.put_u32(x.exp_type);
                out.extend_from_slice(&x.data);
            }
            Message::FeaturesRequest
            | Message::GetConfigRequest
            | Message::BarrierRequest
            | Message::BarrierReply
            | Message::GetAsyncRequest => {}
            Message::FeaturesReply(f) => {
                out.put_u64(f.datapath_id);
                out.put_u32(f.n_buffers);
                out.put_u8(f.n_tables);
                out.put_u8(f.auxiliary_id);
                out.put_zeros(2);
                out.put_u32(f.capabilities);
                out.put_u32(f.reserved);
            }
            Message::GetConfigReply(c) | Message::SetConfig(c) => {
                out.put_u16(c.flags);
                out.put_u16(c.miss_send_len);
            }
            Message::PacketIn(p) => p.encode(out)?,
            Message::FlowRemoved(f) => f.encode(out)?,
            Message::PortStatus(p) => {
                port_layout_is_1_3(v)?;
                p.encode(out)?
            }
            Message::PacketOut(p) => p.encode(out)?,
            Message::FlowMod(f) => f.encode(v, out)?,
            Message::MultipartRequest(m) => m.encode(out)?,
            Message::MultipartReply(m) => m.encode(v, out)?,
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                out.put_u32(r.role.0);
                out.put_zeros(4);
                out.put_u64(r.generation_id);
            }
            Message::GetAsyncReply(a) | Message::SetAsync(a) => a.encode(v, out)?,
            Message::BundleControl(b) => {
                if bundles_are_experimenter {
                    out.put_u32(ONF_VENDOR_ID);
                    out.put_u32(ONFT_BUNDLE_CONTROL);
                }
                b.encode(out);
            }
            Message::BundleAdd(b) => {
                if bundles_are_experimenter {
                    out.put_u32(ONF_VENDOR_ID);
                    out.put_u32(ONFT_BUNDLE_ADD_MESSAGE);
                }
                b.encode(out)?;
            }
            Message::Unknown { body, .. } => out.extend_from_slice(body),
        }
        out.patch_len16(start + 2, start, "OpenFlow message")
    }

    /// Decodes exactly one message: `buf` must be as long as the header's
    /// length field says (use [`message_length`] to frame a stream).
    pub fn decode(buf: &[u8]) -> Result<OfpMessage, DecodeError> {
        Self::decode_nested(buf, 0)
    }

    pub(crate) fn decode_nested(buf: &[u8], depth: usize) -> Result<OfpMessage, DecodeError> {
        let header = Header::parse(buf)?;
        let length = usize::from(header.length);
        if length != buf.len() {
            return Err(DecodeError::BadLength {
                what: "OpenFlow message (header length differs from buffer)",
                length,
            });
        }
        let mut r = Reader::new(&buf[OFP_HEADER_LEN..]);
        let body = decode_body(header, &mut r, depth)?;
        r.finish(body.name())?;
        Ok(OfpMessage {
            version: header.version,
            xid: header.xid,
            body,
        })
    }
}

fn decode_body(header: Header, r: &mut Reader<'_>, depth: usize) -> Result<Message, DecodeError> {
    let v = header.version;
    let raw = r.peek_rest();
    let unknown = |r: &mut Reader<'_>| {
        r.rest();
        Message::Unknown {
            msg_type: header.msg_type,
            body: raw.to_vec(),
        }
    };
    // Types 0-3 are the same in every version: enough to negotiate.
    let message = match header.msg_type {
        OFPT_HELLO => Message::Hello(Hello::decode(r)?),
        OFPT_ERROR => {
            let err_type = r.u16("error type")?;
            let code = r.u16("error code")?;
            let code = if ErrorCode::is_experimenter_type(err_type) && v >= Version(0x03) {
                ErrorCode::Experimenter {
                    exp_code: code,
                    experimenter: r.u32("error experimenter id")?,
                }
            } else {
                ErrorCode::Standard { err_type, code }
            };
            Message::Error(ErrorMsg {
                code,
                data: r.rest().to_vec(),
            })
        }
        OFPT_ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
        OFPT_ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
        _ if !v.has_bodies() => unknown(r),
        OFPT_EXPERIMENTER => {
            let experimenter = r.u32("experimenter id")?;
            let exp_type = r.u32("experimenter type")?;
            match (experimenter, exp_type) {
                (ONF_VENDOR_ID, ONFT_BUNDLE_CONTROL) if v < Version::OF14 => {
                    Message::BundleControl(BundleControl::decode(r)?)
                }
                (ONF_VENDOR_ID, ONFT_BUNDLE_ADD_MESSAGE) if v < Version::OF14 => {
                    Message::BundleAdd(decode_bundle_add(r, depth)?)
                }
                _ => Message::Experimenter(Experimenter {
                    experimenter,
                    exp_type,
                    data: r.rest().to_vec(),
                }),
            }
        }
        OFPT_FEATURES_REQUEST => Message::FeaturesRequest,
        OFPT_FEATURES_REPLY => {
            let datapath_id = r.u64("datapath_id")?;
            let n_buffers = r.u32("n_buffers")?;
            let n_tables = r.u8("n_tables")?;
            let auxiliary_id = r.u8("auxiliary_id")?;
            r.skip(2, "features padding")?;
            Message::FeaturesReply(SwitchFeatures {
                datapath_id,
                n_buffers,
                n_tables,
                auxiliary_id,
                capabilities: r.u32("capabilities")?,
                reserved: r.u32("reserved")?,
            })
        }
        OFPT_GET_CONFIG_REQUEST => Message::GetConfigRequest,
        OFPT_GET_CONFIG_REPLY | OFPT_SET_CONFIG => {
            let config = SwitchConfig {
                flags: r.u16("config flags")?,
                miss_send_len: r.u16("miss_send_len")?,
            };
            if header.msg_type == OFPT_SET_CONFIG {
                Message::SetConfig(config)
            } else {
                Message::GetConfigReply(config)
            }
        }
        OFPT_PACKET_IN => Message::PacketIn(PacketIn::decode(r)?),
        OFPT_FLOW_REMOVED => Message::FlowRemoved(FlowRemoved::decode(r)?),
        // OpenFlow 1.4 changed the port layout.
        OFPT_PORT_STATUS if v == Version::OF13 => Message::PortStatus(PortStatus::decode(r)?),
        OFPT_PACKET_OUT => Message::PacketOut(PacketOut::decode(r)?),
        OFPT_FLOW_MOD => Message::FlowMod(FlowMod::decode(v, r)?),
        OFPT_MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::decode(r)?),
        OFPT_MULTIPART_REPLY => Message::MultipartReply(MultipartReply::decode(v, r)?),
        OFPT_BARRIER_REQUEST => Message::BarrierRequest,
        OFPT_BARRIER_REPLY => Message::BarrierReply,
        OFPT_ROLE_REQUEST | OFPT_ROLE_REPLY => {
            let role = ControllerRole(r.u32("role")?);
            r.skip(4, "role padding")?;
            let role = Role {
                role,
                generation_id: r.u64("generation_id")?,
            };
            if header.msg_type == OFPT_ROLE_REQUEST {
                Message::RoleRequest(role)
            } else {
                Message::RoleReply(role)
            }
        }
        OFPT_GET_ASYNC_REQUEST => Message::GetAsyncRequest,
        // OpenFlow 1.4 replaced the masks with properties.
        OFPT_GET_ASYNC_REPLY if v == Version::OF13 => Message::GetAsyncReply(AsyncConfig::decode(r)?),
        OFPT_SET_ASYNC if v == Version::OF13 => Message::SetAsync(AsyncConfig::decode(r)?),
        OFPT_BUNDLE_CONTROL if v >= Version::OF14 => Message::BundleControl(BundleControl::decode(r)?),
        OFPT_BUNDLE_ADD_MESSAGE if v >= Version::OF14 => Message::BundleAdd(decode_bundle_add(r, depth)?),
        _ => unknown(r),
    };
    Ok(message)
}

/// Ports are encoded in their OpenFlow 1.3 layout only (1.4 added
/// properties); refusing is better than sending bytes the peer misreads.
pub(crate) fn port_layout_is_1_3(version: Version) -> Result<(), EncodeError> {
    if version == Version::OF13 {
        Ok(())
    } else {
        Err(EncodeError::Unencodable {
            what: "port description",
            reason: "only the OpenFlow 1.3 port layout is implemented",
        })
    }
}

fn decode_bundle_add(r: &mut Reader<'_>, depth: usize) -> Result<BundleAdd, DecodeError> {
    if depth >= MAX_BUNDLE_DEPTH {
        return Err(DecodeError::TooDeep {
            what: "bundled message",
            limit: MAX_BUNDLE_DEPTH,
        });
    }
    BundleAdd::decode(r, depth)
}
