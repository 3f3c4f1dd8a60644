//! The actions: each reads its parameters, runs a read on the committed
//! model or a mutation through the store, and writes EC2's response.

mod addresses;
mod groups;
mod info;
mod instances;
mod tags;

use std::time::{SystemTime, UNIX_EPOCH};

use model::{AccessKey, AccountId, Ec2Error, Entropy, State};
use store::MutateError;

use crate::Api;
use crate::params::Params;
use crate::xml::Xml;

/// Everything an action needs about its request.
pub struct Ctx<'a> {
    /// The server.
    pub api: &'a Api,
    /// The key that signed the request.
    pub key: &'a AccessKey,
    /// Its parameters.
    pub params: &'a Params,
    /// `Action`.
    pub action: &'a str,
    /// `Version`, echoed in the response namespace.
    pub version: &'a str,
    /// This request's id.
    pub request_id: &'a str,
}

impl Ctx<'_> {
    /// The caller's account.
    pub fn account(&self) -> &AccountId {
        &self.key.account_id
    }

    /// Starts this action's response.
    pub fn response(&self) -> Xml {
        Xml::response(self.action, self.version, self.request_id)
    }

    /// Finishes this action's response.
    pub fn finish(&self, xml: Xml) -> String {
        xml.finish(self.action)
    }

    /// `<return>true</return>` alone.
    pub fn ok(&self) -> String {
        let mut x = self.response();
        x.leaf("return", "true");
        self.finish(x)
    }

    /// Runs `operation` through the store; success means committed.
    pub async fn mutate<T, F>(&self, operation: F) -> Result<T, Ec2Error>
    where
        F: FnOnce(&mut State, &mut dyn Entropy, u64) -> Result<T, Ec2Error> + Send + 'static,
        T: Send + 'static,
    {
        let result = self
            .api
            .store
            .mutate(move |state| operation(state, &mut OsEntropy, now_ms()))
            .await;
        match result {
            Ok(value) => Ok(value),
            Err(MutateError::Rejected(err)) => Err(err),
            Err(MutateError::Storage(err)) => {
                tracing::error!(error = %err, "a mutation could not be stored");
                Err(Ec2Error::InternalError)
            }
        }
    }
}

/// Randomness from the operating system (ids, MACs).
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // getrandom only fails on broken systems; ids must still differ.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            return (nanos as u64) ^ 0x9E37_79B9_7F4A_7C15;
        }
        u64::from_le_bytes(bytes)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The actions that change something.
const MUTATING: &[&str] = &[
    "AllocateAddress",
    "AssociateAddress",
    "DisassociateAddress",
    "ReleaseAddress",
    "CreateSecurityGroup",
    "DeleteSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "RunInstances",
    "TerminateInstances",
    "ModifyInstanceAttribute",
    "CreateTags",
    "DeleteTags",
];

/// The actions that only read.
const READING: &[&str] = &[
    "DescribeAddresses",
    "DescribeSecurityGroups",
    "DescribeSecurityGroupRules",
    "DescribeInstances",
    "DescribeImages",
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "DescribeTags",
    "GetConsoleOutput",
];

/// Whether an action changes anything (DryRun and read-only keys apply to these).
pub fn is_mutating(action: &str) -> bool {
    MUTATING.contains(&action)
}

/// Whether flowgate knows the action.
pub fn is_known(action: &str) -> bool {
    known_name(action).is_some()
}

/// The action's name if flowgate knows it: a label value from a bounded
/// set, whatever a client sends.
pub fn known_name(action: &str) -> Option<&'static str> {
    MUTATING
        .iter()
        .chain(READING)
        .find(|known| **known == action)
        .copied()
}

/// Runs the request's action.
pub async fn dispatch(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    match ctx.action {
        "AllocateAddress" => addresses::allocate(ctx).await,
        "AssociateAddress" => addresses::associate(ctx).await,
        "DisassociateAddress" => addresses::disassociate(ctx).await,
        "ReleaseAddress" => addresses::release(ctx).await,
        "DescribeAddresses" => addresses::describe(ctx),
        "CreateSecurityGroup" => groups::create(ctx).await,
        "DeleteSecurityGroup" => groups::delete(ctx).await,
        "AuthorizeSecurityGroupIngress" => groups::authorize(ctx, model::Direction::Ingress).await,
        "AuthorizeSecurityGroupEgress" => groups::authorize(ctx, model::Direction::Egress).await,
        "RevokeSecurityGroupIngress" => groups::revoke(ctx, model::Direction::Ingress).await,
        "RevokeSecurityGroupEgress" => groups::revoke(ctx, model::Direction::Egress).await,
        "DescribeSecurityGroups" => groups::describe(ctx),
        "DescribeSecurityGroupRules" => groups::describe_rules(ctx).await,
        "RunInstances" => instances::run(ctx).await,
        "DescribeInstances" => instances::describe(ctx),
        "TerminateInstances" => instances::terminate(ctx).await,
        "ModifyInstanceAttribute" => instances::modify_attribute(ctx).await,
        "GetConsoleOutput" => instances::console_output(ctx).await,
        "DescribeImages" => info::describe_images(ctx),
        "DescribeRegions" => info::describe_regions(ctx),
        "DescribeAvailabilityZones" => info::describe_zones(ctx),
        "CreateTags" => tags::create(ctx).await,
        "DeleteTags" => tags::delete(ctx).await,
        "DescribeTags" => tags::describe(ctx),
        other => Err(Ec2Error::InvalidAction(other.to_string())),
    }
}

/// Parses a list of ids with `parse`, keeping EC2's malformed-id errors.
pub fn parse_ids<T>(
    values: Vec<String>,
    parse: impl Fn(&str) -> Result<T, Ec2Error>,
) -> Result<Vec<T>, Ec2Error> {
    values.iter().map(|v| parse(v)).collect()
}

/// Parses an IPv4 address parameter.
pub fn parse_ip(text: &str) -> Result<std::net::Ipv4Addr, Ec2Error> {
    text.trim()
        .parse()
        .map_err(|_| Ec2Error::MalformedAddress(text.to_string()))
}
