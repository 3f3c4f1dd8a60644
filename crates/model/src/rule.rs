//! Security group rules: protocol, port range or ICMP type/code, and one
//! source (a CIDR or a group), normalised the way EC2 shows them.

use std::fmt;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::Ec2Error;
use crate::ids::{AccountId, GroupId, RuleId};

/// Whether a rule admits traffic into or out of the group's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Inbound.
    Ingress,
    /// Outbound.
    Egress,
}

/// A rule's IP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// `-1`: every protocol, every port.
    All,
    /// TCP with a port range.
    Tcp,
    /// UDP with a port range.
    Udp,
    /// ICMP with a type and code.
    Icmp,
    /// Any other IP protocol number (no ports).
    Number(u8),
}

impl Protocol {
    /// Parses EC2's `IpProtocol`: a name (tcp, udp, icmp), `-1`/`all`, or a number 0–255.
    pub fn parse(text: &str) -> Result<Self, Ec2Error> {
        match text.to_ascii_lowercase().as_str() {
            "-1" | "all" => Ok(Protocol::All),
            "tcp" | "6" => Ok(Protocol::Tcp),
            "udp" | "17" => Ok(Protocol::Udp),
            "icmp" | "1" => Ok(Protocol::Icmp),
            "icmpv6" | "58" => Err(Ec2Error::UnsupportedOperation(
                "IPv6 rules (icmpv6) are not supported by flowgate yet".to_string(),
            )),
            other => other.parse::<u8>().map(Protocol::Number).map_err(|_| {
                Ec2Error::InvalidParameterValue(format!(
                    "Invalid value '{text}' for IP protocol. Unknown protocol."
                ))
            }),
        }
    }

    /// The protocol as EC2 prints it in `ipProtocol`.
    pub fn as_ec2(self) -> String {
        match self {
            Protocol::All => "-1".to_string(),
            Protocol::Tcp => "tcp".to_string(),
            Protocol::Udp => "udp".to_string(),
            Protocol::Icmp => "icmp".to_string(),
            Protocol::Number(n) => n.to_string(),
        }
    }
}

/// Where traffic a rule admits comes from (ingress) or goes to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// An IPv4 prefix.
    Cidr(Ipv4Net),
    /// Every instance in a group.
    Group {
        /// The group.
        group_id: GroupId,
        /// Its owner.
        account_id: AccountId,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Cidr(net) => write!(f, "{net}"),
            Source::Group { group_id, .. } => write!(f, "{group_id}"),
        }
    }
}

/// What a rule matches, without its id and description: two rules with the
/// same permission are duplicates in EC2's eyes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permission {
    /// The protocol.
    pub protocol: Protocol,
    /// First port (TCP/UDP) or ICMP type (-1 = all); `None` for other protocols.
    pub from_port: Option<i32>,
    /// Last port (TCP/UDP) or ICMP code (-1 = all); `None` for other protocols.
    pub to_port: Option<i32>,
    /// The one source.
    pub source: Source,
}

impl Permission {
    /// Builds a permission from EC2's parameters, checking and normalising
    /// the ports as EC2 does.
    pub fn new(
        protocol: Protocol,
        from_port: Option<i32>,
        to_port: Option<i32>,
        source: Source,
    ) -> Result<Self, Ec2Error> {
        let (from_port, to_port) = match protocol {
            Protocol::Tcp | Protocol::Udp => match (from_port, to_port) {
                (Some(-1), Some(-1)) => (Some(0), Some(65535)),
                (Some(from), Some(to)) if (0..=65535).contains(&from) && (0..=65535).contains(&to) => {
                    if from > to {
                        return Err(Ec2Error::InvalidParameterValue(format!(
                            "Invalid value 'Invalid TCP/UDP port range {from}-{to}' for portRange"
                        )));
                    }
                    (Some(from), Some(to))
                }
                (Some(from), Some(to)) => {
                    return Err(Ec2Error::InvalidParameterValue(format!(
                        "Invalid value 'Invalid TCP/UDP port range {from}-{to}' for portRange"
                    )));
                }
                _ => {
                    return Err(Ec2Error::InvalidParameterValue(
                        "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange"
                            .to_string(),
                    ));
                }
            },
            Protocol::Icmp => {
                let icmp_type = from_port.unwrap_or(-1);
                let code = to_port.unwrap_or(-1);
                if !(-1..=255).contains(&icmp_type) || !(-1..=255).contains(&code) {
                    return Err(Ec2Error::InvalidParameterValue(format!(
                        "Invalid value '{icmp_type}/{code}' for ICMP type/code"
                    )));
                }
                if icmp_type == -1 && code != -1 {
                    return Err(Ec2Error::InvalidParameterValue(
                        "Invalid value: ICMP code must be -1 when the type is -1".to_string(),
                    ));
                }
                (Some(icmp_type), Some(code))
            }
            Protocol::All | Protocol::Number(_) => (None, None),
        };
        Ok(Permission {
            protocol,
            from_port,
            to_port,
            source,
        })
    }

    /// Every protocol, every port, from anywhere: the default egress rule.
    pub fn allow_all_to_anywhere() -> Self {
        Permission {
            protocol: Protocol::All,
            from_port: None,
            to_port: None,
            source: Source::Cidr(Ipv4Net::default()),
        }
    }
}

/// One rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `sgr-…`.
    pub id: RuleId,
    /// What it admits.
    pub permission: Permission,
    /// Free text from the tenant.
    pub description: Option<String>,
}

/// Checks a rule description as EC2 does (up to 255 characters of a restricted set).
pub fn validate_description(text: &str) -> Result<(), Ec2Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if text.chars().count() > 255 || !text.chars().all(allowed) {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Invalid rule description. Valid descriptions are strings less than 256 characters from the following set: a-zA-Z0-9. _-:/()#,@[]+=&;{{}}!$*: '{text}'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anywhere() -> Source {
        Source::Cidr("0.0.0.0/0".parse().unwrap())
    }

    #[test]
    fn protocols_parse_like_ec2() {
        assert_eq!(Protocol::parse("TCP").unwrap(), Protocol::Tcp);
        assert_eq!(Protocol::parse("6").unwrap(), Protocol::Tcp);
        assert_eq!(Protocol::parse("-1").unwrap(), Protocol::All);
        assert_eq!(Protocol::parse("47").unwrap(), Protocol::Number(47));
        assert!(Protocol::parse("256").is_err());
        assert!(Protocol::parse("bogus").is_err());
        assert_eq!(
            Protocol::parse("icmpv6").unwrap_err().code(),
            "UnsupportedOperation"
        );
    }

    #[test]
    fn ports_are_checked_and_normalised() {
        let p = Permission::new(Protocol::Tcp, Some(22), Some(22), anywhere()).unwrap();
        assert_eq!((p.from_port, p.to_port), (Some(22), Some(22)));
        assert!(Permission::new(Protocol::Tcp, Some(80), Some(22), anywhere()).is_err());
        assert!(Permission::new(Protocol::Udp, None, Some(22), anywhere()).is_err());
        assert!(Permission::new(Protocol::Tcp, Some(0), Some(70000), anywhere()).is_err());
        let all = Permission::new(Protocol::Tcp, Some(-1), Some(-1), anywhere()).unwrap();
        assert_eq!((all.from_port, all.to_port), (Some(0), Some(65535)));
        let icmp = Permission::new(Protocol::Icmp, Some(8), None, anywhere()).unwrap();
        assert_eq!((icmp.from_port, icmp.to_port), (Some(8), Some(-1)));
        assert!(Permission::new(Protocol::Icmp, Some(-1), Some(0), anywhere()).is_err());
        let any = Permission::new(Protocol::All, Some(1), Some(2), anywhere()).unwrap();
        assert_eq!((any.from_port, any.to_port), (None, None));
    }

    #[test]
    fn descriptions_follow_ec2_charset() {
        assert!(validate_description("SSH from office (HQ) #1").is_ok());
        assert!(validate_description("bad\u{7}").is_err());
        assert!(validate_description(&"x".repeat(256)).is_err());
    }
}
