//! Flotilla's local images. No container registry is reachable (design §9), so every test,
//! benchmark and the `flotilla up` demo builds the images its tasks run, through the Docker Engine
//! API, with this one helper. There are two, both `FROM scratch` around one static program,
//! `flotilla-workload` (src/bin/flotilla-workload), whose subcommands give tasks something to do
//! (serve HTTP, exit with a code, log, trap or ignore SIGTERM, fail health checks):
//! [`WORKLOAD_IMAGE`], with `ENTRYPOINT ["/flotilla-workload"]` and `CMD ["serve", "8080"]`, and
//! [`PAUSE_IMAGE`], which the agent runs to hold each awsvpc task's network namespace.
//!
//! The build script compiles the workload statically and this library embeds it, so whatever links
//! flotilla-images can build the images with no cargo or source tree around (see build.rs). Images
//! go through the engine's `/build` endpoint with an in-memory tar context rather than an imported
//! rootfs: the Dockerfile sets ENTRYPOINT, CMD and EXPOSE in the engine's own terms, and the
//! legacy builder's cache makes identical builds (say, two test processes racing) converge on one
//! image ID. An image is rebuilt only when the one under the tag lacks the current fingerprint
//! label (a hash of the binary and the image layout), so stale images never linger after the
//! workload changes. Neighbours: the agent (crates/agent) shares [`connect`] and runs these images;
//! the api and bench crates' end-to-end tests and the `flotilla` binary call [`ensure_image`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_images::ImageError> {
//! let docker = flotilla_images::connect().await?;
//! let image = flotilla_images::ensure_image(&docker, flotilla_images::WORKLOAD_IMAGE).await?;
//! // A task definition then names `image.tag`, with a `command` such as ["serve", "80"],
//! // ["exit", "3", "--after", "1"] or ["log", "5", "then", "sleep", "inf"].
//! # let _ = image; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod context;
pub mod registry;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptions};
use bollard::{ClientVersion, Docker};
use futures::StreamExt;

/// The general-purpose test image: `serve 8080` unless a task's `command` says otherwise.
pub const WORKLOAD_IMAGE: &str = "flotilla/workload:latest";
/// The image that holds an awsvpc task's network namespace: sleeps, exits 0 on SIGTERM.
pub const PAUSE_IMAGE: &str = "flotilla/pause:latest";
/// Where the workload binary sits inside both images.
pub const WORKLOAD_PATH: &str = "/flotilla-workload";
/// The port the workload image serves on by default (and EXPOSEs).
pub const WORKLOAD_PORT: u16 = 8080;
/// The image label holding the fingerprint that [`ensure`] compares.
pub const FINGERPRINT_LABEL: &str = "io.flotilla.image.fingerprint";
/// The image label naming the [`ImageKind`] (`workload` or `pause`).
pub const KIND_LABEL: &str = "io.flotilla.image.kind";
/// The Engine API version [`connect`] speaks: the engine here (20.10) knows no newer one, and every
/// later engine still accepts it. bollard would otherwise ask for its own newest and be refused.
pub const DOCKER_API_VERSION: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };
/// The engine socket used when `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long [`connect`] waits for the engine to answer a ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one image inspection may take.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one image build may take; a build is a second or two, but the machine may be busy.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// The static workload executable, as embedded by the build script (empty off Linux).
static WORKLOAD_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flotilla-workload"));

/// Which of the two images a tag holds; they differ only in ENTRYPOINT/CMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// `ENTRYPOINT ["/flotilla-workload"]`, `CMD ["serve", "8080"]`.
    Workload,
    /// `ENTRYPOINT ["/flotilla-workload", "pause"]`.
    Pause,
}

impl ImageKind {
    /// The kind a tag stands for: the pause repository (any tag) is [`ImageKind::Pause`], anything
    /// else is a workload image, so tests may build `flotilla/workload:v2` and the like.
    pub fn for_tag(tag: &str) -> Self {
        let pause_repo = PAUSE_IMAGE.rsplit_once(':').map_or(PAUSE_IMAGE, |(repo, _)| repo);
        let repo = match tag.rsplit_once(':') {
            Some((repo, tag_part)) if !tag_part.contains('/') => repo,
            _ => tag,
        };
        if repo == pause_repo {
            ImageKind::Pause
        } else {
            ImageKind::Workload
        }
    }

    /// The value of [`KIND_LABEL`].
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Workload => "workload",
            ImageKind::Pause => "pause",
        }
    }
}

/// What to build under which tag. Extra labels change the fingerprint and so the image ID, which
/// lets a test make two genuinely different images (for a deployment from one to the other).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub tag: String,
    pub kind: ImageKind,
    pub labels: BTreeMap<String, String>,
    /// Rebuild without the engine's cache even when a current image is there.
    pub force: bool,
}

impl ImageSpec {
    /// A spec for `tag`, its kind read from the tag as in [`ImageKind::for_tag`].
    pub fn for_tag(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        let kind = ImageKind::for_tag(&tag);
        ImageSpec { tag, kind, labels: BTreeMap::new(), force: false }
    }

    pub fn workload(tag: impl Into<String>) -> Self {
        ImageSpec { kind: ImageKind::Workload, ..Self::for_tag(tag) }
    }

    pub fn pause(tag: impl Into<String>) -> Self {
        ImageSpec { kind: ImageKind::Pause, ..Self::for_tag(tag) }
    }

    /// Adds an image label (part of the fingerprint).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Rebuilds even if a current image exists, bypassing the engine's build cache.
    pub fn forced(mut self) -> Self {
        self.force = true;
        self
    }

    /// The fingerprint an image built from this spec carries in [`FINGERPRINT_LABEL`].
    pub fn fingerprint(&self) -> Result<String, ImageError> {
        Ok(context::fingerprint(self.kind, &self.labels, workload_binary_checked()?))
    }
}

/// An image that is present and current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub tag: String,
    /// The engine's image ID (`sha256:...`).
    pub id: String,
    pub kind: ImageKind,
    pub fingerprint: String,
    /// Whether this call built it (false: it was already there and current).
    pub built: bool,
    /// Size in bytes as the engine reports it.
    pub size: Option<i64>,
}

/// Everything that can go wrong getting an image; each variant names the tag and the call.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot reach the Docker Engine at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: DockerError,
    },
    #[error("no Docker Engine answered at {endpoint} within {timeout:?}")]
    ConnectTimeout { endpoint: String, timeout: Duration },
    #[error("this build of flotilla-images carries no workload binary ({reason}); see crates/images/build.rs")]
    NoWorkloadBinary { reason: &'static str },
    #[error("cannot assemble the build context for {tag}: {source}")]
    Context {
        tag: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Docker Engine call `{call}` for {tag} failed: {source}")]
    Engine {
        call: &'static str,
        tag: String,
        #[source]
        source: DockerError,
    },
    #[error("building {tag} failed: {message}")]
    Build { tag: String, message: String },
    #[error("Docker Engine call `{call}` for {tag} did not finish within {timeout:?}")]
    Timeout { call: &'static str, tag: String, timeout: Duration },
    #[error("built {tag}, but the engine does not show it with fingerprint {fingerprint}")]
    NotCurrentAfterBuild { tag: String, fingerprint: String },
    #[error("cannot start a runtime for the blocking image helper: {source}")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
}

/// The static workload executable embedded in this library, for callers that want to run it
/// some other way (say, directly on the host).
pub fn workload_binary() -> &'static [u8] {
    WORKLOAD_BINARY
}

fn workload_binary_checked() -> Result<&'static [u8], ImageError> {
    if WORKLOAD_BINARY.is_empty() {
        return Err(ImageError::NoWorkloadBinary { reason: "the build target is not Linux" });
    }
    Ok(WORKLOAD_BINARY)
}

/// Connects to the engine named by `DOCKER_HOST` (`unix://` or `tcp://`), else the default socket,
/// speaking [`DOCKER_API_VERSION`], and pings it so a missing daemon shows here and not later.
pub async fn connect() -> Result<Docker, ImageError> {
    let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| format!("unix://{DEFAULT_DOCKER_SOCKET}"));
    // bollard's own per-request timeout, in seconds; builds are bounded by BUILD_TIMEOUT instead.
    let request_timeout = BUILD_TIMEOUT.as_secs();
    let docker = if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(&endpoint, request_timeout, &DOCKER_API_VERSION)
    } else {
        Docker::connect_with_unix(&endpoint, request_timeout, &DOCKER_API_VERSION)
    }
    .map_err(|source| ImageError::Connect { endpoint: endpoint.clone(), source })?;
    match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(source)) => Err(ImageError::Connect { endpoint, source }),
        Err(_) => Err(ImageError::ConnectTimeout { endpoint, timeout: PING_TIMEOUT }),
    }
}

/// Makes sure `tag` names a current image of the kind [`ImageKind::for_tag`] reads from it,
/// building it only if it is absent or stale. The usual calls are with [`WORKLOAD_IMAGE`] and
/// [`PAUSE_IMAGE`].
pub async fn ensure_image(docker: &Docker, tag: &str) -> Result<ImageInfo, ImageError> {
    ensure(docker, &ImageSpec::for_tag(tag)).await
}

/// Both standard images, workload first.
pub async fn ensure_standard_images(docker: &Docker) -> Result<[ImageInfo; 2], ImageError> {
    Ok([ensure_image(docker, WORKLOAD_IMAGE).await?, ensure_image(docker, PAUSE_IMAGE).await?])
}

/// Makes sure `spec.tag` names an image built from `spec`; see the crate docs for when it builds.
pub async fn ensure(docker: &Docker, spec: &ImageSpec) -> Result<ImageInfo, ImageError> {
    let binary = workload_binary_checked()?;
    let fingerprint = spec.fingerprint()?;
    // Within one process, one build at a time: parallel tests would otherwise all build the
    // same image at once. Across processes the build cache makes racing builds agree.
    static BUILDS: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    let _one_at_a_time = BUILDS.get_or_init(|| tokio::sync::Mutex::new(())).lock().await;

    let previous = match inspect(docker, &spec.tag, &fingerprint).await? {
        Found::Current(info) if !spec.force => return Ok(info.into_info(spec, fingerprint)),
        Found::Current(info) => Some(info.id),
        Found::Stale { id } => Some(id),
        Found::Absent => None,
    };
    let started = Instant::now();
    build(docker, spec, &fingerprint, binary).await?;
    let Found::Current(image) = inspect(docker, &spec.tag, &fingerprint).await? else {
        return Err(ImageError::NotCurrentAfterBuild { tag: spec.tag.clone(), fingerprint });
    };
    tracing::info!(tag = %spec.tag, id = %image.id, elapsed_ms = started.elapsed().as_millis() as u64, "built image");
    if let Some(old) = previous.filter(|old| *old != image.id) {
        remove_if_unused(docker, &old).await;
    }
    let mut info = image.into_info(spec, fingerprint);
    info.built = true;
    Ok(info)
}

/// What [`inspect`] found under a tag.
enum Found {
    Absent,
    /// An image whose fingerprint label is missing or different.
    Stale {
        id: String,
    },
    Current(Present),
}

struct Present {
    id: String,
    size: Option<i64>,
}

impl Present {
    fn into_info(self, spec: &ImageSpec, fingerprint: String) -> ImageInfo {
        ImageInfo { tag: spec.tag.clone(), id: self.id, kind: spec.kind, fingerprint, built: false, size: self.size }
    }
}

async fn inspect(docker: &Docker, tag: &str, fingerprint: &str) -> Result<Found, ImageError> {
    let call = "inspect image";
    let result = tokio::time::timeout(INSPECT_TIMEOUT, docker.inspect_image(tag))
        .await
        .map_err(|_| ImageError::Timeout { call, tag: tag.to_string(), timeout: INSPECT_TIMEOUT })?;
    let image = match result {
        Ok(image) => image,
        Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => return Ok(Found::Absent),
        Err(source) => return Err(ImageError::Engine { call, tag: tag.to_string(), source }),
    };
    let id = image.id.unwrap_or_default();
    let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    if labels.get(FINGERPRINT_LABEL).map(String::as_str) != Some(fingerprint) {
        return Ok(Found::Stale { id });
    }
    Ok(Found::Current(Present { id, size: image.size }))
}

/// Deletes an image that a rebuild left without its tag, so upgrades do not pile up dangling
/// images. Without `force` the engine refuses if a container still uses it, and that refusal is
/// the intended outcome, so any error is only traced. An image that still has a tag is kept:
/// deleting by ID would take a lone remaining tag with it (the build cache often gives a test
/// tag and a standard tag one image, and the standard tag must survive the test's rebuild).
async fn remove_if_unused(docker: &Docker, id: &str) {
    match tokio::time::timeout(INSPECT_TIMEOUT, docker.inspect_image(id)).await {
        Ok(Ok(image)) if image.repo_tags.as_ref().is_some_and(|t| !t.is_empty()) => {
            tracing::debug!(id, "kept the image a rebuild replaced: another tag holds it");
            return;
        }
        Ok(Ok(_)) => {}
        _ => return,
    }
    let removal = docker.remove_image(id, None::<RemoveImageOptions>, None);
    match tokio::time::timeout(INSPECT_TIMEOUT, removal).await {
        Ok(Ok(_)) => tracing::debug!(id, "removed the image a rebuild replaced"),
        Ok(Err(e)) => tracing::debug!(id, error = %e, "kept the image a rebuild replaced"),
        Err(_) => tracing::debug!(id, "removing the image a rebuild replaced timed out"),
    }
}

/// Sends the context to `/build` and reads the progress stream to its end, turning the first
/// error message into [`ImageError::Build`].
async fn build(docker: &Docker, spec: &ImageSpec, fingerprint: &str, binary: &[u8]) -> Result<(), ImageError> {
    let tar =
        context::tar(spec.kind, binary).map_err(|source| ImageError::Context { tag: spec.tag.clone(), source })?;
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(FINGERPRINT_LABEL.into(), fingerprint.into());
    labels.insert(KIND_LABEL.into(), spec.kind.as_str().into());
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&spec.tag)
        .labels(&labels)
        .nocache(spec.force)
        .rm(true)
        .forcerm(true)
        .build();
    let tag = spec.tag.clone();
    let run = async {
        let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
        // The last lines of builder output, to explain a failure.
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_default();
                        return Err(ImageError::Build { tag: tag.clone(), message });
                    }
                    if let Some(line) = info.stream.filter(|l| !l.trim().is_empty()) {
                        tail.push(line.trim_end().to_string());
                        if tail.len() > 10 {
                            tail.remove(0);
                        }
                    }
                }
                Err(DockerError::DockerStreamError { error }) => {
                    let message = format!("{error}\n{}", tail.join("\n"));
                    return Err(ImageError::Build { tag: tag.clone(), message });
                }
                Err(source) => return Err(ImageError::Engine { call: "build image", tag: tag.clone(), source }),
            }
        }
        Ok(())
    };
    tokio::time::timeout(BUILD_TIMEOUT, run).await.map_err(|_| ImageError::Timeout {
        call: "build image",
        tag: spec.tag.clone(),
        timeout: BUILD_TIMEOUT,
    })?
}

/// [`connect`] and [`ensure_image`] for callers without an async runtime (a bench's `main`, a
/// synchronous test). It runs on a thread of its own with a private runtime, so it is also safe
/// to call from inside a tokio runtime, where a nested `block_on` would panic.
pub fn ensure_image_blocking(tag: &str) -> Result<ImageInfo, ImageError> {
    let tag = tag.to_string();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| ImageError::Runtime { source })?;
                runtime.block_on(async {
                    let docker = connect().await?;
                    ensure_image(&docker, &tag).await
                })
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_read_from_the_repository() {
        assert_eq!(ImageKind::for_tag(PAUSE_IMAGE), ImageKind::Pause);
        assert_eq!(ImageKind::for_tag("flotilla/pause"), ImageKind::Pause);
        assert_eq!(ImageKind::for_tag("flotilla/pause:v2"), ImageKind::Pause);
        assert_eq!(ImageKind::for_tag(WORKLOAD_IMAGE), ImageKind::Workload);
        assert_eq!(ImageKind::for_tag("localhost:5000/flotilla/pause"), ImageKind::Workload);
        assert_eq!(ImageKind::for_tag("anything/else:tag"), ImageKind::Workload);
    }

    #[test]
    fn embedded_workload_is_a_static_elf() {
        let binary = workload_binary();
        assert!(binary.starts_with(b"\x7fELF"), "build.rs embeds an ELF executable");
        assert!(binary.len() > 100_000, "a static binary carries its libc");
    }

    #[test]
    fn labels_change_the_fingerprint() {
        let plain = ImageSpec::workload("t:1").fingerprint().unwrap();
        let variant = ImageSpec::workload("t:1").label("variant", "2").fingerprint().unwrap();
        assert_ne!(plain, variant);
        assert_ne!(plain, ImageSpec::pause("t:1").fingerprint().unwrap());
        assert_eq!(plain, ImageSpec::workload("other:tag").fingerprint().unwrap(), "the tag is not content");
    }
}
