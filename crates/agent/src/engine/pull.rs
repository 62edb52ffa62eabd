//! The pull step of PENDING: each image of the task made available per the agent's pull
//! behaviour, with its registry's credentials, before any container is created.
//!
//! A container's credentials are its definition's `repositoryCredentials` (resolved by the control
//! plane, `resources`), else the host's Docker config entry for the image's registry
//! (`crate::registry_auth`), else none. Containers sharing an image and credentials pull it once.
//! A pull that fails stops the task with ECS's `CannotPullContainerError: ...` carrying the
//! registry's own words, in the task's `stoppedReason` and each affected container's `reason`.
//! The start and end of each pull also go into the task's own log (as the agent's lines on the
//! containers' stderr), so `flotilla logs` shows a slow or failed pull.

use super::actor::{Actor, Step, TASK_FAILED_TO_START};
use super::PullBehavior;
use crate::runtime::{LogSource, RegistryAuth, RuntimeError};

pub use crate::logs::AGENT_LINE_PREFIX;

/// One pull: an image, its credentials, and the containers that wait for it.
struct PullJob {
    image: String,
    auth: Option<RegistryAuth>,
    containers: Vec<String>,
}

impl Actor {
    /// The credentials a container's image is pulled with: the task's, else the host's.
    fn pull_auth(&self, container: &str, image: &str) -> Option<RegistryAuth> {
        self.registry_auth(container).or_else(|| self.shared.config.host_registry_auth.for_image(image)).cloned()
    }

    fn pull_jobs(&self) -> Vec<PullJob> {
        let mut jobs: Vec<PullJob> = Vec::new();
        for d in &self.defs {
            let image = d.image.clone().unwrap_or_default();
            let name = d.name.clone().unwrap_or_default();
            let auth = self.pull_auth(&name, &image);
            match jobs.iter_mut().find(|j| j.image == image && j.auth == auth) {
                Some(j) => j.containers.push(name),
                None => jobs.push(PullJob { image, auth, containers: vec![name] }),
            }
        }
        jobs
    }

    /// Makes an image available per the pull behaviour; one pull per image at a time.
    async fn ensure_image(&self, job: &PullJob) -> Result<(), RuntimeError> {
        let image = job.image.as_str();
        let lock = self.shared.image_lock(image);
        let _guard = lock.lock().await;
        let runtime = &self.shared.runtime;
        let present = runtime.image_present(image).await?;
        let pull = || async {
            self.note(
                &job.containers,
                format!(
                    "pulling image {image}{}",
                    match job.auth {
                        Some(_) => " with registry credentials",
                        None => "",
                    }
                ),
            )
            .await;
            let started = self.shared.now_ms();
            let r = runtime.pull_image(image, job.auth.as_ref()).await;
            let took = (self.shared.now_ms() - started).max(0) as f64 / 1000.0;
            let line = match &r {
                Ok(()) => format!("pulled image {image} in {took:.1}s"),
                Err(RuntimeError::ImageUnavailable { message, .. }) => {
                    format!("pull of image {image} failed after {took:.1}s: {message}")
                }
                Err(e) => format!("pull of image {image} failed after {took:.1}s: {e}"),
            };
            self.note(&job.containers, line).await;
            r
        };
        match self.shared.config.pull_behavior {
            PullBehavior::IfNotPresent if present => Ok(()),
            PullBehavior::IfNotPresent | PullBehavior::Always => pull().await,
            PullBehavior::AlwaysFallBackToCache => match pull().await {
                Err(e) if present && !e.is_transient() => {
                    tracing::info!(image, error = %e, "pull failed; using the local image");
                    Ok(())
                }
                r => r,
            },
            PullBehavior::Never if present => Ok(()),
            PullBehavior::Never => Err(RuntimeError::ImageUnavailable {
                image: image.to_string(),
                message: "the image is not present locally and this agent never pulls".into(),
            }),
        }
    }

    /// Puts one of the agent's own lines into the task's log, under each of `containers`.
    async fn note(&self, containers: &[String], line: String) {
        let Some(log) = self.log.clone() else { return };
        let now = self.shared.now_ms();
        let containers = containers.to_vec();
        let line = format!("{AGENT_LINE_PREFIX}{line}");
        let wrote = tokio::task::spawn_blocking(move || {
            containers.iter().try_for_each(|c| log.append(c, LogSource::Stderr, line.clone(), None, now))
        })
        .await;
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(task = %self.rec.arn(), error = %e, "cannot write to the task's log"),
            Err(e) => tracing::warn!(task = %self.rec.arn(), error = %e, "cannot write to the task's log"),
        }
    }

    pub(super) async fn pull_images(&mut self) -> Step {
        let now = self.shared.now_ms();
        self.rec.times.pull_started_at.get_or_insert(now);
        // The image digests come from inspecting each container once it runs.
        for job in self.pull_jobs() {
            match self.ensure_image(&job).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Step::Retry(e),
                Err(e) => {
                    let detail = match &e {
                        RuntimeError::ImageUnavailable { message, .. } => message.clone(),
                        e => e.to_string(),
                    };
                    let reason = format!("CannotPullContainerError: pull image {}: {detail}", job.image);
                    for name in &job.containers {
                        if let Some(c) = self.rec.container_mut(name) {
                            c.reason = Some(reason.clone());
                        }
                    }
                    self.rec.times.pull_stopped_at = Some(self.shared.now_ms());
                    self.fail(Some(TASK_FAILED_TO_START), reason);
                    return Step::Failed;
                }
            }
        }
        self.rec.times.pull_stopped_at = Some(self.shared.now_ms());
        self.rec.images_ready = true;
        // Pull timestamps are news on their own.
        self.publish();
        Step::Done
    }
}
