//! The `Filters` of ListNamespaces, ListServices and ListOperations: a name, values and a
//! condition (`EQ` with one value, `IN` with several, `BEGINS_WITH`, `BETWEEN` for dates).

use serde_json::Value;

use super::error::{Result, SdError};
use super::input::{str_of, Input};

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
    pub condition: String,
}

impl Filter {
    pub fn matches(&self, value: &str) -> bool {
        match self.condition.as_str() {
            "BEGINS_WITH" => self.values.iter().any(|v| value.starts_with(v.as_str())),
            _ => self.values.iter().any(|v| v == value),
        }
    }
}

/// The request's filters, each with a name among `names`.
pub fn parse(input: &Input, names: &[&str]) -> Result<Vec<Filter>> {
    input.list("Filters")?.iter().enumerate().map(|(i, f)| one(f, i, names)).collect()
}

fn one(f: &Value, i: usize, names: &[&str]) -> Result<Filter> {
    let field = format!("Filters.{i}");
    let name = str_of(f.get("Name"), &format!("{field}.Name"))?
        .ok_or_else(|| SdError::invalid(format!("{field}.Name is required.")))?;
    if !names.contains(&name) {
        return Err(SdError::invalid(format!("{field}.Name must be one of {}.", names.join(", "))));
    }
    let values: Vec<String> = match f.get("Values") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(j, v)| str_of(Some(v), &format!("{field}.Values.{j}")).map(|s| s.unwrap_or_default().to_string()))
            .collect::<Result<_>>()?,
        _ => return Err(SdError::invalid(format!("{field}.Values must list at least one value."))),
    };
    let condition = str_of(f.get("Condition"), &format!("{field}.Condition"))?.unwrap_or("EQ").to_string();
    let allowed: &[&str] = match name {
        "TYPE" | "STATUS" | "NAMESPACE_ID" | "SERVICE_ID" => &["EQ", "IN"],
        "NAME" | "HTTP_NAME" => &["EQ", "BEGINS_WITH"],
        "UPDATE_DATE" => &["BETWEEN"],
        _ => &["EQ"],
    };
    if !allowed.contains(&condition.as_str()) {
        return Err(SdError::invalid(format!("{field}.Condition must be {} for {name}.", allowed.join(" or "))));
    }
    if condition != "IN" && condition != "BETWEEN" && values.len() != 1 {
        return Err(SdError::invalid(format!("{field}.Values must have exactly one value with {condition}.")));
    }
    if condition == "BETWEEN" && values.len() != 2 {
        return Err(SdError::invalid(format!("{field}.Values must have two dates with BETWEEN.")));
    }
    Ok(Filter { name: name.into(), values, condition })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Input {
        Input::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn eq_begins_with_and_in_match_as_cloud_map_does() {
        let f = parse(&input(r#"{"Filters":[{"Name":"NAME","Values":["ex"],"Condition":"BEGINS_WITH"}]}"#), &["NAME"])
            .unwrap();
        assert!(f[0].matches("example.local") && !f[0].matches("other"));
        let f = parse(
            &input(r#"{"Filters":[{"Name":"TYPE","Values":["HTTP","DNS_PRIVATE"],"Condition":"IN"}]}"#),
            &["TYPE"],
        )
        .unwrap();
        assert!(f[0].matches("HTTP") && f[0].matches("DNS_PRIVATE") && !f[0].matches("DNS_PUBLIC"));
        let f = parse(&input(r#"{"Filters":[{"Name":"NAME","Values":["a"]}]}"#), &["NAME"]).unwrap();
        assert_eq!(f[0].condition, "EQ");
        assert!(f[0].matches("a") && !f[0].matches("ab"));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e = parse(&input(r#"{"Filters":[{"Name":"COLOR","Values":["x"]}]}"#), &["NAME"]).unwrap_err();
        assert!(e.message.contains("Filters.0.Name"), "{}", e.message);
        let e =
            parse(&input(r#"{"Filters":[{"Name":"TYPE","Values":["HTTP"],"Condition":"BEGINS_WITH"}]}"#), &["TYPE"])
                .unwrap_err();
        assert!(e.message.contains("Filters.0.Condition"), "{}", e.message);
        let e = parse(&input(r#"{"Filters":[{"Name":"NAME","Values":["a","b"]}]}"#), &["NAME"]).unwrap_err();
        assert!(e.message.contains("exactly one"), "{}", e.message);
        let e = parse(&input(r#"{"Filters":[{"Name":"NAME","Values":[]}]}"#), &["NAME"]).unwrap_err();
        assert_eq!(e.code, "InvalidInput");
    }
}
