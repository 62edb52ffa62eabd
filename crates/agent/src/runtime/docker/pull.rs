//! Pulling an image through the Docker Engine API (`POST /images/create`), with the registry's
//! credentials in `X-Registry-Auth` when the task (or the host's Docker config) gives some.
//!
//! The daemon refuses some pulls up front (an HTTP error whose message is the registry's:
//! `unauthorized: authentication required`, `manifest for X not found: ...`, `pull access
//! denied for X, ...`) and reports others inside the progress stream (`errorDetail`); either
//! message is passed on as it came, since it becomes the task's `CannotPullContainerError`.
//! Progress is logged every [`PROGRESS_EVERY`] per image (layers complete of layers seen, bytes
//! downloaded), so a slow pull is visible in the agent's log. Passwords never reach a log: the
//! credentials are only handed to bollard.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use super::{split_reference, DockerRuntime};
use crate::registry_auth::server_address;
use crate::runtime::{RegistryAuth, RuntimeError, RuntimeResult};

/// How often a running pull's progress is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where each layer of a pull is, from the stream's per-layer `status` lines.
#[derive(Debug, Default)]
pub(super) struct PullProgress {
    /// Layer id to (done, bytes downloaded so far, bytes in all).
    layers: BTreeMap<String, (bool, u64, u64)>,
}

impl PullProgress {
    /// Takes one stream item in.
    pub(super) fn update(&mut self, info: &CreateImageInfo) {
        let (Some(id), Some(status)) = (&info.id, &info.status) else { return };
        // Lines about the tag ("Pulling from repo", id = tag) name no layer.
        let layer_status = [
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete",
            "Already exists",
        ];
        if !layer_status.iter().any(|s| status.starts_with(s)) {
            return;
        }
        let entry = self.layers.entry(id.clone()).or_default();
        match status.as_str() {
            "Pull complete" | "Already exists" => entry.0 = true,
            "Downloading" => {
                if let Some(d) = &info.progress_detail {
                    entry.1 = d.current.and_then(|c| u64::try_from(c).ok()).unwrap_or(entry.1);
                    entry.2 = d.total.and_then(|t| u64::try_from(t).ok()).unwrap_or(entry.2);
                }
            }
            "Download complete" => entry.1 = entry.2,
            _ => {}
        }
    }

    /// (layers done, layers seen, bytes downloaded, bytes known in all).
    pub(super) fn summary(&self) -> (usize, usize, u64, u64) {
        let done = self.layers.values().filter(|l| l.0).count();
        let (got, total) = self.layers.values().fold((0, 0), |(g, t), l| (g + l.1, t + l.2));
        (done, self.layers.len(), got, total)
    }
}

/// The message a failed pull reports: the daemon's or the registry's own words.
pub(super) fn pull_failure(e: DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        // bollard turns an `errorDetail` in the stream into this; its Display would prefix it.
        DockerError::DockerStreamError { error } => error,
        e => e.to_string(),
    }
}

fn credentials(image: &str, auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        serveraddress: Some(server_address(image)),
        ..Default::default()
    }
}

impl DockerRuntime {
    /// Pulls `image` from its registry, bounded by the pull timeout.
    pub(super) async fn pull_from_registry(&self, image: &str, auth: Option<&RegistryAuth>) -> RuntimeResult<()> {
        let (repo, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::default().from_image(repo).tag(tag).build();
        let started = Instant::now();
        tracing::info!(image, with_credentials = auth.is_some(), "pulling image");
        let pull = async {
            let mut stream = self.docker.create_image(Some(options), None, auth.map(|a| credentials(image, a)));
            let mut progress = PullProgress::default();
            let mut last_log = Instant::now();
            while let Some(item) = stream.next().await {
                let info = item.map_err(pull_failure)?;
                if let Some(detail) = &info.error_detail {
                    // bollard catches these with a message; one without still failed.
                    return Err(detail.message.clone().unwrap_or_else(|| "pull failed".into()));
                }
                progress.update(&info);
                if last_log.elapsed() >= PROGRESS_EVERY {
                    last_log = Instant::now();
                    let (done, layers, got, total) = progress.summary();
                    tracing::info!(image, layers_done = done, layers, bytes = got, bytes_total = total, elapsed = ?started.elapsed(), "pull progress");
                }
            }
            Ok(progress.summary())
        };
        match tokio::time::timeout(self.timeouts.pull, pull).await {
            Ok(Ok((_, layers, got, _))) => {
                tracing::info!(image, layers, bytes = got, elapsed = ?started.elapsed(), "pulled image");
                Ok(())
            }
            Ok(Err(message)) => {
                tracing::info!(image, error = %message, elapsed = ?started.elapsed(), "pull failed");
                Err(RuntimeError::ImageUnavailable { image: image.to_string(), message })
            }
            Err(_) => Err(RuntimeError::Timeout { op: "pull_image", after: self.timeouts.pull }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn line(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            ..Default::default()
        }
    }

    #[test]
    fn progress_counts_layers_and_bytes() {
        let mut p = PullProgress::default();
        p.update(&line("v1", "Pulling from me/app", None, None));
        p.update(&line("aaa", "Pulling fs layer", None, None));
        p.update(&line("bbb", "Already exists", None, None));
        p.update(&line("aaa", "Downloading", Some(40), Some(100)));
        assert_eq!(p.summary(), (1, 2, 40, 100));
        p.update(&line("aaa", "Download complete", None, None));
        p.update(&line("aaa", "Pull complete", None, None));
        assert_eq!(p.summary(), (2, 2, 100, 100));
    }

    #[test]
    fn failures_keep_the_registry_words() {
        let words = "unauthorized: authentication required";
        let server = DockerError::DockerResponseServerError { status_code: 500, message: words.into() };
        assert_eq!(pull_failure(server), words);
        let stream = DockerError::DockerStreamError { error: words.into() };
        assert_eq!(pull_failure(stream), words);
    }

    #[test]
    fn credentials_name_the_image_registry() {
        let auth = RegistryAuth { username: "u".into(), password: "p".into() };
        let c = credentials("127.0.0.1:5000/me/app:v1", &auth);
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("u"), Some("p")));
        assert_eq!(credentials("me/app", &auth).serveraddress.as_deref(), Some("https://index.docker.io/v1/"));
    }
}
