//! Flow-mod validation: this module's one job is deciding, before anything
//! touches a table, whether Open vSwitch would refuse a flow-mod while
//! decoding it, and with which error; an accepted flow-mod comes out as a
//! [`FlowSpec`] in the table's compact form.
//!
//! The checks are those of `ofputil_decode_flow_mod` and
//! `ofproto_flow_mod_init` that a controller can trip over, in the same
//! order: the match (prerequisites, duplicates), the table id, the command,
//! the instructions and actions, the flags, the read-only table 254 and
//! buffered packets. What depends on the table's contents (overlaps, a full
//! table) is checked when the flow-mod is applied, as in Open vSwitch.
//! Actions the codec does not type are accepted when Open vSwitch knows
//! their type or vendor; an emulated switch cannot judge their bodies.

use openflow::action::NX_VENDOR_ID;
use openflow::flow::flow_mod_flags;
use openflow::{
    Action, FlowMod, FlowModCommand, Instruction, OFP_NO_BUFFER, OFPTT_ALL, ONF_VENDOR_ID, PortNo, Version,
};

use crate::compact::encode_instructions;
use crate::matching::canonicalize;
use crate::table::{Command, FlowKey, FlowSpec};

/// Number of tables an emulated switch reports, as Open vSwitch does; table
/// 254 exists but is reserved (read-only).
pub const N_TABLES: u8 = 254;

/// Every flag OpenFlow 1.3 and 1.4 define for flow-mods.
const KNOWN_FLAGS: u16 = flow_mod_flags::SEND_FLOW_REM
    | flow_mod_flags::CHECK_OVERLAP
    | flow_mod_flags::RESET_COUNTS
    | flow_mod_flags::NO_PKT_COUNTS
    | flow_mod_flags::NO_BYT_COUNTS;

/// Standard action types of OpenFlow 1.3 that the codec keeps as
/// `Action::Unknown` but Open vSwitch implements (copy TTL, MPLS, PBB).
const OTHER_OF13_ACTIONS: [u16; 8] = [11, 12, 15, 16, 19, 20, 26, 27];

/// A refused flow-mod: the name of the OpenFlow error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flow-mod refused: {0}")]
pub struct Refusal(pub &'static str);

/// Whether `port` may be the target of an output action.
fn valid_output_port(port: PortNo) -> bool {
    port.0 < 0xff00 || (PortNo::IN_PORT.0..=PortNo::LOCAL.0).contains(&port.0)
}

fn check_actions(actions: &[Action]) -> Result<(), Refusal> {
    for action in actions {
        match action {
            Action::Output { port, .. } if !valid_output_port(*port) => {
                return Err(Refusal("OFPBAC_BAD_OUT_PORT"));
            }
            // An emulated switch has no groups (it refuses group-mods).
            Action::Group(_) => return Err(Refusal("OFPBAC_BAD_OUT_GROUP")),
            Action::Conjunction {
                clause, n_clauses, ..
            } if !(2..=64).contains(n_clauses) || clause >= n_clauses => {
                return Err(Refusal("NXBAC_BAD_CONJUNCTION"));
            }
            Action::Ct(ct) => check_actions(&ct.actions)?,
            Action::Unknown { action_type, .. } if !OTHER_OF13_ACTIONS.contains(action_type) => {
                return Err(Refusal("OFPBAC_BAD_TYPE"));
            }
            Action::Experimenter { experimenter, .. }
                if *experimenter != NX_VENDOR_ID && *experimenter != ONF_VENDOR_ID =>
            {
                return Err(Refusal("OFPBAC_BAD_VENDOR"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_instructions(table_id: u8, instructions: &[Instruction]) -> Result<(), Refusal> {
    let mut seen: Vec<u16> = Vec::with_capacity(instructions.len());
    for instruction in instructions {
        let kind = match instruction {
            Instruction::GotoTable(_) => 1,
            Instruction::WriteMetadata { .. } => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::ApplyActions(_) => 4,
            Instruction::ClearActions => 5,
            Instruction::Meter(_) => 6,
            Instruction::Unknown { .. } => return Err(Refusal("OFPBIC_UNKNOWN_INST")),
        };
        if seen.contains(&kind) {
            return Err(Refusal("OFPBIC_DUP_INST"));
        }
        seen.push(kind);
        match instruction {
            Instruction::GotoTable(next) => {
                // A flow may only go forward, to a table that exists.
                let backwards = table_id != OFPTT_ALL && *next <= table_id;
                if backwards || *next >= N_TABLES {
                    return Err(Refusal("OFPBIC_BAD_TABLE_ID"));
                }
            }
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => check_actions(a)?,
            _ => {}
        }
    }
    Ok(())
}

/// Validates `fm` as Open vSwitch would while decoding it and turns it into
/// the table's form.
pub fn prepare(fm: &FlowMod, version: Version) -> Result<FlowSpec, Refusal> {
    let match_ = canonicalize(&fm.match_).map_err(|e| Refusal(e.error_name()))?;
    let command = match fm.command {
        FlowModCommand::Add => Command::Add,
        FlowModCommand::Modify => Command::Modify,
        FlowModCommand::ModifyStrict => Command::ModifyStrict,
        FlowModCommand::Delete => Command::Delete,
        FlowModCommand::DeleteStrict => Command::DeleteStrict,
        FlowModCommand::Unknown(_) => Command::Add,
    };
    let deleting = matches!(command, Command::Delete | Command::DeleteStrict);
    if fm.table_id == OFPTT_ALL && !deleting && !matches!(fm.command, FlowModCommand::Unknown(_)) {
        return Err(Refusal("OFPFMFC_BAD_TABLE_ID"));
    }
    if !(fm.out_port.0 < 0xff00 || fm.out_port.0 >= PortNo::IN_PORT.0) {
        return Err(Refusal("OFPBAC_BAD_OUT_PORT"));
    }
    if matches!(fm.command, FlowModCommand::Unknown(_)) {
        return Err(Refusal("OFPFMFC_BAD_COMMAND"));
    }
    check_instructions(fm.table_id, &fm.instructions)?;
    if fm.flags & !KNOWN_FLAGS != 0 {
        return Err(Refusal("OFPFMFC_BAD_FLAGS"));
    }
    if !deleting && fm.table_id >= N_TABLES {
        // Table 254 holds Open vSwitch's hidden internal flows.
        return Err(Refusal("OFPBRC_EPERM"));
    }
    if !deleting && fm.buffer_id != OFP_NO_BUFFER {
        // An emulated switch buffers no packets.
        return Err(Refusal("OFPBRC_BUFFER_UNKNOWN"));
    }
    let instructions = if deleting {
        Vec::new()
    } else {
        // Open vSwitch keeps instructions in one fixed order whatever order
        // they came in (meter, apply, clear, write actions, write metadata,
        // goto), and drops action instructions with no actions; it reports
        // them so.
        let mut ordered: Vec<&Instruction> = fm
            .instructions
            .iter()
            .filter(
                |i| !matches!(i, Instruction::ApplyActions(a) | Instruction::WriteActions(a) if a.is_empty()),
            )
            .collect();
        ordered.sort_by_key(|i| match i {
            Instruction::Meter(_) => 0,
            Instruction::ApplyActions(_) => 1,
            Instruction::ClearActions => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::WriteMetadata { .. } => 4,
            Instruction::GotoTable(_) => 5,
            Instruction::Unknown { .. } => 6,
        });
        let ordered: Vec<Instruction> = ordered.into_iter().cloned().collect();
        encode_instructions(&ordered).map_err(|_| Refusal("OFPBIC_BAD_LEN"))?
    };
    Ok(FlowSpec {
        command,
        flow: FlowKey::new(fm.table_id, fm.priority, &match_, &instructions),
        cookie: fm.cookie,
        cookie_mask: fm.cookie_mask,
        out_port: fm.out_port,
        out_group: fm.out_group,
        flags: fm.flags,
        idle_timeout: fm.idle_timeout,
        hard_timeout: fm.hard_timeout,
        importance: if version >= Version::OF14 && command == Command::Add {
            fm.importance
        } else {
            0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::{Masked, Match, OxmField};

    fn refusal(fm: FlowMod) -> &'static str {
        prepare(&fm, Version::OF13).unwrap_err().0
    }

    #[test]
    fn refusals_name_the_ovs_error() {
        let fm = |fields, ins| FlowMod::add(0, 1, Match::new(fields), ins);
        assert_eq!(
            refusal(fm(vec![OxmField::TcpDst(Masked::exact(80))], vec![])),
            "OFPBMC_BAD_PREREQ"
        );
        assert_eq!(
            refusal(FlowMod::add(
                3,
                1,
                Match::default(),
                vec![Instruction::GotoTable(1)]
            )),
            "OFPBIC_BAD_TABLE_ID"
        );
        assert_eq!(
            refusal(fm(
                vec![],
                vec![Instruction::ApplyActions(vec![Action::output(PortNo(
                    0xffff_ff01
                ))])]
            )),
            "OFPBAC_BAD_OUT_PORT"
        );
        assert_eq!(
            refusal(FlowMod {
                command: FlowModCommand::Unknown(9),
                ..fm(vec![], vec![])
            }),
            "OFPFMFC_BAD_COMMAND"
        );
        assert_eq!(
            refusal(FlowMod::add(255, 1, Match::default(), vec![])),
            "OFPFMFC_BAD_TABLE_ID"
        );
        assert_eq!(
            refusal(fm(
                vec![],
                vec![Instruction::Unknown {
                    instruction_type: 99,
                    body: vec![0; 4]
                }]
            )),
            "OFPBIC_UNKNOWN_INST"
        );
        assert!(prepare(&FlowMod::delete_all(), Version::OF13).is_ok());
    }
}
