//! EC2's `Filter.N`: a resource matches when, for every filter, one of the filter's values
//! matches one of the resource's values under that name (`*` and `?` wildcards allowed). A filter
//! name the resource does not know is refused, as EC2 refuses it.

use flotilla_query::{Filter, QueryError};

use crate::api::Result;

/// What a resource answers for a filter name: its values, or `None` for a name it does not have.
pub trait Filterable {
    fn filter_values(&self, name: &str) -> Option<Vec<String>>;
}

/// Whether `resource` passes every filter.
pub fn matches(resource: &impl Filterable, filters: &[Filter]) -> Result<bool> {
    for f in filters {
        let Some(values) = resource.filter_values(&f.name) else {
            return Err(QueryError::new("InvalidParameterValue", format!("The filter '{}' is invalid", f.name)));
        };
        if !f.values.iter().any(|want| values.iter().any(|have| glob(want, have))) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Keeps the resources that pass every filter.
pub fn retain<T: Filterable>(resources: Vec<T>, filters: &[Filter]) -> Result<Vec<T>> {
    let mut kept = Vec::with_capacity(resources.len());
    for r in resources {
        if matches(&r, filters)? {
            kept.push(r);
        }
    }
    Ok(kept)
}

/// The values of a `tag:Key` or `tag-key`/`tag-value` filter over `tags`.
pub fn tag_filter<'a>(name: &str, tags: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(tags.filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()).collect());
    }
    match name {
        "tag-key" => Some(tags.map(|(k, _)| k.to_string()).collect()),
        "tag-value" => Some(tags.map(|(_, v)| v.to_string()).collect()),
        _ => None,
    }
}

/// `*` any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(&'static str);
    impl Filterable for R {
        fn filter_values(&self, name: &str) -> Option<Vec<String>> {
            (name == "name").then(|| vec![self.0.to_string()])
        }
    }

    #[test]
    fn filters_match_any_value_with_wildcards() {
        let f =
            |vals: &[&str]| vec![Filter { name: "name".into(), values: vals.iter().map(|s| s.to_string()).collect() }];
        assert!(matches(&R("web-1"), &f(&["db", "web-*"])).unwrap());
        assert!(matches(&R("web-1"), &f(&["web-?"])).unwrap());
        assert!(!matches(&R("web-10"), &f(&["web-?"])).unwrap());
        let bad = vec![Filter { name: "nope".into(), values: vec![] }];
        assert_eq!(matches(&R("x"), &bad).unwrap_err().code, "InvalidParameterValue");
    }
}
