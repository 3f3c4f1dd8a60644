//! Conversion between the codec's typed flow parts and the compact bytes
//! the flow table stores: this module's one job.
//!
//! The table keeps a flow's match as canonical OXM TLVs (see
//! [`crate::matching`]) and its instructions as their OpenFlow encoding,
//! because bytes cost a fraction of the memory of typed trees (measured in
//! `docs/benchmarks.md`). Statistics replies need typed values again; the
//! codec only decodes whole messages (its `Match` and instruction-list
//! decoders are crate-private), so this module wraps the stored bytes in a
//! synthetic `OFPT_FLOW_MOD` and lets the codec decode that.

use std::sync::OnceLock;

use openflow::{DecodeError, EncodeError, FlowMod, Instruction, Match, Message, OfpMessage, Version};

/// Bytes of the OpenFlow header plus the fixed part of `ofp_flow_mod`,
/// after which the match begins (OpenFlow 1.3, §7.3.4.1).
const FLOW_MOD_FIXED_LEN: usize = 48;
/// `ofp_match.type` for OXM matches.
const OFPMT_OXM: u16 = 1;

/// The header and fixed part of an empty OpenFlow 1.3 flow-mod, encoded
/// once by the codec.
fn flow_mod_prefix() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let msg = OfpMessage::new(
            Version::OF13,
            0,
            Message::FlowMod(FlowMod::add(0, 0, Match::default(), Vec::new())),
        );
        // An empty flow-mod always encodes; if it ever did not, an empty
        // prefix makes every later decode fail with an error, not a panic.
        let mut bytes = msg.to_bytes().unwrap_or_default();
        bytes.truncate(FLOW_MOD_FIXED_LEN);
        bytes
    })
}

/// Encodes instructions as they travel in a flow-mod.
pub fn encode_instructions(instructions: &[Instruction]) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(32);
    Instruction::encode_list(instructions, &mut out)?;
    Ok(out)
}

/// Decodes a stored flow (canonical match TLVs and encoded instructions)
/// back into typed values.
pub fn decode_flow(match_tlvs: &[u8], instructions: &[u8]) -> Result<(Match, Vec<Instruction>), DecodeError> {
    let prefix = flow_mod_prefix();
    let match_len = 4 + match_tlvs.len();
    let padded = match_len.div_ceil(8) * 8;
    let total = prefix.len() + padded + instructions.len();
    let too_long = || DecodeError::BadLength {
        what: "stored flow (longer than one OpenFlow message)",
        length: total,
    };
    let match_len16 = u16::try_from(match_len).map_err(|_| too_long())?;
    let total16 = u16::try_from(total).map_err(|_| too_long())?;
    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(&OFPMT_OXM.to_be_bytes());
    buf.extend_from_slice(&match_len16.to_be_bytes());
    buf.extend_from_slice(match_tlvs);
    buf.resize(prefix.len() + padded, 0);
    buf.extend_from_slice(instructions);
    if let Some(len) = buf.get_mut(2..4) {
        len.copy_from_slice(&total16.to_be_bytes());
    }
    match OfpMessage::decode(&buf)?.body {
        Message::FlowMod(fm) => Ok((fm.match_, fm.instructions)),
        _ => Err(DecodeError::InvalidValue {
            what: "stored flow (not a flow-mod)",
            value: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::canonicalize;
    use openflow::{Action, Masked, OxmField, PortNo};

    #[test]
    fn stored_flows_decode_to_what_was_stored() {
        let m = Match::new(vec![
            OxmField::EthType(0x0806),
            OxmField::Reg {
                index: 3,
                value: Masked::new(5, 0xff),
            },
        ]);
        let ins = vec![
            Instruction::ApplyActions(vec![Action::output(PortNo(7)), Action::resubmit_table(3)]),
            Instruction::GotoTable(9),
        ];
        let tlvs = canonicalize(&m).unwrap();
        let bytes = encode_instructions(&ins).unwrap();
        let (m2, ins2) = decode_flow(&tlvs, &bytes).unwrap();
        assert_eq!(m2, m);
        assert_eq!(ins2, ins);
        let (empty, none) = decode_flow(&[], &[]).unwrap();
        assert!(empty.fields.is_empty() && none.is_empty());
    }
}
