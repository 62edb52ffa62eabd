//! The registrar: the level-triggered loop that keeps each service task's registrations in step
//! with its life, as ECS does in ACTIVATING and DEACTIVATING.
//!
//! A RUNNING task of a service with `loadBalancers` or `serviceRegistries` is registered (its
//! targets as `Registered`, its Cloud Map instances with its health) in one transaction with the
//! task record, which remembers what it holds. Its target groups' health is copied onto the task
//! (`Hidden::target_health`) for the controller, and its containers' health onto its Cloud Map
//! instances. Once it is asked to stop (or stops on its own) its Cloud Map instances are
//! deregistered and its targets set draining for their group's deregistration delay; the agent
//! is told to stop it (a stop held by `domain::stop` while the task is DEACTIVATING) only when
//! every target has drained: removed early by the load balancer nodes when no connection is
//! left, or here once the delay has passed. Service events say each step in ECS's words.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_endpoints::cloudmap::{self, HealthStatus, Instance};
use flotilla_endpoints::elb::{Registration, Target, TargetGroup, TargetHealth};
use flotilla_endpoints::{codec, keys as ekeys};
use flotilla_model::{Service, Task};
use flotilla_store::{Compare, Op, Revision, Txn};

use super::derive::{endpoints, Endpoint, Facts};
use super::{get, Registered, TargetsHealth};
use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Entry};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::TaskRecord;
use crate::state::tasks::CachedTask;

/// The registrar's name among the supervised loops.
pub const LOOP: &str = "registrar";
/// The longest the registrar sleeps when nothing changes (draining ends on time).
const IDLE_PASS: Duration = Duration::from_millis(500);

/// Runs the registrar until the task is aborted.
pub async fn run(ctx: Ctx) -> Result<(), crate::supervisor::LoopError> {
    let mut changes = ctx.cache.changes();
    loop {
        if let Err(e) = pass(&ctx).await {
            ctx.loops.count_error(LOOP);
            tracing::warn!(error = %e, "endpoint registrar pass failed");
        }
        changes.borrow_and_update();
        let _ = tokio::time::timeout(IDLE_PASS, changes.changed()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one pass did to a service, told as its events.
#[derive(Default)]
struct Notes {
    registered: BTreeMap<String, usize>,
    deregistered: BTreeMap<String, usize>,
    draining_tasks: usize,
}

/// A service to visit: its cluster, key, record and the tasks to look at.
type Work = (String, String, Entry<Service>, Vec<Arc<str>>);

fn uses_endpoints(svc: &Service) -> bool {
    svc.load_balancers.as_ref().is_some_and(|l| !l.is_empty())
        || svc.service_registries.as_ref().is_some_and(|r| !r.is_empty())
}

/// One pass over every service whose tasks register or still hold registrations.
pub async fn pass(ctx: &Ctx) -> ApiResult<()> {
    let work: Vec<Work> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.services, keys::SERVICE)
            .filter_map(|(key, e)| {
                let cluster = key.strip_prefix(keys::SERVICE)?.split('/').next()?.to_string();
                let group = format!("service:{}", e.value.service_name.as_deref().unwrap_or(""));
                let tasks: Vec<Arc<str>> = ix
                    .task_index
                    .in_group(&cluster, &group)
                    .filter(|k| {
                        ix.tasks.get(*k).is_some_and(|t| {
                            let held = t.value.hidden.as_ref().is_some_and(|h| !h.endpoints.is_empty());
                            held || (!t.value.is_stopped() && uses_endpoints(&e.value))
                        })
                    })
                    .cloned()
                    .collect();
                (!tasks.is_empty()).then(|| (cluster, key.clone(), e.clone(), tasks))
            })
            .collect()
    };
    for (cluster, key, svc, tasks) in work {
        let mut notes = Notes::default();
        for task in tasks {
            if let Err(e) = step(ctx, &cluster, &svc.value, &task, &mut notes).await {
                ctx.loops.count_error(LOOP);
                tracing::warn!(error = %e, task = %task, "could not update a task's registrations");
            }
        }
        tell(ctx, &key, &notes).await?;
    }
    Ok(())
}

fn wants_registration(rec: &TaskRecord) -> bool {
    let t = &rec.task;
    t.desired_status.as_deref() == Some("RUNNING")
        && t.last_status.as_deref() == Some("RUNNING")
        && rec.hidden.as_ref().is_none_or(|h| h.deactivating_since_ms.is_none())
}

async fn step(ctx: &Ctx, cluster: &str, svc: &Service, key: &str, notes: &mut Notes) -> ApiResult<()> {
    let Some(entry) = ctx.cache.read().tasks.get(key).cloned() else { return Ok(()) };
    let rec = entry.value.record();
    let held = rec.hidden.as_ref().map(|h| h.endpoints.clone()).unwrap_or_default();
    if wants_registration(&rec) {
        if held.is_empty() {
            if let Some(list) = facts_and_endpoints(ctx, cluster, svc, &entry.value, &rec) {
                register(ctx, key, entry.revision, rec, svc, list, notes).await?;
            }
        } else {
            follow_health(ctx, key, entry.revision, rec, &held).await?;
        }
    } else if !held.is_empty() {
        deregister(ctx, key, entry.revision, rec, &held, notes).await?;
    } else if rec.hidden.as_ref().is_some_and(|h| h.deactivating_since_ms.is_some()) {
        release(ctx, key, entry.revision, rec).await?;
    }
    Ok(())
}

/// The task's registrations, once everything they need is known.
fn facts_and_endpoints(
    ctx: &Ctx,
    cluster: &str,
    svc: &Service,
    cached: &CachedTask,
    rec: &TaskRecord,
) -> Option<Vec<Endpoint>> {
    if !uses_endpoints(svc) {
        return None;
    }
    let ix = ctx.cache.read();
    let def = crate::domain::lookup::task_definition_in(ctx, &ix, rec.task.task_definition_arn.as_deref()?)?;
    let network_mode = def.value.definition.network_mode.clone().unwrap_or_else(|| "bridge".into());
    let host = cached.summary.instance.as_deref().and_then(|arn| instance_in(&ix, arn));
    let fargate = rec.hidden.as_ref().is_some_and(|h| h.host.is_some());
    let ec2 = host.filter(|_| !fargate).and_then(|i| i.instance.ec2_instance_id.clone());
    let address = host.map(crate::domain::hosts::address).unwrap_or_else(|| "127.0.0.1".into());
    // The address allocated in its subnet, or the one its agent reported on its interface.
    let ip = rec.hidden.as_ref().and_then(|h| h.network.as_ref()).map(|n| n.ipv4_address.clone()).or_else(|| {
        rec.task
            .attachments
            .iter()
            .flatten()
            .flat_map(|a| a.details.iter().flatten())
            .find_map(|d| (d.name.as_deref() == Some("privateIPv4Address")).then(|| d.value.clone()).flatten())
    });
    drop(ix);
    let facts = Facts {
        task: &rec.task,
        network_mode: &network_mode,
        task_ip: ip.as_deref(),
        ec2_instance_id: ec2.as_deref(),
        host_address: &address,
        cluster,
        region: &ctx.arns.region,
    };
    endpoints(svc, &facts).filter(|l| !l.is_empty())
}

/// The container instance an ARN names, in indexes already held.
fn instance_in<'a>(
    ix: &'a crate::state::indexes::Indexes,
    arn: &str,
) -> Option<&'a crate::state::records::InstanceRecord> {
    let (_, rest) = arn.split_once(":container-instance/")?;
    let (cluster, id) = rest.split_once('/')?;
    ix.instances.get(&keys::instance(cluster, id)).map(|e| &*e.value)
}

/// How a Cloud Map instance of this task should read its health: its containers' health, and
/// healthy when it has no health check (as ECS reports it).
fn task_health(t: &Task) -> HealthStatus {
    match t.health_status.as_deref() {
        Some("UNHEALTHY") => HealthStatus::Unhealthy,
        Some("HEALTHY") => HealthStatus::Healthy,
        _ if t.containers.iter().flatten().any(|c| c.health_status.is_some()) => HealthStatus::Unhealthy,
        _ => HealthStatus::Healthy,
    }
}

async fn register(
    ctx: &Ctx,
    key: &str,
    revision: Revision,
    mut rec: TaskRecord,
    svc: &Service,
    list: Vec<Endpoint>,
    notes: &mut Notes,
) -> ApiResult<()> {
    let now = ctx.clock.now_ms();
    let task_arn = rec.task.task_arn.clone();
    let mut txn = Txn::new().when(Compare::unchanged(key, revision));
    let mut held = Vec::new();
    let mut told = Vec::new();
    for e in list {
        match &e.registered {
            Registered::Target { target_group_arn, target_group_id, id, port } => {
                // A group deleted since the service was validated takes no target.
                if get::<TargetGroup>(ctx, &ekeys::target_group(target_group_id)).await?.is_none() {
                    continue;
                }
                let target = Target {
                    id: id.clone(),
                    port: *port,
                    availability_zone: e.zone.clone(),
                    registered_at_ms: now,
                    registration: Registration::Registered,
                    task_arn: task_arn.clone(),
                };
                let tkey = ekeys::target(target_group_id, id, *port);
                txn = txn.then(Op::put(&tkey, codec::encode(&target)));
                txn = txn.then(Op::delete(ekeys::target_health(target_group_id, id, *port)));
                told.push(target_group_arn.clone());
            }
            Registered::Instance { service_id, instance_id } => {
                let skey = ekeys::service(service_id);
                let Some((service, srev)) = get::<cloudmap::Service>(ctx, &skey).await? else {
                    continue;
                };
                // Rewriting the service moves its InstancesRevision, and a DeleteService racing
                // this registration fails its compare instead of leaving the instance behind.
                txn = txn.when(Compare::unchanged(&skey, srev)).then(Op::put(&skey, codec::encode(&service)));
                let instance = Instance {
                    id: instance_id.clone(),
                    service_id: service.id.clone(),
                    attributes: e.attributes.clone(),
                    health: task_health(&rec.task),
                    creator_request_id: None,
                    task_arn: task_arn.clone(),
                    registered_at_ms: now,
                    updated_at_ms: now,
                };
                txn = txn.then(Op::put(ekeys::instance(service_id, instance_id), codec::encode(&instance)));
            }
        }
        held.push(e.registered);
    }
    if held.is_empty() {
        return Ok(());
    }
    let hidden = rec.hidden.get_or_insert_with(Default::default);
    let has_targets = held.iter().any(|r| matches!(r, Registered::Target { .. }));
    hidden.endpoints = held;
    hidden.target_health = has_targets.then_some(TargetsHealth::Initial);
    txn = txn.then(Op::put(key, encode(&rec)));
    if ctx.commit(txn).await?.is_some() {
        for tg in told {
            *notes.registered.entry(tg).or_default() += 1;
        }
        tracing::debug!(service = svc.service_name.as_deref().unwrap_or(""), task = key, "registered");
    }
    Ok(())
}

/// Copies target health onto the task and container health onto its Cloud Map instances.
async fn follow_health(
    ctx: &Ctx,
    key: &str,
    revision: Revision,
    mut rec: TaskRecord,
    held: &[Registered],
) -> ApiResult<()> {
    let mut worst = None::<TargetsHealth>;
    let mut all_healthy = true;
    let mut any_target = false;
    let want = task_health(&rec.task);
    for r in held {
        match r {
            Registered::Target { target_group_arn, target_group_id, id, port } => {
                any_target = true;
                let health = get::<TargetHealth>(ctx, &ekeys::target_health(target_group_id, id, *port)).await?;
                match health.map(|(h, _)| h) {
                    Some(h) if h.state == flotilla_endpoints::elb::HealthState::Healthy => {}
                    Some(h) if h.state == flotilla_endpoints::elb::HealthState::Unhealthy => {
                        all_healthy = false;
                        worst.get_or_insert(TargetsHealth::Unhealthy {
                            target_group_arn: target_group_arn.clone(),
                            port: *port,
                            reason: h.description.or(h.reason).unwrap_or_else(|| "Health checks failed".into()),
                        });
                    }
                    _ => all_healthy = false,
                }
            }
            Registered::Instance { service_id, instance_id } => {
                let ikey = ekeys::instance(service_id, instance_id);
                if let Some((mut instance, irev)) = get::<Instance>(ctx, &ikey).await? {
                    if instance.health != want {
                        instance.health = want;
                        instance.updated_at_ms = ctx.clock.now_ms();
                        let txn = Txn::new()
                            .when(Compare::unchanged(&ikey, irev))
                            .then(Op::put(&ikey, codec::encode(&instance)));
                        ctx.commit(txn).await?;
                    }
                }
            }
        }
    }
    if !any_target {
        return Ok(());
    }
    let judged = worst.unwrap_or(if all_healthy { TargetsHealth::Healthy } else { TargetsHealth::Initial });
    let hidden = rec.hidden.get_or_insert_with(Default::default);
    if hidden.target_health.as_ref() != Some(&judged) {
        hidden.target_health = Some(judged);
        let txn = Txn::new().when(Compare::unchanged(key, revision)).then(Op::put(key, encode(&rec)));
        ctx.commit(txn).await?;
    }
    Ok(())
}

/// Deregisters what the task holds: Cloud Map instances at once, targets set draining; once every
/// target has drained the task lets go of them (and its agent may stop it).
async fn deregister(
    ctx: &Ctx,
    key: &str,
    revision: Revision,
    mut rec: TaskRecord,
    held: &[Registered],
    notes: &mut Notes,
) -> ApiResult<()> {
    let now = ctx.clock.now_ms();
    let mut txn = Txn::new().when(Compare::unchanged(key, revision));
    let mut still = Vec::new();
    let mut newly = Vec::new();
    for r in held {
        match r {
            Registered::Instance { service_id, instance_id } => {
                let skey = ekeys::service(service_id);
                if let Some((service, srev)) = get::<cloudmap::Service>(ctx, &skey).await? {
                    txn = txn.when(Compare::unchanged(&skey, srev)).then(Op::put(&skey, codec::encode(&service)));
                }
                txn = txn.then(Op::delete(ekeys::instance(service_id, instance_id)));
            }
            Registered::Target { target_group_arn, target_group_id, id, port } => {
                let tkey = ekeys::target(target_group_id, id, *port);
                let Some((mut target, trev)) = get::<Target>(ctx, &tkey).await? else { continue };
                match target.registration {
                    Registration::Registered => {
                        let delay = get::<TargetGroup>(ctx, &ekeys::target_group(target_group_id))
                            .await?
                            .map_or(0, |(g, _)| i64::from(g.deregistration_delay_seconds()));
                        target.registration = Registration::Draining { since_ms: now, until_ms: now + delay * 1000 };
                        txn = txn.when(Compare::unchanged(&tkey, trev)).then(Op::put(&tkey, codec::encode(&target)));
                        newly.push(target_group_arn.clone());
                        still.push(r.clone());
                    }
                    Registration::Draining { until_ms, .. } if until_ms <= now => {
                        txn = txn
                            .when(Compare::unchanged(&tkey, trev))
                            .then(Op::delete(&tkey))
                            .then(Op::delete(ekeys::target_health(target_group_id, id, *port)));
                    }
                    Registration::Draining { .. } => still.push(r.clone()),
                }
            }
        }
    }
    let hidden = rec.hidden.get_or_insert_with(Default::default);
    let released = still.is_empty();
    hidden.endpoints = still;
    if released {
        hidden.deactivating_since_ms = None;
        hidden.target_health = None;
    }
    txn = txn.then(Op::put(key, encode(&rec)));
    if ctx.commit(txn).await?.is_some() {
        if !newly.is_empty() {
            notes.draining_tasks += 1;
        }
        for tg in newly {
            *notes.deregistered.entry(tg).or_default() += 1;
        }
    }
    Ok(())
}

/// Lets the agent stop a task that drained (or held nothing to drain).
async fn release(ctx: &Ctx, key: &str, revision: Revision, mut rec: TaskRecord) -> ApiResult<()> {
    if let Some(h) = rec.hidden.as_mut() {
        h.deactivating_since_ms = None;
    }
    let txn = Txn::new().when(Compare::unchanged(key, revision)).then(Op::put(key, encode(&rec)));
    ctx.commit(txn).await?;
    Ok(())
}

/// Writes the pass's events onto the service.
async fn tell(ctx: &Ctx, key: &str, notes: &Notes) -> ApiResult<()> {
    if notes.registered.is_empty() && notes.deregistered.is_empty() {
        return Ok(());
    }
    for _ in 0..crate::context::MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().services.get(key).cloned() else { return Ok(()) };
        let mut svc = (*entry.value).clone();
        let name = svc.service_name.clone().unwrap_or_default();
        let now = ctx.now();
        for (tg, n) in &notes.registered {
            crate::service_status::push_event_always(
                &mut svc,
                &format!("(service {name}) registered {n} targets in (target-group {tg})"),
                now,
            );
        }
        for (tg, n) in &notes.deregistered {
            crate::service_status::push_event_always(
                &mut svc,
                &format!("(service {name}) deregistered {n} targets in (target-group {tg})"),
                now,
            );
        }
        if notes.draining_tasks > 0 {
            crate::service_status::push_event_always(
                &mut svc,
                &format!("(service {name}) has begun draining connections on {} tasks.", notes.draining_tasks),
                now,
            );
        }
        let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&svc)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

/// For a task that stopped on its own (its essential container exited), in the transaction that
/// records it STOPPED: its Cloud Map instances go with it, so DNS never answers a task that
/// DescribeTasks already shows stopped. (A stop ECS orders deregisters first, before the agent
/// is told.) Its targets are left to the registrar, which drains them.
pub async fn deregister_instances_on_stop(ctx: &Ctx, rec: &mut TaskRecord, mut txn: Txn) -> ApiResult<Txn> {
    if rec.task.last_status.as_deref() != Some("STOPPED") {
        return Ok(txn);
    }
    let Some(hidden) = rec.hidden.as_mut() else { return Ok(txn) };
    let mut kept = Vec::new();
    for r in std::mem::take(&mut hidden.endpoints) {
        match &r {
            Registered::Instance { service_id, instance_id } => {
                let skey = ekeys::service(service_id);
                if let Some((service, srev)) = get::<cloudmap::Service>(ctx, &skey).await? {
                    txn = txn.when(Compare::unchanged(&skey, srev)).then(Op::put(&skey, codec::encode(&service)));
                }
                txn = txn.then(Op::delete(ekeys::instance(service_id, instance_id)));
            }
            Registered::Target { .. } => kept.push(r),
        }
    }
    hidden.endpoints = kept;
    Ok(txn)
}
