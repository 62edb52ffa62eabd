//! Builders shared by the placement tests: instances described in one line, requests from wire
//! strings.

#![allow(dead_code)]

use flotilla_scheduler::{Constraint, HostPort, Instance, InstanceStatus, Request, Strategy};

/// An ACTIVE, connected instance `n` in `zone` with the given cpu and memory left.
pub fn inst(n: usize, zone: &str, cpu: i64, memory: i64) -> Instance {
    Instance {
        arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/{n:04}"),
        ec2_instance_id: format!("i-{n:08x}"),
        status: InstanceStatus::Active,
        agent_connected: true,
        agent_version: Some("1.80.0".into()),
        registered_at_ms: 1_700_000_000_000 + n as i64,
        attributes: vec![
            ("ecs.availability-zone".into(), Some(zone.into())),
            ("ecs.instance-type".into(), Some(if n.is_multiple_of(2) { "t3.large" } else { "m5.xlarge" }.into())),
        ],
        remaining_cpu: cpu,
        remaining_memory: memory,
        remaining_gpus: 0,
        used_ports: vec![HostPort::tcp(22)],
        running_tasks_count: 0,
        task_groups: vec![],
    }
}

pub fn with_group(mut i: Instance, group: &str, tasks: u32) -> Instance {
    i.task_groups.push((group.into(), tasks));
    i.running_tasks_count += tasks;
    i
}

pub fn strategies(items: &[(&str, Option<&str>)]) -> Vec<Strategy> {
    items.iter().map(|(t, f)| Strategy::from_wire(t, *f).unwrap()).collect()
}

pub fn member_of(expr: &str) -> Constraint {
    Constraint::from_wire("memberOf", Some(expr)).unwrap()
}

/// A request for `count` tasks of 256 cpu / 512 MiB in group `family:web`.
pub fn request(count: u32) -> Request {
    Request { count, cpu: 256, memory: 512, group: "family:web".into(), ..Request::default() }
}
