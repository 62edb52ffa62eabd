//! Subnets: the default VPC's (derived from the region, one per zone, never stored) and those
//! made with CreateSubnet (stored under `keys::subnet`, in `flotilla_hosts::codec`'s JSON, where
//! the control plane reads them to give awsvpc tasks their addresses). CreateSubnet, DeleteSubnet
//! and DescribeSubnets.
//!
//! Two CreateSubnets racing must not both commit overlapping blocks: every create bumps the VPC's
//! marker key ([`marker`]) in the transaction that writes the subnet, on condition that the
//! marker is as it was when the create read the marker and then the subnets. A create that lost
//! the race reads again and checks its block against the winner's.

use flotilla_api::Ctx;
use flotilla_hosts::network::{
    block_within, blocks_overlap, default_vpc, first_host_of, parse_block, DefaultVpc, Subnet,
};
use flotilla_hosts::{keys, Host, Lifecycle};
use flotilla_query::{Params, QueryError, Xml};
use flotilla_store::{Compare, Op, Txn};

use super::filters::{self, Filterable};
use super::network::check_known;
use crate::api::{paging, records, Result};

/// The prefix of the per-VPC markers every CreateSubnet bumps (see the module's note). Not under
/// `keys::SUBNET`, whose every value is a [`Subnet`].
pub const SUBNET_MARKER: &str = "ec2/vpc-subnets/";

/// The marker of one VPC's subnets.
pub fn marker(vpc_id: &str) -> String {
    format!("{SUBNET_MARKER}{vpc_id}")
}

/// The prefix lengths CreateSubnet accepts, as EC2's.
const PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;

/// Parameters of CreateSubnet that ask for what Flotilla's VPC does not have.
const UNSUPPORTED: &[&str] =
    &["Ipv6CidrBlock", "OutpostArn", "Ipv4IpamPoolId", "Ipv4NetmaskLength", "Ipv6IpamPoolId", "Ipv6NetmaskLength"];

fn not_found(id: &str) -> QueryError {
    QueryError::new("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist"))
}

fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("subnet-{}", &hex[..17])
}

/// Every subnet: the default VPC's first (in zone order), then the created ones in id order.
async fn all(ctx: &Ctx, vpc: &DefaultVpc) -> Result<Vec<Subnet>> {
    let mut out = vpc.subnets.clone();
    out.extend(records::list::<Subnet>(ctx, keys::SUBNET).await?.into_iter().map(|(_, s, _)| s));
    Ok(out)
}

/// `CidrBlock`: a block inside the VPC's, /16 to /28.
fn check_block(cidr: &str, vpc: &DefaultVpc) -> Result<([u8; 4], u8)> {
    let Some(block) = parse_block(cidr) else {
        return Err(QueryError::new(
            "InvalidParameterValue",
            format!("Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."),
        ));
    };
    let inside = vpc.block().is_some_and(|v| block_within(block, v));
    if !inside || !PREFIXES.contains(&block.1) {
        return Err(QueryError::new("InvalidSubnet.Range", format!("The CIDR '{cidr}' is invalid.")));
    }
    Ok(block)
}

/// The zone `AvailabilityZone` or `AvailabilityZoneId` names (the region's first by default), as
/// the default subnet standing for it.
fn zone<'a>(p: &Params, vpc: &'a DefaultVpc) -> Result<&'a Subnet> {
    let names = || vpc.subnets.iter().map(|s| s.availability_zone.as_str()).collect::<Vec<_>>().join(", ");
    let ids = || vpc.subnets.iter().map(|s| s.availability_zone_id.as_str()).collect::<Vec<_>>().join(", ");
    let by_name = match p.get("AvailabilityZone") {
        Some(z) => Some(vpc.subnet_in_zone(z).ok_or_else(|| {
            QueryError::new(
                "InvalidParameterValue",
                format!(
                    "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                    names()
                ),
            )
        })?),
        None => None,
    };
    let by_id = match p.get("AvailabilityZoneId") {
        Some(z) => Some(vpc.subnet_in_zone_id(z).ok_or_else(|| {
            QueryError::new(
                "InvalidParameterValue",
                format!(
                    "Value ({z}) for parameter availabilityZoneId is invalid. Subnets can currently only be created in the following availability zone ids: {}.",
                    ids()
                ),
            )
        })?),
        None => None,
    };
    match (by_name, by_id) {
        (Some(a), Some(b)) if a.availability_zone != b.availability_zone => Err(QueryError::new(
            "InvalidParameterCombination",
            format!(
                "The availability zone '{}' and the availability zone id '{}' name different zones.",
                a.availability_zone, b.availability_zone_id
            ),
        )),
        (Some(z), _) | (None, Some(z)) => Ok(z),
        (None, None) => vpc.subnets.first().ok_or_else(|| records::internal("the region has no zones")),
    }
}

/// `TagSpecification.N` of resource type `subnet`, checked as EC2 checks tags.
fn tags(p: &Params) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in p.tag_specifications()? {
        if spec.resource_type.as_deref() != Some("subnet") {
            return Err(QueryError::new(
                "InvalidParameterValue",
                format!(
                    "'{}' is not a valid taggable resource type for this operation.",
                    spec.resource_type.unwrap_or_default()
                ),
            ));
        }
        for (key, value) in spec.tags {
            let bad = |why: &str| {
                QueryError::new("InvalidParameterValue", format!("Value ( {key} ) for parameter key is invalid. {why}"))
            };
            if key.is_empty() || key.chars().count() > 128 {
                return Err(bad("Tag keys must be between 1 and 128 characters long."));
            }
            if key.to_ascii_lowercase().starts_with("aws:") {
                return Err(bad("Tag keys starting with 'aws:' are reserved for internal use."));
            }
            if value.chars().count() > 256 {
                return Err(QueryError::new(
                    "InvalidParameterValue",
                    format!("Value ( {value} ) for parameter value is invalid. Tag values must be at most 256 characters long."),
                ));
            }
            if out.iter().any(|(k, _)| *k == key) {
                return Err(QueryError::new("InvalidParameterValue", format!("Duplicate tag key '{key}' specified.")));
            }
            out.push((key, value));
        }
    }
    if out.len() > 50 {
        return Err(QueryError::new("TagLimitExceeded", "The maximum number of tags per resource (50) was exceeded."));
    }
    Ok(out)
}

pub async fn create(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let vpc_id = p.required("VpcId")?;
    if vpc_id != vpc.vpc_id {
        return Err(QueryError::new("InvalidVpcID.NotFound", format!("The vpc ID '{vpc_id}' does not exist")));
    }
    if let Some(name) = UNSUPPORTED.iter().find(|n| p.has(n)) {
        return Err(QueryError::new(
            "UnsupportedOperation",
            format!("Flotilla's VPCs have IPv4 blocks of their own only: {name} is not supported."),
        ));
    }
    if p.bool("Ipv6Native")? == Some(true) {
        return Err(QueryError::new(
            "UnsupportedOperation",
            "Flotilla's VPCs have no IPv6 blocks: Ipv6Native is not supported.",
        ));
    }
    let cidr = p.required("CidrBlock")?;
    let block = check_block(cidr, &vpc)?;
    let zone = zone(p, &vpc)?;
    let subnet = Subnet {
        subnet_id: new_id(),
        availability_zone: zone.availability_zone.clone(),
        availability_zone_id: zone.availability_zone_id.clone(),
        cidr_block: cidr.to_string(),
        first_host: first_host_of(block.0),
        vpc_id: vpc.vpc_id.clone(),
        default_for_az: false,
        tags: tags(p)?,
    };
    let marker = marker(&vpc.vpc_id);
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        // The marker first, then the subnets: a create committed in between moves the marker.
        let seen = ctx.store.get(&marker).await.map_err(|e| records::internal(e.to_string()))?;
        let seen = seen.map_or(0, |kv| kv.mod_revision);
        for other in all(ctx, &vpc).await? {
            if other.block().is_some_and(|b| blocks_overlap(b, block)) {
                return Err(QueryError::new(
                    "InvalidSubnet.Conflict",
                    format!("The CIDR '{cidr}' conflicts with another subnet"),
                ));
            }
        }
        let key = keys::subnet(&subnet.subnet_id);
        let txn = Txn::new()
            .when(Compare::unchanged(&marker, seen))
            .when(Compare::absent(&key))
            .then(Op::put(&marker, subnet.subnet_id.as_bytes().to_vec()))
            .then(Op::put(&key, flotilla_hosts::codec::encode(&subnet)));
        if records::commit(ctx, txn).await? {
            let mut x = Xml::new();
            x.elem("subnet", |x| write(ctx, x, &subnet));
            return Ok(x);
        }
    }
    Err(records::internal("subnets kept being created while this request tried to create one; try again"))
}

/// What still uses a subnet: a host launched into it, or an awsvpc task with its address there;
/// with the guard on the subnet's addresses as the cache has it, so the delete commits only if no
/// task was given an address since (`flotilla_api::domain::subnets`).
fn dependency(ctx: &Ctx, id: &str, hosts: &[Host]) -> (Option<String>, Compare) {
    let guard_key = flotilla_api::state::keys::subnet_guard(id);
    let indexes = ctx.cache.read();
    let guard = match indexes.placements.get(&guard_key) {
        Some(e) => Compare::unchanged(guard_key.as_str(), e.revision),
        None => Compare::absent(guard_key.as_str()),
    };
    if let Some(h) = hosts.iter().find(|h| h.subnet_id == id && h.lifecycle != Lifecycle::Terminated) {
        return (Some(format!("instance {}", h.instance_id)), guard);
    }
    let tasks = indexes.addresses.get(id).map_or(0, |a| a.len());
    ((tasks > 0).then(|| format!("{tasks} task(s)")), guard)
}

pub async fn delete(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let id = p.required("SubnetId")?;
    if vpc.subnet(id).is_some() {
        return Err(QueryError::new(
            "OperationNotPermitted",
            format!(
                "The subnet '{id}' is a default subnet of the default VPC '{}': Flotilla derives the default VPC's subnets from the region, and they cannot be deleted.",
                vpc.vpc_id
            ),
        ));
    }
    let key = keys::subnet(id);
    for _ in 0..flotilla_api::context::MAX_CAS_ATTEMPTS {
        let Some((_, revision)) = records::get::<Subnet>(ctx, &key).await? else { return Err(not_found(id)) };
        let hosts: Vec<Host> = records::list(ctx, keys::HOST).await?.into_iter().map(|(_, h, _)| h).collect();
        // Tasks are read from the cache: let it see every task committed before this request.
        ctx.caught_up(ctx.store.revision()).await.map_err(|e| records::internal(e.message))?;
        let (user, guard) = dependency(ctx, id, &hosts);
        if let Some(user) = user {
            tracing::debug!(subnet = id, user, "subnet still in use");
            return Err(QueryError::new(
                "DependencyViolation",
                format!("The subnet '{id}' has dependencies and cannot be deleted."),
            ));
        }
        let txn = Txn::new().when(Compare::unchanged(&key, revision)).when(guard).then(Op::delete(&key));
        if records::commit(ctx, txn).await? {
            let mut x = Xml::new();
            x.leaf("return", "true");
            return Ok(x);
        }
    }
    Err(records::internal("the subnet kept changing while this request tried to delete it; try again"))
}

struct View<'a> {
    ctx: &'a Ctx,
    subnet: Subnet,
}

fn arn(ctx: &Ctx, s: &Subnet) -> String {
    let a = &ctx.arns;
    format!("arn:{}:ec2:{}:{}:subnet/{}", a.partition, a.region, a.account, s.subnet_id)
}

impl Filterable for View<'_> {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let s = &self.subnet;
        let one = |v: &str| Some(vec![v.to_string()]);
        match name {
            "subnet-id" => one(&s.subnet_id),
            "subnet-arn" => Some(vec![arn(self.ctx, s)]),
            "vpc-id" => one(&s.vpc_id),
            "owner-id" => one(&self.ctx.arns.account),
            "availability-zone" | "availabilityZone" => one(&s.availability_zone),
            "availability-zone-id" => one(&s.availability_zone_id),
            "default-for-az" | "defaultForAz" => Some(vec![s.default_for_az.to_string()]),
            "map-public-ip-on-launch" => Some(vec![s.default_for_az.to_string()]),
            "cidr-block" | "cidr" | "cidrBlock" | "cidr-block-association.cidr-block" => one(&s.cidr_block),
            "available-ip-address-count" => Some(vec![s.available_ip_address_count().to_string()]),
            "state" => one("available"),
            "ipv6-native" => one("false"),
            _ => filters::tag_filter(name, s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let subnets = all(ctx, &vpc).await?;
    let asked = p.list("SubnetId")?;
    let known: Vec<&str> = subnets.iter().map(|s| s.subnet_id.as_str()).collect();
    check_known(&asked, &known, "InvalidSubnetID.NotFound", "subnet")?;
    let max = p.int::<usize>("MaxResults")?;
    if let Some(m) = max.filter(|m| !(5..=1000).contains(m)) {
        return Err(QueryError::new(
            "InvalidParameterValue",
            format!("Value ( {m} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."),
        ));
    }
    let views: Vec<View> = subnets
        .into_iter()
        .filter(|s| asked.is_empty() || asked.contains(&s.subnet_id))
        .map(|subnet| View { ctx, subnet })
        .collect();
    let views = filters::retain(views, &p.filters("Filter")?)?;
    let (page, next) = paging::page(p.dialect(), views, |v| v.subnet.subnet_id.clone(), max, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("subnetSet", "item", &page, |x, v| write(ctx, x, &v.subnet));
    x.opt_leaf("nextToken", next);
    Ok(x)
}

/// A subnet as EC2 writes it. The default VPC's subnets map public addresses on launch; created
/// ones do not, and also say they have no IPv6 block.
fn write(ctx: &Ctx, x: &mut Xml, s: &Subnet) {
    x.leaf("subnetId", &s.subnet_id)
        .leaf("subnetArn", arn(ctx, s))
        .leaf("state", "available")
        .leaf("ownerId", &ctx.arns.account)
        .leaf("vpcId", &s.vpc_id)
        .leaf("cidrBlock", &s.cidr_block)
        .leaf("availableIpAddressCount", s.available_ip_address_count().to_string())
        .leaf("availabilityZone", &s.availability_zone)
        .leaf("availabilityZoneId", &s.availability_zone_id)
        .leaf("defaultForAz", s.default_for_az.to_string())
        .leaf("mapPublicIpOnLaunch", s.default_for_az.to_string());
    if !s.tags.is_empty() {
        x.list("tagSet", "item", &s.tags, |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        });
    }
    if !s.default_for_az {
        x.elem("ipv6CidrBlockAssociationSet", |_| {})
            .leaf("assignIpv6AddressOnCreation", "false")
            .leaf("ipv6Native", "false");
    }
}
