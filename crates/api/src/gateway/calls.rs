//! Answers the agent's calls (`flotilla_protocol::calls`): a task's resources, resolved here at
//! the moment the task starts and sent to the agent running it and to no one else, and the
//! task's `awslogs` batches, handed to the log store.
//!
//! Only tasks assigned to the session's own instance are answered: an agent cannot read another
//! instance's secrets, nor write into another task's streams. Nothing resolved is written
//! anywhere: the values live in the reply and in the agent's memory.

use flotilla_model::arn::{short_id, Resource};
use flotilla_model::{Task, TaskDefinition};
use flotilla_protocol::calls::needs_resources;
use flotilla_protocol::{
    AgentCall, CallReply, ContainerResources, NamedValue, RegistryAuth, ResourceFailure, TaskResources,
};

use super::SessionTarget;
use crate::agent_services::{AgentServices, SecretFailure, SecretSource};
use crate::context::Ctx;
use crate::state::keys;

/// ECS's stop code for a task whose resources could not be resolved.
pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
/// What ECS's reason says before the detail of a resource that could not be resolved.
pub const RESOURCE_INIT_PREFIX: &str =
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: ";

/// Answers one call from the agent of `target`.
pub async fn answer(ctx: &Ctx, services: &AgentServices, target: &SessionTarget, call: &AgentCall) -> CallReply {
    match call {
        AgentCall::TaskResources { task_arn } => match own_task(ctx, target, task_arn) {
            Some((task, definition)) => task_resources(ctx, services.secrets.as_deref(), &task, &definition).await,
            None => not_assigned(task_arn),
        },
        AgentCall::PutLogEvents(batch) => {
            if own_task(ctx, target, &batch.task_arn).is_none() {
                return not_assigned(&batch.task_arn);
            }
            let Some(sink) = &services.logs else {
                return CallReply::Failed {
                    code: "ServiceUnavailableException".into(),
                    message: "This control plane does not serve the CloudWatch Logs API.".into(),
                    transient: false,
                };
            };
            match sink.put(ctx, batch).await {
                Ok(()) => CallReply::LogEventsStored,
                Err(e) => CallReply::Failed { code: e.code, message: e.message, transient: e.transient },
            }
        }
    }
}

fn not_assigned(task_arn: &str) -> CallReply {
    CallReply::Failed {
        code: "AccessDeniedException".into(),
        message: format!("Task {task_arn} is not assigned to this container instance."),
        transient: false,
    }
}

/// The task and its definition, if the task is assigned to the session's instance.
fn own_task(ctx: &Ctx, target: &SessionTarget, task_arn: &str) -> Option<(Task, TaskDefinition)> {
    let Ok(Resource::Task { cluster: Some(cluster), id }) = ctx.arns.parse(task_arn) else { return None };
    let ix = ctx.cache.read();
    let entry = ix.tasks.get(keys::task(&cluster, short_id(&id)).as_str())?;
    if entry.value.summary.instance.as_deref() != Some(target.instance_arn.as_str()) {
        return None;
    }
    let task = entry.value.record().task;
    let Ok(Resource::TaskDefinition { family, revision }) = ctx.arns.parse(task.task_definition_arn.as_deref()?) else {
        return None;
    };
    let definition = ix.task_definitions.get(keys::task_definition(&family, revision).as_str())?;
    Some((task, definition.value.definition.clone()))
}

/// Resolves every container's secrets, log secret options and registry credentials. A missing
/// one fails the task as ECS does; a store that cannot be read fails the call, to be made again.
pub async fn task_resources(
    ctx: &Ctx,
    source: Option<&dyn SecretSource>,
    _task: &Task,
    definition: &TaskDefinition,
) -> CallReply {
    let containers = definition.container_definitions.as_deref().unwrap_or_default();
    if !containers.iter().any(needs_resources) {
        return CallReply::TaskResources(TaskResources::default());
    }
    let Some(source) = source else {
        return failed_to_start("this control plane serves no secret store (SSM Parameter Store, Secrets Manager)");
    };
    let mut out = TaskResources::default();
    for c in containers.iter().filter(|c| needs_resources(c)) {
        let mut resolved = ContainerResources { name: c.name.clone().unwrap_or_default(), ..Default::default() };
        for s in c.secrets.iter().flatten() {
            match resolve(ctx, source, s.value_from.as_deref().unwrap_or_default()).await {
                Ok(value) => resolved.environment.push(NamedValue { name: s.name.clone().unwrap_or_default(), value }),
                Err(reply) => return reply,
            }
        }
        let log_secrets = c.log_configuration.as_ref().and_then(|l| l.secret_options.as_ref());
        for s in log_secrets.into_iter().flatten() {
            match resolve(ctx, source, s.value_from.as_deref().unwrap_or_default()).await {
                Ok(value) => resolved.log_options.push(NamedValue { name: s.name.clone().unwrap_or_default(), value }),
                Err(reply) => return reply,
            }
        }
        if let Some(param) = c.repository_credentials.as_ref().and_then(|r| r.credentials_parameter.as_deref()) {
            let value = match resolve(ctx, source, param).await {
                Ok(value) => value,
                Err(reply) => return reply,
            };
            match registry_auth(&value) {
                Some(auth) => resolved.registry_auth = Some(auth),
                None => {
                    return failed_to_start(&format!(
                        "unable to retrieve private registry authentication: the secret {param} must hold a JSON object with the keys \"username\" and \"password\""
                    ))
                }
            }
        }
        out.containers.push(resolved);
    }
    CallReply::TaskResources(out)
}

async fn resolve(ctx: &Ctx, source: &dyn SecretSource, value_from: &str) -> Result<String, CallReply> {
    source.resolve(ctx, value_from).await.map_err(|SecretFailure { message, transient }| {
        if transient {
            CallReply::Failed { code: "ServiceUnavailableException".into(), message, transient: true }
        } else {
            failed_to_start(&message)
        }
    })
}

fn failed_to_start(detail: &str) -> CallReply {
    CallReply::TaskResources(TaskResources {
        containers: Vec::new(),
        failure: Some(ResourceFailure {
            stop_code: TASK_FAILED_TO_START.into(),
            reason: format!("{RESOURCE_INIT_PREFIX}{detail}"),
        }),
    })
}

/// `{"username": ..., "password": ...}`, as ECS reads a private registry's secret.
fn registry_auth(value: &str) -> Option<RegistryAuth> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    Some(RegistryAuth {
        username: v.get("username")?.as_str()?.to_string(),
        password: v.get("password")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_secrets_must_hold_username_and_password() {
        let auth = registry_auth(r#"{"username":"u","password":"p"}"#).unwrap();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u", "p"));
        assert!(registry_auth(r#"{"username":"u"}"#).is_none());
        assert!(registry_auth("u:p").is_none());
    }
}
