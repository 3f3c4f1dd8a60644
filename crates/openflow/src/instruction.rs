//! Instructions: what a flow entry does with a matching packet (OpenFlow
//! 1.3 §7.2.4). Each is a TLV padded to 8 bytes; unknown types are kept
//! verbatim as [`Instruction::Unknown`].

use crate::action::Action;
use crate::wire::{DecodeError, EncodeError, Put, Reader};

const OFPIT_GOTO_TABLE: u16 = 1;
const OFPIT_WRITE_METADATA: u16 = 2;
const OFPIT_WRITE_ACTIONS: u16 = 3;
const OFPIT_APPLY_ACTIONS: u16 = 4;
const OFPIT_CLEAR_ACTIONS: u16 = 5;
const OFPIT_METER: u16 = 6;

/// One instruction of a flow entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// Continue matching in a later table.
    GotoTable(u8),
    /// Write `metadata` under `mask` into the metadata field.
    WriteMetadata {
        /// Value to write.
        metadata: u64,
        /// Bits to write.
        mask: u64,
    },
    /// Merge actions into the action set, executed when the pipeline ends.
    WriteActions(Vec<Action>),
    /// Apply actions immediately, in order.
    ApplyActions(Vec<Action>),
    /// Empty the action set.
    ClearActions,
    /// Send the packet through a meter.
    Meter(u32),
    /// An instruction type this codec does not type, kept verbatim.
    Unknown {
        /// `ofp_instruction.type`.
        instruction_type: u16,
        /// Bytes after the 4-byte type/length header.
        body: Vec<u8>,
    },
}

impl Instruction {
    /// The canonical form of this instruction: its actions
    /// [canonical](Action::canonical).
    pub fn canonical(self) -> Instruction {
        match self {
            Instruction::ApplyActions(actions) => {
                Instruction::ApplyActions(actions.into_iter().map(Action::canonical).collect())
            }
            Instruction::WriteActions(actions) => {
                Instruction::WriteActions(actions.into_iter().map(Action::canonical).collect())
            }
            other => other,
        }
    }

    /// Appends one instruction.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        match self {
            Instruction::GotoTable(table) => {
                out.put_u16(OFPIT_GOTO_TABLE);
                out.put_u16(8);
                out.put_u8(*table);
                out.put_zeros(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                out.put_u16(OFPIT_WRITE_METADATA);
                out.put_u16(24);
                out.put_zeros(4);
                out.put_u64(*metadata);
                out.put_u64(*mask);
            }
            Instruction::WriteActions(actions) | Instruction::ApplyActions(actions) => {
                let t = if matches!(self, Instruction::WriteActions(_)) {
                    OFPIT_WRITE_ACTIONS
                } else {
                    OFPIT_APPLY_ACTIONS
                };
                out.put_u16(t);
                out.put_u16(0);
                out.put_zeros(4);
                Action::encode_list(actions, out)?;
                out.patch_len16(start + 2, start, "actions instruction")?;
            }
            Instruction::ClearActions => {
                out.put_u16(OFPIT_CLEAR_ACTIONS);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Instruction::Meter(id) => {
                out.put_u16(OFPIT_METER);
                out.put_u16(8);
                out.put_u32(*id);
            }
            Instruction::Unknown {
                instruction_type,
                body,
            } => {
                out.put_u16(*instruction_type);
                out.put_u16(0);
                out.extend_from_slice(body);
                out.patch_len16(start + 2, start, "instruction")?;
            }
        }
        Ok(())
    }

    /// Encodes a list of instructions back to back.
    pub fn encode_list(instructions: &[Instruction], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        instructions.iter().try_for_each(|i| i.encode(out))
    }

    /// Decodes instructions that fill `bytes` exactly, as written by
    /// [`Instruction::encode_list`].
    pub fn decode_list_bytes(bytes: &[u8]) -> Result<Vec<Instruction>, DecodeError> {
        Instruction::decode_list(&mut Reader::new(bytes))
    }

    pub(crate) fn decode_list(r: &mut Reader<'_>) -> Result<Vec<Instruction>, DecodeError> {
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(Instruction::decode(r)?);
        }
        Ok(out)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Instruction, DecodeError> {
        let instruction_type = r.u16("instruction type")?;
        let len = usize::from(r.u16("instruction length")?);
        if len < 8 || len % 8 != 0 {
            return Err(DecodeError::BadLength {
                what: "instruction",
                length: len,
            });
        }
        let raw = r.take(len - 4, "instruction body")?;
        let mut body = Reader::new(raw);
        let instruction = match instruction_type {
            OFPIT_GOTO_TABLE if len == 8 => Instruction::GotoTable(body.u8("goto_table table")?),
            OFPIT_WRITE_METADATA if len == 24 => {
                body.skip(4, "write_metadata padding")?;
                Instruction::WriteMetadata {
                    metadata: body.u64("metadata")?,
                    mask: body.u64("metadata mask")?,
                }
            }
            OFPIT_WRITE_ACTIONS | OFPIT_APPLY_ACTIONS => {
                body.skip(4, "actions instruction padding")?;
                let actions = Action::decode_list(&mut body)?;
                if instruction_type == OFPIT_WRITE_ACTIONS {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            OFPIT_CLEAR_ACTIONS if len == 8 => Instruction::ClearActions,
            OFPIT_METER if len == 8 => Instruction::Meter(body.u32("meter id")?),
            _ => Instruction::Unknown {
                instruction_type,
                body: raw.to_vec(),
            },
        };
        Ok(instruction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PortNo;

    #[test]
    fn instructions_round_trip_with_exact_bytes() {
        let list = vec![
            Instruction::ApplyActions(vec![Action::output(PortNo(1))]),
            Instruction::WriteMetadata {
                metadata: 5,
                mask: 0xff,
            },
            Instruction::GotoTable(3),
        ];
        let mut out = Vec::new();
        Instruction::encode_list(&list, &mut out).unwrap();
        assert_eq!(&out[..8], &[0, 4, 0, 24, 0, 0, 0, 0]);
        assert_eq!(out.len(), 24 + 24 + 8);
        assert_eq!(Instruction::decode_list(&mut Reader::new(&out)).unwrap(), list);
    }

    #[test]
    fn unknown_instruction_is_kept() {
        let raw = [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 1, 2, 3, 4, 5, 6, 7, 8];
        let list = Instruction::decode_list(&mut Reader::new(&raw)).unwrap();
        assert!(matches!(
            list[0],
            Instruction::Unknown {
                instruction_type: 0xffff,
                ..
            }
        ));
        let mut out = Vec::new();
        Instruction::encode_list(&list, &mut out).unwrap();
        assert_eq!(out, raw);
    }
}
