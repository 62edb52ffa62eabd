//! The scheduler's verdict on single instances, outside a placement: whether a planned number of
//! tasks still fits an instance read afresh ([`verify`]: the API re-checks a plan against its
//! cache before it commits, and checks the instances StartTask names), and which instances a
//! request's attributes and constraints accept whatever their room ([`eligible`]: where a DAEMON
//! service belongs). Both run the very checks [`crate::place`] runs, so fit is judged in one place.

use super::checks::{Checks, InstState};
use crate::plan::Reason;
use crate::request::{Request, RequestError};
use crate::snapshot::{group_count, Instance, Snapshot};

/// Whether `n` tasks of `request` fit on `instance` as it stands, in the order `place` would put
/// them there: the first check that fails is the reason.
pub fn verify(instance: Instance, request: &Request, n: u32) -> Result<Result<(), Reason>, RequestError> {
    request.validate_constraints()?;
    let snapshot = Snapshot::new(vec![instance]);
    let checks = Checks::new(&snapshot, request);
    let mut st = InstState::initial(&snapshot, 0, group_count(&snapshot, 0, checks.group));
    for k in 0..n {
        let verdict = if k == 0 { checks.check(0, &st) } else { checks.recheck(0, &st) };
        if let Err(reason) = verdict {
            return Ok(Err(reason));
        }
        checks.reserve(&mut st);
    }
    Ok(Ok(()))
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
    use crate::request::{Constraint, RequiredAttribute};
    use crate::snapshot::{HostPort, InstanceStatus};

    fn instance(zone: &str) -> Instance {
        Instance {
            arn: format!("arn:ci/{zone}"),
            agent_connected: true,
            attributes: vec![("ecs.availability-zone".into(), Some(zone.into()))],
            remaining_cpu: 1024,
            remaining_memory: 1024,
            used_ports: vec![HostPort::tcp(22)],
            ..Instance::default()
        }
    }

    fn request(cpu: u32, memory: u32) -> Request {
        Request { count: 1, cpu, memory, group: "family:web".into(), ..Request::default() }
    }

    #[test]
    fn verify_reserves_each_task_in_turn() {
        assert_eq!(verify(instance("a"), &request(512, 256), 2).unwrap(), Ok(()));
        assert_eq!(verify(instance("a"), &request(512, 256), 3).unwrap(), Err(Reason::Cpu));
        assert_eq!(verify(instance("a"), &request(1, 1024), 2).unwrap(), Err(Reason::Memory));
        let ports = Request { ports: vec![HostPort::tcp(8080)], ..request(1, 1) };
        assert_eq!(verify(instance("a"), &ports, 1).unwrap(), Ok(()));
        assert_eq!(verify(instance("a"), &ports, 2).unwrap(), Err(Reason::Ports), "one fixed port, two tasks");
        let taken = Request { ports: vec![HostPort::tcp(22)], ..request(1, 1) };
        assert_eq!(verify(instance("a"), &taken, 1).unwrap(), Err(Reason::Ports));
    }

    #[test]
    fn verify_sees_status_agent_attributes_and_constraints() {
        let draining = Instance { status: InstanceStatus::Draining, ..instance("a") };
        assert_eq!(verify(draining, &request(1, 1), 1).unwrap(), Err(Reason::Draining));
        let away = Instance { agent_connected: false, ..instance("a") };
        assert_eq!(verify(away, &request(1, 1), 1).unwrap(), Err(Reason::Agent));
        let needs = Request {
            required_attributes: vec![RequiredAttribute { name: "gpu".into(), value: None }],
            ..request(1, 1)
        };
        assert_eq!(verify(instance("a"), &needs, 1).unwrap(), Err(Reason::Attribute));
        let only_b = Request {
            constraints: vec![Constraint::from_wire("memberOf", Some("attribute:ecs.availability-zone == b")).unwrap()],
            ..request(1, 1)
        };
        assert_eq!(verify(instance("a"), &only_b, 1).unwrap(), Err(Reason::MemberOf));
        assert_eq!(verify(instance("b"), &only_b, 1).unwrap(), Ok(()));
        let distinct = Request { constraints: vec![Constraint::DistinctInstance], ..request(1, 1) };
        assert_eq!(verify(instance("b"), &distinct, 2).unwrap(), Err(Reason::DistinctInstance));
        let busy = Instance { task_groups: vec![("family:web".into(), 1)], ..instance("b") };
        assert_eq!(verify(busy, &distinct, 1).unwrap(), Err(Reason::DistinctInstance));
    }

    #[test]
    fn eligible_ignores_room_and_status() {
        let full = Instance { remaining_cpu: 0, status: InstanceStatus::Draining, ..instance("a") };
        let snapshot = Snapshot::new(vec![full, instance("b"), instance("c")]);
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
