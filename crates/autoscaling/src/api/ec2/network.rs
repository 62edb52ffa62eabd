//! The region's default VPC, described: DescribeVpcs, DescribeSecurityGroups and
//! DescribeAvailabilityZones, all from `flotilla_hosts::network::default_vpc` (its subnets, and
//! those made with CreateSubnet, are in `subnets`).

use flotilla_api::Ctx;
use flotilla_hosts::network::{default_vpc, DefaultVpc, Subnet};
use flotilla_query::{Params, QueryError, Xml};

use super::filters::{self, Filterable};
use crate::api::Result;

/// The ids a request names that are not among `known`, as EC2's NotFound error.
pub(super) fn check_known(asked: &[String], known: &[&str], code: &'static str, what: &str) -> Result<()> {
    let missing: Vec<String> =
        asked.iter().filter(|a| !known.contains(&a.as_str())).map(|a| format!("'{a}'")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let (verb, noun) = if missing.len() == 1 { ("does", "ID") } else { ("do", "IDs") };
    Err(QueryError::new(code, format!("The {what} {noun} {} {verb} not exist", missing.join(", "))))
}

struct Vpc<'a>(&'a DefaultVpc);

impl Filterable for Vpc<'_> {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "vpc-id" => Some(vec![self.0.vpc_id.clone()]),
            "is-default" => Some(vec!["true".into()]),
            "cidr" | "cidr-block-association.cidr-block" => Some(vec![self.0.cidr_block.clone()]),
            "state" => Some(vec!["available".into()]),
            _ => filters::tag_filter(name, std::iter::empty()),
        }
    }
}

pub fn describe_vpcs(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    check_known(&p.list("VpcId")?, &[vpc.vpc_id.as_str()], "InvalidVpcID.NotFound", "vpc")?;
    let vpcs = filters::retain(vec![Vpc(&vpc)], &p.filters("Filter")?)?;
    let mut x = Xml::new();
    x.list("vpcSet", "item", &vpcs, |x, v| {
        x.leaf("vpcId", &v.0.vpc_id)
            .leaf("ownerId", &ctx.arns.account)
            .leaf("state", "available")
            .leaf("cidrBlock", &v.0.cidr_block)
            .leaf("dhcpOptionsId", "default")
            .leaf("instanceTenancy", "default")
            .leaf("isDefault", "true");
    });
    Ok(x)
}

struct SecurityGroup<'a>(&'a DefaultVpc);

impl Filterable for SecurityGroup<'_> {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        match name {
            "group-name" => Some(vec!["default".into()]),
            "group-id" => Some(vec![self.0.security_group_id.clone()]),
            "vpc-id" => Some(vec![self.0.vpc_id.clone()]),
            "description" => Some(vec!["default VPC security group".into()]),
            _ => filters::tag_filter(name, std::iter::empty()),
        }
    }
}

pub fn describe_security_groups(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let ids = p.list("GroupId")?;
    let missing: Vec<&String> = ids.iter().filter(|id| **id != vpc.security_group_id).collect();
    if let Some(id) = missing.first() {
        return Err(QueryError::new("InvalidGroup.NotFound", format!("The security group '{id}' does not exist")));
    }
    if let Some(name) = p.list("GroupName")?.into_iter().find(|n| n != "default") {
        return Err(QueryError::new(
            "InvalidGroup.NotFound",
            format!("The security group '{name}' does not exist in default VPC '{}'", vpc.vpc_id),
        ));
    }
    let groups = filters::retain(vec![SecurityGroup(&vpc)], &p.filters("Filter")?)?;
    let mut x = Xml::new();
    x.list("securityGroupInfo", "item", &groups, |x, g| {
        x.leaf("ownerId", &ctx.arns.account)
            .leaf("groupId", &g.0.security_group_id)
            .leaf("groupName", "default")
            .leaf("groupDescription", "default VPC security group")
            .leaf("vpcId", &g.0.vpc_id)
            .elem("ipPermissions", |_| {})
            .elem("ipPermissionsEgress", |x| {
                x.open("item")
                    .leaf("ipProtocol", "-1")
                    .elem("ipRanges", |x| {
                        x.elem("item", |x| {
                            x.leaf("cidrIp", "0.0.0.0/0");
                        });
                    })
                    .close("item");
            });
    });
    Ok(x)
}

struct Zone<'a> {
    subnet: &'a Subnet,
    region: &'a str,
}

impl Filterable for Zone<'_> {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |v: &str| Some(vec![v.to_string()]);
        match name {
            "zone-name" => one(&self.subnet.availability_zone),
            "zone-id" => one(&self.subnet.availability_zone_id),
            "region-name" => one(self.region),
            "state" => one("available"),
            "zone-type" => one("availability-zone"),
            "opt-in-status" => one("opt-in-not-required"),
            "group-name" => one(self.region),
            _ => None,
        }
    }
}

pub fn describe_availability_zones(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let region = ctx.arns.region.as_str();
    let names = p.list("ZoneName")?;
    let zone_ids = p.list("ZoneId")?;
    for n in &names {
        if vpc.subnet_in_zone(n).is_none() {
            return Err(QueryError::new(
                "InvalidParameterValue",
                format!("The zone '{n}' does not exist in the region '{region}'"),
            ));
        }
    }
    let zones: Vec<Zone> = vpc
        .subnets
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.availability_zone))
        .filter(|s| zone_ids.is_empty() || zone_ids.contains(&s.availability_zone_id))
        .map(|subnet| Zone { subnet, region })
        .collect();
    let zones = filters::retain(zones, &p.filters("Filter")?)?;
    let mut x = Xml::new();
    x.list("availabilityZoneInfo", "item", &zones, |x, z| {
        x.leaf("zoneName", &z.subnet.availability_zone)
            .leaf("zoneState", "available")
            .leaf("regionName", z.region)
            .leaf("zoneId", &z.subnet.availability_zone_id)
            .leaf("groupName", z.region)
            .leaf("networkBorderGroup", z.region)
            .leaf("optInStatus", "opt-in-not-required")
            .leaf("zoneType", "availability-zone")
            .elem("messageSet", |_| {});
    });
    Ok(x)
}
