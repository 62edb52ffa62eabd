//! The task definition's `pidMode` and `ipcMode`, as Docker takes them: `host` puts every
//! container of the task in the host's PID or IPC namespace, and ipc `none` gives each a private
//! one without /dev/shm. The control plane refuses `task` (a namespace the task's containers
//! share, which the agent does not build), and a Fargate task may not ask for `host` (the policy
//! refuses it), so nothing else reaches here.

use flotilla_model::TaskDefinition;

use crate::runtime::ContainerSpec;

/// Sets the spec's PID and IPC modes from the definition's.
pub fn apply(spec: &mut ContainerSpec, def: &TaskDefinition) {
    spec.pid_mode = def.pid_mode.clone().filter(|m| m == "host");
    spec.ipc_mode = def.ipc_mode.clone().filter(|m| m == "host" || m == "none");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_none_reach_docker_and_nothing_else_does() {
        let mut spec = ContainerSpec::default();
        let def = |pid: Option<&str>, ipc: Option<&str>| TaskDefinition {
            pid_mode: pid.map(String::from),
            ipc_mode: ipc.map(String::from),
            ..Default::default()
        };
        apply(&mut spec, &def(Some("host"), Some("none")));
        assert_eq!((spec.pid_mode.as_deref(), spec.ipc_mode.as_deref()), (Some("host"), Some("none")));
        apply(&mut spec, &def(Some("task"), Some("task")));
        assert_eq!((spec.pid_mode.as_deref(), spec.ipc_mode.as_deref()), (None, None));
        apply(&mut spec, &def(None, Some("host")));
        assert_eq!((spec.pid_mode.as_deref(), spec.ipc_mode.as_deref()), (None, Some("host")));
    }
}
