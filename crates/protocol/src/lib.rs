//! The session between the control plane and an agent: the messages that cross the long-lived,
//! SigV4-authenticated websocket at `GET /agent/ws`.
//!
//! As in ECS's ACS protocol, every frame is a JSON text frame `{"type": ..., "message": {...}}`.
//! The server pushes each instance's tasks (`Payload`), a full list of what the instance should
//! run (`TaskManifest`) after every (re)connect and periodically, and heartbeats. The agent
//! acknowledges payloads and manifests, answers heartbeats, and reports task state changes,
//! which the server acknowledges once they are durable. Everything is idempotent: a payload or
//! report delivered twice changes nothing, so either side may resend after a reconnect.
//!
//! The server also reads a task's container output from the agent that ran it (`logs`): a
//! `LogsRequest` answered by bounded `LogsBatch`es, cancelled with `LogsCancel`. The agent calls
//! the control plane for what only it may hold (a task's secrets) and to store `awslogs` output
//! (`calls`): an `AgentMessage::Call` answered by one `ServerMessage::Reply`.

pub mod calls;
pub mod lifecycle;
pub mod logs;

pub use calls::{
    AgentCall, CallReply, ContainerResources, LogEvent, LogEventsBatch, NamedValue, RegistryAuth, ResourceFailure,
    TaskResources,
};
pub use lifecycle::{ContainerLifecycle, DesiredStatus, TaskStatus};
pub use logs::{LogEntry, LogStream, LogsBatch, LogsError, LogsRequest};

use flotilla_model::{NetworkBinding, Task, TaskDefinition};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The path of the agent websocket on the control plane.
pub const AGENT_WS_PATH: &str = "/agent/ws";

/// Query parameters of the upgrade request, signed with SigV4 like the rest of the request.
pub mod query {
    pub const CLUSTER: &str = "cluster";
    pub const CONTAINER_INSTANCE: &str = "containerInstance";
    pub const AGENT_VERSION: &str = "agentVersion";
    pub const SEQ_NUM: &str = "seqNum";
}

/// The reserved cluster under which Fargate pool hosts register (`flotilla agent --fargate`). Its
/// name holds a dot, which no ECS cluster name may, so it never meets a user's cluster; the API
/// shows it nowhere, and its hosts are container instances of no cluster a user can name.
pub const FARGATE_POOL: &str = "fargate.pool";

/// The launch type of tasks that run on the Fargate pool, each in its own sandbox.
pub const FARGATE: &str = "FARGATE";

/// How often each side sends a heartbeat, and how long a silent peer is given. Short enough that
/// an agent whose server froze (a paused process, a host gone without closing its sockets) moves
/// to another server of a highly available control plane within seconds; a heartbeat is a few
/// bytes each way.
pub const HEARTBEAT_SECS: u64 = 2;
pub const PEER_TIMEOUT_SECS: u64 = 6;

/// How much each end of a session reads from its socket at a time. The websocket library's
/// default (128 KiB) is allocated per connection and zeroed before every read; session messages
/// are mostly a few hundred bytes, and a server holds thousands of sessions, so both ends read in
/// smaller steps (larger messages simply take several reads).
pub const SESSION_READ_BUFFER: usize = 8 * 1024;

/// A task as the agent receives it: the ECS task record plus the definition to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssignment {
    /// The task record (ARN, desiredStatus, overrides, cpu/memory, group, ...).
    pub task: Task,
    /// The task definition revision the task runs.
    pub definition: TaskDefinition,
    /// Host ports the control plane reserved for fixed `hostPort` mappings (bridge mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved_ports: Vec<u16>,
    /// The task's own interface in its subnet (awsvpc tasks whose subnet the control plane
    /// knows): the agent puts the task on its Docker network for that subnet, at this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<TaskNetwork>,
    /// A cap on every container's SIGTERM-to-SIGKILL grace when the task is stopped (a Spot
    /// interruption's warning time); the containers' own `stopTimeout` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_cap_seconds: Option<u64>,
}

/// An awsvpc task's elastic network interface, as the control plane allocated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNetwork {
    pub subnet_id: String,
    /// The subnet's IPv4 block (`172.31.0.0/20`); its first address is the gateway, as in a VPC.
    pub cidr_block: String,
    /// The task's address within the block.
    pub ipv4_address: String,
    /// `02:xx:xx:xx:xx:xx`, locally administered, unique to the task.
    pub mac_address: String,
    /// `eni-...`, as DescribeTasks shows it.
    pub interface_id: String,
}

impl TaskNetwork {
    /// The Docker network that stands for this subnet on every host.
    pub fn docker_network(&self) -> String {
        format!("flotilla-{}", self.subnet_id)
    }
}

impl TaskAssignment {
    pub fn arn(&self) -> &str {
        self.task.task_arn.as_deref().unwrap_or_default()
    }
    pub fn desired_status(&self) -> &str {
        self.task.desired_status.as_deref().unwrap_or("RUNNING")
    }
    /// Whether the task runs on the Fargate pool, in a sandbox.
    pub fn is_fargate(&self) -> bool {
        self.task.launch_type.as_deref() == Some(FARGATE)
    }
}

/// One entry of a manifest: a task the instance should know and what it should be doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    pub task_arn: String,
    pub desired_status: String,
}

/// A container's state as the agent reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReport {
    pub name: String,
    pub status: ContainerLifecycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_bindings: Vec<NetworkBinding>,
    /// HEALTHY, UNHEALTHY or UNKNOWN, for containers with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
}

/// A task's state as the agent reports it. Timestamps are epoch milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    pub task_arn: String,
    /// The task's lastStatus.
    pub status: TaskStatus,
    /// Reports from one agent are numbered, so that a late duplicate never moves a task back.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// HEALTHY, UNHEALTHY or UNKNOWN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    /// The task's address in awsvpc mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<i64>,
}

/// Messages from the control plane to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    /// Tasks to run or stop. Acknowledge with `Ack`.
    PayloadMessage {
        message_id: String,
        tasks: Vec<TaskAssignment>,
    },
    /// Everything the instance should know. Tasks the agent runs that are missing here are to be
    /// stopped. `timeline` grows; the agent ignores a manifest older than one it has applied.
    TaskManifestMessage {
        message_id: String,
        timeline: u64,
        tasks: Vec<ManifestEntry>,
    },
    /// A report is durable. The agent stops resending it.
    ReportAck {
        task_arn: String,
        seq: u64,
    },
    HeartbeatMessage {
        message_id: String,
    },
    /// The server is closing the session; reconnect after the given delay.
    CloseMessage {
        reason: String,
    },
    /// A request could not be served.
    ErrorMessage {
        code: String,
        message: String,
    },
    /// Send a task's logs; answer with `LogsBatch`es until one is `done`.
    LogsRequest(LogsRequest),
    /// Stop answering a (follow) logs request; the agent sends nothing more for it.
    LogsCancel {
        request_id: String,
    },
    /// The answer to the agent's [`AgentMessage::Call`] of the same `request_id`.
    Reply {
        request_id: String,
        reply: CallReply,
    },
}

/// Messages from an agent to the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message", rename_all_fields = "camelCase")]
pub enum AgentMessage {
    AckRequest {
        message_id: String,
    },
    HeartbeatAckRequest {
        message_id: String,
    },
    HeartbeatRequest {
        message_id: String,
    },
    /// A task's state changed.
    TaskStateChange(Box<TaskReport>),
    /// Part of the answer to a `LogsRequest`.
    LogsBatch(LogsBatch),
    /// A call to the control plane (`calls`), answered by a [`ServerMessage::Reply`].
    Call {
        request_id: String,
        call: AgentCall,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("protocol messages always encode")
    }
}

/// A [`TaskAssignment`] whose task and definition are JSON already: the server keeps tasks as
/// JSON, so it can push them without decoding and encoding each one again.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAssignment {
    pub task: Box<RawValue>,
    pub definition: Box<RawValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reserved_ports: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<TaskNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout_cap_seconds: Option<u64>,
}

/// [`ServerMessage::PayloadMessage`] made of [`RawAssignment`]s: the same frame, byte for byte
/// what an agent decodes as the typed message.
pub fn payload_json(message_id: &str, tasks: &[RawAssignment]) -> String {
    #[derive(Serialize)]
    #[serde(tag = "type", content = "message", rename_all_fields = "camelCase")]
    enum Frame<'a> {
        PayloadMessage { message_id: &'a str, tasks: &'a [RawAssignment] },
    }
    serde_json::to_string(&Frame::PayloadMessage { message_id, tasks }).expect("protocol messages always encode")
}

impl AgentMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("protocol messages always encode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> TaskNetwork {
        TaskNetwork {
            subnet_id: "subnet-1".into(),
            cidr_block: "172.31.0.0/20".into(),
            ipv4_address: "172.31.0.4".into(),
            mac_address: "02:00:ac:1f:00:04".into(),
            interface_id: "eni-1".into(),
        }
    }

    #[test]
    fn a_raw_payload_is_the_typed_payload() {
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/c/1".into()),
            desired_status: Some("RUNNING".into()),
            ..Default::default()
        };
        let definition = TaskDefinition { family: Some("web".into()), revision: Some(3), ..Default::default() };
        let raw = RawAssignment {
            task: serde_json::value::to_raw_value(&task).unwrap(),
            definition: serde_json::value::to_raw_value(&definition).unwrap(),
            reserved_ports: vec![8080],
            network: Some(network()),
            stop_timeout_cap_seconds: Some(120),
        };
        let typed = ServerMessage::PayloadMessage {
            message_id: "m".into(),
            tasks: vec![TaskAssignment {
                task,
                definition,
                reserved_ports: vec![8080],
                network: Some(network()),
                stop_timeout_cap_seconds: Some(120),
            }],
        };
        let sent = payload_json("m", &[raw]);
        assert_eq!(sent, typed.to_json());
        assert_eq!(serde_json::from_str::<ServerMessage>(&sent).unwrap(), typed);
    }

    #[test]
    fn frames_are_tagged_like_acs() {
        let m = ServerMessage::HeartbeatMessage { message_id: "m1".into() };
        assert_eq!(m.to_json(), r#"{"type":"HeartbeatMessage","message":{"messageId":"m1"}}"#);
        let back: ServerMessage = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let r = AgentMessage::TaskStateChange(Box::new(TaskReport {
            task_arn: "t".into(),
            status: TaskStatus::Running,
            seq: 3,
            ..Default::default()
        }));
        let back: AgentMessage = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }
}
