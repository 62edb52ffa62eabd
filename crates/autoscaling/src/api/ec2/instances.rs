//! DescribeInstances over the host records: one reservation per host, its state from its
//! lifecycle, its place in the default VPC, Spot hosts marked `instanceLifecycle` `spot`, and the
//! `aws:autoscaling:groupName` tag beside the tags propagated from its group.

use flotilla_api::Ctx;
use flotilla_hosts::network::{default_vpc, stable_hex17};
use flotilla_hosts::{keys, Host};
use flotilla_query::{Params, QueryError, Xml};

use super::filters::{self, Filterable};
use crate::api::time::iso8601;
use crate::api::{paging, records, Result};

/// A host as EC2 shows it, with what its filters need.
struct Instance {
    host: Host,
    vpc_id: String,
    tags: Vec<(String, String)>,
}

impl Instance {
    fn new(host: Host, vpc_id: &str) -> Self {
        let mut tags: Vec<(String, String)> = Vec::new();
        if let Some(group) = &host.group {
            tags.push(("aws:autoscaling:groupName".into(), group.clone()));
        }
        for t in &host.tags {
            if !tags.iter().any(|(k, _)| *k == t.key) {
                tags.push((t.key.clone(), t.value.clone()));
            }
        }
        Instance { host, vpc_id: vpc_id.to_string(), tags }
    }
}

impl Filterable for Instance {
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let h = &self.host;
        let one = |s: &str| Some(vec![s.to_string()]);
        match name {
            "instance-id" => one(&h.instance_id),
            "instance-state-name" => one(h.lifecycle.ec2_state().0),
            "instance-state-code" => Some(vec![h.lifecycle.ec2_state().1.to_string()]),
            "instance-type" => one(&h.instance_type),
            "instance-lifecycle" => Some(if h.spot { vec!["spot".into()] } else { vec![] }),
            "availability-zone" => one(&h.availability_zone),
            "subnet-id" => one(&h.subnet_id),
            "vpc-id" => one(&self.vpc_id),
            "private-ip-address" => one(&h.private_ip),
            _ => filters::tag_filter(name, self.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }
}

fn check_instance_id(id: &str) -> Result<()> {
    let hex = id.strip_prefix("i-").unwrap_or("");
    if !hex.is_empty() && hex.len() <= 17 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(QueryError::new("InvalidInstanceID.Malformed", format!("Invalid id: \"{id}\"")))
}

pub async fn describe(ctx: &Ctx, p: &Params) -> Result<Xml> {
    let vpc = default_vpc(&ctx.arns.region);
    let hosts: Vec<Host> = records::list(ctx, keys::HOST).await?.into_iter().map(|(_, h, _)| h).collect();
    let ids = p.list("InstanceId")?;
    for id in &ids {
        check_instance_id(id)?;
    }
    let missing: Vec<&str> =
        ids.iter().filter(|id| !hosts.iter().any(|h| &h.instance_id == *id)).map(String::as_str).collect();
    if !missing.is_empty() {
        let quoted: Vec<String> = missing.iter().map(|id| format!("'{id}'")).collect();
        let (noun, verb) = if missing.len() == 1 { ("ID", "does") } else { ("IDs", "do") };
        return Err(QueryError::new(
            "InvalidInstanceID.NotFound",
            format!("The instance {noun} {} {verb} not exist", quoted.join(", ")),
        ));
    }
    let instances: Vec<Instance> = hosts
        .into_iter()
        .filter(|h| ids.is_empty() || ids.contains(&h.instance_id))
        .map(|h| Instance::new(h, &vpc.vpc_id))
        .collect();
    let instances = filters::retain(instances, &p.filters("Filter")?)?;
    let (page, next) =
        paging::page(p.dialect(), instances, |i| i.host.instance_id.clone(), p.int("MaxResults")?, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("reservationSet", "item", &page, |x, i| reservation(ctx, x, i));
    x.opt_leaf("nextToken", next);
    Ok(x)
}

fn reservation(ctx: &Ctx, x: &mut Xml, i: &Instance) {
    let h = &i.host;
    x.leaf("reservationId", format!("r-{}", stable_hex17(&h.instance_id)))
        .leaf("ownerId", &ctx.arns.account)
        .elem("groupSet", |_| {})
        .list("instancesSet", "item", [i], instance);
}

fn instance(x: &mut Xml, i: &Instance) {
    let h = &i.host;
    let (state, code) = h.lifecycle.ec2_state();
    x.leaf("instanceId", &h.instance_id)
        // Hosts run the agent on this machine's own system, not an image: a placeholder AMI.
        .leaf("imageId", "ami-00000000000000000")
        .elem("instanceState", |x| {
            x.leaf("code", code.to_string()).leaf("name", state);
        })
        .leaf("privateDnsName", format!("ip-{}.ec2.internal", h.private_ip.replace('.', "-")))
        .leaf("amiLaunchIndex", "0")
        .leaf("instanceType", &h.instance_type)
        .leaf("launchTime", iso8601(h.launched_at_ms))
        .elem("placement", |x| {
            x.leaf("availabilityZone", &h.availability_zone).leaf("tenancy", "default");
        })
        .elem("monitoring", |x| {
            x.leaf("state", "disabled");
        })
        .leaf("subnetId", &h.subnet_id)
        .leaf("vpcId", &i.vpc_id)
        .leaf("privateIpAddress", &h.private_ip)
        .leaf("architecture", "x86_64")
        .leaf("rootDeviceType", "ebs")
        .leaf("hypervisor", "xen")
        .leaf("virtualizationType", "hvm");
    if h.spot {
        x.leaf("instanceLifecycle", "spot");
    }
    if !i.tags.is_empty() {
        x.list("tagSet", "item", &i.tags, |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        });
    }
}
