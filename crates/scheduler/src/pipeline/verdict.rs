//! The scheduler's verdict on single instances, outside a placement: whether a planned number of
//! tasks still fits an instance as it stands ([`verify`]: the API re-checks a plan against its
//! cache before it commits, and judges the instances StartTask names), and which instances a
//! request's attributes and constraints accept whatever their room ([`eligible`]: where a DAEMON
//! service belongs). Both run the checks [`crate::place`] runs (the same gate, room and
//! constraint code), so fit is judged in one place.

use super::checks::{room, Checks, Need};
use crate::plan::Reason;
use crate::request::{Constraint, Request, RequestError};
use crate::snapshot::{HostPort, InstanceStatus, Snapshot};

/// One instance as it stands at commit time: what its tasks can change between a plan and its
/// commit (its status and agent, the CPU and memory left, the host ports taken, the tasks of the
/// request's group on it). Its attributes are not here: the plan judged them, and a change of the
/// instance's record is caught by the commit's compare of its revision.
pub struct Standing<'a> {
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    /// GPUs registered and not assigned to a task.
    pub remaining_gpus: u32,
    pub port_taken: Box<dyn Fn(HostPort) -> bool + 'a>,
    /// Tasks of the request's group already on the instance (for distinctInstance).
    pub group_tasks: u32,
}

/// Whether `n` tasks of `request` still fit on an instance as it stands, each one taking its
/// reservation before the next is judged, by the very checks `place` runs: the first that fails
/// is the reason. Reads no strings and builds nothing, so the commit path can ask it for every
/// instance of every plan.
pub fn verify(standing: &Standing<'_>, request: &Request, n: u32) -> Result<(), Reason> {
    if let Some(reason) = standing.status.gate(standing.agent_connected) {
        return Err(reason);
    }
    let distinct = request.constraints.iter().any(|c| matches!(c, Constraint::DistinctInstance));
    let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let (cpu, memory) = (clamp(request.cpu), clamp(request.memory));
    let mut ports: Vec<u32> = request.ports.iter().map(|p| p.key()).collect();
    ports.sort_unstable();
    ports.dedup();
    for k in 0..n {
        if distinct && standing.group_tasks + k > 0 {
            return Err(Reason::DistinctInstance);
        }
        let cpu_left = standing.remaining_cpu - i64::from(k) * i64::from(cpu);
        let memory_left = standing.remaining_memory - i64::from(k) * i64::from(memory);
        let gpus_left = i64::from(standing.remaining_gpus) - i64::from(k) * i64::from(request.gpus);
        let need = Need { cpu, memory, gpus: request.gpus };
        room((cpu_left, memory_left, gpus_left), k, need, &ports, |key| {
            (standing.port_taken)(HostPort::from_key(key))
        })?;
    }
    Ok(())
}

/// For each instance of `snapshot`, whether the request's required attributes and memberOf
/// constraints accept it, leaving aside status, agent and resources.
pub fn eligible(snapshot: &Snapshot, request: &Request) -> Result<Vec<bool>, RequestError> {
    request.validate_constraints()?;
    let checks = Checks::new(snapshot, request);
    let mask = checks.member_of_mask();
    Ok((0..snapshot.len()).map(|i| checks.attributes_ok(i) && mask.as_ref().is_none_or(|m| m[i])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequiredAttribute;
    use crate::snapshot::Instance;

    fn standing(taken: fn(HostPort) -> bool) -> Standing<'static> {
        Standing {
            status: InstanceStatus::Active,
            agent_connected: true,
            remaining_cpu: 1024,
            remaining_memory: 1024,
            remaining_gpus: 2,
            port_taken: Box::new(taken),
            group_tasks: 0,
        }
    }

    fn request(cpu: u32, memory: u32) -> Request {
        Request { count: 1, cpu, memory, group: "family:web".into(), ..Request::default() }
    }

    fn ssh(p: HostPort) -> bool {
        p == HostPort::tcp(22)
    }

    #[test]
    fn verify_reserves_each_task_in_turn() {
        let s = standing(ssh);
        assert_eq!(verify(&s, &request(512, 256), 2), Ok(()));
        assert_eq!(verify(&s, &request(512, 256), 3), Err(Reason::Cpu));
        assert_eq!(verify(&s, &request(1, 1024), 2), Err(Reason::Memory));
        let ports = Request { ports: vec![HostPort::tcp(8080)], ..request(1, 1) };
        assert_eq!(verify(&s, &ports, 1), Ok(()));
        assert_eq!(verify(&s, &ports, 2), Err(Reason::Ports), "one fixed port, two tasks");
        let taken = Request { ports: vec![HostPort::tcp(22)], ..request(1, 1) };
        assert_eq!(verify(&s, &taken, 1), Err(Reason::Ports));
        let udp = Request { ports: vec![HostPort::udp(22)], ..request(1, 1) };
        assert_eq!(verify(&s, &udp, 1), Ok(()), "udp/22 is another port than tcp/22");
    }

    #[test]
    fn verify_sees_status_agent_and_distinct_instance() {
        let draining = Standing { status: InstanceStatus::Draining, ..standing(ssh) };
        assert_eq!(verify(&draining, &request(1, 1), 1), Err(Reason::Draining));
        let away = Standing { agent_connected: false, ..standing(ssh) };
        assert_eq!(verify(&away, &request(1, 1), 1), Err(Reason::Agent));
        let distinct = Request { constraints: vec![Constraint::DistinctInstance], ..request(1, 1) };
        assert_eq!(verify(&standing(ssh), &distinct, 1), Ok(()));
        assert_eq!(verify(&standing(ssh), &distinct, 2), Err(Reason::DistinctInstance));
        let busy = Standing { group_tasks: 1, ..standing(ssh) };
        assert_eq!(verify(&busy, &distinct, 1), Err(Reason::DistinctInstance));
    }

    #[test]
    fn verify_agrees_with_place_on_one_instance() {
        // The same instance through the pipeline and through verify: the same verdicts.
        for (cpu, memory, n) in [(256, 256, 4), (256, 256, 5), (1, 2048, 1), (700, 1, 2)] {
            let instance = Instance {
                arn: "arn:ci/0".into(),
                agent_connected: true,
                remaining_cpu: 1024,
                remaining_memory: 1024,
                used_ports: vec![HostPort::tcp(22)],
                ..Instance::default()
            };
            let req = Request { count: n, ..request(cpu, memory) };
            let plan = crate::place(&Snapshot::new(vec![instance]), &req, &crate::Env { seed: 1 }).unwrap();
            let verdict = verify(&standing(ssh), &req, n);
            assert_eq!(plan.placements.len() as u32 == n, verdict.is_ok(), "{cpu}/{memory} x{n}: {verdict:?}");
        }
    }

    #[test]
    fn eligible_ignores_room_and_status() {
        let zone = |z: &str| Instance {
            arn: format!("arn:ci/{z}"),
            agent_connected: true,
            attributes: vec![("ecs.availability-zone".into(), Some(z.into()))],
            remaining_cpu: 1024,
            remaining_memory: 1024,
            ..Instance::default()
        };
        let full = Instance { remaining_cpu: 0, status: InstanceStatus::Draining, ..zone("a") };
        let snapshot = Snapshot::new(vec![full, zone("b"), zone("c")]);
        let in_ab = Request {
            constraints: vec![
                Constraint::from_wire("memberOf", Some("attribute:ecs.availability-zone in [a, b]")).unwrap()
            ],
            ..request(4096, 4096)
        };
        assert_eq!(eligible(&snapshot, &in_ab).unwrap(), vec![true, true, false]);
        let needs = Request {
            required_attributes: vec![RequiredAttribute {
                name: "ecs.availability-zone".into(),
                value: Some("c".into()),
            }],
            ..request(1, 1)
        };
        assert_eq!(eligible(&snapshot, &needs).unwrap(), vec![false, false, true]);
        assert_eq!(eligible(&snapshot, &request(1, 1)).unwrap(), vec![true, true, true]);
    }
}
