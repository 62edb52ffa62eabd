//! The FARGATE launch type and the FARGATE/FARGATE_SPOT capacity providers: what a Fargate launch
//! must carry, where its tasks go and how they read.
//!
//! Fargate capacity is a pool of hosts the operator dedicates once (`flotilla agent --fargate`).
//! They register as container instances of the reserved [`FARGATE_POOL`] cluster, which no API
//! call can name (see [`is_pool`]), so they are instances of no user's cluster. A Fargate task
//! belongs to its own cluster, with no `containerInstanceArn`; the pool host that runs it is kept
//! out of sight (`TaskRecord::hidden`). The launch path places Fargate tasks on the pool's
//! snapshot like any other: ECS's rule for Fargate (spread across the zones of the task's subnets,
//! then across hosts) becomes a memberOf constraint on the subnets' zones and two spread
//! strategies; what fits nowhere waits in PROVISIONING, as on ECS.

use flotilla_model::{Cluster, PlacementStrategy, TaskDefinition};
use flotilla_scheduler::{Constraint, Strategy};
use flotilla_store::{Compare, Op, Txn};

pub use flotilla_protocol::{FARGATE, FARGATE_POOL};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::TaskRecord;

/// The platform version LATEST stands for, and the versions Flotilla runs.
pub const LATEST_PLATFORM_VERSION: &str = "1.4.0";
const PLATFORM_VERSIONS: [&str; 2] = ["1.3.0", "1.4.0"];
/// The only platform family Fargate tasks have here.
pub const PLATFORM_FAMILY: &str = "Linux";
/// Fargate's default ephemeral storage, in GiB.
pub const DEFAULT_EPHEMERAL_STORAGE_GIB: i32 = 20;
/// The code and reason of a Fargate Spot interruption.
pub const SPOT_STOP_CODE: &str = "SpotInterruption";
pub const SPOT_REASON: &str = "Your Spot Task was interrupted.";
/// Why a Fargate task that found no room in time is stopped (ECS's RunTask wording).
pub const NO_CAPACITY: &str =
    "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// Whether `name` is one of the reserved Fargate capacity providers.
pub fn is_provider(name: &str) -> bool {
    matches!(name, "FARGATE" | "FARGATE_SPOT")
}

/// Whether the service's tasks run on Fargate: the FARGATE launch type, or a strategy of the
/// FARGATE and FARGATE_SPOT providers.
pub fn is_fargate_service(svc: &flotilla_model::Service) -> bool {
    svc.launch_type.as_deref() == Some(FARGATE)
        || svc
            .capacity_provider_strategy
            .iter()
            .flatten()
            .any(|i| i.capacity_provider.as_deref().is_some_and(is_provider))
}

/// Whether `name` is the pool's reserved cluster, which the API refuses to name.
pub fn is_pool(name: &str) -> bool {
    name == FARGATE_POOL
}

/// Creates the pool's cluster record if it does not exist yet: the first pool join token does.
pub async fn ensure_pool(ctx: &Ctx) -> ApiResult<()> {
    let key = keys::cluster(FARGATE_POOL);
    if ctx.cache.read().clusters.contains_key(&key) {
        return Ok(());
    }
    let cluster = Cluster {
        cluster_name: Some(FARGATE_POOL.into()),
        cluster_arn: Some(ctx.arns.cluster(FARGATE_POOL)),
        status: Some("ACTIVE".into()),
        ..Default::default()
    };
    // Absent or not, the record is there once this returns (a racing creator wrote the same).
    ctx.commit(Txn::new().when(Compare::absent(&key)).then(Op::put(&key, encode(&cluster)))).await?;
    Ok(())
}

/// The platform version a Fargate launch runs: LATEST (or none) is 1.4.0.
pub fn platform_version(given: Option<&str>) -> ApiResult<String> {
    match given {
        None | Some("LATEST") => Ok(LATEST_PLATFORM_VERSION.into()),
        Some(v) if PLATFORM_VERSIONS.contains(&v) => Ok(v.into()),
        Some(_) => Err(ApiError::new("PlatformUnknownException", "The specified platform version doesn't exist.")),
    }
}

/// The checks a Fargate launch (RunTask, CreateService, UpdateService) passes beyond every
/// launch's: a Fargate-compatible definition, an awsvpcConfiguration, and no placement rules.
pub fn check_launch(
    def: &TaskDefinition,
    strategies: Option<&[PlacementStrategy]>,
    constraints: usize,
    has_network: bool,
) -> ApiResult<()> {
    if !def.compatibilities.iter().flatten().any(|c| c == FARGATE) {
        return Err(ApiError::invalid_parameter("Task definition does not support launch_type FARGATE."));
    }
    if strategies.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_parameter("Placement strategies are not supported with FARGATE launch type."));
    }
    if constraints > 0 {
        return Err(ApiError::invalid_parameter("Placement constraints are not supported with FARGATE launch type."));
    }
    if !has_network {
        return Err(ApiError::invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ));
    }
    Ok(())
}

/// A Fargate task's size after RunTask's overrides must still be one Fargate offers.
pub fn check_size(def: &TaskDefinition, overrides: Option<&flotilla_model::TaskOverride>) -> ApiResult<()> {
    let cpu = overrides.and_then(|o| o.cpu.as_deref()).or(def.cpu.as_deref());
    let memory = overrides.and_then(|o| o.memory.as_deref()).or(def.memory.as_deref());
    let cpu_n = cpu.and_then(flotilla_model::rules::parse_task_cpu);
    let memory_n = memory.and_then(flotilla_model::rules::parse_task_memory);
    match (cpu_n, memory_n) {
        (Some(c), Some(m)) if flotilla_model::rules::is_valid_fargate_combination(c, m) => Ok(()),
        _ => Err(ApiError::client(format!(
            "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon ECS documentation for the valid values.",
            cpu.unwrap_or("no"),
            memory.unwrap_or("no")
        ))),
    }
}

/// How the pool places a Fargate task whose subnets are in `zones`: only hosts in those zones,
/// spread across the zones, then across hosts (the host with the fewest such tasks first).
pub fn pool_rules(zones: &[String]) -> ApiResult<(Vec<Strategy>, Constraint)> {
    let bad = |e: flotilla_scheduler::RequestError| ApiError::server(e.to_string());
    let strategies = vec![
        Strategy::from_wire("spread", Some("attribute:ecs.availability-zone")).map_err(bad)?,
        Strategy::from_wire("spread", Some("instanceId")).map_err(bad)?,
    ];
    let expression = format!("attribute:ecs.availability-zone in [{}]", zones.join(", "));
    Ok((strategies, Constraint::from_wire("memberOf", Some(&expression)).map_err(bad)?))
}

/// Turns a freshly built task into a Fargate one: no container instance (its pool `host`, if it
/// has one yet, is kept out of sight), the FARGATE launch type, the platform, its storage, and the
/// provider's name when a strategy chose it.
pub fn make_fargate(
    rec: &mut TaskRecord,
    host: Option<&str>,
    provider: Option<&str>,
    platform_version: &str,
    storage_gib: Option<i32>,
) {
    let t = &mut rec.task;
    t.container_instance_arn = None;
    t.launch_type = Some(FARGATE.into());
    t.capacity_provider_name = provider.map(String::from);
    t.platform_version = Some(platform_version.into());
    t.platform_family = Some(PLATFORM_FAMILY.into());
    t.ephemeral_storage = Some(flotilla_model::EphemeralStorage {
        size_in_gi_b: Some(storage_gib.unwrap_or(DEFAULT_EPHEMERAL_STORAGE_GIB)),
    });
    // Fargate tasks are PROVISIONING until their interface is up, placed or not.
    t.last_status = Some("PROVISIONING".into());
    rec.hidden.get_or_insert_with(Default::default).host = host.map(String::from);
}

/// Reclaims Fargate Spot capacity, as a Spot interruption does: each task named (or each
/// FARGATE_SPOT task on the pool host named) is asked to stop at once with ECS's stop code and
/// reason while it is still RUNNING, and its containers get SIGTERM with their stop timeout,
/// capped at `warning_seconds` (at most Fargate's 120). Services replace them as they replace any
/// stopped task. Returns the ARNs of the tasks interrupted.
pub async fn interrupt(ctx: &Ctx, target: SpotTarget<'_>, warning_seconds: u64) -> ApiResult<Vec<String>> {
    let cap = warning_seconds.min(crate::domain::fargate::MAX_STOP_TIMEOUT);
    let keys: Vec<String> = {
        let ix = ctx.cache.read();
        match target {
            SpotTarget::Task(given) => {
                let key = task_key(ctx, given).filter(|k| ix.tasks.contains_key(k.as_str())).ok_or_else(|| {
                    ApiError::invalid_parameter(format!("task '{given}' is not a task of any cluster."))
                })?;
                let s = &ix.tasks[key.as_str()].value.summary;
                if s.capacity_provider.as_deref() != Some("FARGATE_SPOT") {
                    return Err(ApiError::invalid_parameter(format!(
                        "Task {given} does not run on FARGATE_SPOT capacity; only Fargate Spot tasks are interrupted."
                    )));
                }
                vec![key]
            }
            SpotTarget::PoolHost(given) => {
                let prefix = format!("{}{FARGATE_POOL}/", keys::INSTANCE);
                let host = crate::state::cache::range_prefix(&ix.instances, &prefix)
                    .map(|(_, e)| &e.value.instance)
                    .find(|ci| {
                        ci.ec2_instance_id.as_deref() == Some(given)
                            || ci
                                .container_instance_arn
                                .as_deref()
                                .is_some_and(|a| a == given || a.ends_with(&format!("/{given}")))
                    })
                    .and_then(|ci| ci.container_instance_arn.clone())
                    .ok_or_else(|| ApiError::invalid_parameter(format!("'{given}' is not a Fargate pool host.")))?;
                let on_host = ix.task_index.by_instance.get(host.as_str()).into_iter().flatten();
                on_host
                    .filter(|k| {
                        ix.tasks.get(&***k).is_some_and(|e| {
                            e.value.summary.capacity_provider.as_deref() == Some("FARGATE_SPOT")
                                && !e.value.is_stopped()
                                && &*e.value.summary.desired == "RUNNING"
                        })
                    })
                    .map(|k| k.to_string())
                    .collect()
            }
        }
    };
    let mut out = Vec::new();
    for key in keys {
        if let Some((task, changed)) =
            crate::domain::stop::stop_capped(ctx, &key, SPOT_STOP_CODE, SPOT_REASON, Some(cap)).await?
        {
            if changed {
                out.extend(task.task_arn);
            }
        }
    }
    Ok(out)
}

/// The longest stop timeout Fargate gives a container, in seconds.
pub const MAX_STOP_TIMEOUT: u64 = 120;

/// What a Fargate Spot interruption reclaims.
#[derive(Debug, Clone, Copy)]
pub enum SpotTarget<'a> {
    /// One task, by ARN.
    Task(&'a str),
    /// Every FARGATE_SPOT task on a pool host, by its container instance ARN or id, or its
    /// `ec2InstanceId`.
    PoolHost(&'a str),
}

/// The store key of the task an ARN names.
fn task_key(ctx: &Ctx, arn: &str) -> Option<String> {
    match ctx.arns.parse(arn).ok()? {
        flotilla_model::arn::Resource::Task { cluster, id } => Some(keys::task(cluster.as_deref()?, &id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_versions_resolve_as_ecs_documents() {
        assert_eq!(platform_version(None).unwrap(), "1.4.0");
        assert_eq!(platform_version(Some("LATEST")).unwrap(), "1.4.0");
        assert_eq!(platform_version(Some("1.3.0")).unwrap(), "1.3.0");
        assert_eq!(platform_version(Some("9.9.9")).unwrap_err().code, "PlatformUnknownException");
    }

    #[test]
    fn fargate_launches_refuse_placement_rules_and_need_a_network() {
        let def = TaskDefinition { compatibilities: Some(vec!["EC2".into(), "FARGATE".into()]), ..Default::default() };
        assert!(check_launch(&def, None, 0, true).is_ok());
        let spread = [PlacementStrategy { r#type: Some("spread".into()), field: Some("instanceId".into()) }];
        let e = check_launch(&def, Some(&spread), 0, true).unwrap_err();
        assert_eq!(e.message, "Placement strategies are not supported with FARGATE launch type.");
        let e = check_launch(&def, None, 1, true).unwrap_err();
        assert_eq!(e.message, "Placement constraints are not supported with FARGATE launch type.");
        assert!(check_launch(&def, None, 0, false).unwrap_err().message.contains("Network Configuration"));
        let ec2 = TaskDefinition { compatibilities: Some(vec!["EC2".into()]), ..Default::default() };
        assert_eq!(
            check_launch(&ec2, None, 0, true).unwrap_err().message,
            "Task definition does not support launch_type FARGATE."
        );
    }

    #[test]
    fn a_fargate_task_shows_no_instance_but_keeps_its_host() {
        let mut rec = TaskRecord::default();
        rec.task.container_instance_arn = Some("arn:ci".into());
        make_fargate(&mut rec, Some("arn:ci"), Some("FARGATE_SPOT"), "1.4.0", None);
        assert_eq!(rec.task.container_instance_arn, None);
        assert_eq!(rec.host(), Some("arn:ci"));
        assert_eq!(rec.task.launch_type.as_deref(), Some("FARGATE"));
        assert_eq!(rec.task.capacity_provider_name.as_deref(), Some("FARGATE_SPOT"));
        assert_eq!(rec.task.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b), Some(20));
    }
}
