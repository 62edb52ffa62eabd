//! Clusters: Create, Describe, List, Delete, Update, UpdateClusterSettings, and the `default`
//! cluster that exists from the first start.

use flotilla_model::{
    Cluster, ClusterSetting, CreateClusterRequest, CreateClusterResponse, DeleteClusterRequest, DeleteClusterResponse,
    DescribeClustersRequest, DescribeClustersResponse, KeyValuePair, ListClustersRequest, ListClustersResponse,
    PutClusterCapacityProvidersRequest, PutClusterCapacityProvidersResponse, UpdateClusterRequest,
    UpdateClusterResponse, UpdateClusterSettingsRequest, UpdateClusterSettingsResponse,
};
use flotilla_store::{Compare, Op, Txn};

use super::{active_cluster, check_batch, cluster_name, missing, DEFAULT_CLUSTER};
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::domain::association::associate;
use crate::domain::tags::validate_tags;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::cache::{range_prefix, ClusterStats, Indexes};
use crate::state::codec::encode;
use crate::state::keys;

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_settings(settings: &[ClusterSetting]) -> ApiResult<()> {
    for (i, s) in settings.iter().enumerate() {
        let value = s.value.as_deref().unwrap_or("");
        if !["enabled", "disabled", "enhanced"].contains(&value) {
            return Err(ApiError::invalid_parameter(format!(
                "settings[{i}].value '{value}' is not valid for containerInsights. Valid values: enabled, disabled, enhanced."
            )));
        }
    }
    Ok(())
}

fn merge_settings(existing: &[ClusterSetting], new: &[ClusterSetting]) -> Vec<ClusterSetting> {
    let mut out: Vec<ClusterSetting> = existing.to_vec();
    for s in new {
        match out.iter_mut().find(|o| o.name == s.name) {
            Some(o) => o.value = s.value.clone(),
            None => out.push(s.clone()),
        }
    }
    out
}

fn default_settings() -> Vec<ClusterSetting> {
    vec![ClusterSetting { name: Some("containerInsights".into()), value: Some("disabled".into()) }]
}

/// The record with live counts filled in and optional parts shown as `include` asks; statistics
/// are left empty here, for [`describe`] to fill in.
fn present(c: &Cluster, stats: ClusterStats, include: &[String]) -> Cluster {
    let mut out = c.clone();
    out.registered_container_instances_count = Some(stats.registered_instances as i32);
    out.running_tasks_count = Some(stats.running_tasks as i32);
    out.pending_tasks_count = Some(stats.pending_tasks as i32);
    out.active_services_count = Some(stats.active_services as i32);
    out.capacity_providers.get_or_insert_with(Vec::new);
    out.default_capacity_provider_strategy.get_or_insert_with(Vec::new);
    let has = |f: &str| include.iter().any(|i| i == f);
    out.statistics = Some(Vec::new());
    if !has("TAGS") {
        out.tags = Some(Vec::new());
    } else {
        out.tags.get_or_insert_with(Vec::new);
    }
    if !has("SETTINGS") {
        out.settings = None;
    }
    if !has("CONFIGURATIONS") {
        out.configuration = None;
    }
    if !has("ATTACHMENTS") {
        out.attachments = None;
        out.attachments_status = None;
    }
    out
}

/// The ACTIVE and DRAINING Fargate services of a cluster. The cache counts services of every
/// launch type together; the statistics split them, so the Fargate ones are counted here.
fn fargate_services(ix: &Indexes, cluster: &str) -> (i64, i64) {
    let prefix = format!("{}{cluster}/", keys::SERVICE);
    let fargate =
        range_prefix(&ix.services, &prefix).filter(|(_, e)| e.value.launch_type.as_deref() == Some("FARGATE"));
    fargate.fold((0, 0), |(active, draining), (_, e)| match e.value.status.as_deref() {
        Some("ACTIVE") => (active + 1, draining),
        Some("DRAINING") => (active, draining + 1),
        _ => (active, draining),
    })
}

fn statistics(s: ClusterStats, (active_fargate, draining_fargate): (i64, i64)) -> Vec<KeyValuePair> {
    let kv = |n: &str, v: i64| KeyValuePair { name: Some(n.into()), value: Some(v.to_string()) };
    vec![
        kv("runningEC2TasksCount", s.running_tasks - s.running_fargate_tasks),
        kv("runningFargateTasksCount", s.running_fargate_tasks),
        kv("pendingEC2TasksCount", s.pending_tasks - s.pending_fargate_tasks),
        kv("pendingFargateTasksCount", s.pending_fargate_tasks),
        kv("activeEC2ServiceCount", s.active_services - active_fargate),
        kv("activeFargateServiceCount", active_fargate),
        kv("drainingEC2ServiceCount", s.draining_services - draining_fargate),
        kv("drainingFargateServiceCount", draining_fargate),
    ]
}

fn stats_of(ctx: &Ctx, name: &str) -> ClusterStats {
    ctx.cache.read().cluster_stats.get(name).copied().unwrap_or_default()
}

/// Creates the `default` cluster if it has never existed.
pub async fn ensure_default_cluster(ctx: &Ctx) -> ApiResult<()> {
    let key = keys::cluster(DEFAULT_CLUSTER);
    if ctx.cache.read().clusters.contains_key(&key) {
        return Ok(());
    }
    let cluster = new_cluster(ctx, DEFAULT_CLUSTER, CreateClusterRequest::default());
    ctx.commit(Txn::new().when(Compare::absent(&key)).then(Op::put(&key, encode(&cluster)))).await?;
    Ok(())
}

fn new_cluster(ctx: &Ctx, name: &str, req: CreateClusterRequest) -> Cluster {
    Cluster {
        cluster_arn: Some(ctx.arns.cluster(name)),
        cluster_name: Some(name.to_string()),
        status: Some("ACTIVE".into()),
        tags: req.tags.filter(|t| !t.is_empty()),
        settings: Some(merge_settings(&default_settings(), &req.settings.unwrap_or_default())),
        configuration: req.configuration,
        capacity_providers: Some(req.capacity_providers.unwrap_or_default()),
        default_capacity_provider_strategy: Some(req.default_capacity_provider_strategy.unwrap_or_default()),
        service_connect_defaults: req
            .service_connect_defaults
            .map(|d| flotilla_model::ClusterServiceConnectDefaults { namespace: d.namespace }),
        ..Default::default()
    }
}

pub async fn create(ctx: &Ctx, req: CreateClusterRequest) -> ApiResult<CreateClusterResponse> {
    let name = req.cluster_name.clone().unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    if !valid_name(&name) {
        return Err(ApiError::invalid_parameter(
            "clusterName must be 1 to 255 letters, numbers, hyphens and underscores.",
        ));
    }
    validate_tags(req.tags.as_deref().unwrap_or_default())?;
    check_settings(req.settings.as_deref().unwrap_or_default())?;
    if req.service_connect_defaults.is_some() {
        return Err(ApiError::unsupported("Service Connect is not supported by Flotilla yet."));
    }
    let key = keys::cluster(&name);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let existing = ctx.cache.read().clusters.get(&key).cloned();
        let compare = match &existing {
            // ECS answers an existing ACTIVE cluster as if it had just been created.
            Some(e) if e.value.status.as_deref() == Some("ACTIVE") => {
                let c = present(&e.value, stats_of(ctx, &name), &["TAGS".into(), "SETTINGS".into()]);
                return Ok(CreateClusterResponse { cluster: Some(c) });
            }
            Some(e) => Compare::unchanged(&key, e.revision),
            None => Compare::absent(&key),
        };
        let mut cluster = new_cluster(ctx, &name, req.clone());
        let providers = req.capacity_providers.clone().unwrap_or_default();
        let strategy = req.default_capacity_provider_strategy.clone().unwrap_or_default();
        if !providers.is_empty() || !strategy.is_empty() {
            associate(&ctx.cache.read(), &mut cluster, &providers, &strategy)?;
        }
        if ctx.commit(Txn::new().when(compare).then(Op::put(&key, encode(&cluster)))).await?.is_some() {
            let c =
                present(&cluster, stats_of(ctx, &name), &["TAGS".into(), "SETTINGS".into(), "CONFIGURATIONS".into()]);
            return Ok(CreateClusterResponse { cluster: Some(c) });
        }
    }
    Err(ApiError::server("The cluster kept changing while it was created; try again."))
}

pub async fn describe(ctx: &Ctx, req: DescribeClustersRequest) -> ApiResult<DescribeClustersResponse> {
    let names = req.clusters.unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_string()]);
    if names.len() > 100 {
        check_batch("clusters", names.len(), 100)?;
    }
    let include = req.include.unwrap_or_default();
    let ix = ctx.cache.read();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for given in names {
        let found = cluster_name(ctx, Some(&given)).and_then(|n| ix.clusters.get(&keys::cluster(&n)).map(|e| (n, e)));
        match found {
            Some((n, e)) => {
                let stats = ix.cluster_stats.get(&n).copied().unwrap_or_default();
                let mut c = present(&e.value, stats, &include);
                if include.iter().any(|i| i == "STATISTICS") {
                    c.statistics = Some(statistics(stats, fargate_services(&ix, &n)));
                }
                clusters.push(c);
            }
            None => failures.push(missing(if given.starts_with("arn:") { given } else { ctx.arns.cluster(&given) })),
        }
    }
    Ok(DescribeClustersResponse { clusters: Some(clusters), failures: Some(failures) })
}

pub async fn list(ctx: &Ctx, req: ListClustersRequest) -> ApiResult<ListClustersResponse> {
    let scope = "ListClusters";
    let pr = ctx.pager.request(scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let ix = ctx.cache.read();
    let active = range_prefix(&ix.clusters, keys::CLUSTER)
        .filter(|(_, e)| e.value.status.as_deref() == Some("ACTIVE"))
        .filter(|(_, e)| !e.value.cluster_name.as_deref().is_some_and(crate::domain::fargate::is_pool))
        .map(|(k, e)| (k.as_str(), e));
    let (items, next) = page(&ctx.pager, scope, &pr, active, |(k, _)| k);
    Ok(ListClustersResponse {
        cluster_arns: Some(items.into_iter().map(|(_, e)| e.value.cluster_arn.clone().unwrap_or_default()).collect()),
        next_token: next,
    })
}

pub async fn delete(ctx: &Ctx, req: DeleteClusterRequest) -> ApiResult<DeleteClusterResponse> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (name, entry) = active_cluster(ctx, req.cluster.as_deref())?;
        let stats = stats_of(ctx, &name);
        if stats.registered_instances > 0 {
            return Err(ApiError::new(
                "ClusterContainsContainerInstancesException",
                "The Cluster cannot be deleted while Container Instances are active or draining.",
            ));
        }
        if stats.active_services + stats.draining_services > 0 {
            return Err(ApiError::new(
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            ));
        }
        if stats.running_tasks + stats.pending_tasks > 0 || has_unstopped_tasks(ctx, &name) {
            return Err(ApiError::new(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            ));
        }
        let mut cluster = (*entry.value).clone();
        cluster.status = Some("INACTIVE".into());
        let key = keys::cluster(&name);
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&cluster)));
        if ctx.commit(txn).await?.is_some() {
            let c = present(&cluster, ClusterStats::default(), &["TAGS".into(), "SETTINGS".into()]);
            return Ok(DeleteClusterResponse { cluster: Some(c) });
        }
    }
    Err(ApiError::server("The cluster kept changing while it was deleted; try again."))
}

/// Tasks that are neither STOPPED nor meant to stop still hold the cluster.
fn has_unstopped_tasks(ctx: &Ctx, cluster: &str) -> bool {
    let ix = ctx.cache.read();
    ix.task_index.by_cluster_desired.get(&(cluster.into(), "RUNNING".into())).is_some_and(|s| !s.is_empty())
}

async fn modify(ctx: &Ctx, given: Option<&str>, f: impl Fn(&mut Cluster)) -> ApiResult<Cluster> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (name, entry) = active_cluster(ctx, given)?;
        let mut cluster = (*entry.value).clone();
        f(&mut cluster);
        let key = keys::cluster(&name);
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&cluster)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(present(
                &cluster,
                stats_of(ctx, &name),
                &["TAGS".into(), "SETTINGS".into(), "CONFIGURATIONS".into()],
            ));
        }
    }
    Err(ApiError::server("The cluster kept changing while it was updated; try again."))
}

pub async fn update(ctx: &Ctx, req: UpdateClusterRequest) -> ApiResult<UpdateClusterResponse> {
    let settings = req.settings.clone().unwrap_or_default();
    check_settings(&settings)?;
    if req.service_connect_defaults.is_some() {
        return Err(ApiError::unsupported("Service Connect is not supported by Flotilla yet."));
    }
    let configuration = req.configuration.clone();
    let cluster = modify(ctx, req.cluster.as_deref(), |c| {
        c.settings = Some(merge_settings(c.settings.as_deref().unwrap_or_default(), &settings));
        if let Some(conf) = &configuration {
            c.configuration = Some(conf.clone());
        }
    })
    .await?;
    Ok(UpdateClusterResponse { cluster: Some(cluster) })
}

pub async fn update_settings(ctx: &Ctx, req: UpdateClusterSettingsRequest) -> ApiResult<UpdateClusterSettingsResponse> {
    let settings = req.settings.clone().unwrap_or_default();
    check_settings(&settings)?;
    let cluster = modify(ctx, req.cluster.as_deref(), |c| {
        c.settings = Some(merge_settings(c.settings.as_deref().unwrap_or_default(), &settings));
    })
    .await?;
    Ok(UpdateClusterSettingsResponse { cluster: Some(cluster) })
}

/// PutClusterCapacityProviders: the cluster's whole list of providers and its default strategy.
pub async fn put_capacity_providers(
    ctx: &Ctx,
    req: PutClusterCapacityProvidersRequest,
) -> ApiResult<PutClusterCapacityProvidersResponse> {
    let providers = req.capacity_providers.clone().unwrap_or_default();
    let strategy = req.default_capacity_provider_strategy.clone().unwrap_or_default();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (name, entry) = active_cluster(ctx, req.cluster.as_deref())?;
        let mut cluster = (*entry.value).clone();
        associate(&ctx.cache.read(), &mut cluster, &providers, &strategy)?;
        let key = keys::cluster(&name);
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&cluster)));
        if ctx.commit(txn).await?.is_some() {
            let include = ["TAGS".into(), "SETTINGS".into(), "ATTACHMENTS".into()];
            return Ok(PutClusterCapacityProvidersResponse {
                cluster: Some(present(&cluster, stats_of(ctx, &name), &include)),
            });
        }
    }
    Err(ApiError::server("The cluster kept changing while its capacity providers were set; try again."))
}
