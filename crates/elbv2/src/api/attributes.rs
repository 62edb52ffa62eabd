//! Load balancer and target group attributes: the full default set each kind has (Describe
//! returns all of it, so Terraform's plans stay stable), and the values Modify accepts.
//!
//! A key Flotilla does not have is refused as `Load balancer attribute key 'X' is not
//! recognized` / `Target group attribute key 'X' is not recognized`: Terraform's provider
//! recognizes that wording and skips the key. A known key set to a value Flotilla cannot honour
//! (access logs on, slow start) is refused in other words, so the refusal is not skipped.

use std::collections::BTreeMap;

use flotilla_endpoints::elb::{LoadBalancerType, TargetType};
use flotilla_query::{Params, QueryError};

use super::errors::{not_one_of, validation};
use super::Result;

/// What values a key takes.
#[derive(Clone, Copy)]
enum Values {
    Bool,
    Int(i64, i64),
    OneOf(&'static [&'static str]),
    /// Only this value: Flotilla cannot do what others would ask for (the reason says why).
    Only(&'static str, &'static str),
    Any,
}

type Table = &'static [(&'static str, &'static str, Values)];

const ACCESS_LOGS: &str = "Flotilla's load balancers write no logs to S3";

const APPLICATION: Table = &[
    ("access_logs.s3.enabled", "false", Values::Only("false", ACCESS_LOGS)),
    ("access_logs.s3.bucket", "", Values::Any),
    ("access_logs.s3.prefix", "", Values::Any),
    ("connection_logs.s3.enabled", "false", Values::Only("false", ACCESS_LOGS)),
    ("connection_logs.s3.bucket", "", Values::Any),
    ("connection_logs.s3.prefix", "", Values::Any),
    ("deletion_protection.enabled", "false", Values::Bool),
    ("idle_timeout.timeout_seconds", "60", Values::Int(1, 4000)),
    ("client_keep_alive.seconds", "3600", Values::Int(60, 604_800)),
    ("routing.http2.enabled", "true", Values::Bool),
    ("routing.http.desync_mitigation_mode", "defensive", Values::OneOf(&["monitor", "defensive", "strictest"])),
    ("routing.http.drop_invalid_header_fields.enabled", "false", Values::Bool),
    ("routing.http.preserve_host_header.enabled", "false", Values::Bool),
    ("routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "false", Values::Bool),
    ("routing.http.xff_client_port.enabled", "false", Values::Bool),
    ("routing.http.xff_header_processing.mode", "append", Values::OneOf(&["append", "preserve", "remove"])),
    ("waf.fail_open.enabled", "false", Values::Bool),
    ("load_balancing.cross_zone.enabled", "true", Values::Bool),
    ("zonal_shift.config.enabled", "false", Values::Bool),
];

const NETWORK: Table = &[
    ("access_logs.s3.enabled", "false", Values::Only("false", ACCESS_LOGS)),
    ("access_logs.s3.bucket", "", Values::Any),
    ("access_logs.s3.prefix", "", Values::Any),
    ("deletion_protection.enabled", "false", Values::Bool),
    ("load_balancing.cross_zone.enabled", "false", Values::Bool),
    (
        "dns_record.client_routing_policy",
        "any_availability_zone",
        Values::OneOf(&["any_availability_zone", "availability_zone_affinity", "partial_availability_zone_affinity"]),
    ),
    ("zonal_shift.config.enabled", "false", Values::Bool),
];

const CROSS_ZONE: Values = Values::OneOf(&["true", "false", "use_load_balancer_configuration"]);

const GROUP_HEALTH: Table = &[
    ("target_group_health.dns_failover.minimum_healthy_targets.count", "1", Values::Any),
    ("target_group_health.dns_failover.minimum_healthy_targets.percentage", "off", Values::Any),
    ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.count", "1", Values::Any),
    ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage", "off", Values::Any),
];

const HTTP_GROUP: Table = &[
    ("deregistration_delay.timeout_seconds", "300", Values::Int(0, 3600)),
    ("stickiness.enabled", "false", Values::Bool),
    (
        "stickiness.type",
        "lb_cookie",
        Values::Only("lb_cookie", "Flotilla's load balancers have lb_cookie stickiness only"),
    ),
    ("stickiness.lb_cookie.duration_seconds", "86400", Values::Int(1, 604_800)),
    ("stickiness.app_cookie.cookie_name", "", Values::Any),
    ("stickiness.app_cookie.duration_seconds", "86400", Values::Int(1, 604_800)),
    ("load_balancing.algorithm.type", "round_robin", Values::OneOf(&["round_robin", "least_outstanding_requests"])),
    (
        "load_balancing.algorithm.anomaly_mitigation",
        "off",
        Values::Only("off", "anomaly mitigation needs the weighted_random algorithm, which Flotilla does not have"),
    ),
    ("load_balancing.cross_zone.enabled", "use_load_balancer_configuration", CROSS_ZONE),
    ("slow_start.duration_seconds", "0", Values::Only("0", "Flotilla's load balancers have no slow start")),
];

const TCP_GROUP: Table = &[
    ("deregistration_delay.timeout_seconds", "300", Values::Int(0, 3600)),
    ("deregistration_delay.connection_termination.enabled", "false", Values::Bool),
    ("stickiness.enabled", "false", Values::Bool),
    ("stickiness.type", "source_ip", Values::Only("source_ip", "network load balancers stick by source_ip only")),
    (
        "proxy_protocol_v2.enabled",
        "false",
        Values::Only("false", "Flotilla's load balancers do not send the PROXY protocol"),
    ),
    // The default depends on the target type: see `target_group_defaults`.
    ("preserve_client_ip.enabled", "false", Values::Bool),
    ("load_balancing.cross_zone.enabled", "use_load_balancer_configuration", CROSS_ZONE),
    ("target_health_state.unhealthy.connection_termination.enabled", "true", Values::Bool),
    ("target_health_state.unhealthy.draining_interval_seconds", "0", Values::Int(0, 360_000)),
];

fn lb_table(kind: LoadBalancerType) -> Table {
    match kind {
        LoadBalancerType::Application => APPLICATION,
        LoadBalancerType::Network => NETWORK,
    }
}

fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

fn tg_tables(protocol: &str) -> [Table; 2] {
    [if is_http(protocol) { HTTP_GROUP } else { TCP_GROUP }, GROUP_HEALTH]
}

fn defaults_of(tables: &[Table]) -> BTreeMap<String, String> {
    tables.iter().flat_map(|t| t.iter()).map(|(k, v, _)| (k.to_string(), v.to_string())).collect()
}

pub fn load_balancer_defaults(kind: LoadBalancerType) -> BTreeMap<String, String> {
    defaults_of(&[lb_table(kind)])
}

pub fn target_group_defaults(protocol: &str, target_type: TargetType) -> BTreeMap<String, String> {
    let mut out = defaults_of(&tg_tables(protocol));
    if !is_http(protocol) {
        // NLBs preserve client addresses for instance targets and not for ip targets.
        out.insert("preserve_client_ip.enabled".into(), (target_type == TargetType::Instance).to_string());
    }
    out
}

/// `Attributes.member.N.{Key,Value}`, at least one.
fn requested(p: &Params) -> Result<Vec<(String, String)>> {
    let entries = p.structs("Attributes")?;
    if entries.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Attributes"));
    }
    entries
        .iter()
        .map(|a| Ok((a.required("Key")?.to_string(), a.get("Value").unwrap_or_default().to_string())))
        .collect()
}

fn check(what: &str, key: &str, value: &str, values: Values) -> Result<()> {
    match values {
        Values::Bool if value == "true" || value == "false" => Ok(()),
        Values::Bool => {
            Err(validation(format!("The value of {what} attribute '{key}' must be true or false, not '{value}'")))
        }
        Values::Int(min, max) => match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(validation(format!(
                "The value of {what} attribute '{key}' must be an integer from {min} to {max}, not '{value}'"
            ))),
        },
        Values::OneOf(allowed) if allowed.contains(&value) => Ok(()),
        Values::OneOf(allowed) => Err(not_one_of(key, value, allowed)),
        Values::Only(only, _) if value == only => Ok(()),
        Values::Only(_, why) => {
            Err(validation(format!("The value '{value}' of {what} attribute '{key}' cannot be used: {why}")))
        }
        Values::Any => Ok(()),
    }
}

fn modify(what: &str, label: &str, tables: &[Table], current: &mut BTreeMap<String, String>, p: &Params) -> Result<()> {
    for (key, value) in requested(p)? {
        let Some((_, _, values)) = tables.iter().flat_map(|t| t.iter()).find(|(k, _, _)| *k == key) else {
            return Err(validation(format!("{label} attribute key '{key}' is not recognized")));
        };
        check(what, &key, &value, *values)?;
        current.insert(key, value);
    }
    Ok(())
}

/// Applies ModifyLoadBalancerAttributes' `Attributes` to `current`.
pub fn modify_load_balancer(kind: LoadBalancerType, current: &mut BTreeMap<String, String>, p: &Params) -> Result<()> {
    modify("load balancer", "Load balancer", &[lb_table(kind)], current, p)
}

/// Applies ModifyTargetGroupAttributes' `Attributes` to `current`.
pub fn modify_target_group(protocol: &str, current: &mut BTreeMap<String, String>, p: &Params) -> Result<()> {
    modify("target group", "Target group", &tg_tables(protocol), current, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DIALECT;

    #[test]
    fn defaults_are_complete_per_kind() {
        let http = target_group_defaults("HTTP", TargetType::Ip);
        assert_eq!(http["deregistration_delay.timeout_seconds"], "300");
        assert_eq!(http["stickiness.type"], "lb_cookie");
        assert_eq!(http["load_balancing.algorithm.type"], "round_robin");
        assert!(!http.contains_key("proxy_protocol_v2.enabled"));
        let tcp = target_group_defaults("TCP", TargetType::Instance);
        assert_eq!(
            (tcp["stickiness.type"].as_str(), tcp["preserve_client_ip.enabled"].as_str()),
            ("source_ip", "true")
        );
        assert_eq!(target_group_defaults("TCP", TargetType::Ip)["preserve_client_ip.enabled"], "false");
        assert_eq!(load_balancer_defaults(LoadBalancerType::Application)["idle_timeout.timeout_seconds"], "60");
        assert!(!load_balancer_defaults(LoadBalancerType::Network).contains_key("idle_timeout.timeout_seconds"));
    }

    #[test]
    fn unknown_keys_use_the_wording_terraform_skips() {
        let mut attrs = target_group_defaults("HTTP", TargetType::Ip);
        let p = Params::from_pairs(
            DIALECT,
            [("Attributes.member.1.Key", "lambda.multi_value_headers.enabled"), ("Attributes.member.1.Value", "true")],
        );
        let e = modify_target_group("HTTP", &mut attrs, &p).unwrap_err();
        assert_eq!(e.message, "Target group attribute key 'lambda.multi_value_headers.enabled' is not recognized");
        let mut lb = load_balancer_defaults(LoadBalancerType::Network);
        let p = Params::from_pairs(
            DIALECT,
            [("Attributes.member.1.Key", "idle_timeout.timeout_seconds"), ("Attributes.member.1.Value", "5")],
        );
        let e = modify_load_balancer(LoadBalancerType::Network, &mut lb, &p).unwrap_err();
        assert_eq!(e.message, "Load balancer attribute key 'idle_timeout.timeout_seconds' is not recognized");
    }

    #[test]
    fn values_are_checked_and_applied() {
        let mut attrs = target_group_defaults("HTTP", TargetType::Ip);
        let p = Params::from_pairs(
            DIALECT,
            [
                ("Attributes.member.1.Key", "deregistration_delay.timeout_seconds"),
                ("Attributes.member.1.Value", "5"),
                ("Attributes.member.2.Key", "load_balancing.algorithm.type"),
                ("Attributes.member.2.Value", "least_outstanding_requests"),
            ],
        );
        modify_target_group("HTTP", &mut attrs, &p).unwrap();
        assert_eq!(attrs["deregistration_delay.timeout_seconds"], "5");
        for (k, v) in [
            ("deregistration_delay.timeout_seconds", "3601"),
            ("slow_start.duration_seconds", "30"),
            ("stickiness.enabled", "yes"),
        ] {
            let p = Params::from_pairs(DIALECT, [("Attributes.member.1.Key", k), ("Attributes.member.1.Value", v)]);
            let e = modify_target_group("HTTP", &mut attrs, &p).unwrap_err();
            assert_eq!(e.code, "ValidationError");
            assert!(!e.message.contains("not recognized"), "{}", e.message);
        }
    }
}
