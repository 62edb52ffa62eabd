//! Containers' `logConfiguration` as Flotilla can honour it. `awslogs` is shipped by the agent
//! to Flotilla's CloudWatch Logs, with the options Docker's driver and ECS take
//! (`awslogs-group`, `awslogs-region`, `awslogs-stream-prefix`, `awslogs-create-group`, `mode`);
//! the options that would change what is shipped (`awslogs-datetime-format`,
//! `awslogs-multiline-pattern`, ...) are refused in ECS's words, naming them, rather than
//! silently ignored. `awsfirelens` is refused: Flotilla has no FireLens. Other drivers go to
//! Docker, on instances whose Docker has them (`requiresAttributes`).

use super::RuleError;
use crate::ContainerDefinition;

/// The awslogs options the agent's shipper honours.
const AWSLOGS_OPTIONS: &[&str] =
    &["awslogs-group", "awslogs-region", "awslogs-stream-prefix", "awslogs-create-group", "mode"];

pub(crate) fn check(c: &ContainerDefinition) -> Result<(), RuleError> {
    let Some(config) = &c.log_configuration else { return Ok(()) };
    let options = config.options.clone().unwrap_or_default();
    match config.log_driver.as_deref() {
        Some("awsfirelens") => Err(RuleError::client(
            "Log driver awsfirelens is not supported by Flotilla: it has no FireLens. Use awslogs (CloudWatch Logs on \
             the control plane) or a Docker log driver.",
        )),
        Some("awslogs") => {
            let mut disallowed: Vec<&str> =
                options.keys().map(String::as_str).filter(|k| !AWSLOGS_OPTIONS.contains(k)).collect();
            if !disallowed.is_empty() {
                disallowed.sort_unstable();
                return Err(RuleError::client(format!(
                    "Log driver awslogs disallows options: {}",
                    disallowed.join(", ")
                )));
            }
            for required in ["awslogs-group", "awslogs-region"] {
                if options.get(required).is_none_or(|v| v.trim().is_empty()) {
                    return Err(RuleError::client(format!(
                        "Log driver awslogs option '{required}' should not be null or empty."
                    )));
                }
            }
            let group = &options["awslogs-group"];
            let group_ok =
                group.len() <= 512 && group.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
            if !group_ok {
                return Err(RuleError::client(format!(
                    "Log driver awslogs option 'awslogs-group' has an invalid log group name {group:?}: use up to 512 \
                     letters, digits, '.', '-', '_', '/' and '#'."
                )));
            }
            if options.get("awslogs-stream-prefix").is_some_and(|p| p.contains([':', '*'])) {
                return Err(RuleError::client(
                    "Log driver awslogs option 'awslogs-stream-prefix' must not contain ':' or '*'.",
                ));
            }
            if options.get("awslogs-create-group").is_some_and(|v| v != "true") {
                return Err(RuleError::client(
                    "Log driver awslogs option 'awslogs-create-group' should only be set to 'true', else omit option.",
                ));
            }
            if options.get("mode").is_some_and(|m| m != "blocking" && m != "non-blocking") {
                return Err(RuleError::client(
                    "Log driver awslogs option 'mode' should be 'blocking' or 'non-blocking'.",
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The attribute an instance needs to run a container logging with `driver`, as ECS names it.
pub fn driver_attribute(driver: &str) -> String {
    format!("com.amazonaws.ecs.capability.logging-driver.{driver}")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{container, ec2_task};
    use super::super::{check_register_task_definition, RuleErrorKind};
    use crate::LogConfiguration;

    fn with(driver: &str, options: &[(&str, &str)]) -> Result<(), String> {
        let mut c = container("web");
        c.log_configuration = Some(LogConfiguration {
            log_driver: Some(driver.into()),
            options: Some(options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            secret_options: None,
        });
        check_register_task_definition(&ec2_task(vec![c])).map_err(|e| {
            assert_eq!(e.kind, RuleErrorKind::Client);
            e.message
        })
    }

    const OK: &[(&str, &str)] = &[("awslogs-group", "/ecs/web"), ("awslogs-region", "us-east-1")];

    #[test]
    fn awslogs_takes_ecs_options_and_refuses_others_by_name() {
        assert_eq!(with("awslogs", OK), Ok(()));
        let full =
            [OK, &[("awslogs-stream-prefix", "web"), ("awslogs-create-group", "true"), ("mode", "non-blocking")]]
                .concat();
        assert_eq!(with("awslogs", &full), Ok(()));
        assert_eq!(
            with("awslogs", &[("awslogs-region", "us-east-1")]),
            Err("Log driver awslogs option 'awslogs-group' should not be null or empty.".into())
        );
        assert_eq!(
            with("awslogs", &[("awslogs-group", "g")]),
            Err("Log driver awslogs option 'awslogs-region' should not be null or empty.".into())
        );
        assert_eq!(
            with("awslogs", &[OK, &[("awslogs-create-group", "false")]].concat()),
            Err("Log driver awslogs option 'awslogs-create-group' should only be set to 'true', else omit option."
                .into())
        );
        assert_eq!(
            with("awslogs", &[OK, &[("awslogs-multiline-pattern", "^x"), ("awslogs-datetime-format", "%Y")]].concat()),
            Err("Log driver awslogs disallows options: awslogs-datetime-format, awslogs-multiline-pattern".into())
        );
        assert!(with("awslogs", &[("awslogs-group", "bad name"), ("awslogs-region", "r")])
            .unwrap_err()
            .contains("awslogs-group"));
        assert!(with("awslogs", &[OK, &[("awslogs-stream-prefix", "a:b")]].concat())
            .unwrap_err()
            .contains("stream-prefix"));
    }

    #[test]
    fn firelens_is_refused_and_docker_drivers_pass() {
        assert!(with("awsfirelens", &[]).unwrap_err().contains("no FireLens"));
        assert_eq!(with("json-file", &[("max-size", "10m")]), Ok(()));
        assert_eq!(with("syslog", &[("syslog-address", "udp://127.0.0.1:514")]), Ok(()));
    }
}
