//! The tags a launched task gets: the request's, the definition's or the service's when asked to
//! propagate them, and ECS's own managed tags with `enableECSManagedTags`.

use flotilla_model::{Tag, TaskDefinition};

use crate::context::Ctx;
use crate::domain::tags::merge_tags;
use crate::state::keys;

/// The tags ECS adds itself when `enableECSManagedTags` is on: the cluster's name, and the
/// service's for a service's tasks. User tags cannot use the `aws:` prefix, so these never clash.
pub fn managed_tags(cluster: &str, service: Option<&str>) -> Vec<Tag> {
    let tag = |key: &str, value: &str| Tag { key: Some(key.into()), value: Some(value.into()) };
    let mut tags = vec![tag("aws:ecs:clusterName", cluster)];
    if let Some(service) = service {
        tags.push(tag("aws:ecs:serviceName", service));
    }
    tags
}

/// The tags a task started by RunTask or StartTask gets: [`task_tags`], and ECS's own with
/// `enableECSManagedTags`.
pub fn launch_tags(
    ctx: &Ctx,
    def: &TaskDefinition,
    cluster: &str,
    tags: Vec<Tag>,
    propagate: Option<&str>,
    managed: Option<bool>,
) -> Vec<Tag> {
    let mut tags = task_tags(ctx, def, tags, propagate);
    if managed == Some(true) {
        tags.extend(managed_tags(cluster, None));
    }
    tags
}

/// The tags a new task gets: the request's, plus the definition's when asked to propagate.
pub fn task_tags(ctx: &Ctx, def: &TaskDefinition, tags: Vec<Tag>, propagate: Option<&str>) -> Vec<Tag> {
    if propagate != Some("TASK_DEFINITION") {
        return tags;
    }
    let key = keys::task_definition(def.family.as_deref().unwrap_or(""), def.revision.unwrap_or(0) as u32);
    let inherited = ctx.cache.read().task_definitions.get(&key).map(|e| e.value.tags.clone()).unwrap_or_default();
    merge_tags(&inherited, &tags)
}
