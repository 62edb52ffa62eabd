//! The container definition's process settings, as Docker takes them: `dockerSecurityOptions`
//! (in Docker's `key=value` syntax), `systemControls` (sysctls), `disableNetworking`,
//! `interactive` and `pseudoTerminal`.
//!
//! Registration refuses what ECS refuses (`flotilla_model::rules`); this is the agent's own
//! guard for a definition that reached it anyway (an older server, a hand-made assignment), so a
//! bad option fails the task with a reason naming the field rather than reaching Docker.

use flotilla_model::ContainerDefinition;

use crate::runtime::ContainerOptions;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("dockerSecurityOptions: {0:?} is not supported (no-new-privileges, apparmor:PROFILE, label:VALUE)")]
    SecurityOption(String),
    #[error("systemControls: every entry needs a namespace and a value")]
    SystemControl,
}

/// One `dockerSecurityOptions` entry in Docker's syntax. ECS writes `key:value`, which Docker
/// still reads but deprecates; Docker's own form is `key=value`. `credentialspec:` (Windows gMSA)
/// and anything else is refused.
pub fn security_opt(option: &str) -> Result<String, OptionsError> {
    if option == "no-new-privileges" {
        return Ok("no-new-privileges=true".into());
    }
    match option.split_once(':') {
        Some((key @ ("apparmor" | "label"), value)) if !value.is_empty() => Ok(format!("{key}={value}")),
        _ => Err(OptionsError::SecurityOption(option.to_string())),
    }
}

/// The process settings of one container.
pub fn build(def: &ContainerDefinition) -> Result<ContainerOptions, OptionsError> {
    let security_opt =
        def.docker_security_options.iter().flatten().map(|o| security_opt(o)).collect::<Result<_, _>>()?;
    let sysctls = def
        .system_controls
        .iter()
        .flatten()
        .map(|s| match (s.namespace.as_deref(), s.value.as_deref()) {
            (Some(n), Some(v)) if !n.is_empty() => Ok((n.to_string(), v.to_string())),
            _ => Err(OptionsError::SystemControl),
        })
        .collect::<Result<_, _>>()?;
    let interactive = def.interactive.unwrap_or(false);
    Ok(ContainerOptions {
        security_opt,
        sysctls,
        network_disabled: def.disable_networking.unwrap_or(false),
        tty: def.pseudo_terminal.unwrap_or(false),
        open_stdin: interactive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::SystemControl;

    #[test]
    fn security_options_take_dockers_syntax() {
        let cases: &[(&str, Option<&str>)] = &[
            ("no-new-privileges", Some("no-new-privileges=true")),
            ("apparmor:docker-default", Some("apparmor=docker-default")),
            ("label:type:svirt_apache_t", Some("label=type:svirt_apache_t")),
            ("label:disable", Some("label=disable")),
            ("credentialspec:file://gmsa.json", None),
            ("seccomp:unconfined", None),
            ("apparmor:", None),
            ("privileged", None),
        ];
        for (option, expected) in cases {
            assert_eq!(security_opt(option).ok().as_deref(), *expected, "{option}");
        }
    }

    #[test]
    fn a_definition_becomes_options() {
        let def = ContainerDefinition {
            docker_security_options: Some(vec!["no-new-privileges".into()]),
            system_controls: Some(vec![SystemControl {
                namespace: Some("net.ipv4.tcp_keepalive_time".into()),
                value: Some("600".into()),
            }]),
            disable_networking: Some(true),
            pseudo_terminal: Some(true),
            interactive: Some(true),
            ..Default::default()
        };
        let o = build(&def).unwrap();
        assert_eq!(o.security_opt, vec!["no-new-privileges=true"]);
        assert_eq!(o.sysctls.get("net.ipv4.tcp_keepalive_time").map(String::as_str), Some("600"));
        assert!(o.network_disabled && o.tty && o.open_stdin);
        assert_eq!(build(&ContainerDefinition::default()).unwrap(), ContainerOptions::default());
        let bad = ContainerDefinition { docker_security_options: Some(vec!["credentialspec:x".into()]), ..def };
        assert!(matches!(build(&bad), Err(OptionsError::SecurityOption(_))));
    }
}
