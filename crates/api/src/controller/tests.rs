//! The reconcile step tested as data, and property tests of its invariants: running plus
//! starting never above maximumPercent, healthy never below minimumHealthyPercent while capacity
//! allows, and never two DAEMON tasks on one instance.

use flotilla_model::{DeploymentCircuitBreaker, DeploymentConfiguration, Service};
use proptest::prelude::*;

use super::deployment::{backoff_until, count_failures, failure_threshold, Limits, BACKOFF_BASE_MS};
use super::reconcile::{reconcile, Actions, Settings, REASON_DRAINING, REASON_HEALTH};
use super::view::{Health, InstanceState, InstanceView, TaskView};

const NOW: i64 = 1_000_000;

fn deployment(id: &str, status: &str, td: &str, desired: i32, rollout: &str) -> flotilla_model::Deployment {
    flotilla_model::Deployment {
        id: Some(id.into()),
        status: Some(status.into()),
        task_definition: Some(td.into()),
        desired_count: Some(desired),
        rollout_state: Some(rollout.into()),
        created_at: Some(flotilla_model::Timestamp::from_millis(if status == "PRIMARY" { 2 } else { 1 })),
        ..Default::default()
    }
}

fn service(desired: i32, min: i32, max: i32) -> Service {
    Service {
        service_name: Some("web".into()),
        status: Some("ACTIVE".into()),
        desired_count: Some(desired),
        scheduling_strategy: Some("REPLICA".into()),
        task_definition: Some("td:2".into()),
        deployment_configuration: Some(DeploymentConfiguration {
            minimum_healthy_percent: Some(min),
            maximum_percent: Some(max),
            ..Default::default()
        }),
        deployments: Some(vec![deployment("new", "PRIMARY", "td:2", desired, "IN_PROGRESS")]),
        ..Default::default()
    }
}

fn rolling(desired: i32, min: i32, max: i32) -> Service {
    let mut s = service(desired, min, max);
    s.deployments.as_mut().unwrap().push(deployment("old", "ACTIVE", "td:1", desired, "COMPLETED"));
    s
}

fn instance(n: usize) -> InstanceView {
    InstanceView {
        arn: format!("ci/{n}"),
        status: InstanceState::Active,
        connected: true,
        disconnected_since_ms: None,
        daemon_eligible: true,
    }
}

fn task(n: usize, deployment: &str, status: &str, on: usize) -> TaskView {
    TaskView {
        arn: format!("arn:task/c/{deployment}-{n}"),
        deployment: Some(deployment.into()),
        last_status: status.into(),
        desired_stopped: false,
        health: Health::Unknown,
        has_health_check: false,
        instance: Some(format!("ci/{on}")),
        zone: Some(format!("z{}", on % 3)),
        capacity_provider: None,
        created_at_ms: n as i64,
        started_at_ms: (status == "RUNNING").then_some(NOW - 60_000),
        stopped_at_ms: None,
        targets: super::view::Targets::None,
        stop_code: None,
    }
}

fn stopped(n: usize, deployment: &str, code: &str, at: i64) -> TaskView {
    let mut t = task(n, deployment, "STOPPED", 0);
    t.stop_code = Some(code.into());
    t.stopped_at_ms = Some(at);
    t.started_at_ms = Some(at - 500);
    t.desired_stopped = true;
    t
}

fn run(svc: &Service, tasks: &[TaskView], instances: &[InstanceView]) -> Actions {
    reconcile(svc, tasks, instances, NOW, &Settings::default())
}

fn instances(n: usize) -> Vec<InstanceView> {
    (0..n).map(instance).collect()
}

#[test]
fn a_new_service_launches_its_desired_count() {
    let a = run(&service(3, 100, 200), &[], &instances(3));
    assert_eq!(a.launch_count(), 3);
    assert_eq!(a.launch[0].deployment, "new");
    assert_eq!(a.launch[0].task_definition, "td:2");
    assert!(a.stop.is_empty());
}

#[test]
fn a_stopped_task_is_replaced_and_running_ones_kept() {
    let tasks =
        vec![task(1, "new", "RUNNING", 0), task(2, "new", "RUNNING", 1), stopped(3, "new", "UserInitiated", NOW)];
    let a = run(&service(3, 100, 200), &tasks, &instances(3));
    assert_eq!(a.launch_count(), 1);
    assert_eq!(a.keep.len(), 2);
}

#[test]
fn scaling_in_stops_pending_tasks_first() {
    let tasks = vec![task(1, "new", "RUNNING", 0), task(2, "new", "PENDING", 1), task(3, "new", "RUNNING", 2)];
    let a = run(&service(2, 100, 200), &tasks, &instances(3));
    assert_eq!(a.launch_count(), 0);
    assert_eq!(a.stop.len(), 1);
    assert_eq!(a.stop[0].task, "arn:task/c/new-2");
    assert!(a.stop[0].reason.starts_with("Scaling activity initiated by (deployment new)"));
}

#[test]
fn scaling_in_keeps_the_capacity_provider_split() {
    let mut svc = service(10, 0, 200);
    let item = |p: &str, weight: i32, base: i32| flotilla_model::CapacityProviderStrategyItem {
        capacity_provider: Some(p.into()),
        weight: Some(weight),
        base: Some(base),
    };
    svc.capacity_provider_strategy = Some(vec![item("CP-OD", 1, 2), item("CP-SPOT", 3, 0)]);
    // 22 tasks split 7 / 15 by the strategy; scaled back to 10 they split 4 / 6 again.
    let tasks: Vec<TaskView> = (0..22)
        .map(|n| {
            let mut t = task(n, "new", "RUNNING", n % 5);
            t.capacity_provider = Some(if n < 7 { "CP-OD" } else { "CP-SPOT" }.into());
            t
        })
        .collect();
    let a = run(&svc, &tasks, &instances(5));
    assert_eq!(a.stop.len(), 12);
    let stopped_od = a
        .stop
        .iter()
        .filter(|s| tasks.iter().any(|t| t.arn == s.task && t.capacity_provider.as_deref() == Some("CP-OD")))
        .count();
    assert_eq!((7 - stopped_od, 15 - (12 - stopped_od)), (4, 6));
}

/// Zone balance gives way to availability: the crowded zone's tasks are the healthy ones, and
/// stopping one would leave fewer than minimumHealthyPercent, so the pending task elsewhere goes.
#[test]
fn scaling_in_spares_healthy_tasks_while_at_the_minimum() {
    let tasks = vec![task(0, "new", "RUNNING", 1), task(1, "new", "RUNNING", 4), task(2, "new", "PENDING", 0)];
    let a = run(&service(2, 51, 100), &tasks, &instances(5));
    assert_eq!(a.stop.iter().map(|s| s.task.as_str()).collect::<Vec<_>>(), ["arn:task/c/new-2"]);
    // Above the minimum, balance decides: the crowded zone (z1) gives up its newest task.
    let a = run(&service(2, 0, 100), &tasks, &instances(5));
    assert_eq!(a.stop.iter().map(|s| s.task.as_str()).collect::<Vec<_>>(), ["arn:task/c/new-1"]);
}

#[test]
fn a_rollout_with_min_100_max_200_starts_new_tasks_before_stopping_old_ones() {
    let old: Vec<TaskView> = (0..3).map(|n| task(n, "old", "RUNNING", n)).collect();
    let a = run(&rolling(3, 100, 200), &old, &instances(3));
    assert_eq!(a.launch_count(), 3);
    assert!(a.stop.is_empty(), "no old task may stop before new ones are healthy: {:?}", a.stop);

    // Once the new tasks run, the old ones go.
    let mut all = old.clone();
    all.extend((10..13).map(|n| task(n, "new", "RUNNING", n % 3)));
    let a = run(&rolling(3, 100, 200), &all, &instances(3));
    assert_eq!(a.launch_count(), 0);
    assert_eq!(a.stop.len(), 3);
    assert!(a.stop.iter().all(|s| s.task.contains("/old-")));
}

#[test]
fn a_rollout_with_min_50_max_100_stops_half_first() {
    let old: Vec<TaskView> = (0..4).map(|n| task(n, "old", "RUNNING", n)).collect();
    let a = run(&rolling(4, 50, 100), &old, &instances(4));
    assert_eq!(a.launch_count(), 0, "no room above 100%");
    assert_eq!(a.stop.len(), 2, "down to 50% healthy");
}

#[test]
fn unhealthy_tasks_are_replaced_after_the_grace_period_only() {
    let mut svc = service(1, 100, 200);
    let mut t = task(1, "new", "RUNNING", 0);
    t.has_health_check = true;
    t.health = Health::Unhealthy;
    let a = run(&svc, std::slice::from_ref(&t), &instances(1));
    assert_eq!(a.stop.len(), 1);
    assert_eq!(a.stop[0].reason, REASON_HEALTH);
    assert_eq!(a.launch_count(), 1, "its replacement starts at once");
    assert!(a.events.iter().any(|e| e.contains("failed container health checks")));

    svc.health_check_grace_period_seconds = Some(120);
    let a = run(&svc, &[t], &instances(1));
    assert!(a.stop.is_empty(), "within the grace period a failing health check is tolerated");
}

#[test]
fn tasks_on_a_draining_instance_move_without_dropping_below_the_minimum() {
    let mut inst = instances(3);
    inst[0].status = InstanceState::Draining;
    let tasks: Vec<TaskView> = (0..3).map(|n| task(n, "new", "RUNNING", n)).collect();
    let a = run(&service(3, 100, 200), &tasks, &inst);
    assert_eq!(a.launch_count(), 1, "the replacement starts first");
    assert!(a.stop.is_empty());
    let mut more = tasks.clone();
    more.push(task(9, "new", "RUNNING", 1));
    let a = run(&service(3, 100, 200), &more, &inst);
    assert_eq!(a.stop.len(), 1);
    assert_eq!(a.stop[0].task, "arn:task/c/new-0");
    assert_eq!(a.stop[0].reason, REASON_DRAINING);
}

#[test]
fn a_lost_agent_has_its_tasks_stopped_and_replaced_after_the_grace_period() {
    let mut inst = instances(2);
    inst[1].connected = false;
    inst[1].disconnected_since_ms = Some(NOW - 30_000);
    let tasks = vec![task(1, "new", "RUNNING", 0), task(2, "new", "RUNNING", 1)];
    let a = run(&service(2, 100, 200), &tasks, &inst);
    assert!(a.stop.is_empty(), "within the grace period nothing happens");
    assert_eq!(a.launch_count(), 0);
    inst[1].disconnected_since_ms = Some(NOW - 61_000);
    let a = run(&service(2, 100, 200), &tasks, &inst);
    assert_eq!(a.stop.len(), 1);
    assert_eq!(a.stop[0].task, "arn:task/c/new-2");
    assert_eq!(a.launch_count(), 1);
}

#[test]
fn repeated_failures_back_off_and_say_so() {
    let svc = service(1, 100, 200);
    let one = vec![stopped(1, "new", "EssentialContainerExited", NOW - 1000)];
    assert_eq!(backoff_until(&svc, &one, NOW), None, "one failure is retried at once");
    let two = vec![
        stopped(1, "new", "EssentialContainerExited", NOW - 3000),
        stopped(2, "new", "EssentialContainerExited", NOW - 1000),
    ];
    assert_eq!(backoff_until(&svc, &two, NOW), Some(NOW - 1000 + BACKOFF_BASE_MS));
    let a = run(&svc, &two, &instances(1));
    assert_eq!(a.launch_count(), 0);
    assert_eq!(a.retry_at_ms, Some(NOW - 1000 + BACKOFF_BASE_MS));
    assert!(a.events[0].contains("is unable to consistently start tasks successfully"));
    let three = [two.clone(), vec![stopped(3, "new", "TaskFailedToStart", NOW - 500)]].concat();
    assert_eq!(backoff_until(&svc, &three, NOW), Some(NOW - 500 + 2 * BACKOFF_BASE_MS));
    // A stop the user asked for is no failure.
    let user = vec![stopped(1, "new", "UserInitiated", NOW - 3000), stopped(2, "new", "UserInitiated", NOW - 1000)];
    assert_eq!(backoff_until(&svc, &user, NOW), None);
}

#[test]
fn failed_tasks_stay_counted_after_the_tasks_are_forgotten_until_one_runs_fine() {
    let mut svc = service(1, 100, 200);
    let failures: Vec<TaskView> =
        (1..=3).map(|n| stopped(n, "new", "EssentialContainerExited", NOW - 1000 * n as i64)).collect();
    count_failures(&mut svc, &failures, NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(3));
    // Two of them were forgotten (stopped over the retention ago): still three failures.
    count_failures(&mut svc, &failures[..1], NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(3));
    // It grows again once the tasks in view show more.
    let all = [failures.clone(), vec![stopped(4, "new", "TaskFailedToStart", NOW - 100)]].concat();
    count_failures(&mut svc, &all, NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(4));
    // A task that has run fine since the last failure resets the count (resetOnHealthyTask).
    let mut healthy = task(5, "new", "RUNNING", 0);
    healthy.started_at_ms = Some(NOW - 10_050);
    let fine = [all.clone(), vec![healthy.clone()]].concat();
    count_failures(&mut svc, &fine, NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(0));
    // Failures after that count again, from zero.
    let later = [fine, vec![stopped(6, "new", "TaskFailedToStart", NOW - 10)]].concat();
    count_failures(&mut svc, &later, NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(1));
    // Without resetOnHealthyTask, a healthy task resets nothing.
    let mut no_reset = service(1, 100, 200);
    no_reset.deployment_configuration.as_mut().unwrap().deployment_circuit_breaker = Some(DeploymentCircuitBreaker {
        enable: Some(true),
        rollback: Some(false),
        reset_on_healthy_task: Some(false),
        ..Default::default()
    });
    count_failures(&mut no_reset, &[all, vec![healthy]].concat(), NOW);
    assert_eq!(no_reset.deployments.as_ref().unwrap()[0].failed_tasks, Some(4));
}

#[test]
fn the_circuit_breaker_counts_failed_launches_and_failed_health_checks_only() {
    let mut svc = service(1, 100, 200);
    // Stage 1: a task that never ran, and one that died right after it started.
    let mut never_ran = stopped(1, "new", "TaskFailedToStart", NOW - 2000);
    never_ran.started_at_ms = None;
    let died_at_once = stopped(2, "new", "EssentialContainerExited", NOW - 1000);
    // A task that ran fine for a minute and was then killed is no failed launch.
    let mut killed = stopped(3, "new", "EssentialContainerExited", NOW - 500);
    killed.started_at_ms = Some(NOW - 60_500);
    count_failures(&mut svc, &[never_ran.clone(), died_at_once.clone(), killed.clone()], NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(2));
    // Stage 2: a task that ran and was stopped for failing its health check counts, however long
    // it ran (it never proved healthy).
    let mut svc = service(1, 100, 200);
    let mut unhealthy = stopped(4, "new", "ServiceSchedulerInitiated", NOW - 100);
    unhealthy.started_at_ms = Some(NOW - 30_000);
    unhealthy.health = Health::Unhealthy;
    count_failures(&mut svc, &[killed, unhealthy], NOW);
    assert_eq!(svc.deployments.as_ref().unwrap()[0].failed_tasks, Some(1));
}

#[test]
fn a_failed_deployment_with_nothing_to_roll_back_to_says_so_and_launches_nothing() {
    let mut svc = service(3, 100, 200);
    svc.deployment_configuration.as_mut().unwrap().deployment_circuit_breaker =
        Some(DeploymentCircuitBreaker { enable: Some(true), rollback: Some(true), ..Default::default() });
    let tasks: Vec<TaskView> = (0..3).map(|n| stopped(n, "new", "EssentialContainerExited", NOW - 100)).collect();
    let a = run(&svc, &tasks, &instances(3));
    assert_eq!(a.launch_count(), 0, "a failed deployment launches nothing");
    let out = a.service.clone().expect("the service record changes");
    assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("FAILED"));
    assert!(
        a.events.iter().any(|e| e.contains("is not rolled back: there is no completed deployment to roll back to")),
        "{:?}",
        a.events
    );
    // On the next pass, still nothing is launched.
    let again = run(&out, &tasks, &instances(3));
    assert_eq!(again.launch_count(), 0);
}

#[test]
fn the_circuit_breaker_fails_the_rollout_and_rolls_back() {
    let mut svc = rolling(3, 100, 200);
    svc.deployment_configuration.as_mut().unwrap().deployment_circuit_breaker =
        Some(DeploymentCircuitBreaker { enable: Some(true), rollback: Some(true), ..Default::default() });
    let mut tasks: Vec<TaskView> = (0..3).map(|n| task(n, "old", "RUNNING", n)).collect();
    tasks.extend((10..13).map(|n| stopped(n, "new", "EssentialContainerExited", NOW - 100 * n as i64)));
    assert_eq!(failure_threshold(3), 3);
    let a = run(&svc, &tasks, &instances(3));
    let out = a.service.clone().expect("the service record changes");
    let d = out.deployments.as_ref().unwrap();
    assert_eq!(d[0].id.as_deref(), Some("old"));
    assert_eq!(d[0].status.as_deref(), Some("PRIMARY"));
    assert_eq!(d[1].rollout_state.as_deref(), Some("FAILED"));
    assert_eq!(d[1].failed_tasks, Some(3));
    assert_eq!(out.task_definition.as_deref(), Some("td:1"));
    assert!(a.events.iter().any(|e| e.contains("deployment failed: tasks failed to start")));
    assert!(a.events.iter().any(|e| e.contains("rolling back to deployment old")));
    assert_eq!(a.launch_count(), 0, "the old tasks are kept: {:?}", a.launch);
    assert!(a.stop.is_empty());
}

#[test]
fn containers_that_die_after_running_fine_are_no_failed_tasks() {
    // As on ECS: once a deployment has a task that ran successfully, its failedTasks is zero and
    // the circuit breaker no longer counts against it (say a rollback returned to it after some
    // of its containers had died in service).
    let mut svc = rolling(3, 100, 200);
    svc.deployment_configuration.as_mut().unwrap().deployment_circuit_breaker =
        Some(DeploymentCircuitBreaker { enable: Some(true), rollback: Some(true), ..Default::default() });
    let mut tasks: Vec<TaskView> = (0..3).map(|n| task(n, "old", "RUNNING", n)).collect();
    for n in 10..13 {
        let mut t = stopped(n, "new", "EssentialContainerExited", NOW - 1000 * n as i64);
        t.started_at_ms = Some(NOW - 100_000);
        tasks.push(t);
    }
    let a = run(&svc, &tasks, &instances(3));
    let out = a.service.clone().expect("failedTasks is written");
    let d = out.deployments.as_ref().unwrap();
    assert_eq!((d[0].id.as_deref(), d[0].status.as_deref()), (Some("new"), Some("PRIMARY")));
    assert_eq!(d[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
    assert_eq!(d[0].failed_tasks, Some(0));
    assert!(!a.events.iter().any(|e| e.contains("deployment failed")), "{:?}", a.events);
    assert_eq!(a.launch_count(), 3, "the three are replaced");
}

#[test]
fn without_rollback_a_failed_rollout_stops_launching() {
    let mut svc = rolling(3, 100, 200);
    svc.deployment_configuration.as_mut().unwrap().deployment_circuit_breaker =
        Some(DeploymentCircuitBreaker { enable: Some(true), rollback: Some(false), ..Default::default() });
    let mut tasks: Vec<TaskView> = (0..3).map(|n| task(n, "old", "RUNNING", n)).collect();
    tasks.extend((10..13).map(|n| stopped(n, "new", "EssentialContainerExited", NOW - 100_000 * n as i64)));
    let a = run(&svc, &tasks, &instances(3));
    let out = a.service.clone().expect("changed");
    assert_eq!(out.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("FAILED"));
    assert_eq!(a.launch_count(), 0);
    assert!(a.stop.is_empty(), "the old tasks keep serving");
}

fn daemon(min: i32, max: i32) -> Service {
    let mut s = service(0, min, max);
    s.scheduling_strategy = Some("DAEMON".into());
    s
}

#[test]
fn a_daemon_runs_one_task_per_eligible_instance() {
    let mut inst = instances(4);
    inst[3].daemon_eligible = false;
    inst[2].status = InstanceState::Draining;
    let tasks = vec![task(1, "new", "RUNNING", 0), task(2, "new", "RUNNING", 2), task(3, "new", "RUNNING", 3)];
    let a = run(&daemon(0, 100), &tasks, &inst);
    assert_eq!(a.launch.len(), 1);
    assert_eq!(a.launch[0].instance.as_deref(), Some("ci/1"));
    let stopped: Vec<&str> = a.stop.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(stopped.contains(&"arn:task/c/new-2") && stopped.contains(&"arn:task/c/new-3"));
    assert_eq!(a.service.unwrap().desired_count, Some(2));
}

#[test]
fn a_daemon_rollout_with_max_100_stops_the_old_task_first() {
    let mut svc = daemon(0, 100);
    svc.deployments.as_mut().unwrap().push(deployment("old", "ACTIVE", "td:1", 2, "COMPLETED"));
    let tasks = vec![task(1, "old", "RUNNING", 0), task(2, "old", "RUNNING", 1)];
    let a = run(&svc, &tasks, &instances(2));
    assert_eq!(a.launch_count(), 0);
    assert_eq!(a.stop.len(), 2);
    let a = run(&svc, &[], &instances(2));
    assert_eq!(a.launch_count(), 2);
}

// --- properties ---

#[derive(Debug, Clone)]
struct World {
    desired: i32,
    min: i32,
    max: i32,
    instances: Vec<InstanceView>,
    tasks: Vec<TaskView>,
}

fn world() -> impl Strategy<Value = World> {
    (
        0i32..8,
        0i32..=100,
        100i32..=200,
        1usize..6,
        proptest::collection::vec((0u8..2, 0u8..4, 0usize..6, 0u8..3), 0..16),
    )
        .prop_map(|(desired, min, max, n, specs)| {
            let mut instances: Vec<InstanceView> = (0..n).map(instance).collect();
            if n > 2 {
                instances[n - 1].status = InstanceState::Draining;
            }
            let tasks = specs
                .into_iter()
                .enumerate()
                .map(|(i, (dep, status, on, health))| {
                    let status = ["PENDING", "RUNNING", "RUNNING", "STOPPED"][status as usize];
                    let mut t = task(i, if dep == 0 { "new" } else { "old" }, status, on % n);
                    t.has_health_check = health > 0;
                    t.health = [Health::Unknown, Health::Healthy, Health::Unhealthy][health as usize];
                    t
                })
                .collect();
            World { desired, min, max, instances, tasks }
        })
}

proptest! {
    #[test]
    fn running_plus_starting_never_exceeds_maximum_percent(w in world()) {
        let svc = rolling(w.desired, w.min, w.max);
        let a = run(&svc, &w.tasks, &w.instances);
        let limits = Limits::of(&svc);
        let live = w.tasks.iter().filter(|t| t.is_live()).count() as i32;
        let stopping = a.stop.len() as i32;
        let after = live - stopping + a.launch_count() as i32;
        // Launches only ever fill room below the maximum; stops never add tasks.
        prop_assert!(a.launch_count() == 0 || after <= limits.max_total, "after {after} > max {}", limits.max_total);
    }

    #[test]
    fn healthy_tasks_never_drop_below_minimum_healthy_percent(w in world()) {
        let svc = rolling(w.desired, w.min, w.max);
        let a = run(&svc, &w.tasks, &w.instances);
        let limits = Limits::of(&svc);
        let healthy: Vec<&TaskView> = w.tasks.iter().filter(|t| t.is_live() && super::reconcile::is_healthy(t)).collect();
        let stopped_healthy = a.stop.iter().filter(|s| healthy.iter().any(|t| t.arn == s.task)).count() as i32;
        let before = healthy.len() as i32;
        let primary_healthy = healthy.iter().filter(|t| t.deployment.as_deref() == Some("new")).count() as i32;
        // Healthy tasks are only given up above the floor, or when the current deployment alone
        // has more than it needs (scale-in).
        prop_assert!(
            before - stopped_healthy >= limits.min_healthy.min(before) || primary_healthy > limits.desired,
            "healthy {before} - {stopped_healthy} < floor {}", limits.min_healthy
        );
    }

    #[test]
    fn a_daemon_never_plans_two_tasks_on_one_instance(w in world()) {
        let svc = daemon(w.min.min(100), 100);
        let a = run(&svc, &w.tasks, &w.instances);
        let stopped: std::collections::HashSet<&str> = a.stop.iter().map(|s| s.task.as_str()).collect();
        let mut per: std::collections::HashMap<String, u32> = Default::default();
        for t in w.tasks.iter().filter(|t| t.is_live() && t.deployment.as_deref() == Some("new") && !stopped.contains(t.arn.as_str())) {
            *per.entry(t.instance.clone().unwrap_or_default()).or_default() += 1;
        }
        for l in &a.launch {
            *per.entry(l.instance.clone().unwrap_or_default()).or_default() += 1;
        }
        prop_assert!(per.values().all(|&n| n <= 1), "{per:?}");
    }

    #[test]
    fn reconcile_is_idempotent(w in world()) {
        let svc = rolling(w.desired, w.min, w.max);
        let a = run(&svc, &w.tasks, &w.instances);
        let b = run(&svc, &w.tasks, &w.instances);
        prop_assert_eq!(a, b);
    }
}
