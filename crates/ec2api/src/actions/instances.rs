//! Instances: RunInstances, DescribeInstances, TerminateInstances and
//! ModifyInstanceAttribute (GroupId.N). Instances here are records with
//! EC2's state machine; a compute driver makes them real.

use std::collections::BTreeMap;

use model::{
    Ec2Error, GroupId, GroupRef, ImageId, Instance, InstanceId, InstanceState, LaunchRequest, SubnetId,
    Tenant,
};

use base64::Engine as _;

use super::{Ctx, parse_ids, parse_ip};
use crate::auth::format_iso8601_ms;
use crate::filter::Filters;
use crate::xml::Xml;

pub async fn run(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let p = ctx.params;
    let image_id = ImageId::parse(p.required("ImageId")?)?;
    let count = |name: &str| -> Result<u32, Ec2Error> {
        match p.int(name)? {
            None => Ok(1),
            Some(n) => u32::try_from(n)
                .map_err(|_| Ec2Error::InvalidParameterValue(format!("Invalid value '{n}' for {name}"))),
        }
    };
    let mut groups: Vec<GroupRef> = p.list("SecurityGroup").into_iter().map(GroupRef::Name).collect();
    for id in p.list("SecurityGroupId") {
        groups.push(GroupRef::Id(GroupId::parse(&id)?));
    }
    if p.get("NetworkInterface.1.DeviceIndex").is_some() {
        return Err(Ec2Error::UnsupportedOperation(
            "NetworkInterface.N is not supported".into(),
        ));
    }
    let request = LaunchRequest {
        image_id,
        instance_type: p
            .get("InstanceType")
            .filter(|t| !t.is_empty())
            .unwrap_or("m1.small")
            .to_string(),
        min_count: count("MinCount")?,
        max_count: count("MaxCount")?,
        groups,
        subnet_id: p.get("SubnetId").map(SubnetId::parse).transpose()?,
        private_ip: p.get("PrivateIpAddress").map(parse_ip).transpose()?,
        user_data: p.get("UserData").map(str::to_string),
        key_name: p.get("KeyName").map(str::to_string),
        client_token: p.get("ClientToken").filter(|t| !t.is_empty()).map(str::to_string),
        availability_zone: p
            .get("Placement.AvailabilityZone")
            .filter(|z| !z.is_empty())
            .unwrap_or(&ctx.api.config.zone)
            .to_string(),
    };
    if request.availability_zone != ctx.api.config.zone
        && !ctx.api.zones().contains(&request.availability_zone)
    {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Invalid availability zone: [{}]",
            request.availability_zone
        )));
    }
    let tags = p.tag_specifications("instance");
    let account = ctx.account().clone();
    let launched = ctx
        .mutate(move |state, entropy, now| {
            let launched = state.run_instances(&account, &request, now, entropy)?;
            let fresh = launched.iter().all(|i| i.launch_ms == now);
            if !tags.is_empty() && fresh {
                let ids: Vec<String> = launched.iter().map(|i| i.id.to_string()).collect();
                state.create_tags(&account, &ids, &tags)?;
            }
            Ok(launched)
        })
        .await?;
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    let mut x = ctx.response();
    if let Some(first) = launched.first() {
        write_reservation_head(&mut x, tenant, first);
    }
    x.items("instancesSet", &launched, |x, i| write_instance(x, tenant, i));
    Ok(ctx.finish(x))
}

fn write_reservation_head(x: &mut Xml, tenant: &Tenant, first: &Instance) {
    x.leaf_display("reservationId", &first.reservation_id)
        .leaf_display("ownerId", &first.account_id);
    write_group_set(x, tenant, &first.group_ids);
}

fn write_group_set(x: &mut Xml, tenant: &Tenant, group_ids: &[GroupId]) {
    x.items("groupSet", group_ids, |x, id| {
        x.leaf_display("groupId", id);
        if let Some(g) = tenant.groups.get(id) {
            x.leaf("groupName", &g.name);
        }
    });
}

fn public_ip_of(tenant: &Tenant, id: &InstanceId) -> Option<std::net::Ipv4Addr> {
    tenant
        .addresses
        .values()
        .find(|a| a.association.as_ref().is_some_and(|x| &x.instance_id == id))
        .map(|a| a.public_ip)
}

fn write_instance(x: &mut Xml, tenant: &Tenant, i: &Instance) {
    let public_ip = public_ip_of(tenant, &i.id);
    x.leaf_display("instanceId", &i.id)
        .leaf_display("imageId", &i.image_id);
    x.open("instanceState")
        .leaf_display("code", i.state.code())
        .leaf("name", i.state.name())
        .close("instanceState");
    let private_dns = format!(
        "ip-{}.flowgate.internal",
        i.private_ip.to_string().replace('.', "-")
    );
    let live = i.state.is_live();
    x.leaf("privateDnsName", if live { &private_dns } else { "" });
    x.leaf("dnsName", "");
    x.leaf(
        "reason",
        i.state_reason.as_deref().map(|_| "User initiated").unwrap_or(""),
    );
    x.leaf_opt("keyName", i.key_name.as_deref());
    x.leaf_display("amiLaunchIndex", i.launch_index);
    x.raw("<productCodes/>");
    x.leaf("instanceType", &i.instance_type);
    x.leaf("launchTime", &format_iso8601_ms(i.launch_ms));
    x.open("placement")
        .leaf("availabilityZone", &i.availability_zone)
        .leaf("groupName", "")
        .leaf("tenancy", "default")
        .close("placement");
    x.open("monitoring").leaf("state", "disabled").close("monitoring");
    if live {
        x.leaf_display("subnetId", &i.subnet_id);
        x.leaf_display("privateIpAddress", i.private_ip);
        if let Some(ip) = public_ip {
            x.leaf_display("ipAddress", ip);
        }
    }
    x.leaf("sourceDestCheck", "true");
    write_group_set(x, tenant, &i.group_ids);
    if let Some(reason) = &i.state_reason {
        x.open("stateReason")
            .leaf("code", reason)
            .leaf("message", &format!("{reason}: User initiated shutdown"))
            .close("stateReason");
    }
    x.leaf("architecture", "x86_64")
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", "/dev/vda")
        .raw("<blockDeviceMapping/>")
        .leaf("virtualizationType", "hvm")
        .leaf_opt("clientToken", i.client_token.as_deref())
        .leaf("hypervisor", "kvm");
    if live {
        x.open("networkInterfaceSet").open("item");
        x.leaf_display("subnetId", &i.subnet_id)
            .leaf_display("ownerId", &i.account_id)
            .leaf("status", "in-use")
            .leaf_display("macAddress", i.mac)
            .leaf_display("privateIpAddress", i.private_ip)
            .leaf("sourceDestCheck", "true");
        write_group_set(x, tenant, &i.group_ids);
        x.open("attachment")
            .leaf("deviceIndex", "0")
            .leaf("status", "attached")
            .close("attachment");
        if let Some(ip) = public_ip {
            x.open("association")
                .leaf_display("publicIp", ip)
                .leaf_display("ipOwnerId", &i.account_id)
                .close("association");
        }
        x.close("item").close("networkInterfaceSet");
    }
    if let Some(tags) = tenant.tags_of(i.id.as_str()) {
        x.tag_set(tags);
    }
    // flowgate's own fields: where the instance runs and its switch port.
    x.leaf("flowgateInterfaceName", &i.interface_name);
    if let Some(hv) = &i.hypervisor {
        x.leaf("flowgateHypervisor", hv);
    }
}

const FILTERS: &[&str] = &[
    "availability-zone",
    "group-id",
    "group-name",
    "image-id",
    "instance-id",
    "instance-state-code",
    "instance-state-name",
    "instance-type",
    "instance.group-id",
    "instance.group-name",
    "ip-address",
    "key-name",
    "owner-id",
    "private-ip-address",
    "reservation-id",
    "subnet-id",
    "client-token",
];

fn field(tenant: &Tenant, i: &Instance, name: &str) -> Vec<String> {
    let group_names = || {
        i.group_ids
            .iter()
            .filter_map(|g| tenant.groups.get(g).map(|g| g.name.clone()))
            .collect()
    };
    match name {
        "availability-zone" => vec![i.availability_zone.clone()],
        "group-id" | "instance.group-id" => i.group_ids.iter().map(|g| g.to_string()).collect(),
        "group-name" | "instance.group-name" => group_names(),
        "image-id" => vec![i.image_id.to_string()],
        "instance-id" => vec![i.id.to_string()],
        "instance-state-code" => vec![i.state.code().to_string()],
        "instance-state-name" => vec![i.state.name().to_string()],
        "instance-type" => vec![i.instance_type.clone()],
        "ip-address" => public_ip_of(tenant, &i.id)
            .map(|ip| ip.to_string())
            .into_iter()
            .collect(),
        "key-name" => i.key_name.clone().into_iter().collect(),
        "owner-id" => vec![i.account_id.to_string()],
        "private-ip-address" => vec![i.private_ip.to_string()],
        "reservation-id" => vec![i.reservation_id.to_string()],
        "subnet-id" => vec![i.subnet_id.to_string()],
        "client-token" => i.client_token.clone().into_iter().collect(),
        _ => Vec::new(),
    }
}

pub fn describe(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let ids = parse_ids(ctx.params.list("InstanceId"), InstanceId::parse)?;
    let filters = Filters::new(ctx.params.filters()?, FILTERS)?;
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !tenant.instances.contains_key(id))
        .map(|id| id.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Ec2Error::InvalidInstanceIdNotFound(missing.join(", ")));
    }
    // Reservations in launch order, instances by launch index.
    let mut reservations: BTreeMap<(u64, String), Vec<&Instance>> = BTreeMap::new();
    for i in tenant.instances.values() {
        let wanted = (ids.is_empty() || ids.contains(&i.id))
            && (filters.is_empty()
                || filters.matches(|name| field(tenant, i, name), tenant.tags_of(i.id.as_str())));
        if wanted {
            reservations
                .entry((i.launch_ms, i.reservation_id.to_string()))
                .or_default()
                .push(i);
        }
    }
    let mut x = ctx.response();
    x.items(
        "reservationSet",
        reservations.into_values(),
        |x, mut instances| {
            instances.sort_by_key(|i| i.launch_index);
            write_reservation_head(x, tenant, instances[0]);
            x.items("instancesSet", instances, |x, i| write_instance(x, tenant, i));
        },
    );
    Ok(ctx.finish(x))
}

pub async fn terminate(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let ids = parse_ids(ctx.params.list("InstanceId"), InstanceId::parse)?;
    let account = ctx.account().clone();
    let results = ctx
        .mutate(move |state, _, _| state.terminate_instances(&account, &ids))
        .await?;
    let mut x = ctx.response();
    x.items(
        "instancesSet",
        results,
        |x, (id, previous, current): (InstanceId, InstanceState, InstanceState)| {
            x.leaf_display("instanceId", id);
            x.open("currentState")
                .leaf_display("code", current.code())
                .leaf("name", current.name())
                .close("currentState");
            x.open("previousState")
                .leaf_display("code", previous.code())
                .leaf("name", previous.name())
                .close("previousState");
        },
    );
    Ok(ctx.finish(x))
}

pub async fn modify_attribute(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let id = InstanceId::parse(ctx.params.required("InstanceId")?)?;
    let groups = parse_ids(ctx.params.list("GroupId"), GroupId::parse)?;
    if groups.is_empty() {
        return Err(Ec2Error::UnsupportedOperation(
            "flowgate supports ModifyInstanceAttribute with GroupId.N only".into(),
        ));
    }
    let account = ctx.account().clone();
    ctx.mutate(move |state, _, _| state.set_instance_groups(&account, &id, &groups))
        .await?;
    Ok(ctx.ok())
}

/// GetConsoleOutput: what the instance printed (base64), as far as its
/// driver keeps it; empty for instances without a console.
pub async fn console_output(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let id = InstanceId::parse(ctx.params.required("InstanceId")?)?;
    let instance = {
        let state = ctx.api.store.read();
        state.resolve_instance(ctx.account(), &id)?.clone()
    };
    let output = match ctx.api.console() {
        Some(driver) => driver.console_output(&instance).await.unwrap_or_default(),
        None => String::new(),
    };
    let mut x = ctx.response();
    x.leaf_display("instanceId", &instance.id);
    x.leaf("timestamp", &format_iso8601_ms(super::now_ms()));
    x.leaf(
        "output",
        &base64::engine::general_purpose::STANDARD.encode(output),
    );
    Ok(ctx.finish(x))
}
