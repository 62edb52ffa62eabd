//! The `ECS_*` settings a launch template's user data gives the host's agent, read as the ECS
//! agent reads `/etc/ecs/ecs.config`. User data is usually a shell script that appends the lines
//! (`echo "ECS_CLUSTER=demo" >> /etc/ecs/ecs.config`), or the lines themselves; both are read.

use std::collections::BTreeMap;
use std::time::Duration;

/// The settings Flotilla acts on, and every `ECS_*` pair as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsConfig {
    /// `ECS_CLUSTER`; the agent joins `default` when absent.
    pub cluster: Option<String>,
    /// `ECS_ENABLE_SPOT_INSTANCE_DRAINING=true`: a Spot interruption notice drains the instance.
    pub spot_instance_draining: bool,
    /// `ECS_CONTAINER_STOP_TIMEOUT` (`90s`, `2m`, `1m30s`); the agent's default when absent.
    pub container_stop_timeout: Option<Duration>,
    /// `ECS_RESERVED_MEMORY` in MiB, kept from the memory the instance registers.
    pub reserved_memory_mib: u32,
    /// `ECS_INSTANCE_ATTRIBUTES`, a JSON object of custom attributes.
    pub instance_attributes: BTreeMap<String, String>,
    /// Every `ECS_*` setting found, last one wins.
    pub all: BTreeMap<String, String>,
}

/// Why a setting could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Reads the `ECS_*` settings out of user data (already base64-decoded).
pub fn parse(user_data: &str) -> Result<EcsConfig, ConfigError> {
    let mut all = BTreeMap::new();
    for line in user_data.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = setting_in(line) {
            all.insert(k, v);
        }
    }
    let mut cfg = EcsConfig::default();
    for (k, v) in &all {
        match k.as_str() {
            "ECS_CLUSTER" => cfg.cluster = Some(v.clone()).filter(|c| !c.is_empty()),
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING" => cfg.spot_instance_draining = v.eq_ignore_ascii_case("true"),
            "ECS_CONTAINER_STOP_TIMEOUT" => cfg.container_stop_timeout = Some(duration(k, v)?),
            "ECS_RESERVED_MEMORY" => {
                cfg.reserved_memory_mib = v.parse().map_err(|_| ConfigError {
                    setting: k.clone(),
                    message: format!("'{v}' is not a whole number of MiB"),
                })?
            }
            "ECS_INSTANCE_ATTRIBUTES" => {
                cfg.instance_attributes = serde_json::from_str(v).map_err(|e| ConfigError {
                    setting: k.clone(),
                    message: format!("is not a JSON object of strings: {e}"),
                })?
            }
            _ => {}
        }
    }
    cfg.all = all;
    Ok(cfg)
}

/// The `ECS_NAME=value` a line sets, with shell quotes and redirections taken off.
fn setting_in(line: &str) -> Option<(String, String)> {
    let start = line.find("ECS_")?;
    let rest = &line[start..];
    let eq = rest.find('=')?;
    let key = &rest[..eq];
    if !key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return None;
    }
    let mut value = &rest[eq + 1..];
    // `echo "ECS_X=v" >> /etc/ecs/ecs.config`: the quote opened before the key closes the value.
    let quote = line[..start].chars().last().filter(|c| *c == '"' || *c == '\'');
    value = match quote {
        Some(q) => value.split(q).next().unwrap_or(value),
        None => value.split(">>").next().unwrap_or(value).trim_end(),
    };
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    Some((key.to_string(), value.to_string()))
}

/// `90s`, `2m`, `1m30s`, `1h`, or a bare number of seconds.
fn duration(setting: &str, v: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError {
        setting: setting.to_string(),
        message: format!("'{v}' is not a duration such as 30s, 2m or 1m30s"),
    };
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (mut total, mut digits) = (0u64, String::new());
    for c in v.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| err())?;
        digits.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => return Err(err()),
        };
    }
    if !digits.is_empty() || v.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workshop_user_data() {
        let ud = "#!/bin/bash\necho \"ECS_CLUSTER=EcsSpotWorkshop\" >> /etc/ecs/ecs.config\n\
                  echo 'ECS_ENABLE_SPOT_INSTANCE_DRAINING=true' >> /etc/ecs/ecs.config\n\
                  echo ECS_CONTAINER_STOP_TIMEOUT=90s >> /etc/ecs/ecs.config\n\
                  ECS_RESERVED_MEMORY=256\n\
                  ECS_INSTANCE_ATTRIBUTES={\"stack\":\"blue\"}\n";
        let c = parse(ud).unwrap();
        assert_eq!(c.cluster.as_deref(), Some("EcsSpotWorkshop"));
        assert!(c.spot_instance_draining);
        assert_eq!(c.container_stop_timeout, Some(Duration::from_secs(90)));
        assert_eq!(c.reserved_memory_mib, 256);
        assert_eq!(c.instance_attributes.get("stack").map(String::as_str), Some("blue"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert_eq!(parse("ECS_CONTAINER_STOP_TIMEOUT=soon").unwrap_err().setting, "ECS_CONTAINER_STOP_TIMEOUT");
        assert_eq!(parse("ECS_RESERVED_MEMORY=-1").unwrap_err().setting, "ECS_RESERVED_MEMORY");
        assert_eq!(duration("x", "1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse("").unwrap().cluster.is_none());
    }
}
