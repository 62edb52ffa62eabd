//! SetSubnets, SetSecurityGroups and SetIpAddressType: a load balancer's network settings
//! changed after creation (Terraform's `aws_lb` calls them on update), with the same checks as
//! CreateLoadBalancer, each one compare-and-swap of the load balancer's record.

use flotilla_api::Ctx;
use flotilla_endpoints::elb::LoadBalancer;
use flotilla_endpoints::keys;
use flotilla_query::{Params, QueryError, Xml};

use super::errors::{lb_not_found, validation};
use super::load_balancers::{security_groups, zones};
use super::{arns, store, Result};

/// Lets `change` edit the load balancer `LoadBalancerArn` names.
async fn edit(ctx: &Ctx, p: &Params, change: impl Fn(&mut LoadBalancer)) -> Result<LoadBalancer> {
    let arn = p.required("LoadBalancerArn")?;
    let id = arns::load_balancer_id(arn)?;
    store::update::<LoadBalancer, _>(ctx, &keys::load_balancer(&id), |lb| {
        if lb.arn != arn {
            return Err(lb_not_found());
        }
        change(lb);
        Ok(())
    })
    .await?
    .ok_or_else(lb_not_found)
}

pub async fn set_subnets(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("LoadBalancerArn")?;
    let kind = super::load_balancers::find(ctx, arn).await?.kind;
    if p.list("Subnets")?.is_empty() && p.structs("SubnetMappings")?.is_empty() {
        return Err(QueryError::missing(p.dialect(), "Subnets"));
    }
    let (pairs, vpc_id) = zones(ctx, p, kind).await?;
    let lb = edit(ctx, p, |lb| {
        lb.zones = pairs.clone();
        lb.vpc_id = Some(vpc_id.clone());
    })
    .await?;
    let mut x = Xml::new();
    x.list("AvailabilityZones", "member", &lb.zones, |x, (zone, subnet)| {
        x.leaf("ZoneName", zone).leaf("SubnetId", subnet).elem("LoadBalancerAddresses", |_| {});
    });
    x.leaf("IpAddressType", &lb.ip_address_type);
    Ok(x)
}

pub async fn set_security_groups(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let arn = p.required("LoadBalancerArn")?;
    let kind = super::load_balancers::find(ctx, arn).await?.kind;
    if p.list("SecurityGroups")?.is_empty() {
        return Err(QueryError::missing(p.dialect(), "SecurityGroups"));
    }
    let groups = security_groups(ctx, p, kind)?;
    let lb = edit(ctx, p, |lb| lb.security_groups = groups.clone()).await?;
    let mut x = Xml::new();
    x.string_list("SecurityGroupIds", "member", &lb.security_groups);
    Ok(x)
}

pub async fn set_ip_address_type(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let wanted = p.required("IpAddressType")?;
    if wanted != "ipv4" {
        return Err(validation(format!(
            "IP address type '{wanted}' is not supported: Flotilla's load balancers are IPv4 only"
        )));
    }
    let lb = edit(ctx, p, |lb| lb.ip_address_type = "ipv4".into()).await?;
    let mut x = Xml::new();
    x.leaf("IpAddressType", &lb.ip_address_type);
    Ok(x)
}
