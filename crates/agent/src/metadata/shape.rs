//! The JSON answers of the metadata endpoint, with ECS's field names (task metadata v4), built
//! from the task's record and Docker's inspect of each container.

use std::collections::BTreeMap;

use serde::Serialize;

use super::TOKEN_LABEL;
use crate::cgroup::TaskLimits;
use crate::engine::record::{ContainerRecord, TaskRecord};
use crate::engine::status::DesiredStatus;
use crate::network::NetworkMode;
use crate::runtime::ContainerInfo;

/// A container, as `${ECS_CONTAINER_METADATA_URI_V4}` answers and `/task` lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerMetadata {
    pub docker_id: String,
    pub name: String,
    pub docker_name: String,
    pub image: String,
    #[serde(rename = "ImageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub desired_status: String,
    pub known_status: String,
    pub limits: ContainerLimits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "ContainerARN", skip_serializing_if = "Option::is_none")]
    pub container_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthMetadata>,
    /// The container's published ports; left out when it has none, as ECS does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMetadata>,
    pub networks: Vec<NetworkMetadata>,
    /// Restarts by the container's restart policy; present only when it has an enabled one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortMetadata {
    pub container_port: i32,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthMetadata {
    pub status: String,
}

/// A container's own cpu units and memory (MiB), as in its definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerLimits {
    #[serde(rename = "CPU")]
    pub cpu: i64,
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkMetadata {
    #[serde(rename = "NetworkMode")]
    pub network_mode: String,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    pub ipv4_addresses: Vec<String>,
    /// The task's own interface (awsvpc tasks whose subnet the control plane knows), as ECS
    /// describes an ENI.
    #[serde(rename = "MACAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(rename = "IPv4SubnetCIDRBlock", skip_serializing_if = "Option::is_none")]
    pub ipv4_subnet_cidr_block: Option<String>,
    #[serde(rename = "SubnetGatewayIpv4Address", skip_serializing_if = "Option::is_none")]
    pub subnet_gateway_ipv4_address: Option<String>,
}

/// The task, as `${ECS_CONTAINER_METADATA_URI_V4}/task` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskMetadata {
    pub cluster: String,
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
    pub family: String,
    pub revision: String,
    pub desired_status: String,
    pub known_status: String,
    /// Omitted when the task sets no task-level cpu or memory, as ECS does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskLimitsMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    pub containers: Vec<ContainerMetadata>,
}

/// The task's cpu in vCPUs and memory in MiB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskLimitsMetadata {
    #[serde(rename = "CPU", skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

/// ECS's desired status for a task's containers follows the task's.
fn desired(rec: &TaskRecord) -> &'static str {
    match rec.desired {
        DesiredStatus::Running => "RUNNING",
        _ => "STOPPED",
    }
}

/// One container of `rec`; `info` is Docker's inspect of it, when it exists and answered.
pub fn container(rec: &TaskRecord, c: &ContainerRecord, info: Option<&ContainerInfo>) -> ContainerMetadata {
    let def = rec.definitions().into_iter().find(|d| d.name.as_deref() == Some(c.name.as_str())).unwrap_or_default();
    let container_arn = rec
        .assignment
        .task
        .containers
        .iter()
        .flatten()
        .find(|k| k.name.as_deref() == Some(c.name.as_str()))
        .and_then(|k| k.container_arn.clone());
    // A token is the container's own secret: it is in its environment, not in the metadata.
    let labels = info
        .map(|i| i.labels.iter().filter(|(k, _)| *k != TOKEN_LABEL).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mode = rec.network_mode;
    let ipv4_addresses = match mode {
        NetworkMode::Awsvpc => rec.attachment.private_ipv4.iter().cloned().collect(),
        NetworkMode::Bridge => info.map(|i| i.ip_addresses.values().cloned().collect()).unwrap_or_default(),
        NetworkMode::Host | NetworkMode::None => Vec::new(),
    };
    let networks = match mode {
        NetworkMode::None => Vec::new(),
        _ => {
            let eni = rec.assignment.network.as_ref().filter(|_| mode == NetworkMode::Awsvpc);
            vec![NetworkMetadata {
                network_mode: mode.as_str().to_string(),
                ipv4_addresses,
                mac_address: eni.map(|n| n.mac_address.clone()),
                ipv4_subnet_cidr_block: eni.map(|n| n.cidr_block.clone()),
                subnet_gateway_ipv4_address: eni
                    .and_then(|n| super::address::first_host(&n.cidr_block))
                    .map(|gw| format!("{gw}/{}", n_prefix(&rec.assignment.network))),
            }]
        }
    };
    ContainerMetadata {
        docker_id: c.runtime_id.clone().or_else(|| info.map(|i| i.id.clone())).unwrap_or_default(),
        name: c.name.clone(),
        docker_name: info.map(|i| i.name.clone()).unwrap_or_default(),
        image: def.image.clone().unwrap_or_default(),
        image_id: info.and_then(|i| i.image_id.clone()).or_else(|| c.image_digest.clone()),
        labels,
        desired_status: desired(rec).to_string(),
        // Docker is the truth about a container; the record may not have caught up yet.
        known_status: match info {
            Some(i) if i.state.is_live() => "RUNNING",
            _ => c.status.as_str(),
        }
        .to_string(),
        limits: ContainerLimits { cpu: def.cpu.map_or(0, i64::from), memory: def.memory.map(i64::from) },
        created_at: info.and_then(|i| i.created_at.clone()),
        started_at: info.and_then(|i| i.started_at.clone()),
        exit_code: c.exit_code,
        kind: "NORMAL".to_string(),
        container_arn,
        health: c.health.map(|h| HealthMetadata { status: h.as_str().to_string() }),
        ports: c
            .bindings
            .iter()
            .filter_map(|b| {
                Some(PortMetadata {
                    container_port: b.container_port?,
                    protocol: b.protocol.clone().unwrap_or_else(|| "tcp".into()),
                    host_port: b.host_port,
                    host_ip: b.bind_ip.clone(),
                })
            })
            .collect(),
        networks,
        restart_count: crate::engine::restart::RestartPolicy::of(&def).map(|_| c.restart_count),
    }
}

/// The prefix length of the task's subnet ("10.0.0.0/24" -> "24").
fn n_prefix(n: &Option<flotilla_protocol::TaskNetwork>) -> String {
    n.as_ref().and_then(|n| n.cidr_block.split_once('/')).map(|(_, p)| p.to_string()).unwrap_or_default()
}

/// The task, with its containers already shaped; `cluster` is the agent's, the task's own when
/// its assignment does not say.
pub fn task(rec: &TaskRecord, cluster: &str, containers: Vec<ContainerMetadata>) -> TaskMetadata {
    let t = &rec.assignment.task;
    let d = &rec.assignment.definition;
    let limits = TaskLimits::resolve(t, d);
    let limits = (!limits.is_empty()).then(|| TaskLimitsMetadata {
        cpu: limits.cpu_units.map(|u| f64::from(u) / 1024.0),
        memory: limits.memory_mib,
    });
    TaskMetadata {
        cluster: t.cluster_arn.clone().unwrap_or_else(|| cluster.to_string()),
        task_arn: rec.arn().to_string(),
        family: d.family.clone().unwrap_or_default(),
        revision: d.revision.map(|r| r.to_string()).unwrap_or_default(),
        desired_status: desired(rec).to_string(),
        known_status: rec.known.as_str().to_string(),
        limits,
        pull_started_at: rec.times.pull_started_at.map(rfc3339),
        pull_stopped_at: rec.times.pull_stopped_at.map(rfc3339),
        availability_zone: t.availability_zone.clone(),
        launch_type: t.launch_type.clone(),
        containers,
    }
}

/// Epoch milliseconds as RFC 3339 in UTC (`2026-12-06T09:22:19.123Z`), the way ECS writes times.
pub fn rfc3339(ms: i64) -> String {
    flotilla_model::timestamp::rfc3339_millis(ms)
}
