//! Match fields: OXM (OpenFlow Extensible Match) and the Nicira NXM fields
//! Open vSwitch carries in the same TLV format.
//!
//! A match is a list of TLVs, each a 32-bit header (class, field, has-mask,
//! length) followed by a value and, when has-mask is set, a mask of the same
//! width. [`OxmField`] is the typed form of one TLV; [`Match`] is the
//! `ofp_match` structure that carries them. A TLV whose class and field are
//! not known here (or that is known but shaped unexpectedly) decodes to
//! [`OxmField::Unknown`] with its bytes, and encodes back unchanged.

use std::fmt;
use std::net::Ipv4Addr;

use crate::types::{MacAddr, PortNo};
use crate::wire::{DecodeError, EncodeError, Put, Reader, padding_to_8};

/// OXM class of the OpenFlow 1.0-era Nicira fields (`NXM_OF_*`).
pub const OFPXMC_NXM_0: u16 = 0x0000;
/// OXM class of the Nicira extension fields (`NXM_NX_*`: registers,
/// conntrack, `conj_id`, ...).
pub const OFPXMC_NXM_1: u16 = 0x0001;
/// OXM class of the fields defined by the OpenFlow specification.
pub const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// OXM class whose TLVs carry a 32-bit experimenter id after the header.
pub const OFPXMC_EXPERIMENTER: u16 = 0xffff;

/// `ofp_match.type` for OXM matches, the only type OpenFlow 1.3 defines.
const OFPMT_OXM: u16 = 1;

/// The header of one OXM/NXM TLV.
///
/// Besides introducing match fields, headers name fields inside actions
/// (`reg_move`, `reg_load`, the zone source of `ct`), where they are kept
/// exactly as received so that re-encoding reproduces the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OxmHeader {
    /// OXM class (`OFPXMC_*`).
    pub class: u16,
    /// Field number within the class (7 bits).
    pub field: u8,
    /// Whether a mask follows the value.
    pub has_mask: bool,
    /// Length of the payload in bytes, including the experimenter id when
    /// there is one.
    pub length: u8,
    /// Experimenter id, present exactly when `class` is
    /// [`OFPXMC_EXPERIMENTER`].
    pub experimenter: Option<u32>,
}

impl OxmHeader {
    /// A header of a non-experimenter class.
    pub const fn new(class: u16, field: u8, has_mask: bool, length: u8) -> Self {
        OxmHeader {
            class,
            field,
            has_mask,
            length,
            experimenter: None,
        }
    }

    /// The preferred spelling of the field this header names: Open vSwitch
    /// reports fields in actions (`move`, `load`) with their old NXM
    /// headers even when they were sent as OXM ones. Headers without a
    /// known field stay as they are.
    pub fn canonical(self) -> OxmHeader {
        if self.experimenter.is_some() {
            return self;
        }
        match FieldId::from_class_field(self.class, self.field) {
            Some(id) => {
                let preferred = id.header();
                OxmHeader {
                    has_mask: self.has_mask,
                    length: if self.has_mask {
                        preferred.length * 2
                    } else {
                        preferred.length
                    },
                    ..preferred
                }
            }
            None => self,
        }
    }

    /// The first 32 bits as they appear on the wire.
    pub fn raw(&self) -> u32 {
        (u32::from(self.class) << 16)
            | (u32::from(self.field & 0x7f) << 9)
            | (u32::from(self.has_mask) << 8)
            | u32::from(self.length)
    }

    /// Bytes the header occupies: 4, or 8 with an experimenter id.
    pub fn wire_len(&self) -> usize {
        if self.experimenter.is_some() { 8 } else { 4 }
    }

    /// Length of value plus mask, excluding the experimenter id.
    pub fn payload_len(&self) -> usize {
        usize::from(self.length).saturating_sub(self.wire_len() - 4)
    }

    /// Decodes a header, including the experimenter id of experimenter
    /// classes.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let raw = r.u32("OXM header")?;
        let class = (raw >> 16) as u16;
        let mut header = OxmHeader {
            class,
            field: ((raw >> 9) & 0x7f) as u8,
            has_mask: raw & 0x100 != 0,
            length: raw as u8,
            experimenter: None,
        };
        if class == OFPXMC_EXPERIMENTER {
            if header.length < 4 {
                return Err(DecodeError::BadLength {
                    what: "experimenter OXM",
                    length: usize::from(header.length),
                });
            }
            header.experimenter = Some(r.u32("OXM experimenter id")?);
        }
        Ok(header)
    }

    /// Decodes a header that must name a whole field (no mask), as in
    /// actions; a zero header is refused.
    pub(crate) fn decode_field_ref(r: &mut Reader<'_>, what: &'static str) -> Result<Self, DecodeError> {
        let header = Self::decode(r)?;
        if header.raw() == 0 {
            return Err(DecodeError::InvalidValue { what, value: 0 });
        }
        Ok(header)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.raw());
        if let Some(id) = self.experimenter {
            out.put_u32(id);
        }
    }

    /// The field this header names, if it is one flowgate knows (either its
    /// OXM or its NXM spelling).
    pub fn field_id(&self) -> Option<FieldId> {
        FieldId::from_class_field(self.class, self.field)
    }

    /// Width of the named field in bits, when the field is known; otherwise
    /// derived from the header's length.
    pub fn bit_width(&self) -> u16 {
        let bytes = match self.field_id() {
            Some(id) => id.byte_len(),
            None if self.has_mask => self.payload_len() / 2,
            None => self.payload_len(),
        };
        (bytes * 8) as u16
    }
}

impl fmt::Display for OxmHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field_id() {
            Some(id) => f.write_str(id.name()),
            None => write!(f, "oxm({:#06x}:{})", self.class, self.field),
        }
    }
}

/// A bit range of a field, as used by `reg_load`, `ct(zone=...)` and
/// `output_reg` (the NXM "ofs_nbits" encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subfield {
    /// The field.
    pub field: OxmHeader,
    /// Offset of the first bit (10 bits on the wire).
    pub ofs: u16,
    /// Number of bits, 1 to 64.
    pub n_bits: u8,
}

impl Subfield {
    /// The whole of `field`, as `field[]`.
    pub fn whole(field: FieldId) -> Self {
        Subfield {
            field: field.header(),
            ofs: 0,
            n_bits: (field.byte_len() * 8).min(64) as u8,
        }
    }

    /// `field[ofs..ofs+n_bits-1]`.
    pub fn bits(field: FieldId, ofs: u16, n_bits: u8) -> Self {
        Subfield {
            field: field.header(),
            ofs,
            n_bits,
        }
    }

    /// The `ofs_nbits` encoding: `(ofs << 6) | (n_bits - 1)`.
    pub fn ofs_nbits(&self) -> u16 {
        (self.ofs << 6) | u16::from(self.n_bits.saturating_sub(1) & 0x3f)
    }

    pub(crate) fn from_ofs_nbits(field: OxmHeader, ofs_nbits: u16) -> Self {
        Subfield {
            field,
            ofs: ofs_nbits >> 6,
            n_bits: (ofs_nbits & 0x3f) as u8 + 1,
        }
    }
}

impl fmt::Display for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.ofs + u16::from(self.n_bits) - 1;
        if self.ofs == 0 && u16::from(self.n_bits) == self.field.bit_width() {
            write!(f, "{}[]", self.field)
        } else {
            write!(f, "{}[{}..{}]", self.field, self.ofs, last)
        }
    }
}

/// A value optionally restricted by a bitwise mask (1-bits must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Masked<T> {
    /// The value to match.
    pub value: T,
    /// The mask; `None` means every bit must match.
    pub mask: Option<T>,
}

impl<T> Masked<T> {
    /// Every bit of `value` must match.
    pub fn exact(value: T) -> Self {
        Masked { value, mask: None }
    }

    /// Bits of `value` selected by `mask` must match.
    pub fn new(value: T, mask: T) -> Self {
        Masked {
            value,
            mask: Some(mask),
        }
    }
}

impl<T> From<T> for Masked<T> {
    fn from(value: T) -> Self {
        Masked::exact(value)
    }
}

/// A fixed-width value that can appear in an OXM TLV.
trait OxmValue: Sized + Copy {
    const LEN: usize;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! int_oxm_value {
    ($($t:ty => $read:ident, $put:ident;)*) => {$(
        impl OxmValue for $t {
            const LEN: usize = std::mem::size_of::<$t>();
            fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$read("OXM value")
            }
            fn write(self, out: &mut Vec<u8>) {
                out.$put(self);
            }
        }
    )*};
}

int_oxm_value! {
    u8 => u8, put_u8;
    u16 => u16, put_u16;
    u32 => u32, put_u32;
    u64 => u64, put_u64;
}

impl OxmValue for PortNo {
    const LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u32("OXM port").map(PortNo)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.put_u32(self.0);
    }
}

impl OxmValue for MacAddr {
    const LEN: usize = 6;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array("OXM Ethernet address").map(MacAddr)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl OxmValue for Ipv4Addr {
    const LEN: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array("OXM IPv4 address").map(Ipv4Addr::from)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
}

/// How a known field's payload is shaped: exact-only, or maskable.
trait OxmPayload: Sized {
    const VALUE_LEN: usize;
    fn has_mask(&self) -> bool;
    fn write(&self, out: &mut Vec<u8>);
    /// `None` when the TLV does not have the shape this field expects.
    fn read(r: &mut Reader<'_>, has_mask: bool) -> Result<Option<Self>, DecodeError>;
}

impl<T: OxmValue> OxmPayload for Masked<T> {
    const VALUE_LEN: usize = T::LEN;
    fn has_mask(&self) -> bool {
        self.mask.is_some()
    }
    fn write(&self, out: &mut Vec<u8>) {
        self.value.write(out);
        if let Some(mask) = self.mask {
            mask.write(out);
        }
    }
    fn read(r: &mut Reader<'_>, has_mask: bool) -> Result<Option<Self>, DecodeError> {
        let value = T::read(r)?;
        let mask = if has_mask { Some(T::read(r)?) } else { None };
        Ok(Some(Masked { value, mask }))
    }
}

/// An exact-match-only field's payload is its bare value.
struct Exact<T>(T);

impl<T: OxmValue> OxmPayload for Exact<T> {
    const VALUE_LEN: usize = T::LEN;
    fn has_mask(&self) -> bool {
        false
    }
    fn write(&self, out: &mut Vec<u8>) {
        self.0.write(out);
    }
    fn read(r: &mut Reader<'_>, has_mask: bool) -> Result<Option<Self>, DecodeError> {
        if has_mask {
            return Ok(None);
        }
        T::read(r).map(|v| Some(Exact(v)))
    }
}

/// A well-formed TLV of a class or field this codec does not know, kept
/// verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownOxm {
    /// Its header.
    pub header: OxmHeader,
    /// Value and mask bytes (without the experimenter id).
    pub payload: Vec<u8>,
}

macro_rules! fields {
    ($(
        $(#[$doc:meta])*
        $variant:ident($kind:ident $ty:ty) = $class:ident : $field:literal, $name:literal;
    )*) => {
        /// The identity of a match field flowgate knows, independent of
        /// value, mask or OXM/NXM spelling.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FieldId {
            $( $(#[$doc])* $variant, )*
            /// Nicira register `NXM_NX_REG0`..`NXM_NX_REG15` (32 bits).
            Reg(u8),
        }

        /// One typed match field (an OXM/NXM TLV).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum OxmField {
            $( $(#[$doc])* $variant(fields!(@payload $kind $ty)), )*
            /// Nicira register `reg<index>` (index 0..=15), maskable.
            Reg {
                /// Register number, 0 to 15.
                index: u8,
                /// Value and mask.
                value: Masked<u32>,
            },
            /// A TLV this codec does not know, kept verbatim.
            Unknown(UnknownOxm),
        }

        impl FieldId {
            /// The class and field number used when encoding for
            /// OpenFlow 1.3 (OXM where the field has one, else NXM).
            fn class_field(self) -> (u16, u8) {
                match self {
                    $( FieldId::$variant => ($class, $field), )*
                    FieldId::Reg(i) => (OFPXMC_NXM_1, i),
                }
            }

            /// Width of the field's value in bytes.
            pub fn byte_len(self) -> usize {
                match self {
                    $( FieldId::$variant => <fields!(@payload_impl $kind $ty) as OxmPayload>::VALUE_LEN, )*
                    FieldId::Reg(_) => 4,
                }
            }

            /// The field's name, as `ovs-ofctl` spells it.
            pub fn name(self) -> &'static str {
                const REGS: [&str; 16] = [
                    "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7",
                    "reg8", "reg9", "reg10", "reg11", "reg12", "reg13", "reg14", "reg15",
                ];
                match self {
                    $( FieldId::$variant => $name, )*
                    FieldId::Reg(i) => REGS.get(usize::from(i)).copied().unwrap_or("reg?"),
                }
            }

            fn from_preferred(class: u16, field: u8) -> Option<FieldId> {
                match (class, field) {
                    $( ($class, $field) => Some(FieldId::$variant), )*
                    (OFPXMC_NXM_1, i @ 0..=15) => Some(FieldId::Reg(i)),
                    _ => None,
                }
            }
        }

        impl OxmField {
            /// The field's identity, `None` for unknown TLVs.
            pub fn field_id(&self) -> Option<FieldId> {
                match self {
                    $( OxmField::$variant(_) => Some(FieldId::$variant), )*
                    OxmField::Reg { index, .. } => Some(FieldId::Reg(*index)),
                    OxmField::Unknown(u) => u.header.field_id(),
                }
            }

            /// The TLV header this field encodes with.
            pub fn header(&self) -> OxmHeader {
                match self {
                    $( OxmField::$variant(v) => {
                        let p = fields!(@as_payload $kind v);
                        let len = <fields!(@payload_impl $kind $ty) as OxmPayload>::VALUE_LEN
                            * if p.has_mask() { 2 } else { 1 };
                        OxmHeader::new($class, $field, p.has_mask(), len as u8)
                    } )*
                    OxmField::Reg { index, value } => {
                        let mask = value.mask.is_some();
                        OxmHeader::new(OFPXMC_NXM_1, *index, mask, if mask { 8 } else { 4 })
                    }
                    OxmField::Unknown(u) => u.header,
                }
            }

            /// Appends the TLV (header, value, mask).
            pub fn encode(&self, out: &mut Vec<u8>) {
                self.header().encode(out);
                match self {
                    $( OxmField::$variant(v) => fields!(@as_payload $kind v).write(out), )*
                    OxmField::Reg { value, .. } => value.write(out),
                    OxmField::Unknown(u) => out.extend_from_slice(&u.payload),
                }
            }

            /// Decodes one TLV.
            pub(crate) fn decode(r: &mut Reader<'_>) -> Result<OxmField, DecodeError> {
                let header = OxmHeader::decode(r)?;
                let payload = r.take(header.payload_len(), "OXM payload")?;
                let known = match (header.class, header.field) {
                    $( ($class, $field) => {
                        type P = fields!(@payload_impl $kind $ty);
                        Self::decode_known::<P>(&header, payload)?.map(|p| OxmField::$variant(fields!(@from_payload $kind p)))
                    } )*
                    (OFPXMC_NXM_1, index @ 0..=15) => {
                        Self::decode_known::<Masked<u32>>(&header, payload)?.map(|value| OxmField::Reg { index, value })
                    }
                    _ => None,
                };
                Ok(known.unwrap_or_else(|| OxmField::Unknown(UnknownOxm { header, payload: payload.to_vec() })))
            }
        }
    };
    (@payload maskable $ty:ty) => { Masked<$ty> };
    (@payload exact $ty:ty) => { $ty };
    (@payload_impl maskable $ty:ty) => { Masked<$ty> };
    (@payload_impl exact $ty:ty) => { Exact<$ty> };
    (@as_payload maskable $v:ident) => { $v };
    (@as_payload exact $v:ident) => { Exact(*$v) };
    (@from_payload maskable $p:ident) => { $p };
    (@from_payload exact $p:ident) => { $p.0 };
}

const OFB: u16 = OFPXMC_OPENFLOW_BASIC;
const NX1: u16 = OFPXMC_NXM_1;

fields! {
    /// Ingress port (`OXM_OF_IN_PORT`).
    InPort(exact PortNo) = OFB:0, "in_port";
    /// Physical ingress port (`OXM_OF_IN_PHY_PORT`).
    InPhyPort(exact PortNo) = OFB:1, "in_phy_port";
    /// Metadata passed between tables (`OXM_OF_METADATA`).
    Metadata(maskable u64) = OFB:2, "metadata";
    /// Ethernet destination (`OXM_OF_ETH_DST`).
    EthDst(maskable MacAddr) = OFB:3, "eth_dst";
    /// Ethernet source (`OXM_OF_ETH_SRC`).
    EthSrc(maskable MacAddr) = OFB:4, "eth_src";
    /// Ethernet type (`OXM_OF_ETH_TYPE`).
    EthType(exact u16) = OFB:5, "eth_type";
    /// VLAN id with the `OFPVID_PRESENT` (0x1000) bit (`OXM_OF_VLAN_VID`).
    VlanVid(maskable u16) = OFB:6, "vlan_vid";
    /// VLAN priority (`OXM_OF_VLAN_PCP`).
    VlanPcp(exact u8) = OFB:7, "vlan_pcp";
    /// IP DSCP, 6 bits (`OXM_OF_IP_DSCP`).
    IpDscp(exact u8) = OFB:8, "ip_dscp";
    /// IP ECN, 2 bits (`OXM_OF_IP_ECN`).
    IpEcn(exact u8) = OFB:9, "ip_ecn";
    /// IP protocol (`OXM_OF_IP_PROTO`).
    IpProto(exact u8) = OFB:10, "ip_proto";
    /// IPv4 source (`OXM_OF_IPV4_SRC`).
    Ipv4Src(maskable Ipv4Addr) = OFB:11, "ipv4_src";
    /// IPv4 destination (`OXM_OF_IPV4_DST`).
    Ipv4Dst(maskable Ipv4Addr) = OFB:12, "ipv4_dst";
    /// TCP source port (`OXM_OF_TCP_SRC`; Open vSwitch allows a mask).
    TcpSrc(maskable u16) = OFB:13, "tcp_src";
    /// TCP destination port (`OXM_OF_TCP_DST`; Open vSwitch allows a mask).
    TcpDst(maskable u16) = OFB:14, "tcp_dst";
    /// UDP source port (`OXM_OF_UDP_SRC`; Open vSwitch allows a mask).
    UdpSrc(maskable u16) = OFB:15, "udp_src";
    /// UDP destination port (`OXM_OF_UDP_DST`; Open vSwitch allows a mask).
    UdpDst(maskable u16) = OFB:16, "udp_dst";
    /// ICMPv4 type (`OXM_OF_ICMPV4_TYPE`).
    Icmpv4Type(exact u8) = OFB:19, "icmpv4_type";
    /// ICMPv4 code (`OXM_OF_ICMPV4_CODE`).
    Icmpv4Code(exact u8) = OFB:20, "icmpv4_code";
    /// ARP opcode (`OXM_OF_ARP_OP`).
    ArpOp(exact u16) = OFB:21, "arp_op";
    /// ARP sender protocol address (`OXM_OF_ARP_SPA`).
    ArpSpa(maskable Ipv4Addr) = OFB:22, "arp_spa";
    /// ARP target protocol address (`OXM_OF_ARP_TPA`).
    ArpTpa(maskable Ipv4Addr) = OFB:23, "arp_tpa";
    /// ARP sender hardware address (`OXM_OF_ARP_SHA`).
    ArpSha(maskable MacAddr) = OFB:24, "arp_sha";
    /// ARP target hardware address (`OXM_OF_ARP_THA`).
    ArpTha(maskable MacAddr) = OFB:25, "arp_tha";
    /// Tunnel id (`OXM_OF_TUNNEL_ID`).
    TunnelId(maskable u64) = OFB:38, "tun_id";
    /// Conjunction id a `conjunction` action matched (`NXM_NX_CONJ_ID`).
    ConjId(exact u32) = NX1:37, "conj_id";
    /// Connection tracking state bits (`NXM_NX_CT_STATE`), see [`ct_state`].
    CtState(maskable u32) = NX1:105, "ct_state";
    /// Connection tracking zone (`NXM_NX_CT_ZONE`).
    CtZone(exact u16) = NX1:106, "ct_zone";
    /// Connection tracking mark (`NXM_NX_CT_MARK`).
    CtMark(maskable u32) = NX1:107, "ct_mark";
}

/// Nicira NXM_0 spellings of fields that also have an OXM spelling of the
/// same width; Open vSwitch uses them in actions such as `move`.
const NXM0_ALIASES: &[(u8, FieldId)] = &[
    (1, FieldId::EthDst),
    (2, FieldId::EthSrc),
    (3, FieldId::EthType),
    (6, FieldId::IpProto),
    (7, FieldId::Ipv4Src),
    (8, FieldId::Ipv4Dst),
    (9, FieldId::TcpSrc),
    (10, FieldId::TcpDst),
    (11, FieldId::UdpSrc),
    (12, FieldId::UdpDst),
    (13, FieldId::Icmpv4Type),
    (14, FieldId::Icmpv4Code),
    (15, FieldId::ArpOp),
    (16, FieldId::ArpSpa),
    (17, FieldId::ArpTpa),
];

impl FieldId {
    /// The field named by an OXM or NXM class and field number.
    pub fn from_class_field(class: u16, field: u8) -> Option<FieldId> {
        match (class, field) {
            (OFPXMC_NXM_0, f) => NXM0_ALIASES.iter().find(|(n, _)| *n == f).map(|(_, id)| *id),
            // NXM_NX_ARP_SHA / NXM_NX_ARP_THA
            (OFPXMC_NXM_1, 17) => Some(FieldId::ArpSha),
            (OFPXMC_NXM_1, 18) => Some(FieldId::ArpTha),
            (OFPXMC_NXM_1, 16) => Some(FieldId::TunnelId),
            (class, field) => FieldId::from_preferred(class, field),
        }
    }

    /// The unmasked header that names this field in actions.
    pub fn header(self) -> OxmHeader {
        let (class, field) = self.class_field();
        OxmHeader::new(class, field, false, self.byte_len() as u8)
    }
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bitwise operations on maskable values, for putting masked matches in the
/// canonical form Open vSwitch reports.
trait MaskBits: Copy + PartialEq {
    fn and(self, mask: Self) -> Self;
    fn all_ones() -> Self;
    fn zero() -> Self;
}

macro_rules! int_mask_bits {
    ($($t:ty),*) => {$(
        impl MaskBits for $t {
            fn and(self, mask: Self) -> Self { self & mask }
            fn all_ones() -> Self { <$t>::MAX }
            fn zero() -> Self { 0 }
        }
    )*};
}
int_mask_bits!(u16, u32, u64);

impl MaskBits for MacAddr {
    fn and(self, mask: Self) -> Self {
        MacAddr::from_u64(self.to_u64() & mask.to_u64())
    }
    fn all_ones() -> Self {
        MacAddr::BROADCAST
    }
    fn zero() -> Self {
        MacAddr::ZERO
    }
}

impl MaskBits for Ipv4Addr {
    fn and(self, mask: Self) -> Self {
        Ipv4Addr::from(u32::from(self) & u32::from(mask))
    }
    fn all_ones() -> Self {
        Ipv4Addr::BROADCAST
    }
    fn zero() -> Self {
        Ipv4Addr::UNSPECIFIED
    }
}

/// The canonical form of a masked value: no mask when every bit matters,
/// value bits outside the mask cleared; `None` when no bit matters (the field
/// matches anything and Open vSwitch drops it).
fn normalize<T: MaskBits>(m: Masked<T>) -> Option<Masked<T>> {
    match m.mask {
        None => Some(m),
        Some(mask) if mask == T::all_ones() => Some(Masked::exact(m.value)),
        Some(mask) if mask == T::zero() => None,
        Some(mask) => Some(Masked::new(m.value.and(mask), mask)),
    }
}

impl OxmField {
    /// This field in the canonical form Open vSwitch reports back for it:
    /// an all-ones mask becomes an exact match, value bits outside the mask
    /// are cleared, and a field with an all-zero mask disappears (`None`).
    pub fn normalized(self) -> Option<OxmField> {
        Some(match self {
            OxmField::Metadata(m) => OxmField::Metadata(normalize(m)?),
            OxmField::EthDst(m) => OxmField::EthDst(normalize(m)?),
            OxmField::EthSrc(m) => OxmField::EthSrc(normalize(m)?),
            OxmField::VlanVid(m) => OxmField::VlanVid(normalize(m)?),
            OxmField::Ipv4Src(m) => OxmField::Ipv4Src(normalize(m)?),
            OxmField::Ipv4Dst(m) => OxmField::Ipv4Dst(normalize(m)?),
            OxmField::TcpSrc(m) => OxmField::TcpSrc(normalize(m)?),
            OxmField::TcpDst(m) => OxmField::TcpDst(normalize(m)?),
            OxmField::UdpSrc(m) => OxmField::UdpSrc(normalize(m)?),
            OxmField::UdpDst(m) => OxmField::UdpDst(normalize(m)?),
            OxmField::ArpSpa(m) => OxmField::ArpSpa(normalize(m)?),
            OxmField::ArpTpa(m) => OxmField::ArpTpa(normalize(m)?),
            OxmField::ArpSha(m) => OxmField::ArpSha(normalize(m)?),
            OxmField::ArpTha(m) => OxmField::ArpTha(normalize(m)?),
            OxmField::TunnelId(m) => OxmField::TunnelId(normalize(m)?),
            OxmField::CtState(m) => OxmField::CtState(normalize(m)?),
            OxmField::CtMark(m) => OxmField::CtMark(normalize(m)?),
            OxmField::Reg { index, value } => OxmField::Reg {
                index,
                value: normalize(value)?,
            },
            other => other,
        })
    }
}

impl OxmField {
    fn decode_known<P: OxmPayload>(header: &OxmHeader, payload: &[u8]) -> Result<Option<P>, DecodeError> {
        let expected = P::VALUE_LEN * if header.has_mask { 2 } else { 1 };
        if payload.len() != expected {
            return Ok(None);
        }
        P::read(&mut Reader::new(payload), header.has_mask)
    }

    /// Bytes the TLV occupies on the wire.
    pub fn wire_len(&self) -> usize {
        let header = self.header();
        header.wire_len() + header.payload_len()
    }
}

impl fmt::Display for OxmField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn masked<T: fmt::Display>(f: &mut fmt::Formatter<'_>, name: &str, m: &Masked<T>) -> fmt::Result {
            match &m.mask {
                Some(mask) => write!(f, "{name}={}/{}", m.value, mask),
                None => write!(f, "{name}={}", m.value),
            }
        }
        fn masked_hex<T: fmt::LowerHex>(
            f: &mut fmt::Formatter<'_>,
            name: &str,
            m: &Masked<T>,
        ) -> fmt::Result {
            match &m.mask {
                Some(mask) => write!(f, "{name}={:#x}/{:#x}", m.value, mask),
                None => write!(f, "{name}={:#x}", m.value),
            }
        }
        let name = self.field_id().map(FieldId::name).unwrap_or("unknown");
        match self {
            OxmField::InPort(p) | OxmField::InPhyPort(p) => write!(f, "{name}={p}"),
            OxmField::Metadata(m) | OxmField::TunnelId(m) => masked_hex(f, name, m),
            OxmField::EthDst(m) | OxmField::EthSrc(m) | OxmField::ArpSha(m) | OxmField::ArpTha(m) => {
                masked(f, name, m)
            }
            OxmField::EthType(v) | OxmField::ArpOp(v) => write!(f, "{name}={v:#06x}"),
            OxmField::VlanVid(m)
            | OxmField::TcpSrc(m)
            | OxmField::TcpDst(m)
            | OxmField::UdpSrc(m)
            | OxmField::UdpDst(m) => masked(f, name, m),
            OxmField::VlanPcp(v)
            | OxmField::IpDscp(v)
            | OxmField::IpEcn(v)
            | OxmField::IpProto(v)
            | OxmField::Icmpv4Type(v)
            | OxmField::Icmpv4Code(v) => write!(f, "{name}={v}"),
            OxmField::Ipv4Src(m) | OxmField::Ipv4Dst(m) | OxmField::ArpSpa(m) | OxmField::ArpTpa(m) => {
                masked(f, name, m)
            }
            OxmField::ConjId(v) => write!(f, "{name}={v}"),
            OxmField::CtState(m) => match m.mask {
                Some(mask) => write!(f, "{name}={}", ct_state::format(m.value, mask)),
                None => write!(f, "{name}={}", ct_state::format(m.value, u32::MAX)),
            },
            OxmField::CtZone(v) => write!(f, "{name}={v}"),
            OxmField::CtMark(m) | OxmField::Reg { value: m, .. } => masked_hex(f, name, m),
            OxmField::Unknown(u) => {
                write!(f, "{}=0x", u.header)?;
                u.payload.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Bits of the `ct_state` field (`CS_*` in Open vSwitch).
pub mod ct_state {
    /// Beginning of a new connection.
    pub const NEW: u32 = 1 << 0;
    /// Part of an existing connection.
    pub const EST: u32 = 1 << 1;
    /// Related to an existing connection (e.g. ICMP errors).
    pub const REL: u32 = 1 << 2;
    /// Flow is in the reply direction.
    pub const RPL: u32 = 1 << 3;
    /// Could not be tracked or is invalid.
    pub const INV: u32 = 1 << 4;
    /// The packet has gone through conntrack.
    pub const TRK: u32 = 1 << 5;
    /// Source address NATed.
    pub const SNAT: u32 = 1 << 6;
    /// Destination address NATed.
    pub const DNAT: u32 = 1 << 7;

    const NAMES: [(u32, &str); 8] = [
        (NEW, "new"),
        (EST, "est"),
        (REL, "rel"),
        (RPL, "rpl"),
        (INV, "inv"),
        (TRK, "trk"),
        (SNAT, "snat"),
        (DNAT, "dnat"),
    ];

    /// `+trk+est-new` style rendering of a value and mask.
    pub fn format(value: u32, mask: u32) -> String {
        let mut s = String::new();
        for (bit, name) in NAMES {
            if mask & bit != 0 {
                s.push(if value & bit != 0 { '+' } else { '-' });
                s.push_str(name);
            }
        }
        if s.is_empty() { "0".to_string() } else { s }
    }
}

/// The `ofp_match` structure: an OXM match carrying a list of fields.
///
/// Field order is kept as given (Open vSwitch requires prerequisites such as
/// `eth_type` before `ipv4_src`, and reports fields in its own order).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    /// The fields, in wire order. Empty matches every packet.
    pub fields: Vec<OxmField>,
}

impl Match {
    /// A match on exactly `fields`.
    pub fn new(fields: Vec<OxmField>) -> Self {
        Match { fields }
    }

    /// Appends the `ofp_match` header, the fields and padding to 8 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_u16(OFPMT_OXM);
        out.put_u16(0);
        for field in &self.fields {
            field.encode(out);
        }
        out.patch_len16(start + 2, start, "ofp_match")?;
        out.pad_to_8(start);
        Ok(())
    }

    /// The canonical form of this match, for comparing what a controller
    /// wants with what a switch reports: every field
    /// [normalized](OxmField::normalized) and the fields sorted by header
    /// (Open vSwitch reports them in its own order).
    pub fn canonical(self) -> Match {
        let mut fields: Vec<OxmField> = self.fields.into_iter().filter_map(OxmField::normalized).collect();
        fields.sort_by_key(|f| {
            let h = f.header();
            (h.class, h.field, h.experimenter)
        });
        Match { fields }
    }

    /// Bytes the match occupies including padding.
    pub fn wire_len(&self) -> usize {
        let len = 4 + self.fields.iter().map(OxmField::wire_len).sum::<usize>();
        len + padding_to_8(len)
    }

    /// Decodes an `ofp_match` (header, fields, padding) that fills `bytes`
    /// exactly, as written by [`Match::encode`].
    pub fn decode_bytes(bytes: &[u8]) -> Result<Match, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = Match::decode(&mut r)?;
        r.finish("ofp_match")?;
        Ok(m)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Match, DecodeError> {
        let match_type = r.u16("ofp_match type")?;
        let length = usize::from(r.u16("ofp_match length")?);
        if match_type != OFPMT_OXM {
            return Err(DecodeError::InvalidValue {
                what: "ofp_match type (OpenFlow 1.3 requires OXM)",
                value: u64::from(match_type),
            });
        }
        if length < 4 {
            return Err(DecodeError::BadLength {
                what: "ofp_match",
                length,
            });
        }
        let mut body = r.sub(length - 4, "ofp_match fields")?;
        r.skip(padding_to_8(length), "ofp_match padding")?;
        let mut fields = Vec::new();
        while !body.is_empty() {
            fields.push(OxmField::decode(&mut body)?);
        }
        Ok(Match { fields })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fields.is_empty() {
            return f.write_str("any");
        }
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{field}")?;
        }
        Ok(())
    }
}

impl FromIterator<OxmField> for Match {
    fn from_iter<I: IntoIterator<Item = OxmField>>(iter: I) -> Self {
        Match {
            fields: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(field: OxmField) -> Vec<u8> {
        let mut out = Vec::new();
        field.encode(&mut out);
        assert_eq!(out.len(), field.wire_len());
        let mut r = Reader::new(&out);
        assert_eq!(OxmField::decode(&mut r).unwrap(), field);
        assert!(r.is_empty());
        out
    }

    #[test]
    fn basic_field_bytes() {
        // OXM_OF_IPV4_SRC with mask: class 0x8000, field 11, hasmask, len 8.
        let bytes = round_trip(OxmField::Ipv4Src(Masked::new(
            Ipv4Addr::new(10, 0, 0, 0),
            Ipv4Addr::new(255, 0, 0, 0),
        )));
        assert_eq!(bytes, [0x80, 0x00, 0x17, 0x08, 10, 0, 0, 0, 255, 0, 0, 0]);
        let bytes = round_trip(OxmField::InPort(PortNo(3)));
        assert_eq!(bytes, [0x80, 0x00, 0x00, 0x04, 0, 0, 0, 3]);
    }

    #[test]
    fn nicira_field_bytes() {
        // NXM_NX_REG3 = class 1, field 3; NXM_NX_CT_STATE = class 1, field 105.
        let bytes = round_trip(OxmField::Reg {
            index: 3,
            value: Masked::new(5, 0xff),
        });
        assert_eq!(&bytes[..4], &[0x00, 0x01, 0x07, 0x08]);
        let bytes = round_trip(OxmField::CtState(Masked::new(
            ct_state::TRK | ct_state::EST,
            ct_state::TRK | ct_state::EST,
        )));
        assert_eq!(&bytes[..4], &[0x00, 0x01, 0xd3, 0x08]);
        let bytes = round_trip(OxmField::ConjId(7));
        assert_eq!(&bytes[..4], &[0x00, 0x01, 0x4a, 0x04]);
    }

    #[test]
    fn unknown_and_misshapen_fields_are_kept() {
        // IPv6 source (field 26) is not typed here.
        let raw = [
            0x80, 0x00, 0x34, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ];
        let field = OxmField::decode(&mut Reader::new(&raw)).unwrap();
        assert!(matches!(field, OxmField::Unknown(_)));
        let mut out = Vec::new();
        field.encode(&mut out);
        assert_eq!(out, raw);
        // ip_proto with a mask is not a shape OpenFlow allows: kept verbatim.
        let raw = [0x80, 0x00, 0x15, 0x02, 6, 0xff];
        let field = OxmField::decode(&mut Reader::new(&raw)).unwrap();
        assert!(matches!(field, OxmField::Unknown(_)));
        // Experimenter class with its id.
        let raw = [0xff, 0xff, 0x00, 0x06, 0x00, 0x00, 0x23, 0x20, 0xab, 0xcd];
        let field = OxmField::decode(&mut Reader::new(&raw)).unwrap();
        let mut out = Vec::new();
        field.encode(&mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn truncated_field_is_an_error() {
        let raw = [0x80, 0x00, 0x17, 0x08, 10, 0, 0];
        assert!(matches!(
            OxmField::decode(&mut Reader::new(&raw)),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn match_is_padded_to_eight() {
        let m = Match::new(vec![OxmField::EthType(0x0800)]);
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        assert_eq!(out, [0, 1, 0, 10, 0x80, 0, 0x0a, 2, 8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(m.wire_len(), 16);
        let mut r = Reader::new(&out);
        assert_eq!(Match::decode(&mut r).unwrap(), m);
        assert!(r.is_empty());
    }

    #[test]
    fn field_ids_accept_nxm_spellings() {
        assert_eq!(FieldId::from_class_field(0, 2), Some(FieldId::EthSrc));
        assert_eq!(FieldId::from_class_field(0x8000, 4), Some(FieldId::EthSrc));
        assert_eq!(FieldId::from_class_field(1, 7), Some(FieldId::Reg(7)));
        assert_eq!(FieldId::Reg(7).name(), "reg7");
        assert_eq!(Subfield::bits(FieldId::Reg(0), 0, 16).to_string(), "reg0[0..15]");
        assert_eq!(Subfield::whole(FieldId::EthSrc).to_string(), "eth_src[]");
    }

    #[test]
    fn canonical_form_is_what_open_vswitch_reports() {
        let m = Match::new(vec![
            OxmField::Ipv4Src(Masked::new(
                Ipv4Addr::new(10, 1, 2, 3),
                Ipv4Addr::new(255, 0, 0, 0),
            )),
            OxmField::EthType(0x0800),
            OxmField::Reg {
                index: 1,
                value: Masked::new(5, u32::MAX),
            },
            OxmField::TcpDst(Masked::new(80, 0)),
        ]);
        assert_eq!(
            m.canonical().fields,
            vec![
                OxmField::Reg {
                    index: 1,
                    value: Masked::exact(5)
                },
                OxmField::EthType(0x0800),
                OxmField::Ipv4Src(Masked::new(
                    Ipv4Addr::new(10, 0, 0, 0),
                    Ipv4Addr::new(255, 0, 0, 0)
                )),
            ]
        );
    }

    #[test]
    fn ct_state_renders_like_ovs() {
        assert_eq!(
            ct_state::format(
                ct_state::TRK | ct_state::EST,
                ct_state::TRK | ct_state::EST | ct_state::NEW
            ),
            "-new+est+trk"
        );
    }
}
