//! GPUs, as ECS hands them out: a container instance registers its GPUs as a `GPU` resource (a
//! STRINGSET of GPU ids), a container asks for a number of them in `resourceRequirements`, the
//! scheduler places a task only where enough are free (it counts them; see
//! `flotilla_scheduler::Request::gpus`), and the launch then picks which ones. The ids picked
//! are the task's (its reservation's `gpus`, counted in the instance's usage until the task
//! stops, like its ports) and each container's (`gpuIds`, which the agent turns into Docker
//! device requests).

use flotilla_model::rules::container_gpus;
use flotilla_model::{TaskDefinition, TaskOverride};

use crate::state::records::TaskRecord;

pub use crate::state::gpus::{free, free_of, registered, GPU_RESOURCE};

/// The GPUs each container of `def` asks for, in definition order: a container override's GPU
/// requirement replaces the definition's, as ECS applies `containerOverrides.resourceRequirements`.
pub fn wanted(def: &TaskDefinition, overrides: Option<&TaskOverride>) -> Vec<u32> {
    let over = |name: Option<&str>| {
        let list = overrides.and_then(|o| o.container_overrides.as_ref());
        list.into_iter().flatten().find(|o| name.is_some() && o.name.as_deref() == name)
    };
    def.container_definitions
        .iter()
        .flatten()
        .map(|c| {
            let overridden = over(c.name.as_deref())
                .and_then(|o| o.resource_requirements.as_deref())
                .filter(|r| r.iter().any(|r| r.r#type.as_deref() == Some("GPU")));
            container_gpus(overridden.or(c.resource_requirements.as_deref()))
        })
        .collect()
}

/// Gives the task `wanted[k]` GPUs for its `k`-th container, taken from the front of `free`, and
/// records them in its reservation. `false` (and nothing taken) when too few are free: the
/// scheduler's count said otherwise, so the caller treats it as a misfit.
pub fn assign(rec: &mut TaskRecord, free: &mut Vec<String>, wanted: &[u32]) -> bool {
    let total: usize = wanted.iter().map(|n| *n as usize).sum();
    if total == 0 {
        return true;
    }
    if free.len() < total {
        return false;
    }
    let taken: Vec<String> = free.drain(..total).collect();
    let mut rest = &taken[..];
    for (container, n) in rec.task.containers.iter_mut().flatten().zip(wanted) {
        let (mine, others) = rest.split_at(*n as usize);
        if !mine.is_empty() {
            container.gpu_ids = Some(mine.to_vec());
        }
        rest = others;
    }
    rec.reservation.get_or_insert_with(Default::default).gpus = taken;
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use flotilla_model::{Container, ContainerDefinition, ContainerOverride, ResourceRequirement, Task};
    use flotilla_model::{ContainerInstance, Resource};

    fn gpu(n: &str) -> Option<Vec<ResourceRequirement>> {
        Some(vec![ResourceRequirement { r#type: Some("GPU".into()), value: Some(n.into()), ..Default::default() }])
    }

    fn def() -> TaskDefinition {
        let c = |name: &str, gpus| ContainerDefinition {
            name: Some(name.into()),
            resource_requirements: gpus,
            ..Default::default()
        };
        TaskDefinition {
            container_definitions: Some(vec![c("a", gpu("2")), c("b", None), c("c", gpu("1"))]),
            ..Default::default()
        }
    }

    #[test]
    fn containers_ask_for_their_gpus_and_overrides_replace_them() {
        assert_eq!(wanted(&def(), None), vec![2, 0, 1]);
        let o = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("c".into()),
                resource_requirements: gpu("3"),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(wanted(&def(), Some(&o)), vec![2, 0, 3]);
    }

    #[test]
    fn assignment_takes_free_ids_in_order_and_splits_them_by_container() {
        let ci = ContainerInstance {
            registered_resources: Some(vec![Resource {
                name: Some("GPU".into()),
                r#type: Some("STRINGSET".into()),
                string_set_value: Some(vec!["g0".into(), "g1".into(), "g2".into(), "g3".into()]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let used = BTreeSet::from(["g1".to_string()]);
        let mut free = free(&ci, &used);
        assert_eq!(free, vec!["g0", "g2", "g3"]);
        let containers = (0..3).map(|_| Container::default()).collect();
        let mut rec =
            TaskRecord { task: Task { containers: Some(containers), ..Default::default() }, ..Default::default() };
        assert!(assign(&mut rec, &mut free, &[2, 0, 1]));
        let ids: Vec<Option<Vec<String>>> = rec.task.containers.unwrap().into_iter().map(|c| c.gpu_ids).collect();
        assert_eq!(ids, vec![Some(vec!["g0".into(), "g2".into()]), None, Some(vec!["g3".into()])]);
        assert_eq!(rec.reservation.unwrap().gpus, vec!["g0", "g2", "g3"]);
        assert!(free.is_empty());
        let mut none = Vec::new();
        assert!(!assign(&mut TaskRecord::default(), &mut none, &[1]), "too few free GPUs");
        assert!(assign(&mut TaskRecord::default(), &mut none, &[0, 0]), "no GPUs wanted");
    }
}
