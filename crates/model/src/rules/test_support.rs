//! Builders for valid requests that each rule's tests then break in exactly one place.
//!
//! Starting every case from a request that passes keeps a test's failure down to the one rule it
//! is about, so the asserted message really comes from that rule.

use super::{check_register_task_definition, RuleError, RuleErrorKind};
use crate::{ContainerDefinition, RegisterTaskDefinitionRequest};

/// A container that passes every rule on its own: an image and a hard memory limit.
pub fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some("public.ecr.aws/nginx/nginx:latest".into()),
        memory: Some(256),
        ..Default::default()
    }
}

/// An EC2 (bridge mode, no task size) task definition around the given containers.
pub fn ec2_task(containers: Vec<ContainerDefinition>) -> RegisterTaskDefinitionRequest {
    RegisterTaskDefinitionRequest {
        family: Some("web".into()),
        container_definitions: Some(containers),
        ..Default::default()
    }
}

/// A Fargate task definition (awsvpc, 256 CPU / 512 MiB) around the given containers.
pub fn fargate_task(containers: Vec<ContainerDefinition>) -> RegisterTaskDefinitionRequest {
    RegisterTaskDefinitionRequest {
        family: Some("web".into()),
        container_definitions: Some(containers),
        requires_compatibilities: Some(vec!["FARGATE".into()]),
        network_mode: Some("awsvpc".into()),
        cpu: Some("256".into()),
        memory: Some("512".into()),
        ..Default::default()
    }
}

/// Runs the task definition rules and returns the error they must produce.
pub fn td_error(req: &RegisterTaskDefinitionRequest) -> RuleError {
    match check_register_task_definition(req) {
        Ok(()) => panic!("expected a rule to fail for {req:#?}"),
        Err(e) => e,
    }
}

/// Asserts a ClientException with exactly this message.
pub fn assert_client(req: &RegisterTaskDefinitionRequest, message: &str) {
    let err = td_error(req);
    assert_eq!(err.kind, RuleErrorKind::Client, "{err:?}");
    assert_eq!(err.message, message);
}

/// Asserts the task definition passes every rule.
pub fn assert_ok(req: &RegisterTaskDefinitionRequest) {
    if let Err(e) = check_register_task_definition(req) {
        panic!("expected success, got {e:?}");
    }
}
