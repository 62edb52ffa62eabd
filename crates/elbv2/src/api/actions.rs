//! Listener and rule actions: `forward` (a `TargetGroupArn`, or a `ForwardConfig` of weighted
//! groups with group stickiness), `fixed-response` and `redirect`, read from a request
//! (`DefaultActions.member.N` / `Actions.member.N`) and written back as AWS describes them: a
//! forward to one group carries both its `TargetGroupArn` and the `ForwardConfig` form.
//! Whether the groups exist and suit the load balancer is checked where the write happens
//! ([`super::routing`]).

use flotilla_endpoints::elb::{Action, WeightedGroup};
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{not_one_of, out_of_range, validation};
use super::Result;

const TYPES: &[&str] = &["forward", "authenticate-oidc", "authenticate-cognito", "redirect", "fixed-response"];
const CONTENT_TYPES: &[&str] = &["text/plain", "text/css", "text/html", "application/javascript", "application/json"];
/// Target groups one forward action may name.
const MAX_FORWARD_GROUPS: usize = 5;

fn lower(name: &str) -> String {
    let mut c = name.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

/// The actions of list `name` (`DefaultActions` or `Actions`), in their `Order`.
pub fn parse(p: &Params, name: &str) -> Result<Vec<Action>> {
    let entries = p.structs(name)?;
    if entries.is_empty() {
        return Err(QueryError::missing(p.dialect(), &p.name_of(name)));
    }
    let mut ordered: Vec<(i64, usize, Action)> = Vec::new();
    for (i, a) in entries.iter().enumerate() {
        let order = match a.int::<i64>("Order")? {
            Some(o) if !(1..=50_000).contains(&o) => return Err(out_of_range(&a.name_of("Order"), o, 1, 50_000)),
            Some(o) => o,
            None => i as i64 + 1,
        };
        ordered.push((order, i, one(a)?));
    }
    ordered.sort_by_key(|(order, i, _)| (*order, *i));
    if ordered.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(validation(format!("The action orders in '{name}' must be unique")));
    }
    // Flotilla has no authenticate actions, so every chain is exactly one terminal action.
    if ordered.len() > 1 {
        return Err(QueryError::new(
            "InvalidLoadBalancerAction",
            format!("'{name}' must contain exactly one of forward, redirect or fixed-response"),
        ));
    }
    Ok(ordered.into_iter().map(|(_, _, a)| a).collect())
}

fn one(a: &Params) -> Result<Action> {
    let kind = a.required("Type")?;
    match kind {
        "forward" => forward(a),
        "fixed-response" => fixed_response(a),
        "redirect" => redirect(a),
        "authenticate-oidc" | "authenticate-cognito" => Err(QueryError::new(
            "InvalidLoadBalancerAction",
            format!("'{kind}' actions need an HTTPS listener, which Flotilla's load balancers do not have"),
        )),
        other => Err(not_one_of(&lower(&a.name_of("Type")), other, TYPES)),
    }
}

fn forward(a: &Params) -> Result<Action> {
    let arn = a.get("TargetGroupArn").filter(|s| !s.is_empty());
    let config = a.sub("ForwardConfig");
    let listed = config.structs("TargetGroups")?;
    if arn.is_none() && listed.is_empty() {
        return Err(validation(format!(
            "A target group ARN must be specified in '{}' or '{}'",
            a.name_of("TargetGroupArn"),
            a.name_of("ForwardConfig.TargetGroups")
        )));
    }
    let mut groups = Vec::new();
    for g in &listed {
        let weight = match g.int::<i64>("Weight")? {
            Some(w) if !(0..=999).contains(&w) => return Err(out_of_range(&g.name_of("Weight"), w, 0, 999)),
            Some(w) => w as u32,
            None => 1,
        };
        let arn = g.required("TargetGroupArn")?.to_string();
        if groups.iter().any(|w: &WeightedGroup| w.target_group_arn == arn) {
            return Err(validation(format!("Target group '{arn}' is named more than once in one forward action")));
        }
        groups.push(WeightedGroup { target_group_arn: arn, weight });
    }
    if groups.len() > MAX_FORWARD_GROUPS {
        return Err(validation(format!("A forward action can name at most {MAX_FORWARD_GROUPS} target groups")));
    }
    if let Some(arn) = arn {
        match groups.as_slice() {
            [] => groups.push(WeightedGroup { target_group_arn: arn.to_string(), weight: 1 }),
            [only] if only.target_group_arn == arn => {}
            _ => {
                return Err(validation(
                    "You cannot specify a target group ARN that differs from the target groups of the forward config",
                ))
            }
        }
    }
    if groups.iter().all(|g| g.weight == 0) {
        return Err(validation("At least one target group of a forward action must have a weight above 0"));
    }
    let sticky = config.sub("TargetGroupStickinessConfig");
    let stickiness_seconds = match sticky.bool("Enabled")? {
        Some(true) => match sticky.int::<i64>("DurationSeconds")? {
            Some(d) if (1..=604_800).contains(&d) => Some(d as u32),
            Some(d) => return Err(out_of_range(&sticky.name_of("DurationSeconds"), d, 1, 604_800)),
            None => {
                return Err(validation(format!(
                    "'{}' must be given when target group stickiness is enabled",
                    sticky.name_of("DurationSeconds")
                )))
            }
        },
        _ => None,
    };
    Ok(Action::Forward { single: arn.is_some(), groups, stickiness_seconds })
}

fn fixed_response(a: &Params) -> Result<Action> {
    let c = a.sub("FixedResponseConfig");
    let status_code = c.required("StatusCode")?.to_string();
    let ok = status_code.len() == 3
        && status_code.chars().all(|ch| ch.is_ascii_digit())
        && matches!(status_code.as_bytes()[0], b'2' | b'4' | b'5');
    if !ok {
        return Err(validation(format!(
            "The status code '{status_code}' at '{}' must be 2XX, 4XX or 5XX",
            c.name_of("StatusCode")
        )));
    }
    let content_type = c.get("ContentType").map(str::to_string);
    if let Some(t) = &content_type {
        if !CONTENT_TYPES.contains(&t.as_str()) {
            return Err(not_one_of(&c.name_of("ContentType"), t, CONTENT_TYPES));
        }
    }
    let message_body = c.get("MessageBody").map(str::to_string);
    if message_body.as_ref().is_some_and(|b| b.len() > 1024) {
        return Err(validation(format!("'{}' must be at most 1024 characters long", c.name_of("MessageBody"))));
    }
    Ok(Action::FixedResponse { status_code, content_type, message_body })
}

fn redirect(a: &Params) -> Result<Action> {
    let c = a.sub("RedirectConfig");
    let status_code = c.required("StatusCode")?.to_string();
    if !["HTTP_301", "HTTP_302"].contains(&status_code.as_str()) {
        return Err(not_one_of(&c.name_of("StatusCode"), &status_code, &["HTTP_301", "HTTP_302"]));
    }
    let field = |n: &str| c.get(n).filter(|v| !v.is_empty()).map(str::to_string);
    let (protocol, port, host, path, query) =
        (field("Protocol"), field("Port"), field("Host"), field("Path"), field("Query"));
    if let Some(proto) = &protocol {
        if !["HTTP", "HTTPS", "#{protocol}"].contains(&proto.as_str()) {
            return Err(not_one_of(&c.name_of("Protocol"), proto, &["HTTP", "HTTPS", "#{protocol}"]));
        }
    }
    if let Some(port) = &port {
        let valid = port == "#{port}" || port.parse::<u16>().is_ok_and(|n| n > 0);
        if !valid {
            return Err(validation(format!("The redirect port '{port}' must be 1-65535 or #{{port}}")));
        }
    }
    if path.as_ref().is_some_and(|p| !p.starts_with('/')) {
        return Err(validation(format!("The redirect path at '{}' must start with '/'", c.name_of("Path"))));
    }
    let unchanged = |v: &Option<String>, placeholder: &str| v.as_deref().is_none_or(|s| s == placeholder);
    if unchanged(&protocol, "#{protocol}")
        && unchanged(&port, "#{port}")
        && unchanged(&host, "#{host}")
        && unchanged(&path, "/#{path}")
        && unchanged(&query, "#{query}")
    {
        return Err(QueryError::new(
            "InvalidLoadBalancerAction",
            "A redirect must change at least one of protocol, port, host, path or query, or it would loop",
        ));
    }
    Ok(Action::Redirect { protocol, port, host, path, query, status_code })
}

/// Writes `actions` as the list `tag` (`DefaultActions`, `Actions`).
pub fn write(x: &mut Xml, tag: &str, actions: &[Action]) {
    x.list(tag, "member", actions.iter().enumerate(), |x, (i, a)| {
        let order = (i + 1).to_string();
        match a {
            Action::Forward { groups, stickiness_seconds, .. } => {
                x.leaf("Type", "forward").leaf("Order", &order);
                if let [only] = groups.as_slice() {
                    x.leaf("TargetGroupArn", &only.target_group_arn);
                }
                x.elem("ForwardConfig", |x| {
                    x.list("TargetGroups", "member", groups, |x, g| {
                        x.leaf("TargetGroupArn", &g.target_group_arn).leaf("Weight", g.weight.to_string());
                    });
                    x.elem("TargetGroupStickinessConfig", |x| {
                        x.leaf("Enabled", if stickiness_seconds.is_some() { "true" } else { "false" });
                        x.opt_leaf("DurationSeconds", stickiness_seconds.map(|d| d.to_string()));
                    });
                });
            }
            Action::FixedResponse { status_code, content_type, message_body } => {
                x.leaf("Type", "fixed-response").leaf("Order", &order).elem("FixedResponseConfig", |x| {
                    x.opt_leaf("MessageBody", message_body.as_ref())
                        .leaf("StatusCode", status_code)
                        .opt_leaf("ContentType", content_type.as_ref());
                });
            }
            Action::Redirect { protocol, port, host, path, query, status_code } => {
                // AWS describes the components a redirect keeps as their placeholders.
                x.leaf("Type", "redirect").leaf("Order", &order).elem("RedirectConfig", |x| {
                    x.leaf("Protocol", protocol.as_deref().unwrap_or("#{protocol}"))
                        .leaf("Port", port.as_deref().unwrap_or("#{port}"))
                        .leaf("Host", host.as_deref().unwrap_or("#{host}"))
                        .leaf("Path", path.as_deref().unwrap_or("/#{path}"))
                        .leaf("Query", query.as_deref().unwrap_or("#{query}"))
                        .leaf("StatusCode", status_code);
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DIALECT;

    fn parse_pairs(pairs: &[(&str, &str)]) -> Result<Vec<Action>> {
        parse(&Params::from_pairs(DIALECT, pairs.iter().copied()), "DefaultActions")
    }

    #[test]
    fn a_single_group_forward_is_described_in_both_forms() {
        let a = parse_pairs(&[
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", "tg"),
        ])
        .unwrap();
        let mut x = Xml::new();
        write(&mut x, "DefaultActions", &a);
        let s = x.finish();
        assert!(s.contains("<TargetGroupArn>tg</TargetGroupArn><ForwardConfig><TargetGroups><member><TargetGroupArn>tg</TargetGroupArn><Weight>1</Weight>"), "{s}");
        assert!(
            s.contains("<TargetGroupStickinessConfig><Enabled>false</Enabled></TargetGroupStickinessConfig>"),
            "{s}"
        );
    }

    #[test]
    fn weighted_forwards_and_their_limits() {
        let a = parse_pairs(&[
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn", "a"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight", "80"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn", "b"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.Weight", "20"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroupStickinessConfig.Enabled", "true"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroupStickinessConfig.DurationSeconds", "60"),
        ])
        .unwrap();
        assert_eq!(a[0].target_group_arns(), ["a", "b"]);
        assert!(matches!(a[0], Action::Forward { stickiness_seconds: Some(60), single: false, .. }));
        let e = parse_pairs(&[
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn", "a"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight", "1000"),
        ])
        .unwrap_err();
        assert!(e.message.contains("Weight"), "{}", e.message);
    }

    #[test]
    fn bad_actions_are_refused_with_elbs_codes() {
        assert_eq!(parse_pairs(&[]).unwrap_err().code, "ValidationError");
        assert_eq!(parse_pairs(&[("DefaultActions.member.1.Type", "teleport")]).unwrap_err().code, "ValidationError");
        let loops = parse_pairs(&[
            ("DefaultActions.member.1.Type", "redirect"),
            ("DefaultActions.member.1.RedirectConfig.StatusCode", "HTTP_301"),
        ]);
        assert_eq!(loops.unwrap_err().code, "InvalidLoadBalancerAction");
        let bad_status = parse_pairs(&[
            ("DefaultActions.member.1.Type", "fixed-response"),
            ("DefaultActions.member.1.FixedResponseConfig.StatusCode", "302"),
        ]);
        assert_eq!(bad_status.unwrap_err().code, "ValidationError");
        let auth = parse_pairs(&[("DefaultActions.member.1.Type", "authenticate-oidc")]);
        assert_eq!(auth.unwrap_err().code, "InvalidLoadBalancerAction");
    }
}
