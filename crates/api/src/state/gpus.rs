//! An instance's GPUs as its records hold them: the ids it registered (its `GPU` STRINGSET
//! resource) and those no task holds. Read by the scheduling snapshots and DescribeContainerInstances
//! here, and by the launch path (`domain::launch::gpus`), which hands them out.

use std::collections::BTreeSet;

use flotilla_model::{ContainerInstance, Resource};

/// The name of the registered resource that lists an instance's GPUs.
pub const GPU_RESOURCE: &str = "GPU";

/// The GPU ids an instance registered, in the order it gave them.
pub fn registered(ci: &ContainerInstance) -> impl Iterator<Item = &String> {
    let resources = ci.registered_resources.iter().flatten();
    let gpu = resources.filter(|r| r.name.as_deref() == Some(GPU_RESOURCE));
    gpu.flat_map(|r| r.string_set_value.iter().flatten())
}

/// The instance's GPUs no task holds, in registration order.
pub fn free(ci: &ContainerInstance, used: &BTreeSet<String>) -> Vec<String> {
    registered(ci).filter(|g| !used.contains(*g)).cloned().collect()
}

/// What is left of one registered `GPU` resource (remainingResources).
pub fn free_of(r: &Resource, used: &BTreeSet<String>) -> Vec<String> {
    r.string_set_value.iter().flatten().filter(|g| !used.contains(*g)).cloned().collect()
}
