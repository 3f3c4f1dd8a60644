//! Fault injection for tests of the controller: this module's one job is
//! describing the ways an emulated switch can be told to misbehave.
//!
//! Three faults, each off by default:
//!
//! * **Drop the connection after K messages**: the switch handles the K-th
//!   message received on a connection (the `HELLO` counts), sends its
//!   replies, then closes the connection and reconnects after its backoff,
//!   its flow table intact. `drop_times` bounds how many connections end
//!   that way (`None`: every one).
//! * **Late barriers**: before each barrier reply the switch stalls for
//!   `barrier_delay`, processing nothing else meanwhile (as a busy switch
//!   would), so replies keep their order.
//! * **Refuse flow-mods by cookie**: an add or modify whose cookie matches
//!   `cookie` under `mask` fails with the chosen error when it is applied,
//!   so inside a bundle the whole commit fails (the flow-mod's error, then
//!   `OFPBFC_MSG_FAILED`) and nothing of the bundle is applied.

use std::time::Duration;

use openflow::{ErrorCode, Version};

/// How an emulated switch misbehaves (the default: not at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Close each connection once it has received this many messages.
    pub drop_after_messages: Option<u64>,
    /// How many connections to close that way; `None` means all of them.
    pub drop_times: Option<u32>,
    /// Stall this long before answering each barrier.
    pub barrier_delay: Option<Duration>,
    /// Refuse adds and modifies whose cookie matches.
    pub reject_cookie: Option<CookieRejection>,
}

/// Refuse flow-mods whose `cookie & mask == self.cookie & mask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieRejection {
    /// Cookie value to refuse.
    pub cookie: u64,
    /// Cookie bits compared.
    pub mask: u64,
    /// OpenFlow name of the error sent, e.g. `OFPFMFC_EPERM`.
    pub error: String,
}

/// The error name is not one the codec knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OpenFlow error name {0:?} (expected e.g. OFPFMFC_EPERM)")]
pub struct UnknownErrorName(pub String);

impl CookieRejection {
    /// A rejection answering with the error named `error`, checked against
    /// the codec's catalogue.
    pub fn new(cookie: u64, mask: u64, error: &str) -> Result<Self, UnknownErrorName> {
        if ErrorCode::from_name(Version::OF13, error).is_none() {
            return Err(UnknownErrorName(error.to_string()));
        }
        Ok(CookieRejection {
            cookie,
            mask,
            error: error.to_string(),
        })
    }

    /// Whether a flow-mod with `cookie` is refused.
    pub fn rejects(&self, cookie: u64) -> bool {
        (cookie ^ self.cookie) & self.mask == 0
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }
}
