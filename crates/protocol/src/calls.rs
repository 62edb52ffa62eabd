//! Calls an agent makes to the control plane over its session, each answered once: a task's
//! resources at start (its secrets, registry credentials and log driver secret options,
//! resolved on the control plane and sent to the task's own agent only), and batches of a
//! task's `awslogs` output for the CloudWatch Logs API.
//!
//! A call carries a `requestId` chosen by the agent; the server's [`CallReply`] names it. A call
//! whose session ends before the reply is failed on the agent's side and made again on the next
//! session: both calls are idempotent (a log batch is keyed by its stream and sequence number,
//! so a batch stored twice is stored once).
//!
//! Secret values cross the session in these replies and nowhere else: the agent keeps them in
//! memory, never in its task records, and the server never stores them with the task.

use flotilla_model::ContainerDefinition;
use serde::{Deserialize, Serialize};

/// Whether a container has anything the control plane resolves for it at start (`secrets`,
/// `repositoryCredentials`, log `secretOptions`): the one test both ends use, the agent to know
/// whether to ask and the server to know what to answer.
pub fn needs_resources(def: &ContainerDefinition) -> bool {
    def.secrets.as_ref().is_some_and(|s| !s.is_empty())
        || def.repository_credentials.is_some()
        || def.log_configuration.as_ref().and_then(|l| l.secret_options.as_ref()).is_some_and(|s| !s.is_empty())
}

/// What an agent asks of the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum AgentCall {
    /// The resources of a task assigned to this agent's instance ([`TaskResources`]).
    TaskResources { task_arn: String },
    /// Store a batch of a container's output in its log stream.
    PutLogEvents(LogEventsBatch),
}

/// The answer to an [`AgentCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum CallReply {
    TaskResources(TaskResources),
    /// The batch is durable.
    LogEventsStored,
    /// The call failed. `transient`: the same call may succeed later (the store was
    /// unreachable); otherwise it never will (`code` and `message` say why).
    Failed {
        code: String,
        message: String,
        transient: bool,
    },
}

/// A task's resources, resolved by the control plane when the task starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResources {
    /// One entry per container that has something resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerResources>,
    /// Set when a resource could not be resolved: the task cannot start. The agent stops it with
    /// this stop code and reason, as ECS does (`TaskFailedToStart`,
    /// `ResourceInitializationError: unable to pull secrets or registry auth: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ResourceFailure>,
}

impl TaskResources {
    pub fn container(&self, name: &str) -> Option<&ContainerResources> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// Why a task's resources could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFailure {
    pub stop_code: String,
    pub reason: String,
}

/// One container's resolved resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerResources {
    pub name: String,
    /// `secrets`: environment variables, name to value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<NamedValue>,
    /// `logConfiguration.secretOptions`: log driver options, name to value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_options: Vec<NamedValue>,
    /// `repositoryCredentials`: what the image is pulled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuth>,
}

/// A name and its resolved value. `Debug` hides the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedValue {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for NamedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

/// Credentials for a private registry (a Secrets Manager secret's `username` and `password`).
/// `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

/// A batch of one container's output for its CloudWatch Logs stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEventsBatch {
    /// The task the output belongs to: the server accepts batches only for tasks assigned to
    /// the session's instance.
    pub task_arn: String,
    pub log_group: String,
    /// `prefix/container/task-id`, as the awslogs driver names it.
    pub log_stream: String,
    /// `awslogs-create-group`: create the group if it does not exist.
    #[serde(default)]
    pub create_group: bool,
    /// Numbers the stream's batches from 0, so that a batch sent twice is stored once.
    pub sequence: u64,
    pub events: Vec<LogEvent>,
}

/// One line of output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    /// Epoch milliseconds.
    pub timestamp: i64,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_show_in_debug_output() {
        let v = NamedValue { name: "DB_PASSWORD".into(), value: "hunter2".into() };
        let a = RegistryAuth { username: "me".into(), password: "hunter2".into() };
        let shown = format!("{v:?} {a:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("DB_PASSWORD") && shown.contains("me"), "{shown}");
    }

    #[test]
    fn calls_and_replies_round_trip() {
        let call = AgentCall::TaskResources { task_arn: "t".into() };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(json, r#"{"kind":"TaskResources","taskArn":"t"}"#);
        assert_eq!(serde_json::from_str::<AgentCall>(&json).unwrap(), call);
        let reply = CallReply::Failed { code: "X".into(), message: "m".into(), transient: true };
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<CallReply>(&json).unwrap(), reply);
    }
}
