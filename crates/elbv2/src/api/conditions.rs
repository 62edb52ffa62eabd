//! Rule conditions: `path-pattern`, `host-header`, `http-header`, `http-request-method`,
//! `query-string` and `source-ip`, read from both encodings clients send (the legacy `Field` +
//! `Values`, and the `*Config` structures) and written back in both where AWS does (host and
//! path). ALB's limits hold: at most one each of host, method, path and source-ip, three values
//! per condition, five values and five wildcards per rule.

use flotilla_endpoints::elb::Condition;
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{not_one_of, validation};
use super::Result;

const FIELDS: &[&str] =
    &["http-header", "http-request-method", "host-header", "path-pattern", "query-string", "source-ip"];
/// Fields a rule may have once only.
const ONCE: &[&str] = &["host-header", "http-request-method", "path-pattern", "source-ip"];
const VALUES_PER_CONDITION: usize = 3;
const VALUES_PER_RULE: usize = 5;
const WILDCARDS_PER_RULE: usize = 5;
const MAX_VALUE_LEN: usize = 128;

/// The rule's conditions (`Conditions.member.N`), at least one.
pub fn parse(p: &Params) -> Result<Vec<Condition>> {
    let entries = p.structs("Conditions")?;
    if entries.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Conditions"));
    }
    let conditions = entries.iter().map(one).collect::<Result<Vec<_>>>()?;
    check_rule_limits(&conditions)?;
    Ok(conditions)
}

fn field_of(c: &Condition) -> &'static str {
    match c {
        Condition::PathPattern { .. } => "path-pattern",
        Condition::HostHeader { .. } => "host-header",
        Condition::HttpHeader { .. } => "http-header",
        Condition::HttpRequestMethod { .. } => "http-request-method",
        Condition::QueryString { .. } => "query-string",
        Condition::SourceIp { .. } => "source-ip",
    }
}

/// The strings a condition matches against (query-string keys and values both count).
fn strings(c: &Condition) -> Vec<&str> {
    match c {
        Condition::PathPattern { values }
        | Condition::HostHeader { values }
        | Condition::HttpRequestMethod { values }
        | Condition::SourceIp { values }
        | Condition::HttpHeader { values, .. } => values.iter().map(String::as_str).collect(),
        Condition::QueryString { values } => {
            values.iter().flat_map(|(k, v)| k.iter().map(String::as_str).chain([v.as_str()])).collect()
        }
    }
}

fn value_count(c: &Condition) -> usize {
    match c {
        Condition::QueryString { values } => values.len(),
        other => strings(other).len(),
    }
}

fn check_rule_limits(conditions: &[Condition]) -> Result<()> {
    for field in ONCE {
        if conditions.iter().filter(|c| field_of(c) == *field).count() > 1 {
            return Err(validation(format!("A rule can have at most one '{field}' condition")));
        }
    }
    let values: usize = conditions.iter().map(value_count).sum();
    if values > VALUES_PER_RULE {
        return Err(validation(format!(
            "A rule can have at most {VALUES_PER_RULE} condition values in total; this one has {values}"
        )));
    }
    let wildcards: usize = conditions
        .iter()
        .filter(|c| !matches!(c, Condition::SourceIp { .. } | Condition::HttpRequestMethod { .. }))
        .flat_map(strings)
        .map(|s| s.matches(['*', '?']).count())
        .sum();
    if wildcards > WILDCARDS_PER_RULE {
        return Err(validation(format!(
            "A rule can have at most {WILDCARDS_PER_RULE} wildcards ('*' or '?') in its conditions; this one has {wildcards}"
        )));
    }
    Ok(())
}

/// `Values` (legacy) or `CONFIG.Values`, not both.
fn plain_values(c: &Params, config: &str) -> Result<Vec<String>> {
    let legacy = c.list("Values")?;
    let structured = c.sub(config).list("Values")?;
    if !legacy.is_empty() && !structured.is_empty() {
        return Err(validation(format!(
            "Specify either '{}' or '{}', not both",
            c.name_of("Values"),
            c.name_of(&format!("{config}.Values"))
        )));
    }
    Ok(if structured.is_empty() { legacy } else { structured })
}

fn check_values(c: &Params, field: &str, values: &[String], allowed: impl Fn(char) -> bool) -> Result<()> {
    if values.is_empty() {
        return Err(validation(format!("A '{field}' condition at '{}' must have at least one value", c.name_of(""))));
    }
    if values.len() > VALUES_PER_CONDITION {
        return Err(validation(format!(
            "A '{field}' condition can have at most {VALUES_PER_CONDITION} values; '{}' has {}",
            c.name_of(""),
            values.len()
        )));
    }
    for v in values {
        if v.is_empty() || v.chars().count() > MAX_VALUE_LEN {
            return Err(validation(format!("The '{field}' value '{v}' must be 1-{MAX_VALUE_LEN} characters long")));
        }
        if let Some(bad) = v.chars().find(|ch| !allowed(*ch)) {
            return Err(validation(format!(
                "The '{field}' value '{v}' contains the character '{bad}', which is not allowed"
            )));
        }
    }
    Ok(())
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else { return false };
    let v4 = ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|n| n <= 32);
    let v6 = ip.parse::<std::net::Ipv6Addr>().is_ok() && len.parse::<u8>().is_ok_and(|n| n <= 128);
    v4 || v6
}

fn one(c: &Params) -> Result<Condition> {
    let field = c.required("Field")?;
    let path_char = |ch: char| ch.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(ch);
    let host_char = |ch: char| ch.is_ascii_alphanumeric() || "-.*?".contains(ch);
    match field {
        "path-pattern" => {
            let values = plain_values(c, "PathPatternConfig")?;
            check_values(c, field, &values, path_char)?;
            Ok(Condition::PathPattern { values })
        }
        "host-header" => {
            let values = plain_values(c, "HostHeaderConfig")?;
            check_values(c, field, &values, host_char)?;
            Ok(Condition::HostHeader { values })
        }
        "http-request-method" => {
            let values = plain_values(c, "HttpRequestMethodConfig")?;
            check_values(c, field, &values, |ch| ch.is_ascii_uppercase() || ch == '_' || ch == '-')?;
            Ok(Condition::HttpRequestMethod { values })
        }
        "source-ip" => {
            let values = plain_values(c, "SourceIpConfig")?;
            check_values(c, field, &values, |_| true)?;
            if let Some(bad) = values.iter().find(|v| !is_cidr(v)) {
                return Err(validation(format!("The source-ip value '{bad}' is not a CIDR block")));
            }
            Ok(Condition::SourceIp { values })
        }
        "http-header" => {
            let config = c.sub("HttpHeaderConfig");
            let name = config.required("HttpHeaderName")?.to_string();
            let token = |ch: char| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch);
            if name.is_empty() || name.len() > 40 || !name.chars().all(token) {
                return Err(validation(format!("The HTTP header name '{name}' is not a valid header name")));
            }
            let values = config.list("Values")?;
            check_values(c, field, &values, |ch| !ch.is_control())?;
            Ok(Condition::HttpHeader { name, values })
        }
        "query-string" => {
            let config = c.sub("QueryStringConfig");
            let mut values = Vec::new();
            for kv in config.structs("Values")? {
                let value = kv.required("Value")?.to_string();
                let key = kv.get("Key").filter(|k| !k.is_empty()).map(str::to_string);
                values.push((key, value));
            }
            let flat: Vec<String> = values.iter().flat_map(|(k, v)| k.iter().cloned().chain([v.clone()])).collect();
            check_values(c, field, &flat, |ch| !ch.is_control())?;
            if values.len() > VALUES_PER_CONDITION {
                return Err(validation(format!(
                    "A 'query-string' condition can have at most {VALUES_PER_CONDITION} values"
                )));
            }
            Ok(Condition::QueryString { values })
        }
        other => Err(not_one_of(&c.name_of("Field"), other, FIELDS)),
    }
}

/// Writes `conditions` as `Conditions`.
pub fn write(x: &mut Xml, conditions: &[Condition]) {
    x.list("Conditions", "member", conditions, |x, c| {
        x.leaf("Field", field_of(c));
        match c {
            Condition::PathPattern { values } => {
                x.string_list("Values", "member", values).elem("PathPatternConfig", |x| {
                    x.string_list("Values", "member", values);
                });
            }
            Condition::HostHeader { values } => {
                x.string_list("Values", "member", values).elem("HostHeaderConfig", |x| {
                    x.string_list("Values", "member", values);
                });
            }
            Condition::HttpHeader { name, values } => {
                x.elem("HttpHeaderConfig", |x| {
                    x.leaf("HttpHeaderName", name).string_list("Values", "member", values);
                });
            }
            Condition::HttpRequestMethod { values } => {
                x.elem("HttpRequestMethodConfig", |x| {
                    x.string_list("Values", "member", values);
                });
            }
            Condition::QueryString { values } => {
                x.elem("QueryStringConfig", |x| {
                    x.list("Values", "member", values, |x, (k, v)| {
                        x.opt_leaf("Key", k.as_ref()).leaf("Value", v);
                    });
                });
            }
            Condition::SourceIp { values } => {
                x.elem("SourceIpConfig", |x| {
                    x.string_list("Values", "member", values);
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DIALECT;

    fn parse_pairs(pairs: &[(&str, &str)]) -> Result<Vec<Condition>> {
        parse(&Params::from_pairs(DIALECT, pairs.iter().copied()))
    }

    #[test]
    fn both_encodings_read_the_same() {
        let legacy = parse_pairs(&[
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/api/*"),
        ])
        .unwrap();
        let config = parse_pairs(&[
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.PathPatternConfig.Values.member.1", "/api/*"),
        ])
        .unwrap();
        assert_eq!(legacy, config);
        assert_eq!(legacy, [Condition::PathPattern { values: vec!["/api/*".into()] }]);
        let mut x = Xml::new();
        write(&mut x, &legacy);
        let s = x.finish();
        assert!(s.contains("<Values><member>/api/*</member></Values><PathPatternConfig>"), "{s}");
    }

    #[test]
    fn structured_conditions_parse() {
        let c = parse_pairs(&[
            ("Conditions.member.1.Field", "http-header"),
            ("Conditions.member.1.HttpHeaderConfig.HttpHeaderName", "X-Env"),
            ("Conditions.member.1.HttpHeaderConfig.Values.member.1", "blue"),
            ("Conditions.member.2.Field", "query-string"),
            ("Conditions.member.2.QueryStringConfig.Values.member.1.Key", "v"),
            ("Conditions.member.2.QueryStringConfig.Values.member.1.Value", "2"),
            ("Conditions.member.3.Field", "source-ip"),
            ("Conditions.member.3.SourceIpConfig.Values.member.1", "10.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(c[0], Condition::HttpHeader { name: "X-Env".into(), values: vec!["blue".into()] });
        assert_eq!(c[1], Condition::QueryString { values: vec![(Some("v".into()), "2".into())] });
    }

    #[test]
    fn limits_are_elbs() {
        let twice = parse_pairs(&[
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/a"),
            ("Conditions.member.2.Field", "path-pattern"),
            ("Conditions.member.2.Values.member.1", "/b"),
        ]);
        assert!(twice.unwrap_err().message.contains("at most one 'path-pattern'"));
        let four: Vec<(String, String)> =
            (1..=4).map(|i| (format!("Conditions.member.1.Values.member.{i}"), format!("/p{i}"))).collect();
        let mut pairs: Vec<(&str, &str)> = four.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("Conditions.member.1.Field", "path-pattern"));
        assert_eq!(parse_pairs(&pairs).unwrap_err().code, "ValidationError");
        assert!(parse_pairs(&[]).is_err());
        let bad_ip = parse_pairs(&[
            ("Conditions.member.1.Field", "source-ip"),
            ("Conditions.member.1.Values.member.1", "10.0.0.1"),
        ]);
        assert!(bad_ip.unwrap_err().message.contains("CIDR"));
        let bad_field = parse_pairs(&[("Conditions.member.1.Field", "cookie")]);
        assert_eq!(bad_field.unwrap_err().code, "ValidationError");
    }
}
