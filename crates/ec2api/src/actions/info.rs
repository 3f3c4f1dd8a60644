//! The catalogue: DescribeImages, DescribeRegions, DescribeAvailabilityZones.

use model::{Ec2Error, ImageId};

use super::{Ctx, parse_ids};
use crate::filter::Filters;

const IMAGE_FILTERS: &[&str] = &[
    "image-id",
    "name",
    "state",
    "architecture",
    "image-type",
    "is-public",
];

pub fn describe_images(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let ids = parse_ids(ctx.params.list("ImageId"), ImageId::parse)?;
    let filters = Filters::new(ctx.params.filters()?, IMAGE_FILTERS)?;
    let state = ctx.api.store.read();
    for id in &ids {
        if state.image(id).is_none() {
            return Err(Ec2Error::InvalidImageIdNotFound(id.to_string()));
        }
    }
    let selected = state.images().filter(|i| {
        (ids.is_empty() || ids.contains(&i.id))
            && filters.matches(
                |name| match name {
                    "image-id" => vec![i.id.to_string()],
                    "name" => vec![i.name.clone()],
                    "state" => vec!["available".into()],
                    "architecture" => vec!["x86_64".into()],
                    "image-type" => vec!["machine".into()],
                    "is-public" => vec!["true".into()],
                    _ => Vec::new(),
                },
                None,
            )
    });
    let mut x = ctx.response();
    x.items("imagesSet", selected, |x, i| {
        x.leaf_display("imageId", &i.id)
            .leaf("imageLocation", &format!("flowgate/{}", i.name))
            .leaf("imageState", "available")
            .leaf("imageOwnerId", "000000000000")
            .leaf("isPublic", "true")
            .leaf("architecture", "x86_64")
            .leaf("imageType", "machine")
            .leaf("name", &i.name)
            .leaf("description", &i.description)
            .leaf("rootDeviceType", "ebs")
            .leaf("rootDeviceName", "/dev/vda")
            .raw("<blockDeviceMapping/>")
            .leaf("virtualizationType", "hvm")
            .leaf("hypervisor", "kvm");
    });
    Ok(ctx.finish(x))
}

pub fn describe_regions(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let config = &ctx.api.config;
    let wanted = ctx.params.list("RegionName");
    let filters = Filters::new(ctx.params.filters()?, &["region-name", "endpoint"])?;
    let endpoint = config.endpoint.clone();
    let show = (wanted.is_empty() || wanted.contains(&config.region))
        && filters.matches(
            |name| match name {
                "region-name" => vec![config.region.clone()],
                "endpoint" => vec![endpoint.clone()],
                _ => Vec::new(),
            },
            None,
        );
    if let Some(unknown) = wanted.iter().find(|r| **r != config.region) {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Invalid region: {unknown}"
        )));
    }
    let mut x = ctx.response();
    x.items("regionInfo", show.then_some(()), |x, ()| {
        x.leaf("regionName", &config.region)
            .leaf("regionEndpoint", &endpoint)
            .leaf("optInStatus", "opt-in-not-required");
    });
    Ok(ctx.finish(x))
}

pub fn describe_zones(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let zones = ctx.api.zones();
    let wanted = ctx.params.list("ZoneName");
    if let Some(unknown) = wanted.iter().find(|z| !zones.contains(z)) {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Invalid availability zone: [{unknown}]"
        )));
    }
    let filters = Filters::new(ctx.params.filters()?, &["zone-name", "region-name", "state"])?;
    let region = &ctx.api.config.region;
    let selected = zones.iter().filter(|z| {
        (wanted.is_empty() || wanted.contains(z))
            && filters.matches(
                |name| match name {
                    "zone-name" => vec![z.to_string()],
                    "region-name" => vec![region.clone()],
                    "state" => vec!["available".into()],
                    _ => Vec::new(),
                },
                None,
            )
    });
    let mut x = ctx.response();
    x.items("availabilityZoneInfo", selected, |x, z| {
        x.leaf("zoneName", z)
            .leaf("zoneState", "available")
            .leaf("regionName", region)
            .leaf("zoneId", z)
            .leaf("zoneType", "availability-zone")
            .raw("<messageSet/>");
    });
    Ok(ctx.finish(x))
}
