//! Placing the tasks that wait in PROVISIONING for a capacity provider's hosts, along the same
//! path as a new launch: the scheduler places them on the provider's instances of the kept
//! snapshot, the plan is judged again at commit, each instance is guarded, and the waiting task
//! records themselves are moved onto their instances (they keep their identity; the instance's
//! agent then picks them up as it does any new task).

use flotilla_model::{PlacementStrategy, Task};
use flotilla_scheduler::{verify, RequiredAttribute};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::commit::{guard_instance, mark, plan, standing};
use super::{Capacity, Placement, Shared, Spec};
use crate::context::Ctx;
use crate::domain::capacity::PROVIDER_ATTRIBUTE;
use crate::error::ApiResult;
use crate::state::codec::encode;
use crate::state::records::TaskRecord;

/// Tasks that wait for the same provider with the same needs, placed together.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub cluster: String,
    pub provider: String,
    pub def: flotilla_model::TaskDefinition,
    /// The tasks, with their keys and the revisions they were read at; all share a definition,
    /// group, overrides and reservation.
    pub tasks: Vec<(String, TaskRecord, Revision)>,
    /// The placement strategies their launch asked for (a service's), if any.
    pub strategies: Vec<PlacementStrategy>,
}

/// Places as many of `w`'s tasks as fit on the provider's instances; returns how many it moved.
pub async fn place_waiting(ctx: &Ctx, w: &Waiting) -> ApiResult<usize> {
    let Some((_, first, _)) = w.tasks.first() else { return Ok(0) };
    let shared = Shared {
        overrides: first.task.overrides.clone(),
        group: first.task.group.clone(),
        started_by: first.task.started_by.clone(),
        tags: Vec::new(),
        enable_execute_command: false,
    };
    let mut moved = 0;
    for chunk in w.tasks.chunks(flotilla_scheduler::MAX_COUNT as usize) {
        let spec = Spec {
            cluster: w.cluster.clone(),
            def: w.def.clone(),
            shared: shared.clone(),
            placement: Placement::Count {
                count: chunk.len() as u32,
                strategies: w.strategies.clone(),
                constraints: Vec::new(),
            },
            capacity: Capacity::LaunchType,
        };
        let reservation = first.reservation.clone().unwrap_or_else(|| spec.reservation());
        let mut request = spec.scheduler_request(&reservation)?;
        request
            .required_attributes
            .push(RequiredAttribute { name: PROVIDER_ATTRIBUTE.into(), value: Some(w.provider.clone()) });
        let (targets, _, _) = plan(ctx, &spec, &request, 0)?;
        if targets.is_empty() {
            break;
        }
        let mut txn = Txn::new();
        let mut pending = chunk.iter();
        let mut count = 0;
        {
            let ix = ctx.cache.read();
            for t in &targets {
                let Some(entry) = ix.instances.get(&t.key) else { continue };
                let usage = ix.instance_usage.get(t.arn.as_str());
                if verify(&standing(&entry.value, usage, &request.group, false), &request, t.tasks).is_err() {
                    continue;
                }
                txn = guard_instance(&ix, txn, &t.key, entry.revision);
                let zone = entry
                    .value
                    .instance
                    .attributes
                    .iter()
                    .flatten()
                    .find(|a| a.name.as_deref() == Some("ecs.availability-zone"));
                for (key, rec, revision) in pending.by_ref().take(t.tasks as usize) {
                    let mut rec = rec.clone();
                    assign(&mut rec.task, &t.arn, zone.and_then(|a| a.value.clone()), &w.def);
                    txn =
                        txn.when(Compare::unchanged(key.as_str(), *revision)).then(Op::put(key.as_str(), encode(&rec)));
                    count += 1;
                }
            }
        }
        if count == 0 {
            mark(ctx, &w.cluster, &targets);
            break;
        }
        let committed = ctx.commit(txn).await;
        mark(ctx, &w.cluster, &targets);
        if committed?.is_none() {
            // Something changed under the plan (a task stopped, an instance filled): the next
            // pass looks again.
            break;
        }
        moved += count;
    }
    Ok(moved)
}

/// Moves a waiting task onto the instance `arn`: from here it is an ordinary new task.
fn assign(t: &mut Task, arn: &str, zone: Option<String>, def: &flotilla_model::TaskDefinition) {
    let awsvpc = def.network_mode.as_deref() == Some("awsvpc");
    t.container_instance_arn = Some(arn.to_string());
    t.availability_zone = zone;
    // awsvpc tasks stay PROVISIONING until their agent has set up their network, as ECS shows.
    t.last_status = Some(if awsvpc { "PROVISIONING" } else { "PENDING" }.into());
    t.version = Some(t.version.unwrap_or(0) + 1);
}
