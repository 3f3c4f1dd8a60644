//! Tags: CreateTags, DeleteTags, DescribeTags.

use model::Ec2Error;

use super::Ctx;
use crate::filter::Filters;

pub async fn create(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let resources = ctx.params.list("ResourceId");
    let tags = ctx.params.tags();
    let account = ctx.account().clone();
    ctx.mutate(move |state, _, _| state.create_tags(&account, &resources, &tags))
        .await?;
    Ok(ctx.ok())
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let resources = ctx.params.list("ResourceId");
    let tags: Vec<(String, Option<String>)> = ctx
        .params
        .structs("Tag")
        .into_iter()
        .filter_map(|t| Some((t.get("Key")?.to_string(), t.get("Value").map(str::to_string))))
        .collect();
    let account = ctx.account().clone();
    ctx.mutate(move |state, _, _| state.delete_tags(&account, &resources, &tags))
        .await?;
    Ok(ctx.ok())
}

/// EC2's resource type for an id.
fn resource_type(id: &str) -> &'static str {
    if id.starts_with("i-") {
        "instance"
    } else if id.starts_with("sg-") {
        "security-group"
    } else if id.starts_with("eipalloc-") {
        "elastic-ip"
    } else {
        "unknown"
    }
}

pub fn describe(ctx: &Ctx<'_>) -> Result<String, Ec2Error> {
    let filters = Filters::new(
        ctx.params.filters()?,
        &["resource-id", "resource-type", "key", "value"],
    )?;
    let state = ctx.api.store.read();
    let tenant = state.tenant(ctx.account()).ok_or(Ec2Error::AuthFailure)?;
    let selected = tenant
        .tags
        .iter()
        .flat_map(|(resource, tags)| tags.iter().map(move |(k, v)| (resource, k, v)))
        .filter(|(resource, key, value)| {
            filters.matches(
                |name| match name {
                    "resource-id" => vec![resource.to_string()],
                    "resource-type" => vec![resource_type(resource).to_string()],
                    "key" => vec![key.to_string()],
                    "value" => vec![value.to_string()],
                    _ => Vec::new(),
                },
                None,
            )
        });
    let mut x = ctx.response();
    x.items("tagSet", selected, |x, (resource, key, value)| {
        x.leaf("resourceId", resource)
            .leaf("resourceType", resource_type(resource))
            .leaf("key", key)
            .leaf("value", value);
    });
    Ok(ctx.finish(x))
}
