//! An awsvpc task's own interface, given as the task is placed: a subnet in its host's zone, an
//! address from that subnet (`domain::subnets`), and the ENI attachment ECS shows. The task's
//! availability zone becomes its subnet's.

use flotilla_hosts::network::Subnet;
use flotilla_store::Txn;

use crate::context::Ctx;
use crate::domain::subnets::{self, Allocation};
use crate::state::cache::Indexes;
use crate::state::records::TaskRecord;

/// Where an awsvpc launch's interfaces go: its subnets, looked up, and whether a host must be in
/// one of their zones (Fargate) or may take the first subnet when it is in none of them (an EC2
/// host registered with a zone of its own, such as `local-1a`).
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    pub subnets: Vec<Subnet>,
    /// The revision each created subnet was read at (`None` for the default VPC's).
    pub revisions: Vec<Option<flotilla_store::Revision>>,
    pub strict: bool,
}

impl Interfaces {
    /// The zones the launch's tasks may run in.
    pub fn zones(&self) -> Vec<String> {
        subnets::zones(&self.subnets)
    }

    /// Gives `rec`, placed on a host in `zone`, its interface, adding the subnet's guard to `txn`.
    /// `false` when the subnet has no address left (or, strictly, no subnet is in the zone).
    pub fn give(
        &self,
        ctx: &Ctx,
        ix: &Indexes,
        txn: Txn,
        alloc: &mut Allocation,
        rec: &mut TaskRecord,
        zone: Option<&str>,
    ) -> (Txn, bool) {
        if self.subnets.is_empty() {
            return (txn, true);
        }
        let index = match self.subnets.iter().position(|s| Some(s.availability_zone.as_str()) == zone) {
            Some(i) => i,
            None if !self.strict => 0,
            None => return (txn, false),
        };
        let subnet = &self.subnets[index];
        let id = rec.task.task_arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("task").to_string();
        let revision = self.revisions.get(index).copied().flatten();
        let (txn, network) = alloc.allocate(ix, txn, subnet, revision, &id);
        let Some(network) = network else { return (txn, false) };
        subnets::attach(&mut rec.task, &network, &ctx.arns.region);
        rec.task.availability_zone = Some(subnet.availability_zone.clone());
        let hidden = rec.hidden.get_or_insert_with(Default::default);
        hidden.network = Some(network);
        (txn, true)
    }
}

/// The interfaces of a launch of `def` with `awsvpc`: none outside awsvpc mode. A Fargate launch
/// needs subnets that exist; an EC2 one whose subnets Flotilla does not know keeps the host's
/// shared awsvpc network, as before subnets were modelled.
pub async fn for_launch(
    ctx: &Ctx,
    def: &flotilla_model::TaskDefinition,
    awsvpc: Option<&flotilla_model::AwsVpcConfiguration>,
    fargate: bool,
) -> crate::error::ApiResult<Interfaces> {
    let Some(config) = awsvpc.filter(|_| def.network_mode.as_deref() == Some("awsvpc")) else {
        return Ok(Interfaces::default());
    };
    match subnets::load(ctx, config).await {
        Ok(read) => {
            let (subnets, revisions) = read.into_iter().unzip();
            Ok(Interfaces { subnets, revisions, strict: fargate })
        }
        Err(e) if fargate => Err(e),
        Err(_) => Ok(Interfaces::default()),
    }
}
