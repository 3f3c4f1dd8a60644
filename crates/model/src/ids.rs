//! EC2 identifiers: a prefix and 17 lowercase hex digits (`sg-0123456789abcdef0`),
//! as modern EC2 hands them out, plus 12-digit owner ids and `AKIA…` access keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Ec2Error;

/// A source of random bits for new identifiers and secrets. The model draws
/// from it but never reads the operating system itself, so it stays pure and
/// tests can use a fixed sequence.
pub trait Entropy {
    /// Returns the next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// A deterministic [`Entropy`] for tests and reproducible ids (splitmix64).
#[derive(Debug, Clone)]
pub struct SeededEntropy(pub u64);

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn hex17(entropy: &mut dyn Entropy) -> String {
    // 17 hex digits = 68 bits: one full u64 plus one more nibble.
    let high = entropy.next_u64() & 0xf;
    let low = entropy.next_u64();
    format!("{high:x}{low:016x}")
}

/// Whether `digits` is a valid id body: 8 (older EC2) or 17 lowercase hex digits.
fn valid_hex_body(digits: &str) -> bool {
    (digits.len() == 8 || digits.len() == 17)
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

macro_rules! ec2_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $malformed:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix EC2 gives this kind of id, dash included.
            pub const PREFIX: &'static str = $prefix;

            /// A new random id.
            pub fn generate(entropy: &mut dyn Entropy) -> Self {
                Self(format!("{}{}", $prefix, hex17(entropy)))
            }

            /// Parses an id as a client sends it, refusing anything that is
            /// not the prefix followed by 8 or 17 lowercase hex digits.
            pub fn parse(text: &str) -> Result<Self, Ec2Error> {
                match text.strip_prefix($prefix) {
                    Some(digits) if valid_hex_body(digits) => Ok(Self(text.to_string())),
                    _ => Err(Ec2Error::$malformed(text.to_string())),
                }
            }

            /// The id as EC2 prints it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

ec2_id!(
    /// An instance (`i-…`).
    InstanceId, "i-", MalformedInstanceId
);
ec2_id!(
    /// A reservation: the instances of one RunInstances call (`r-…`).
    ReservationId, "r-", MalformedId
);
ec2_id!(
    /// A security group (`sg-…`).
    GroupId, "sg-", MalformedGroupId
);
ec2_id!(
    /// A security group rule (`sgr-…`).
    RuleId, "sgr-", MalformedId
);
ec2_id!(
    /// An Elastic IP allocation (`eipalloc-…`).
    AllocationId, "eipalloc-", MalformedAllocationId
);
ec2_id!(
    /// The association of an Elastic IP with an instance (`eipassoc-…`).
    AssociationId, "eipassoc-", MalformedAssociationId
);
ec2_id!(
    /// A machine image (`ami-…`).
    ImageId, "ami-", MalformedImageId
);
ec2_id!(
    /// A private network, EC2's subnet (`subnet-…`).
    SubnetId, "subnet-", MalformedId
);
ec2_id!(
    /// A public address pool (`ipv4pool-…`).
    PoolId, "ipv4pool-", MalformedId
);

/// An account's 12-digit owner id, as EC2 shows in `ownerId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// A new random 12-digit id (never starting with 0, so it reads as a number).
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let n = 100_000_000_000 + entropy.next_u64() % 900_000_000_000;
        Self(n.to_string())
    }

    /// Parses a 12-digit owner id.
    pub fn parse(text: &str) -> Result<Self, Ec2Error> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text.to_string()))
        } else {
            Err(Ec2Error::InvalidParameterValue(format!(
                "Invalid owner id: '{text}'"
            )))
        }
    }

    /// The id as EC2 prints it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_text(entropy: &mut dyn Entropy, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| {
            // Rejection-free: both alphabets have a power-of-two size.
            let index = (entropy.next_u64() % alphabet.len() as u64) as usize;
            char::from(alphabet[index])
        })
        .collect()
}

/// A new access key id in AWS's shape (`AKIA` + 16 characters).
pub fn generate_access_key_id(entropy: &mut dyn Entropy) -> String {
    format!("AKIA{}", random_text(entropy, KEY_ALPHABET, 16))
}

/// A new 40-character secret access key.
pub fn generate_secret_access_key(entropy: &mut dyn Entropy) -> String {
    random_text(entropy, SECRET_ALPHABET, 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_ec2_shape_and_parse_back() {
        let mut e = SeededEntropy(7);
        let id = GroupId::generate(&mut e);
        assert!(id.as_str().starts_with("sg-"));
        assert_eq!(id.as_str().len(), 3 + 17);
        assert_eq!(GroupId::parse(id.as_str()).unwrap(), id);
        assert!(GroupId::parse("sg-000007").is_err());
        assert!(GroupId::parse("sg-0000000A").is_err());
        assert!(GroupId::parse("sg-00000007").is_ok());
        assert!(InstanceId::parse("sg-00000007").is_err());
        let owner = AccountId::generate(&mut e);
        assert_eq!(owner.as_str().len(), 12);
        assert!(AccountId::parse(owner.as_str()).is_ok());
        assert_eq!(generate_access_key_id(&mut e).len(), 20);
        assert_eq!(generate_secret_access_key(&mut e).len(), 40);
    }
}
