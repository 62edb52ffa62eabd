//! `dependsOn`: containers may wait for other containers of the same task to start, finish or
//! become healthy. The targets must exist, the conditions must be reachable, and the graph must
//! have no cycle, since a cycle would leave every container in it waiting forever.

use std::collections::HashMap;

use super::{default_essential, listed, name_of, RuleError};
use crate::ContainerDefinition;

pub(crate) fn check(containers: &[ContainerDefinition]) -> Result<(), RuleError> {
    let by_name: HashMap<&str, &ContainerDefinition> = containers.iter().map(|c| (name_of(c), c)).collect();
    for c in containers {
        let name = name_of(c);
        for dep in listed(&c.depends_on).unwrap_or_default() {
            let target_name = dep.container_name.as_deref().unwrap_or("null");
            if target_name == name {
                return Err(RuleError::client(format!(
                    "Invalid 'dependsOn' setting for container '{name}'. A container cannot depend \
                     on itself."
                )));
            }
            // The stray "+" is ECS's own: this is the message RegisterTaskDefinition returns.
            let Some(target) = by_name.get(target_name) else {
                return Err(RuleError::client(format!(
                    "Cannot depend on container + '{target_name}' because it does not exist"
                )));
            };
            match dep.condition.as_deref() {
                // A container that must exit cannot also be one whose exit stops the task.
                Some("COMPLETE" | "SUCCESS") if default_essential(target) => {
                    return Err(RuleError::client(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an \
                         essential container",
                    ))
                }
                Some("HEALTHY") if target.health_check.is_none() => {
                    return Err(RuleError::client(
                        "A dependency container with HEALTHY condition must have health check \
                         configured",
                    ))
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(containers) {
        return Err(RuleError::client(format!(
            "Invalid 'dependsOn' setting. The container dependencies form a cycle: {}.",
            cycle.join(" -> ")
        )));
    }
    Ok(())
}

/// The first dependency cycle in declaration order, as names with the first repeated at the end.
pub(crate) fn find_cycle(containers: &[ContainerDefinition]) -> Option<Vec<&str>> {
    let edges: HashMap<&str, Vec<&str>> = containers
        .iter()
        .map(|c| {
            let targets = listed(&c.depends_on).unwrap_or_default().iter();
            (name_of(c), targets.filter_map(|d| d.container_name.as_deref()).collect())
        })
        .collect();
    let mut done: Vec<&str> = Vec::new();
    for c in containers {
        let mut path = Vec::new();
        if let Some(cycle) = visit(name_of(c), &edges, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// Depth-first search keeping the current path; a name already on the path closes a cycle.
fn visit<'a>(
    node: &'a str,
    edges: &HashMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(start) = path.iter().position(|&n| n == node) {
        let mut cycle = path[start..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(&node) {
        return None;
    }
    path.push(node);
    for &next in edges.get(node).into_iter().flatten() {
        if let Some(cycle) = visit(next, edges, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.push(node);
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::{ContainerDependency, HealthCheck};

    fn depends(name: &str, deps: &[(&str, &str)]) -> ContainerDefinition {
        let deps = deps
            .iter()
            .map(|(target, condition)| ContainerDependency {
                container_name: Some(target.to_string()),
                condition: Some(condition.to_string()),
            })
            .collect();
        ContainerDefinition { depends_on: Some(deps), ..container(name) }
    }

    fn non_essential(c: ContainerDefinition) -> ContainerDefinition {
        ContainerDefinition { essential: Some(false), ..c }
    }

    fn healthy(c: ContainerDefinition) -> ContainerDefinition {
        let check = HealthCheck { command: Some(vec!["CMD-SHELL".into(), "true".into()]), ..Default::default() };
        ContainerDefinition { health_check: Some(check), ..c }
    }

    #[test]
    fn dependency_targets_and_conditions() {
        let essential_exit = "A dependency container with SUCCESS or COMPLETE condition cannot be \
                              an essential container";
        let cases: Vec<(Vec<ContainerDefinition>, Option<&str>)> = vec![
            (vec![depends("app", &[("db", "START")]), container("db")], None),
            (vec![depends("app", &[("init", "SUCCESS")]), non_essential(container("init"))], None),
            (vec![depends("app", &[("init", "COMPLETE")]), non_essential(container("init"))], None),
            (vec![depends("app", &[("proxy", "HEALTHY")]), healthy(container("proxy"))], None),
            (vec![depends("app", &[("init", "SUCCESS")]), container("init")], Some(essential_exit)),
            (
                vec![
                    depends("app", &[("init", "COMPLETE")]),
                    ContainerDefinition { essential: Some(true), ..container("init") },
                ],
                Some(essential_exit),
            ),
            (
                vec![depends("app", &[("proxy", "HEALTHY")]), container("proxy")],
                Some(
                    "A dependency container with HEALTHY condition must have health check \
                     configured",
                ),
            ),
            (
                vec![depends("app", &[("ghost", "START")])],
                Some("Cannot depend on container + 'ghost' because it does not exist"),
            ),
            (
                vec![depends("app", &[("app", "START")])],
                Some(
                    "Invalid 'dependsOn' setting for container 'app'. A container cannot depend on \
                     itself.",
                ),
            ),
        ];
        for (containers, expected) in cases {
            let req = ec2_task(containers);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn a_missing_target_name_is_reported_as_null() {
        let mut c = container("app");
        c.depends_on = Some(vec![ContainerDependency { container_name: None, condition: Some("START".into()) }]);
        assert_client(&ec2_task(vec![c]), "Cannot depend on container + 'null' because it does not exist");
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let cases: Vec<(Vec<ContainerDefinition>, Option<&str>)> = vec![
            // A diamond is not a cycle.
            (
                vec![
                    depends("a", &[("b", "START"), ("c", "START")]),
                    depends("b", &[("d", "START")]),
                    depends("c", &[("d", "START")]),
                    container("d"),
                ],
                None,
            ),
            (vec![depends("a", &[("b", "START")]), depends("b", &[("a", "START")])], Some("a -> b -> a")),
            (
                vec![depends("a", &[("b", "START")]), depends("b", &[("c", "START")]), depends("c", &[("b", "START")])],
                Some("b -> c -> b"),
            ),
            (
                vec![
                    container("x"),
                    depends("a", &[("b", "START")]),
                    depends("b", &[("c", "START")]),
                    depends("c", &[("a", "START")]),
                ],
                Some("a -> b -> c -> a"),
            ),
        ];
        for (containers, expected) in cases {
            let req = ec2_task(containers);
            match expected {
                None => assert_ok(&req),
                Some(cycle) => assert_client(
                    &req,
                    &format!(
                        "Invalid 'dependsOn' setting. The container dependencies form a cycle: \
                         {cycle}."
                    ),
                ),
            }
        }
    }

    #[test]
    fn find_cycle_ignores_unknown_targets() {
        assert_eq!(find_cycle(&[depends("a", &[("ghost", "START")])]), None);
    }
}
