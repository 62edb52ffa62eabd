//! The Docker runtime's side of per-task cgroups (`crate::cgroup`): which layout to use, learned
//! once from `docker info` (cgroup driver and version) on the first task that needs it; the
//! blocking file and `busctl` work run off the async workers under a deadline; and the one
//! warning an agent gives when the host will not let it make cgroups, after which each task falls
//! back to per-container caps (the engine's part) without repeating the warning.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::OnceCell;

use super::{RuntimeError, RuntimeResult};
use crate::cgroup::{CgroupError, Layout, TaskCgroups, TaskLimits};

/// How long removal waits for the kernel to release a cgroup whose last container just exited
/// (runc removes the container's own cgroup a moment after Docker reports the exit).
const BUSY_WAIT: Duration = Duration::from_secs(10);
const BUSY_POLL: Duration = Duration::from_millis(100);

/// Per-task cgroups for one Docker daemon.
pub(super) struct DockerCgroups {
    root: PathBuf,
    cgroups: OnceCell<TaskCgroups>,
    warned: AtomicBool,
    /// Bounds each blocking step (a wedged systemd bus must not wedge a task).
    timeout: Duration,
}

impl DockerCgroups {
    pub(super) fn new(root: PathBuf, timeout: Duration) -> Arc<DockerCgroups> {
        Arc::new(DockerCgroups { root, cgroups: OnceCell::new(), warned: AtomicBool::new(false), timeout })
    }

    /// The layout, asking the daemon the first time. A failed `info` is retried next time.
    async fn cgroups(&self, docker: &Docker, info_timeout: Duration) -> RuntimeResult<TaskCgroups> {
        let cg = self
            .cgroups
            .get_or_try_init(|| async {
                let info = match tokio::time::timeout(info_timeout, docker.info()).await {
                    Ok(Ok(info)) => info,
                    Ok(Err(e)) => return Err(RuntimeError::Unavailable { op: "info", message: e.to_string() }),
                    Err(_) => return Err(RuntimeError::Timeout { op: "info", after: info_timeout }),
                };
                let driver = info.cgroup_driver.map(|d| d.to_string());
                if driver.as_deref() == Some("none") {
                    // Rootless Docker without delegated cgroups: there is nothing to nest under.
                    return Err(RuntimeError::Unsupported { op: "ensure_task_cgroup" });
                }
                let version = info.cgroup_version.map(|v| v.to_string());
                let layout = Layout::from_docker(driver.as_deref(), version.as_deref());
                tracing::info!(?layout, root = %self.root.display(), "task cgroups follow Docker's cgroup layout");
                Ok(TaskCgroups::new(self.root.clone(), layout))
            })
            .await?;
        Ok(cg.clone())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, CgroupError> + Send + 'static,
    ) -> RuntimeResult<Result<T, CgroupError>> {
        match tokio::time::timeout(self.timeout, tokio::task::spawn_blocking(f)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(join)) => Err(RuntimeError::Failed { op, message: join.to_string() }),
            Err(_) => Err(RuntimeError::Timeout { op, after: self.timeout }),
        }
    }

    pub(super) async fn ensure(
        &self,
        docker: &Docker,
        info_timeout: Duration,
        task_id: &str,
        limits: &TaskLimits,
    ) -> RuntimeResult<String> {
        let cg = self.cgroups(docker, info_timeout).await?;
        let (id, limits) = (task_id.to_string(), *limits);
        match self.blocking("ensure_task_cgroup", move || cg.create(&id, &limits)).await? {
            Ok(parent) => Ok(parent),
            Err(e) => {
                // Said once per agent: every later task meets the same host.
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "cannot create task cgroups; task-level cpu and memory limits apply to each container \
                         instead, which bounds every container but not their sum"
                    );
                }
                Err(RuntimeError::Failed { op: "ensure_task_cgroup", message: e.to_string() })
            }
        }
    }

    pub(super) async fn remove(&self, docker: &Docker, info_timeout: Duration, task_id: &str) -> RuntimeResult<()> {
        let cg = self.cgroups(docker, info_timeout).await?;
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            let (cg, id) = (cg.clone(), task_id.to_string());
            match self.blocking("remove_task_cgroup", move || cg.remove(&id)).await? {
                Ok(()) => return Ok(()),
                Err(CgroupError::Busy { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(BUSY_POLL).await
                }
                Err(e) => return Err(RuntimeError::Failed { op: "remove_task_cgroup", message: e.to_string() }),
            }
        }
    }
}
