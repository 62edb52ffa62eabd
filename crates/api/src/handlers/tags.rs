//! TagResource, UntagResource and ListTagsForResource on every taggable resource, and the tag
//! rules every operation that takes `tags` shares.

use std::sync::Arc;

use flotilla_model::arn::Resource;
use flotilla_model::{
    ListTagsForResourceRequest, ListTagsForResourceResponse, Tag, TagResourceRequest, TagResourceResponse,
    UntagResourceRequest, UntagResourceResponse,
};
use flotilla_store::{Compare, Op, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::{ApiError, ApiResult};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::{InstanceRecord, TaskDefinitionRecord, TaskRecord};

pub use crate::domain::tags::{merge_tags, validate_tags, MAX_TAGS};

/// The cluster a resource lives in (task definitions live in none).
fn cluster_of(res: &Resource) -> Option<&str> {
    match res {
        Resource::Cluster(name) => Some(name),
        Resource::ContainerInstance { cluster, .. }
        | Resource::Task { cluster, .. }
        | Resource::Service { cluster, .. } => cluster.as_deref(),
        _ => None,
    }
}

/// The store key of the resource an ARN names, if it exists. A resource of a deleted cluster is
/// answered with the words ECS uses for it, which Terraform matches to learn the resource is gone.
fn resource_key(ctx: &Ctx, arn: &str) -> ApiResult<String> {
    let not_found = || ApiError::resource_not_found("The specified resource could not be found.");
    let res = ctx.arns.parse(arn).map_err(|e| ApiError::invalid_parameter(format!("resourceArn '{arn}' {e}.")))?;
    let ix = ctx.cache.read();
    let key = match &res {
        Resource::Cluster(name) => keys::cluster(name),
        Resource::TaskDefinition { family, revision } => keys::task_definition(family, *revision),
        Resource::ContainerInstance { cluster: Some(c), id } => keys::instance(c, id),
        Resource::Task { cluster: Some(c), id } => keys::task(c, id),
        Resource::Service { cluster: Some(c), name } => keys::service(c, name),
        Resource::CapacityProvider(name) if matches!(name.as_str(), "FARGATE" | "FARGATE_SPOT") => {
            return Err(ApiError::invalid_parameter(format!("The {name} capacity provider cannot be tagged.")))
        }
        Resource::CapacityProvider(name) => keys::capacity_provider(name),
        _ => {
            return Err(ApiError::invalid_parameter(format!(
                "resourceArn '{arn}' must use the long ARN format that includes the cluster name."
            )))
        }
    };
    if let Some(cluster) = cluster_of(&res) {
        if ix.clusters.get(&keys::cluster(cluster)).is_some_and(|e| e.value.status.as_deref() == Some("INACTIVE")) {
            return Err(ApiError::invalid_parameter(
                "The specified cluster is inactive. Specify an active cluster and try again.",
            ));
        }
    }
    let exists = if key.starts_with(keys::CLUSTER) {
        ix.clusters.get(&key).is_some_and(|e| e.value.status.as_deref() == Some("ACTIVE"))
    } else if key.starts_with(keys::CAPACITY_PROVIDER) {
        ix.capacity_providers.get(&key).is_some_and(|e| e.value.status.as_deref() == Some("ACTIVE"))
    } else if key.starts_with(keys::TASK_DEFINITION) {
        ix.task_definitions.contains_key(&key)
    } else if key.starts_with(keys::INSTANCE) {
        ix.instances.contains_key(&key)
    } else if key.starts_with(keys::TASK) {
        ix.tasks.contains_key(key.as_str())
    } else {
        ix.services.contains_key(&key)
    };
    if exists {
        Ok(key)
    } else {
        Err(not_found())
    }
}

/// Reads a resource's tags and revision.
fn read_tags(ctx: &Ctx, key: &str) -> Option<(Vec<Tag>, u64)> {
    let ix = ctx.cache.read();
    if key.starts_with(keys::CLUSTER) {
        ix.clusters.get(key).map(|e| (e.value.tags.clone().unwrap_or_default(), e.revision))
    } else if key.starts_with(keys::CAPACITY_PROVIDER) {
        ix.capacity_providers.get(key).map(|e| (e.value.tags.clone().unwrap_or_default(), e.revision))
    } else if key.starts_with(keys::TASK_DEFINITION) {
        ix.task_definitions.get(key).map(|e| (e.value.tags.clone(), e.revision))
    } else if key.starts_with(keys::INSTANCE) {
        ix.instances.get(key).map(|e| (e.value.instance.tags.clone().unwrap_or_default(), e.revision))
    } else if key.starts_with(keys::TASK) {
        ix.tasks.get(key).map(|e| (e.value.task().tags.unwrap_or_default(), e.revision))
    } else {
        ix.services.get(key).map(|e| (e.value.tags.clone().unwrap_or_default(), e.revision))
    }
}

/// The resource's record with `tags` in place of its tags, encoded.
fn with_tags(ctx: &Ctx, key: &str, tags: Vec<Tag>) -> Option<Vec<u8>> {
    let ix = ctx.cache.read();
    let tags_opt = if tags.is_empty() { None } else { Some(tags.clone()) };
    if key.starts_with(keys::CLUSTER) {
        let mut c = (*ix.clusters.get(key)?.value).clone();
        c.tags = tags_opt;
        Some(encode(&c))
    } else if key.starts_with(keys::CAPACITY_PROVIDER) {
        let mut p = (*ix.capacity_providers.get(key)?.value).clone();
        p.tags = tags_opt;
        Some(encode(&p))
    } else if key.starts_with(keys::TASK_DEFINITION) {
        let r: Arc<TaskDefinitionRecord> = ix.task_definitions.get(key)?.value.clone();
        Some(encode(&TaskDefinitionRecord { definition: r.definition.clone(), tags }))
    } else if key.starts_with(keys::INSTANCE) {
        let mut r: InstanceRecord = (*ix.instances.get(key)?.value).clone();
        r.instance.tags = tags_opt;
        Some(encode(&r))
    } else if key.starts_with(keys::TASK) {
        let mut r: TaskRecord = ix.tasks.get(key)?.value.record();
        r.task.tags = tags_opt;
        Some(encode(&r))
    } else {
        let mut s = (*ix.services.get(key)?.value).clone();
        s.tags = tags_opt;
        Some(encode(&s))
    }
}

async fn update_tags(ctx: &Ctx, arn: &str, f: impl Fn(&[Tag]) -> Vec<Tag>) -> ApiResult<()> {
    let key = resource_key(ctx, arn)?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((tags, rev)) = read_tags(ctx, &key) else {
            return Err(ApiError::resource_not_found("The specified resource could not be found."));
        };
        let new = f(&tags);
        let Some(value) = with_tags(ctx, &key, new) else { continue };
        let txn = Txn::new().when(Compare::unchanged(&key, rev)).then(Op::put(&key, value));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Err(ApiError::server("The resource kept changing while its tags were updated; try again."))
}

pub async fn tag_resource(ctx: &Ctx, req: TagResourceRequest) -> ApiResult<TagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let new = req.tags.unwrap_or_default();
    validate_tags(&new)?;
    let (existing, _) = read_tags(ctx, &resource_key(ctx, &arn)?).unwrap_or_default();
    if merge_tags(&existing, &new).len() > MAX_TAGS {
        return Err(ApiError::invalid_parameter(format!("A resource can have at most {MAX_TAGS} tags.")));
    }
    update_tags(ctx, &arn, |old| merge_tags(old, &new)).await?;
    Ok(TagResourceResponse::default())
}

pub async fn untag_resource(ctx: &Ctx, req: UntagResourceRequest) -> ApiResult<UntagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let remove = req.tag_keys.unwrap_or_default();
    update_tags(ctx, &arn, |old| {
        old.iter().filter(|t| !remove.iter().any(|k| Some(k) == t.key.as_ref())).cloned().collect()
    })
    .await?;
    Ok(UntagResourceResponse::default())
}

pub async fn list_tags_for_resource(
    ctx: &Ctx,
    req: ListTagsForResourceRequest,
) -> ApiResult<ListTagsForResourceResponse> {
    let key = resource_key(ctx, req.resource_arn.as_deref().unwrap_or_default())?;
    let (tags, _) = read_tags(ctx, &key).unwrap_or_default();
    Ok(ListTagsForResourceResponse { tags: Some(tags) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn tag_rules() {
        assert!(validate_tags(&[tag("a", "b")]).is_ok());
        assert!(validate_tags(&[tag("", "b")]).unwrap_err().message.contains("tags[0].key"));
        assert!(validate_tags(&[tag("aws:x", "b")]).unwrap_err().message.contains("reserved"));
        assert!(validate_tags(&[tag("a", "1"), tag("a", "2")]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(validate_tags(&many).is_err());
        assert!(validate_tags(&[tag(&"k".repeat(129), "v")]).is_err());
        assert!(validate_tags(&[tag("k", &"v".repeat(257))]).is_err());
    }

    #[test]
    fn merge_overwrites_and_sorts() {
        let merged = merge_tags(&[tag("b", "1"), tag("a", "1")], &[tag("b", "2")]);
        assert_eq!(merged, vec![tag("a", "1"), tag("b", "2")]);
    }
}
