//! Restart policies and start timeouts against the fake runtime: the engine's clock follows
//! tokio's paused one, so "ran for 61 seconds" and "waited 30 seconds" take no time.

use flotilla_model::ContainerRestartPolicy;

use super::*;
use crate::metadata::{MetadataEndpoint, TaskBook};

fn restarting(c: ContainerDefinition, ignored: &[i32], period: i32) -> ContainerDefinition {
    ContainerDefinition {
        restart_policy: Some(ContainerRestartPolicy {
            enabled: Some(true),
            ignored_exit_codes: Some(ignored.to_vec()),
            restart_attempt_period: Some(period),
        }),
        ..c
    }
}

fn with_metadata() -> Harness {
    Harness::with(|c| c.metadata = Some(MetadataEndpoint { base_url: "http://172.17.0.1:51679".into() }))
}

fn restarts(h: &Harness, task: &str, name: &str) -> u32 {
    let rec = TaskBook::task(&h.engine, task).expect("the task's record");
    rec.containers.iter().find(|c| c.name == name).map_or(0, |c| c.restart_count)
}

#[tokio::test(start_paused = true)]
async fn a_container_that_ran_its_period_is_restarted_in_place_and_counted() {
    let mut h = with_metadata();
    // Every run lasts 61 s and fails: past the 60 s period each time.
    h.fake.script("web", Script { exit_after: Some((Duration::from_secs(61), 1)), ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![restarting(container("web"), &[], 60)])).unwrap();
    h.status(&task, "RUNNING").await;
    let id = h.fake.task_containers(&task)["web"].id.clone();
    tokio::time::sleep(Duration::from_secs(200)).await;
    let web = &h.fake.task_containers(&task)["web"];
    assert_eq!(web.id, id, "the same container, not a new one");
    assert!(web.starts >= 3, "started {} times", web.starts);
    assert_eq!(h.created(), 1);
    assert_eq!(restarts(&h, &task, "web"), web.starts - 1);
    let r = h.engine.report(&task).unwrap();
    assert_eq!((r.status.as_str(), container_report(&r, "web").status.as_str()), ("RUNNING", "RUNNING"));
    // The task metadata endpoint shows it as ECS's RestartCount.
    let rec = TaskBook::task(&h.engine, &task).unwrap();
    let c = rec.containers.iter().find(|c| c.name == "web").unwrap();
    let shown = serde_json::to_value(crate::metadata::shape::container(&rec, c, None)).unwrap();
    assert_eq!(shown["RestartCount"].as_u64(), Some(u64::from(web.starts - 1)));
    // The record on disk carries the count too.
    let saved = std::fs::read_to_string(h.dir.path().join("tasks").join("t1.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(saved["containers"][0]["restartCount"].as_u64().is_some_and(|n| n >= 2), "{saved}");
}

#[tokio::test(start_paused = true)]
async fn an_exit_before_the_period_or_with_an_ignored_code_stands() {
    let mut h = with_metadata();
    h.fake.script("quick", Script { exit_after: Some((Duration::from_secs(10), 1)), ..Script::default() });
    h.fake.script("done", Script { exit_after: Some((Duration::from_secs(90), 42)), ..Script::default() });
    let task = arn("t1");
    let defs = vec![
        restarting(container("web"), &[], 60),
        restarting(non_essential("quick"), &[], 60),
        restarting(non_essential("done"), &[42], 60),
    ];
    h.engine.apply(assignment("t1", defs)).unwrap();
    let r = h
        .until(&task, "both exits", |r| {
            container_report(r, "quick").status == "STOPPED" && container_report(r, "done").status == "STOPPED"
        })
        .await;
    assert_eq!(r.status, "RUNNING");
    assert_eq!((container_report(&r, "quick").exit_code, container_report(&r, "done").exit_code), (Some(1), Some(42)));
    let containers = h.fake.task_containers(&task);
    assert_eq!((containers["quick"].starts, containers["done"].starts), (1, 1));
    assert_eq!((restarts(&h, &task, "quick"), restarts(&h, &task, "done")), (0, 0));
    // A container with a policy that never restarted shows 0.
    let rec = TaskBook::task(&h.engine, &task).unwrap();
    let plain = rec.containers.iter().find(|c| c.name == "web").unwrap();
    let shown = serde_json::to_value(crate::metadata::shape::container(&rec, plain, None)).unwrap();
    assert_eq!(shown["RestartCount"].as_u64(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn an_essential_container_that_exits_too_soon_stops_the_task() {
    let mut h = Harness::new();
    h.fake.script("web", Script { exit_after: Some((Duration::from_secs(5), 3)), ..Script::default() });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![restarting(container("web"), &[], 60)])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(h.fake.task_containers(&task)["web"].starts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dependency_that_misses_its_start_timeout_stops_the_task() {
    let mut h = Harness::new();
    // db never becomes healthy; web waits for HEALTHY at most db's startTimeout.
    let mut db = with_health(container("db"));
    db.start_timeout = Some(30);
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![depends(container("web"), "db", "HEALTHY"), db])).unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!h.fake.calls().contains(&Call::StartContainer("flotilla-t1-web".into())));
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = r.stopped_reason.unwrap();
    assert!(
        reason.contains("web")
            && reason.contains("dependency db did not reach HEALTHY within its startTimeout of 30 seconds"),
        "{reason}"
    );
    assert!(!h.fake.calls().contains(&Call::StartContainer("flotilla-t1-web".into())));
}

#[tokio::test(start_paused = true)]
async fn a_dependency_met_within_its_start_timeout_starts_the_dependent() {
    let mut h = Harness::new();
    h.fake.script("db", Script { health_after: Some((Duration::from_secs(20), Health::Healthy)), ..Script::default() });
    let mut db = with_health(container("db"));
    db.start_timeout = Some(30);
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![depends(container("web"), "db", "HEALTHY"), db])).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(container_report(&r, "web").status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn process_options_reach_the_runtime_spec() {
    let mut h = with_metadata();
    let task = arn("t1");
    let web = ContainerDefinition {
        docker_security_options: Some(vec!["no-new-privileges".into()]),
        system_controls: Some(vec![flotilla_model::SystemControl {
            namespace: Some("net.core.somaxconn".into()),
            value: Some("1024".into()),
        }]),
        pseudo_terminal: Some(true),
        interactive: Some(true),
        ..container("web")
    };
    h.engine.apply(assignment("t1", vec![web])).unwrap();
    h.status(&task, "RUNNING").await;
    let o = &h.fake.task_containers(&task)["web"].spec.options;
    assert_eq!(o.security_opt, vec!["no-new-privileges=true"]);
    assert_eq!(o.sysctls.get("net.core.somaxconn").map(String::as_str), Some("1024"));
    assert!(o.tty && o.open_stdin && !o.network_disabled);
    // Without a restart policy the metadata shows no RestartCount, as in ECS.
    let rec = TaskBook::task(&h.engine, &task).unwrap();
    let shown = serde_json::to_value(crate::metadata::shape::container(&rec, &rec.containers[0], None)).unwrap();
    assert!(shown.get("RestartCount").is_none(), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn an_unsupported_security_option_fails_the_task_naming_the_field() {
    let mut h = Harness::new();
    let task = arn("t1");
    let web =
        ContainerDefinition { docker_security_options: Some(vec!["credentialspec:x".into()]), ..container("web") };
    h.engine.apply(assignment("t1", vec![web])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    let reason = r.stopped_reason.unwrap();
    assert!(reason.contains("dockerSecurityOptions") && reason.contains("credentialspec:x"), "{reason}");
    assert_eq!(h.created(), 0);
}
