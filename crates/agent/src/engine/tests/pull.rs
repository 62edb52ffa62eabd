//! The pull step's credentials against the fake runtime: a container's `repositoryCredentials`
//! (from the control plane's task resources) win over the host's Docker config entry, the host's
//! entry serves a container without them, containers sharing an image and credentials pull once,
//! and a refused pull stops the task with the registry's words and notes it in the task's log.

use flotilla_model::RepositoryCredentials;
use flotilla_protocol::{ContainerResources, LogEventsBatch, RegistryAuth, TaskResources};
use futures::future::BoxFuture;

use super::*;
use crate::calls::{CallError, ControlPlaneCalls};
use crate::registry_auth::HostCredentials;

const PRIVATE: &str = "registry.example.com/team/app:1";

/// The control plane's answer: these credentials for each named container.
struct Resolved(Vec<(&'static str, &'static str)>);

impl ControlPlaneCalls for Resolved {
    fn task_resources(&self, _task_arn: &str) -> BoxFuture<'_, Result<TaskResources, CallError>> {
        let containers = self
            .0
            .iter()
            .map(|(name, user)| ContainerResources {
                name: name.to_string(),
                registry_auth: Some(RegistryAuth { username: user.to_string(), password: format!("{user}-pw") }),
                ..Default::default()
            })
            .collect();
        Box::pin(async move { Ok(TaskResources { containers, failure: None }) })
    }

    fn put_log_events(&self, _batch: LogEventsBatch) -> BoxFuture<'_, Result<(), CallError>> {
        Box::pin(async { Ok(()) })
    }
}

fn private(name: &str, with_credentials: bool) -> ContainerDefinition {
    ContainerDefinition {
        image: Some(PRIVATE.into()),
        repository_credentials: with_credentials.then(|| RepositoryCredentials {
            credentials_parameter: Some("arn:aws:secretsmanager:local:000000000000:secret:reg-AbCdEf".into()),
        }),
        ..container(name)
    }
}

fn host(user: &str) -> Arc<HostCredentials> {
    let text = format!(
        r#"{{"auths": {{"https://registry.example.com/v2/": {{"username": "{user}", "password": "{user}-pw"}}}}}}"#
    );
    Arc::new(HostCredentials::parse(&text, std::path::Path::new("config.json")).expect("config parses"))
}

#[tokio::test(start_paused = true)]
async fn task_credentials_win_and_containers_sharing_them_pull_once() {
    let mut h = Harness::with(|c| {
        c.calls = Some(Arc::new(Resolved(vec![("a", "task-user"), ("b", "task-user")])));
        c.host_registry_auth = host("host-user");
        // Every task pulls, so a second pull for b would show.
        c.pull_behavior = PullBehavior::Always;
    });
    h.fake.add_private(PRIVATE, "task-user", "task-user-pw");
    h.engine.apply(assignment("t1", vec![private("a", true), private("b", true)])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    assert_eq!(h.fake.pull_users(), vec![(PRIVATE.to_string(), Some("task-user".to_string()))]);
}

#[tokio::test(start_paused = true)]
async fn the_host_entry_serves_a_container_without_repository_credentials() {
    let mut h = Harness::with(|c| c.host_registry_auth = host("host-user"));
    h.fake.add_private(PRIVATE, "host-user", "host-user-pw");
    h.engine.apply(assignment("t1", vec![private("d", false)])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    assert_eq!(h.fake.pull_users(), vec![(PRIVATE.to_string(), Some("host-user".to_string()))]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_pull_stops_the_task_with_the_registry_words_and_is_in_the_task_log() {
    let mut h = Harness::with(|c| c.calls = Some(Arc::new(Resolved(vec![("a", "wrong-user")]))));
    h.fake.add_private(PRIVATE, "task-user", "task-user-pw");
    h.engine.apply(assignment("t1", vec![private("a", true)])).unwrap();
    let r = h.status(&arn("t1"), "STOPPED").await;
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = r.stopped_reason.clone().unwrap_or_default();
    assert_eq!(
        reason,
        format!("CannotPullContainerError: pull image {PRIVATE}: unauthorized: authentication required")
    );
    assert_eq!(r.containers[0].reason.as_deref(), Some(reason.as_str()));
    let lines: Vec<String> = h.engine.logs(&arn("t1"), Some("a"), false).unwrap().map(|l| l.line).collect().await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0]
        .starts_with("[flotilla-agent] pulling image registry.example.com/team/app:1 with registry credentials"));
    assert!(lines[1].contains("failed") && lines[1].ends_with("unauthorized: authentication required"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("wrong-user-pw")));
}
