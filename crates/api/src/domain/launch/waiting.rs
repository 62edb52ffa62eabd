//! Placing the tasks that wait in PROVISIONING for a capacity provider's hosts, along the same
//! path as a new launch: the scheduler places them on the provider's instances of the kept
//! snapshot, the plan is judged again at commit, each instance is guarded, and the waiting task
//! records themselves are moved onto their instances (they keep their identity; the instance's
//! agent then picks them up as it does any new task).

use flotilla_model::PlacementStrategy;
use flotilla_scheduler::{verify, RequiredAttribute};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::commit::{guard_instance, mark, plan, pool_request, standing, zone_of};
use super::gpus;
use super::{interface, Capacity, Placement, Shared, Spec};
use crate::context::Ctx;
use crate::domain::capacity::PROVIDER_ATTRIBUTE;
use crate::domain::fargate::FARGATE_POOL;
use crate::domain::subnets::Allocation;
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
    /// Their awsvpcConfiguration, in awsvpc mode.
    pub awsvpc: Option<flotilla_model::AwsVpcConfiguration>,
    /// Whether they are Fargate tasks, bound for the pool.
    pub fargate: bool,
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
        awsvpc: w.awsvpc.clone(),
        platform_version: None,
    };
    let interfaces = interface::for_launch(ctx, &w.def, w.awsvpc.as_ref(), w.fargate).await?;
    let cluster = if w.fargate { FARGATE_POOL } else { w.cluster.as_str() };
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
        if w.fargate {
            request = pool_request(&request, &interfaces.zones())?;
        } else {
            request
                .required_attributes
                .push(RequiredAttribute { name: PROVIDER_ATTRIBUTE.into(), value: Some(w.provider.clone()) });
        }
        let (targets, _, _) = plan(ctx, &spec, &request, 0, cluster)?;
        if targets.is_empty() {
            break;
        }
        let mut txn = Txn::new();
        let mut alloc = Allocation::default();
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
                let zone = zone_of(&entry.value.instance);
                let mut free_gpus =
                    gpus::free(&entry.value.instance, &usage.map(|u| u.gpus.clone()).unwrap_or_default());
                for (key, rec, revision) in pending.by_ref().take(t.tasks as usize) {
                    let mut rec = rec.clone();
                    assign(&mut rec, &t.arn, zone.clone(), &w.def, w.fargate);
                    let wanted = gpus::wanted(&w.def, rec.task.overrides.as_ref());
                    if !gpus::assign(&mut rec, &mut free_gpus, &wanted) {
                        continue;
                    }
                    let given;
                    (txn, given) = interfaces.give(ctx, &ix, txn, &mut alloc, &mut rec, zone.as_deref());
                    if !given {
                        continue;
                    }
                    txn =
                        txn.when(Compare::unchanged(key.as_str(), *revision)).then(Op::put(key.as_str(), encode(&rec)));
                    count += 1;
                }
            }
        }
        if count == 0 {
            mark(ctx, cluster, &targets);
            break;
        }
        let committed = ctx.commit(txn).await;
        mark(ctx, cluster, &targets);
        if committed?.is_none() {
            // Something changed under the plan (a task stopped, an instance filled): the next
            // pass looks again.
            break;
        }
        moved += count;
    }
    Ok(moved)
}

/// Moves a waiting task onto the instance `arn` (a Fargate task: onto its pool host, out of
/// sight): from here it is an ordinary new task.
fn assign(rec: &mut TaskRecord, arn: &str, zone: Option<String>, def: &flotilla_model::TaskDefinition, fargate: bool) {
    let awsvpc = def.network_mode.as_deref() == Some("awsvpc");
    let t = &mut rec.task;
    t.availability_zone = zone;
    // awsvpc tasks stay PROVISIONING until their agent has set up their network, as ECS shows.
    t.last_status = Some(if awsvpc { "PROVISIONING" } else { "PENDING" }.into());
    t.version = Some(t.version.unwrap_or(0) + 1);
    if fargate {
        rec.hidden.get_or_insert_with(Default::default).host = Some(arn.to_string());
    } else {
        t.container_instance_arn = Some(arn.to_string());
    }
}
