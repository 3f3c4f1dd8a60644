//! `OFPT_ERROR` messages and the names of their codes.

use std::fmt;

use crate::action::{NX_VENDOR_ID, ONF_VENDOR_ID};
use crate::error_names::{ERROR_NAMES, ErrorVendor};
use crate::types::Version;

/// `ofp_error_msg.type` value introducing an experimenter error.
const OFPET_EXPERIMENTER: u16 = 0xffff;

/// Names of the standard error types (`OFPET_*`), indexed by type.
const ERROR_TYPE_NAMES: [&str; 18] = [
    "OFPET_HELLO_FAILED",
    "OFPET_BAD_REQUEST",
    "OFPET_BAD_ACTION",
    "OFPET_BAD_INSTRUCTION",
    "OFPET_BAD_MATCH",
    "OFPET_FLOW_MOD_FAILED",
    "OFPET_GROUP_MOD_FAILED",
    "OFPET_PORT_MOD_FAILED",
    "OFPET_TABLE_MOD_FAILED",
    "OFPET_QUEUE_OP_FAILED",
    "OFPET_SWITCH_CONFIG_FAILED",
    "OFPET_ROLE_REQUEST_FAILED",
    "OFPET_METER_MOD_FAILED",
    "OFPET_TABLE_FEATURES_FAILED",
    "OFPET_BAD_PROPERTY",
    "OFPET_ASYNC_CONFIG_FAILED",
    "OFPET_FLOW_MONITOR_FAILED",
    "OFPET_BUNDLE_FAILED",
];

/// What went wrong, as the switch encoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A standard `(type, code)` pair.
    Standard {
        /// `OFPET_*` type.
        err_type: u16,
        /// Type-specific code.
        code: u16,
    },
    /// An experimenter error (`OFPET_EXPERIMENTER`).
    Experimenter {
        /// Experimenter-defined code.
        exp_code: u16,
        /// Experimenter id (Nicira `0x2320`, ONF `0x4f4e4600`, ...).
        experimenter: u32,
    },
}

impl ErrorCode {
    /// The symbolic name (`OFPBAC_BAD_OUT_PORT`, `NXBRC_NXM_INVALID`,
    /// `OFPBFC_MSG_FAILED`, ...) in `version`, if the code is catalogued.
    pub fn name(self, version: Version) -> Option<&'static str> {
        ERROR_NAMES
            .iter()
            .find(|e| {
                e.versions.0 <= version.0
                    && version.0 <= e.versions.1
                    && self.is(e.vendor, e.err_type, e.code)
            })
            .map(|e| e.name)
    }

    /// The code named `name` in `version` (the inverse of
    /// [`ErrorCode::name`]).
    pub fn from_name(version: Version, name: &str) -> Option<ErrorCode> {
        ERROR_NAMES
            .iter()
            .find(|e| e.name == name && e.versions.0 <= version.0 && version.0 <= e.versions.1)
            .map(|e| match e.vendor {
                ErrorVendor::OpenFlow => ErrorCode::Standard {
                    err_type: e.err_type,
                    code: e.code,
                },
                ErrorVendor::Nicira => ErrorCode::Experimenter {
                    exp_code: e.err_type,
                    experimenter: NX_VENDOR_ID,
                },
                ErrorVendor::Onf => ErrorCode::Experimenter {
                    exp_code: e.err_type,
                    experimenter: ONF_VENDOR_ID,
                },
            })
    }

    fn is(self, vendor: ErrorVendor, err_type: u16, code: u16) -> bool {
        match (self, vendor) {
            (ErrorCode::Standard { err_type: t, code: c }, ErrorVendor::OpenFlow) => {
                t == err_type && c == code
            }
            (
                ErrorCode::Experimenter {
                    exp_code,
                    experimenter,
                },
                ErrorVendor::Nicira,
            ) => experimenter == NX_VENDOR_ID && exp_code == err_type,
            (
                ErrorCode::Experimenter {
                    exp_code,
                    experimenter,
                },
                ErrorVendor::Onf,
            ) => experimenter == ONF_VENDOR_ID && exp_code == err_type,
            _ => false,
        }
    }

    /// A name for logs that is never empty: the catalogued name, else the
    /// type's name with the numeric code, else the raw numbers.
    pub fn describe(self, version: Version) -> String {
        if let Some(name) = self.name(version) {
            return name.to_string();
        }
        match self {
            ErrorCode::Standard { err_type, code } => match ERROR_TYPE_NAMES.get(usize::from(err_type)) {
                Some(type_name) => format!("{type_name} code {code}"),
                None => format!("error type {err_type} code {code}"),
            },
            ErrorCode::Experimenter {
                exp_code,
                experimenter,
            } => {
                format!("experimenter {experimenter:#x} error {exp_code}")
            }
        }
    }

    pub(crate) fn to_wire(self) -> (u16, u16, Option<u32>) {
        match self {
            ErrorCode::Standard { err_type, code } => (err_type, code, None),
            ErrorCode::Experimenter {
                exp_code,
                experimenter,
            } => (OFPET_EXPERIMENTER, exp_code, Some(experimenter)),
        }
    }

    pub(crate) fn is_experimenter_type(err_type: u16) -> bool {
        err_type == OFPET_EXPERIMENTER
    }
}

/// An `OFPT_ERROR` message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorMsg {
    /// What went wrong.
    pub code: ErrorCode,
    /// Usually the first bytes (at least 64) of the request that failed.
    pub data: Vec<u8>,
}

/// The header of the request an error refers to, read from its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffendingHeader {
    /// Version of the failed request.
    pub version: Version,
    /// Its message type.
    pub msg_type: u8,
    /// Its transaction id, which the controller can map back to what it
    /// sent.
    pub xid: u32,
}

impl ErrorMsg {
    /// The header of the failed request, when the data starts with one.
    pub fn offending_header(&self) -> Option<OffendingHeader> {
        let d = self.data.get(..8)?;
        Some(OffendingHeader {
            version: Version(d[0]),
            msg_type: d[1],
            xid: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        })
    }

    /// A display adapter naming the error in `version`.
    pub fn display(&self, version: Version) -> impl fmt::Display + '_ {
        struct Show<'a>(&'a ErrorMsg, Version);
        impl fmt::Display for Show<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.code.describe(self.1))?;
                if let Some(h) = self.0.offending_header() {
                    write!(f, " (request type {} xid {:#x})", h.msg_type, h.xid)?;
                }
                Ok(())
            }
        }
        Show(self, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_experimenter_codes_have_names() {
        let v = Version::OF13;
        assert_eq!(
            ErrorCode::Standard { err_type: 2, code: 4 }.name(v),
            Some("OFPBAC_BAD_OUT_PORT")
        );
        assert_eq!(
            ErrorCode::Standard { err_type: 4, code: 9 }.name(v),
            Some("OFPBMC_BAD_PREREQ")
        );
        assert_eq!(
            ErrorCode::Experimenter {
                exp_code: 2,
                experimenter: NX_VENDOR_ID
            }
            .name(v),
            Some("NXBRC_NXM_INVALID")
        );
        // Bundle errors: ONF experimenter codes in 1.3, a standard type in 1.4.
        assert_eq!(
            ErrorCode::Experimenter {
                exp_code: 2313,
                experimenter: ONF_VENDOR_ID
            }
            .name(v),
            Some("OFPBFC_MSG_FAILED")
        );
        assert_eq!(
            ErrorCode::Standard {
                err_type: 17,
                code: 13
            }
            .name(Version::OF14),
            Some("OFPBFC_MSG_FAILED")
        );
        assert_eq!(
            ErrorCode::from_name(v, "OFPFMFC_BAD_COMMAND"),
            Some(ErrorCode::Standard { err_type: 5, code: 6 })
        );
    }

    #[test]
    fn unknown_codes_still_describe_themselves() {
        let v = Version::OF13;
        assert_eq!(
            ErrorCode::Standard {
                err_type: 2,
                code: 99
            }
            .describe(v),
            "OFPET_BAD_ACTION code 99"
        );
        assert_eq!(
            ErrorCode::Standard {
                err_type: 99,
                code: 1
            }
            .describe(v),
            "error type 99 code 1"
        );
        assert_eq!(
            ErrorCode::Experimenter {
                exp_code: 7,
                experimenter: 0x1234
            }
            .describe(v),
            "experimenter 0x1234 error 7"
        );
    }

    #[test]
    fn every_catalogued_code_has_a_name_that_maps_back_to_it() {
        // OpenFlow 1.0 and 1.1 give a few distinct errors the same code, so
        // names need not round-trip, but codes must.
        for entry in ERROR_NAMES {
            for v in [entry.versions.0, entry.versions.1.min(6)] {
                let code = ErrorCode::from_name(Version(v), entry.name).unwrap();
                let name = code.name(Version(v)).unwrap();
                assert_eq!(
                    ErrorCode::from_name(Version(v), name),
                    Some(code),
                    "{} in version {v}",
                    entry.name
                );
            }
        }
    }
}
