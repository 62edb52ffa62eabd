//! Task definitions: Register (with ECS's validation), Describe, List, ListTaskDefinitionFamilies,
//! Deregister and DeleteTaskDefinitions. Revisions count up per family and are never reused.

use std::collections::BTreeMap;

use flotilla_model::rules::check_register_task_definition;
use flotilla_model::{
    Attribute, ContainerDefinition, DeleteTaskDefinitionsRequest, DeleteTaskDefinitionsResponse,
    DeregisterTaskDefinitionRequest, DeregisterTaskDefinitionResponse, DescribeTaskDefinitionRequest,
    DescribeTaskDefinitionResponse, Failure, ListTaskDefinitionFamiliesRequest, ListTaskDefinitionFamiliesResponse,
    ListTaskDefinitionsRequest, ListTaskDefinitionsResponse, PortMapping, RegisterTaskDefinitionRequest,
    RegisterTaskDefinitionResponse, TaskDefinition,
};
use flotilla_store::{Compare, Op, Txn};

use super::check_batch;
use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
pub use crate::domain::lookup::{latest_in_family, parse_ref, task_definition as lookup, TaskDefinitionRef};
use crate::domain::tags::validate_tags;
use crate::error::{ApiError, ApiResult};
use crate::pagination::{page, page_ordered};
use crate::state::cache::{range_prefix, Entry};
use crate::state::codec::encode;
use crate::state::keys;
use crate::state::records::TaskDefinitionRecord;

fn not_found() -> ApiError {
    ApiError::client("Unable to describe task definition.")
}

/// The container definition as ECS echoes it: defaults made explicit.
fn normalize_container(mut c: ContainerDefinition, network_mode: &str) -> ContainerDefinition {
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    let ports = c.port_mappings.take().unwrap_or_default();
    c.port_mappings = Some(
        ports
            .into_iter()
            .map(|p| PortMapping {
                protocol: p.protocol.clone().or(Some("tcp".into())),
                host_port: match network_mode {
                    "awsvpc" | "host" => p.host_port.or(p.container_port),
                    _ => p.host_port,
                },
                ..p
            })
            .collect(),
    );
    c
}

/// The volume as ECS stores it: an EFS volume without `rootDirectory` mounts the file system's
/// root, and ECS echoes that as `"/"`.
fn normalize_volume(mut v: flotilla_model::Volume) -> flotilla_model::Volume {
    if let Some(efs) = v.efs_volume_configuration.as_mut() {
        efs.root_directory.get_or_insert_with(|| "/".into());
    }
    v
}

/// The attributes an instance must have to run this definition, as ECS derives them.
fn requires_attributes(td: &TaskDefinition) -> Vec<Attribute> {
    let mut names: Vec<&str> = vec!["com.amazonaws.ecs.capability.docker-remote-api.1.18"];
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    if td.network_mode.as_deref() == Some("awsvpc") {
        names.push("ecs.capability.task-eni");
    }
    if containers.iter().any(|c| c.health_check.is_some()) {
        names.push("ecs.capability.container-health-check");
    }
    if containers.iter().any(|c| c.depends_on.as_ref().is_some_and(|d| !d.is_empty())) {
        names.push("ecs.capability.container-ordering");
    }
    if td.cpu.is_some() || td.memory.is_some() {
        names.push("com.amazonaws.ecs.capability.docker-remote-api.1.22");
    }
    names.extend(secret_capabilities(containers));
    // Security options that need a kernel security module ask for a host that has it.
    let options = || containers.iter().flat_map(|c| c.docker_security_options.iter().flatten());
    if options().any(|o| o.starts_with("apparmor:")) {
        names.push("com.amazonaws.ecs.capability.apparmor");
    }
    if options().any(|o| o.starts_with("label:")) {
        names.push("com.amazonaws.ecs.capability.selinux");
    }
    let mut names: Vec<String> = names.into_iter().map(String::from).collect();
    // As ECS does: each log driver used needs the instance to have it.
    let drivers = containers.iter().filter_map(|c| c.log_configuration.as_ref()?.log_driver.as_deref());
    for driver in drivers.collect::<std::collections::BTreeSet<_>>() {
        names.push(flotilla_model::rules::driver_attribute(driver));
    }
    let mut out: Vec<Attribute> =
        names.into_iter().map(|n| Attribute { name: Some(n), ..Default::default() }).collect();
    // runtimePlatform.cpuArchitecture: only hosts of that architecture (the agent registers
    // `ecs.cpu-architecture` as x86_64 or arm64) may run the task.
    let arch = td.runtime_platform.as_ref().and_then(|p| p.cpu_architecture.as_deref());
    if let Some(arch) = arch {
        let value = if arch == "ARM64" { "arm64" } else { "x86_64" };
        out.push(Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some(value.into()),
            ..Default::default()
        });
    }
    out
}

/// The capabilities ECS requires of an instance for a definition's secrets: environment
/// variables and log driver options from SSM or Secrets Manager (told apart by the ARN, as ECS
/// does), and private registry credentials.
fn secret_capabilities(containers: &[flotilla_model::ContainerDefinition]) -> Vec<&'static str> {
    fn store(value_from: Option<&str>) -> &'static str {
        if value_from.is_some_and(|v| v.starts_with("arn:") && v.split(':').nth(2) == Some("secretsmanager")) {
            "asm"
        } else {
            "ssm"
        }
    }
    let mut out = Vec::new();
    for c in containers {
        for s in c.secrets.iter().flatten() {
            out.push(match store(s.value_from.as_deref()) {
                "asm" => "ecs.capability.secrets.asm.environment-variables",
                _ => "ecs.capability.secrets.ssm.environment-variables",
            });
        }
        for s in c.log_configuration.iter().flat_map(|l| l.secret_options.iter().flatten()) {
            out.push(match store(s.value_from.as_deref()) {
                "asm" => "ecs.capability.secrets.asm.bootstrap.log-driver",
                _ => "ecs.capability.secrets.ssm.bootstrap.log-driver",
            });
        }
        if c.repository_credentials.is_some() {
            out.push("ecs.capability.private-registry-authentication.secretsmanager");
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn compatibilities(td: &TaskDefinition) -> Vec<String> {
    let mut out = vec!["EC2".to_string()];
    let fargate_ok = td.network_mode.as_deref() == Some("awsvpc") && td.cpu.is_some() && td.memory.is_some();
    if fargate_ok {
        out.push("FARGATE".into());
    }
    out
}

fn build(ctx: &Ctx, req: RegisterTaskDefinitionRequest, family: &str, revision: u32) -> TaskDefinition {
    let network_mode = req.network_mode.clone().unwrap_or_else(|| "bridge".into());
    let containers = req
        .container_definitions
        .unwrap_or_default()
        .into_iter()
        .map(|c| normalize_container(c, &network_mode))
        .collect();
    let mut td = TaskDefinition {
        task_definition_arn: Some(ctx.arns.task_definition(family, revision)),
        container_definitions: Some(containers),
        family: Some(family.into()),
        task_role_arn: req.task_role_arn,
        execution_role_arn: req.execution_role_arn,
        network_mode: Some(network_mode),
        revision: Some(revision as i32),
        volumes: Some(req.volumes.unwrap_or_default().into_iter().map(normalize_volume).collect()),
        status: Some("ACTIVE".into()),
        placement_constraints: Some(req.placement_constraints.unwrap_or_default()),
        requires_compatibilities: req.requires_compatibilities,
        runtime_platform: req.runtime_platform,
        cpu: req.cpu,
        memory: req.memory,
        inference_accelerators: req.inference_accelerators,
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration,
        registered_at: Some(ctx.now()),
        registered_by: Some(format!("arn:aws:iam::{}:root", ctx.arns.account)),
        ephemeral_storage: req.ephemeral_storage,
        enable_fault_injection: req.enable_fault_injection,
        ..Default::default()
    };
    td.requires_attributes = Some(requires_attributes(&td));
    td.compatibilities = Some(compatibilities(&td));
    td
}

pub async fn register(ctx: &Ctx, req: RegisterTaskDefinitionRequest) -> ApiResult<RegisterTaskDefinitionResponse> {
    check_register_task_definition(&req)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let family = req.family.clone().unwrap_or_default();
    let prefix = keys::task_definition_family(&family);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let last = {
            let ix = ctx.cache.read();
            latest_in_family(&ix.task_definitions, &prefix).and_then(|e| e.value.definition.revision)
        };
        let revision = last.unwrap_or(0) as u32 + 1;
        let td = build(ctx, req.clone(), &family, revision);
        let key = keys::task_definition(&family, revision);
        let record = TaskDefinitionRecord { definition: td.clone(), tags: tags.clone() };
        if ctx.commit(Txn::new().when(Compare::absent(&key)).then(Op::put(&key, encode(&record)))).await?.is_some() {
            return Ok(RegisterTaskDefinitionResponse { task_definition: Some(td), tags: Some(tags) });
        }
    }
    Err(ApiError::server("The family kept changing while the revision was registered; try again."))
}

pub async fn describe(ctx: &Ctx, req: DescribeTaskDefinitionRequest) -> ApiResult<DescribeTaskDefinitionResponse> {
    let given = req.task_definition.unwrap_or_default();
    let entry = lookup(ctx, &given).ok_or_else(not_found)?;
    let with_tags = req.include.unwrap_or_default().iter().any(|i| i == "TAGS");
    Ok(DescribeTaskDefinitionResponse {
        task_definition: Some(entry.value.definition.clone()),
        tags: with_tags.then(|| entry.value.tags.clone()),
    })
}

fn check_status(status: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "Invalid value '{status}' for status. Valid values: {}.",
            allowed.join(", ")
        )))
    }
}

pub async fn list(ctx: &Ctx, req: ListTaskDefinitionsRequest) -> ApiResult<ListTaskDefinitionsResponse> {
    let status = req.status.clone().unwrap_or_else(|| "ACTIVE".into());
    check_status(&status, &["ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"])?;
    let descending = req.sort.as_deref() == Some("DESC");
    let family = req.family_prefix.clone();
    let scope = format!("ListTaskDefinitions\0{}\0{status}\0{descending}", family.as_deref().unwrap_or(""));
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let prefix = match &family {
        Some(f) => keys::task_definition_family(f),
        None => keys::TASK_DEFINITION.to_string(),
    };
    let ix = ctx.cache.read();
    let matching = range_prefix(&ix.task_definitions, &prefix)
        .filter(|(_, e)| e.value.definition.status.as_deref() == Some(status.as_str()));
    let ordered: Box<dyn Iterator<Item = (&String, &Entry<TaskDefinitionRecord>)>> =
        if descending { Box::new(matching.collect::<Vec<_>>().into_iter().rev()) } else { Box::new(matching) };
    let (items, next) = page_ordered(&ctx.pager, &scope, &pr, ordered, |(k, _)| k.as_str(), descending);
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns: Some(
            items
                .into_iter()
                .map(|(_, e)| e.value.definition.task_definition_arn.clone().unwrap_or_default())
                .collect(),
        ),
        next_token: next,
    })
}

pub async fn list_families(
    ctx: &Ctx,
    req: ListTaskDefinitionFamiliesRequest,
) -> ApiResult<ListTaskDefinitionFamiliesResponse> {
    // ECS lists ACTIVE and INACTIVE families alike unless asked for one status.
    let status = req.status.clone().unwrap_or_else(|| "ALL".into());
    check_status(&status, &["ACTIVE", "INACTIVE", "ALL"])?;
    let prefix = req.family_prefix.clone().unwrap_or_default();
    let scope = format!("ListTaskDefinitionFamilies\0{prefix}\0{status}");
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let ix = ctx.cache.read();
    // family -> whether any revision is ACTIVE
    let mut families: BTreeMap<&str, bool> = BTreeMap::new();
    let start = format!("{}{prefix}", keys::TASK_DEFINITION);
    for (k, e) in range_prefix(&ix.task_definitions, &start) {
        let family =
            k[keys::TASK_DEFINITION.len()..].rsplit_once(keys::REVISION_SEPARATOR).map(|(f, _)| f).unwrap_or("");
        let active = e.value.definition.status.as_deref() == Some("ACTIVE");
        *families.entry(family).or_default() |= active;
    }
    let selected = families.into_iter().filter(|(_, active)| match status.as_str() {
        "ACTIVE" => *active,
        "INACTIVE" => !*active,
        _ => true,
    });
    let (items, next) = page(&ctx.pager, &scope, &pr, selected.map(|(f, _)| f), |f: &&str| f);
    Ok(ListTaskDefinitionFamiliesResponse {
        families: Some(items.into_iter().map(String::from).collect()),
        next_token: next,
    })
}

/// Applies `f` to the exact revision `given` names (a family alone is not enough).
async fn change(
    ctx: &Ctx,
    given: &str,
    f: impl Fn(&mut TaskDefinition) -> Result<(), String>,
) -> ApiResult<Result<TaskDefinition, String>> {
    let (family, revision) = match parse_ref(ctx, given) {
        Some(TaskDefinitionRef::Revision(f, r)) => (f, r),
        Some(TaskDefinitionRef::Family(_)) => {
            return Err(ApiError::client(format!(
                "The task definition '{given}' must name a revision: family:revision or a full ARN."
            )))
        }
        None => return Err(ApiError::client(format!("The task definition '{given}' is not valid."))),
    };
    let key = keys::task_definition(&family, revision);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().task_definitions.get(&key).cloned() else {
            return Err(ApiError::client("The specified task definition does not exist."));
        };
        let mut record = (*entry.value).clone();
        if let Err(reason) = f(&mut record.definition) {
            return Ok(Err(reason));
        }
        if record == *entry.value {
            return Ok(Ok(record.definition));
        }
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&record)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(Ok(record.definition));
        }
    }
    Err(ApiError::server("The task definition kept changing; try again."))
}

pub async fn deregister(
    ctx: &Ctx,
    req: DeregisterTaskDefinitionRequest,
) -> ApiResult<DeregisterTaskDefinitionResponse> {
    let now = ctx.now();
    let given = req.task_definition.unwrap_or_default();
    let td = change(ctx, &given, |td| {
        if td.status.as_deref() == Some("ACTIVE") {
            td.status = Some("INACTIVE".into());
            td.deregistered_at = Some(now);
        }
        Ok(())
    })
    .await?
    .map_err(ApiError::client)?;
    Ok(DeregisterTaskDefinitionResponse { task_definition: Some(td) })
}

pub async fn delete(ctx: &Ctx, req: DeleteTaskDefinitionsRequest) -> ApiResult<DeleteTaskDefinitionsResponse> {
    let list = req.task_definitions.unwrap_or_default();
    check_batch("taskDefinitions", list.len(), 10)?;
    let now = ctx.now();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for given in list {
        let result = change(ctx, &given, |td| match td.status.as_deref() {
            Some("ACTIVE") => Err(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again."
                    .into(),
            ),
            Some("INACTIVE") => {
                td.status = Some("DELETE_IN_PROGRESS".into());
                td.delete_requested_at = Some(now);
                Ok(())
            }
            _ => Ok(()),
        })
        .await;
        let arn = match parse_ref(ctx, &given) {
            Some(TaskDefinitionRef::Revision(f, r)) => ctx.arns.task_definition(&f, r),
            _ => given.clone(),
        };
        match result {
            Ok(Ok(td)) => done.push(td),
            Ok(Err(reason)) => failures.push(Failure { arn: Some(arn), reason: Some(reason), detail: None }),
            Err(e) if e.code == "ClientException" => failures.push(Failure {
                arn: Some(arn),
                reason: Some("TASK_DEFINITION_NOT_FOUND".into()),
                detail: Some(e.message),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(DeleteTaskDefinitionsResponse { task_definitions: Some(done), failures: Some(failures) })
}

#[cfg(test)]
mod tests {
    use flotilla_model::{ContainerDefinition, LogConfiguration, RepositoryCredentials, Secret};

    use super::*;

    fn secret(value_from: &str) -> Secret {
        Secret { name: Some("S".into()), value_from: Some(value_from.into()) }
    }

    #[test]
    fn secrets_require_the_capabilities_ecs_names_for_their_store() {
        let td = TaskDefinition {
            container_definitions: Some(vec![ContainerDefinition {
                secrets: Some(vec![
                    secret("/app/db"),
                    secret("arn:aws:secretsmanager:us-east-1:000000000000:secret:db-AbCdEf:password::"),
                ]),
                log_configuration: Some(LogConfiguration {
                    log_driver: Some("splunk".into()),
                    secret_options: Some(vec![secret("arn:aws:ssm:us-east-1:000000000000:parameter/token")]),
                    ..Default::default()
                }),
                repository_credentials: Some(RepositoryCredentials {
                    credentials_parameter: Some(
                        "arn:aws:secretsmanager:us-east-1:000000000000:secret:reg-AbCdEf".into(),
                    ),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let names: Vec<String> = requires_attributes(&td).into_iter().filter_map(|a| a.name).collect();
        for want in [
            "ecs.capability.secrets.ssm.environment-variables",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.secrets.ssm.bootstrap.log-driver",
            "ecs.capability.private-registry-authentication.secretsmanager",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n == "ecs.capability.secrets.asm.bootstrap.log-driver"), "{names:?}");
        let plain =
            TaskDefinition { container_definitions: Some(vec![ContainerDefinition::default()]), ..Default::default() };
        let names: Vec<String> = requires_attributes(&plain).into_iter().filter_map(|a| a.name).collect();
        assert!(!names.iter().any(|n| n.contains("secrets")), "{names:?}");
    }

    fn required(options: &[&str]) -> Vec<String> {
        let c = ContainerDefinition {
            docker_security_options: Some(options.iter().map(|o| o.to_string()).collect()),
            ..Default::default()
        };
        let td = TaskDefinition { container_definitions: Some(vec![c]), ..Default::default() };
        requires_attributes(&td).into_iter().filter_map(|a| a.name).collect()
    }

    #[test]
    fn security_modules_are_required_of_the_host() {
        let apparmor = "com.amazonaws.ecs.capability.apparmor".to_string();
        let selinux = "com.amazonaws.ecs.capability.selinux".to_string();
        assert!(!required(&["no-new-privileges"]).iter().any(|n| *n == apparmor || *n == selinux));
        assert!(required(&["apparmor:docker-default"]).contains(&apparmor));
        let both = required(&["label:type:container_t", "apparmor:p"]);
        assert!(both.contains(&apparmor) && both.contains(&selinux));
    }
}
