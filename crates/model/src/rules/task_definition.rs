//! Task-definition-wide rules: the family, the container list, essential containers and volumes.
//!
//! These are the checks that look at the task definition as a whole rather than at one container;
//! ECS reports every one of them as a ClientException.

use std::collections::HashSet;

use super::{default_essential, is_valid_name, listed, RuleError, TaskDef};
use crate::{ContainerDefinition, RegisterTaskDefinitionRequest};

/// ECS's per-task-definition container limit (Service Quotas: "Containers per task definition").
pub const MAX_CONTAINERS: usize = 10;

pub(crate) fn check_family(req: &RegisterTaskDefinitionRequest) -> Result<(), RuleError> {
    let family = req.family.as_deref().unwrap_or("");
    if family.is_empty() {
        return Err(RuleError::client("Family should not be null or empty."));
    }
    if family.len() > 255 {
        return Err(RuleError::client("Family must be at most 255 characters long."));
    }
    if !is_valid_name(family) {
        return Err(RuleError::client("Family contains invalid characters."));
    }
    Ok(())
}

/// The containers, once their number is within what ECS accepts.
pub(crate) fn check_container_list(req: &RegisterTaskDefinitionRequest) -> Result<&[ContainerDefinition], RuleError> {
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    if containers.is_empty() {
        return Err(RuleError::client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(RuleError::client("Too many containers."));
    }
    Ok(containers)
}

pub(crate) fn check_unique_names(containers: &[ContainerDefinition]) -> Result<(), RuleError> {
    let mut seen = HashSet::new();
    if containers.iter().all(|c| seen.insert(c.name.as_deref())) {
        Ok(())
    } else {
        Err(RuleError::client("Container names must be unique within a Task Definition."))
    }
}

/// A task stops when an essential container stops, so a task without one could never be judged.
pub(crate) fn check_essential(containers: &[ContainerDefinition]) -> Result<(), RuleError> {
    if containers.iter().any(default_essential) {
        Ok(())
    } else {
        Err(RuleError::client("Task definition doesn't have any essential container."))
    }
}

/// Volume names: mount points refer to volumes by name, so each must be valid and unique.
pub(crate) fn check_volumes(td: &TaskDef<'_>) -> Result<(), RuleError> {
    let mut seen = HashSet::new();
    for volume in listed(&td.req.volumes).unwrap_or_default() {
        let name = volume.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(RuleError::client("Volume.name should not be null or empty."));
        }
        if !is_valid_name(name) {
            return Err(RuleError::client(format!("Volume.name '{name}' contains invalid characters.")));
        }
        if !seen.insert(name) {
            return Err(RuleError::client(format!(
                "Volume names must be unique within a Task Definition: '{name}' is declared more \
                 than once."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::{ContainerDefinition, Volume};

    #[test]
    fn family_rules() {
        let long = "f".repeat(256);
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("web"), None),
            (Some("web_app-2"), None),
            (None, Some("Family should not be null or empty.")),
            (Some(""), Some("Family should not be null or empty.")),
            (Some("web app"), Some("Family contains invalid characters.")),
            (Some("web:1"), Some("Family contains invalid characters.")),
            (Some("web@x"), Some("Family contains invalid characters.")),
            (Some(long.as_str()), Some("Family must be at most 255 characters long.")),
        ];
        for (family, expected) in cases {
            let mut req = ec2_task(vec![container("web")]);
            req.family = family.map(Into::into);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn container_count_must_be_one_to_ten() {
        assert_client(&ec2_task(vec![]), "Container list cannot be empty.");
        let mut none = ec2_task(vec![]);
        none.container_definitions = None;
        assert_client(&none, "Container list cannot be empty.");
        let ten: Vec<_> = (0..10).map(|i| container(&format!("c{i}"))).collect();
        assert_ok(&ec2_task(ten));
        let eleven: Vec<_> = (0..11).map(|i| container(&format!("c{i}"))).collect();
        assert_client(&ec2_task(eleven), "Too many containers.");
    }

    #[test]
    fn container_names_must_be_unique() {
        assert_ok(&ec2_task(vec![container("web"), container("worker")]));
        assert_client(
            &ec2_task(vec![container("web"), container("web")]),
            "Container names must be unique within a Task Definition.",
        );
    }

    #[test]
    fn at_least_one_container_is_essential() {
        let non_essential = |name: &str| ContainerDefinition { essential: Some(false), ..container(name) };
        let cases = [
            (vec![container("a")], true),
            (vec![non_essential("a"), container("b")], true),
            (vec![non_essential("a"), ContainerDefinition { essential: Some(true), ..container("b") }], true),
            (vec![non_essential("a")], false),
            (vec![non_essential("a"), non_essential("b")], false),
        ];
        for (containers, ok) in cases {
            let req = ec2_task(containers);
            if ok {
                assert_ok(&req);
            } else {
                assert_client(&req, "Task definition doesn't have any essential container.");
            }
        }
    }

    #[test]
    fn volume_names_are_required_valid_and_unique() {
        let volume = |name: Option<&str>| Volume { name: name.map(Into::into), ..Default::default() };
        let cases: &[(Vec<Volume>, Option<&str>)] = &[
            (vec![volume(Some("data")), volume(Some("logs"))], None),
            (vec![volume(None)], Some("Volume.name should not be null or empty.")),
            (vec![volume(Some(""))], Some("Volume.name should not be null or empty.")),
            (vec![volume(Some("my data"))], Some("Volume.name 'my data' contains invalid characters.")),
            (
                vec![volume(Some("data")), volume(Some("data"))],
                Some(
                    "Volume names must be unique within a Task Definition: 'data' is declared more \
                     than once.",
                ),
            ),
        ];
        for (volumes, expected) in cases {
            let mut req = ec2_task(vec![container("web")]);
            req.volumes = Some(volumes.clone());
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }
}
