//! A container's GPUs, as the ECS agent hands them to Docker: the control plane assigned the
//! task specific GPUs of this instance (each container's `gpuIds`, see the API's
//! `domain::launch::gpus`); the container gets exactly those through a Docker device request for
//! the `nvidia` driver with the `gpu` capability, and `NVIDIA_VISIBLE_DEVICES` names them for
//! the NVIDIA container runtime hook, which reads the variable rather than the request.

use flotilla_model::Task;

use crate::runtime::ContainerSpec;

/// The variable the NVIDIA container runtime reads to know which GPUs a container sees.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// The GPU ids the control plane assigned to container `name` of `task`; none for most.
pub fn assigned<'a>(task: &'a Task, name: &str) -> &'a [String] {
    let containers = task.containers.iter().flatten();
    let container = containers.into_iter().find(|c| c.name.as_deref() == Some(name));
    container.and_then(|c| c.gpu_ids.as_deref()).unwrap_or_default()
}

/// Gives the spec its container's assigned GPUs: the ids the runtime turns into a device request,
/// and `NVIDIA_VISIBLE_DEVICES` (replacing one the definition set, as the ECS agent does).
pub fn apply(spec: &mut ContainerSpec, task: &Task, name: &str) {
    let ids = assigned(task, name);
    if ids.is_empty() {
        return;
    }
    spec.gpus = ids.to_vec();
    let prefix = format!("{VISIBLE_DEVICES}=");
    spec.env.retain(|e| !e.starts_with(&prefix));
    spec.env.push(format!("{prefix}{}", ids.join(",")));
}

/// Docker's device request for these GPUs: `--gpus '"device=ID,ID"'`. `None` without GPUs.
pub fn device_requests(ids: &[String]) -> Option<Vec<bollard::models::DeviceRequest>> {
    (!ids.is_empty()).then(|| {
        vec![bollard::models::DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(ids.to_vec()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::Container;

    fn task() -> Task {
        let c = |name: &str, ids: Option<Vec<&str>>| Container {
            name: Some(name.into()),
            gpu_ids: ids.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        Task { containers: Some(vec![c("train", Some(vec!["0", "3"])), c("web", None)]), ..Default::default() }
    }

    #[test]
    fn a_container_with_gpus_gets_a_device_request_and_visible_devices() {
        let mut spec =
            ContainerSpec { env: vec!["NVIDIA_VISIBLE_DEVICES=all".into(), "A=1".into()], ..Default::default() };
        apply(&mut spec, &task(), "train");
        assert_eq!(spec.gpus, vec!["0", "3"]);
        assert_eq!(spec.env, vec!["A=1".to_string(), "NVIDIA_VISIBLE_DEVICES=0,3".to_string()]);
        let requests = device_requests(&spec.gpus).expect("a request");
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.driver.as_deref(), Some("nvidia"));
        assert_eq!(r.device_ids, Some(vec!["0".to_string(), "3".to_string()]));
        assert_eq!(r.capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(r.count, None, "specific devices, not a count");
        // On the wire, as the Docker Engine API takes it.
        let wire = serde_json::to_value(r).unwrap();
        assert_eq!(wire["DeviceIDs"], serde_json::json!(["0", "3"]));
        assert_eq!(wire["Capabilities"], serde_json::json!([["gpu"]]));
    }

    #[test]
    fn a_container_without_gpus_is_left_alone() {
        let mut spec = ContainerSpec { env: vec!["NVIDIA_VISIBLE_DEVICES=all".into()], ..Default::default() };
        apply(&mut spec, &task(), "web");
        assert!(spec.gpus.is_empty());
        assert_eq!(spec.env, vec!["NVIDIA_VISIBLE_DEVICES=all".to_string()]);
        assert!(device_requests(&spec.gpus).is_none());
    }
}
