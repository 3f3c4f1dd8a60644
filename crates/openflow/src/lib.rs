//! A sans-io codec for OpenFlow 1.3 with the Nicira (NXM/NXAST) and ONF
//! extensions that Open vSwitch speaks: bytes in, typed messages out, and
//! back. No sockets, no clocks, no async: the controller runtime moves the
//! bytes, this crate only gives them meaning.
//!
//! # Layout
//!
//! One module per message family, each with typed values that `decode`
//! from and `encode` to the wire:
//!
//! * [`message`]: `ofp_header`, the [`Message`] enum, [`OfpMessage`]
//!   (version + xid + message), stream framing ([`message_length`]) and
//!   version negotiation ([`negotiate_version`]).
//! * [`oxm`]: match fields ([`OxmField`], [`Match`]) including the Nicira
//!   registers, `ct_state`, `ct_zone`, `ct_mark` and `conj_id`.
//! * [`action`] and [`instruction`]: what flows do, including `ct`, `nat`,
//!   `conjunction`, `resubmit`, `move`, `load`, `controller`, `note`.
//! * [`flow`], [`packet`], [`port`], [`multipart`], [`bundle`],
//!   [`error_msg`]: the remaining messages.
//!
//! # Guarantees
//!
//! * Decoding never panics. Malformed input (truncated, contradictory
//!   lengths, nesting beyond a small limit) is a [`DecodeError`];
//!   well-formed input this crate does not know (a message type, match
//!   field, action, instruction or multipart type) decodes to an explicit
//!   `Unknown` value carrying its bytes, which encodes back unchanged.
//! * Every allocation is bounded by the size of the input (at most 64 KiB
//!   per message); no count read from the wire sizes an allocation.
//! * `decode(encode(m)) == m` for every message (property-tested), and the
//!   encodings are checked against a real Open vSwitch (see the crate's
//!   `tests/`).
//!
//! ```
//! use openflow::{Action, FlowMod, Instruction, Match, Message, OfpMessage, OxmField, PortNo, Version};
//!
//! let flow = FlowMod::add(
//!     0,
//!     100,
//!     Match::new(vec![OxmField::EthType(0x0806)]),
//!     vec![Instruction::ApplyActions(vec![Action::output(PortNo::NORMAL)])],
//! );
//! let msg = OfpMessage::new(Version::OF13, 7, Message::FlowMod(flow));
//! let bytes = msg.to_bytes().unwrap();
//! assert_eq!(OfpMessage::decode(&bytes).unwrap(), msg);
//! ```

pub mod action;
pub mod bundle;
pub mod error_msg;
mod error_names;
pub mod flow;
pub mod instruction;
pub mod message;
pub mod multipart;
pub mod oxm;
pub mod packet;
pub mod port;
pub mod types;
mod wire;

pub use action::{Action, Controller2, Ct, CtZone, NX_VENDOR_ID, Nat, ONF_VENDOR_ID};
pub use bundle::{BundleAdd, BundleControl, BundleCtrlType};
pub use error_msg::{ErrorCode, ErrorMsg};
pub use flow::{
    AggregateStats, FlowMod, FlowModCommand, FlowRemoved, FlowStats, FlowStatsRequest, OFP_NO_BUFFER,
    OFPG_ANY, OFPTT_ALL,
};
pub use instruction::Instruction;
pub use message::{
    AsyncConfig, ControllerRole, Experimenter, Header, Hello, HelloElement, Message, OfpMessage, Role,
    SwitchConfig, SwitchFeatures, message_length, negotiate_version,
};
pub use multipart::{
    MultipartAssembler, MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
    SwitchDescription,
};
pub use oxm::{FieldId, Masked, Match, OxmField, OxmHeader, Subfield};
pub use packet::{PacketIn, PacketOut};
pub use port::{Port, PortStats, PortStatus};
pub use types::{MacAddr, PortNo, Version};
pub use wire::{DecodeError, EncodeError};
