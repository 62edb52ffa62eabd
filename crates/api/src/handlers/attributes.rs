//! Attributes on container instances: PutAttributes, DeleteAttributes, ListAttributes (the name
//! and value rules ECS applies to them are `domain::attributes`).

use flotilla_model::{
    Attribute, DeleteAttributesRequest, DeleteAttributesResponse, ListAttributesRequest, ListAttributesResponse,
    PutAttributesRequest, PutAttributesResponse,
};

use super::active_cluster;
use super::container_instances::{lookup, modify};
use crate::context::Ctx;
pub use crate::domain::attributes::check_attributes;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::cache::range_prefix;
use crate::state::keys;

/// Custom attributes a container instance may carry beyond the `ecs.` ones.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

fn custom_count(attrs: &[Attribute]) -> usize {
    attrs.iter().filter(|a| !a.name.as_deref().unwrap_or("").starts_with("ecs.")).count()
}

/// Applies `edit` to the attribute list of each attribute's target instance, after checking that
/// every target exists (so a missing one leaves nothing half-written); answers the attributes
/// as ECS echoes them, with the target's ARN.
async fn edit_targets(
    ctx: &Ctx,
    cluster: Option<&str>,
    attrs: Vec<Attribute>,
    edit: impl Fn(&mut Vec<Attribute>, &Attribute) -> ApiResult<()>,
) -> ApiResult<Vec<Attribute>> {
    let (cluster, _) = active_cluster(ctx, cluster)?;
    super::check_batch("attributes", attrs.len(), 10)?;
    check_attributes(&attrs, true)?;
    let not_found = |target: &str| ApiError::target_not_found(format!("Could not find {target}."));
    for a in &attrs {
        let target = a.target_id.as_deref().unwrap_or("");
        if lookup(ctx, &cluster, target).is_none() {
            return Err(not_found(target));
        }
    }
    let mut out = Vec::with_capacity(attrs.len());
    for a in &attrs {
        let target = a.target_id.clone().unwrap_or_default();
        let ci = modify(ctx, &cluster, &target, |ci| {
            let had_none = ci.attributes.is_none();
            edit(ci.attributes.get_or_insert_with(Vec::new), a)?;
            // An edit that leaves nothing changes nothing: an absent list stays absent.
            if had_none && ci.attributes.as_ref().is_some_and(|l| l.is_empty()) {
                ci.attributes = None;
            }
            Ok(())
        })
        .await?
        .ok_or_else(|| not_found(&target))?;
        out.push(Attribute {
            name: a.name.clone(),
            value: a.value.clone(),
            target_type: Some("container-instance".into()),
            target_id: ci.container_instance_arn.clone(),
        });
    }
    Ok(out)
}

pub async fn put(ctx: &Ctx, req: PutAttributesRequest) -> ApiResult<PutAttributesResponse> {
    let attrs = req.attributes.unwrap_or_default();
    let out = edit_targets(ctx, req.cluster.as_deref(), attrs, |list, a| {
        match list.iter_mut().find(|x| x.name == a.name) {
            Some(x) => x.value = a.value.clone(),
            None => list.push(Attribute { name: a.name.clone(), value: a.value.clone(), ..Default::default() }),
        }
        if custom_count(list) > MAX_CUSTOM_ATTRIBUTES {
            return Err(ApiError::new(
                "AttributeLimitExceededException",
                format!("You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(PutAttributesResponse { attributes: Some(out) })
}

pub async fn delete(ctx: &Ctx, req: DeleteAttributesRequest) -> ApiResult<DeleteAttributesResponse> {
    let attrs = req.attributes.unwrap_or_default();
    let out = edit_targets(ctx, req.cluster.as_deref(), attrs, |list, a| {
        list.retain(|x| x.name != a.name);
        Ok(())
    })
    .await?;
    Ok(DeleteAttributesResponse { attributes: Some(out) })
}

pub async fn list(ctx: &Ctx, req: ListAttributesRequest) -> ApiResult<ListAttributesResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(ApiError::invalid_parameter("attributeValue can only be used together with attributeName."));
    }
    let name = req.attribute_name.clone();
    let value = req.attribute_value.clone();
    let scope =
        format!("ListAttributes\0{cluster}\0{}\0{}", name.as_deref().unwrap_or(""), value.as_deref().unwrap_or(""));
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    let ix = ctx.cache.read();
    let all = range_prefix(&ix.instances, &prefix)
        .filter(|(_, e)| e.value.instance.status.as_deref() != Some("INACTIVE"))
        .flat_map(|(k, e)| {
            let arn = e.value.instance.container_instance_arn.clone();
            e.value
                .instance
                .attributes
                .iter()
                .flatten()
                .map(move |a| (format!("{k}\0{}", a.name.as_deref().unwrap_or("")), a.clone(), arn.clone()))
        })
        .filter(|(_, a, _)| name.as_ref().is_none_or(|n| a.name.as_ref() == Some(n)))
        .filter(|(_, a, _)| value.as_ref().is_none_or(|v| a.value.as_ref() == Some(v)));
    let (items, next) = page(&ctx.pager, &scope, &pr, all, |(k, _, _)| k.as_str());
    Ok(ListAttributesResponse {
        attributes: Some(
            items
                .into_iter()
                .map(|(_, a, arn)| Attribute { target_type: Some("container-instance".into()), target_id: arn, ..a })
                .collect(),
        ),
        next_token: next,
    })
}
