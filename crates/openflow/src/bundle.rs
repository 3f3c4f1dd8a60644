//! Bundles: a set of messages the switch applies all together or not at
//! all.
//!
//! OpenFlow 1.4 defines `OFPT_BUNDLE_CONTROL` and `OFPT_BUNDLE_ADD_MESSAGE`;
//! for OpenFlow 1.3 Open vSwitch implements the same bodies as the ONF
//! extension EXT-230 (experimenter messages with the ONF id and types 2300
//! and 2301). [`crate::OfpMessage`] picks the right framing from the
//! message version, so callers build the same [`BundleControl`] and
//! [`BundleAdd`] values for both.

use crate::message::OfpMessage;
use crate::wire::{DecodeError, EncodeError, Put, Reader};

/// ONF experimenter type of a bundle control message in OpenFlow 1.3.
pub(crate) const ONFT_BUNDLE_CONTROL: u32 = 2300;
/// ONF experimenter type of a bundle add message in OpenFlow 1.3.
pub(crate) const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

/// Bundle control types (`ofp_bundle_ctrl_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BundleCtrlType(pub u16);

impl BundleCtrlType {
    /// Open a bundle.
    pub const OPEN_REQUEST: Self = Self(0);
    /// The bundle was opened.
    pub const OPEN_REPLY: Self = Self(1);
    /// Close a bundle (no more messages).
    pub const CLOSE_REQUEST: Self = Self(2);
    /// The bundle was closed.
    pub const CLOSE_REPLY: Self = Self(3);
    /// Apply every message of the bundle.
    pub const COMMIT_REQUEST: Self = Self(4);
    /// Every message was applied.
    pub const COMMIT_REPLY: Self = Self(5);
    /// Drop the bundle.
    pub const DISCARD_REQUEST: Self = Self(6);
    /// The bundle was dropped.
    pub const DISCARD_REPLY: Self = Self(7);
}

/// Bundle flags (`OFPBF_*`).
pub mod bundle_flags {
    /// Apply all messages or none.
    pub const ATOMIC: u16 = 1 << 0;
    /// Apply messages in the order they were added.
    pub const ORDERED: u16 = 1 << 1;
}

/// `OFPT_BUNDLE_CONTROL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleControl {
    /// Bundle id chosen by the controller.
    pub bundle_id: u32,
    /// What to do.
    pub ctrl_type: BundleCtrlType,
    /// [`bundle_flags`] bits.
    pub flags: u16,
    /// Properties, kept verbatim.
    pub properties: Vec<u8>,
}

impl BundleControl {
    /// A control message without properties.
    pub fn new(bundle_id: u32, ctrl_type: BundleCtrlType, flags: u16) -> Self {
        BundleControl {
            bundle_id,
            ctrl_type,
            flags,
            properties: Vec::new(),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.bundle_id);
        out.put_u16(self.ctrl_type.0);
        out.put_u16(self.flags);
        out.extend_from_slice(&self.properties);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BundleControl {
            bundle_id: r.u32("bundle_id")?,
            ctrl_type: BundleCtrlType(r.u16("bundle control type")?),
            flags: r.u16("bundle flags")?,
            properties: r.rest().to_vec(),
        })
    }
}

/// `OFPT_BUNDLE_ADD_MESSAGE`: one message added to an open bundle. The
/// inner message must carry the same xid as the outer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleAdd {
    /// Bundle id.
    pub bundle_id: u32,
    /// [`bundle_flags`] bits (as given when the bundle was opened).
    pub flags: u16,
    /// The message to apply when the bundle is committed.
    pub message: Box<OfpMessage>,
    /// Properties after the message, kept verbatim.
    pub properties: Vec<u8>,
}

impl BundleAdd {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u32(self.bundle_id);
        out.put_zeros(2);
        out.put_u16(self.flags);
        self.message.encode(out)?;
        out.extend_from_slice(&self.properties);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>, depth: usize) -> Result<Self, DecodeError> {
        let bundle_id = r.u32("bundle_id")?;
        r.skip(2, "bundle add padding")?;
        let flags = r.u16("bundle flags")?;
        let inner = r.peek_rest();
        let len = match crate::message::message_length(inner)? {
            Some(len) => len,
            None => crate::message::OFP_HEADER_LEN,
        };
        if len > inner.len() {
            return Err(DecodeError::Truncated {
                what: "bundled message",
                needed: len,
                available: inner.len(),
            });
        }
        let message = OfpMessage::decode_nested(r.take(len, "bundled message")?, depth + 1)?;
        Ok(BundleAdd {
            bundle_id,
            flags,
            message: Box::new(message),
            properties: r.rest().to_vec(),
        })
    }
}
