//! flowgate's extension to DescribeSecurityGroupRules: how many packets
//! each rule admitted. The switches count them (every flow's cookie names
//! the rule that owns it); whoever runs the controller answers through
//! [`RuleCounters`], and the API adds the sums to each rule it describes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use model::RuleId;

/// What the switches counted for one rule, summed over every hypervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCount {
    /// Packets the rule admitted.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Why no counts could be read.
pub type CountersError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future of rule counts, so sources can be trait objects.
pub type CountsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BTreeMap<RuleId, RuleCount>, CountersError>> + Send + 'a>>;

/// Reads per-rule packet counts from the data plane.
pub trait RuleCounters: Send + Sync + 'static {
    /// The counts of `rules`. A rule left out of the answer has no count
    /// that can be told apart from another rule's; a rule with no flows
    /// anywhere (its group has no running member) counts zero.
    fn rule_counts<'a>(&'a self, rules: &'a [RuleId]) -> CountsFuture<'a>;
}
