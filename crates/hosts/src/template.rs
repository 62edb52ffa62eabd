//! What a group's hosts are, from its launch template: the instance type (the first override
//! Flotilla knows, else the template's), the CPU and memory their agents register (less
//! `ECS_RESERVED_MEMORY`) and the `ECS_*` settings of the user data, with the cluster they join.
//! The group loop launches by it and ECS's managed scaling sizes fresh hosts by it.

use base64::Engine as _;

use crate::ecs_config::{self, EcsConfig};
use crate::{instance_types, AutoScalingGroup, LaunchTemplate};

/// What every launch of a group shares, from its launch template.
#[derive(Debug, Clone)]
pub struct Template {
    pub instance_type: String,
    pub cpu: i32,
    pub memory: i32,
    pub ecs_config: EcsConfig,
    pub cluster: String,
}

/// The group's launch template, resolved; or why nothing can be launched from it.
pub fn resolve(
    group: &AutoScalingGroup,
    templates: &std::collections::HashMap<String, LaunchTemplate>,
) -> Result<Template, String> {
    let r = group.template_ref().ok_or("The group names no launch template.")?;
    let t = templates
        .get(&r.id)
        .or_else(|| templates.values().find(|t| t.name == r.name))
        .ok_or_else(|| format!("The launch template {} ({}) does not exist.", r.name, r.id))?;
    let v = t.version(r.version.as_deref()).ok_or_else(|| {
        format!("The launch template {} has no version {}.", t.name, r.version.as_deref().unwrap_or("$Default"))
    })?;
    let overrides = group.mixed_instances_policy.as_ref().map(|m| m.instance_types.as_slice()).unwrap_or_default();
    // The first override Flotilla knows (in priority order), else the template's type.
    let type_name = overrides
        .iter()
        .find(|o| instance_types::lookup(o).is_some())
        .cloned()
        .or_else(|| v.instance_type.clone())
        .or_else(|| overrides.first().cloned())
        .ok_or_else(|| format!("The launch template {} version {} gives no InstanceType.", t.name, v.number))?;
    let it = instance_types::lookup(&type_name)
        .ok_or_else(|| format!("The instance type {type_name} is not one Flotilla knows."))?;
    let user_data = match v.user_data.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("The launch template's UserData is not base64: {e}"))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => String::new(),
    };
    let ecs_config = ecs_config::parse(&user_data).map_err(|e| format!("The launch template's UserData: {e}"))?;
    Ok(Template {
        instance_type: type_name,
        cpu: it.ecs_cpu(),
        memory: it.ecs_memory(ecs_config.reserved_memory_mib),
        cluster: ecs_config.cluster.clone().unwrap_or_else(|| "default".into()),
        ecs_config,
    })
}
