//! ELBv2's ARNs, exactly as AWS shapes them (Terraform derives names and suffixes from them):
//! `loadbalancer/app|net/NAME/ID`, `targetgroup/NAME/ID`, `listener/app|net/LB/LBID/ID` and
//! `listener-rule/app|net/LB/LBID/LISTENERID/ID`; and reading the ids back out of them.

use flotilla_endpoints::elb::LoadBalancerType;
use flotilla_model::arn::ArnScope;

use super::errors::bad_arn;
use super::Result;

fn prefix(scope: &ArnScope) -> String {
    format!("arn:{}:elasticloadbalancing:{}:{}:", scope.partition, scope.region, scope.account)
}

/// `app` or `net`, as ARNs abbreviate the type.
pub fn kind_segment(kind: LoadBalancerType) -> &'static str {
    match kind {
        LoadBalancerType::Application => "app",
        LoadBalancerType::Network => "net",
    }
}

pub fn load_balancer_arn(scope: &ArnScope, kind: LoadBalancerType, name: &str, id: &str) -> String {
    format!("{}loadbalancer/{}/{name}/{id}", prefix(scope), kind_segment(kind))
}

pub fn target_group_arn(scope: &ArnScope, name: &str, id: &str) -> String {
    format!("{}targetgroup/{name}/{id}", prefix(scope))
}

/// A listener's ARN from its load balancer's.
pub fn listener_arn(load_balancer_arn: &str, id: &str) -> String {
    format!("{}/{id}", load_balancer_arn.replacen(":loadbalancer/", ":listener/", 1))
}

/// A rule's ARN from its listener's.
pub fn rule_arn(listener_arn: &str, id: &str) -> String {
    format!("{}/{id}", listener_arn.replacen(":listener/", ":listener-rule/", 1))
}

/// The path segments after `resource/` of an ELBv2 ARN of that resource type.
fn segments<'a>(arn: &'a str, resource: &str, what: &str) -> Result<Vec<&'a str>> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6 && parts[0] == "arn" && parts[2] == "elasticloadbalancing";
    let path = if ok { parts[5].strip_prefix(resource).and_then(|r| r.strip_prefix('/')) } else { None };
    let segs: Vec<&str> = path.map(|p| p.split('/').collect()).unwrap_or_default();
    if segs.is_empty() || segs.iter().any(|s| s.is_empty()) {
        return Err(bad_arn(arn, what));
    }
    Ok(segs)
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The id of a load balancer from its ARN.
pub fn load_balancer_id(arn: &str) -> Result<String> {
    match segments(arn, "loadbalancer", "load balancer")?.as_slice() {
        [_kind, _name, id] if is_id(id) => Ok(id.to_string()),
        _ => Err(bad_arn(arn, "load balancer")),
    }
}

pub fn target_group_id(arn: &str) -> Result<String> {
    match segments(arn, "targetgroup", "target group")?.as_slice() {
        [_name, id] if is_id(id) => Ok(id.to_string()),
        _ => Err(bad_arn(arn, "target group")),
    }
}

/// `(load balancer id, listener id)` from a listener's ARN.
pub fn listener_ids(arn: &str) -> Result<(String, String)> {
    match segments(arn, "listener", "listener")?.as_slice() {
        [_kind, _name, lb, id] if is_id(lb) && is_id(id) => Ok((lb.to_string(), id.to_string())),
        _ => Err(bad_arn(arn, "listener")),
    }
}

/// `(load balancer id, listener id, rule id)` from a rule's ARN.
pub fn rule_ids(arn: &str) -> Result<(String, String, String)> {
    match segments(arn, "listener-rule", "rule")?.as_slice() {
        [_kind, _name, lb, listener, id] if is_id(lb) && is_id(listener) && is_id(id) => {
            Ok((lb.to_string(), listener.to_string(), id.to_string()))
        }
        _ => Err(bad_arn(arn, "rule")),
    }
}

/// The ARN of the listener a rule's ARN is under.
pub fn listener_arn_from_rule(rule_arn: &str) -> String {
    let base = rule_arn.rsplit_once('/').map(|(b, _)| b).unwrap_or(rule_arn);
    base.replacen(":listener-rule/", ":listener/", 1)
}

/// The id of a listener's default rule, which has no record of its own: derived from the
/// listener's id so its ARN stays the same across calls.
pub fn default_rule_id(listener_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("default-rule/{listener_id}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_round_trip_to_their_ids() {
        let scope = ArnScope::new("us-east-1", "123456789012");
        let lb = load_balancer_arn(&scope, LoadBalancerType::Application, "web", "0123456789abcdef");
        assert_eq!(lb, "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef");
        assert_eq!(load_balancer_id(&lb).unwrap(), "0123456789abcdef");
        let l = listener_arn(&lb, "1111222233334444");
        assert_eq!(
            l,
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0123456789abcdef/1111222233334444"
        );
        assert_eq!(listener_ids(&l).unwrap(), ("0123456789abcdef".into(), "1111222233334444".into()));
        let r = rule_arn(&l, "aaaabbbbccccdddd");
        assert!(r.contains(":listener-rule/app/web/0123456789abcdef/1111222233334444/aaaabbbbccccdddd"));
        assert_eq!(rule_ids(&r).unwrap().2, "aaaabbbbccccdddd");
        let tg = target_group_arn(&scope, "tg", "ffff000011112222");
        assert_eq!(tg, "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/ffff000011112222");
        assert_eq!(target_group_id(&tg).unwrap(), "ffff000011112222");
    }

    #[test]
    fn arns_of_the_wrong_kind_are_validation_errors() {
        for bad in ["", "nope", "arn:aws:ecs:us-east-1:1:cluster/x", "arn:aws:elasticloadbalancing:r:a:targetgroup/x"] {
            assert_eq!(target_group_id(bad).unwrap_err().code, "ValidationError", "{bad}");
            assert_eq!(load_balancer_id(bad).unwrap_err().code, "ValidationError", "{bad}");
        }
        let lb = "arn:aws:elasticloadbalancing:r:a:loadbalancer/app/x/abc";
        assert!(listener_ids(lb).is_err() && rule_ids(lb).is_err());
        assert_ne!(default_rule_id("a"), default_rule_id("b"));
        assert_eq!(default_rule_id("a").len(), 16);
    }
}
