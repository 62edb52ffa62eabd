//! ECS's semantic validation of requests, beyond the per-field checks the generated code does.
//!
//! `Validate` (generated from the service model) knows which members are required, which enum
//! values exist and which lengths and ranges the model declares. ECS checks a great deal more
//! when it accepts a request: that container names are unique, that a Fargate task definition
//! names a supported cpu/memory pair, that `dependsOn` forms no cycle, and so on. This module holds
//! those rules as pure functions over the decoded request, run after `validate_request`, so the
//! API layer can answer with the same exception type and, where it is known, the same words.
//!
//! Each rule's message was taken from what ECS has been seen answering (GitHub issues, AWS docs);
//! where no sighting exists the message follows ECS's nearest known wording and names the field
//! and container so the caller can find the fault.

mod container;
mod dependencies;
mod fargate;
mod logging;
mod network;
mod placement;
mod process;
mod service;
mod task_definition;
mod task_size;
#[cfg(test)]
mod test_support;
mod unsupported;

use std::fmt;

use crate::{ContainerDefinition, RegisterTaskDefinitionRequest};

pub use fargate::{fargate_memory_options, is_valid_fargate_combination};
pub use logging::driver_attribute;
pub use placement::check_placement;
pub use service::{check_create_service, check_network_configuration, check_update_service};
pub use task_size::{parse_task_cpu, parse_task_memory};
pub use unsupported::{check_container_override, container_gpus, gpu_count};

/// Which ECS exception a broken rule is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// `InvalidParameterException`: what ECS answers for service and task-launch requests.
    InvalidParameter,
    /// `ClientException`: what ECS answers for almost every task definition rule.
    Client,
}

impl RuleErrorKind {
    /// The `__type` ECS puts on the wire for this kind.
    pub fn code(self) -> &'static str {
        match self {
            RuleErrorKind::InvalidParameter => "InvalidParameterException",
            RuleErrorKind::Client => "ClientException",
        }
    }
}

/// A broken semantic rule: the exception type and the message ECS words it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub kind: RuleErrorKind,
    pub message: String,
}

impl RuleError {
    pub fn client(message: impl Into<String>) -> Self {
        RuleError { kind: RuleErrorKind::Client, message: message.into() }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        RuleError { kind: RuleErrorKind::InvalidParameter, message: message.into() }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

/// Checks a RegisterTaskDefinition request against ECS's rules, stopping at the first broken one.
///
/// Run it after `validate_request`: it tolerates missing members, but reports them in ECS's
/// task definition words rather than the generic "can not be null" the field checks use.
pub fn check_register_task_definition(req: &RegisterTaskDefinitionRequest) -> Result<(), RuleError> {
    task_definition::check_family(req)?;
    let containers = task_definition::check_container_list(req)?;
    for c in containers {
        container::check_identity(c)?;
    }
    task_definition::check_unique_names(containers)?;

    let td = TaskDef::new(req, containers);
    fargate::check_task_level(&td)?;
    let size = task_size::check_task_size(&td)?;
    task_definition::check_essential(containers)?;
    task_size::check_container_resources(&td, size)?;
    network::check(&td)?;
    fargate::check_unsupported(&td)?;
    task_definition::check_volumes(&td)?;
    for c in containers {
        container::check_settings(&td, c)?;
        logging::check(c)?;
    }
    process::check(&td)?;
    dependencies::check(containers)?;
    placement::check_task_definition_constraints(req)?;
    unsupported::check(&td)?;
    Ok(())
}

/// Whether a container is essential; ECS treats an omitted `essential` as true.
pub fn default_essential(c: &ContainerDefinition) -> bool {
    c.essential.unwrap_or(true)
}

/// Whether the task definition must validate as Fargate ("even if EC2 is also specified").
pub fn requires_fargate(req: &RegisterTaskDefinitionRequest) -> bool {
    req.requires_compatibilities.iter().flatten().any(|c| c == "FARGATE")
}

/// The network mode containers get: ECS defaults an omitted `networkMode` to `bridge` on Linux.
pub fn effective_network_mode(req: &RegisterTaskDefinitionRequest) -> &str {
    req.network_mode.as_deref().unwrap_or("bridge")
}

/// ECS's name rule for families, containers, volumes and services: `^[a-zA-Z0-9_-]{1,255}$`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What every task definition rule needs to know about the request, worked out once.
pub(crate) struct TaskDef<'a> {
    pub req: &'a RegisterTaskDefinitionRequest,
    pub containers: &'a [ContainerDefinition],
    pub network_mode: &'a str,
    pub fargate: bool,
}

impl<'a> TaskDef<'a> {
    fn new(req: &'a RegisterTaskDefinitionRequest, containers: &'a [ContainerDefinition]) -> Self {
        TaskDef { req, containers, network_mode: effective_network_mode(req), fargate: requires_fargate(req) }
    }

    /// Whether a container of this name is declared in the task definition.
    pub fn has_container(&self, name: &str) -> bool {
        self.containers.iter().any(|c| c.name.as_deref() == Some(name))
    }
}

/// A container's name for messages; identity checks run first, so it is present by then.
pub(crate) fn name_of(c: &ContainerDefinition) -> &str {
    c.name.as_deref().unwrap_or("")
}

/// A list member that was sent, and sent non-empty. Clients re-register what
/// DescribeTaskDefinition returned, which spells absent lists as `[]`; ECS reads those as absent.
pub(crate) fn listed<T>(v: &Option<Vec<T>>) -> Option<&[T]> {
    v.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_plain_ec2_task_definition_passes() {
        assert_eq!(check_register_task_definition(&ec2_task(vec![container("web")])), Ok(()));
    }

    #[test]
    fn a_plain_fargate_task_definition_passes() {
        assert_eq!(check_register_task_definition(&fargate_task(vec![container("web")])), Ok(()));
    }

    #[test]
    fn a_described_task_definition_with_empty_lists_passes_on_fargate() {
        // DescribeTaskDefinition output re-registered verbatim carries `[]` for absent lists.
        let mut c = container("web");
        c.links = Some(vec![]);
        c.dns_servers = Some(vec![]);
        c.docker_security_options = Some(vec![]);
        c.volumes_from = Some(vec![]);
        c.mount_points = Some(vec![]);
        c.port_mappings = Some(vec![]);
        let mut req = fargate_task(vec![c]);
        req.placement_constraints = Some(vec![]);
        req.volumes = Some(vec![]);
        assert_eq!(check_register_task_definition(&req), Ok(()));
    }

    #[test]
    fn errors_display_their_message_and_carry_the_wire_code() {
        let err = RuleError::client("Too many containers.");
        assert_eq!(err.to_string(), "Too many containers.");
        assert_eq!(err.kind.code(), "ClientException");
        assert_eq!(RuleError::invalid_parameter("x").kind.code(), "InvalidParameterException");
    }

    #[test]
    fn names_follow_the_ecs_pattern() {
        let long = "a".repeat(255);
        let too_long = "a".repeat(256);
        for (name, ok) in [
            ("web", true),
            ("Web_app-2", true),
            (long.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            ("web app", false),
            ("web.app", false),
            ("wéb", false),
        ] {
            assert_eq!(is_valid_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn essential_defaults_to_true() {
        let mut c = container("web");
        assert!(default_essential(&c));
        c.essential = Some(false);
        assert!(!default_essential(&c));
    }

    #[test]
    fn network_mode_defaults_to_bridge_and_fargate_is_detected_among_others() {
        let mut req = ec2_task(vec![container("web")]);
        assert_eq!(effective_network_mode(&req), "bridge");
        assert!(!requires_fargate(&req));
        req.requires_compatibilities = Some(vec!["EC2".into(), "FARGATE".into()]);
        req.network_mode = Some("awsvpc".into());
        assert_eq!(effective_network_mode(&req), "awsvpc");
        assert!(requires_fargate(&req));
    }

    #[test]
    fn the_first_broken_rule_is_reported() {
        // An unnamed container and an invalid family: the family is checked first, as ECS does.
        let mut req = ec2_task(vec![ContainerDefinition::default()]);
        req.family = Some("bad family".into());
        assert_eq!(check_register_task_definition(&req).unwrap_err().message, "Family contains invalid characters.");
    }
}
