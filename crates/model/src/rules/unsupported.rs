//! The task definition fields Flotilla cannot honour, refused at RegisterTaskDefinition rather than
//! accepted and silently ignored, and the GPU requirements it does honour, checked as ECS checks
//! them.
//!
//! Each refusal is a ClientException (what ECS answers for task definition rules) that names the
//! field, the container when there is one, and why Flotilla has no way to do what the field asks.
//! The same words serve RunTask's container overrides ([`check_container_override`]), which ECS
//! answers with InvalidParameterException. Fields a Fargate definition may not carry are refused
//! by `fargate` first, in Fargate's words; these rules run after it.

use super::{listed, name_of, RuleError, TaskDef};
use crate::{ContainerDefinition, ContainerOverride, ResourceRequirement};

/// A refusal naming `field` (on `container`, when the field is a container's) and saying why.
fn refuse(container: Option<&str>, field: &str, why: &str) -> RuleError {
    let on = container.map(|c| format!(" (container {c})")).unwrap_or_default();
    RuleError::client(format!("{field}{on} is not supported by Flotilla: {why}"))
}

const ENVIRONMENT_FILES: &str =
    "Flotilla has no S3 to read environment files from; give the variables in 'environment' or 'secrets' instead.";
const INFERENCE: &str = "Amazon Elastic Inference does not exist on Flotilla's hosts.";

/// Everything a task definition asks for that Flotilla would otherwise ignore.
pub(crate) fn check(td: &TaskDef<'_>) -> Result<(), RuleError> {
    let req = td.req;
    if listed(&req.inference_accelerators).is_some() {
        return Err(refuse(None, "inferenceAccelerators", INFERENCE));
    }
    if req.proxy_configuration.is_some() {
        return Err(refuse(None, "proxyConfiguration", "there is no App Mesh proxy (Envoy) integration."));
    }
    // `host` (and ipc `none`) are Docker's own modes and the agent passes them on; `task` asks for
    // a namespace the task's containers share, which the agent does not build.
    for (field, mode) in [("ipcMode", &req.ipc_mode), ("pidMode", &req.pid_mode)] {
        if mode.as_deref() == Some("task") {
            return Err(refuse(
                None,
                &format!("{field} 'task'"),
                "the containers of a task do not share one namespace; use 'host' or leave it out.",
            ));
        }
    }
    if req.enable_fault_injection == Some(true) {
        return Err(refuse(None, "enableFaultInjection", "the agent has no fault injection endpoints."));
    }
    if req.trusted_execution_configuration.is_some() {
        return Err(refuse(None, "trustedExecutionConfiguration", "there are no trusted execution hosts."));
    }
    if let Some(os) = req.runtime_platform.as_ref().and_then(|p| p.operating_system_family.as_deref()) {
        if os != "LINUX" {
            return Err(refuse(
                None,
                "runtimePlatform.operatingSystemFamily",
                &format!("Flotilla runs Linux containers only, not {os}."),
            ));
        }
    }
    for c in td.containers {
        check_container(c)?;
    }
    Ok(())
}

/// One container's unsupported fields, and its resource requirements.
fn check_container(c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = Some(name_of(c));
    if listed(&c.environment_files).is_some() {
        return Err(refuse(name, "environmentFiles", ENVIRONMENT_FILES));
    }
    if c.firelens_configuration.is_some() {
        return Err(refuse(name, "firelensConfiguration", "there is no FireLens log router; use logConfiguration."));
    }
    if listed(&c.credential_specs).is_some() {
        return Err(refuse(name, "credentialSpecs", "gMSA credential specs are for Windows containers."));
    }
    if c.version_consistency.as_deref() == Some("enabled") {
        return Err(refuse(
            name,
            "versionConsistency 'enabled'",
            "images are pulled by the tag the definition names, not pinned to a digest; set it to 'disabled'.",
        ));
    }
    if let Some(linux) = &c.linux_parameters {
        if listed(&linux.devices).is_some() {
            return Err(refuse(name, "linuxParameters.devices", "host devices are not mapped into containers."));
        }
        if listed(&linux.tmpfs).is_some() {
            return Err(refuse(name, "linuxParameters.tmpfs", "tmpfs mounts are not made; use a volume."));
        }
        if linux.max_swap.is_some() {
            return Err(refuse(name, "linuxParameters.maxSwap", "container swap is not limited."));
        }
        if linux.swappiness.is_some() {
            return Err(refuse(name, "linuxParameters.swappiness", "container swappiness is not set."));
        }
    }
    check_requirements(name_of(c), c.resource_requirements.as_deref().unwrap_or_default())?;
    Ok(())
}

/// ECS's resource requirements: GPU with a positive whole number of GPUs, at most once per
/// container; nothing else.
fn check_requirements(container: &str, requirements: &[ResourceRequirement]) -> Result<(), RuleError> {
    let name = Some(container);
    let mut gpu_seen = false;
    for r in requirements {
        match r.r#type.as_deref().unwrap_or("") {
            "GPU" => {
                if r.sharing_strategy.is_some() {
                    return Err(refuse(
                        name,
                        "resourceRequirements sharingStrategy",
                        "each container holds whole GPUs; give the number of GPUs in 'value'.",
                    ));
                }
                if gpu_seen {
                    return Err(RuleError::client(format!(
                        "resourceRequirements of container {container} names the GPU type more than once."
                    )));
                }
                gpu_seen = true;
                gpu_count(r).ok_or_else(|| {
                    RuleError::client(format!(
                        "Invalid value '{}' for resourceRequirements type GPU of container {container}: the \
                         value must be a positive whole number of GPUs.",
                        r.value.as_deref().unwrap_or("")
                    ))
                })?;
            }
            "InferenceAccelerator" => {
                return Err(refuse(name, "resourceRequirements type InferenceAccelerator", INFERENCE));
            }
            "NeuronDevice" => {
                return Err(refuse(
                    name,
                    "resourceRequirements type NeuronDevice",
                    "AWS Neuron devices are not registered or assigned.",
                ));
            }
            other => {
                return Err(RuleError::client(format!(
                    "resourceRequirements type '{other}' of container {container} is not one of GPU, \
                     InferenceAccelerator or NeuronDevice."
                )))
            }
        }
    }
    Ok(())
}

/// The number of GPUs a GPU requirement asks for: a positive whole number, or `None`.
pub fn gpu_count(r: &ResourceRequirement) -> Option<u32> {
    r.value.as_deref()?.trim().parse::<u32>().ok().filter(|n| *n > 0)
}

/// The GPUs one container reserves: its GPU requirement's value, 0 without one.
pub fn container_gpus(requirements: Option<&[ResourceRequirement]>) -> u32 {
    requirements.unwrap_or_default().iter().filter(|r| r.r#type.as_deref() == Some("GPU")).filter_map(gpu_count).sum()
}

/// A RunTask/StartTask container override: the same refusals, as InvalidParameterException, for
/// the fields an override can carry.
pub fn check_container_override(o: &ContainerOverride) -> Result<(), RuleError> {
    let container = o.name.as_deref().unwrap_or("");
    let invalid = |e: RuleError| RuleError::invalid_parameter(format!("overrides.containerOverrides {}", e.message));
    if listed(&o.environment_files).is_some() {
        return Err(invalid(refuse(Some(container), "environmentFiles", ENVIRONMENT_FILES)));
    }
    if let Some(requirements) = &o.resource_requirements {
        check_requirements(container, requirements).map_err(invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::rules::RuleErrorKind;
    use crate::{
        Device, EnvironmentFile, FirelensConfiguration, InferenceAccelerator, LinuxParameters, ProxyConfiguration,
        RuntimePlatform, SharingStrategy, Tmpfs,
    };

    fn gpu(value: &str) -> ResourceRequirement {
        ResourceRequirement { r#type: Some("GPU".into()), value: Some(value.into()), ..Default::default() }
    }

    fn with(f: impl FnOnce(&mut ContainerDefinition)) -> crate::RegisterTaskDefinitionRequest {
        let mut c = container("web");
        f(&mut c);
        ec2_task(vec![c])
    }

    fn linux(f: impl FnOnce(&mut LinuxParameters)) -> crate::RegisterTaskDefinitionRequest {
        with(|c| {
            let mut l = LinuxParameters::default();
            f(&mut l);
            c.linux_parameters = Some(l);
        })
    }

    /// The refusal is a ClientException whose message names `field` and says it is unsupported.
    fn assert_refused(req: &crate::RegisterTaskDefinitionRequest, field: &str) {
        let err = td_error(req);
        assert_eq!(err.kind, RuleErrorKind::Client, "{err:?}");
        assert!(err.message.starts_with(field), "{field}: {}", err.message);
        assert!(err.message.contains("is not supported by Flotilla"), "{}", err.message);
    }

    #[test]
    fn container_fields_flotilla_cannot_honour_are_refused_by_name() {
        let env_file = EnvironmentFile { value: Some("arn:aws:s3:::b/x.env".into()), r#type: Some("s3".into()) };
        let req = with(|c| c.environment_files = Some(vec![env_file]));
        assert_refused(&req, "environmentFiles");
        let message = td_error(&req).message;
        assert!(message.contains("S3") && message.contains("'environment' or 'secrets'"), "{message}");
        assert!(message.contains("container web"), "{message}");
        assert_refused(
            &with(|c| c.firelens_configuration = Some(FirelensConfiguration::default())),
            "firelensConfiguration",
        );
        assert_refused(&with(|c| c.credential_specs = Some(vec!["credentialspec:x".into()])), "credentialSpecs");
        assert_refused(&with(|c| c.version_consistency = Some("enabled".into())), "versionConsistency");
        assert_refused(&linux(|l| l.devices = Some(vec![Device::default()])), "linuxParameters.devices");
        assert_refused(&linux(|l| l.tmpfs = Some(vec![Tmpfs::default()])), "linuxParameters.tmpfs");
        assert_refused(&linux(|l| l.max_swap = Some(0)), "linuxParameters.maxSwap");
        assert_refused(&linux(|l| l.swappiness = Some(60)), "linuxParameters.swappiness");
        let accelerator = ResourceRequirement {
            r#type: Some("InferenceAccelerator".into()),
            value: Some("d1".into()),
            ..Default::default()
        };
        assert_refused(
            &with(|c| c.resource_requirements = Some(vec![accelerator])),
            "resourceRequirements type InferenceAccelerator",
        );
        let neuron =
            ResourceRequirement { r#type: Some("NeuronDevice".into()), value: Some("1".into()), ..Default::default() };
        assert_refused(
            &with(|c| c.resource_requirements = Some(vec![neuron])),
            "resourceRequirements type NeuronDevice",
        );
        let shared = ResourceRequirement {
            r#type: Some("GPU".into()),
            sharing_strategy: Some(SharingStrategy::default()),
            ..Default::default()
        };
        assert_refused(&with(|c| c.resource_requirements = Some(vec![shared])), "resourceRequirements sharingStrategy");
    }

    #[test]
    fn task_fields_flotilla_cannot_honour_are_refused_by_name() {
        let base = || ec2_task(vec![container("web")]);
        let req = crate::RegisterTaskDefinitionRequest {
            inference_accelerators: Some(vec![InferenceAccelerator::default()]),
            ..base()
        };
        assert_refused(&req, "inferenceAccelerators");
        let req =
            crate::RegisterTaskDefinitionRequest { proxy_configuration: Some(ProxyConfiguration::default()), ..base() };
        assert_refused(&req, "proxyConfiguration");
        assert_refused(
            &crate::RegisterTaskDefinitionRequest { ipc_mode: Some("task".into()), ..base() },
            "ipcMode 'task'",
        );
        assert_refused(
            &crate::RegisterTaskDefinitionRequest { pid_mode: Some("task".into()), ..base() },
            "pidMode 'task'",
        );
        assert_refused(
            &crate::RegisterTaskDefinitionRequest { enable_fault_injection: Some(true), ..base() },
            "enableFaultInjection",
        );
        let windows =
            RuntimePlatform { operating_system_family: Some("WINDOWS_SERVER_2022_CORE".into()), ..Default::default() };
        let req = crate::RegisterTaskDefinitionRequest { runtime_platform: Some(windows), ..base() };
        assert_refused(&req, "runtimePlatform.operatingSystemFamily");
    }

    #[test]
    fn what_flotilla_honours_or_ignores_harmlessly_passes() {
        assert_ok(&crate::RegisterTaskDefinitionRequest {
            enable_fault_injection: Some(false),
            ..ec2_task(vec![container("web")])
        });
        assert_ok(&with(|c| c.version_consistency = Some("disabled".into())));
        assert_ok(&with(|c| c.environment_files = Some(vec![])));
        assert_ok(&linux(|l| {
            l.init_process_enabled = Some(true);
            l.shared_memory_size = Some(64);
        }));
        let linux_platform = RuntimePlatform { operating_system_family: Some("LINUX".into()), ..Default::default() };
        assert_ok(&crate::RegisterTaskDefinitionRequest {
            runtime_platform: Some(linux_platform),
            ..ec2_task(vec![container("web")])
        });
        assert_ok(&with(|c| c.resource_requirements = Some(vec![gpu("2")])));
    }

    #[test]
    fn gpu_values_must_be_positive_whole_numbers() {
        for bad in ["0", "-1", "1.5", "two", ""] {
            let err = td_error(&with(|c| c.resource_requirements = Some(vec![gpu(bad)])));
            assert_eq!(err.kind, RuleErrorKind::Client);
            assert!(err.message.contains("resourceRequirements type GPU of container web"), "{bad}: {}", err.message);
        }
        let err = td_error(&with(|c| c.resource_requirements = Some(vec![gpu("1"), gpu("1")])));
        assert!(err.message.contains("more than once"), "{}", err.message);
        assert_eq!(container_gpus(Some(&[gpu("3")])), 3);
        assert_eq!(container_gpus(None), 0);
    }

    #[test]
    fn overrides_are_refused_as_invalid_parameters() {
        let o = ContainerOverride {
            name: Some("web".into()),
            environment_files: Some(vec![EnvironmentFile::default()]),
            ..Default::default()
        };
        let err = check_container_override(&o).unwrap_err();
        assert_eq!(err.kind, RuleErrorKind::InvalidParameter);
        assert!(
            err.message.starts_with("overrides.containerOverrides environmentFiles (container web)"),
            "{}",
            err.message
        );
        let accelerator = ResourceRequirement {
            r#type: Some("InferenceAccelerator".into()),
            value: Some("d1".into()),
            ..Default::default()
        };
        let o = ContainerOverride {
            name: Some("web".into()),
            resource_requirements: Some(vec![accelerator]),
            ..Default::default()
        };
        let err = check_container_override(&o).unwrap_err();
        assert!(err.message.contains("InferenceAccelerator"), "{}", err.message);
        let o = ContainerOverride {
            name: Some("web".into()),
            resource_requirements: Some(vec![gpu("1")]),
            ..Default::default()
        };
        assert_eq!(check_container_override(&o), Ok(()));
    }
}
