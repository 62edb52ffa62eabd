//! Container instances: Register (and re-register, keeping the ARN), Deregister, Describe, List
//! and UpdateContainerInstancesState. Remaining resources are derived from what the instance's
//! tasks reserve, so they are always true.

use flotilla_model::arn::short_id;
use flotilla_model::{
    ContainerInstance, DeregisterContainerInstanceRequest, DeregisterContainerInstanceResponse,
    DescribeContainerInstancesRequest, DescribeContainerInstancesResponse, ListContainerInstancesRequest,
    ListContainerInstancesResponse, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse, Resource,
    UpdateContainerInstancesStateRequest, UpdateContainerInstancesStateResponse,
};
use flotilla_store::{Compare, Op, Txn};

use super::{active_cluster, check_batch, missing, new_id};
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::domain::tags::validate_tags;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::cache::{range_prefix, Entry, Indexes, InstanceUsage};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::InstanceRecord;

pub use crate::domain::lookup::instance_id;

pub fn lookup(ctx: &Ctx, cluster: &str, given: &str) -> Option<Entry<InstanceRecord>> {
    let id = instance_id(ctx, cluster, given)?;
    ctx.cache.read().instances.get(&keys::instance(cluster, id)).cloned()
}

fn resource_int(name: &str, v: i64) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(v.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    }
}

fn resource_ports(name: &str, ports: Vec<String>) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(0),
    }
}

/// What is left of `registered` once `usage` is taken out.
pub fn remaining(registered: &[Resource], usage: &InstanceUsage) -> Vec<Resource> {
    registered
        .iter()
        .map(|r| match (r.name.as_deref(), r.r#type.as_deref()) {
            (Some("CPU"), _) => resource_int("CPU", r.integer_value.unwrap_or(0) as i64 - usage.cpu),
            (Some("MEMORY"), _) => resource_int("MEMORY", r.integer_value.unwrap_or(0) as i64 - usage.memory),
            (Some(n @ ("PORTS" | "PORTS_UDP")), _) => {
                let used = if n == "PORTS" { &usage.ports } else { &usage.ports_udp };
                let mut ports: Vec<String> = r.string_set_value.clone().unwrap_or_default();
                for p in used.iter().map(|p| p.to_string()) {
                    if !ports.contains(&p) {
                        ports.push(p);
                    }
                }
                resource_ports(n, ports)
            }
            (Some("GPU"), _) => resource_ports("GPU", crate::domain::launch::gpus::free_of(r, &usage.gpus)),
            _ => r.clone(),
        })
        .collect()
}

/// The instance as ECS shows it: live counts and remaining resources filled in, and a `version`
/// that also counts the placements it has taken (ECS bumps it on every change it sends an event
/// for, task placements included; the record itself is not rewritten per placement, see
/// `domain::launch::guard_instance`).
pub fn present(ix: &Indexes, instance_key: &str, rec: &InstanceRecord, with_tags: bool) -> ContainerInstance {
    let empty = InstanceUsage::default();
    let arn = rec.instance.container_instance_arn.as_deref().unwrap_or("");
    let usage = ix.instance_usage.get(arn).unwrap_or(&empty);
    let placements = ix.placements.get(&keys::placement_of(instance_key)).map_or(0, |e| *e.value);
    let mut ci = rec.instance.clone();
    ci.version = Some(ci.version.unwrap_or(0) + placements as i64);
    ci.remaining_resources = Some(remaining(ci.registered_resources.as_deref().unwrap_or_default(), usage));
    ci.running_tasks_count = Some(usage.running_tasks as i32);
    ci.pending_tasks_count = Some(usage.pending_tasks as i32);
    ci.attachments.get_or_insert_with(Vec::new);
    if !with_tags {
        ci.tags = None;
    } else {
        ci.tags.get_or_insert_with(Vec::new);
    }
    ci
}

fn check_resources(resources: &[Resource]) -> ApiResult<()> {
    for (i, r) in resources.iter().enumerate() {
        let name = r.name.as_deref().unwrap_or("");
        let ty = r.r#type.as_deref().unwrap_or("");
        let ok = match name {
            "CPU" | "MEMORY" => ty == "INTEGER" && r.integer_value.unwrap_or(-1) >= 0,
            "PORTS" | "PORTS_UDP" => {
                ty == "STRINGSET"
                    && r.string_set_value.as_deref().unwrap_or_default().iter().all(|p| p.parse::<u16>().is_ok())
            }
            _ => !name.is_empty(),
        };
        if !ok {
            return Err(ApiError::invalid_parameter(format!(
                "totalResources[{i}] is not valid: CPU and MEMORY take a non-negative integerValue of type INTEGER; PORTS and PORTS_UDP take a stringSetValue of port numbers of type STRINGSET."
            )));
        }
    }
    Ok(())
}

/// The capacity provider of the host `ec2_id`: the one on the host's Auto Scaling group, when
/// `cluster` uses it. Hosts outside every group (an agent started by hand) have none.
async fn provider_of_host(ctx: &Ctx, cluster: &str, ec2_id: &str) -> ApiResult<Option<String>> {
    let Some(host) = crate::domain::hosts::host(ctx, ec2_id).await? else { return Ok(None) };
    let Some(group) = host.value.group.as_deref() else { return Ok(None) };
    let Some(group) = crate::domain::hosts::group(ctx, group).await? else { return Ok(None) };
    let ix = ctx.cache.read();
    let associated = ix.clusters.get(&keys::cluster(cluster)).and_then(|c| c.value.capacity_providers.clone());
    let found = range_prefix(&ix.capacity_providers, keys::CAPACITY_PROVIDER).find(|(_, p)| {
        p.value.status.as_deref() == Some("ACTIVE")
            && p.value.auto_scaling_group_provider.as_ref().and_then(|a| a.auto_scaling_group_arn.as_deref())
                == Some(group.value.arn.as_str())
    });
    let name = found.and_then(|(_, p)| p.value.name.clone());
    Ok(name.filter(|n| associated.iter().flatten().any(|a| crate::domain::capacity::short_name(a) == n)))
}

fn ec2_instance_id(doc: Option<&str>) -> String {
    let from_doc = doc
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v.get("instanceId").and_then(|i| i.as_str()).map(String::from));
    from_doc.unwrap_or_else(|| format!("i-{}", &new_id()[..17]))
}

pub async fn register(
    ctx: &Ctx,
    req: RegisterContainerInstanceRequest,
) -> ApiResult<RegisterContainerInstanceResponse> {
    let (cluster, _) = crate::domain::lookup::host_cluster(ctx, req.cluster.as_deref())?;
    let resources = req.total_resources.clone().unwrap_or_default();
    check_resources(&resources)?;
    validate_tags(req.tags.as_deref().unwrap_or_default())?;
    let attributes = req.attributes.clone().unwrap_or_default();
    crate::domain::attributes::check_attributes(&attributes, false)?;
    let ec2_id = ec2_instance_id(req.instance_identity_document.as_deref());
    let provider = provider_of_host(ctx, &cluster, &ec2_id).await?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let existing = match req.container_instance_arn.as_deref() {
            Some(arn) => {
                let e = lookup(ctx, &cluster, arn).ok_or_else(|| {
                    ApiError::invalid_parameter(format!(
                        "containerInstanceArn '{arn}' does not name a container instance of cluster {cluster}."
                    ))
                })?;
                // Deregistering is final: ECS answers an agent that re-registers a deregistered
                // instance with this ClientException; only a fresh registration gets back in.
                if e.value.instance.status.as_deref() == Some("INACTIVE") {
                    return Err(ApiError::client(format!("Container instance {} is inactive.", short_id(arn))));
                }
                Some(e)
            }
            None => None,
        };
        let (key, compare, mut ci) = match &existing {
            Some(e) => {
                let id = short_id(e.value.instance.container_instance_arn.as_deref().unwrap_or_default()).to_string();
                let key = keys::instance(&cluster, &id);
                (key.clone(), Compare::unchanged(key, e.revision), e.value.instance.clone())
            }
            None => {
                let id = new_id();
                let key = keys::instance(&cluster, &id);
                let ci = ContainerInstance {
                    container_instance_arn: Some(ctx.arns.container_instance(&cluster, &id)),
                    ec2_instance_id: Some(ec2_id.clone()),
                    capacity_provider_name: provider.clone(),
                    version: Some(0),
                    registered_at: Some(ctx.now()),
                    agent_connected: Some(false),
                    tags: req.tags.clone().filter(|t| !t.is_empty()),
                    ..Default::default()
                };
                (key.clone(), Compare::absent(key), ci)
            }
        };
        ci.registered_resources = Some(resources.clone());
        ci.version_info = req.version_info.clone().or(ci.version_info);
        ci.attributes = Some(attributes.clone());
        ci.status = Some("ACTIVE".into());
        ci.status_reason = None;
        ci.version = Some(ci.version.unwrap_or(0) + 1);
        let rec = InstanceRecord { instance: ci, agent_address: None, session_server: None };
        if ctx.commit(Txn::new().when(compare).then(Op::put(&key, encode(&rec)))).await?.is_some() {
            return Ok(RegisterContainerInstanceResponse {
                container_instance: Some(present_live(ctx, &key, &rec, true)),
            });
        }
    }
    Err(ApiError::server("The container instance kept changing while it registered; try again."))
}

/// The instance as ECS shows it, with the cache's current usage of it.
fn present_live(ctx: &Ctx, instance_key: &str, rec: &InstanceRecord, with_tags: bool) -> ContainerInstance {
    present(&ctx.cache.read(), instance_key, rec, with_tags)
}

/// Applies `f` to an instance's record; `Ok(None)` when the instance does not exist.
pub async fn modify(
    ctx: &Ctx,
    cluster: &str,
    given: &str,
    f: impl Fn(&mut ContainerInstance) -> ApiResult<()>,
) -> ApiResult<Option<ContainerInstance>> {
    modify_with(ctx, cluster, given, f, false).await
}

/// [`modify`], and with `quiesce` the write also requires that no task was placed on the instance
/// since `f` looked: it compares the instance's placement counter (see
/// `domain::launch::guard_instance`), which every placement bumps, as read before `f` ran.
async fn modify_with(
    ctx: &Ctx,
    cluster: &str,
    given: &str,
    f: impl Fn(&mut ContainerInstance) -> ApiResult<()>,
    quiesce: bool,
) -> ApiResult<Option<ContainerInstance>> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = lookup(ctx, cluster, given) else { return Ok(None) };
        let mut rec = (*entry.value).clone();
        let id = short_id(rec.instance.container_instance_arn.as_deref().unwrap_or_default()).to_string();
        let key = keys::instance(cluster, &id);
        let placements = quiesce.then(|| {
            let counter = keys::placement_of(&key);
            let revision = ctx.cache.read().placements.get(&counter).map_or(0, |e| e.revision);
            Compare::unchanged(counter, revision)
        });
        f(&mut rec.instance)?;
        if rec == *entry.value {
            return Ok(Some(present_live(ctx, &key, &rec, false)));
        }
        rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
        let mut txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&rec)));
        if let Some(c) = placements {
            txn = txn.when(c);
        }
        if ctx.commit(txn).await?.is_some() {
            return Ok(Some(present_live(ctx, &key, &rec, false)));
        }
        // Look again only once the cache has what beat this write.
        ctx.caught_up(ctx.store.revision()).await?;
    }
    Err(ApiError::server("The container instance kept changing; try again."))
}

pub async fn deregister(
    ctx: &Ctx,
    req: DeregisterContainerInstanceRequest,
) -> ApiResult<DeregisterContainerInstanceResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let given = req.container_instance.unwrap_or_default();
    let force = req.force.unwrap_or(false);
    // Without force, "no tasks" must still hold when the write lands: the check runs inside the
    // compare-and-swap, which also fails if a placement committed on the instance since.
    let ci = modify_with(
        ctx,
        &cluster,
        &given,
        |ci| {
            let arn = ci.container_instance_arn.as_deref().unwrap_or_default();
            let busy = ctx.cache.read().instance_usage.get(arn).is_some_and(|u| u.running_tasks + u.pending_tasks > 0);
            if busy && !force {
                return Err(ApiError::invalid_parameter(
                    "The specified container instance has tasks running. Stop them first or deregister with force.",
                ));
            }
            ci.status = Some("INACTIVE".into());
            ci.agent_connected = Some(false);
            Ok(())
        },
        !force,
    )
    .await?
    .ok_or_else(|| {
        ApiError::invalid_parameter(format!("containerInstance '{given}' does not exist in cluster {cluster}."))
    })?;
    Ok(DeregisterContainerInstanceResponse { container_instance: Some(ci) })
}

pub async fn describe(
    ctx: &Ctx,
    req: DescribeContainerInstancesRequest,
) -> ApiResult<DescribeContainerInstancesResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let list = req.container_instances.unwrap_or_default();
    check_batch("containerInstances", list.len(), 100)?;
    let with_tags = req.include.unwrap_or_default().iter().any(|i| i == "TAGS");
    let ix = ctx.cache.read();
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for given in list {
        let key = instance_id(ctx, &cluster, &given).map(|id| keys::instance(&cluster, id));
        match key.as_ref().and_then(|k| ix.instances.get(k).map(|e| (k, e))) {
            Some((key, e)) => found.push(present(&ix, key, &e.value, with_tags)),
            None => failures.push(missing(if given.starts_with("arn:") {
                given
            } else {
                ctx.arns.container_instance(&cluster, &given)
            })),
        }
    }
    Ok(DescribeContainerInstancesResponse { container_instances: Some(found), failures: Some(failures) })
}

pub async fn list(ctx: &Ctx, req: ListContainerInstancesRequest) -> ApiResult<ListContainerInstancesResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    // The cluster query language selects instances; the keys it keeps filter the listing.
    let selected: Option<std::collections::HashSet<String>> = match req.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            let expr = flotilla_scheduler::parse(f)
                .map_err(|e| ApiError::invalid_parameter(format!("filter is not a valid cluster query: {e}")))?;
            let (snap, keys) = crate::state::snapshots::build(&ctx.cache.read(), &cluster);
            Some(snap.filter(&expr).into_iter().map(|i| keys[i].clone()).collect())
        }
        _ => None,
    };
    let status = req.status.clone();
    let scope = format!(
        "ListContainerInstances\0{cluster}\0{}\0{}",
        status.as_deref().unwrap_or(""),
        req.filter.as_deref().unwrap_or("")
    );
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let prefix = format!("{}{cluster}/", keys::INSTANCE);
    let ix = ctx.cache.read();
    let matching = range_prefix(&ix.instances, &prefix).filter(|(k, e)| {
        if selected.as_ref().is_some_and(|set| !set.contains(*k)) {
            return false;
        }
        let s = e.value.instance.status.as_deref().unwrap_or("");
        match &status {
            Some(want) => s == want,
            None => s != "INACTIVE",
        }
    });
    let (items, next) = page(&ctx.pager, &scope, &pr, matching, |(k, _)| k.as_str());
    Ok(ListContainerInstancesResponse {
        container_instance_arns: Some(
            items
                .into_iter()
                .map(|(_, e)| e.value.instance.container_instance_arn.clone().unwrap_or_default())
                .collect(),
        ),
        next_token: next,
    })
}

pub async fn update_state(
    ctx: &Ctx,
    req: UpdateContainerInstancesStateRequest,
) -> ApiResult<UpdateContainerInstancesStateResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let status = req.status.unwrap_or_default();
    if status != "ACTIVE" && status != "DRAINING" {
        return Err(ApiError::invalid_parameter(format!(
            "status '{status}' is not valid here. Valid values: ACTIVE, DRAINING."
        )));
    }
    let list = req.container_instances.unwrap_or_default();
    check_batch("containerInstances", list.len(), 10)?;
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for given in list {
        let s = status.clone();
        let result = modify(ctx, &cluster, &given, |ci| {
            if ci.status.as_deref() == Some("INACTIVE") {
                return Err(ApiError::invalid_parameter("The container instance is deregistered."));
            }
            ci.status = Some(s.clone());
            Ok(())
        })
        .await;
        let arn = if given.starts_with("arn:") { given.clone() } else { ctx.arns.container_instance(&cluster, &given) };
        match result {
            Ok(Some(ci)) => done.push(ci),
            Ok(None) => failures.push(missing(arn)),
            Err(e) if e.code == "InvalidParameterException" => failures.push(flotilla_model::Failure {
                arn: Some(arn),
                reason: Some("INACTIVE".into()),
                detail: Some(e.message),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(UpdateContainerInstancesStateResponse { container_instances: Some(done), failures: Some(failures) })
}
