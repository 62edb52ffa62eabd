//! Rules about one container definition: its name and image, health check, ulimits, timeouts,
//! and the volumes it mounts from the task or from other containers.
//!
//! Resource rules (cpu, memory) live in `task_size` because they are judged against the task
//! size; port mappings and links live in `network`; `dependsOn` lives in `dependencies`.

use super::{is_valid_name, listed, name_of, RuleError, TaskDef};
use crate::{ContainerDefinition, HealthCheck};

/// The longest image reference ECS accepts (before any `@digest`).
pub const MAX_IMAGE_LEN: usize = 255;
/// Fargate's ceiling for `stopTimeout`, in seconds.
pub const FARGATE_MAX_STOP_TIMEOUT: i32 = 120;

/// Name and image: checked for every container before anything refers to containers by name.
pub(crate) fn check_identity(c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = c.name.as_deref().unwrap_or("");
    if name.is_empty() {
        return Err(RuleError::client("Container.name should not be null or empty."));
    }
    if !is_valid_name(name) {
        return Err(RuleError::client("Container.name contains invalid characters."));
    }
    check_image(name, c.image.as_deref().unwrap_or(""))
}

fn check_image(name: &str, image: &str) -> Result<(), RuleError> {
    if image.is_empty() {
        return Err(RuleError::client("Container.image should not be null or empty."));
    }
    // For digest references the length limit covers only what precedes the `@`.
    let (reference, digest) = match image.split_once('@') {
        Some((reference, digest)) => (reference, Some(digest)),
        None => (image, None),
    };
    if reference.len() > MAX_IMAGE_LEN {
        return Err(RuleError::client(format!(
            "Invalid 'image' setting for container '{name}'. Up to {MAX_IMAGE_LEN} characters are \
             allowed."
        )));
    }
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || "-_:./#".contains(ch);
    if !reference.chars().all(allowed) {
        return Err(RuleError::client(format!(
            "Invalid 'image' setting for container '{name}'. Only letters, numbers, hyphens, \
             underscores, colons, periods, forward slashes, and number signs are allowed."
        )));
    }
    if let Some(digest) = digest {
        let hash = digest.strip_prefix("sha256:").unwrap_or("");
        if hash.len() != 64 || !hash.chars().all(|ch| ch.is_ascii_hexdigit()) {
            return Err(RuleError::client(format!(
                "Invalid 'image' setting for container '{name}'. The digest must be sha256: \
                 followed by 64 hexadecimal characters."
            )));
        }
    }
    Ok(())
}

/// Everything else about one container that needs no other container's resources.
pub(crate) fn check_settings(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = name_of(c);
    if let Some(hc) = &c.health_check {
        check_health_check(name, hc)?;
    }
    for ulimit in listed(&c.ulimits).unwrap_or_default() {
        if let (Some(soft), Some(hard)) = (ulimit.soft_limit, ulimit.hard_limit) {
            if soft > hard {
                let which = ulimit.name.as_deref().unwrap_or("null");
                return Err(RuleError::client(format!("Soft limit exceeds hard limit for ulimit {which}")));
            }
        }
    }
    check_timeouts(td, name, c)?;
    check_mount_points(td, c)?;
    check_volumes_from(td, c)
}

/// The documented bounds of each health check setting: (field, min, max).
const HEALTH_CHECK_RANGES: [(&str, i32, i32); 4] =
    [("interval", 5, 300), ("timeout", 2, 60), ("retries", 1, 10), ("startPeriod", 0, 300)];

fn check_health_check(name: &str, hc: &HealthCheck) -> Result<(), RuleError> {
    let command = hc.command.as_deref().unwrap_or_default();
    let runnable = matches!(command.first().map(String::as_str), Some("CMD" | "CMD-SHELL")) && command.len() > 1;
    if !runnable {
        return Err(RuleError::client(format!(
            "Invalid 'healthCheck' setting for container '{name}'. The command must start with CMD \
             or CMD-SHELL followed by the command to run."
        )));
    }
    let values = [hc.interval, hc.timeout, hc.retries, hc.start_period];
    for ((field, min, max), value) in HEALTH_CHECK_RANGES.into_iter().zip(values) {
        match value {
            Some(v) if v > max => {
                return Err(RuleError::client(format!(
                    "Health check {field} must be less than or equal to the maximum allowed value \
                     {max} for container '{name}'"
                )))
            }
            Some(v) if v < min => {
                return Err(RuleError::client(format!(
                    "Health check {field} must be greater than or equal to the minimum allowed \
                     value {min} for container '{name}'"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_timeouts(td: &TaskDef<'_>, name: &str, c: &ContainerDefinition) -> Result<(), RuleError> {
    if let Some(stop) = c.stop_timeout {
        if stop < 0 {
            return Err(RuleError::client(format!("Invalid 'stopTimeout' setting for container '{name}'.")));
        }
        if td.fargate && stop > FARGATE_MAX_STOP_TIMEOUT {
            return Err(RuleError::client(format!(
                "Invalid 'stopTimeout' setting for container '{name}'. The maximum allowed value \
                 on Fargate is {FARGATE_MAX_STOP_TIMEOUT} seconds."
            )));
        }
    }
    if c.start_timeout.is_some_and(|t| t < 0) {
        return Err(RuleError::client(format!("Invalid 'startTimeout' setting for container '{name}'.")));
    }
    Ok(())
}

fn check_mount_points(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let volumes = listed(&td.req.volumes).unwrap_or_default();
    for mount in listed(&c.mount_points).unwrap_or_default() {
        let source = mount.source_volume.as_deref();
        if !volumes.iter().any(|v| source.is_some() && v.name.as_deref() == source) {
            // ECS prints a missing sourceVolume as the Java null it is on their side.
            return Err(RuleError::client(format!("Unknown volume '{}'.", source.unwrap_or("null"))));
        }
    }
    Ok(())
}

fn check_volumes_from(td: &TaskDef<'_>, c: &ContainerDefinition) -> Result<(), RuleError> {
    let name = name_of(c);
    for from in listed(&c.volumes_from).unwrap_or_default() {
        let source = from.source_container.as_deref();
        if source == Some(name) {
            return Err(RuleError::client(format!(
                "Invalid 'volumesFrom' setting. Container '{name}' cannot mount volumes from \
                 itself."
            )));
        }
        if !source.is_some_and(|s| td.has_container(s)) {
            return Err(RuleError::client(format!(
                "Invalid 'volumesFrom' setting. Unknown container: '{}'",
                source.unwrap_or("null")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::{ContainerDefinition, HealthCheck, MountPoint, Ulimit, Volume, VolumeFrom};

    fn with(f: impl FnOnce(&mut ContainerDefinition)) -> crate::RegisterTaskDefinitionRequest {
        let mut c = container("web");
        f(&mut c);
        ec2_task(vec![c, container("sidecar")])
    }

    #[test]
    fn container_name_is_required_and_follows_the_pattern() {
        let long = "n".repeat(256);
        let cases: &[(Option<&str>, &str)] = &[
            (None, "Container.name should not be null or empty."),
            (Some(""), "Container.name should not be null or empty."),
            (Some("my app"), "Container.name contains invalid characters."),
            (Some("app.v1"), "Container.name contains invalid characters."),
            (Some(long.as_str()), "Container.name contains invalid characters."),
        ];
        for (name, msg) in cases {
            assert_client(&with(|c| c.name = name.map(Into::into)), msg);
        }
    }

    #[test]
    fn image_rules() {
        let digest = format!("repo/app@sha256:{}", "a1".repeat(32));
        let long_with_digest = format!("{}@sha256:{}", "r".repeat(255), "0".repeat(64));
        let too_long = "r".repeat(256);
        let chars = "Invalid 'image' setting for container 'web'. Only letters, numbers, hyphens, \
                     underscores, colons, periods, forward slashes, and number signs are allowed.";
        let bad_digest = "Invalid 'image' setting for container 'web'. The digest must be sha256: \
                          followed by 64 hexadecimal characters.";
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("nginx"), None),
            (Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1.2_3"), None),
            (Some("localhost:5000/team/app#build"), None),
            (Some(digest.as_str()), None),
            (Some(long_with_digest.as_str()), None),
            (None, Some("Container.image should not be null or empty.")),
            (Some(""), Some("Container.image should not be null or empty.")),
            (
                Some(too_long.as_str()),
                Some(
                    "Invalid 'image' setting for container 'web'. Up to 255 characters are \
                     allowed.",
                ),
            ),
            (Some("nginx latest"), Some(chars)),
            (Some("nginx:$TAG"), Some(chars)),
            (Some("app@md5:abc"), Some(bad_digest)),
            (Some("app@sha256:abc"), Some(bad_digest)),
        ];
        for (image, expected) in cases {
            let req = with(|c| c.image = image.map(Into::into));
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }

    fn health(command: &[&str]) -> HealthCheck {
        HealthCheck { command: Some(command.iter().map(|s| s.to_string()).collect()), ..Default::default() }
    }

    #[test]
    fn health_check_command_must_start_with_cmd_or_cmd_shell() {
        let bad = "Invalid 'healthCheck' setting for container 'web'. The command must start with \
                   CMD or CMD-SHELL followed by the command to run.";
        let cases: &[(&[&str], bool)] = &[
            (&["CMD-SHELL", "curl -f http://localhost/ || exit 1"], true),
            (&["CMD", "/bin/check", "--fast"], true),
            (&[], false),
            (&["CMD"], false),
            (&["SHELL", "true"], false),
            (&["curl", "-f", "http://localhost/"], false),
            (&["NONE"], false),
        ];
        for (command, ok) in cases {
            let req = with(|c| c.health_check = Some(health(command)));
            if *ok {
                assert_ok(&req);
            } else {
                assert_client(&req, bad);
            }
        }
    }

    #[test]
    fn health_check_settings_stay_within_their_ranges() {
        let over = |f: &str, max: i32| {
            format!(
                "Health check {f} must be less than or equal to the maximum allowed value {max} \
                 for container 'web'"
            )
        };
        let under = |f: &str, min: i32| {
            format!(
                "Health check {f} must be greater than or equal to the minimum allowed value {min} \
                 for container 'web'"
            )
        };
        type Set = fn(&mut HealthCheck, i32);
        let fields: [(&str, i32, i32, Set); 4] = [
            ("interval", 5, 300, |h, v| h.interval = Some(v)),
            ("timeout", 2, 60, |h, v| h.timeout = Some(v)),
            ("retries", 1, 10, |h, v| h.retries = Some(v)),
            ("startPeriod", 0, 300, |h, v| h.start_period = Some(v)),
        ];
        for (field, min, max, set) in fields {
            for (value, expected) in
                [(min, None), (max, None), (min - 1, Some(under(field, min))), (max + 1, Some(over(field, max)))]
            {
                let mut hc = health(&["CMD-SHELL", "true"]);
                set(&mut hc, value);
                let req = with(|c| c.health_check = Some(hc));
                match expected {
                    None => assert_ok(&req),
                    Some(msg) => assert_client(&req, &msg),
                }
            }
        }
    }

    #[test]
    fn ulimit_soft_limit_cannot_exceed_hard_limit() {
        let ulimit =
            |soft, hard| Ulimit { name: Some("nofile".into()), soft_limit: Some(soft), hard_limit: Some(hard) };
        assert_ok(&with(|c| c.ulimits = Some(vec![ulimit(1024, 4096)])));
        assert_ok(&with(|c| c.ulimits = Some(vec![ulimit(4096, 4096)])));
        assert_client(
            &with(|c| c.ulimits = Some(vec![ulimit(8192, 4096)])),
            "Soft limit exceeds hard limit for ulimit nofile",
        );
    }

    #[test]
    fn stop_and_start_timeouts() {
        assert_ok(&with(|c| c.stop_timeout = Some(0)));
        assert_ok(&with(|c| c.stop_timeout = Some(600)));
        assert_client(&with(|c| c.stop_timeout = Some(-1)), "Invalid 'stopTimeout' setting for container 'web'.");
        assert_ok(&with(|c| c.start_timeout = Some(120)));
        assert_client(&with(|c| c.start_timeout = Some(-5)), "Invalid 'startTimeout' setting for container 'web'.");

        let fargate = |stop| {
            let mut c = container("web");
            c.stop_timeout = Some(stop);
            fargate_task(vec![c])
        };
        assert_ok(&fargate(120));
        assert_client(
            &fargate(121),
            "Invalid 'stopTimeout' setting for container 'web'. The maximum allowed value on \
             Fargate is 120 seconds.",
        );
    }

    #[test]
    fn mount_points_must_name_a_declared_volume() {
        let mount = |source: Option<&str>| MountPoint {
            source_volume: source.map(Into::into),
            container_path: Some("/data".into()),
            read_only: None,
        };
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("data"), None),
            (Some("logs"), Some("Unknown volume 'logs'.")),
            (None, Some("Unknown volume 'null'.")),
        ];
        for (source, expected) in cases {
            let mut req = with(|c| c.mount_points = Some(vec![mount(*source)]));
            req.volumes = Some(vec![Volume { name: Some("data".into()), ..Default::default() }]);
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
        // Without any declared volume every mount point is unknown.
        assert_client(&with(|c| c.mount_points = Some(vec![mount(Some("data"))])), "Unknown volume 'data'.");
    }

    #[test]
    fn volumes_from_must_name_another_container() {
        let from = |source: Option<&str>| VolumeFrom { source_container: source.map(Into::into), read_only: None };
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (Some("sidecar"), None),
            (Some("ghost"), Some("Invalid 'volumesFrom' setting. Unknown container: 'ghost'")),
            (None, Some("Invalid 'volumesFrom' setting. Unknown container: 'null'")),
            (
                Some("web"),
                Some(
                    "Invalid 'volumesFrom' setting. Container 'web' cannot mount volumes from \
                     itself.",
                ),
            ),
        ];
        for (source, expected) in cases {
            let req = with(|c| c.volumes_from = Some(vec![from(*source)]));
            match expected {
                None => assert_ok(&req),
                Some(msg) => assert_client(&req, msg),
            }
        }
    }
}
