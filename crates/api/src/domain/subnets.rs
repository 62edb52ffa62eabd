//! awsvpc tasks' own interfaces: each task gets an address from its subnet's block, as an ENI in a
//! VPC would, and the ENI attachment ECS shows. Subnets are the region's default VPC's and those
//! created with EC2's CreateSubnet (`flotilla-hosts`).
//!
//! Addresses are handed out by the control plane, never by a host: a subnet spans hosts (each has
//! a Docker network standing for it), so only one place can keep two tasks off the same address.
//! The cache indexes the addresses of every task not yet STOPPED; a launch picks free ones, and its
//! transaction bumps each subnet's counter (a [`keys::subnet_guard`] beside the placement counters),
//! so two launches that picked from the same view of a subnet cannot both commit.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use flotilla_hosts::network::Subnet;
use flotilla_model::{AwsVpcConfiguration, KeyValuePair, Task};
use flotilla_protocol::TaskNetwork;
use flotilla_store::{Compare, Op, Revision, Txn};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::cache::Indexes;
use crate::state::codec::encode;
use crate::state::keys;

/// The most subnets an awsvpcConfiguration may name.
pub const MAX_SUBNETS: usize = 16;

/// The subnets a task's awsvpcConfiguration names, looked up, each created one with the revision
/// it was read at (see [`Allocation::allocate`]); an unknown one is refused as ECS refuses it.
pub async fn load(ctx: &Ctx, config: &AwsVpcConfiguration) -> ApiResult<Vec<(Subnet, Option<Revision>)>> {
    let ids = config.subnets.as_deref().unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_SUBNETS {
        return Err(ApiError::invalid_parameter(format!(
            "awsvpcConfiguration.subnets must name 1 to {MAX_SUBNETS} subnets; got {}.",
            ids.len()
        )));
    }
    let mut out: Vec<(Subnet, Option<Revision>)> = Vec::with_capacity(ids.len());
    for id in ids {
        match crate::domain::hosts::subnet(ctx, id).await? {
            Some(s) => {
                if let Some((first, _)) = out.first().filter(|(f, _)| f.vpc_id != s.0.vpc_id) {
                    return Err(ApiError::invalid_parameter(format!(
                        "The subnets {} and {} are in different VPCs; all of a task's subnets must be in one VPC.",
                        first.subnet_id, s.0.subnet_id
                    )));
                }
                out.push(s)
            }
            None => {
                return Err(ApiError::invalid_parameter(format!(
                    "Error retrieving subnet information for [{id}]: The subnet ID '{id}' does not exist"
                )))
            }
        }
    }
    Ok(out)
}

/// The distinct zones of `subnets`, in their order.
pub fn zones(subnets: &[Subnet]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in subnets {
        if !out.contains(&s.availability_zone) {
            out.push(s.availability_zone.clone());
        }
    }
    out
}

/// Addresses one transaction hands out, per subnet, so that its tasks never share one.
#[derive(Debug, Default)]
pub struct Allocation {
    taken: HashMap<String, HashSet<u32>>,
}

impl Allocation {
    /// A free address of `subnet` for task `task_id`, and the interface it makes; `None` when the
    /// subnet is full. The first allocation in a subnet adds its guard to `txn`, and, for a created
    /// subnet read at `revision`, a compare that it was not deleted meanwhile (DeleteSubnet, for
    /// its part, compares the guard).
    pub fn allocate(
        &mut self,
        ix: &Indexes,
        txn: Txn,
        subnet: &Subnet,
        revision: Option<Revision>,
        task_id: &str,
    ) -> (Txn, Option<TaskNetwork>) {
        let Some((base, len)) = subnet.block() else { return (txn, None) };
        let start = u32::from(Ipv4Addr::from(base));
        let size = 1u64 << (32 - u32::from(len));
        // EC2 keeps the first four addresses and the last of every subnet.
        let (first, last) = (start as u64 + 4, start as u64 + size.saturating_sub(2));
        let in_use = ix.addresses.get(subnet.subnet_id.as_str());
        let fresh = !self.taken.contains_key(&subnet.subnet_id);
        let mine = self.taken.entry(subnet.subnet_id.clone()).or_default();
        let txn = match (fresh, revision) {
            (false, _) => txn,
            (true, None) => guard(ix, txn, &subnet.subnet_id),
            (true, Some(r)) => guard(ix, txn, &subnet.subnet_id)
                .when(Compare::unchanged(flotilla_hosts::keys::subnet(&subnet.subnet_id), r)),
        };
        let pick =
            (first..=last).map(|a| a as u32).find(|a| !mine.contains(a) && !in_use.is_some_and(|set| set.contains(a)));
        let Some(address) = pick else { return (txn, None) };
        mine.insert(address);
        let octets = Ipv4Addr::from(address).octets();
        let network = TaskNetwork {
            subnet_id: subnet.subnet_id.clone(),
            cidr_block: subnet.cidr_block.clone(),
            ipv4_address: Ipv4Addr::from(address).to_string(),
            mac_address: format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", octets[0], octets[1], octets[2], octets[3]),
            interface_id: format!("eni-{}", &task_id[..task_id.len().min(17)]),
        };
        (txn, Some(network))
    }
}

/// Bumps the subnet's counter under a compare on its current value.
fn guard(ix: &Indexes, txn: Txn, subnet_id: &str) -> Txn {
    let key = keys::subnet_guard(subnet_id);
    let (compare, next) = match ix.placements.get(&key) {
        Some(e) => (Compare::unchanged(key.as_str(), e.revision), *e.value + 1),
        None => (Compare::absent(key.as_str()), 1),
    };
    txn.when(compare).then(Op::put(key, encode(&next)))
}

/// The private DNS name EC2 gives an address (`ip-172-31-0-4.ec2.internal` in us-east-1).
pub fn private_dns_name(region: &str, address: &str) -> String {
    let host = format!("ip-{}", address.replace('.', "-"));
    match region {
        "us-east-1" => format!("{host}.ec2.internal"),
        r => format!("{host}.{r}.compute.internal"),
    }
}

/// Gives `t` its ENI attachment as ECS shows it while the interface is set up: PRECREATED, with
/// the subnet, interface, MAC, DNS name and address already known.
pub fn attach(t: &mut Task, n: &TaskNetwork, region: &str) {
    let id = t.task_arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("task").to_string();
    let kv = |name: &str, v: &str| KeyValuePair { name: Some(name.into()), value: Some(v.into()) };
    let attachments = t.attachments.get_or_insert_with(Vec::new);
    attachments.retain(|a| a.r#type.as_deref() != Some("ElasticNetworkInterface"));
    attachments.push(flotilla_model::Attachment {
        id: Some(format!("eni-attachment-{id}")),
        r#type: Some("ElasticNetworkInterface".into()),
        status: Some("PRECREATED".into()),
        details: Some(vec![
            kv("subnetId", &n.subnet_id),
            kv("networkInterfaceId", &n.interface_id),
            kv("macAddress", &n.mac_address),
            kv("privateDnsName", &private_dns_name(region, &n.ipv4_address)),
            kv("privateIPv4Address", &n.ipv4_address),
        ]),
    });
}

pub use crate::state::tasks::address_number;

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str) -> Subnet {
        Subnet {
            subnet_id: "subnet-a".into(),
            availability_zone: "us-east-1a".into(),
            availability_zone_id: "use1-az1".into(),
            cidr_block: cidr.into(),
            first_host: [0; 4],
            vpc_id: "vpc-1".into(),
            default_for_az: false,
            tags: Vec::new(),
        }
    }

    #[test]
    fn addresses_skip_ec2s_reserved_ones_and_each_other() {
        let ix = Indexes::default();
        let mut a = Allocation::default();
        let s = subnet("10.1.2.0/29");
        let (txn, one) = a.allocate(&ix, Txn::new(), &s, None, "t1");
        let (txn, two) = a.allocate(&ix, txn, &s, None, "t2");
        let (txn, three) = a.allocate(&ix, txn, &s, None, "t3");
        let (txn, none) = a.allocate(&ix, txn, &s, None, "t4");
        assert_eq!(one.unwrap().ipv4_address, "10.1.2.4");
        assert_eq!(two.unwrap().ipv4_address, "10.1.2.5");
        assert_eq!(three.unwrap().ipv4_address, "10.1.2.6");
        assert!(none.is_none(), "a /29 has three addresses left after EC2's five");
        assert_eq!(txn.ops.len(), 1, "one guard per subnet");
    }

    #[test]
    fn addresses_in_use_are_skipped() {
        let mut ix = Indexes::default();
        ix.addresses.entry("subnet-a".into()).or_default().insert(address_number("10.1.2.4").unwrap());
        let (_, n) = Allocation::default().allocate(&ix, Txn::new(), &subnet("10.1.2.0/24"), None, "t1");
        let n = n.unwrap();
        assert_eq!(n.ipv4_address, "10.1.2.5");
        assert_eq!(n.mac_address, "02:42:0a:01:02:05");
    }

    #[test]
    fn dns_names_follow_ec2() {
        assert_eq!(private_dns_name("us-east-1", "172.31.0.4"), "ip-172-31-0-4.ec2.internal");
        assert_eq!(private_dns_name("eu-west-1", "10.0.0.9"), "ip-10-0-0-9.eu-west-1.compute.internal");
    }
}
