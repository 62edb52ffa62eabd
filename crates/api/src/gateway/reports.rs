//! Applying an agent's task report to the task record. Reports may arrive twice or late (after a
//! reconnect the agent resends what was not acknowledged), so a report only ever moves a task and
//! its containers along the moves their lifecycles allow (`flotilla_protocol::lifecycle`), and
//! fills timestamps that are still empty.

use flotilla_model::{Attachment, Container, KeyValuePair, NetworkInterface, Task, Timestamp};
use flotilla_protocol::{ContainerLifecycle, ContainerReport, TaskReport, TaskStatus};

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

fn apply_container(c: &mut Container, r: &ContainerReport) {
    // A status the record does not know (none yet) is replaced by any report.
    let known = c.last_status.as_deref().and_then(ContainerLifecycle::parse);
    if known.is_some_and(|k| !k.may_become(r.status)) {
        return;
    }
    c.last_status = Some(r.status.as_str().into());
    if r.runtime_id.is_some() {
        c.runtime_id = r.runtime_id.clone();
    }
    if r.image_digest.is_some() {
        c.image_digest = r.image_digest.clone();
    }
    if r.exit_code.is_some() {
        c.exit_code = r.exit_code;
    }
    if r.reason.is_some() {
        c.reason = r.reason.clone();
    }
    if !r.network_bindings.is_empty() {
        c.network_bindings = Some(r.network_bindings.clone());
    }
    if r.health_status.is_some() {
        c.health_status = r.health_status.clone();
    }
}

/// The task after `report`, or `None` when the report changes nothing.
pub fn apply_report(task: &Task, report: &TaskReport) -> Option<Task> {
    let mut t = task.clone();
    let known = t.last_status.as_deref().and_then(TaskStatus::parse);
    let forward = known.is_none_or(|k| k.may_become(report.status));
    if forward {
        t.last_status = Some(report.status.as_str().into());
    }
    for r in &report.containers {
        if let Some(c) = t.containers.iter_mut().flatten().find(|c| c.name.as_deref() == Some(r.name.as_str())) {
            apply_container(c, r);
        }
    }
    if forward {
        if report.health_status.is_some() {
            t.health_status = report.health_status.clone();
        }
        t.pull_started_at = t.pull_started_at.or(ts(report.pull_started_at_ms));
        t.pull_stopped_at = t.pull_stopped_at.or(ts(report.pull_stopped_at_ms));
        t.started_at = t.started_at.or(ts(report.started_at_ms));
        t.stopping_at = t.stopping_at.or(ts(report.stopping_at_ms));
        t.execution_stopped_at = t.execution_stopped_at.or(ts(report.execution_stopped_at_ms));
        t.stopped_at = t.stopped_at.or(ts(report.stopped_at_ms));
        if let Some(ip) = &report.private_ipv4 {
            attach_address(&mut t, ip);
        }
    }
    // A task that stops on its own (an essential container exited, it failed to start) is meant
    // to stay stopped: ECS sets its desired status, code and reason then.
    if t.last_status.as_deref() == Some("STOPPED") || report.stop_code.is_some() {
        t.desired_status = Some("STOPPED".into());
        if t.stop_code.is_none() {
            t.stop_code = report.stop_code.clone();
        }
        if t.stopped_reason.is_none() {
            t.stopped_reason = report.stopped_reason.clone();
        }
    }
    if t.last_status.as_deref() == Some("STOPPED") {
        t.health_status = Some(t.health_status.clone().unwrap_or_else(|| "UNKNOWN".into()));
        // The task's interface goes with it.
        for a in t.attachments.iter_mut().flatten() {
            if a.r#type.as_deref() == Some("ElasticNetworkInterface") {
                a.status = Some("DELETED".into());
            }
        }
    }
    if t == *task {
        return None;
    }
    t.version = Some(t.version.unwrap_or(0) + 1);
    Some(t)
}

/// Records an awsvpc task's address as ECS does: an ElasticNetworkInterface attachment on the
/// task and a network interface on each container.
fn attach_address(t: &mut Task, ip: &str) {
    let id = t.task_arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("task").to_string();
    let eni = t.attachments.iter_mut().flatten().find(|a| a.r#type.as_deref() == Some("ElasticNetworkInterface"));
    let existing = eni.map(|a| {
        // An interface the control plane allocated (PRECREATED) is up once the agent reports it.
        if a.status.as_deref() == Some("PRECREATED") {
            a.status = Some("ATTACHED".into());
        }
        a.id.clone().unwrap_or_default()
    });
    // Each container's network interface names the task's attachment by its id, as on ECS.
    let attachment_id = existing.clone().unwrap_or_else(|| format!("eni-attachment-{id}"));
    if existing.is_none() {
        let kv = |n: &str, v: &str| KeyValuePair { name: Some(n.into()), value: Some(v.into()) };
        t.attachments.get_or_insert_with(Vec::new).push(Attachment {
            id: Some(attachment_id.clone()),
            r#type: Some("ElasticNetworkInterface".into()),
            status: Some("ATTACHED".into()),
            details: Some(vec![kv("networkInterfaceId", &format!("eni-{id}")), kv("privateIPv4Address", ip)]),
        });
    }
    for c in t.containers.iter_mut().flatten() {
        if c.network_interfaces.as_ref().is_none_or(|n| n.is_empty()) {
            c.network_interfaces = Some(vec![NetworkInterface {
                attachment_id: Some(attachment_id.clone()),
                private_ipv4_address: Some(ip.to_string()),
                ..Default::default()
            }]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            task_arn: Some("arn:aws:ecs:us-east-1:0:task/c/abc".into()),
            last_status: Some("PROVISIONING".into()),
            desired_status: Some("RUNNING".into()),
            containers: Some(vec![Container {
                name: Some("web".into()),
                last_status: Some("PENDING".into()),
                ..Default::default()
            }]),
            version: Some(1),
            ..Default::default()
        }
    }

    fn report(status: &str, container: &str) -> TaskReport {
        TaskReport {
            task_arn: "t".into(),
            status: TaskStatus::parse(status).expect("a status"),
            seq: 1,
            containers: vec![ContainerReport {
                name: "web".into(),
                status: ContainerLifecycle::parse(container).expect("a status"),
                ..Default::default()
            }],
            started_at_ms: Some(5000),
            ..Default::default()
        }
    }

    #[test]
    fn reports_move_forward_only() {
        let running = apply_report(&task(), &report("RUNNING", "RUNNING")).expect("changed");
        assert_eq!(running.last_status.as_deref(), Some("RUNNING"));
        assert_eq!(running.started_at, Some(Timestamp(5.0)));
        assert_eq!(running.version, Some(2));
        let mut stopped_report = report("STOPPED", "STOPPED");
        stopped_report.containers[0].exit_code = Some(3);
        stopped_report.stop_code = Some("EssentialContainerExited".into());
        stopped_report.stopped_reason = Some("Essential container in task exited".into());
        let stopped = apply_report(&running, &stopped_report).expect("changed");
        assert_eq!(stopped.desired_status.as_deref(), Some("STOPPED"));
        assert_eq!(stopped.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(stopped.containers.as_ref().unwrap()[0].exit_code, Some(3));
        // A late RUNNING report changes nothing.
        assert_eq!(apply_report(&stopped, &report("RUNNING", "RUNNING")), None);
        // The same report twice changes nothing the second time.
        assert_eq!(apply_report(&stopped, &stopped_report), None);
    }

    #[test]
    fn awsvpc_address_becomes_an_attachment() {
        let mut r = report("RUNNING", "RUNNING");
        r.private_ipv4 = Some("10.99.0.5".into());
        let t = apply_report(&task(), &r).expect("changed");
        let att = &t.attachments.as_ref().unwrap()[0];
        assert_eq!(att.r#type.as_deref(), Some("ElasticNetworkInterface"));
        assert!(att.details.as_ref().unwrap().iter().any(|d| d.value.as_deref() == Some("10.99.0.5")));
        let ni = &t.containers.as_ref().unwrap()[0].network_interfaces.as_ref().unwrap()[0];
        assert_eq!(ni.private_ipv4_address.as_deref(), Some("10.99.0.5"));
        assert_eq!(ni.attachment_id, att.id, "a container's interface names the task's attachment");
    }
}
