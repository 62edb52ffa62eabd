//! Decoding a query-protocol request: the form body becomes a map of dotted parameter names, read
//! through typed accessors that name the parameter in their errors. Lists come as
//! `Name.member.N` (Auto Scaling, ELBv2) or `Name.N` (EC2), numbered from 1; structures inside
//! them as `Name.member.N.Field`; EC2 filters as `Filter.N.Name` / `Filter.N.Value.M`.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{Dialect, QueryError};

/// The parameters of one request, or of one structure inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    dialect: Dialect,
    /// Where these parameters sit in the request (`Tags.member.2.`), to name them in errors.
    path: String,
    map: BTreeMap<String, String>,
}

/// One indexed list entry: its path in the request, and its fields (`""` for a scalar entry).
type Entry = (String, BTreeMap<String, String>);

/// `Filter.N`: a name and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// `TagSpecification.N`: the resource type it tags and its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSpecification {
    pub resource_type: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl Params {
    /// Decodes a form body. Later duplicates of a name win, as they do on AWS.
    pub fn parse(body: &[u8], dialect: Dialect) -> Params {
        let map = form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        Params { dialect, path: String::new(), map }
    }

    /// Parameters from name/value pairs (tests, and requests built in code).
    pub fn from_pairs<'a>(dialect: Dialect, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        let map = pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Params { dialect, path: String::new(), map }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// The full name of `name` in the request, as errors should call it.
    pub fn name_of(&self, name: &str) -> String {
        format!("{}{name}", self.path)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Whether `name` was given, as a value or as a structure.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
            || self.map.range(format!("{name}.")..).next().is_some_and(|(k, _)| k.starts_with(&format!("{name}.")))
    }

    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name).ok_or_else(|| QueryError::missing(self.dialect, &self.name_of(name)))
    }

    /// An optional integer (any width `T` parses to); a non-number is an error naming it.
    pub fn int<T: FromStr>(&self, name: &str) -> Result<Option<T>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| QueryError::malformed(self.dialect, &self.name_of(name), v, "Integer")),
        }
    }

    pub fn required_int<T: FromStr>(&self, name: &str) -> Result<T, QueryError> {
        self.int(name)?.ok_or_else(|| QueryError::missing(self.dialect, &self.name_of(name)))
    }

    /// An optional boolean: `true` or `false`, in any case.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(QueryError::malformed(self.dialect, &self.name_of(name), v, "Boolean")),
        }
    }

    /// The indexed entries under `name` (`name.member.N...` or `name.N...`): index -> the rest
    /// of the key after the index (empty for a scalar entry) -> value, in index order.
    fn indexed(&self, name: &str) -> Result<BTreeMap<u32, Entry>, QueryError> {
        let mut out: BTreeMap<u32, Entry> = BTreeMap::new();
        let dotted = format!("{name}.");
        for (key, value) in self.map.range(dotted.clone()..) {
            let Some(rest) = key.strip_prefix(&dotted) else { break };
            let (member, rest) = match rest.strip_prefix("member.") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
            let Ok(n) = index.parse::<u32>() else {
                // `name.Something`: a structure member, not a list entry.
                if member {
                    return Err(QueryError::malformed(self.dialect, &self.name_of(key), index, "list index"));
                }
                continue;
            };
            let entry_path = format!("{}{name}.{}{n}.", self.path, if member { "member." } else { "" });
            let entry = out.entry(n).or_insert_with(|| (entry_path, BTreeMap::new()));
            entry.1.insert(field.to_string(), value.clone());
        }
        Ok(out)
    }

    /// A list of strings: `name.member.N` or `name.N`, in index order.
    pub fn list(&self, name: &str) -> Result<Vec<String>, QueryError> {
        Ok(self.indexed(name)?.into_values().filter_map(|(_, mut fields)| fields.remove("")).collect())
    }

    /// A list of structures, each as its own [`Params`] (errors inside name the whole path).
    pub fn structs(&self, name: &str) -> Result<Vec<Params>, QueryError> {
        Ok(self
            .indexed(name)?
            .into_values()
            .map(|(path, mut map)| {
                map.remove("");
                Params { dialect: self.dialect, path, map }
            })
            .collect())
    }

    /// The structure `name` (`name.Field...`), empty when absent.
    pub fn sub(&self, name: &str) -> Params {
        let dotted = format!("{name}.");
        let map = self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .map(|(k, v)| (k[dotted.len()..].to_string(), v.clone()))
            .collect();
        Params { dialect: self.dialect, path: format!("{}{dotted}", self.path), map }
    }

    /// Every parameter here, with its name relative to this structure.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// EC2's `Filter.N.Name` / `Filter.N.Value.M` (and Auto Scaling's `Filters.member.N.Name` /
    /// `Values.member.M`, under `list_name`).
    pub fn filters(&self, list_name: &str) -> Result<Vec<Filter>, QueryError> {
        self.structs(list_name)?
            .into_iter()
            .map(|f| {
                let name = f.required("Name")?.to_string();
                let mut values = f.list("Value")?;
                values.extend(f.list("Values")?);
                Ok(Filter { name, values })
            })
            .collect()
    }

    /// EC2's `TagSpecification.N.ResourceType` and `TagSpecification.N.Tag.M.Key/Value`.
    pub fn tag_specifications(&self) -> Result<Vec<TagSpecification>, QueryError> {
        self.structs("TagSpecification")?
            .into_iter()
            .map(|spec| {
                let tags = spec
                    .structs("Tag")?
                    .into_iter()
                    .map(|t| Ok((t.required("Key")?.to_string(), t.get("Value").unwrap_or_default().to_string())))
                    .collect::<Result<_, QueryError>>()?;
                Ok(TagSpecification { resource_type: spec.get("ResourceType").map(str::to_string), tags })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: Dialect = Dialect::Query { xmlns: "urn:as" };

    #[test]
    fn decodes_percent_encoding_and_plus() {
        let p = Params::parse(b"Action=CreateThing&Version=2011-01-01&Name=a+b%2Fc&Empty=", AS);
        assert_eq!(p.action(), Some("CreateThing"));
        assert_eq!(p.version(), Some("2011-01-01"));
        assert_eq!(p.get("Name"), Some("a b/c"));
        assert_eq!(p.get("Empty"), Some(""));
        assert!(p.get("Nope").is_none());
    }

    #[test]
    fn typed_accessors_name_the_parameter() {
        let p = Params::parse(b"Min=3&Bad=x&Flag=TRUE&NotFlag=yes", AS);
        assert_eq!(p.int::<u32>("Min").unwrap(), Some(3));
        assert_eq!(p.int::<u32>("Absent").unwrap(), None);
        let e = p.int::<u32>("Bad").unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("'bad'") && e.message.contains("Integer"), "{}", e.message);
        assert_eq!(p.bool("Flag").unwrap(), Some(true));
        assert!(p.bool("NotFlag").unwrap_err().message.contains("notFlag"));
        let e = p.required("AutoScalingGroupName").unwrap_err();
        assert!(e.message.contains("'autoScalingGroupName'"), "{}", e.message);
        let ec2 = Params::parse(b"Count=-1", Dialect::Ec2);
        assert_eq!(ec2.int::<u32>("Count").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(ec2.required("X").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn member_lists_and_nested_structures_keep_index_order() {
        let body = "Names.member.2=b&Names.member.10=c&Names.member.1=a\
            &Tags.member.1.Key=k1&Tags.member.1.Value=v1&Tags.member.2.Key=k2&Tags.member.2.PropagateAtLaunch=maybe";
        let p = Params::parse(body.as_bytes(), AS);
        assert_eq!(p.list("Names").unwrap(), ["a", "b", "c"]);
        let tags = p.structs("Tags").unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].get("Key"), Some("k1"));
        let e = tags[1].bool("PropagateAtLaunch").unwrap_err();
        assert!(e.message.contains("tags.member.2.PropagateAtLaunch"), "{}", e.message);
        assert!(p.list("Absent").unwrap().is_empty());
    }

    #[test]
    fn nested_structures_and_presence() {
        let body = "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName=lt\
            &MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType=m5.large\
            &MixedInstancesPolicy.LaunchTemplate.Overrides.member.2.InstanceType=c5.large";
        let p = Params::parse(body.as_bytes(), AS);
        assert!(p.has("MixedInstancesPolicy") && !p.has("LaunchTemplate") && !p.has("Mixed"));
        let lt = p.sub("MixedInstancesPolicy").sub("LaunchTemplate");
        assert_eq!(lt.sub("LaunchTemplateSpecification").get("LaunchTemplateName"), Some("lt"));
        let types: Vec<_> =
            lt.structs("Overrides").unwrap().iter().map(|o| o.get("InstanceType").unwrap().to_string()).collect();
        assert_eq!(types, ["m5.large", "c5.large"]);
        let e = lt.sub("LaunchTemplateSpecification").required("Version").unwrap_err();
        assert!(
            e.message.contains("mixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.Version"),
            "{}",
            e.message
        );
    }

    #[test]
    fn ec2_lists_filters_and_tag_specifications() {
        let body = "InstanceId.1=i-1&InstanceId.2=i-2\
            &Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-a&Filter.1.Value.2=vpc-b&Filter.2.Name=default-for-az&Filter.2.Value.1=true\
            &TagSpecification.1.ResourceType=launch-template&TagSpecification.1.Tag.1.Key=team&TagSpecification.1.Tag.1.Value=x\
            &TagSpecification.1.Tag.2.Key=empty";
        let p = Params::parse(body.as_bytes(), Dialect::Ec2);
        assert_eq!(p.list("InstanceId").unwrap(), ["i-1", "i-2"]);
        let f = p.filters("Filter").unwrap();
        assert_eq!(
            f,
            [
                Filter { name: "vpc-id".into(), values: vec!["vpc-a".into(), "vpc-b".into()] },
                Filter { name: "default-for-az".into(), values: vec!["true".into()] },
            ]
        );
        let specs = p.tag_specifications().unwrap();
        assert_eq!(specs[0].resource_type.as_deref(), Some("launch-template"));
        assert_eq!(specs[0].tags, [("team".to_string(), "x".to_string()), ("empty".to_string(), String::new())]);
        let bad = Params::parse(b"Filter.1.Value.1=x", Dialect::Ec2);
        let e = bad.filters("Filter").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("MissingParameter", "The request must contain the parameter Filter.1.Name")
        );
    }

    #[test]
    fn auto_scaling_filters_use_values_members() {
        let body = "Filters.member.1.Name=tag-key&Filters.member.1.Values.member.1=team";
        let f = Params::parse(body.as_bytes(), AS).filters("Filters").unwrap();
        assert_eq!(f, [Filter { name: "tag-key".into(), values: vec!["team".into()] }]);
    }

    #[test]
    fn a_bad_member_index_is_an_error() {
        let p = Params::parse(b"Names.member.x=a", AS);
        assert_eq!(p.list("Names").unwrap_err().code, "ValidationError");
    }

    proptest::proptest! {
        /// Whatever the body, decoding and every accessor answer a value or a modeled error.
        #[test]
        fn any_body_decodes_without_panicking(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                                             name in "[A-Za-z.0-9]{0,12}") {
            for dialect in [AS, Dialect::Ec2] {
                let p = Params::parse(&body, dialect);
                let _ = (p.action(), p.required(&name), p.int::<u32>(&name), p.bool(&name), p.has(&name));
                let _ = (p.list(&name), p.structs(&name), p.filters(&name), p.tag_specifications());
                let _ = p.sub(&name).pairs().count();
            }
        }

        /// Dotted names of any shape, as a hostile client might send them.
        #[test]
        fn any_dotted_names_decode_without_panicking(keys in proptest::collection::vec("[A-Za-z0-9.]{0,20}", 0..12)) {
            let body: String = keys.iter().map(|k| format!("{k}=v&")).collect();
            let p = Params::parse(body.as_bytes(), AS);
            for k in &keys {
                let _ = (p.list(k), p.structs(k), p.filters(k), p.sub(k).is_empty());
            }
            let _ = p.tag_specifications();
        }
    }
}
