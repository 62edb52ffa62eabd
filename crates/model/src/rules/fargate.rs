//! Fargate's extra demands on a task definition: awsvpc networking, a task size from Fargate's
//! table, an execution role when Fargate must pull from ECR or ship logs, and the list of
//! parameters Fargate does not support.
//!
//! These apply whenever `requiresCompatibilities` contains FARGATE, even next to EC2, because ECS
//! validates the task definition against every compatibility it asks for.

use super::{listed, RuleError, TaskDef};

/// How Fargate lets memory vary for one cpu size (all in MiB).
enum MemoryChoice {
    Listed(&'static [u32]),
    Stepped { min: u32, max: u32, step: u32 },
}

/// Fargate's task sizes ("Task CPU and memory" in the developer guide): cpu units to memory.
const FARGATE_SIZES: [(u32, MemoryChoice); 7] = [
    (256, MemoryChoice::Listed(&[512, 1024, 2048])),
    (512, MemoryChoice::Stepped { min: 1024, max: 4096, step: 1024 }),
    (1024, MemoryChoice::Stepped { min: 2048, max: 8192, step: 1024 }),
    (2048, MemoryChoice::Stepped { min: 4096, max: 16384, step: 1024 }),
    (4096, MemoryChoice::Stepped { min: 8192, max: 30720, step: 1024 }),
    (8192, MemoryChoice::Stepped { min: 16384, max: 61440, step: 4096 }),
    (16384, MemoryChoice::Stepped { min: 32768, max: 122880, step: 8192 }),
];

/// The memory sizes (MiB) Fargate offers with this many cpu units; empty for an unknown cpu.
pub fn fargate_memory_options(cpu: u32) -> Vec<u32> {
    match FARGATE_SIZES.iter().find(|(c, _)| *c == cpu) {
        None => Vec::new(),
        Some((_, MemoryChoice::Listed(sizes))) => sizes.to_vec(),
        Some((_, MemoryChoice::Stepped { min, max, step })) => (*min..=*max).step_by(*step as usize).collect(),
    }
}

/// Whether Fargate runs a task of this cpu (units) and memory (MiB).
pub fn is_valid_fargate_combination(cpu: u32, memory: u32) -> bool {
    fargate_memory_options(cpu).contains(&memory)
}

/// Network mode and the presence of a task size: checked before the size is even parsed.
pub(crate) fn check_task_level(td: &TaskDef<'_>) -> Result<(), RuleError> {
    if !td.fargate {
        return Ok(());
    }
    if td.network_mode != "awsvpc" {
        return Err(RuleError::client("Fargate only supports network mode \u{2018}awsvpc\u{2019}."));
    }
    if td.req.cpu.is_none() {
        return Err(RuleError::client("Fargate requires that 'cpu' be defined at the task level."));
    }
    if td.req.memory.is_none() {
        return Err(RuleError::client("Fargate requires that 'memory' be defined at the task level."));
    }
    Ok(())
}

/// The parsed task size against Fargate's table; Windows on Fargate starts at 1 vCPU.
pub(crate) fn check_combination(td: &TaskDef<'_>, cpu: Option<u32>, memory: Option<u32>) -> Result<(), RuleError> {
    let (Some(cpu), Some(memory)) = (cpu, memory) else {
        return Ok(());
    };
    let windows = td
        .req
        .runtime_platform
        .as_ref()
        .and_then(|p| p.operating_system_family.as_deref())
        .is_some_and(|family| family.starts_with("WINDOWS"));
    if !is_valid_fargate_combination(cpu, memory) || (windows && cpu < 1024) {
        return Err(RuleError::client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the \
             Amazon ECS documentation for the valid values."
        )));
    }
    Ok(())
}

fn unsupported(parameter: &str) -> RuleError {
    RuleError::client(format!("Fargate compatible task definitions do not support {parameter}."))
}

/// Parameters Fargate has no way to honour, and the execution role it needs for pulls and logs.
pub(crate) fn check_unsupported(td: &TaskDef<'_>) -> Result<(), RuleError> {
    if !td.fargate {
        return Ok(());
    }
    let req = td.req;
    if req.ipc_mode.is_some() {
        return Err(unsupported("ipcMode"));
    }
    if req.pid_mode.as_deref() == Some("host") {
        return Err(unsupported("pidMode 'host'"));
    }
    if listed(&req.placement_constraints).is_some() {
        return Err(unsupported("constraints"));
    }
    for volume in listed(&req.volumes).unwrap_or_default() {
        if volume.docker_volume_configuration.is_some() {
            return Err(unsupported("dockerVolumeConfiguration"));
        }
        if volume.host.as_ref().and_then(|h| h.source_path.as_deref()).is_some_and(|p| !p.is_empty()) {
            return Err(unsupported("sourcePath"));
        }
    }
    for c in td.containers {
        if c.privileged == Some(true) {
            return Err(RuleError::client("Fargate requires that the 'privileged' setting be 'false'."));
        }
        if c.disable_networking == Some(true) {
            return Err(unsupported("disableNetworking"));
        }
        if listed(&c.dns_search_domains).is_some() {
            return Err(unsupported("dnsSearchDomains"));
        }
        if listed(&c.docker_security_options).is_some() {
            return Err(unsupported("dockerSecurityOptions"));
        }
        if listed(&c.resource_requirements).unwrap_or_default().iter().any(|r| r.r#type.as_deref() == Some("GPU")) {
            return Err(unsupported("gpu"));
        }
        if let Some(linux) = &c.linux_parameters {
            let added = linux.capabilities.as_ref().and_then(|k| listed(&k.add)).unwrap_or_default();
            // SYS_PTRACE is the one capability Fargate lets a container add.
            if let Some(cap) = added.iter().find(|cap| cap.as_str() != "SYS_PTRACE") {
                return Err(RuleError::client(format!("{cap} is not allowed on Fargate.")));
            }
            if listed(&linux.devices).is_some() {
                return Err(unsupported("devices"));
            }
            if linux.shared_memory_size.is_some() {
                return Err(unsupported("sharedMemorySize"));
            }
            if listed(&linux.tmpfs).is_some() {
                return Err(unsupported("tmpfs"));
            }
            if linux.max_swap.is_some() {
                return Err(unsupported("maxSwap"));
            }
            if linux.swappiness.is_some() {
                return Err(unsupported("swappiness"));
            }
        }
    }
    check_execution_role(td)
}

/// Fargate pulls ECR images and writes awslogs with the execution role; ECS insists on one.
fn check_execution_role(td: &TaskDef<'_>) -> Result<(), RuleError> {
    if td.req.execution_role_arn.as_deref().is_some_and(|arn| !arn.is_empty()) {
        return Ok(());
    }
    for c in td.containers {
        let driver = c.log_configuration.as_ref().and_then(|l| l.log_driver.as_deref());
        if driver == Some("awslogs") {
            return Err(RuleError::client(
                "Fargate requires task definition to have execution role ARN to support log driver \
                 awslogs.",
            ));
        }
        if c.image.as_deref().is_some_and(|image| image.contains(".dkr.ecr.")) {
            return Err(RuleError::client(
                "Fargate requires task definition to have execution role ARN to support ECR \
                 images.",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::{
        ContainerDefinition, DockerVolumeConfiguration, HostVolumeProperties, KernelCapabilities, LinuxParameters,
        LogConfiguration, RegisterTaskDefinitionRequest, ResourceRequirement, RuntimePlatform,
        TaskDefinitionPlacementConstraint, Tmpfs, Volume,
    };

    #[test]
    fn the_documented_table() {
        let valid: &[(u32, u32)] = &[
            (256, 512),
            (256, 1024),
            (256, 2048),
            (512, 1024),
            (512, 4096),
            (1024, 2048),
            (1024, 8192),
            (2048, 4096),
            (2048, 16384),
            (4096, 8192),
            (4096, 30720),
            (8192, 16384),
            (8192, 20480),
            (8192, 61440),
            (16384, 32768),
            (16384, 40960),
            (16384, 122880),
        ];
        for &(cpu, memory) in valid {
            assert!(is_valid_fargate_combination(cpu, memory), "{cpu}/{memory}");
        }
        let invalid: &[(u32, u32)] = &[
            (256, 256),
            (256, 1536),
            (256, 3072),
            (512, 512),
            (512, 1536),
            (512, 5120),
            (1024, 1024),
            (1024, 9216),
            (2048, 17408),
            (4096, 31744),
            (8192, 17408),
            (8192, 65536),
            (16384, 36864),
            (16384, 131072),
            (128, 512),
            (3072, 8192),
            (32768, 65536),
        ];
        for &(cpu, memory) in invalid {
            assert!(!is_valid_fargate_combination(cpu, memory), "{cpu}/{memory}");
        }
        assert_eq!(fargate_memory_options(512), vec![1024, 2048, 3072, 4096]);
        assert_eq!(fargate_memory_options(8192).len(), 12);
        assert!(fargate_memory_options(100).is_empty());
    }

    fn fargate_with(f: impl FnOnce(&mut RegisterTaskDefinitionRequest)) -> RegisterTaskDefinitionRequest {
        let mut req = fargate_task(vec![container("web")]);
        f(&mut req);
        req
    }

    #[test]
    fn network_mode_and_task_size_are_required() {
        let awsvpc_only = "Fargate only supports network mode \u{2018}awsvpc\u{2019}.";
        assert_client(&fargate_with(|r| r.network_mode = None), awsvpc_only);
        assert_client(&fargate_with(|r| r.network_mode = Some("bridge".into())), awsvpc_only);
        assert_client(&fargate_with(|r| r.network_mode = Some("host".into())), awsvpc_only);
        assert_client(&fargate_with(|r| r.cpu = None), "Fargate requires that 'cpu' be defined at the task level.");
        assert_client(
            &fargate_with(|r| r.memory = None),
            "Fargate requires that 'memory' be defined at the task level.",
        );
        // Fargate rules apply when EC2 is asked for as well.
        assert_client(
            &fargate_with(|r| {
                r.requires_compatibilities = Some(vec!["EC2".into(), "FARGATE".into()]);
                r.cpu = None;
            }),
            "Fargate requires that 'cpu' be defined at the task level.",
        );
    }

    #[test]
    fn task_size_must_be_in_the_table_in_any_spelling() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("256", "512", None),
            ("1 vCPU", "2 GB", None),
            (".25 vcpu", "0.5GB", None),
            ("16 vCPU", "120 GB", None),
            ("512", "4096", None),
            ("512", "8192", Some("512 CPU, 8192 memory")),
            ("256", "4 GB", Some("256 CPU, 4096 memory")),
            ("1024", "1024", Some("1024 CPU, 1024 memory")),
            ("128", "512", Some("128 CPU, 512 memory")),
        ];
        for (cpu, memory, expected) in cases {
            let req = fargate_with(|r| {
                r.cpu = Some(cpu.to_string());
                r.memory = Some(memory.to_string());
            });
            match expected {
                None => assert_ok(&req),
                Some(values) => assert_client(
                    &req,
                    &format!(
                        "No Fargate configuration exists for given values: {values}. See the \
                         Amazon ECS documentation for the valid values."
                    ),
                ),
            }
        }
        // Unparsable sizes are reported as invalid settings, not as missing table entries.
        let err = td_error(&fargate_with(|r| r.cpu = Some("quarter".into())));
        assert!(err.message.starts_with("Invalid 'cpu' setting for task."), "{err:?}");
    }

    #[test]
    fn windows_on_fargate_starts_at_one_vcpu() {
        let windows = |cpu: &str, memory: &str| {
            fargate_with(|r| {
                r.cpu = Some(cpu.into());
                r.memory = Some(memory.into());
                r.runtime_platform = Some(RuntimePlatform {
                    operating_system_family: Some("WINDOWS_SERVER_2022_CORE".into()),
                    cpu_architecture: None,
                });
            })
        };
        // Fargate's table takes 1 vCPU; Flotilla then refuses Windows itself (rules::unsupported).
        assert!(td_error(&windows("1024", "2048")).message.starts_with("runtimePlatform.operatingSystemFamily"));
        assert_client(
            &windows("512", "1024"),
            "No Fargate configuration exists for given values: 512 CPU, 1024 memory. See the \
             Amazon ECS documentation for the valid values.",
        );
    }

    fn container_with(f: impl FnOnce(&mut ContainerDefinition)) -> RegisterTaskDefinitionRequest {
        let mut c = container("web");
        f(&mut c);
        fargate_task(vec![c])
    }

    fn linux(f: impl FnOnce(&mut LinuxParameters)) -> RegisterTaskDefinitionRequest {
        container_with(|c| {
            let mut l = LinuxParameters::default();
            f(&mut l);
            c.linux_parameters = Some(l);
        })
    }

    #[test]
    fn unsupported_parameters_are_refused() {
        let cases: Vec<(RegisterTaskDefinitionRequest, &str)> = vec![
            (
                fargate_with(|r| r.ipc_mode = Some("task".into())),
                "Fargate compatible task definitions do not support ipcMode.",
            ),
            (
                fargate_with(|r| r.pid_mode = Some("host".into())),
                "Fargate compatible task definitions do not support pidMode 'host'.",
            ),
            (
                fargate_with(|r| {
                    r.placement_constraints = Some(vec![TaskDefinitionPlacementConstraint {
                        r#type: Some("memberOf".into()),
                        expression: Some("attribute:ecs.instance-type =~ t2.*".into()),
                    }])
                }),
                "Fargate compatible task definitions do not support constraints.",
            ),
            (
                fargate_with(|r| {
                    r.volumes = Some(vec![Volume {
                        name: Some("v".into()),
                        docker_volume_configuration: Some(DockerVolumeConfiguration::default()),
                        ..Default::default()
                    }])
                }),
                "Fargate compatible task definitions do not support dockerVolumeConfiguration.",
            ),
            (
                fargate_with(|r| {
                    r.volumes = Some(vec![Volume {
                        name: Some("v".into()),
                        host: Some(HostVolumeProperties { source_path: Some("/var/data".into()) }),
                        ..Default::default()
                    }])
                }),
                "Fargate compatible task definitions do not support sourcePath.",
            ),
            (
                container_with(|c| c.privileged = Some(true)),
                "Fargate requires that the 'privileged' setting be 'false'.",
            ),
            (
                container_with(|c| c.disable_networking = Some(true)),
                "Fargate compatible task definitions do not support disableNetworking.",
            ),
            (
                container_with(|c| c.dns_search_domains = Some(vec!["corp".into()])),
                "Fargate compatible task definitions do not support dnsSearchDomains.",
            ),
            (
                container_with(|c| c.docker_security_options = Some(vec!["no-new-privileges".into()])),
                "Fargate compatible task definitions do not support dockerSecurityOptions.",
            ),
            (
                container_with(|c| {
                    c.resource_requirements = Some(vec![ResourceRequirement {
                        r#type: Some("GPU".into()),
                        value: Some("1".into()),
                        sharing_strategy: None,
                    }])
                }),
                "Fargate compatible task definitions do not support gpu.",
            ),
            (
                linux(|l| {
                    l.capabilities = Some(KernelCapabilities { add: Some(vec!["NET_ADMIN".into()]), drop: None })
                }),
                "NET_ADMIN is not allowed on Fargate.",
            ),
            (
                linux(|l| l.devices = Some(vec![Default::default()])),
                "Fargate compatible task definitions do not support devices.",
            ),
            (
                linux(|l| l.shared_memory_size = Some(64)),
                "Fargate compatible task definitions do not support sharedMemorySize.",
            ),
            (
                linux(|l| {
                    l.tmpfs =
                        Some(vec![Tmpfs { container_path: Some("/tmp".into()), size: Some(64), mount_options: None }])
                }),
                "Fargate compatible task definitions do not support tmpfs.",
            ),
            (linux(|l| l.max_swap = Some(0)), "Fargate compatible task definitions do not support maxSwap."),
            (linux(|l| l.swappiness = Some(60)), "Fargate compatible task definitions do not support swappiness."),
        ];
        for (req, msg) in cases {
            assert_client(&req, msg);
        }
    }

    #[test]
    fn what_fargate_does_support() {
        // Fargate takes pidMode task; Flotilla then refuses it itself (rules::unsupported).
        assert!(td_error(&fargate_with(|r| r.pid_mode = Some("task".into())))
            .message
            .starts_with("pidMode 'task' is not"));
        assert_ok(&container_with(|c| c.privileged = Some(false)));
        assert_ok(&container_with(|c| c.disable_networking = Some(false)));
        assert_ok(&linux(|l| {
            l.capabilities =
                Some(KernelCapabilities { add: Some(vec!["SYS_PTRACE".into()]), drop: Some(vec!["ALL".into()]) });
            l.init_process_enabled = Some(true);
        }));
        // A bind mount without a host path is a Fargate scratch volume.
        assert_ok(&fargate_with(|r| {
            r.volumes = Some(vec![Volume {
                name: Some("scratch".into()),
                host: Some(HostVolumeProperties::default()),
                ..Default::default()
            }])
        }));
        // None of these rules apply to EC2.
        let mut ec2 = ec2_task(vec![ContainerDefinition { privileged: Some(true), ..container("web") }]);
        ec2.ipc_mode = Some("host".into());
        ec2.pid_mode = Some("host".into());
        assert_ok(&ec2);
    }

    #[test]
    fn execution_role_is_required_for_awslogs_and_ecr() {
        let awslogs = |c: &mut ContainerDefinition| {
            let options = [("awslogs-group", "/ecs/web"), ("awslogs-region", "eu-west-1")];
            c.log_configuration = Some(LogConfiguration {
                log_driver: Some("awslogs".into()),
                options: Some(options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                secret_options: None,
            })
        };
        let ecr =
            |c: &mut ContainerDefinition| c.image = Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1".into());
        assert_client(
            &container_with(awslogs),
            "Fargate requires task definition to have execution role ARN to support log driver \
             awslogs.",
        );
        assert_client(
            &container_with(ecr),
            "Fargate requires task definition to have execution role ARN to support ECR images.",
        );
        let mut with_role = container_with(|c| {
            awslogs(c);
            ecr(c);
        });
        with_role.execution_role_arn = Some("arn:aws:iam::123456789012:role/ecsTaskExecutionRole".into());
        assert_ok(&with_role);
        // On EC2 the container instance role can do both.
        let mut c = container("web");
        awslogs(&mut c);
        ecr(&mut c);
        assert_ok(&ec2_task(vec![c]));
    }
}
