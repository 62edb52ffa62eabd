//! Fargate tasks against the fake runtime: the sandbox runtime on every container, the Fargate
//! rules whatever the agent allows EC2 tasks, the task's own interface, and the stop cap.

use super::*;
use crate::cgroup::TaskLimits;
use flotilla_model::{HostVolumeProperties, Volume};
use flotilla_protocol::TaskNetwork;

fn eni() -> TaskNetwork {
    TaskNetwork {
        subnet_id: "subnet-f1".into(),
        cidr_block: "10.213.0.0/24".into(),
        ipv4_address: "10.213.0.9".into(),
        mac_address: "02:00:0a:d5:00:09".into(),
        interface_id: "eni-f1".into(),
    }
}

fn fargate(id: &str, containers: Vec<ContainerDefinition>) -> TaskAssignment {
    let mut a = assignment_in_mode(id, containers, Some("awsvpc"));
    a.task.launch_type = Some(flotilla_protocol::FARGATE.into());
    a.definition.cpu = Some("256".into());
    a.definition.memory = Some("512".into());
    a.network = Some(eni());
    a
}

fn pool_host() -> Harness {
    // Even an agent that allows everything to EC2 tasks holds Fargate tasks to Fargate's rules.
    Harness::with(|c| {
        c.sandbox_runtime = Some("runsc".into());
        c.allow_privileged = true;
    })
}

#[tokio::test(start_paused = true)]
async fn a_single_container_fargate_task_holds_its_own_address_in_the_sandbox() {
    let mut h = pool_host();
    let task = arn("f1");
    h.engine.apply(fargate("f1", vec![container("app")])).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(h.statuses(&task), vec!["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]);
    assert_eq!(r.private_ipv4.as_deref(), Some("10.213.0.9"));
    let all = h.fake.task_containers(&task);
    // One sandbox: no pause container, the app itself on the subnet at the task's address.
    assert_eq!(all.keys().collect::<Vec<_>>(), ["app"]);
    let app = &all["app"].spec;
    assert_eq!(app.runtime.as_deref(), Some("runsc"));
    assert_eq!(app.storage_size_bytes, Some(20 << 30));
    assert!(!app.privileged);
    assert_eq!(app.network_mode.as_deref(), Some("flotilla-subnet-f1"));
    assert_eq!(
        (app.ipv4_address.as_deref(), app.mac_address.as_deref()),
        (Some("10.213.0.9"), Some("02:00:0a:d5:00:09"))
    );
    assert!(app.port_bindings.is_empty() && app.links.is_empty());

    h.engine.apply(stopped(fargate("f1", vec![container("app")]))).unwrap();
    h.status(&task, "STOPPED").await;
    assert_eq!(h.statuses(&task)[4..], ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
}

#[tokio::test(start_paused = true)]
async fn every_container_of_a_fargate_task_of_several_runs_in_the_sandbox_behind_its_pause_container() {
    let mut h = pool_host();
    let task = arn("f1");
    h.engine.apply(fargate("f1", vec![container("app"), container("side")])).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(r.private_ipv4.as_deref(), Some("10.213.0.9"));
    let all = h.fake.task_containers(&task);
    let pause = &all[labels::PAUSE_NAME].spec;
    assert_eq!(pause.runtime.as_deref(), Some("runsc"));
    assert_eq!(pause.network_mode.as_deref(), Some("flotilla-subnet-f1"));
    assert_eq!(
        (pause.ipv4_address.as_deref(), pause.mac_address.as_deref()),
        (Some("10.213.0.9"), Some("02:00:0a:d5:00:09"))
    );
    for name in ["app", "side"] {
        let spec = &all[name].spec;
        assert_eq!(spec.runtime.as_deref(), Some("runsc"));
        assert_eq!(spec.network_mode, Some(format!("container:{}", all[labels::PAUSE_NAME].id)));
        assert_eq!((spec.ipv4_address.as_deref(), spec.mac_address.as_deref()), (None, None));
    }
    h.engine.apply(stopped(fargate("f1", vec![container("app"), container("side")]))).unwrap();
    h.status(&task, "STOPPED").await;
    assert!(!h.fake.task_containers(&task).contains_key(labels::PAUSE_NAME));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_pool_host_adopts_a_task_without_a_pause_container_and_keeps_one_it_made() {
    let mut h = pool_host();
    h.engine.apply(fargate("f7", vec![container("app")])).unwrap();
    let before = h.status(&arn("f7"), "RUNNING").await;
    // A task of one container whose pause container an agent before this path made.
    let mut old = fargate("f8", vec![container("app")]);
    old.network = Some(TaskNetwork { ipv4_address: "10.213.0.10".into(), ..eni() });
    h.engine.shutdown().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pause = crate::runtime::ContainerSpec {
        name: "flotilla-f8.pause".into(),
        image: crate::network::DEFAULT_PAUSE_IMAGE.into(),
        labels: BTreeMap::from([
            (labels::MARKER.to_string(), "true".to_string()),
            (labels::INSTANCE.to_string(), INSTANCE.to_string()),
            (labels::TASK.to_string(), arn("f8")),
            (labels::CONTAINER.to_string(), labels::PAUSE_NAME.to_string()),
        ]),
        network_mode: Some("flotilla-subnet-f1".into()),
        ipv4_address: Some("10.213.0.10".into()),
        ..Default::default()
    };
    let pause_id = h.fake.insert_container(pause, RunState::Created);

    let mut h2 = Harness::on(h.fake.clone(), h.dir.clone(), h.start, |c| c.sandbox_runtime = Some("runsc".into()));
    assert_eq!(h2.engine.adopt().await.unwrap(), vec![arn("f7")]);
    let r = h2.status(&arn("f7"), "RUNNING").await;
    assert_eq!(container_report(&r, "app").runtime_id, container_report(&before, "app").runtime_id);
    assert_eq!(r.private_ipv4.as_deref(), Some("10.213.0.9"));
    assert_eq!(h2.created(), 1, "adoption created containers");

    h2.engine.apply(old).unwrap();
    let r = h2.status(&arn("f8"), "RUNNING").await;
    assert_eq!(r.private_ipv4.as_deref(), Some("10.213.0.10"));
    let all = h2.fake.task_containers(&arn("f8"));
    assert_eq!(all["app"].spec.network_mode, Some(format!("container:{pause_id}")));
    assert_eq!(h2.created(), 2, "a second pause container");
}

#[tokio::test(start_paused = true)]
async fn an_ec2_task_with_its_own_interface_keeps_the_default_runtime() {
    let mut h = pool_host();
    let task = arn("e1");
    let mut a = assignment_in_mode("e1", vec![container("app")], Some("awsvpc"));
    a.network = Some(eni());
    h.engine.apply(a).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(r.private_ipv4.as_deref(), Some("10.213.0.9"));
    let all = h.fake.task_containers(&task);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["app"]);
    assert_eq!(all["app"].spec.runtime.as_deref(), None);
    assert_eq!(all["app"].spec.network_mode.as_deref(), Some("flotilla-subnet-f1"));
    assert_eq!(all["app"].spec.ipv4_address.as_deref(), Some("10.213.0.9"));
}

#[tokio::test(start_paused = true)]
async fn what_would_reach_the_host_stops_a_fargate_task_before_anything_is_created() {
    let mut h = pool_host();
    let privileged = ContainerDefinition { privileged: Some(true), ..container("app") };
    let host_path = Volume {
        name: Some("sock".into()),
        host: Some(HostVolumeProperties { source_path: Some("/var/run/docker.sock".into()) }),
        ..Default::default()
    };
    let mut with_host_path = fargate("f3", vec![container("app")]);
    with_host_path.definition.volumes = Some(vec![host_path]);
    for (id, a, needle) in [
        ("f2", fargate("f2", vec![privileged]), "privileged"),
        ("f3", with_host_path, "host path"),
        ("f4", assignment("f4", vec![container("app")]), "network mode bridge"),
    ] {
        let mut a = a;
        a.task.launch_type = Some(flotilla_protocol::FARGATE.into());
        h.engine.apply(a).unwrap();
        let r = h.status(&arn(id), "STOPPED").await;
        let reason = r.stopped_reason.clone().unwrap_or_default();
        assert!(reason.contains("not supported on Fargate") && reason.contains(needle), "{id}: {reason}");
        assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    }
    assert_eq!(h.created(), 0);
    // An agent without a sandbox runtime refuses Fargate tasks outright.
    let mut ec2 = Harness::new();
    ec2.engine.apply(fargate("f5", vec![container("app")])).unwrap();
    let r = ec2.status(&arn("f5"), "STOPPED").await;
    assert!(r.stopped_reason.unwrap_or_default().contains("--fargate"));
}

#[tokio::test(start_paused = true)]
async fn the_stop_cap_bounds_each_containers_grace() {
    let mut h = pool_host();
    let task = arn("f6");
    let long = ContainerDefinition { stop_timeout: Some(120), ..container("long") };
    let short = ContainerDefinition { stop_timeout: Some(2), ..container("short") };
    let mut a = fargate("f6", vec![long, short, container("default")]);
    a.stop_timeout_cap_seconds = Some(10);
    h.engine.apply(a.clone()).unwrap();
    h.status(&task, "RUNNING").await;
    h.engine.apply(stopped(a)).unwrap();
    h.status(&task, "STOPPED").await;
    let graces: std::collections::BTreeMap<String, Duration> = h
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::StopContainer(name, t) => Some((name, t)),
            _ => None,
        })
        .collect();
    let secs = |n: &str| graces.iter().find(|(k, _)| k.ends_with(n)).map(|(_, t)| t.as_secs());
    assert_eq!((secs("long"), secs("short"), secs("default")), (Some(10), Some(2), Some(10)), "{graces:?}");
}

#[tokio::test(start_paused = true)]
async fn a_sandbox_boots_before_the_task_cgroup_gets_its_cpu_quota_and_runs_under_it() {
    let mut h = pool_host();
    let task = arn("f9");
    h.engine.apply(fargate("f9", vec![container("app"), container("side")])).unwrap();
    h.status(&task, "RUNNING").await;
    let calls = h.fake.calls();
    let cgroups: Vec<(usize, TaskLimits)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Call::EnsureTaskCgroup(_, limits) => Some((i, *limits)),
            _ => None,
        })
        .collect();
    let full = TaskLimits { cpu_units: Some(256), memory_mib: Some(512) };
    // Memory from the start; the CPU quota once the first container has started, before the next.
    assert_eq!(cgroups.iter().map(|(_, l)| *l).collect::<Vec<_>>(), [TaskLimits { cpu_units: None, ..full }, full]);
    let starts: Vec<usize> =
        calls.iter().enumerate().filter(|(_, c)| matches!(c, Call::StartContainer(_))).map(|(i, _)| i).collect();
    assert_eq!(starts.len(), 3, "pause, app and side: {calls:?}");
    assert!(starts[1] < cgroups[1].0 && cgroups[1].0 < starts[2], "{calls:?}");

    // An EC2 task's cgroup has its quota from the start.
    let mut ec2 = Harness::new();
    ec2.engine.apply(sized(assignment("e2", vec![container("app")]), "256", "512")).unwrap();
    ec2.status(&arn("e2"), "RUNNING").await;
    let asked: Vec<TaskLimits> = ec2
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::EnsureTaskCgroup(_, limits) => Some(limits),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [full]);
}
