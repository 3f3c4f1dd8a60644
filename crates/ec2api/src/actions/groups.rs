//! Security groups: Create/DeleteSecurityGroup, Authorize/Revoke
//! Ingress/Egress (legacy flat parameters and `IpPermissions.N`),
//! DescribeSecurityGroups and DescribeSecurityGroupRules.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use model::{
    AccountId, Direction, Ec2Error, GroupId, GroupRef, Permission, Protocol, Rule, RuleId, RuleRequest,
    SecurityGroup, Source, State, Tenant,
};

use super::{Ctx, parse_ids};
use crate::filter::Filters;
use crate::params::Params;
use crate::xml::Xml;

pub async fn create(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let name = ctx.params.required("GroupName")?.to_string();
    let description = ctx.params.required("GroupDescription")?.to_string();
    let tags = ctx.params.tag_specifications("security-group");
    let account = ctx.account().clone();
    let group = ctx
        .mutate(move |state, entropy, _| {
            let group = state.create_security_group(&account, &name, &description, entropy)?;
            if !tags.is_empty() {
                state.create_tags(&account, &[group.id.to_string()], &tags)?;
            }
            Ok(group)
        })
        .await?;
    let mut x = ctx.response();
    x.leaf("return", "true").leaf_display("groupId", &group.id);
    let tags = ctx.params.tag_specifications("security-group");
    if !tags.is_empty() {
        x.items("tagSet", &tags, |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        });
    }
    Ok(ctx.finish(x))
}

/// `GroupId` or `GroupName`, as most group actions take.
fn group_ref(params: &Params) -> Result<GroupRef, Ec2Error> {
    match (params.get("GroupId"), params.get("GroupName")) {
        (Some(id), _) if !id.is_empty() => Ok(GroupRef::Id(GroupId::parse(id)?)),
        (_, Some(name)) if !name.is_empty() => Ok(GroupRef::Name(name.to_string())),
        _ => Err(Ec2Error::MissingParameter("GroupId or GroupName".into())),
    }
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let group = group_ref(ctx.params)?;
    let account = ctx.account().clone();
    let id = ctx
        .mutate(move |state, _, _| state.delete_security_group(&account, &group))
        .await?;
    let mut x = ctx.response();
    x.leaf("return", "true").leaf_display("groupId", &id);
    Ok(ctx.finish(x))
}

/// A source as sent, before group names are resolved against the model.
#[derive(Debug, Clone)]
enum SourceSpec {
    Cidr(Ipv4Net),
    GroupId(GroupId),
    GroupName(String),
}

#[derive(Debug, Clone)]
struct PermissionSpec {
    protocol: Protocol,
    from_port: Option<i32>,
    to_port: Option<i32>,
    sources: Vec<(SourceSpec, Option<String>)>,
}

fn parse_cidr(text: &str) -> Result<Ipv4Net, Ec2Error> {
    if text.contains(':') {
        return Err(Ec2Error::UnsupportedOperation(format!(
            "IPv6 ranges ({text}) are not supported by flowgate yet"
        )));
    }
    let net: Ipv4Net = text
        .trim()
        .parse()
        .map_err(|_| Ec2Error::InvalidParameterValue(format!("CIDR block {text} is malformed")))?;
    if net.trunc() != net {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "CIDR block {text} is malformed: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

fn port(params: &Params, name: &str) -> Result<Option<i32>, Ec2Error> {
    params
        .int(name)?
        .map(|v| {
            i32::try_from(v)
                .map_err(|_| Ec2Error::InvalidParameterValue(format!("Invalid value '{v}' for {name}")))
        })
        .transpose()
}

fn user_id_check(user_id: Option<&str>, account: &AccountId, group: &str) -> Result<(), Ec2Error> {
    match user_id {
        Some(user) if !user.is_empty() && user != account.as_str() => {
            Err(Ec2Error::InvalidGroupNotFound(format!(
                "The security group '{group}' does not exist (groups of other accounts cannot be referenced)"
            )))
        }
        _ => Ok(()),
    }
}

/// Reads the permissions of a request: `IpPermissions.N…` or the legacy flat form.
fn permission_specs(params: &Params, account: &AccountId) -> Result<Vec<PermissionSpec>, Ec2Error> {
    let structured = params.structs("IpPermissions");
    let mut specs = Vec::new();
    if !structured.is_empty() {
        for p in structured {
            let protocol = Protocol::parse(p.required("IpProtocol")?)?;
            if !p.structs("Ipv6Ranges").is_empty() {
                return Err(Ec2Error::UnsupportedOperation(
                    "IPv6 ranges are not supported by flowgate yet".into(),
                ));
            }
            if !p.structs("PrefixListIds").is_empty() {
                return Err(Ec2Error::UnsupportedOperation(
                    "Prefix lists are not supported by flowgate".into(),
                ));
            }
            let mut sources = Vec::new();
            for range in p.structs("IpRanges") {
                let cidr = parse_cidr(range.required("CidrIp")?)?;
                sources.push((
                    SourceSpec::Cidr(cidr),
                    range.get("Description").map(str::to_string),
                ));
            }
            for pair in p.structs("Groups") {
                let description = pair.get("Description").map(str::to_string);
                if let Some(id) = pair.get("GroupId").filter(|s| !s.is_empty()) {
                    user_id_check(pair.get("UserId"), account, id)?;
                    sources.push((SourceSpec::GroupId(GroupId::parse(id)?), description));
                } else if let Some(name) = pair.get("GroupName").filter(|s| !s.is_empty()) {
                    user_id_check(pair.get("UserId"), account, name)?;
                    sources.push((SourceSpec::GroupName(name.to_string()), description));
                } else {
                    return Err(Ec2Error::MissingParameter(
                        "Groups.N.GroupId or Groups.N.GroupName".into(),
                    ));
                }
            }
            if sources.is_empty() {
                return Err(Ec2Error::MissingParameter(
                    "IpRanges or Groups (a source for the rule)".into(),
                ));
            }
            specs.push(PermissionSpec {
                protocol,
                from_port: port(&p, "FromPort")?,
                to_port: port(&p, "ToPort")?,
                sources,
            });
        }
        return Ok(specs);
    }
    // Legacy form: IpProtocol/FromPort/ToPort/CidrIp, or a whole source group.
    let group_name = params.get("SourceSecurityGroupName").filter(|s| !s.is_empty());
    if let Some(owner) = params.get("SourceSecurityGroupOwnerId") {
        user_id_check(Some(owner), account, group_name.unwrap_or(owner))?;
    }
    let source = match (params.get("CidrIp").filter(|s| !s.is_empty()), group_name) {
        (Some(cidr), None) => SourceSpec::Cidr(parse_cidr(cidr)?),
        (None, Some(name)) => SourceSpec::GroupName(name.to_string()),
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "CidrIp and SourceSecurityGroupName cannot be used together".into(),
            ));
        }
        (None, None) => return Err(Ec2Error::MissingParameter("IpPermissions".into())),
    };
    match params.get("IpProtocol") {
        Some(protocol) => specs.push(PermissionSpec {
            protocol: Protocol::parse(protocol)?,
            from_port: port(params, "FromPort")?,
            to_port: port(params, "ToPort")?,
            sources: vec![(source, None)],
        }),
        None => {
            // EC2-Classic: a bare source group means all TCP, UDP and ICMP from it.
            for (protocol, from, to) in [
                (Protocol::Tcp, 0, 65535),
                (Protocol::Udp, 0, 65535),
                (Protocol::Icmp, -1, -1),
            ] {
                specs.push(PermissionSpec {
                    protocol,
                    from_port: Some(from),
                    to_port: Some(to),
                    sources: vec![(source.clone(), None)],
                });
            }
        }
    }
    Ok(specs)
}

/// Resolves sources against the model and checks the ports.
fn resolve(
    state: &State,
    account: &AccountId,
    specs: &[PermissionSpec],
) -> Result<Vec<RuleRequest>, Ec2Error> {
    let mut out = Vec::new();
    for spec in specs {
        for (source, description) in &spec.sources {
            let source = match source {
                SourceSpec::Cidr(net) => Source::Cidr(*net),
                SourceSpec::GroupId(id) => {
                    let group = state.resolve_group(account, &GroupRef::Id(id.clone()))?;
                    Source::Group {
                        group_id: group.id.clone(),
                        account_id: account.clone(),
                    }
                }
                SourceSpec::GroupName(name) => {
                    let group = state.resolve_group(account, &GroupRef::Name(name.clone()))?;
                    Source::Group {
                        group_id: group.id.clone(),
                        account_id: account.clone(),
                    }
                }
            };
            let permission = Permission::new(spec.protocol, spec.from_port, spec.to_port, source)?;
            out.push(RuleRequest {
                permission,
                description: description.clone(),
            });
        }
    }
    Ok(out)
}

pub async fn authorize(ctx: &Ctx<'_>, direction: Direction) -> Result<String, Ec2Error> {
    let group = group_ref(ctx.params)?;
    let account = ctx.account().clone();
    let specs = permission_specs(ctx.params, &account)?;
    let (group_id, rules) = ctx
        .mutate(move |state, entropy, _| {
            let requests = resolve(state, &account, &specs)?;
            let rules = state.authorize(&account, &group, direction, requests, entropy)?;
            let group_id = state.resolve_group(&account, &group)?.id.clone();
            Ok((group_id, rules))
        })
        .await?;
    let mut x = ctx.response();
    x.leaf("return", "true");
    let owner = ctx.account().clone();
    x.items("securityGroupRuleSet", &rules, |x, rule| {
        write_rule(x, rule, &group_id, &owner, direction == Direction::Egress, None);
    });
    Ok(ctx.finish(x))
}

pub async fn revoke(ctx: &Ctx<'_>, direction: Direction) -> Result<String, Ec2Error> {
    let group = group_ref(ctx.params)?;
    let account = ctx.account().clone();
    let rule_ids = parse_ids(ctx.params.list("SecurityGroupRuleId"), RuleId::parse)?;
    let specs = if rule_ids.is_empty() {
        permission_specs(ctx.params, &account)?
    } else {
        Vec::new()
    };
    ctx.mutate(move |state, _, _| {
        let permissions: Vec<Permission> = resolve(state, &account, &specs)?
            .into_iter()
            .map(|r| r.permission)
            .collect();
        state.revoke(&account, &group, direction, &permissions, &rule_ids)
    })
    .await?;
    Ok(ctx.ok())
}

const GROUP_FILTERS: &[&str] = &[
    "description",
    "group-id",
    "group-name",
    "owner-id",
    "ip-permission.cidr",
    "ip-permission.from-port",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "ip-permission.protocol",
    "ip-permission.to-port",
    "egress.ip-permission.cidr",
    "egress.ip-permission.from-port",
    "egress.ip-permission.group-id",
    "egress.ip-permission.group-name",
    "egress.ip-permission.protocol",
    "egress.ip-permission.to-port",
];

pub fn describe(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let ids = parse_ids(ctx.params.list("GroupId"), GroupId::parse)?;
    let names = ctx.params.list("GroupName");
    let filters = Filters::new(ctx.params.filters()?, GROUP_FILTERS)?;
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    for id in &ids {
        if !tenant.groups.contains_key(id) {
            return Err(Ec2Error::InvalidGroupNotFound(format!(
                "The security group '{id}' does not exist"
            )));
        }
    }
    for name in &names {
        if tenant.group_by_name(name).is_none() {
            return Err(Ec2Error::InvalidGroupNotFound(format!(
                "The security group '{name}' does not exist in default VPC"
            )));
        }
    }
    let selected = tenant.groups.values().filter(|g| {
        (ids.is_empty() && names.is_empty() || ids.contains(&g.id) || names.contains(&g.name))
            && (filters.is_empty()
                || filters.matches(|name| group_field(tenant, g, name), tenant.tags_of(g.id.as_str())))
    });
    let mut x = ctx.response();
    x.items("securityGroupInfo", selected, |x, g| write_group(x, tenant, g));
    Ok(ctx.finish(x))
}

fn group_field(tenant: &Tenant, g: &SecurityGroup, name: &str) -> Vec<String> {
    let (rules, attribute) = match name.strip_prefix("egress.") {
        Some(rest) => (&g.egress, rest),
        None => (&g.ingress, name),
    };
    let each = |f: &dyn Fn(&Rule) -> Option<String>| rules.iter().filter_map(f).collect::<Vec<_>>();
    match attribute {
        "description" => vec![g.description.clone()],
        "group-id" => vec![g.id.to_string()],
        "group-name" => vec![g.name.clone()],
        "owner-id" => vec![g.account_id.to_string()],
        "ip-permission.protocol" => each(&|r| Some(r.permission.protocol.as_ec2())),
        "ip-permission.from-port" => each(&|r| r.permission.from_port.map(|p| p.to_string())),
        "ip-permission.to-port" => each(&|r| r.permission.to_port.map(|p| p.to_string())),
        "ip-permission.cidr" => each(&|r| match &r.permission.source {
            Source::Cidr(net) => Some(net.to_string()),
            Source::Group { .. } => None,
        }),
        "ip-permission.group-id" => each(&|r| match &r.permission.source {
            Source::Group { group_id, .. } => Some(group_id.to_string()),
            Source::Cidr(_) => None,
        }),
        "ip-permission.group-name" => each(&|r| match &r.permission.source {
            Source::Group { group_id, .. } => tenant.groups.get(group_id).map(|g| g.name.clone()),
            Source::Cidr(_) => None,
        }),
        _ => Vec::new(),
    }
}

fn write_group(x: &mut Xml, tenant: &Tenant, g: &SecurityGroup) {
    x.leaf_display("ownerId", &g.account_id)
        .leaf_display("groupId", &g.id)
        .leaf("groupName", &g.name)
        .leaf("groupDescription", &g.description);
    write_permissions(x, "ipPermissions", tenant, &g.ingress);
    write_permissions(x, "ipPermissionsEgress", tenant, &g.egress);
    if let Some(tags) = tenant.tags_of(g.id.as_str()) {
        x.tag_set(tags);
    }
}

/// EC2 lists rules grouped by protocol and ports, each with its sources.
fn write_permissions(x: &mut Xml, tag: &str, tenant: &Tenant, rules: &[Rule]) {
    let mut order: Vec<(Protocol, Option<i32>, Option<i32>)> = Vec::new();
    let mut by_key: BTreeMap<usize, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        let key = (
            rule.permission.protocol,
            rule.permission.from_port,
            rule.permission.to_port,
        );
        let index = match order.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                order.push(key);
                order.len() - 1
            }
        };
        by_key.entry(index).or_default().push(rule);
    }
    x.items(tag, by_key, |x, (index, rules)| {
        let (protocol, from, to) = order[index];
        x.leaf("ipProtocol", &protocol.as_ec2());
        if let Some(from) = from {
            x.leaf_display("fromPort", from);
        }
        if let Some(to) = to {
            x.leaf_display("toPort", to);
        }
        x.items(
            "groups",
            rules.iter().filter_map(|r| match &r.permission.source {
                Source::Group { group_id, account_id } => Some((r, group_id, account_id)),
                Source::Cidr(_) => None,
            }),
            |x, (r, group_id, account_id)| {
                x.leaf_display("userId", account_id)
                    .leaf_display("groupId", group_id);
                if let Some(g) = tenant.groups.get(group_id) {
                    x.leaf("groupName", &g.name);
                }
                x.leaf_opt("description", r.description.as_deref());
            },
        );
        x.items(
            "ipRanges",
            rules.iter().filter_map(|r| match &r.permission.source {
                Source::Cidr(net) => Some((r, net)),
                Source::Group { .. } => None,
            }),
            |x, (r, net)| {
                x.leaf_display("cidrIp", net);
                x.leaf_opt("description", r.description.as_deref());
            },
        );
        x.raw("<ipv6Ranges/><prefixListIds/>");
    });
}

fn write_rule(
    x: &mut Xml,
    rule: &Rule,
    group_id: &GroupId,
    owner: &AccountId,
    egress: bool,
    tags: Option<&BTreeMap<String, String>>,
) {
    let p = &rule.permission;
    x.leaf_display("securityGroupRuleId", &rule.id)
        .leaf_display("groupId", group_id)
        .leaf_display("groupOwnerId", owner)
        .leaf("isEgress", if egress { "true" } else { "false" })
        .leaf("ipProtocol", &p.protocol.as_ec2())
        .leaf_display("fromPort", p.from_port.unwrap_or(-1))
        .leaf_display("toPort", p.to_port.unwrap_or(-1));
    match &p.source {
        Source::Cidr(net) => {
            x.leaf_display("cidrIpv4", net);
        }
        Source::Group { group_id, account_id } => {
            x.open("referencedGroupInfo")
                .leaf_display("groupId", group_id)
                .leaf_display("userId", account_id)
                .close("referencedGroupInfo");
        }
    }
    x.leaf_opt("description", rule.description.as_deref());
    if let Some(tags) = tags {
        x.tag_set(tags);
    }
}

const RULE_FILTERS: &[&str] = &["group-id", "security-group-rule-id"];

/// DescribeSecurityGroupRules. Where the server reads per-rule packet
/// counts from the switches, each rule also carries flowgate's extension
/// fields `flowgatePacketCount` and `flowgateByteCount`: what it admitted,
/// summed over every hypervisor (left out when the switches could not be
/// read, rather than shown wrong).
pub async fn describe_rules(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let ids = parse_ids(ctx.params.list("SecurityGroupRuleId"), RuleId::parse)?;
    let filters = Filters::new(ctx.params.filters()?, RULE_FILTERS)?;
    let wanted = |tenant: &Tenant, group: &SecurityGroup, rule: &Rule| {
        (ids.is_empty() || ids.contains(&rule.id))
            && (filters.is_empty()
                || filters.matches(
                    |name| match name {
                        "group-id" => vec![group.id.to_string()],
                        "security-group-rule-id" => vec![rule.id.to_string()],
                        _ => Vec::new(),
                    },
                    tenant.tags_of(rule.id.as_str()),
                ))
    };
    let selected: Vec<RuleId> = {
        let state = ctx.api.store.read();
        let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
        for id in &ids {
            if !tenant.rules.contains_key(id) {
                return Err(Ec2Error::InvalidPermissionNotFound(format!(
                    "The security group rule ID '{id}' does not exist"
                )));
            }
        }
        tenant
            .groups
            .values()
            .flat_map(|g| g.ingress.iter().chain(&g.egress).map(move |r| (g, r)))
            .filter(|(g, r)| wanted(tenant, g, r))
            .map(|(_, r)| r.id.clone())
            .collect()
    };
    // Read from the switches without holding the model.
    let counts = match ctx.api.rule_counters() {
        Some(counters) if !selected.is_empty() => match counters.rule_counts(&selected).await {
            Ok(counts) => counts,
            Err(err) => {
                tracing::warn!(error = %err, "rule counters unavailable");
                BTreeMap::new()
            }
        },
        _ => BTreeMap::new(),
    };
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    let mut x = ctx.response();
    x.open("securityGroupRuleSet");
    for group in tenant.groups.values() {
        for (egress, rules) in [(false, &group.ingress), (true, &group.egress)] {
            for rule in rules {
                if wanted(tenant, group, rule) {
                    x.open("item");
                    write_rule(
                        &mut x,
                        rule,
                        &group.id,
                        &group.account_id,
                        egress,
                        tenant.tags_of(rule.id.as_str()),
                    );
                    if let Some(count) = counts.get(&rule.id) {
                        x.leaf_display("flowgatePacketCount", count.packets)
                            .leaf_display("flowgateByteCount", count.bytes);
                    }
                    x.close("item");
                }
            }
        }
    }
    x.close("securityGroupRuleSet");
    Ok(ctx.finish(x))
}
