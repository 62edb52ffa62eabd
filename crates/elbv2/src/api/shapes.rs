//! The records as ELBv2 describes them: `LoadBalancer`, `TargetGroup`, `Listener`, `Rule`,
//! attribute lists and tags, written in the model's member names.

use std::collections::BTreeMap;

use flotilla_endpoints::elb::{Listener, LoadBalancer, LoadBalancerType, Rule, TargetGroup};
use flotilla_endpoints::Tag;
use flotilla_query::Xml;

use super::{actions, arns, conditions};

pub fn lb_type(kind: LoadBalancerType) -> &'static str {
    match kind {
        LoadBalancerType::Application => "application",
        LoadBalancerType::Network => "network",
    }
}

/// The hosted zone id load balancers of a region share (a Route 53 alias target needs one).
pub fn hosted_zone_id(region: &str) -> String {
    let hex = flotilla_hosts::network::stable_hex17(&format!("{region}/elb-zone"));
    format!("Z{}", hex[..13].to_ascii_uppercase())
}

pub fn load_balancer(x: &mut Xml, lb: &LoadBalancer, region: &str) {
    x.leaf("LoadBalancerArn", &lb.arn)
        .leaf("DNSName", &lb.dns_name)
        .leaf("CanonicalHostedZoneId", hosted_zone_id(region))
        .leaf("CreatedTime", flotilla_model::timestamp::rfc3339_millis(lb.created_at_ms))
        .leaf("LoadBalancerName", &lb.name)
        .leaf("Scheme", &lb.scheme)
        .opt_leaf("VpcId", lb.vpc_id.as_ref())
        .elem("State", |x| {
            x.leaf("Code", &lb.state);
        })
        .leaf("Type", lb_type(lb.kind))
        .list("AvailabilityZones", "member", &lb.zones, |x, (zone, subnet)| {
            x.leaf("ZoneName", zone).leaf("SubnetId", subnet).elem("LoadBalancerAddresses", |_| {});
        });
    if lb.kind == LoadBalancerType::Application || !lb.security_groups.is_empty() {
        x.string_list("SecurityGroups", "member", &lb.security_groups);
    }
    x.leaf("IpAddressType", &lb.ip_address_type);
}

pub fn target_group(x: &mut Xml, tg: &TargetGroup) {
    let hc = &tg.health_check;
    x.leaf("TargetGroupArn", &tg.arn)
        .leaf("TargetGroupName", &tg.name)
        .opt_leaf("Protocol", tg.protocol.as_ref())
        .opt_leaf("Port", tg.port.map(|p| p.to_string()))
        .opt_leaf("VpcId", tg.vpc_id.as_ref())
        .leaf("HealthCheckProtocol", &hc.protocol)
        .leaf("HealthCheckPort", &hc.port)
        .leaf("HealthCheckEnabled", if hc.enabled { "true" } else { "false" })
        .leaf("HealthCheckIntervalSeconds", hc.interval_seconds.to_string())
        .leaf("HealthCheckTimeoutSeconds", hc.timeout_seconds.to_string())
        .leaf("HealthyThresholdCount", hc.healthy_threshold.to_string())
        .leaf("UnhealthyThresholdCount", hc.unhealthy_threshold.to_string())
        .opt_leaf("HealthCheckPath", hc.path.as_ref());
    if let Some(code) = &hc.matcher {
        x.elem("Matcher", |x| {
            x.leaf("HttpCode", code);
        });
    }
    x.string_list("LoadBalancerArns", "member", &tg.load_balancer_arns)
        .leaf("TargetType", tg.target_type.as_str())
        .opt_leaf("ProtocolVersion", tg.protocol_version.as_ref())
        .leaf("IpAddressType", "ipv4");
}

pub fn listener(x: &mut Xml, l: &Listener) {
    x.leaf("ListenerArn", &l.arn)
        .leaf("LoadBalancerArn", &l.load_balancer_arn)
        .leaf("Port", l.port.to_string())
        .leaf("Protocol", &l.protocol);
    actions::write(x, "DefaultActions", &l.default_actions);
}

pub fn rule(x: &mut Xml, r: &Rule) {
    x.leaf("RuleArn", &r.arn).leaf("Priority", r.priority.to_string());
    conditions::write(x, &r.conditions);
    actions::write(x, "Actions", &r.actions);
    x.leaf("IsDefault", "false");
}

/// A listener's default rule, as DescribeRules lists it last.
pub fn default_rule(x: &mut Xml, l: &Listener) {
    x.leaf("RuleArn", arns::rule_arn(&l.arn, &arns::default_rule_id(&l.id))).leaf("Priority", "default");
    conditions::write(x, &[]);
    actions::write(x, "Actions", &l.default_actions);
    x.leaf("IsDefault", "true");
}

pub fn attributes(x: &mut Xml, attributes: &BTreeMap<String, String>) {
    x.list("Attributes", "member", attributes, |x, (k, v)| {
        x.leaf("Key", k).leaf("Value", v);
    });
}

pub fn tags(x: &mut Xml, tags: &[Tag]) {
    x.list("Tags", "member", tags, |x, t| {
        x.leaf("Key", &t.key).leaf("Value", &t.value);
    });
}
