//! ELBv2 records ECS reads and writes: target groups (to validate a service's `loadBalancers`
//! and to time draining), the targets ECS registers for its tasks, and their health (to gate
//! deployments and replace unhealthy tasks). Load balancers, listeners and rules are the ELBv2
//! crate's own records; a target group lists the load balancers that route to it so ECS can
//! check "does not have an associated load balancer" without reading them. Times are Unix ms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Tag;

/// `deregistration_delay.timeout_seconds`, ELB's default 300.
pub const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
pub const DEFAULT_DEREGISTRATION_DELAY_SECONDS: u32 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Instance,
    Ip,
    Lambda,
    Alb,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Instance => "instance",
            TargetType::Ip => "ip",
            TargetType::Lambda => "lambda",
            TargetType::Alb => "alb",
        }
    }
}

/// A target group's health check, with ELB's defaults filled in at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    /// HTTP, HTTPS or TCP.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    #[serde(default)]
    pub path: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// `Matcher.HttpCode` (`200`, `200,202`, `200-299`), for HTTP(S) checks.
    #[serde(default)]
    pub matcher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroup {
    /// 16 hex digits, the last part of the ARN.
    pub id: String,
    pub arn: String,
    pub name: String,
    /// HTTP, HTTPS, TCP, TLS, UDP, TCP_UDP (absent for lambda).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub vpc_id: Option<String>,
    pub target_type: TargetType,
    pub health_check: HealthCheck,
    /// Every attribute as ELB describes it, defaults included.
    pub attributes: BTreeMap<String, String>,
    /// The load balancers whose listeners or rules forward to this group, kept by the writes
    /// that change those listeners and rules.
    #[serde(default)]
    pub load_balancer_arns: Vec<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at_ms: i64,
}

impl TargetGroup {
    pub fn deregistration_delay_seconds(&self) -> u32 {
        self.attributes
            .get(DEREGISTRATION_DELAY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_DEREGISTRATION_DELAY_SECONDS)
    }
}

/// Where a registered target is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Registration {
    /// Receives traffic once its health checks pass.
    Registered,
    /// Deregistered: no new requests; the record goes away at `until_ms` (the group's
    /// deregistration delay after `since_ms`), or sooner when nodes report no connections left.
    Draining { since_ms: i64, until_ms: i64 },
}

/// One registered target under [`crate::keys::target`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// An EC2 instance id (instance targets) or an IPv4 address (ip targets).
    pub id: String,
    pub port: u16,
    #[serde(default)]
    pub availability_zone: Option<String>,
    pub registered_at_ms: i64,
    pub registration: Registration,
    /// The ECS task that registered it, when ECS did.
    #[serde(default)]
    pub task_arn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unused => "unused",
            HealthState::Draining => "draining",
            HealthState::Unavailable => "unavailable",
        }
    }
}

/// A registered target's health under [`crate::keys::target_health`], kept by the control
/// plane from the checks load balancer nodes report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub state: HealthState,
    /// ELB's reason code (`Target.ResponseCodeMismatch`, `Elb.InitialHealthChecking`, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// ELB's description (`Health checks failed with these codes: [503]`).
    #[serde(default)]
    pub description: Option<String>,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerType {
    Application,
    Network,
}

/// A load balancer under [`crate::keys::load_balancer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// 16 hex digits, the last part of the ARN.
    pub id: String,
    pub arn: String,
    pub name: String,
    pub kind: LoadBalancerType,
    /// `NAME-ID.REGION.elb.localhost`: resolves to the nodes on one machine.
    pub dns_name: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// `(zone, subnet id)` pairs.
    #[serde(default)]
    pub zones: Vec<(String, String)>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    pub ip_address_type: String,
    /// `provisioning` until a node serves it, then `active`.
    pub state: String,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at_ms: i64,
}

/// One target group of a forward action, with its weight (0-999).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedGroup {
    pub target_group_arn: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    Forward {
        groups: Vec<WeightedGroup>,
        /// Group stickiness duration, when enabled.
        #[serde(default)]
        stickiness_seconds: Option<u32>,
        /// Whether the request named a single `TargetGroupArn` (described back with both forms).
        #[serde(default)]
        single: bool,
    },
    FixedResponse {
        status_code: String,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        message_body: Option<String>,
    },
    Redirect {
        #[serde(default)]
        protocol: Option<String>,
        #[serde(default)]
        port: Option<String>,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        query: Option<String>,
        /// `HTTP_301` or `HTTP_302`.
        status_code: String,
    },
}

impl Action {
    /// The target groups this action forwards to.
    pub fn target_group_arns(&self) -> Vec<&str> {
        match self {
            Action::Forward { groups, .. } => groups.iter().map(|g| g.target_group_arn.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    PathPattern {
        values: Vec<String>,
    },
    HostHeader {
        values: Vec<String>,
    },
    HttpHeader {
        name: String,
        values: Vec<String>,
    },
    HttpRequestMethod {
        values: Vec<String>,
    },
    /// `(key, value)` pairs; a missing key matches any key.
    QueryString {
        values: Vec<(Option<String>, String)>,
    },
    /// CIDR blocks.
    SourceIp {
        values: Vec<String>,
    },
}

/// A listener, under its load balancer (`elbv2/listener/LB-ID/LISTENER-ID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub id: String,
    pub arn: String,
    pub load_balancer_arn: String,
    /// HTTP or TCP (HTTPS, TLS, UDP are refused at creation today).
    pub protocol: String,
    pub port: u16,
    pub default_actions: Vec<Action>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A listener rule (`elbv2/rule/LISTENER-ID/RULE-ID`); the default rule is the listener's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub arn: String,
    pub listener_arn: String,
    /// 1-50000, lowest first.
    pub priority: u32,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A registered target as load balancer nodes see it: where to connect, and its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTarget {
    pub target_group_id: String,
    pub target: Target,
    /// `IP:PORT` to connect to (an instance target resolved to its host's address).
    pub address: String,
    /// As the control plane keeps it; absent until the first report.
    #[serde(default)]
    pub health: Option<HealthState>,
}

/// Everything a load balancer node needs to serve traffic, sent whole at each change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The store revision it was built at; a node asks for anything newer.
    pub revision: i64,
    pub load_balancers: Vec<LoadBalancer>,
    pub listeners: Vec<Listener>,
    pub rules: Vec<Rule>,
    pub target_groups: Vec<TargetGroup>,
    pub targets: Vec<NodeTarget>,
}

/// One health check outcome transition a node saw: the target's state by the group's
/// thresholds, as that node judges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthObservation {
    pub target_group_id: String,
    pub target_id: String,
    pub port: u16,
    /// Healthy or Unhealthy (Initial until the first check ends).
    pub state: HealthState,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a node reports: every target's state as it judges it, and the connections still open
/// to draining targets (none lets the control plane end their draining early).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub health: Vec<HealthObservation>,
    /// `(target group id, target id, port, open connections)` for draining targets.
    #[serde(default)]
    pub draining_connections: Vec<(String, String, u16, u32)>,
}

/// What a load balancer node receives when it joins (`POST /v1/lb/join`), and keeps.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    pub node_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("node_id", &self.node_id)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}
