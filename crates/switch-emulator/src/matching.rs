//! Matches as the flow table sees them: this module's one job is to turn a
//! decoded [`Match`] into canonical bytes (so that equal matches are equal
//! byte strings whatever order or spelling the controller used), and to
//! answer the three questions OpenFlow asks of two matches: are they the
//! same rule, does one loosely cover the other, and can they both match one
//! packet.
//!
//! The canonical form is the concatenation of the match's OXM TLVs (header,
//! experimenter id when there is one, value, mask), normalized the way Open
//! vSwitch reports them: a mask of all ones becomes an exact match, a mask of
//! all zeros drops the field, value bits outside the mask are cleared, and
//! fields are sorted in the order Open vSwitch writes them (`nx_put_raw`),
//! with fields it would not know sorted last by their bytes. Keeping bytes
//! rather than typed trees is what keeps a million flows in a few hundred
//! megabytes.

use openflow::{FieldId, Match, OxmField};
use thiserror::Error;

/// OXM class of the fields defined by the OpenFlow specification.
const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// OXM class whose TLVs carry a 32-bit experimenter id after the header.
const OFPXMC_EXPERIMENTER: u16 = 0xffff;
/// `OXM_OF_VLAN_VID` field number; its meaningful bits are only 13.
const OXM_VLAN_VID: u8 = 6;
/// `OFPVID_PRESENT | 0xfff`: the bits of `vlan_vid` Open vSwitch keeps.
const VLAN_VID_BITS: u16 = 0x1fff;

/// Why a match is refused, with the Open vSwitch error it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MatchError {
    /// A field's prerequisite (for example `eth_type=0x0800` before
    /// `ipv4_src`) is missing: `OFPBMC_BAD_PREREQ`.
    #[error("match field {0} lacks its prerequisite")]
    BadPrereq(&'static str),
    /// The same field appears twice: `OFPBMC_DUP_FIELD`.
    #[error("match field appears more than once")]
    DupField,
    /// A masked field has value bits set where its mask is zero:
    /// `OFPBMC_BAD_WILDCARDS`.
    #[error("match value has bits outside its mask")]
    BadWildcards,
}

impl MatchError {
    /// The OpenFlow error name Open vSwitch sends for this problem.
    pub fn error_name(self) -> &'static str {
        match self {
            MatchError::BadPrereq(_) => "OFPBMC_BAD_PREREQ",
            MatchError::DupField => "OFPBMC_DUP_FIELD",
            MatchError::BadWildcards => "OFPBMC_BAD_WILDCARDS",
        }
    }
}

/// One TLV of a canonical match, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    /// Class and field number (`header >> 9`): the field's identity,
    /// independent of mask and length.
    field: u32,
    /// Experimenter id, for the experimenter class.
    experimenter: Option<u32>,
    /// The value.
    value: &'a [u8],
    /// The mask, or `None` for an exact match.
    mask: Option<&'a [u8]>,
    /// The whole TLV, for re-emitting it.
    raw: &'a [u8],
}

impl Tlv<'_> {
    fn same_field(&self, other: &Tlv<'_>) -> bool {
        self.field == other.field && self.experimenter == other.experimenter
    }

    /// Mask byte `i` (all ones when the field is exact).
    fn mask_at(&self, i: usize) -> u8 {
        self.mask.and_then(|m| m.get(i).copied()).unwrap_or(0xff)
    }
}

/// Splits canonical match bytes into TLVs. The bytes were produced by
/// [`canonicalize`] from the codec's own encoding, so malformed input means
/// a bug; it ends the iteration rather than panicking.
fn tlvs(bytes: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let header = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let class = (header >> 16) as u16;
        let has_mask = header & 0x100 != 0;
        let len = (header & 0xff) as usize;
        let (experimenter, payload_start, payload_len) = if class == OFPXMC_EXPERIMENTER {
            let id = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?);
            (Some(id), 8, len.checked_sub(4)?)
        } else {
            (None, 4, len)
        };
        let end = payload_start + payload_len;
        let payload = rest.get(payload_start..end)?;
        let (value, mask) = if has_mask {
            let (v, m) = payload.split_at(payload_len / 2);
            (v, Some(m))
        } else {
            (payload, None)
        };
        let raw = rest.get(..end)?;
        rest = rest.get(end..)?;
        Some(Tlv {
            field: header >> 9,
            experimenter,
            value,
            mask,
            raw,
        })
    })
}

/// Where Open vSwitch puts a field when it writes a match (`nx_put_raw`),
/// so that canonical matches list fields in the order `ovs-ofctl` shows.
fn ovs_rank(field: &OxmField) -> u16 {
    let Some(id) = field.field_id() else {
        return u16::MAX;
    };
    match id {
        FieldId::ConjId => 0,
        FieldId::InPort => 1,
        FieldId::InPhyPort => 2,
        FieldId::EthSrc => 3,
        FieldId::EthDst => 4,
        FieldId::EthType => 5,
        FieldId::VlanVid => 6,
        FieldId::VlanPcp => 7,
        FieldId::Ipv4Src => 8,
        FieldId::Ipv4Dst => 9,
        FieldId::IpDscp => 10,
        FieldId::IpEcn => 11,
        FieldId::IpProto => 12,
        FieldId::TcpSrc => 13,
        FieldId::TcpDst => 14,
        FieldId::UdpSrc => 15,
        FieldId::UdpDst => 16,
        FieldId::Icmpv4Type => 17,
        FieldId::Icmpv4Code => 18,
        FieldId::ArpOp => 19,
        FieldId::ArpSpa => 20,
        FieldId::ArpTpa => 21,
        FieldId::ArpSha => 22,
        FieldId::ArpTha => 23,
        FieldId::TunnelId => 24,
        FieldId::Reg(i) => 25 + u16::from(i),
        FieldId::CtState => 50,
        FieldId::CtZone => 51,
        FieldId::CtMark => 52,
        FieldId::Metadata => 60,
    }
}

/// Checks the prerequisites Open vSwitch enforces for OpenFlow 1.3 matches
/// (`mf_are_prereqs_ok`), for the fields the codec types. As in Open
/// vSwitch's OXM decoder, a field's prerequisites must come *before* it:
/// `ipv4_src` after `eth_type=0x0800` is fine, before it is refused.
fn check_prerequisites(m: &Match) -> Result<(), MatchError> {
    let mut eth_type = None;
    let mut ip_proto = None;
    let mut vlan_present = false;
    for field in &m.fields {
        let is_ipv4 = eth_type == Some(0x0800);
        let is_ip = is_ipv4 || eth_type == Some(0x86dd);
        let is_arp = eth_type == Some(0x0806) || eth_type == Some(0x8035);
        if let Some(id) = field.field_id() {
            let ok = match id {
                FieldId::Ipv4Src | FieldId::Ipv4Dst => is_ipv4,
                FieldId::IpDscp | FieldId::IpEcn | FieldId::IpProto => is_ip,
                FieldId::TcpSrc | FieldId::TcpDst => is_ip && ip_proto == Some(6),
                FieldId::UdpSrc | FieldId::UdpDst => is_ip && ip_proto == Some(17),
                FieldId::Icmpv4Type | FieldId::Icmpv4Code => is_ipv4 && ip_proto == Some(1),
                FieldId::ArpOp | FieldId::ArpSpa | FieldId::ArpTpa | FieldId::ArpSha | FieldId::ArpTha => {
                    is_arp
                }
                FieldId::VlanPcp => vlan_present,
                _ => true,
            };
            if !ok {
                return Err(MatchError::BadPrereq(id.name()));
            }
        }
        match field {
            OxmField::EthType(t) => eth_type = Some(*t),
            OxmField::IpProto(p) => ip_proto = Some(*p),
            // A VLAN tag is present when the OFPVID_PRESENT bit is matched
            // set.
            OxmField::VlanVid(v) => {
                vlan_present = v.value & 0x1000 != 0 && v.mask.is_none_or(|mask| mask & 0x1000 != 0);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Normalizes one encoded TLV in place of `out` (appending), the way Open
/// vSwitch stores masks: returns `false` if the field vanished (zero mask).
fn push_normalized(tlv: &Tlv<'_>, out: &mut Vec<u8>) -> bool {
    let Some(mask) = tlv.mask else {
        out.extend_from_slice(tlv.raw);
        return true;
    };
    let is_vlan_vid = tlv.experimenter.is_none() && tlv.field == vlan_vid_field();
    let mut value: Vec<u8> = tlv.value.iter().zip(mask).map(|(v, m)| v & m).collect();
    let mut mask = mask.to_vec();
    if is_vlan_vid && let (&[v0, v1], &[m0, m1]) = (value.as_slice(), mask.as_slice()) {
        // Only 13 bits of vlan_vid exist; a mask covering all of them is an
        // exact match to Open vSwitch.
        let m = u16::from_be_bytes([m0, m1]) & VLAN_VID_BITS;
        let v = u16::from_be_bytes([v0, v1]) & m;
        mask = if m == VLAN_VID_BITS {
            vec![0xff, 0xff]
        } else {
            m.to_be_bytes().to_vec()
        };
        value = v.to_be_bytes().to_vec();
    }
    if mask.iter().all(|&b| b == 0) {
        return false;
    }
    let exact = mask.iter().all(|&b| b == 0xff);
    let payload_len = if exact { value.len() } else { value.len() * 2 };
    let ext = usize::from(tlv.experimenter.is_some()) * 4;
    let header = (tlv.field << 9) | (u32::from(!exact) << 8) | (payload_len + ext) as u32;
    out.extend_from_slice(&header.to_be_bytes());
    if let Some(id) = tlv.experimenter {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&value);
    if !exact {
        out.extend_from_slice(&mask);
    }
    true
}

const fn vlan_vid_field() -> u32 {
    ((OFPXMC_OPENFLOW_BASIC as u32) << 7) | OXM_VLAN_VID as u32
}

/// The canonical bytes of `m` (see the module documentation), after
/// checking duplicates and prerequisites as Open vSwitch does.
pub fn canonicalize(m: &Match) -> Result<Box<[u8]>, MatchError> {
    check_prerequisites(m)?;
    let mut entries: Vec<(u16, Vec<u8>)> = Vec::with_capacity(m.fields.len());
    let mut scratch = Vec::with_capacity(32);
    let mut seen: Vec<(u32, Option<u32>)> = Vec::with_capacity(m.fields.len());
    for field in &m.fields {
        scratch.clear();
        field.encode(&mut scratch);
        let Some(tlv) = tlvs(&scratch).next() else {
            continue;
        };
        if seen.contains(&(tlv.field, tlv.experimenter)) {
            return Err(MatchError::DupField);
        }
        seen.push((tlv.field, tlv.experimenter));
        // OpenFlow 1.2+ forbids value bits outside the mask; Open vSwitch
        // refuses them rather than clearing them.
        if let Some(mask) = tlv.mask
            && tlv.value.iter().zip(mask).any(|(v, m)| v & !m != 0)
        {
            return Err(MatchError::BadWildcards);
        }
        let mut normalized = Vec::with_capacity(scratch.len());
        if push_normalized(&tlv, &mut normalized) {
            entries.push((ovs_rank(field), normalized));
        }
    }
    entries.sort();
    Ok(entries.into_iter().flat_map(|(_, bytes)| bytes).collect())
}

/// Whether a flow whose canonical match is `rule` is selected by the loose
/// criteria `criteria` (OpenFlow's non-strict modify, delete and
/// statistics): the rule must be at least as specific as the criteria on
/// every field the criteria name, and agree with them there.
pub fn covers(criteria: &[u8], rule: &[u8]) -> bool {
    tlvs(criteria).all(|c| {
        tlvs(rule).any(|r| {
            r.same_field(&c)
                && r.value.len() == c.value.len()
                && (0..c.value.len()).all(|i| {
                    let cm = c.mask_at(i);
                    r.mask_at(i) & cm == cm && (r.value[i] ^ c.value[i]) & cm == 0
                })
        })
    })
}

/// Whether some packet could match both `a` and `b` (what `CHECK_OVERLAP`
/// refuses between flows of equal priority): they conflict only on a field
/// both constrain, with bits both care about set differently.
pub fn overlaps(a: &[u8], b: &[u8]) -> bool {
    tlvs(a).all(|x| {
        tlvs(b).filter(|y| y.same_field(&x)).all(|y| {
            y.value.len() != x.value.len()
                || (0..x.value.len()).all(|i| (x.value[i] ^ y.value[i]) & x.mask_at(i) & y.mask_at(i) == 0)
        })
    })
}

/// The number of fields in a canonical match.
pub fn field_count(bytes: &[u8]) -> usize {
    tlvs(bytes).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::{Masked, PortNo};
    use std::net::Ipv4Addr;

    fn reg(index: u8, value: u32, mask: Option<u32>) -> OxmField {
        OxmField::Reg {
            index,
            value: Masked { value, mask },
        }
    }

    fn canon(fields: Vec<OxmField>) -> Box<[u8]> {
        canonicalize(&Match::new(fields)).unwrap()
    }

    #[test]
    fn order_and_redundant_masks_do_not_matter() {
        let a = canon(vec![
            OxmField::EthType(0x0800),
            OxmField::Ipv4Src(Masked::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::BROADCAST)),
            OxmField::InPort(PortNo(3)),
        ]);
        let b = canon(vec![
            OxmField::InPort(PortNo(3)),
            OxmField::EthType(0x0800),
            OxmField::Ipv4Src(Masked::exact(Ipv4Addr::new(10, 0, 0, 1))),
        ]);
        assert_eq!(a, b);
        assert_eq!(field_count(&a), 3);
        // A zero mask drops the field; value bits outside a mask are refused.
        assert_eq!(canon(vec![reg(0, 0, Some(0))]), canon(vec![]));
        assert_eq!(
            canonicalize(&Match::new(vec![reg(0, 0xff, Some(0x0f))])),
            Err(MatchError::BadWildcards)
        );
    }

    #[test]
    fn prerequisites_and_duplicates_are_refused() {
        let tcp = OxmField::TcpDst(Masked::exact(80));
        assert_eq!(
            canonicalize(&Match::new(vec![tcp.clone()])),
            Err(MatchError::BadPrereq("tcp_dst"))
        );
        assert!(
            canonicalize(&Match::new(vec![
                OxmField::EthType(0x0800),
                OxmField::IpProto(6),
                tcp.clone()
            ]))
            .is_ok()
        );
        // Prerequisites must come first.
        assert_eq!(
            canonicalize(&Match::new(vec![
                OxmField::IpProto(6),
                OxmField::EthType(0x0800),
                tcp
            ])),
            Err(MatchError::BadPrereq("ip_proto"))
        );
        assert_eq!(
            canonicalize(&Match::new(vec![reg(1, 1, None), reg(1, 2, None)])),
            Err(MatchError::DupField)
        );
    }

    #[test]
    fn loose_cover_and_overlap() {
        let any = canon(vec![]);
        let r0_2 = canon(vec![reg(0, 2, None)]);
        let r0_2_r1_3 = canon(vec![reg(0, 2, None), reg(1, 3, None)]);
        let r0_even = canon(vec![reg(0, 0, Some(1))]);
        assert!(covers(&any, &r0_2));
        assert!(covers(&r0_2, &r0_2_r1_3));
        assert!(!covers(&r0_2_r1_3, &r0_2));
        assert!(covers(&r0_even, &r0_2));
        assert!(
            !covers(&r0_2, &r0_even),
            "a wider rule is not selected by a narrower criterion"
        );
        assert!(overlaps(&r0_even, &r0_2));
        assert!(!overlaps(&r0_even, &canon(vec![reg(0, 3, None)])));
        assert!(overlaps(&any, &r0_2));
    }
}
