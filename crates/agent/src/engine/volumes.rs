//! Task volumes as lifecycle hooks: create before the containers (provisioning), mount into each
//! container (`mountPoints`, `volumesFrom`), and remove the task's own volumes at cleanup.
//!
//! The ECS volume kinds on Linux: a `host` volume with a `sourcePath` is a bind mount of that
//! host path; a volume with neither `host.sourcePath` nor a Docker configuration is scratch space
//! that lives as long as the task (a Docker volume named after the task); a
//! `dockerVolumeConfiguration` with `scope: task` (the default) is created for the task and
//! removed with it, while `scope: shared` names a volume that outlives tasks, created only if
//! `autoprovision` says so. Every hook is idempotent.

use std::collections::BTreeMap;

use flotilla_model::{ContainerDefinition, Volume};

use crate::runtime::{Runtime, RuntimeError, VolumeSpec};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VolumeError {
    #[error("container {container}: mount point refers to volume {volume}, which the task does not define")]
    UnknownVolume { container: String, volume: String },
    #[error("volume {volume}: {kind} volumes are not supported by this agent")]
    Unsupported { volume: String, kind: &'static str },
    #[error("volume {volume}: shared volume {name} does not exist and autoprovision is off")]
    SharedMissing { volume: String, name: String },
    #[error("volume {volume}: {source}")]
    Runtime {
        volume: String,
        #[source]
        source: RuntimeError,
    },
}

/// Where a task volume's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    HostPath(String),
    /// A Docker volume removed with the task.
    TaskVolume {
        name: String,
        spec: VolumeSpec,
    },
    /// A Docker volume that outlives tasks.
    Shared {
        name: String,
        spec: VolumeSpec,
        autoprovision: bool,
    },
}

/// The runtime name of a task-scoped volume. The dot keeps it apart from shared volume names.
pub fn task_volume_name(task_id: &str, volume: &str) -> String {
    format!("flotilla-{task_id}.{volume}")
}

fn source(v: &Volume, task_id: &str, labels: &BTreeMap<String, String>) -> Result<Source, VolumeError> {
    let name = v.name.clone().unwrap_or_default();
    if v.efs_volume_configuration.is_some() {
        return Err(VolumeError::Unsupported { volume: name, kind: "EFS" });
    }
    if v.fsx_windows_file_server_volume_configuration.is_some() {
        return Err(VolumeError::Unsupported { volume: name, kind: "FSx" });
    }
    if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()).filter(|p| !p.is_empty()) {
        return Ok(Source::HostPath(path));
    }
    match &v.docker_volume_configuration {
        Some(cfg) => {
            let mut all_labels = labels.clone();
            all_labels.extend(cfg.labels.clone().unwrap_or_default());
            let spec = |runtime_name: String| VolumeSpec {
                name: runtime_name,
                driver: cfg.driver.clone(),
                driver_opts: cfg.driver_opts.clone().unwrap_or_default(),
                labels: all_labels.clone(),
            };
            if cfg.scope.as_deref() == Some("shared") {
                Ok(Source::Shared {
                    name: name.clone(),
                    spec: spec(name),
                    autoprovision: cfg.autoprovision == Some(true),
                })
            } else {
                let runtime_name = task_volume_name(task_id, &name);
                Ok(Source::TaskVolume { name: runtime_name.clone(), spec: spec(runtime_name) })
            }
        }
        None => {
            let runtime_name = task_volume_name(task_id, &name);
            let spec = VolumeSpec { name: runtime_name.clone(), labels: labels.clone(), ..VolumeSpec::default() };
            Ok(Source::TaskVolume { name: runtime_name, spec })
        }
    }
}

fn runtime_err(volume: &Volume) -> impl FnOnce(RuntimeError) -> VolumeError + '_ {
    move |source| VolumeError::Runtime { volume: volume.name.clone().unwrap_or_default(), source }
}

/// Creates the task's Docker volumes. Idempotent.
pub async fn provision(
    runtime: &dyn Runtime,
    task_id: &str,
    labels: &BTreeMap<String, String>,
    volumes: &[Volume],
) -> Result<(), VolumeError> {
    for v in volumes {
        match source(v, task_id, labels)? {
            Source::HostPath(_) => {}
            Source::TaskVolume { spec, .. } => runtime.ensure_volume(&spec).await.map_err(runtime_err(v))?,
            Source::Shared { name, spec, autoprovision } => {
                if !runtime.volume_exists(&name).await.map_err(runtime_err(v))? {
                    if !autoprovision {
                        let volume = v.name.clone().unwrap_or_default();
                        return Err(VolumeError::SharedMissing { volume, name });
                    }
                    runtime.ensure_volume(&spec).await.map_err(runtime_err(v))?;
                }
            }
        }
    }
    Ok(())
}

/// The container's `mountPoints` as binds ("source:path[:ro]").
pub fn binds(
    def: &ContainerDefinition,
    volumes: &[Volume],
    task_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<String>, VolumeError> {
    def.mount_points
        .iter()
        .flatten()
        .map(|m| {
            let wanted = m.source_volume.clone().unwrap_or_default();
            let v = volumes.iter().find(|v| v.name.as_deref() == Some(wanted.as_str())).ok_or_else(|| {
                VolumeError::UnknownVolume { container: def.name.clone().unwrap_or_default(), volume: wanted.clone() }
            })?;
            let src = match source(v, task_id, labels)? {
                Source::HostPath(p) => p,
                Source::TaskVolume { name, .. } | Source::Shared { name, .. } => name,
            };
            let path = m.container_path.clone().unwrap_or_default();
            Ok(if m.read_only == Some(true) { format!("{src}:{path}:ro") } else { format!("{src}:{path}") })
        })
        .collect()
}

/// The container's `volumesFrom` with runtime names ("container[:ro]").
pub fn volumes_from(def: &ContainerDefinition, names: &BTreeMap<String, String>) -> Vec<String> {
    def.volumes_from
        .iter()
        .flatten()
        .filter_map(|vf| {
            let target = names.get(vf.source_container.as_deref()?)?;
            Some(if vf.read_only == Some(true) { format!("{target}:ro") } else { target.clone() })
        })
        .collect()
}

/// Removes the task-scoped volumes, once the task's containers are gone. Idempotent.
pub async fn remove_task_volumes(runtime: &dyn Runtime, task_id: &str, volumes: &[Volume]) -> Result<(), VolumeError> {
    let labels = BTreeMap::new();
    for v in volumes {
        if let Source::TaskVolume { name, .. } = source(v, task_id, &labels)? {
            runtime.remove_volume(&name).await.map_err(runtime_err(v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use flotilla_model::{DockerVolumeConfiguration, HostVolumeProperties, MountPoint, VolumeFrom};

    fn volumes() -> Vec<Volume> {
        vec![
            Volume {
                name: Some("host".into()),
                host: Some(HostVolumeProperties { source_path: Some("/srv/data".into()) }),
                ..Default::default()
            },
            Volume { name: Some("scratch".into()), ..Default::default() },
            Volume {
                name: Some("cache".into()),
                docker_volume_configuration: Some(DockerVolumeConfiguration {
                    scope: Some("shared".into()),
                    autoprovision: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]
    }

    #[tokio::test]
    async fn volumes_are_created_mounted_and_only_task_ones_removed() {
        let rt = FakeRuntime::new();
        let labels = BTreeMap::new();
        provision(&rt, "t1", &labels, &volumes()).await.unwrap();
        provision(&rt, "t1", &labels, &volumes()).await.unwrap();
        assert_eq!(rt.volumes(), vec!["cache", "flotilla-t1.scratch"]);
        let def = ContainerDefinition {
            name: Some("web".into()),
            mount_points: Some(vec![
                MountPoint {
                    source_volume: Some("host".into()),
                    container_path: Some("/data".into()),
                    read_only: Some(true),
                },
                MountPoint {
                    source_volume: Some("scratch".into()),
                    container_path: Some("/tmp/s".into()),
                    read_only: None,
                },
                MountPoint {
                    source_volume: Some("cache".into()),
                    container_path: Some("/cache".into()),
                    read_only: None,
                },
            ]),
            volumes_from: Some(vec![VolumeFrom { source_container: Some("side".into()), read_only: Some(true) }]),
            ..Default::default()
        };
        assert_eq!(
            binds(&def, &volumes(), "t1", &labels).unwrap(),
            vec!["/srv/data:/data:ro", "flotilla-t1.scratch:/tmp/s", "cache:/cache"]
        );
        let names = BTreeMap::from([("side".to_string(), "flotilla-t1-side".to_string())]);
        assert_eq!(volumes_from(&def, &names), vec!["flotilla-t1-side:ro"]);
        remove_task_volumes(&rt, "t1", &volumes()).await.unwrap();
        assert_eq!(rt.volumes(), vec!["cache"]);
    }

    #[tokio::test]
    async fn a_missing_shared_volume_without_autoprovision_fails() {
        let rt = FakeRuntime::new();
        let v = vec![Volume {
            name: Some("cache".into()),
            docker_volume_configuration: Some(DockerVolumeConfiguration {
                scope: Some("shared".into()),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let err = provision(&rt, "t1", &BTreeMap::new(), &v).await.unwrap_err();
        assert!(matches!(err, VolumeError::SharedMissing { .. }));
        let def = ContainerDefinition {
            name: Some("web".into()),
            mount_points: Some(vec![MountPoint { source_volume: Some("nope".into()), ..Default::default() }]),
            ..Default::default()
        };
        assert!(matches!(binds(&def, &v, "t1", &BTreeMap::new()), Err(VolumeError::UnknownVolume { .. })));
    }
}
