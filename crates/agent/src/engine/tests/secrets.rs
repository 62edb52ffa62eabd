//! A task's resources from the control plane: secrets put into the environment of the container
//! that names them and kept out of the agent's files, and a task whose resources cannot be had
//! stopped as ECS stops it, before any image is pulled or container created.

use std::sync::Mutex;

use flotilla_model::Secret;
use flotilla_protocol::{ContainerResources, LogEventsBatch, NamedValue, ResourceFailure, TaskResources};
use futures::future::BoxFuture;

use super::*;
use crate::calls::{CallError, ControlPlaneCalls};

/// Answers every task-resources call with the next scripted reply (the last one repeats).
struct ScriptedCalls {
    replies: Mutex<Vec<Result<TaskResources, CallError>>>,
    asked: Mutex<u32>,
}

impl ScriptedCalls {
    fn new(replies: Vec<Result<TaskResources, CallError>>) -> Arc<ScriptedCalls> {
        Arc::new(ScriptedCalls { replies: Mutex::new(replies), asked: Mutex::new(0) })
    }
    fn asked(&self) -> u32 {
        *self.asked.lock().unwrap()
    }
}

impl ControlPlaneCalls for ScriptedCalls {
    fn task_resources(&self, _task_arn: &str) -> BoxFuture<'_, Result<TaskResources, CallError>> {
        *self.asked.lock().unwrap() += 1;
        let mut replies = self.replies.lock().unwrap();
        let reply = if replies.len() > 1 { replies.remove(0) } else { replies[0].clone() };
        Box::pin(async move { reply })
    }
    fn put_log_events(&self, _batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async { Ok(()) })
    }
}

fn with_secret(name: &str, env: &str) -> ContainerDefinition {
    ContainerDefinition {
        secrets: Some(vec![Secret { name: Some(env.into()), value_from: Some(format!("/app/{env}")) }]),
        ..container(name)
    }
}

fn resources(container: &str, env: &str, value: &str) -> TaskResources {
    TaskResources {
        containers: vec![ContainerResources {
            name: container.into(),
            environment: vec![NamedValue { name: env.into(), value: value.into() }],
            ..Default::default()
        }],
        failure: None,
    }
}

fn harness(calls: &Arc<ScriptedCalls>) -> Harness {
    let calls: Arc<dyn ControlPlaneCalls> = calls.clone();
    Harness::with(move |c| c.calls = Some(calls))
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test(start_paused = true)]
async fn secrets_reach_only_their_container_and_never_the_agents_files() {
    let calls = ScriptedCalls::new(vec![Ok(resources("app", "DB_PASSWORD", "hunter2-secret"))]);
    let mut h = harness(&calls);
    let task = arn("s1");
    h.engine.apply(assignment("s1", vec![with_secret("app", "DB_PASSWORD"), container("side")])).unwrap();
    h.status(&task, "RUNNING").await;
    let containers = h.fake.task_containers(&task);
    assert!(containers["app"].spec.env.contains(&"DB_PASSWORD=hunter2-secret".to_string()));
    assert!(!containers["side"].spec.env.iter().any(|e| e.starts_with("DB_PASSWORD=")));
    assert_eq!(calls.asked(), 1);
    assert_eq!(files_holding(h.dir.path(), "hunter2-secret"), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_secret_is_missing_stops_before_anything_is_pulled() {
    let reason = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): InvalidParameters: invalid parameters: /app/DB";
    let calls = ScriptedCalls::new(vec![Ok(TaskResources {
        containers: Vec::new(),
        failure: Some(ResourceFailure { stop_code: "TaskFailedToStart".into(), reason: reason.into() }),
    })]);
    let mut h = harness(&calls);
    let task = arn("s2");
    h.engine.apply(assignment("s2", vec![with_secret("app", "DB")])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert_eq!(r.stopped_reason.as_deref(), Some(reason));
    assert_eq!(h.created(), 0);
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::PullImage(_))));
}

#[tokio::test(start_paused = true)]
async fn a_control_plane_that_cannot_answer_is_asked_again_then_the_task_stops() {
    // Two misses, then the answer: the task starts.
    let calls = ScriptedCalls::new(vec![
        Err(CallError::Unavailable("no session".into())),
        Err(CallError::Unavailable("no session".into())),
        Ok(resources("app", "DB", "v")),
    ]);
    let mut h = harness(&calls);
    let task = arn("s3");
    h.engine.apply(assignment("s3", vec![with_secret("app", "DB")])).unwrap();
    h.status(&task, "RUNNING").await;
    assert_eq!(calls.asked(), 3);

    // Never an answer: the task stops with ECS's error once the attempts are spent.
    let calls = ScriptedCalls::new(vec![Err(CallError::Unavailable("no session".into()))]);
    let mut h = harness(&calls);
    let task = arn("s4");
    h.engine.apply(assignment("s4", vec![with_secret("app", "DB")])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = r.stopped_reason.unwrap();
    assert!(reason.starts_with("ResourceInitializationError: unable to pull secrets or registry auth: "), "{reason}");
    assert!(calls.asked() > 1);
    assert_eq!(h.created(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_without_secrets_never_calls_and_an_agent_without_a_session_refuses_secrets() {
    let calls = ScriptedCalls::new(vec![Err(CallError::Unavailable("unused".into()))]);
    let mut h = harness(&calls);
    let task = arn("s5");
    h.engine.apply(assignment("s5", vec![container("app")])).unwrap();
    h.status(&task, "RUNNING").await;
    assert_eq!(calls.asked(), 0);

    let mut h = Harness::new();
    let task = arn("s6");
    h.engine.apply(assignment("s6", vec![with_secret("app", "DB")])).unwrap();
    let r = h.status(&task, "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(r.stopped_reason.unwrap().contains("no session to the control plane"));
}
