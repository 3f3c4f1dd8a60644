//! Per-rule packet counts, read back from the switches: every flow a
//! security group rule owns carries the rule's cookie, so the counters of
//! the flows with that cookie, summed over every hypervisor, say how many
//! packets the rule admitted.
//!
//! What a rule counts: each packet in the original direction of a
//! connection that the rule let through, at the hypervisor that checked it
//! (the receiver's for ingress rules, the sender's for egress rules).
//! Replies and related packets pass on conntrack state, not on a rule, and
//! are not counted; a packet that several rules allow is counted by the
//! one that matched first.

use std::collections::BTreeMap;
use std::time::Duration;

use compiler::{COOKIE_KIND_MASK, OwnerKind, settled_cookies};
use controller::{Controller, ControllerError, FlowCounters};
use store::Store;

/// The counters of `rules` (rule ids, `sgr-...`), summed over every
/// connected switch; each switch gets at most `timeout` to answer.
///
/// A rule whose flows cannot be told apart from another rule's by cookie
/// alone (see [`compiler::settled_cookies`]; about one in 10^7 rules) is
/// left out of the answer. A rule with no flows anywhere counts zero.
pub async fn rule_counters(
    store: &Store,
    controller: &Controller,
    rules: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, FlowCounters>, ControllerError> {
    // Whether a cookie is settled depends on every rule the compiler may
    // hold, so every rule in the model.
    let all: Vec<String> = {
        let state = store.read();
        state
            .tenants()
            .flat_map(|t| t.rules.keys().map(ToString::to_string))
            .collect()
    };
    let settled = settled_cookies(OwnerKind::Rule, all.iter().map(String::as_str));
    // One request per switch for every rule flow it holds.
    let kind = (OwnerKind::Rule as u64) << 56;
    let sums = controller.flow_counters(kind, COOKIE_KIND_MASK, timeout).await?;
    Ok(rules
        .iter()
        .filter_map(|rule| {
            let cookie = (*settled.get(rule.as_str())?)?;
            Some((rule.clone(), sums.get(&cookie).copied().unwrap_or_default()))
        })
        .collect())
}
