//! Rules about a container's process settings: `restartPolicy`, `systemControls`,
//! `dockerSecurityOptions` and `disableNetworking`.
//!
//! The bounds are ECS's documented ones (`ignoredExitCodes` at most 50, `restartAttemptPeriod`
//! 60 to 1800 seconds; only namespaced sysctls, no network sysctls in host network mode, no IPC
//! sysctls in host IPC mode). Where ECS leaves a choice to chance Flotilla refuses instead: in
//! awsvpc mode every container shares one network namespace, and ECS lets whichever container
//! starts last decide a network sysctl; here the containers of such a task must agree.

use std::collections::BTreeMap;

use super::{listed, name_of, RuleError, TaskDef};
use crate::ContainerDefinition;

/// The most exit codes a restart policy may ignore.
pub const MAX_IGNORED_EXIT_CODES: usize = 50;
/// The bounds of `restartAttemptPeriod`, in seconds.
pub const RESTART_ATTEMPT_PERIOD: std::ops::RangeInclusive<i32> = 60..=1800;

/// IPC namespace sysctls Docker accepts (besides the `fs.mqueue.` prefix).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Which namespace a sysctl belongs to, or `None` for one that is not namespaced.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    if name.starts_with("net.") {
        Some("network")
    } else if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") {
        Some("ipc")
    } else {
        None
    }
}

fn invalid(field: &str, name: &str, why: impl std::fmt::Display) -> RuleError {
    RuleError::client(format!("Invalid '{field}' setting for container '{name}'. {why}"))
}

/// Every container's process settings, and the task-wide agreement on network sysctls.
pub(crate) fn check(td: &TaskDef<'_>) -> Result<(), RuleError> {
    for c in td.containers {
        check_restart_policy(c)?;
        check_security_options(c)?;
        check_system_controls(td, c)?;
        if c.disable_networking == Some(true) && td.network_mode == "awsvpc" {
            return Err(invalid(
                "disableNetworking",
                name_of(c),
                "disableNetworking is not supported with the awsvpc network mode.",
            ));
        }
    }
    if td.network_mode == "awsvpc" {
        check_shared_network_sysctls(td.containers)?;
    }
    Ok(())
}

fn check_restart_policy(c: &ContainerDefinition) -> Result<(), RuleError> {
    let Some(p) = &c.restart_policy else { return Ok(()) };
    let name = name_of(c);
    if p.ignored_exit_codes.as_ref().is_some_and(|codes| codes.len() > MAX_IGNORED_EXIT_CODES) {
        return Err(invalid(
            "restartPolicy",
            name,
            format!("ignoredExitCodes can contain at most {MAX_IGNORED_EXIT_CODES} exit codes."),
        ));
    }
    if let Some(period) = p.restart_attempt_period {
        if !RESTART_ATTEMPT_PERIOD.contains(&period) {
            return Err(invalid(
                "restartPolicy",
                name,
                format!(
                    "restartAttemptPeriod must be between {} and {} seconds.",
                    RESTART_ATTEMPT_PERIOD.start(),
                    RESTART_ATTEMPT_PERIOD.end()
                ),
            ));
        }
    }
    Ok(())
}

fn check_security_options(c: &ContainerDefinition) -> Result<(), RuleError> {
    for option in listed(&c.docker_security_options).unwrap_or_default() {
        let ok = option == "no-new-privileges"
            || option.split_once(':').is_some_and(|(k, v)| matches!(k, "apparmor" | "label") && !v.is_empty());
        if option.starts_with("credentialspec:") {
            return Err(invalid(
                "dockerSecurityOptions",
                name_of(c),
                "credentialspec is for Windows containers, which Flotilla does not run.",
            ));
        }
        if !ok {
            return Err(invalid(
                "dockerSecurityOptions",
                name_of(c),
                format!(
                    "'{option}' is not a valid option; the valid values are \"no-new-privileges\", \
                     \"apparmor:PROFILE\" and \"label:value\"."
                ),
            ));
        }
    }
    Ok(())
}

fn check_system_controls(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = name_of(c);
    for sc in listed(&c.system_controls).unwrap_or_default() {
        let (Some(ns), Some(_)) = (sc.namespace.as_deref().filter(|n| !n.is_empty()), sc.value.as_deref()) else {
            return Err(invalid("systemControls", name, "Both namespace and value must be specified."));
        };
        match sysctl_namespace(ns) {
            None => {
                return Err(invalid(
                    "systemControls",
                    name,
                    format!("'{ns}' is not a namespaced kernel parameter; only IPC (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*) and network (net.*) parameters can be set."),
                ))
            }
            Some("network") if td.network_mode == "host" => {
                return Err(invalid(
                    "systemControls",
                    name,
                    format!("Network namespace parameters such as '{ns}' are not supported with the host network mode."),
                ))
            }
            Some("ipc") if td.req.ipc_mode.as_deref() == Some("host") => {
                return Err(invalid(
                    "systemControls",
                    name,
                    format!("IPC namespace parameters such as '{ns}' are not supported with the host IPC mode."),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// In awsvpc mode one network namespace serves every container: they must agree on its sysctls.
fn check_shared_network_sysctls(containers: &[ContainerDefinition]) -> Result<(), RuleError> {
    let mut seen: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for c in containers {
        for sc in listed(&c.system_controls).unwrap_or_default() {
            let (Some(ns), Some(value)) = (sc.namespace.as_deref(), sc.value.as_deref()) else { continue };
            if sysctl_namespace(ns) != Some("network") {
                continue;
            }
            match seen.get(ns) {
                Some((other, v)) if *v != value => {
                    return Err(invalid(
                        "systemControls",
                        name_of(c),
                        format!(
                            "In the awsvpc network mode all containers share one network namespace; \
                             '{ns}' is set to '{value}' here but to '{v}' in container '{other}'."
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    seen.insert(ns, (name_of(c), value));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::{ContainerDefinition, ContainerRestartPolicy, SystemControl};

    fn with(f: impl FnOnce(&mut ContainerDefinition)) -> crate::RegisterTaskDefinitionRequest {
        let mut c = container("web");
        f(&mut c);
        ec2_task(vec![c, container("sidecar")])
    }

    fn policy(codes: usize, period: Option<i32>) -> ContainerRestartPolicy {
        ContainerRestartPolicy {
            enabled: Some(true),
            ignored_exit_codes: Some((0..codes as i32).collect()),
            restart_attempt_period: period,
        }
    }

    fn sysctl(ns: &str, v: &str) -> SystemControl {
        SystemControl { namespace: Some(ns.into()), value: Some(v.into()) }
    }

    #[test]
    fn restart_policy_bounds() {
        let period = "Invalid 'restartPolicy' setting for container 'web'. restartAttemptPeriod must be between \
                      60 and 1800 seconds.";
        let codes = "Invalid 'restartPolicy' setting for container 'web'. ignoredExitCodes can contain at most 50 \
                     exit codes.";
        let cases: Vec<(ContainerRestartPolicy, Option<&str>)> = vec![
            (policy(0, None), None),
            (policy(50, Some(60)), None),
            (policy(1, Some(1800)), None),
            (policy(51, None), Some(codes)),
            (policy(0, Some(59)), Some(period)),
            (policy(0, Some(1801)), Some(period)),
            (
                ContainerRestartPolicy { enabled: Some(false), restart_attempt_period: Some(5), ..Default::default() },
                Some(period),
            ),
        ];
        for (p, expected) in cases {
            let req = with(|c| c.restart_policy = Some(p.clone()));
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    #[test]
    fn security_options() {
        for ok in ["no-new-privileges", "apparmor:docker-default", "label:type:svirt_apache_t"] {
            assert_ok(&with(|c| c.docker_security_options = Some(vec![ok.into()])));
        }
        assert_client(
            &with(|c| c.docker_security_options = Some(vec!["credentialspec:file://x.json".into()])),
            "Invalid 'dockerSecurityOptions' setting for container 'web'. credentialspec is for Windows \
             containers, which Flotilla does not run.",
        );
        assert_client(
            &with(|c| c.docker_security_options = Some(vec!["seccomp:unconfined".into()])),
            "Invalid 'dockerSecurityOptions' setting for container 'web'. 'seccomp:unconfined' is not a valid \
             option; the valid values are \"no-new-privileges\", \"apparmor:PROFILE\" and \"label:value\".",
        );
    }

    #[test]
    fn system_controls_are_namespaced_and_fit_the_modes() {
        assert_ok(&with(|c| c.system_controls = Some(vec![sysctl("net.ipv4.tcp_keepalive_time", "600")])));
        assert_ok(&with(|c| {
            c.system_controls = Some(vec![sysctl("kernel.shmmax", "1000000"), sysctl("fs.mqueue.msg_max", "20")])
        }));
        let e = td_error(&with(|c| c.system_controls = Some(vec![sysctl("vm.swappiness", "10")])));
        assert!(
            e.message.starts_with(
                "Invalid 'systemControls' setting for container 'web'. 'vm.swappiness' is not a namespaced"
            ),
            "{}",
            e.message
        );
        let e = td_error(&with(|c| {
            c.system_controls = Some(vec![SystemControl { namespace: Some("net.x".into()), value: None }])
        }));
        assert_eq!(
            e.message,
            "Invalid 'systemControls' setting for container 'web'. Both namespace and value must be specified."
        );

        let mut host = with(|c| c.system_controls = Some(vec![sysctl("net.core.somaxconn", "1024")]));
        host.network_mode = Some("host".into());
        assert_client(
            &host,
            "Invalid 'systemControls' setting for container 'web'. Network namespace parameters such as \
             'net.core.somaxconn' are not supported with the host network mode.",
        );
        let mut ipc = with(|c| c.system_controls = Some(vec![sysctl("kernel.sem", "250 32000 32 128")]));
        ipc.ipc_mode = Some("host".into());
        assert!(td_error(&ipc).message.contains("host IPC mode"));
    }

    #[test]
    fn awsvpc_containers_agree_on_network_sysctls_and_keep_their_network() {
        let task = |a: &str, b: &str| {
            let mut web = container("web");
            web.system_controls = Some(vec![sysctl("net.core.somaxconn", a)]);
            let mut side = container("sidecar");
            side.system_controls = Some(vec![sysctl("net.core.somaxconn", b)]);
            let mut req = ec2_task(vec![web, side]);
            req.network_mode = Some("awsvpc".into());
            req
        };
        assert_ok(&task("1024", "1024"));
        assert_client(
            &task("1024", "2048"),
            "Invalid 'systemControls' setting for container 'sidecar'. In the awsvpc network mode all containers \
             share one network namespace; 'net.core.somaxconn' is set to '2048' here but to '1024' in container \
             'web'.",
        );
        let mut req = with(|c| c.disable_networking = Some(true));
        assert_ok(&req);
        req.network_mode = Some("awsvpc".into());
        assert_client(
            &req,
            "Invalid 'disableNetworking' setting for container 'web'. disableNetworking is not supported with the \
             awsvpc network mode.",
        );
    }
}
