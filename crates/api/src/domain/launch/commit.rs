//! Placing and committing a launch's tasks, all in one transaction with the clientToken.
//!
//! Why one transaction: it compares the revision of every instance the plan uses (and bumps its
//! placement counter), requires every task key and the token to be absent, and writes tasks and
//! token together. So a request's tasks appear all at once or not at all, two identical requests
//! racing with one token cannot both commit (the loser's compare on the token fails, and it
//! answers with the winner's tasks), and a retry after a crash finds either the token with its
//! tasks or neither. One transaction is also one durable write per request instead of one per
//! instance, which is what lets group commit share each fsync among many requests. The price: a
//! conflict on any of its instances retries the whole request, with a fresh plan.

use flotilla_model::Failure;
use flotilla_scheduler::{
    verify, Env, HostPort, InstanceStatus, Protocol, Reason, Request, RequiredAttribute, Standing,
};
use flotilla_store::{Compare, Op, Revision, Txn, TxnOutcome};

use super::gpus;
use super::interface;
use super::records::new_task;
use super::token::{self, Token};
use super::{Launched, Placement, Spec};
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::domain::capacity::{split, Capacity, Item, PROVIDER_ATTRIBUTE};
use crate::domain::fargate::{self, FARGATE_POOL};
use crate::domain::lookup::{instance_id, missing};
use crate::domain::subnets::Allocation;
use crate::error::{ApiError, ApiResult};
use crate::state::cache::{Indexes, InstanceUsage};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::{InstanceRecord, TaskRecord};

/// One instance of a plan and how many of the launch's tasks it takes.
pub(super) struct Target {
    pub key: String,
    pub arn: String,
    pub tasks: u32,
    /// Which [`Part`] of the launch the tasks belong to.
    pub part: usize,
}

/// One share of a launch: the tasks bound for one capacity provider's instances, for any
/// instance of the cluster, or for the Fargate pool.
pub(super) struct Part {
    /// The provider shown as the tasks' `capacityProviderName`.
    pub provider: Option<String>,
    /// Tasks of this share that fit nowhere wait in PROVISIONING rather than fail.
    pub provisions: bool,
    pub request: Request,
    /// Placed on the Fargate pool's hosts rather than the cluster's instances.
    pub pool: bool,
}

impl Part {
    /// The cluster whose snapshot the part is placed on.
    pub fn cluster<'a>(&self, spec: &'a Spec) -> &'a str {
        if self.pool {
            FARGATE_POOL
        } else {
            &spec.cluster
        }
    }
}

/// The request for Fargate tasks in `zones`: the pool's own rules replace placement's.
pub(super) fn pool_request(request: &Request, zones: &[String]) -> ApiResult<Request> {
    let (strategies, zone) = fargate::pool_rules(zones)?;
    Ok(Request { strategies, constraints: vec![zone], required_attributes: Vec::new(), ..request.clone() })
}

/// Splits the launch between its strategy's providers; one part for any instance otherwise.
fn parts(ctx: &Ctx, spec: &Spec, request: &Request, zones: &[String]) -> ApiResult<Vec<Part>> {
    let items = match (&spec.capacity, &spec.placement) {
        (Capacity::Fargate, _) => {
            let request = pool_request(request, zones)?;
            return Ok(vec![Part { provider: None, provisions: true, request, pool: true }]);
        }
        (Capacity::Strategy(items), Placement::Count { .. }) => items,
        _ => return Ok(vec![Part { provider: None, provisions: false, request: request.clone(), pool: false }]),
    };
    let Placement::Count { count, .. } = &spec.placement else { unreachable!("matched above") };
    let existing = existing_counts(ctx, spec, items);
    let mut shares = vec![0u32; items.len()];
    for i in split(items, &existing, *count) {
        shares[i] += 1;
    }
    let shares = items.iter().zip(shares).filter(|(_, n)| *n > 0);
    shares
        .map(|(item, n)| {
            let pool = fargate::is_provider(&item.provider);
            let mut request = if pool { pool_request(request, zones)? } else { request.clone() };
            request.count = n;
            if !pool {
                request
                    .required_attributes
                    .push(RequiredAttribute { name: PROVIDER_ATTRIBUTE.into(), value: Some(item.provider.clone()) });
            }
            Ok(Part { provider: Some(item.provider.clone()), provisions: item.managed_scaling, request, pool })
        })
        .collect()
}

/// How many of a service's tasks each strategy item's provider holds: a service's base and
/// weights apply to all its tasks, not to each launch. Counted are the live tasks of the same
/// deployment that stay: those on a draining instance are about to be replaced, and counting
/// them would send their replacements to the other providers. A RunTask starts from none.
fn existing_counts(ctx: &Ctx, spec: &Spec, items: &[Item]) -> Vec<u32> {
    let mut out = vec![0u32; items.len()];
    let Some(group) = spec.shared.group.as_deref().filter(|g| g.starts_with("service:")) else { return out };
    let ix = ctx.cache.read();
    let prefix = format!("{}{}/", keys::INSTANCE, spec.cluster);
    let draining: std::collections::HashSet<&str> = crate::state::cache::range_prefix(&ix.instances, &prefix)
        .filter(|(_, e)| e.value.instance.status.as_deref() == Some("DRAINING"))
        .filter_map(|(_, e)| e.value.instance.container_instance_arn.as_deref())
        .collect();
    for key in ix.task_index.in_group(&spec.cluster, group) {
        let Some(e) = ix.tasks.get(&**key) else { continue };
        let s = &e.value.summary;
        if e.value.is_stopped() || &*s.desired != "RUNNING" {
            continue;
        }
        if spec.shared.started_by.is_some() && s.started_by.as_deref() != spec.shared.started_by.as_deref() {
            continue;
        }
        if s.instance.as_deref().is_some_and(|i| draining.contains(i)) {
            continue;
        }
        if let Some(i) = s.capacity_provider.as_deref().and_then(|p| items.iter().position(|it| it.provider == p)) {
            out[i] += 1;
        }
    }
    out
}

/// Launches `spec`'s tasks: plans them with the scheduler, re-judges the plan against the cache
/// and commits it. Tasks that could not be placed come back as failures, or, on a capacity
/// provider with managed scaling, are written PROVISIONING. With a `token`, a retry of the same
/// request answers what the first one did.
pub async fn launch(ctx: &Ctx, spec: &Spec, token: Option<Token<'_>>) -> ApiResult<Launched> {
    if let Some(t) = token {
        if let Some(earlier) = token::replay(ctx, t)? {
            return Ok(earlier);
        }
    }
    let reservation = spec.reservation();
    let request = spec.scheduler_request(&reservation)?;
    let fargate = spec.capacity.is_fargate();
    let interfaces = interface::for_launch(ctx, &spec.def, spec.shared.awsvpc.as_ref(), fargate).await?;
    let parts = parts(ctx, spec, &request, &interfaces.zones())?;
    let counted = matches!(spec.placement, Placement::Count { .. });
    let platform = spec.shared.platform_version.clone().unwrap_or_else(|| fargate::LATEST_PLATFORM_VERSION.into());
    let storage = spec.def.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b);
    let gpus_wanted = gpus::wanted(&spec.def, spec.shared.overrides.as_ref());
    let make = |rec: &mut TaskRecord, part: &Part, host: Option<&str>| {
        if part.pool {
            fargate::make_fargate(rec, host, part.provider.as_deref(), &platform, storage);
        }
    };
    for attempt in 1..=MAX_CAS_ATTEMPTS {
        let mut targets = Vec::new();
        let mut failures = Vec::new();
        let mut waiting = vec![0u32; parts.len()];
        for (i, part) in parts.iter().enumerate() {
            let (t, f, unplaced) = plan(ctx, spec, &part.request, i, part.cluster(spec))?;
            targets.extend(t);
            match part.provisions {
                true => waiting[i] += unplaced,
                false => failures.extend(f),
            }
        }
        let mut records: Vec<TaskRecord> = Vec::new();
        let mut txn = Txn::new();
        let mut misfits = Vec::new();
        let mut alloc = Allocation::default();
        {
            let ix = ctx.cache.read();
            for t in &targets {
                let Some(entry) = ix.instances.get(&t.key) else {
                    misfits.push((t.arn.clone(), Reason::Inactive, t.tasks, t.part));
                    continue;
                };
                let part = &parts[t.part];
                let usage = ix.instance_usage.get(t.arn.as_str());
                let request = &part.request;
                if let Err(reason) = verify(&standing(&entry.value, usage, &request.group, !counted), request, t.tasks)
                {
                    misfits.push((t.arn.clone(), reason, t.tasks, t.part));
                    continue;
                }
                txn = guard_instance(&ix, txn, &t.key, entry.revision);
                let provider = part.provider.as_deref();
                let instance = Some(&entry.value.instance);
                let zone = zone_of(&entry.value.instance);
                let mut free_gpus =
                    gpus::free(&entry.value.instance, &usage.map(|u| u.gpus.clone()).unwrap_or_default());
                for _ in 0..t.tasks {
                    let mut rec =
                        new_task(ctx, &spec.cluster, &spec.def, instance, &spec.shared, &reservation, provider);
                    make(&mut rec, part, Some(&t.arn));
                    if !gpus::assign(&mut rec, &mut free_gpus, &gpus_wanted) {
                        failures.push(Failure {
                            arn: Some(t.arn.clone()),
                            reason: Some(Reason::Gpu.ecs_reason().into()),
                            detail: Some("the instance's GPUs were taken while this request was placed".into()),
                        });
                        continue;
                    }
                    let given;
                    (txn, given) = interfaces.give(ctx, &ix, txn, &mut alloc, &mut rec, zone.as_deref());
                    if !given {
                        failures.push(Failure {
                            arn: Some(t.arn.clone()),
                            reason: Some("RESOURCE:ENI".into()),
                            detail: Some("the task's subnet in the host's zone has no free address".into()),
                        });
                        continue;
                    }
                    records.push(rec);
                }
            }
        }
        if !misfits.is_empty() && counted && attempt < MAX_CAS_ATTEMPTS {
            // The snapshot was behind the cache: look again with the instances refreshed.
            mark_parts(ctx, spec, &parts, &targets);
            continue;
        }
        for (arn, reason, n, part) in misfits {
            if parts[part].provisions {
                waiting[part] += n;
                continue;
            }
            let detail = counted.then(|| "the instance filled up while this request was placed".to_string());
            for _ in 0..n {
                failures.push(Failure {
                    arn: Some(arn.clone()),
                    reason: Some(reason.ecs_reason().into()),
                    detail: detail.clone(),
                });
            }
        }
        for (part, n) in parts.iter().zip(&waiting) {
            let provider = part.provider.as_deref();
            for _ in 0..*n {
                let mut rec = new_task(ctx, &spec.cluster, &spec.def, None, &spec.shared, &reservation, provider);
                make(&mut rec, part, None);
                records.push(rec);
            }
        }
        for t in &records {
            let key = task_key(t)?;
            txn = txn.when(Compare::absent(&key)).then(Op::put(&key, encode(t)));
        }
        let token_key = token.map(|t| {
            let arns = records.iter().filter_map(|r| r.task.task_arn.clone()).collect();
            let (c, op) = token::remember(ctx, t, arns, &failures);
            let key = c.key().to_string();
            txn = std::mem::take(&mut txn).when(c).then(op);
            key
        });
        if records.is_empty() && token_key.is_none() {
            // Nothing fit and there is no token to remember: nothing to write.
            mark_parts(ctx, spec, &parts, &targets);
            return Ok(Launched { tasks: Vec::new(), failures });
        }
        let outcome = ctx.store.txn(txn).await;
        // Whatever became of the commit (an I/O error included), the reservations the plan made
        // in the snapshot were only a guess.
        mark_parts(ctx, spec, &parts, &targets);
        match outcome? {
            TxnOutcome::Committed { revision } => {
                ctx.caught_up(revision).await?;
                return Ok(Launched { tasks: records.into_iter().map(|r| r.task).collect(), failures });
            }
            TxnOutcome::Conflict { key } => {
                // Look again only once the cache has what beat this request.
                ctx.caught_up(ctx.store.revision()).await?;
                if let Some(t) = token.filter(|_| token_key.as_deref() == Some(key.as_str())) {
                    if let Some(earlier) = token::replay(ctx, t)? {
                        return Ok(earlier);
                    }
                }
            }
        }
    }
    Err(ApiError::server("The cluster kept changing while the tasks were placed; try again."))
}

/// An instance as the scheduler's commit-time check reads it: its status, what its tasks leave of
/// its CPU, memory and ports, and its tasks of `group`. A named instance (`pinned`) takes its task
/// whether or not its agent is connected right now: the task waits there, PENDING, for the agent
/// to pick it up.
pub(super) fn standing<'a>(
    rec: &'a InstanceRecord,
    usage: Option<&'a InstanceUsage>,
    group: &str,
    pinned: bool,
) -> Standing<'a> {
    let ci = &rec.instance;
    let registered = |name: &str| ci.registered_resources.iter().flatten().find(|r| r.name.as_deref() == Some(name));
    let int = |name: &str| registered(name).and_then(|r| r.integer_value).unwrap_or(0) as i64;
    let (cpu_used, memory_used) = usage.map_or((0, 0), |u| (u.cpu, u.memory));
    let port_taken = move |p: HostPort| {
        let (name, used) = match p.protocol {
            Protocol::Tcp => ("PORTS", usage.map(|u| &u.ports)),
            Protocol::Udp => ("PORTS_UDP", usage.map(|u| &u.ports_udp)),
        };
        used.is_some_and(|set| set.contains(&p.port))
            || registered(name)
                .and_then(|r| r.string_set_value.as_ref())
                .is_some_and(|set| set.iter().any(|s| s.parse::<u16>().ok() == Some(p.port)))
    };
    Standing {
        status: InstanceStatus::from_wire(ci.status.as_deref().unwrap_or("")),
        agent_connected: pinned || ci.agent_connected.unwrap_or(false),
        remaining_cpu: int("CPU") - cpu_used,
        remaining_memory: int("MEMORY") - memory_used,
        remaining_gpus: usage.map_or_else(|| gpus::registered(ci).count(), |u| gpus::free(ci, &u.gpus).len()) as u32,
        port_taken: Box::new(port_taken),
        group_tasks: usage.and_then(|u| u.groups.get(group).copied()).unwrap_or(0),
    }
}

/// Where part `part`'s tasks go, by the scheduler: a count placed on the cluster's kept snapshot,
/// or one task on each named instance; the failures of what has nowhere to go, and how many tasks
/// that is.
pub(super) fn plan(
    ctx: &Ctx,
    spec: &Spec,
    request: &Request,
    part: usize,
    cluster: &str,
) -> ApiResult<(Vec<Target>, Vec<Failure>, u32)> {
    let mut targets: Vec<Target> = Vec::new();
    let mut add = |key: &str, arn: &str| match targets.iter_mut().find(|t| t.key == key) {
        Some(t) => t.tasks += 1,
        None => targets.push(Target { key: key.to_string(), arn: arn.to_string(), tasks: 1, part }),
    };
    let mut failures = Vec::new();
    let mut unplaced = 0;
    match &spec.placement {
        Placement::Count { .. } => {
            let seed = rand::random::<u64>();
            let placed = ctx
                .cache
                .snapshots
                .place(|| ctx.cache.read(), cluster, request, &Env { seed })
                .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
            for t in &placed.targets {
                add(&t.key, &t.arn);
            }
            unplaced = placed.plan.unplaced;
            failures.extend(placed.plan.failures.iter().map(|f| Failure {
                arn: f.arn.clone(),
                reason: Some(f.reason.ecs_reason().into()),
                detail: Some(f.detail.clone()),
            }));
        }
        Placement::Instances(given) => {
            let ix = ctx.cache.read();
            for g in given {
                let arn = if g.starts_with("arn:") { g.clone() } else { ctx.arns.container_instance(&spec.cluster, g) };
                let key = instance_id(ctx, &spec.cluster, g).map(|id| keys::instance(&spec.cluster, id));
                match key.filter(|k| ix.instances.contains_key(k)) {
                    Some(key) => add(&key, &arn),
                    None => {
                        unplaced += 1;
                        failures.push(missing(arn))
                    }
                }
            }
        }
    }
    Ok((targets, failures, unplaced))
}

/// Guards a placement on the instance under `instance_key`: the transaction requires the
/// instance record unchanged since `instance_revision` (still ACTIVE, same resources) and bumps
/// the instance's placement counter, so that of two placements that checked the same usage only
/// one commits. The counter is a few bytes, where rewriting the instance record instead cost a
/// few KiB per placement to write, to store and to decode again in the cache.
pub fn guard_instance(ix: &Indexes, txn: Txn, instance_key: &str, instance_revision: Revision) -> Txn {
    let key = keys::placement_of(instance_key);
    let (compare, next) = match ix.placements.get(&key) {
        Some(e) => (Compare::unchanged(key.as_str(), e.revision), *e.value + 1),
        None => (Compare::absent(key.as_str()), 1),
    };
    txn.when(Compare::unchanged(instance_key, instance_revision)).when(compare).then(Op::put(key, encode(&next)))
}

/// [`mark`] for every cluster the parts were placed on.
fn mark_parts(ctx: &Ctx, spec: &Spec, parts: &[Part], targets: &[Target]) {
    mark(ctx, &spec.cluster, targets);
    if parts.iter().any(|p| p.pool) {
        mark(ctx, FARGATE_POOL, targets);
    }
}

/// The `ecs.availability-zone` attribute of an instance.
pub(super) fn zone_of(ci: &flotilla_model::ContainerInstance) -> Option<String> {
    let attributes = ci.attributes.iter().flatten();
    attributes.filter(|a| a.name.as_deref() == Some("ecs.availability-zone")).find_map(|a| a.value.clone())
}

/// Asks the cluster's snapshot to read these instances from the cache again: whatever became of
/// the commit, the reservations the plan made in the snapshot were only a guess.
pub(super) fn mark(ctx: &Ctx, cluster: &str, targets: &[Target]) {
    let ix = ctx.cache.read();
    let mut marks = crate::locks::lock(&ix.snapshot_marks);
    let m = marks.entry(cluster.to_string()).or_default();
    for t in targets {
        m.instances.insert(t.arn.as_str().into());
    }
}

fn task_key(t: &TaskRecord) -> ApiResult<String> {
    let arn = t.task.task_arn.as_deref().unwrap_or_default();
    let rest = arn.split_once(":task/").map(|(_, r)| r).unwrap_or_default();
    let (cluster, id) = rest.split_once('/').ok_or_else(|| ApiError::server(format!("malformed task ARN {arn}")))?;
    Ok(keys::task(cluster, id))
}
