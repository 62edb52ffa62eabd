//! Reading a group's settings from CreateAutoScalingGroup and UpdateAutoScalingGroup, and Auto
//! Scaling's rules over them: the launch template (plain or in a MixedInstancesPolicy), the size
//! bounds, the subnets or zones of the default VPC, and tags. Pure functions over the request and
//! the records they refer to, so every rule is unit-tested without a store.

use flotilla_hosts::network::DefaultVpc;
use flotilla_hosts::{
    instance_types, InstancesDistribution, LaunchTemplate, LaunchTemplateRef, MixedInstancesPolicy, Tag,
};
use flotilla_query::{Params, QueryError};

use crate::api::Result;

pub fn validation(message: impl Into<String>) -> QueryError {
    QueryError::new("ValidationError", message)
}

/// Auto Scaling's name rule (1 to 255 characters), and no `/`: Flotilla keys records by name.
pub fn check_group_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'autoScalingGroupName' failed to satisfy constraint: Member must have length between 1 and 255"
        )));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(validation(format!(
            "Invalid AutoScalingGroupName '{name}': Flotilla does not accept '/' or control characters in group names."
        )));
    }
    Ok(())
}

/// Settings Flotilla does not act on yet: refused by name rather than silently dropped, so a
/// group never looks configured for something nothing does.
const NOT_YET: &[&str] = &[
    "LoadBalancerNames",
    "TargetGroupARNs",
    "LifecycleHookSpecificationList",
    "PlacementGroup",
    "TrafficSources",
    "InstanceMaintenancePolicy",
];

/// Refuses the settings of [`NOT_YET`].
pub fn check_supported(p: &Params) -> Result<()> {
    match NOT_YET.iter().find(|name| p.has(name)) {
        Some(name) => Err(validation(format!("{name} is not supported by Flotilla yet."))),
        None => Ok(()),
    }
}

/// How a request names a template: `LaunchTemplateId` or `LaunchTemplateName`, and `Version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

fn template_spec(p: &Params) -> Result<TemplateSpec> {
    let spec = TemplateSpec {
        id: p.get("LaunchTemplateId").map(str::to_string),
        name: p.get("LaunchTemplateName").map(str::to_string),
        version: p.get("Version").map(str::to_string),
    };
    match (&spec.id, &spec.name) {
        (Some(_), Some(_)) => {
            Err(validation("Valid requests must contain either launchTemplateId or LaunchTemplateName, not both."))
        }
        (None, None) => Err(validation("Valid requests must contain either launchTemplateId or LaunchTemplateName.")),
        _ => Ok(spec),
    }
}

/// The launch settings a request gives: exactly one of the two forms.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    Template(TemplateSpec),
    Mixed { template: TemplateSpec, instance_types: Vec<String>, distribution: InstancesDistribution },
}

impl Launch {
    pub fn template(&self) -> &TemplateSpec {
        match self {
            Launch::Template(t) | Launch::Mixed { template: t, .. } => t,
        }
    }
}

const EITHER: &str =
    "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.";

/// The launch settings, if the request gives any (required on create, optional on update).
pub fn launch(p: &Params) -> Result<Option<Launch>> {
    if p.has("LaunchConfigurationName") || p.has("InstanceId") {
        return Err(validation(
            "Flotilla supports launch templates only: use LaunchTemplate or MixedInstancesPolicy instead of LaunchConfigurationName or InstanceId.",
        ));
    }
    match (p.has("LaunchTemplate"), p.has("MixedInstancesPolicy")) {
        (true, true) => Err(validation(EITHER)),
        (false, false) => Ok(None),
        (true, false) => Ok(Some(Launch::Template(template_spec(&p.sub("LaunchTemplate"))?))),
        (false, true) => {
            let m = p.sub("MixedInstancesPolicy");
            let lt = m.sub("LaunchTemplate");
            if !lt.has("LaunchTemplateSpecification") {
                return Err(QueryError::missing(
                    p.dialect(),
                    "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification",
                ));
            }
            let template = template_spec(&lt.sub("LaunchTemplateSpecification"))?;
            let mut instance_types = Vec::new();
            for o in lt.structs("Overrides")? {
                if o.has("InstanceRequirements") || o.has("LaunchTemplateSpecification") {
                    return Err(validation(format!(
                        "{}: Flotilla supports overrides by InstanceType only.",
                        o.name_of("")
                    )));
                }
                instance_types.push(o.required("InstanceType")?.to_string());
            }
            let distribution = distribution(&m.sub("InstancesDistribution"))?;
            Ok(Some(Launch::Mixed { template, instance_types, distribution }))
        }
    }
}

fn distribution(d: &Params) -> Result<InstancesDistribution> {
    let mut out = InstancesDistribution::default();
    if let Some(s) = d.get("OnDemandAllocationStrategy") {
        one_of(d, "OnDemandAllocationStrategy", s, &["prioritized", "lowest-price"])?;
        out.on_demand_allocation_strategy = s.to_string();
    }
    if let Some(n) = d.int::<u32>("OnDemandBaseCapacity")? {
        out.on_demand_base_capacity = n;
    }
    if let Some(n) = d.int::<u32>("OnDemandPercentageAboveBaseCapacity")? {
        if n > 100 {
            return Err(validation(format!(
                "Value {n} at '{}' failed to satisfy constraint: Member must be between 0 and 100",
                d.name_of("OnDemandPercentageAboveBaseCapacity")
            )));
        }
        out.on_demand_percentage_above_base_capacity = n;
    }
    if let Some(s) = d.get("SpotAllocationStrategy") {
        let allowed =
            ["lowest-price", "capacity-optimized", "capacity-optimized-prioritized", "price-capacity-optimized"];
        one_of(d, "SpotAllocationStrategy", s, &allowed)?;
        out.spot_allocation_strategy = s.to_string();
    }
    if let Some(n) = d.int::<u32>("SpotInstancePools")? {
        if !(1..=20).contains(&n) {
            return Err(validation(format!("SpotInstancePools must be between 1 and 20, not {n}.")));
        }
        out.spot_instance_pools = Some(n);
    }
    if let Some(price) = d.get("SpotMaxPrice") {
        if !price.is_empty() && price.parse::<f64>().map_or(true, |p| p <= 0.0) {
            return Err(validation(format!("Invalid SpotMaxPrice '{price}': it must be a positive number or empty.")));
        }
        out.spot_max_price = (!price.is_empty()).then(|| price.to_string());
    }
    Ok(out)
}

fn one_of(p: &Params, name: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(validation(format!(
        "Value '{value}' at '{}' failed to satisfy constraint: Member must be one of: {}",
        p.name_of(name),
        allowed.join(", ")
    )))
}

/// Resolves the template a request names against the existing template, checking the version
/// and that every instance type it would launch is one Flotilla knows.
pub fn resolve(launch: &Launch, template: Option<&LaunchTemplate>) -> Result<LaunchTemplateRef> {
    let spec = launch.template();
    let Some(t) = template else {
        let which = match (&spec.id, &spec.name) {
            (Some(id), _) => format!("template ID {id}"),
            (_, name) => format!("template name {}", name.as_deref().unwrap_or_default()),
        };
        return Err(validation(format!(
            "You must use a valid fully-formed launch template. The specified launch template, with {which}, does not exist."
        )));
    };
    if let Some(v) = &spec.version {
        if v != "$Latest" && v != "$Default" && v.parse::<u32>().is_err() {
            return Err(validation(format!(
                "You must use a valid fully-formed launch template. Invalid launch template version '{v}': specify a version number, $Latest or $Default."
            )));
        }
    }
    let Some(version) = t.version(spec.version.as_deref()) else {
        return Err(validation(format!(
            "You must use a valid fully-formed launch template. The specified launch template version {} of {} does not exist.",
            spec.version.as_deref().unwrap_or("$Default"),
            t.id
        )));
    };
    let overrides = match launch {
        Launch::Mixed { instance_types, .. } => instance_types.as_slice(),
        Launch::Template(_) => &[],
    };
    if overrides.is_empty() && version.instance_type.is_none() {
        return Err(validation(format!(
            "You must use a valid fully-formed launch template. Launch template {} version {} specifies no instance type and the group gives no Overrides.",
            t.id, version.number
        )));
    }
    for name in overrides.iter().chain(version.instance_type.iter()) {
        if instance_types::lookup(name).is_none() {
            return Err(validation(format!(
                "The instance type '{name}' is not supported: Flotilla launches only the instance types of its table (t3.micro, m5.large, c5.xlarge, ...)."
            )));
        }
    }
    Ok(LaunchTemplateRef { id: t.id.clone(), name: t.name.clone(), version: spec.version.clone() })
}

/// The group's launch settings as stored.
pub fn stored(
    launch: &Launch,
    reference: LaunchTemplateRef,
) -> (Option<LaunchTemplateRef>, Option<MixedInstancesPolicy>) {
    match launch {
        Launch::Template(_) => (Some(reference), None),
        Launch::Mixed { instance_types, distribution, .. } => (
            None,
            Some(MixedInstancesPolicy {
                launch_template: reference,
                instance_types: instance_types.clone(),
                distribution: distribution.clone(),
            }),
        ),
    }
}

/// Checks `min <= desired <= max` with Auto Scaling's wording.
pub fn check_sizes(min: u32, max: u32, desired: u32) -> Result<()> {
    if min > max {
        return Err(validation(format!("Max bound, {max}, must be greater than or equal to min bound, {min}")));
    }
    if desired < min || desired > max {
        return Err(validation(format!(
            "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
        )));
    }
    Ok(())
}

/// `VPCZoneIdentifier` (comma-separated subnets of the default VPC) or `AvailabilityZones`:
/// the subnets and the zones they cover. `None` when the request gives neither.
pub fn placement(p: &Params, vpc: &DefaultVpc) -> Result<Option<(Vec<String>, Vec<String>)>> {
    if let Some(ids) = p.get("VPCZoneIdentifier").filter(|s| !s.trim().is_empty()) {
        let mut subnets: Vec<String> = Vec::new();
        let mut zones: Vec<String> = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let subnet = vpc.subnet(id).ok_or_else(|| validation(format!("The subnet ID '{id}' does not exist")))?;
            if !subnets.iter().any(|s| s == id) {
                subnets.push(id.to_string());
            }
            if !zones.contains(&subnet.availability_zone) {
                zones.push(subnet.availability_zone.clone());
            }
        }
        return Ok(Some((subnets, zones)));
    }
    let zones = p.list("AvailabilityZones")?;
    if zones.is_empty() {
        return Ok(None);
    }
    let mut subnets = Vec::new();
    for z in &zones {
        let subnet = vpc.subnet_in_zone(z).ok_or_else(|| validation(format!("Invalid Availability Zone: [{z}]")))?;
        subnets.push(subnet.subnet_id.clone());
    }
    Ok(Some((subnets, zones)))
}

/// `Tags.member.N`: key, value and `PropagateAtLaunch` (default false), with Auto Scaling's
/// limits. `group` is the group they are for: a tag naming another resource is refused.
pub fn tags(p: &Params, group: Option<&str>) -> Result<Vec<(Option<String>, Tag)>> {
    let mut out = Vec::new();
    for t in p.structs("Tags")? {
        let key = t.required("Key")?.to_string();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(validation(format!("Tag key '{key}' must be between 1 and 128 characters long.")));
        }
        if key.starts_with("aws:") {
            return Err(validation(format!("Tag keys starting with 'aws:' are reserved for internal use: '{key}'.")));
        }
        let value = t.get("Value").unwrap_or_default().to_string();
        if value.chars().count() > 256 {
            return Err(validation(format!("The value of tag '{key}' must be at most 256 characters long.")));
        }
        if let Some(kind) = t.get("ResourceType").filter(|k| *k != "auto-scaling-group") {
            return Err(validation(format!("Invalid ResourceType '{kind}': tags belong to an 'auto-scaling-group'.")));
        }
        let resource = t.get("ResourceId").map(str::to_string);
        if let (Some(r), Some(g)) = (&resource, group) {
            if r != g {
                return Err(validation(format!("The tag's ResourceId '{r}' is not the group '{g}'.")));
            }
        }
        let propagate_at_launch = t.bool("PropagateAtLaunch")?.unwrap_or(false);
        out.push((resource, Tag { key, value, propagate_at_launch }));
    }
    if out.len() > 50 {
        return Err(validation("A group may carry at most 50 tags."));
    }
    Ok(out)
}

/// Adds or replaces `new` tags by key.
pub fn merge_tags(tags: &mut Vec<Tag>, new: impl IntoIterator<Item = Tag>) {
    for t in new {
        match tags.iter_mut().find(|o| o.key == t.key) {
            Some(o) => *o = t,
            None => tags.push(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_hosts::network::default_vpc;
    use flotilla_hosts::LaunchTemplateVersion;
    use flotilla_query::Dialect;

    const AS: Dialect = Dialect::Query { xmlns: "urn:as" };

    fn params(body: &str) -> Params {
        Params::parse(body.as_bytes(), AS)
    }

    fn template(instance_type: Option<&str>) -> LaunchTemplate {
        LaunchTemplate {
            id: "lt-0123456789abcdef0".into(),
            name: "web".into(),
            created_at_ms: 0,
            default_version: 1,
            versions: vec![LaunchTemplateVersion {
                number: 1,
                description: None,
                created_at_ms: 0,
                instance_type: instance_type.map(str::to_string),
                user_data: None,
                image_id: None,
                security_group_ids: vec![],
                other: Default::default(),
            }],
            tags: vec![],
        }
    }

    #[test]
    fn sizes_follow_auto_scalings_rules_and_words() {
        assert!(check_sizes(0, 0, 0).is_ok());
        assert!(check_sizes(1, 3, 2).is_ok());
        assert_eq!(
            check_sizes(2, 1, 2).unwrap_err().message,
            "Max bound, 1, must be greater than or equal to min bound, 2"
        );
        assert_eq!(
            check_sizes(1, 3, 5).unwrap_err().message,
            "Desired capacity:5 must be between the specified min size:1 and max size:3"
        );
    }

    #[test]
    fn exactly_one_launch_form() {
        assert_eq!(launch(&params("MinSize=1")).unwrap(), None);
        let both = params("LaunchTemplate.LaunchTemplateName=a&MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName=a");
        assert_eq!(launch(&both).unwrap_err().message, EITHER);
        let lc = params("LaunchConfigurationName=old");
        assert!(launch(&lc).unwrap_err().message.contains("launch templates only"));
        let no_name = params("LaunchTemplate.Version=1");
        assert!(launch(&no_name).unwrap_err().message.contains("either launchTemplateId or LaunchTemplateName"));
    }

    #[test]
    fn mixed_instances_policy_reads_overrides_and_distribution() {
        let p = params(
            "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId=lt-0123456789abcdef0\
             &MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.Version=%24Latest\
             &MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType=m5.large\
             &MixedInstancesPolicy.LaunchTemplate.Overrides.member.2.InstanceType=c5.large\
             &MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity=1\
             &MixedInstancesPolicy.InstancesDistribution.OnDemandPercentageAboveBaseCapacity=25\
             &MixedInstancesPolicy.InstancesDistribution.SpotAllocationStrategy=capacity-optimized",
        );
        let Some(Launch::Mixed { template, instance_types, distribution }) = launch(&p).unwrap() else { panic!() };
        assert_eq!(template.version.as_deref(), Some("$Latest"));
        assert_eq!(instance_types, ["m5.large", "c5.large"]);
        assert_eq!(distribution.on_demand_base_capacity, 1);
        assert_eq!(distribution.on_demand_percentage_above_base_capacity, 25);
        assert_eq!(distribution.spot_allocation_strategy, "capacity-optimized");
        assert_eq!(distribution.on_demand_allocation_strategy, "prioritized");
        let bad = params(
            "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName=a\
             &MixedInstancesPolicy.InstancesDistribution.OnDemandPercentageAboveBaseCapacity=101",
        );
        assert!(launch(&bad).unwrap_err().message.contains("OnDemandPercentageAboveBaseCapacity"));
        let strategy = params(
            "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName=a\
             &MixedInstancesPolicy.InstancesDistribution.SpotAllocationStrategy=cheapest",
        );
        assert!(launch(&strategy).unwrap_err().message.contains("'cheapest'"));
    }

    #[test]
    fn templates_resolve_with_known_instance_types_only() {
        let plain = launch(&params("LaunchTemplate.LaunchTemplateName=web")).unwrap().unwrap();
        let r = resolve(&plain, Some(&template(Some("t3.micro")))).unwrap();
        assert_eq!((r.id.as_str(), r.name.as_str(), r.version), ("lt-0123456789abcdef0", "web", None));
        let e = resolve(&plain, None).unwrap_err();
        assert!(e.message.contains("with template name web, does not exist"), "{}", e.message);
        let e = resolve(&plain, Some(&template(Some("x9.huge")))).unwrap_err();
        assert!(e.message.contains("'x9.huge'"), "{}", e.message);
        let e = resolve(&plain, Some(&template(None))).unwrap_err();
        assert!(e.message.contains("no instance type"), "{}", e.message);
        let v9 = launch(&params("LaunchTemplate.LaunchTemplateName=web&LaunchTemplate.Version=9")).unwrap().unwrap();
        assert!(resolve(&v9, Some(&template(Some("t3.micro")))).unwrap_err().message.contains("version 9"));
        let mixed = launch(&params(
            "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName=web\
             &MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType=nope.large",
        ))
        .unwrap()
        .unwrap();
        assert!(resolve(&mixed, Some(&template(None))).unwrap_err().message.contains("'nope.large'"));
    }

    #[test]
    fn subnets_must_be_the_default_vpcs() {
        let vpc = default_vpc("us-east-1");
        let (a, b) = (&vpc.subnets[0].subnet_id, &vpc.subnets[1].subnet_id);
        let (subnets, zones) = placement(&params(&format!("VPCZoneIdentifier={a}%2C{b}")), &vpc).unwrap().unwrap();
        assert_eq!(subnets, [a.clone(), b.clone()]);
        assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
        let e = placement(&params("VPCZoneIdentifier=subnet-nope"), &vpc).unwrap_err();
        assert_eq!(e.message, "The subnet ID 'subnet-nope' does not exist");
        let (_, zones) = placement(&params("AvailabilityZones.member.1=us-east-1c"), &vpc).unwrap().unwrap();
        assert_eq!(zones, ["us-east-1c"]);
        assert!(placement(&params("AvailabilityZones.member.1=us-east-1z"), &vpc).is_err());
        assert_eq!(placement(&params(""), &vpc).unwrap(), None);
    }

    #[test]
    fn tags_are_checked() {
        let t =
            tags(&params("Tags.member.1.Key=team&Tags.member.1.Value=x&Tags.member.1.PropagateAtLaunch=true"), None)
                .unwrap();
        assert_eq!(t[0].1, Tag { key: "team".into(), value: "x".into(), propagate_at_launch: true });
        assert!(tags(&params("Tags.member.1.Key=aws%3Ax"), None).is_err());
        assert!(tags(&params("Tags.member.1.Value=x"), None).unwrap_err().message.contains("tags.member.1.Key"));
        assert!(tags(&params("Tags.member.1.Key=k&Tags.member.1.ResourceId=other"), Some("g")).is_err());
        let mut kept = vec![Tag { key: "a".into(), value: "1".into(), propagate_at_launch: false }];
        merge_tags(&mut kept, [Tag { key: "a".into(), value: "2".into(), propagate_at_launch: true }]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].value, "2");
    }

    #[test]
    fn settings_nothing_acts_on_are_refused() {
        assert!(check_supported(&params("MinSize=1")).is_ok());
        let e = check_supported(&params("TargetGroupARNs.member.1=arn")).unwrap_err();
        assert_eq!(e.message, "TargetGroupARNs is not supported by Flotilla yet.");
    }

    #[test]
    fn group_names_are_checked() {
        assert!(check_group_name("web-asg").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name("a/b").is_err());
        assert!(check_group_name(&"x".repeat(256)).is_err());
    }
}
