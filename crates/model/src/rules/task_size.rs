//! Task size and container resources: parsing the task-level `cpu` and `memory` strings, the EC2
//! range for task cpu, and how container cpu and memory must fit in them.
//!
//! ECS takes task `cpu` as CPU units ("1024") or vCPUs ("1 vCPU", "1vcpu", ".25 vCPU") and task
//! `memory` as MiB ("2048") or GB ("2 GB", "2GB"), and stores both as integers; the parsers here
//! do that conversion so every rule compares numbers.

use super::{fargate, name_of, RuleError, TaskDef};

/// The task cpu range ECS accepts outside Fargate: 0.125 to 192 vCPUs.
pub const EC2_TASK_CPU: std::ops::RangeInclusive<u32> = 128..=196_608;
/// Docker 20.10 reserves 6 MiB per container, so ECS documents this as the smallest hard limit.
pub const MIN_CONTAINER_MEMORY: i32 = 6;

const INVALID_TASK_CPU: &str =
    "Invalid 'cpu' setting for task. For more information, see the Troubleshooting section of the \
     Amazon ECS Developer Guide.";
const INVALID_TASK_MEMORY: &str = "Invalid 'memory' setting for task. For more information, see \
                                   the Troubleshooting section of the Amazon ECS Developer Guide.";

/// Task `cpu` in CPU units: "1024", "1 vCPU", "1vcpu", "0.25 vCPU". `None` when ECS would refuse
/// the spelling (or when the vCPU count is not a whole number of units).
pub fn parse_task_cpu(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(units) = parse_whole(s) {
        return Some(units);
    }
    let lower = s.to_ascii_lowercase();
    scaled(lower.strip_suffix("vcpu")?.trim_end(), 1024)
}

/// Task `memory` in MiB: "2048", "2 GB", "2GB", "0.5GB". `None` when ECS would refuse the spelling.
pub fn parse_task_memory(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(mib) = parse_whole(s) {
        return Some(mib);
    }
    let lower = s.to_ascii_lowercase();
    scaled(lower.strip_suffix("gb")?.trim_end(), 1024)
}

fn parse_whole(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `number * factor` for a decimal like "2", "0.25" or ".5", done in integers so that ".25 vCPU"
/// is exactly 256 units; fractions that do not land on a whole unit are refused.
fn scaled(number: &str, factor: u64) -> Option<u32> {
    let (whole, frac) = match number.split_once('.') {
        Some((whole, frac)) if !frac.is_empty() => (whole, frac),
        Some(_) => return None,
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let denominator = 10u64.pow(frac.len() as u32);
    let frac_scaled = if frac.is_empty() { 0 } else { frac.parse::<u64>().ok()? * factor };
    if frac_scaled % denominator != 0 {
        return None;
    }
    let total = whole.checked_mul(factor)?.checked_add(frac_scaled / denominator)?;
    u32::try_from(total).ok()
}

/// The task size once parsed; either half may be absent outside Fargate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskSize {
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
}

pub(crate) fn check_task_size(td: &TaskDef<'_>) -> Result<TaskSize, RuleError> {
    let cpu = match td.req.cpu.as_deref() {
        None => None,
        Some(s) => Some(parse_task_cpu(s).ok_or_else(|| RuleError::client(INVALID_TASK_CPU))?),
    };
    let memory = match td.req.memory.as_deref() {
        None => None,
        Some(s) => Some(parse_task_memory(s).filter(|&m| m > 0).ok_or_else(|| RuleError::client(INVALID_TASK_MEMORY))?),
    };
    if td.fargate {
        // Fargate's own table replaces the EC2 range ("even if EC2 is also specified").
        fargate::check_combination(td, cpu, memory)?;
    } else if cpu.is_some_and(|c| !EC2_TASK_CPU.contains(&c)) {
        return Err(RuleError::client(INVALID_TASK_CPU));
    }
    Ok(TaskSize { cpu, memory })
}

/// Container cpu and memory, alone and summed against the task size.
pub(crate) fn check_container_resources(td: &TaskDef<'_>, size: TaskSize) -> Result<(), RuleError> {
    for c in td.containers {
        let name = name_of(c);
        if size.memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
            return Err(RuleError::client(format!(
                "Invalid setting for container '{name}'. At least one of 'memory' or \
                 'memoryReservation' must be specified."
            )));
        }
        if c.memory.is_some_and(|m| m < MIN_CONTAINER_MEMORY) {
            return Err(RuleError::client(format!(
                "Invalid setting for container '{name}'. 'memory' must be at least \
                 {MIN_CONTAINER_MEMORY} MiB."
            )));
        }
        if c.memory_reservation.is_some_and(|r| r <= 0) {
            return Err(RuleError::client(format!(
                "Invalid setting for container '{name}'. 'memoryReservation' must be greater than \
                 0."
            )));
        }
        if let (Some(memory), Some(reservation)) = (c.memory, c.memory_reservation) {
            if memory < reservation {
                return Err(RuleError::client(format!(
                    "Invalid setting for container '{name}'. 'memory' must be greater than or \
                     equal to 'memoryReservation'."
                )));
            }
        }
        if c.cpu.is_some_and(|cpu| cpu < 0) {
            return Err(RuleError::client(format!("Invalid 'cpu' setting for container '{name}'.")));
        }
        if let (Some(task), Some(memory)) = (size.memory, c.memory) {
            if i64::from(memory) > i64::from(task) {
                return Err(RuleError::client(format!(
                    "The 'memory' setting for container '{name}' is greater than for the task."
                )));
            }
        }
    }
    if let Some(task) = size.cpu {
        let total: i64 = td.containers.iter().filter_map(|c| c.cpu).map(i64::from).sum();
        if total > i64::from(task) {
            return Err(RuleError::client(
                "The sum of all container 'cpu' values cannot be greater than the value of the \
                 task 'cpu'.",
            ));
        }
    }
    if let Some(task) = size.memory {
        let reservations: i64 = td.containers.iter().filter_map(|c| c.memory_reservation).map(i64::from).sum();
        if reservations > i64::from(task) {
            return Err(RuleError::client(
                "The sum of all container 'memoryReservation' values cannot be greater than the \
                 value of the task 'memory'.",
            ));
        }
        // What a container reserves is its soft limit when it has one, its hard limit otherwise.
        let reserved: i64 = td.containers.iter().filter_map(|c| c.memory_reservation.or(c.memory)).map(i64::from).sum();
        if reserved > i64::from(task) {
            return Err(RuleError::client(
                "The sum of all container 'memory' values cannot be greater than the value of the \
                 task 'memory'.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::ContainerDefinition;

    #[test]
    fn task_cpu_spellings() {
        let cases = [
            ("1024", Some(1024)),
            (" 256 ", Some(256)),
            ("1 vCPU", Some(1024)),
            ("1vcpu", Some(1024)),
            ("2 VCPU", Some(2048)),
            ("0.25 vCPU", Some(256)),
            (".5 vcpu", Some(512)),
            ("0.125 vCPU", Some(128)),
            ("16 vCPU", Some(16384)),
            ("", None),
            ("vCPU", None),
            ("1 cpu", None),
            ("1.5.0 vCPU", None),
            ("0.3 vCPU", None),
            ("1. vCPU", None),
            ("-1024", None),
            ("1e3", None),
            ("99999999999", None),
            ("5000000 vCPU", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_task_cpu(input), expected, "{input:?}");
        }
    }

    #[test]
    fn task_memory_spellings() {
        let cases = [
            ("512", Some(512)),
            ("2 GB", Some(2048)),
            ("2GB", Some(2048)),
            ("2gb", Some(2048)),
            ("0.5GB", Some(512)),
            ("30 GB", Some(30720)),
            ("", None),
            ("GB", None),
            ("2 GiB", None),
            ("512 MiB", None),
            ("0.1GB", None),
            ("-512", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_task_memory(input), expected, "{input:?}");
        }
    }

    fn ec2_sized(
        cpu: Option<&str>,
        memory: Option<&str>,
        containers: Vec<ContainerDefinition>,
    ) -> crate::RegisterTaskDefinitionRequest {
        let mut req = ec2_task(containers);
        req.cpu = cpu.map(Into::into);
        req.memory = memory.map(Into::into);
        req
    }

    #[test]
    fn ec2_task_cpu_range_and_spelling() {
        let cases: &[(&str, bool)] = &[
            ("128", true),
            ("196608", true),
            ("1 vCPU", true),
            ("192 vCPU", true),
            ("127", false),
            ("196609", false),
            ("0", false),
            ("abc", false),
            ("", false),
        ];
        for (cpu, ok) in cases {
            let req = ec2_sized(Some(cpu), None, vec![container("web")]);
            if *ok {
                assert_ok(&req);
            } else {
                assert_client(&req, INVALID_TASK_CPU);
            }
        }
    }

    #[test]
    fn ec2_task_memory_spelling() {
        assert_ok(&ec2_sized(None, Some("1 GB"), vec![container("web")]));
        assert_client(&ec2_sized(None, Some("lots"), vec![container("web")]), INVALID_TASK_MEMORY);
        assert_client(&ec2_sized(None, Some("0"), vec![container("web")]), INVALID_TASK_MEMORY);
    }

    fn sized(memory: Option<i32>, reservation: Option<i32>) -> ContainerDefinition {
        ContainerDefinition { memory, memory_reservation: reservation, ..container("web") }
    }

    #[test]
    fn container_memory_rules_without_task_memory() {
        let at_least_one = "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' \
             must be specified.";
        let cases: &[(Option<i32>, Option<i32>, Option<&str>)] = &[
            (Some(512), None, None),
            (None, Some(128), None),
            (Some(512), Some(128), None),
            (Some(256), Some(256), None),
            (Some(6), None, None),
            (None, None, Some(at_least_one)),
            (Some(5), None, Some("Invalid setting for container 'web'. 'memory' must be at least 6 MiB.")),
            (Some(0), None, Some("Invalid setting for container 'web'. 'memory' must be at least 6 MiB.")),
            (
                None,
                Some(0),
                Some(
                    "Invalid setting for container 'web'. 'memoryReservation' must be greater than \
                     0.",
                ),
            ),
            (
                Some(128),
                Some(256),
                Some(
                    "Invalid setting for container 'web'. 'memory' must be greater than or equal \
                     to 'memoryReservation'.",
                ),
            ),
        ];
        for (memory, reservation, expected) in cases {
            let req = ec2_task(vec![sized(*memory, *reservation)]);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn task_memory_makes_container_memory_optional() {
        assert_ok(&ec2_sized(None, Some("512"), vec![sized(None, None)]));
    }

    #[test]
    fn container_memory_must_fit_the_task() {
        let cases: &[(Vec<ContainerDefinition>, Option<&str>)] = &[
            (vec![sized(Some(512), None)], None),
            (vec![sized(Some(256), None), ContainerDefinition { memory: Some(256), ..container("b") }], None),
            (
                vec![sized(Some(1024), Some(256))],
                Some("The 'memory' setting for container 'web' is greater than for the task."),
            ),
            (
                vec![
                    sized(None, Some(300)),
                    ContainerDefinition { memory: None, memory_reservation: Some(300), ..container("b") },
                ],
                Some(
                    "The sum of all container 'memoryReservation' values cannot be greater than \
                     the value of the task 'memory'.",
                ),
            ),
            (
                vec![
                    sized(Some(300), None),
                    ContainerDefinition { memory: None, memory_reservation: Some(300), ..container("b") },
                ],
                Some(
                    "The sum of all container 'memory' values cannot be greater than the value of \
                     the task 'memory'.",
                ),
            ),
        ];
        for (containers, expected) in cases {
            let req = ec2_sized(None, Some("512"), containers.clone());
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn container_cpu_must_be_non_negative_and_fit_the_task() {
        let with_cpu = |name: &str, cpu| ContainerDefinition { cpu: Some(cpu), ..container(name) };
        assert_ok(&ec2_task(vec![with_cpu("web", 0)]));
        // Without a task cpu there is no ceiling: ECS passes large shares through to Docker.
        assert_ok(&ec2_task(vec![with_cpu("web", 300_000)]));
        assert_client(&ec2_task(vec![with_cpu("web", -1)]), "Invalid 'cpu' setting for container 'web'.");
        assert_ok(&ec2_sized(Some("1024"), None, vec![with_cpu("a", 512), with_cpu("b", 512)]));
        assert_client(
            &ec2_sized(Some("1024"), None, vec![with_cpu("a", 512), with_cpu("b", 513)]),
            "The sum of all container 'cpu' values cannot be greater than the value of the task \
             'cpu'.",
        );
    }
}
