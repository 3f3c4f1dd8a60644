//! OpenFlow roles, for switches shared by several controllers (flowgate
//! nodes): the role this controller claims, decided outside the controller
//! (by an election), and what each switch granted.
//!
//! One controller alone needs no role: the switch's default, EQUAL, lets it
//! read and write. With several, exactly one should be MASTER and the others
//! SLAVE. A switch keeps the highest generation id any controller claimed
//! MASTER or SLAVE with and refuses a claim with a lower one
//! (`OFPRRFC_STALE`); granting MASTER to one controller turns the previous
//! master into a slave, whose flow-mods, bundles and packet-outs it then
//! refuses (`OFPBRC_IS_SLAVE`). A new master that claims with a strictly
//! larger generation id than any before (an election epoch) therefore fences
//! off a stale master that has not noticed yet it lost the election.

use openflow::{AsyncConfig, ControllerRole, ErrorMsg, Role, Version};

/// The role this controller claims on every switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleClaim {
    /// No role request: the switch's default (EQUAL) lets this controller
    /// read and write. For a controller alone.
    #[default]
    Equal,
    /// MASTER: the only controller that changes flows and sends packets.
    Master {
        /// Strictly larger than that of any earlier master.
        generation_id: u64,
    },
    /// SLAVE: reads flows and counters, hears port changes and packet-ins,
    /// changes nothing.
    Slave {
        /// The current master's (a switch refuses a lower one).
        generation_id: u64,
    },
}

impl RoleClaim {
    /// The role request that makes this claim, if any.
    pub(crate) fn request(self) -> Option<Role> {
        match self {
            RoleClaim::Equal => None,
            RoleClaim::Master { generation_id } => Some(Role {
                role: ControllerRole::MASTER,
                generation_id,
            }),
            RoleClaim::Slave { generation_id } => Some(Role {
                role: ControllerRole::SLAVE,
                generation_id,
            }),
        }
    }

    /// Whether the claim, once granted, lets the session change the switch.
    pub(crate) fn writes(self) -> bool {
        !matches!(self, RoleClaim::Slave { .. })
    }
}

/// What a switch granted this controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwitchRole {
    /// No role asked: EQUAL, reads and writes.
    #[default]
    Equal,
    /// MASTER asked for, not (yet) granted: reads only.
    Claiming,
    /// MASTER, granted: reads and writes.
    Master,
    /// SLAVE: reads only.
    Slave,
    /// Refused: the switch knows a newer master (a stale generation id, or
    /// it demoted this controller when another claimed MASTER). Reads only
    /// until a new claim is granted.
    Fenced,
}

impl SwitchRole {
    /// Whether the session may change flows and send packets.
    pub fn writes(self) -> bool {
        matches!(self, SwitchRole::Equal | SwitchRole::Master)
    }

    /// A lower-case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SwitchRole::Equal => "equal",
            SwitchRole::Claiming => "claiming",
            SwitchRole::Master => "master",
            SwitchRole::Slave => "slave",
            SwitchRole::Fenced => "fenced",
        }
    }
}

/// `OFPR_*` packet-in reasons (bits of the packet-in masks).
const PACKET_IN_NO_MATCH: u32 = 1 << 0;
const PACKET_IN_ACTION: u32 = 1 << 1;
const PACKET_IN_INVALID_TTL: u32 = 1 << 2;
/// Every `OFPPR_*` port status reason: add, delete, modify.
const PORT_STATUS_ALL: u32 = 0b111;
/// Every `OFPRR_*` flow-removed reason of OpenFlow 1.3.
const FLOW_REMOVED_ALL: u32 = 0b1111;

/// The asynchronous messages asked for when roles are in use. A slave gets
/// port changes by default, but no packet-ins; flowgate's slaves want the
/// packet-ins sent by the pipeline's controller actions too (the public
/// gateway's ARP replies), so that a slave taking over already knows what
/// the master learnt from them and reconciles to the same flows.
pub(crate) fn async_config() -> AsyncConfig {
    AsyncConfig {
        packet_in_mask: [
            PACKET_IN_NO_MATCH | PACKET_IN_ACTION | PACKET_IN_INVALID_TTL,
            PACKET_IN_ACTION,
        ],
        port_status_mask: [PORT_STATUS_ALL, PORT_STATUS_ALL],
        flow_removed_mask: [FLOW_REMOVED_ALL, 0],
    }
}

/// Whether `error` says this controller is a slave (`OFPBRC_IS_SLAVE`,
/// named `OFPBRC_IS_SECONDARY` as Open vSwitch does): another controller
/// is master now.
pub(crate) fn is_slave_error(error: &ErrorMsg, version: Version) -> bool {
    openflow::ErrorCode::from_name(version, "OFPBRC_IS_SECONDARY") == Some(error.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::error_msg::ErrorCode;

    #[test]
    fn the_slave_error_is_recognised_by_either_name() {
        let is_slave = ErrorMsg {
            code: ErrorCode::Standard {
                err_type: 1,
                code: 10,
            },
            data: Vec::new(),
        };
        assert!(is_slave_error(&is_slave, Version::OF13));
        let bad_type = ErrorMsg {
            code: ErrorCode::Standard { err_type: 1, code: 1 },
            data: Vec::new(),
        };
        assert!(!is_slave_error(&bad_type, Version::OF13));
    }

    #[test]
    fn claims_make_the_requests_the_switch_expects() {
        assert_eq!(RoleClaim::Equal.request(), None);
        assert_eq!(
            RoleClaim::Master { generation_id: 7 }.request(),
            Some(Role {
                role: ControllerRole::MASTER,
                generation_id: 7
            })
        );
        assert!(!RoleClaim::Slave { generation_id: 7 }.writes());
        assert!(RoleClaim::Master { generation_id: 7 }.writes());
    }
}
