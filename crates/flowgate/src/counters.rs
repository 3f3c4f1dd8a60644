//! DescribeSecurityGroupRules' packet counts, read from the switches the
//! controller of this process manages.

use std::time::Duration;

use controller::Controller;
use ec2api::counters::{CountsFuture, RuleCount, RuleCounters};
use model::RuleId;
use store::Store;

/// How long a switch may take to report its flows' counters before
/// DescribeSecurityGroupRules answers without them.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-rule counts from every connected switch.
pub struct SwitchCounters {
    store: Store,
    controller: Controller,
}

impl SwitchCounters {
    /// Counts read through `controller`, for the rules of `store`'s model.
    pub fn new(store: Store, controller: Controller) -> SwitchCounters {
        SwitchCounters { store, controller }
    }
}

impl RuleCounters for SwitchCounters {
    fn rule_counts<'a>(&'a self, rules: &'a [RuleId]) -> CountsFuture<'a> {
        Box::pin(async move {
            let ids: Vec<String> = rules.iter().map(ToString::to_string).collect();
            let counts =
                dataplane::counters::rule_counters(&self.store, &self.controller, &ids, SWITCH_TIMEOUT)
                    .await?;
            Ok(rules
                .iter()
                .filter_map(|rule| {
                    let c = counts.get(rule.as_str())?;
                    Some((
                        rule.clone(),
                        RuleCount {
                            packets: c.packets,
                            bytes: c.bytes,
                        },
                    ))
                })
                .collect())
        })
    }
}
