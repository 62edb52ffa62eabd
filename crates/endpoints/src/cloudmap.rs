//! Cloud Map records ECS reads and writes: services (to validate a service's
//! `serviceRegistries` against their record types) and the instances ECS registers for its
//! tasks, with their custom health. Namespaces are here too, since the DNS server answers for
//! them. Times are Unix ms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Tag;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NamespaceType {
    DnsPublic,
    DnsPrivate,
    Http,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// `ns-` and 16 characters.
    pub id: String,
    pub arn: String,
    pub name: String,
    pub kind: NamespaceType,
    #[serde(default)]
    pub description: Option<String>,
    /// The SOA's TTL (negative caching), private DNS namespaces only.
    #[serde(default)]
    pub soa_ttl: Option<u32>,
    #[serde(default)]
    pub vpc: Option<String>,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at_ms: i64,
}

/// `DnsRecord.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "SRV")]
    Srv,
    #[serde(rename = "CNAME")]
    Cname,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub kind: RecordType,
    pub ttl: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoutingPolicy {
    Multivalue,
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub routing_policy: RoutingPolicy,
    pub records: Vec<DnsRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// `srv-` and 16 characters.
    pub id: String,
    pub arn: String,
    pub name: String,
    pub namespace_id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Absent for services of HTTP namespaces (API discovery only).
    #[serde(default)]
    pub dns_config: Option<DnsConfig>,
    /// `HealthCheckCustomConfig` given: instances' health is set by UpdateInstanceCustomHealthStatus
    /// (ECS does so for its tasks).
    #[serde(default)]
    pub custom_health: bool,
    /// `HealthCheckConfig` (Route 53 checks) as given, kept to describe back.
    #[serde(default)]
    pub health_check_config: Option<serde_json::Value>,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at_ms: i64,
}

impl Service {
    pub fn has_record(&self, kind: RecordType) -> bool {
        self.dns_config.as_ref().is_some_and(|c| c.records.iter().any(|r| r.kind == kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

/// One registered instance under [`crate::keys::instance`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub service_id: String,
    /// Every attribute, the reserved `AWS_INSTANCE_IPV4`, `AWS_INSTANCE_PORT`, ... included.
    pub attributes: BTreeMap<String, String>,
    pub health: HealthStatus,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    /// The ECS task that registered it, when ECS did.
    #[serde(default)]
    pub task_arn: Option<String>,
    pub registered_at_ms: i64,
    pub updated_at_ms: i64,
}

pub const IPV4: &str = "AWS_INSTANCE_IPV4";
pub const IPV6: &str = "AWS_INSTANCE_IPV6";
pub const PORT: &str = "AWS_INSTANCE_PORT";
pub const CNAME: &str = "AWS_INSTANCE_CNAME";
pub const INIT_HEALTH_STATUS: &str = "AWS_INIT_HEALTH_STATUS";

/// `Operation.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    CreateNamespace,
    DeleteNamespace,
    UpdateNamespace,
    UpdateService,
    RegisterInstance,
    DeregisterInstance,
}

/// `Operation.Status`. Flotilla applies a change in the transaction that records its operation,
/// so operations are stored as `Success`; the other states exist for completeness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    Submitted,
    Pending,
    Success,
    Fail,
}

/// One asynchronous Cloud Map operation under [`crate::keys::operation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub kind: OperationType,
    pub status: OperationStatus,
    /// `NAMESPACE`, `SERVICE`, `INSTANCE` to the ids the operation acted on.
    pub targets: BTreeMap<String, String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a `CreatorRequestId` was used for, under [`crate::keys::creator_request`]: a retry with
/// the same id gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatorRequest {
    /// The operation the request started, for asynchronous requests.
    #[serde(default)]
    pub operation_id: Option<String>,
    /// The namespace, service or instance id the request created.
    pub resource_id: String,
}
