//! The records the control plane stores. They are the ECS wire shapes themselves where ECS returns
//! a record whole (clusters, tasks, services), and wrap them where we keep more than ECS shows.
//! Derived numbers (running counts, remaining resources) are kept by the cache, not stored.

use serde::{Deserialize, Serialize};

use flotilla_model::{Cluster, ContainerInstance, Service, Tag, Task, TaskDefinition};

/// A registered task definition revision and its tags (ECS returns tags beside, not inside, it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    pub definition: TaskDefinition,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A container instance as registered, with the resources its tasks hold kept by the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance: ContainerInstance,
    /// The IP address the agent's latest session came from, as the gateway saw it (kept out of
    /// ECS's shape): where load balancer nodes reach the instance's published ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_address: Option<String>,
    /// The server holding the agent's live session (its id in `control/servers/`), while
    /// `agentConnected` is true: a session's end only disconnects the instance if it is still the
    /// one recorded here, and the sweep of `crate::servers` disconnects instances whose server died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_server: Option<String>,
}

/// What a placed task holds on its container instance until it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports_udp: Vec<u16>,
    /// The ids of the instance's GPUs assigned to the task (its containers' `gpuIds`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// A task: the ECS shape, plus what it reserves on its instance and what ECS keeps out of sight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: Task,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Box<Hidden>>,
}

/// What a task holds that ECS does not show: kept apart from the ECS shape so that DescribeTasks
/// never leaks it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hidden {
    /// The Fargate pool host (its container instance ARN) a Fargate task runs on: the task has no
    /// container instance in its own cluster, but a host's agent must still run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An awsvpc task's interface in its subnet, as allocated at placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<flotilla_protocol::TaskNetwork>,
    /// The awsvpcConfiguration the task was launched with, kept until it has its interface (a
    /// task waiting for capacity gets its subnet only once it has a host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awsvpc: Option<flotilla_model::AwsVpcConfiguration>,
    /// A cap on the containers' stop grace (a Spot interruption's warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_cap_seconds: Option<u64>,
    /// What the task is registered in (target groups, Cloud Map services), written in the same
    /// transaction as the registrations, so they are undone exactly whatever the service became.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Registered>,
    /// Since when the task drains (DEACTIVATING): its agent is not told to stop it until its
    /// targets are drained and its Cloud Map instances gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivating_since_ms: Option<i64>,
    /// How its target groups judge it, as the registrar last read their health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_health: Option<TargetsHealth>,
}

impl TaskRecord {
    /// The host that runs the task: its container instance, or its Fargate pool host.
    pub fn host(&self) -> Option<&str> {
        self.task.container_instance_arn.as_deref().or(self.hidden.as_ref().and_then(|h| h.host.as_deref()))
    }
}

/// The answer remembered for a request that carried a `clientToken`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// A hash of the request, so the same token with a different request is refused.
    pub request_hash: String,
    /// The response body that was returned.
    pub response: serde_json::Value,
    pub created_at_ms: i64,
}

/// Every kind of record, as decoded from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Cluster(Cluster),
    TaskDefinition(TaskDefinitionRecord),
    ContainerInstance(InstanceRecord),
    Task(TaskRecord),
    Service(Service),
    Idempotency(IdempotencyRecord),
    AccountSetting(flotilla_model::Setting),
    CapacityProvider(flotilla_model::CapacityProvider),
    /// An instance's placement counter: how many placements it has taken.
    Placement(u64),
}

/// One registration a task holds, kept on the task (`Hidden::endpoints`) by `crate::endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Registered {
    /// A target in an ELBv2 target group.
    Target { target_group_arn: String, target_group_id: String, id: String, port: u16 },
    /// An instance of a Cloud Map service.
    Instance { service_id: String, instance_id: String },
}

/// How a task's target groups judge it: the worst of its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum TargetsHealth {
    /// Not every target has passed a check yet.
    Initial,
    Healthy,
    /// One of its targets is unhealthy: which, and ELB's description of why.
    Unhealthy {
        target_group_arn: String,
        port: u16,
        reason: String,
    },
}
