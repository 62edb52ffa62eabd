//! Task-level cpu and memory limits: one cgroup per task that all of its containers (and an
//! awsvpc pause container) live under, as the ECS agent does.
//!
//! A task definition's `cpu` and `memory` bound the task as a whole, not each container: three
//! containers of a "256" / "512" task share a quarter of a core and 512 MiB between them. Docker
//! cannot express that per container, so, before any container exists, the agent creates a
//! per-task cgroup with the limits (a CFS quota of `units * 100000 / 1024` µs per 100 ms period,
//! and a memory limit) and passes it as every container's `HostConfig.CgroupParent`; the
//! containers' own cpu shares, memory and memoryReservation then apply inside it. The layout
//! follows Docker's cgroup driver and version, read from `docker info`:
//!
//! - cgroupfs, v1: `<root>/cpu/flotilla/<task>` (cpu.cfs_quota_us) and `<root>/memory/flotilla/<task>`
//!   (memory.limit_in_bytes); the parent is `/flotilla/<task>`. runc creates the task directory in
//!   the other hierarchies (cpuset, pids, ...) itself, so removal visits every hierarchy.
//! - cgroupfs, v2: `<root>/flotilla/<task>` with cpu.max and memory.max, after enabling the cpu and
//!   memory controllers in the parents' `cgroup.subtree_control`.
//! - systemd (v1 or v2): a transient slice `flotilla-<task>.slice` with CPUQuota and MemoryMax (or
//!   MemoryLimit on v1), started through systemd's D-Bus API with `busctl`, because systemd owns
//!   that tree and would overwrite limits written behind its back.
//!
//! Removal is idempotent (what is already gone is fine) and waits briefly for the kernel to let go
//! of a cgroup whose last process has just exited. When the cgroup cannot be made (not root, a
//! read-only `/sys/fs/cgroup`, no systemd bus) the engine caps each container instead: see
//! [`Confinement::PerContainer`].

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use flotilla_model::{Task, TaskDefinition};
use serde::{Deserialize, Serialize};

/// Where the cgroup filesystem is mounted on Linux.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The directory (cgroupfs) or slice prefix (systemd) every task cgroup lives under.
pub const PARENT: &str = "flotilla";
/// The CFS period of task cpu limits, in microseconds (the kernel's and Docker's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel accepts (1 ms).
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// The smallest NanoCpus Docker accepts (0.01 cpu).
pub const MIN_NANO_CPUS: i64 = 10_000_000;
const MIB: u64 = 1024 * 1024;

/// A task's own size: the task definition's (or the task overrides') `cpu` and `memory`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_units: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
}

impl TaskLimits {
    /// The task-level limits of a task: the overrides' value, else the task's resolved one, else
    /// the definition's. Only a task-level size is a limit: without one in the definition or the
    /// overrides, the control plane still fills the task's `cpu`/`memory` with the sum of its
    /// containers' reservations, which must not become a cap (ECS leaves such tasks unbounded).
    pub fn resolve(task: &Task, def: &TaskDefinition) -> TaskLimits {
        let overrides = task.overrides.as_ref();
        let pick = |over: Option<&String>, task: Option<&String>, def: Option<&String>| {
            over.or_else(|| def.and(task)).or(def).cloned()
        };
        let cpu = pick(overrides.and_then(|o| o.cpu.as_ref()), task.cpu.as_ref(), def.cpu.as_ref());
        let memory = pick(overrides.and_then(|o| o.memory.as_ref()), task.memory.as_ref(), def.memory.as_ref());
        TaskLimits {
            cpu_units: cpu.as_deref().and_then(flotilla_model::rules::parse_task_cpu).filter(|u| *u > 0),
            memory_mib: memory.as_deref().and_then(flotilla_model::rules::parse_task_memory).filter(|m| *m > 0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cpu_units.is_none() && self.memory_mib.is_none()
    }

    /// The CFS quota per [`CPU_PERIOD_US`]: `units / 1024` of a core, at least the kernel minimum.
    pub fn cfs_quota_us(&self) -> Option<u64> {
        self.cpu_units.map(|u| (u64::from(u) * CPU_PERIOD_US / 1024).max(MIN_CPU_QUOTA_US))
    }

    /// The same share of cpu as Docker's NanoCpus (for the per-container fallback).
    pub fn nano_cpus(&self) -> Option<i64> {
        self.cpu_units.map(|u| (i64::from(u) * 1_000_000_000 / 1024).max(MIN_NANO_CPUS))
    }

    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_mib.map(|m| u64::from(m) * MIB)
    }
}

/// How a task's containers are held to the task's limits; decided once, when the task is
/// provisioned, and kept in the task's record so the decision survives an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Confinement {
    /// The task has no task-level limits.
    Unbounded,
    /// Every container goes under this cgroup parent, which carries the limits.
    Cgroup { parent: String },
    /// No task cgroup could be made: each container is capped on its own (the task memory as
    /// the hard limit of a container without one, the task cpu as its NanoCpus). That bounds
    /// any single container by the task's size, though not their sum.
    PerContainer,
}

/// Docker's cgroup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

/// The cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// How Docker lays out cgroups on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub driver: Driver,
    pub version: Version,
}

impl Layout {
    /// From `docker info`'s CgroupDriver and CgroupVersion. Daemons older than 20.10 report no
    /// version, and they only knew v1; the driver defaults to Docker's default, cgroupfs.
    pub fn from_docker(driver: Option<&str>, version: Option<&str>) -> Layout {
        Layout {
            driver: if driver == Some("systemd") { Driver::Systemd } else { Driver::Cgroupfs },
            version: if version == Some("2") { Version::V2 } else { Version::V1 },
        }
    }

    /// The `HostConfig.CgroupParent` of a task's containers.
    pub fn parent(&self, task_id: &str) -> String {
        match self.driver {
            Driver::Cgroupfs => format!("/{PARENT}/{}", path_safe(task_id)),
            Driver::Systemd => slice_name(task_id),
        }
    }
}

/// A task ID as one path element: no separators, no dots (so never "..").
fn path_safe(task_id: &str) -> String {
    task_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The task's systemd slice. A dash in a slice name means nesting (`a-b.slice` lives in
/// `a.slice`), so the task ID keeps none: the slice sits directly in `flotilla.slice`.
fn slice_name(task_id: &str) -> String {
    format!("{PARENT}-{}.slice", path_safe(task_id).replace('-', "_"))
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is still in use")]
    Busy { path: PathBuf },
    #[error("no cgroup hierarchy under {root}")]
    NoHierarchy { root: PathBuf },
    #[error("systemd: {message}")]
    Systemd { message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// Makes and removes per-task cgroups for one [`Layout`] under one cgroup filesystem root.
/// Blocking (file writes, and `busctl` for systemd): call it off the async workers.
#[derive(Debug, Clone)]
pub struct TaskCgroups {
    root: PathBuf,
    layout: Layout,
}

impl TaskCgroups {
    pub fn new(root: impl Into<PathBuf>, layout: Layout) -> TaskCgroups {
        TaskCgroups { root: root.into(), layout }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Creates the task's cgroup with its limits, or updates it if it exists; returns the cgroup
    /// parent for the task's containers.
    pub fn create(&self, task_id: &str, limits: &TaskLimits) -> Result<String, CgroupError> {
        let made = match (self.layout.driver, self.layout.version) {
            (Driver::Cgroupfs, Version::V1) => self.create_v1(task_id, limits),
            (Driver::Cgroupfs, Version::V2) => self.create_v2(task_id, limits),
            (Driver::Systemd, version) => systemd::start_slice(&slice_name(task_id), limits, version),
        };
        if let Err(e) = made {
            // The task will run without this cgroup, so nothing would remove a half-made one.
            let _ = self.remove(task_id);
            return Err(e);
        }
        Ok(self.layout.parent(task_id))
    }

    /// The directories that hold the task's limits, for callers that want to read them back.
    pub fn limit_dirs(&self, task_id: &str) -> Vec<PathBuf> {
        let id = path_safe(task_id);
        match (self.layout.driver, self.layout.version) {
            (Driver::Cgroupfs, Version::V1) => {
                ["cpu", "memory"].iter().map(|c| self.root.join(c).join(PARENT).join(&id)).collect()
            }
            (Driver::Cgroupfs, Version::V2) => vec![self.root.join(PARENT).join(&id)],
            (Driver::Systemd, Version::V1) => ["cpu", "memory"]
                .iter()
                .map(|c| self.root.join(c).join(format!("{PARENT}.slice")).join(slice_name(task_id)))
                .collect(),
            (Driver::Systemd, Version::V2) => {
                vec![self.root.join(format!("{PARENT}.slice")).join(slice_name(task_id))]
            }
        }
    }

    fn create_v1(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        let id = path_safe(task_id);
        // Only below a mounted hierarchy: never invent one (as root, create_dir_all would).
        for controller in ["cpu", "memory"] {
            if !self.root.join(controller).is_dir() {
                return Err(CgroupError::NoHierarchy { root: self.root.join(controller) });
            }
        }
        let cpu = self.root.join("cpu").join(PARENT).join(&id);
        std::fs::create_dir_all(&cpu).map_err(io(&cpu))?;
        if let Some(quota) = limits.cfs_quota_us() {
            write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        let memory = self.root.join("memory").join(PARENT).join(&id);
        std::fs::create_dir_all(&memory).map_err(io(&memory))?;
        if let Some(bytes) = limits.memory_bytes() {
            write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
        }
        Ok(())
    }

    fn create_v2(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        // A v2 controller is usable in a cgroup only if every ancestor delegates it.
        let parent = self.root.join(PARENT);
        enable_controllers(&self.root)?;
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        enable_controllers(&parent)?;
        let dir = parent.join(path_safe(task_id));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(quota) = limits.cfs_quota_us() {
            write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        if let Some(bytes) = limits.memory_bytes() {
            write(&dir.join("memory.max"), &bytes.to_string())?;
        }
        Ok(())
    }

    /// Removes the task's cgroup. Idempotent. `Busy` means a process (or a container's own
    /// cgroup, which runc removes as the container exits) is still inside: try again shortly.
    pub fn remove(&self, task_id: &str) -> Result<(), CgroupError> {
        let id = path_safe(task_id);
        match (self.layout.driver, self.layout.version) {
            (Driver::Cgroupfs, Version::V1) => {
                // runc made the task's directory in every hierarchy it uses, not only cpu and
                // memory, so visit them all. Joined hierarchies ("cpu,cpuacct") also appear as
                // symlinks ("cpu"); only the real directories are visited.
                let entries = std::fs::read_dir(&self.root).map_err(io(&self.root))?;
                let mut busy = None;
                for entry in entries.flatten() {
                    if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    match rmdir(&entry.path().join(PARENT).join(&id)) {
                        Ok(()) => {}
                        Err(e @ CgroupError::Busy { .. }) => busy = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                busy.map_or(Ok(()), Err)
            }
            (Driver::Cgroupfs, Version::V2) => rmdir(&self.root.join(PARENT).join(id)),
            (Driver::Systemd, _) => systemd::stop_slice(&slice_name(task_id)),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io(path))
}

fn rmdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        // EBUSY: processes or child cgroups remain; ENOTEMPTY is how a plain directory says it.
        Err(e) if e.raw_os_error() == Some(16) || e.kind() == ErrorKind::DirectoryNotEmpty => {
            Err(CgroupError::Busy { path: path.to_path_buf() })
        }
        Err(e) => Err(CgroupError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Delegates the cpu and memory controllers to the children of `dir` (cgroup v2), writing only
/// what is missing: a write that changes nothing can still fail on a busy hierarchy.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&control).map_err(io(&control))?;
    let missing: Vec<String> = ["cpu", "memory"]
        .iter()
        .filter(|c| !current.split_whitespace().any(|have| have == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&control, &missing.join(" "))
}

/// Transient slices through systemd's D-Bus API, driven with `busctl` (part of systemd, so present
/// wherever the systemd driver is), to avoid a D-Bus client dependency.
mod systemd {
    use std::process::Command;

    use super::{CgroupError, TaskLimits, Version, CPU_PERIOD_US};

    const DEST: [&str; 3] =
        ["org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"];

    /// The `busctl` arguments that start the slice with the task's limits.
    pub(super) fn start_args(slice: &str, limits: &TaskLimits, version: Version) -> Vec<String> {
        let mut props: Vec<[String; 3]> = vec![["Description".into(), "s".into(), format!("Flotilla task {slice}")]];
        if let Some(quota) = limits.cfs_quota_us() {
            // CPUQuota is per second of wall time.
            props.push(["CPUQuotaPerSecUSec".into(), "t".into(), (quota * 1_000_000 / CPU_PERIOD_US).to_string()]);
        }
        if let Some(bytes) = limits.memory_bytes() {
            // MemoryMax is the v2 name; systemd honours MemoryLimit on v1 hierarchies.
            let name = if version == Version::V2 { "MemoryMax" } else { "MemoryLimit" };
            props.push([name.into(), "t".into(), bytes.to_string()]);
        }
        let mut args: Vec<String> = ["call"].iter().chain(DEST.iter()).map(|s| s.to_string()).collect();
        args.extend(["StartTransientUnit".into(), "ssa(sv)a(sa(sv))".into(), slice.into(), "replace".into()]);
        args.push(props.len().to_string());
        args.extend(props.into_iter().flatten());
        args.push("0".into());
        args
    }

    pub(super) fn start_slice(slice: &str, limits: &TaskLimits, version: Version) -> Result<(), CgroupError> {
        match busctl(&start_args(slice, limits, version)) {
            Ok(()) => Ok(()),
            // Started by an earlier attempt: set the limits on the running unit instead.
            Err(m) if m.contains("UnitExists") || m.contains("already exists") => {
                let mut args: Vec<String> = ["call"].iter().chain(DEST.iter()).map(|s| s.to_string()).collect();
                let start = start_args(slice, limits, version);
                // The property list of StartTransientUnit, minus the trailing aux-unit count.
                let props = &start[8..start.len() - 1];
                args.extend(["SetUnitProperties".into(), "sba(sv)".into(), slice.into(), "true".into()]);
                args.extend(props.iter().cloned());
                busctl(&args).map_err(|message| CgroupError::Systemd { message })
            }
            Err(message) => Err(CgroupError::Systemd { message }),
        }
    }

    pub(super) fn stop_slice(slice: &str) -> Result<(), CgroupError> {
        let mut args: Vec<String> = ["call"].iter().chain(DEST.iter()).map(|s| s.to_string()).collect();
        args.extend(["StopUnit".into(), "ss".into(), slice.into(), "replace".into()]);
        match busctl(&args) {
            Err(m) if m.contains("NoSuchUnit") || m.contains("not loaded") => Ok(()),
            r => r.map_err(|message| CgroupError::Systemd { message }),
        }
    }

    fn busctl(args: &[String]) -> Result<(), String> {
        let out = Command::new("busctl").args(args).output().map_err(|e| format!("busctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_slice_is_started_with_a_quota_per_second_and_a_memory_cap() {
            let limits = TaskLimits { cpu_units: Some(256), memory_mib: Some(128) };
            let args = start_args("flotilla-abc.slice", &limits, Version::V2);
            let tail: Vec<&str> = args[4..].iter().map(String::as_str).collect();
            assert_eq!(
                tail,
                [
                    "StartTransientUnit",
                    "ssa(sv)a(sa(sv))",
                    "flotilla-abc.slice",
                    "replace",
                    "3",
                    "Description",
                    "s",
                    "Flotilla task flotilla-abc.slice",
                    "CPUQuotaPerSecUSec",
                    "t",
                    "250000",
                    "MemoryMax",
                    "t",
                    "134217728",
                    "0"
                ]
            );
            let v1 = start_args("s.slice", &TaskLimits { cpu_units: None, memory_mib: Some(1) }, Version::V1);
            assert!(v1.contains(&"MemoryLimit".to_string()) && !v1.contains(&"CPUQuotaPerSecUSec".to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::TaskOverride;

    fn limits(cpu: Option<u32>, memory: Option<u32>) -> TaskLimits {
        TaskLimits { cpu_units: cpu, memory_mib: memory }
    }

    #[test]
    fn cpu_units_become_a_cfs_quota_and_nano_cpus() {
        assert_eq!(limits(Some(256), None).cfs_quota_us(), Some(25_000));
        assert_eq!(limits(Some(1024), None).cfs_quota_us(), Some(100_000));
        assert_eq!(limits(Some(4096), None).cfs_quota_us(), Some(400_000));
        // 2 units would be 195 µs, below what the kernel accepts.
        assert_eq!(limits(Some(2), None).cfs_quota_us(), Some(MIN_CPU_QUOTA_US));
        assert_eq!(limits(Some(512), None).nano_cpus(), Some(500_000_000));
        assert_eq!(limits(Some(1), None).nano_cpus(), Some(MIN_NANO_CPUS));
        assert_eq!(limits(None, Some(128)).memory_bytes(), Some(128 << 20));
        assert_eq!(limits(None, None).cfs_quota_us(), None);
        assert!(limits(None, None).is_empty() && !limits(None, Some(1)).is_empty());
    }

    #[test]
    fn only_a_task_level_size_is_a_limit() {
        let def = TaskDefinition { cpu: Some("1 vCPU".into()), memory: Some("0.5GB".into()), ..Default::default() };
        let task = Task { cpu: Some("1024".into()), memory: Some("512".into()), ..Default::default() };
        assert_eq!(TaskLimits::resolve(&task, &def), limits(Some(1024), Some(512)));
        // Overrides win over the definition (and over a task record that did not apply them).
        let overridden = Task {
            overrides: Some(TaskOverride { cpu: Some("256".into()), memory: Some("2GB".into()), ..Default::default() }),
            ..task.clone()
        };
        assert_eq!(TaskLimits::resolve(&overridden, &def), limits(Some(256), Some(2048)));
        // No task size in the definition: the task's cpu/memory are only the containers' sum.
        assert_eq!(TaskLimits::resolve(&task, &TaskDefinition::default()), TaskLimits::default());
        // A task without resolved values still takes the definition's.
        assert_eq!(TaskLimits::resolve(&Task::default(), &def), limits(Some(1024), Some(512)));
    }

    #[test]
    fn parents_follow_the_driver() {
        let fs = Layout::from_docker(Some("cgroupfs"), Some("1"));
        assert_eq!(fs, Layout { driver: Driver::Cgroupfs, version: Version::V1 });
        assert_eq!(fs.parent("1f2e-3d"), "/flotilla/1f2e-3d");
        assert_eq!(fs.parent("../etc"), "/flotilla/___etc");
        let sd = Layout::from_docker(Some("systemd"), Some("2"));
        assert_eq!(sd, Layout { driver: Driver::Systemd, version: Version::V2 });
        assert_eq!(sd.parent("1f2e-3d"), "flotilla-1f2e_3d.slice");
        assert_eq!(Layout::from_docker(None, None), fs);
    }

    /// A fake v1 root: a few hierarchies as plain directories, plus a symlinked joined one.
    fn v1_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir(root.path().join(c)).unwrap();
        }
        std::os::unix::fs::symlink(root.path().join("cpu,cpuacct"), root.path().join("cpu")).unwrap();
        root
    }

    #[test]
    fn v1_writes_the_quota_and_the_memory_limit_and_removal_visits_every_hierarchy() {
        let root = v1_root();
        let cg = TaskCgroups::new(root.path(), Layout::from_docker(Some("cgroupfs"), Some("1")));
        let parent = cg.create("t1", &limits(Some(256), Some(128))).unwrap();
        assert_eq!(parent, "/flotilla/t1");
        let cpu = root.path().join("cpu,cpuacct/flotilla/t1");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap(), "25000");
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_period_us")).unwrap(), "100000");
        let mem = root.path().join("memory/flotilla/t1/memory.limit_in_bytes");
        assert_eq!(std::fs::read_to_string(mem).unwrap(), "134217728");
        // Creating again is an update, not an error.
        cg.create("t1", &limits(Some(512), Some(128))).unwrap();
        assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap(), "50000");
        // As runc would: the task's directory in another hierarchy too.
        std::fs::create_dir_all(root.path().join("pids/flotilla/t1")).unwrap();
        // A plain directory keeps its limit files, so empty them out the way the kernel would.
        for d in cg.limit_dirs("t1") {
            for f in std::fs::read_dir(&d).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        cg.remove("t1").unwrap();
        for c in ["cpu,cpuacct", "memory", "pids"] {
            assert!(!root.path().join(c).join("flotilla/t1").exists(), "{c}");
            assert!(root.path().join(c).join("flotilla").exists(), "{c}: the shared parent stays");
        }
        // Already gone is fine.
        cg.remove("t1").unwrap();
    }

    #[test]
    fn a_half_made_cgroup_is_taken_down_again() {
        let root = v1_root();
        let cg = TaskCgroups::new(root.path(), Layout::from_docker(Some("cgroupfs"), Some("1")));
        // The memory hierarchy refuses the limit: a directory where the file should be.
        std::fs::create_dir_all(root.path().join("memory/flotilla/t5/memory.limit_in_bytes")).unwrap();
        // No cpu limit, so the cpu directory stays empty and a plain directory can go as a cgroup would.
        assert!(cg.create("t5", &limits(None, Some(128))).is_err());
        assert!(!root.path().join("cpu,cpuacct/flotilla/t5").exists());
    }

    #[test]
    fn a_cgroup_still_in_use_is_busy() {
        let root = v1_root();
        let cg = TaskCgroups::new(root.path(), Layout::from_docker(Some("cgroupfs"), Some("1")));
        std::fs::create_dir_all(root.path().join("memory/flotilla/t2/container")).unwrap();
        assert!(matches!(cg.remove("t2"), Err(CgroupError::Busy { .. })));
    }

    #[test]
    fn v2_delegates_the_controllers_and_writes_cpu_max_and_memory_max() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory").unwrap();
        // A real cgroupfs makes this file in every new cgroup; a temporary directory needs help.
        std::fs::create_dir(root.path().join(PARENT)).unwrap();
        std::fs::write(root.path().join(PARENT).join("cgroup.subtree_control"), "").unwrap();
        let cg = TaskCgroups::new(root.path(), Layout::from_docker(Some("cgroupfs"), Some("2")));
        assert_eq!(cg.create("t3", &limits(Some(256), Some(128))).unwrap(), "/flotilla/t3");
        // Only what was missing is written: a file written in full would read "+cpu +memory".
        assert_eq!(std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(), "+cpu");
        let dir = root.path().join("flotilla/t3");
        assert_eq!(std::fs::read_to_string(dir.join("cpu.max")).unwrap(), "25000 100000");
        assert_eq!(std::fs::read_to_string(dir.join("memory.max")).unwrap(), "134217728");
        assert_eq!(cg.limit_dirs("t3"), vec![dir.clone()]);
    }

    #[test]
    fn an_unwritable_root_is_an_error_not_a_panic() {
        let cg = TaskCgroups::new("/nonexistent/cgroup", Layout::from_docker(Some("cgroupfs"), Some("1")));
        let e = cg.create("t4", &limits(Some(256), None)).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cgroup"), "{e}");
    }
}
