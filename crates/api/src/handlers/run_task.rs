//! RunTask: the scheduler picks instances for `count` tasks from the cluster's cached snapshot
//! (see [`crate::state::snapshots`]), and the tasks are committed in one transaction that
//! re-checks each instance's room against the cache and compares each instance's revision, so
//! concurrent RunTasks never oversubscribe an instance. The clientToken is remembered in that same
//! transaction (see [`launch_tasks`] for why).

use flotilla_model::arn::{short_id, Resource};
use flotilla_model::{
    Failure, PlacementConstraint, PlacementStrategy, RunTaskRequest, RunTaskResponse, Task, TaskDefinition,
};
use flotilla_scheduler::{Constraint, Env, HostPort, Protocol, Request, RequiredAttribute, Snapshot, Strategy};
use flotilla_store::{Compare, Op, Txn, TxnOutcome};
use serde::{Deserialize, Serialize};

use super::start_task::{check_launch, check_network, check_overrides, launch_tags, runnable_definition};
use super::{active_cluster, DEFAULT_CLUSTER};
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::{ApiError, ApiResult};
use crate::idempotency;
use crate::placement::{fits, guard_instance, new_task, reservation_for, total, Launch, Misfit};
use crate::state::codec::encode;
use crate::state::records::{Reservation, TaskRecord};
use crate::state::{keys, snapshots};

/// The cluster's container instances as the scheduler sees them, with their store keys, built
/// afresh from the cache (the cached, incrementally kept snapshot is in [`crate::state::snapshots`]).
pub fn snapshot(ctx: &Ctx, cluster: &str) -> (Snapshot, Vec<String>) {
    snapshots::build(&ctx.cache.read(), cluster)
}

/// The scheduler's request for `count` tasks of `def` holding `r` each, with the caller's
/// strategies and constraints plus the task definition's own constraints.
pub fn placement_request(
    count: u32,
    placement_strategy: &[PlacementStrategy],
    placement_constraints: &[PlacementConstraint],
    def: &TaskDefinition,
    r: &Reservation,
    group: &str,
) -> ApiResult<Request> {
    let bad = |e: flotilla_scheduler::RequestError| ApiError::invalid_parameter(e.to_string());
    let strategies = placement_strategy.iter();
    let strategies = strategies
        .map(|s| Strategy::from_wire(s.r#type.as_deref().unwrap_or(""), s.field.as_deref()).map_err(bad))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut constraints = Vec::new();
    for c in placement_constraints {
        constraints
            .push(Constraint::from_wire(c.r#type.as_deref().unwrap_or(""), c.expression.as_deref()).map_err(bad)?);
    }
    for c in def.placement_constraints.iter().flatten() {
        constraints
            .push(Constraint::from_wire(c.r#type.as_deref().unwrap_or(""), c.expression.as_deref()).map_err(bad)?);
    }
    if constraints.len() > flotilla_scheduler::MAX_CONSTRAINTS {
        return Err(ApiError::invalid_parameter(format!(
            "placementConstraints can have at most {} items, including the task definition's.",
            flotilla_scheduler::MAX_CONSTRAINTS
        )));
    }
    let ports = r.ports.iter().map(|&port| HostPort { port, protocol: Protocol::Tcp });
    let ports = ports.chain(r.ports_udp.iter().map(|&port| HostPort { port, protocol: Protocol::Udp })).collect();
    let required_attributes = def
        .requires_attributes
        .iter()
        .flatten()
        .filter_map(|a| Some(RequiredAttribute { name: a.name.clone()?, value: a.value.clone() }))
        .collect();
    Ok(Request {
        count,
        cpu: r.cpu.max(0) as u32,
        memory: r.memory.max(0) as u32,
        ports,
        required_attributes,
        strategies,
        constraints,
        group: group.to_string(),
    })
}

pub async fn run(ctx: &Ctx, req: RunTaskRequest) -> ApiResult<RunTaskResponse> {
    let token = req.client_token.clone();
    if let Some(t) = token.as_deref().filter(|t| t.is_empty() || t.chars().count() > 64) {
        return Err(ApiError::invalid_parameter(format!(
            "clientToken must be 1 to 64 characters long; got {}.",
            t.chars().count()
        )));
    }
    let hash = idempotency::request_hash(&req);
    if let Some(t) = &token {
        if let Some(earlier) = replay(ctx, t, &hash)? {
            return Ok(earlier);
        }
    }
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref().or(Some(DEFAULT_CLUSTER)))?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(ApiError::invalid_parameter(format!("count must be between 1 and 10; got {count}.")));
    }
    if req.capacity_provider_strategy.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::unsupported("Capacity provider strategies are not supported by Flotilla yet."));
    }
    let launch_type = req.launch_type.clone().unwrap_or_else(|| "EC2".into());
    if launch_type != "EC2" {
        return Err(ApiError::unsupported(format!("The {launch_type} launch type is not supported by Flotilla yet.")));
    }
    let def = runnable_definition(ctx, req.task_definition.as_deref().unwrap_or_default(), "EC2")?;
    check_overrides(&def, req.overrides.as_ref())?;
    check_network(&def, req.network_configuration.is_some())?;
    let tags = req.tags.clone().unwrap_or_default();
    let volumes = req.volume_configurations.as_ref().map_or(0, Vec::len);
    check_launch(&tags, req.group.as_deref(), req.started_by.as_deref(), volumes)?;
    let group = req.group.clone().unwrap_or_else(|| format!("family:{}", def.family.as_deref().unwrap_or("")));
    let reservation = reservation_for(&def, req.overrides.as_ref());
    let request = placement_request(
        count as u32,
        req.placement_strategy.as_deref().unwrap_or_default(),
        req.placement_constraints.as_deref().unwrap_or_default(),
        &def,
        &reservation,
        &group,
    )?;
    let launch = Launch {
        overrides: req.overrides.clone(),
        group: Some(group),
        started_by: req.started_by.clone(),
        tags: launch_tags(ctx, &def, &cluster, tags, req.propagate_tags.as_deref(), req.enable_ecs_managed_tags),
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
    };
    let token = token.as_deref().map(|token| Token { token, hash: &hash });
    match launch_tasks(ctx, &cluster, &def, &request, &launch, token).await? {
        Launched::New(tasks, failures) => Ok(RunTaskResponse { tasks: Some(tasks), failures: Some(failures) }),
        Launched::Earlier(response) => Ok(response),
    }
}

/// Places the tasks `request` asks for in `cluster` and commits them. Tasks that could not be
/// placed come back as failures. RunTask and the service controller both launch tasks through
/// here.
pub async fn place_and_commit(
    ctx: &Ctx,
    cluster: &str,
    def: &TaskDefinition,
    request: &Request,
    launch: &Launch,
) -> ApiResult<(Vec<Task>, Vec<Failure>)> {
    match launch_tasks(ctx, cluster, def, request, launch, None).await? {
        Launched::New(tasks, failures) => Ok((tasks, failures)),
        // Only a request with a token can meet an earlier answer.
        Launched::Earlier(r) => Ok((r.tasks.unwrap_or_default(), r.failures.unwrap_or_default())),
    }
}

/// A RunTask's clientToken and the hash of the request that carried it.
struct Token<'a> {
    token: &'a str,
    hash: &'a str,
}

/// What a clientToken remembers of RunTask's answer: the tasks by ARN (a retry shows them as they
/// are now, read from the cache) and the failures. Ten ARNs rather than ten whole tasks keep the
/// record small: the SDKs send a fresh token with every RunTask, so there is one per request.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    #[serde(rename = "taskArns")]
    task_arns: Vec<String>,
    failures: Vec<Failure>,
}

enum Launched {
    New(Vec<Task>, Vec<Failure>),
    /// The token was already used by the same request: its answer.
    Earlier(RunTaskResponse),
}

/// RunTask's earlier answer for this token, if the same request already succeeded.
fn replay(ctx: &Ctx, token: &str, hash: &str) -> ApiResult<Option<RunTaskResponse>> {
    let Some(r) = idempotency::replay::<Remembered>(ctx, "RunTask", token, hash)? else { return Ok(None) };
    let ix = ctx.cache.read();
    let mut tasks = Vec::with_capacity(r.task_arns.len());
    let mut failures = r.failures;
    for arn in r.task_arns {
        let key = match ctx.arns.parse(&arn) {
            Ok(Resource::Task { cluster: Some(c), id }) => keys::task(&c, short_id(&id)),
            _ => String::new(),
        };
        match ix.tasks.get(key.as_str()) {
            Some(e) => tasks.push(e.value.task()),
            None => failures.push(Failure { arn: Some(arn), reason: Some("MISSING".into()), detail: None }),
        }
    }
    Ok(Some(RunTaskResponse { tasks: Some(tasks), failures: Some(failures) }))
}

/// The scheduler's failures in ECS's shape.
fn plan_failures(plan: &flotilla_scheduler::Plan) -> Vec<Failure> {
    let failures = plan.failures.iter();
    failures
        .map(|f| Failure {
            arn: f.arn.clone(),
            reason: Some(f.reason.ecs_reason().into()),
            detail: Some(f.detail.clone()),
        })
        .collect()
}

/// Places and commits a request's tasks, all of them in one transaction with the clientToken.
///
/// Why one transaction: it compares the revision of every instance the plan uses (and bumps it),
/// requires every task key and the token to be absent, and writes tasks and token together. So a
/// request's tasks appear all at once or not at all, two identical requests racing with one token
/// cannot both commit (the loser's compare on the token fails, and it answers with the winner's
/// tasks), and a retry after a crash finds either the token with its tasks or neither. The
/// alternative, an "in progress" token written first, would need a second write per request
/// and a way to finish or undo the requests a crash left in progress. One transaction is also
/// one durable write per request instead of one per instance, which is what lets group commit
/// share each fsync among many requests. The price: a conflict on any of its instances retries
/// the whole request, with a fresh plan.
async fn launch_tasks(
    ctx: &Ctx,
    cluster: &str,
    def: &TaskDefinition,
    request: &Request,
    launch: &Launch,
    token: Option<Token<'_>>,
) -> ApiResult<Launched> {
    for attempt in 1..=MAX_CAS_ATTEMPTS {
        let seed = rand::random::<u64>();
        let placed = ctx
            .cache
            .snapshots
            .place(|| ctx.cache.read(), cluster, request, &Env { seed })
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
        let mut failures = plan_failures(&placed.plan);
        // The instances the plan uses, each with the tasks it gets, checked against what the
        // cache says now under the revision the transaction will compare: the snapshot may be a
        // little behind, and the check and the compare together make sure nothing overfills.
        let mut per_instance: Vec<(usize, usize)> = Vec::new(); // (first target, tasks)
        for (k, t) in placed.targets.iter().enumerate() {
            match per_instance.iter_mut().find(|(first, _)| placed.targets[*first].index == t.index) {
                Some((_, n)) => *n += 1,
                None => per_instance.push((k, 1)),
            }
        }
        let mut records: Vec<TaskRecord> = Vec::with_capacity(placed.targets.len());
        let mut txn = Txn::new();
        let mut misfits = Vec::new();
        {
            let ix = ctx.cache.read();
            for &(first, n) in &per_instance {
                let target = &placed.targets[first];
                let Some(entry) = ix.instances.get(&target.key) else {
                    misfits.push((target.arn.clone(), Misfit::Inactive, n));
                    continue;
                };
                let mine: Vec<TaskRecord> =
                    (0..n).map(|_| new_task(ctx, cluster, def, &entry.value.instance, launch)).collect();
                let usage = ix.instance_usage.get(&target.arn);
                if let Err(m) = fits(&entry.value.instance, usage.unwrap_or(&Default::default()), &total(&mine)) {
                    misfits.push((target.arn.clone(), m, n));
                    continue;
                }
                txn = guard_instance(&ix, txn, &target.key, entry.revision);
                records.extend(mine);
            }
        }
        if !misfits.is_empty() && attempt < MAX_CAS_ATTEMPTS {
            // The snapshot was behind the cache: look again with the instances refreshed.
            mark(ctx, cluster, &placed.targets);
            continue;
        }
        for (arn, m, n) in misfits {
            for _ in 0..n {
                failures.push(Failure {
                    arn: Some(arn.clone()),
                    reason: Some(m.reason().into()),
                    detail: Some("the instance filled up while this request was placed".into()),
                });
            }
        }
        for t in &records {
            let key = task_key(t)?;
            txn = txn.when(Compare::absent(&key)).then(Op::put(&key, encode(t)));
        }
        let token_key = token.as_ref().map(|t| {
            let remembered = Remembered {
                task_arns: records.iter().filter_map(|t| t.task.task_arn.clone()).collect(),
                failures: failures.clone(),
            };
            let (c, op) = idempotency::remember(ctx, "RunTask", t.token, t.hash, &remembered);
            let key = c.key().to_string();
            txn = std::mem::take(&mut txn).when(c).then(op);
            key
        });
        if txn.ops.is_empty() {
            // Nothing fit and there is no token to remember: nothing to write.
            mark(ctx, cluster, &placed.targets);
            return Ok(Launched::New(Vec::new(), failures));
        }
        let outcome = ctx.store.txn(txn).await;
        // Whatever became of the commit (an I/O error included), the reservations the plan made
        // in the snapshot were only a guess.
        mark(ctx, cluster, &placed.targets);
        match outcome? {
            TxnOutcome::Committed { revision } => {
                ctx.caught_up(revision).await?;
                return Ok(Launched::New(records.into_iter().map(|r| r.task).collect(), failures));
            }
            TxnOutcome::Conflict { key } => {
                // Look again only once the cache has what beat this request.
                ctx.caught_up(ctx.store.revision()).await?;
                if token_key.as_deref() == Some(key.as_str()) {
                    let t = token.as_ref().expect("a token key comes from a token");
                    if let Some(earlier) = replay(ctx, t.token, t.hash)? {
                        return Ok(Launched::Earlier(earlier));
                    }
                }
            }
        }
    }
    Err(ApiError::server("The cluster kept changing while the tasks were placed; try again."))
}

/// Asks the cluster's snapshot to read these instances from the cache again: whatever became of
/// the commit, the reservations the plan made in the snapshot were only a guess.
fn mark(ctx: &Ctx, cluster: &str, targets: &[snapshots::Target]) {
    let ix = ctx.cache.read();
    let mut marks = crate::state::locks::lock(&ix.snapshot_marks);
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
