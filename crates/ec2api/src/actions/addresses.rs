//! Elastic IPs: AllocateAddress, AssociateAddress, DisassociateAddress,
//! ReleaseAddress, DescribeAddresses.

use model::{
    Address, AddressRef, AllocationId, AssociationId, DisassociateRef, Domain, Ec2Error, InstanceId,
};

use super::{Ctx, parse_ids, parse_ip};
use crate::filter::Filters;
use crate::xml::Xml;

pub async fn allocate(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let domain = match ctx.params.get("Domain") {
        None | Some("") | Some("vpc") => Domain::Vpc,
        Some("standard") => Domain::Standard,
        Some(other) => {
            return Err(Ec2Error::InvalidParameterValue(format!(
                "Invalid value '{other}' for domain. Valid values are vpc and standard."
            )));
        }
    };
    if ctx.params.get("Address").is_some() || ctx.params.get("PublicIpv4Pool").is_some() {
        return Err(Ec2Error::UnsupportedOperation(
            "Choosing the address or pool is not supported; flowgate hands out the next free address".into(),
        ));
    }
    let tags = ctx.params.tag_specifications("elastic-ip");
    let account = ctx.account().clone();
    let quota = ctx.api.config.addresses_per_account;
    let address = ctx
        .mutate(move |state, entropy, _| {
            let address = state.allocate_address(&account, domain, quota, entropy)?;
            if !tags.is_empty() {
                state.create_tags(&account, &[address.allocation_id.to_string()], &tags)?;
            }
            Ok(address)
        })
        .await?;
    let mut x = ctx.response();
    x.leaf_display("publicIp", address.public_ip)
        .leaf("domain", address.domain.as_str())
        .leaf_display("allocationId", &address.allocation_id)
        .leaf_display("publicIpv4Pool", &address.pool_id)
        .leaf("networkBorderGroup", &ctx.api.config.region);
    Ok(ctx.finish(x))
}

fn address_ref(ctx: &Ctx<'_>, id_param: &str) -> Result<AddressRef, Ec2Error> {
    match (ctx.params.get("PublicIp"), ctx.params.get(id_param)) {
        (Some(ip), None) => Ok(AddressRef::PublicIp(parse_ip(ip)?)),
        (None, Some(id)) => Ok(AddressRef::Allocation(AllocationId::parse(id)?)),
        (Some(_), Some(_)) => Err(Ec2Error::InvalidParameterCombination(format!(
            "You may specify PublicIp or {id_param}, but not both in the same call"
        ))),
        (None, None) => Err(Ec2Error::MissingParameter(format!("PublicIp or {id_param}"))),
    }
}

pub async fn associate(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let address = address_ref(ctx, "AllocationId")?;
    if ctx.params.get("NetworkInterfaceId").is_some() {
        return Err(Ec2Error::UnsupportedOperation(
            "NetworkInterfaceId is not supported; use InstanceId".into(),
        ));
    }
    let instance = InstanceId::parse(ctx.params.required("InstanceId")?)?;
    let private_ip = ctx.params.get("PrivateIpAddress").map(parse_ip).transpose()?;
    let allow = ctx.params.flag("AllowReassociation")?;
    let account = ctx.account().clone();
    let association = ctx
        .mutate(move |state, entropy, _| {
            state.associate_address(&account, &address, &instance, private_ip, allow, entropy)
        })
        .await?;
    let mut x = ctx.response();
    x.leaf("return", "true")
        .leaf_display("associationId", &association.id);
    Ok(ctx.finish(x))
}

pub async fn disassociate(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let by = match (ctx.params.get("PublicIp"), ctx.params.get("AssociationId")) {
        (Some(ip), None) => DisassociateRef::PublicIp(parse_ip(ip)?),
        (None, Some(id)) => DisassociateRef::Association(AssociationId::parse(id)?),
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "You may specify PublicIp or AssociationId, but not both in the same call".into(),
            ));
        }
        (None, None) => return Err(Ec2Error::MissingParameter("PublicIp or AssociationId".into())),
    };
    let account = ctx.account().clone();
    ctx.mutate(move |state, _, _| state.disassociate_address(&account, &by))
        .await?;
    Ok(ctx.ok())
}

pub async fn release(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let address = address_ref(ctx, "AllocationId")?;
    let account = ctx.account().clone();
    ctx.mutate(move |state, _, _| state.release_address(&account, &address))
        .await?;
    Ok(ctx.ok())
}

const FILTERS: &[&str] = &[
    "allocation-id",
    "association-id",
    "domain",
    "instance-id",
    "private-ip-address",
    "public-ip",
    "public-ipv4-pool",
    "network-border-group",
];

pub fn describe(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let public_ips = parse_ids(ctx.params.list("PublicIp"), parse_ip)?;
    let allocation_ids = parse_ids(ctx.params.list("AllocationId"), AllocationId::parse)?;
    let filters = Filters::new(ctx.params.filters()?, FILTERS)?;
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    for ip in &public_ips {
        if !tenant.addresses.values().any(|a| &a.public_ip == ip) {
            return Err(Ec2Error::InvalidAddressNotFound(ip.to_string()));
        }
    }
    for id in &allocation_ids {
        if !tenant.addresses.contains_key(id) {
            return Err(Ec2Error::InvalidAllocationIdNotFound(id.to_string()));
        }
    }
    let mut x = ctx.response();
    let selected = tenant.addresses.values().filter(|a| {
        (public_ips.is_empty() && allocation_ids.is_empty()
            || public_ips.contains(&a.public_ip)
            || allocation_ids.contains(&a.allocation_id))
            && (filters.is_empty()
                || filters.matches(
                    |name| field(a, name, &ctx.api.config.region),
                    tenant.tags_of(a.allocation_id.as_str()),
                ))
    });
    x.items("addressesSet", selected, |x, a| {
        write_address(x, a, tenant.tags_of(a.allocation_id.as_str()))
    });
    Ok(ctx.finish(x))
}

fn field(a: &Address, name: &str, region: &str) -> Vec<String> {
    let assoc = a.association.as_ref();
    match name {
        "allocation-id" => vec![a.allocation_id.to_string()],
        "association-id" => assoc.map(|x| x.id.to_string()).into_iter().collect(),
        "domain" => vec![a.domain.as_str().to_string()],
        "instance-id" => assoc.map(|x| x.instance_id.to_string()).into_iter().collect(),
        "private-ip-address" => assoc.map(|x| x.private_ip.to_string()).into_iter().collect(),
        "public-ip" => vec![a.public_ip.to_string()],
        "public-ipv4-pool" => vec![a.pool_id.to_string()],
        "network-border-group" => vec![region.to_string()],
        _ => Vec::new(),
    }
}

fn write_address(x: &mut Xml, a: &Address, tags: Option<&std::collections::BTreeMap<String, String>>) {
    x.leaf_display("publicIp", a.public_ip)
        .leaf_display("allocationId", &a.allocation_id)
        .leaf("domain", a.domain.as_str());
    if let Some(assoc) = &a.association {
        x.leaf_display("instanceId", &assoc.instance_id)
            .leaf_display("associationId", &assoc.id)
            .leaf_display("privateIpAddress", assoc.private_ip);
    }
    x.leaf_display("publicIpv4Pool", &a.pool_id);
    if let Some(tags) = tags {
        x.tag_set(tags);
    }
}
