//! A task's resources (its `secrets`, `repositoryCredentials` and log `secretOptions`), asked of
//! the control plane before the task's images are pulled, as ECS's agent resolves them before it
//! pulls, and held in the actor's memory only: never in the task record, never in the logs.
//!
//! The control plane resolves them when the task starts. A secret that does not exist stops the
//! task with ECS's `TaskFailedToStart` and `ResourceInitializationError: ...`; a control plane
//! that cannot answer is asked again with the engine's back-off, and after the last attempt the
//! task stops with the same error. An actor that lost them (an agent restart) asks again before
//! it next creates a container.

use std::sync::Arc;

use flotilla_protocol::calls::needs_resources;
use flotilla_protocol::{RegistryAuth, TaskResources};

use super::actor::{Actor, Step, TASK_FAILED_TO_START};
use crate::calls::CallError;
use crate::runtime::{ContainerSpec, RuntimeError};

/// What ECS's reason says before the detail.
const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth: ";

/// Puts a container's secrets into its environment, replacing plain variables of the same name.
pub fn inject_secrets(spec: &mut ContainerSpec, resources: Option<&TaskResources>, container: &str) {
    let Some(c) = resources.and_then(|r| r.container(container)) else { return };
    for v in &c.environment {
        let prefix = format!("{}=", v.name);
        spec.env.retain(|e| !e.starts_with(&prefix));
        spec.env.push(format!("{}={}", v.name, v.value));
    }
    // `logConfiguration.secretOptions`, resolved, join the Docker log driver's options.
    if let Some(driver) = &mut spec.log_driver {
        for v in &c.log_options {
            driver.options.insert(v.name.clone(), v.value.clone());
        }
    }
}

impl Actor {
    /// Fetches the task's resources if it needs some and the actor does not hold them. `Err`
    /// carries the step the caller returns: the task failed, or the call is to be made again.
    pub(super) async fn ensure_resources(&mut self) -> Result<(), Step> {
        if self.resources.is_some() || !self.defs.iter().any(needs_resources) {
            return Ok(());
        }
        let Some(calls) = self.shared.config.calls.clone() else {
            self.fail(Some(TASK_FAILED_TO_START), format!("{PREFIX}this agent has no session to the control plane"));
            return Err(Step::Failed);
        };
        match calls.task_resources(self.rec.arn()).await {
            Ok(TaskResources { failure: Some(f), .. }) => {
                self.fail(Some(&f.stop_code), f.reason);
                Err(Step::Failed)
            }
            Ok(resources) => {
                self.resources = Some(Arc::new(resources));
                Ok(())
            }
            Err(CallError::Refused { code, message }) => {
                self.fail(Some(TASK_FAILED_TO_START), format!("{PREFIX}{code}: {message}"));
                Err(Step::Failed)
            }
            Err(CallError::Unavailable(message)) if self.start_attempts_left() => {
                Err(Step::Retry(RuntimeError::Unavailable { op: "task resources", message }))
            }
            Err(CallError::Unavailable(message)) => {
                self.fail(Some(TASK_FAILED_TO_START), format!("{PREFIX}{message}"));
                Err(Step::Failed)
            }
        }
    }

    /// The credentials a container's image is pulled with, if its definition names some.
    pub(super) fn registry_auth(&self, container: &str) -> Option<&RegistryAuth> {
        self.resources.as_ref()?.container(container)?.registry_auth.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::{ContainerResources, NamedValue};

    #[test]
    fn secrets_replace_plain_variables_of_the_same_name() {
        let mut spec = ContainerSpec { env: vec!["A=1".into(), "DB=plain".into()], ..Default::default() };
        let resources = TaskResources {
            containers: vec![ContainerResources {
                name: "app".into(),
                environment: vec![NamedValue { name: "DB".into(), value: "s3cret".into() }],
                ..Default::default()
            }],
            failure: None,
        };
        inject_secrets(&mut spec, Some(&resources), "other");
        assert_eq!(spec.env, vec!["A=1", "DB=plain"]);
        inject_secrets(&mut spec, Some(&resources), "app");
        assert_eq!(spec.env, vec!["A=1", "DB=s3cret"]);
    }

    #[test]
    fn secret_log_options_join_the_docker_log_drivers_options() {
        let driver = crate::runtime::LogDriverSpec {
            name: "splunk".into(),
            options: [("splunk-url".to_string(), "https://splunk.local".to_string())].into(),
        };
        let mut spec = ContainerSpec { log_driver: Some(driver), ..Default::default() };
        let resources = TaskResources {
            containers: vec![ContainerResources {
                name: "app".into(),
                log_options: vec![NamedValue { name: "splunk-token".into(), value: "t0k".into() }],
                ..Default::default()
            }],
            failure: None,
        };
        inject_secrets(&mut spec, Some(&resources), "app");
        let options = &spec.log_driver.as_ref().unwrap().options;
        assert_eq!(options.get("splunk-token").map(String::as_str), Some("t0k"));
        assert_eq!(options.len(), 2);
        assert!(!format!("{spec:?}").contains("t0k"), "the resolved secret never prints");
    }
}
