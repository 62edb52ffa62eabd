//! The group loop: keeps every Auto Scaling group's hosts at its desired capacity. It runs under
//! the control plane's supervisor, once a second and soon after any change in the store, and is
//! level-triggered: each pass reads the groups, hosts and launch templates as stored now, decides
//! with the pure [`plan::decide`] and acts, so a pass that runs twice, or after a restart, does
//! the same thing once. Launches and terminations run in the background (a provisioner may take
//! minutes); which hosts have one under way is the only state kept between passes, with each
//! group's launch back-off. See `launch.rs` and `terminate.rs` for the two paths.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_api::identity::tokens::TokenSigner;
use flotilla_api::supervisor::{LoopError, LoopHandle};
use flotilla_api::{ApiResult, Ctx};
use flotilla_hosts::network::{default_vpc, DefaultVpc, Subnet};
use flotilla_hosts::{keys, AutoScalingGroup, Host, Lifecycle};
use flotilla_store::{Compare, Op, Txn};

use crate::provision::Provisioner;

pub mod activities;
pub mod ecs;
pub mod launch;
pub mod plan;
pub mod records;
pub mod terminate;

#[cfg(test)]
mod tests;

/// The loop's name on `/health` and `/metrics`.
pub const LOOP_NAME: &str = "autoscaling-groups";

/// How the loop behaves.
#[derive(Clone)]
pub struct Settings {
    /// The longest wait between passes.
    pub interval: Duration,
    /// The shortest wait between passes, however often the store changes.
    pub quiet: Duration,
    /// How long a host being terminated waits for its tasks to stop once DRAINING.
    pub drain_timeout: Duration,
    /// How long Terminated hosts stay visible (DescribeInstances) before they are deleted.
    pub terminated_retention: Duration,
    /// How long finished scaling activities are kept (Auto Scaling keeps six weeks).
    pub activity_retention: Duration,
    /// The pause after a group's first failed launch, doubling up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Launches started per group per pass, so that a large scale-out joins in orderly waves.
    pub max_launches_per_pass: usize,
    /// Signs join tokens for provisioners whose agents join with one (`local`, `command`).
    pub join_tokens: Option<TokenSigner>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_secs(1),
            quiet: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(3600),
            terminated_retention: Duration::from_secs(3600),
            activity_retention: Duration::from_secs(42 * 24 * 3600),
            first_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
            max_launches_per_pass: 100,
            join_tokens: None,
        }
    }
}

impl Settings {
    /// The defaults, minting join tokens under the control plane's root secret.
    pub fn with_root_secret(secret_access_key: &str) -> Self {
        Settings { join_tokens: Some(TokenSigner::new(secret_access_key)), ..Settings::default() }
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until_ms: i64,
}

/// What the loop keeps between passes.
pub struct Shared {
    pub provisioner: Arc<dyn Provisioner>,
    pub settings: Settings,
    /// Hosts with a launch or termination under way.
    in_flight: Mutex<HashSet<String>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Whether this process has looked for hosts that did not survive a restart.
    adopted: AtomicBool,
    /// When old activities were last swept.
    swept_at_ms: Mutex<i64>,
}

/// How often old activities are swept.
const SWEEP_EVERY_MS: i64 = 10 * 60 * 1000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(provisioner: Arc<dyn Provisioner>, settings: Settings) -> Self {
        Shared {
            provisioner,
            settings,
            in_flight: Mutex::default(),
            backoff: Mutex::default(),
            adopted: AtomicBool::new(false),
            swept_at_ms: Mutex::new(i64::MIN),
        }
    }

    /// Marks work on `id` begun; false if some is already under way.
    pub fn begin(&self, id: &str) -> bool {
        lock(&self.in_flight).insert(id.to_string())
    }
    pub fn end(&self, id: &str) {
        lock(&self.in_flight).remove(id);
    }
    pub fn busy(&self, id: &str) -> bool {
        lock(&self.in_flight).contains(id)
    }
    /// How many launches and terminations are under way.
    pub fn under_way(&self) -> usize {
        lock(&self.in_flight).len()
    }

    fn backing_off(&self, group: &str, now_ms: i64) -> bool {
        lock(&self.backoff).get(group).is_some_and(|b| now_ms < b.until_ms)
    }
    pub fn launch_failed(&self, group: &str, now_ms: i64) {
        let mut all = lock(&self.backoff);
        let b = all.entry(group.to_string()).or_insert(Backoff { failures: 0, until_ms: 0 });
        b.failures = b.failures.saturating_add(1);
        let pause = self.settings.first_backoff.saturating_mul(1 << (b.failures - 1).min(16));
        b.until_ms = now_ms + pause.min(self.settings.max_backoff).as_millis() as i64;
    }
    pub fn launch_succeeded(&self, group: &str) {
        lock(&self.backoff).remove(group);
    }
}

/// Starts the group loop under the control plane's supervisor, on the leader only: one server
/// launches and terminates the hosts.
pub fn spawn(ctx: &Ctx, provisioner: Arc<dyn Provisioner>, settings: Settings) -> LoopHandle {
    let shared = Arc::new(Shared::new(provisioner, settings));
    let c = ctx.clone();
    ctx.loops.spawn_leader(LOOP_NAME, move |fence| run(c.fenced(fence), shared.clone()))
}

async fn run(ctx: Ctx, shared: Arc<Shared>) -> Result<(), LoopError> {
    let mut changes = ctx.cache.changes();
    loop {
        pass(&ctx, &shared).await.map_err(|e| Box::new(e) as LoopError)?;
        tokio::select! {
            _ = tokio::time::sleep(shared.settings.interval) => {}
            changed = changes.changed() => {
                tokio::time::sleep(if changed.is_ok() { shared.settings.quiet } else { shared.settings.interval }).await;
            }
        }
    }
}

/// The subnets a group spreads over, in order: its `VPCZoneIdentifier`, else its zones' default
/// subnets.
pub fn subnets_of(group: &AutoScalingGroup, vpc: &DefaultVpc) -> Vec<Subnet> {
    let from_ids: Vec<Subnet> = group.subnet_ids.iter().filter_map(|id| vpc.subnet(id).cloned()).collect();
    if !from_ids.is_empty() {
        return from_ids;
    }
    group.availability_zones.iter().filter_map(|z| vpc.subnet_in_zone(z).cloned()).collect()
}

/// Marks a live host Terminating, saying why.
async fn mark_terminating(ctx: &Ctx, instance_id: &str, cause: &str) -> ApiResult<()> {
    records::update_host(ctx, instance_id, |h| {
        if !plan::is_live(h) {
            return false;
        }
        h.lifecycle = Lifecycle::Terminating;
        h.termination_cause = Some(cause.to_string());
        true
    })
    .await?;
    Ok(())
}

/// One pass over every group and every host on its way out.
pub async fn pass(ctx: &Ctx, shared: &Arc<Shared>) -> ApiResult<()> {
    let world = records::load(ctx).await?;
    let now = ctx.clock.now_ms();
    let registered = ecs::by_ec2_id(ctx);
    if !shared.adopted.swap(true, Ordering::SeqCst) {
        adopt(ctx, shared, &world.hosts.iter().map(|h| &h.value).collect::<Vec<_>>()).await?;
        return Ok(());
    }
    let hosts: Vec<&Host> = world.hosts.iter().map(|h| &h.value).collect();

    // EC2 health checks: a running host whose provisioner lost it is replaced.
    for h in hosts.iter().filter(|h| h.lifecycle == Lifecycle::InService && !shared.busy(&h.instance_id)) {
        if !shared.provisioner.alive(h).await {
            tracing::warn!(instance = %h.instance_id, "a host is no longer running; replacing it");
            let cause = format!(
                "At {} an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.",
                activities::rfc3339(now)
            );
            records::update_host(ctx, &h.instance_id, |h| {
                if h.lifecycle != Lifecycle::InService {
                    return false;
                }
                h.health = "Unhealthy".into();
                h.lifecycle = Lifecycle::Terminating;
                h.termination_cause = Some(cause.clone());
                true
            })
            .await?;
        }
    }

    // Spot notices: a host whose agent is told to drain on one goes DRAINING at once.
    for h in hosts.iter().filter(|h| plan::is_live(h) && h.interruption.is_some() && h.spot_instance_draining) {
        for r in registered.get(&h.instance_id).into_iter().flatten() {
            if let Err(e) = ecs::drain(ctx, r).await {
                tracing::warn!(instance = %h.instance_id, error = %e, "draining an interrupted Spot host failed");
            }
        }
    }

    let vpc = default_vpc(&ctx.arns.region);
    let mut used_ips: HashSet<String> =
        hosts.iter().filter(|h| h.lifecycle != Lifecycle::Terminated).map(|h| h.private_ip.clone()).collect();
    for g in &world.groups {
        let group = &g.value;
        let mine: Vec<&Host> = hosts.iter().copied().filter(|h| h.group.as_deref() == Some(&group.name)).collect();
        let subnets = subnets_of(group, &vpc);
        let zones: Vec<String> = subnets.iter().map(|s| s.availability_zone.clone()).collect();
        let decided = plan::decide(group, &mine, &zones, now);
        for t in &decided.terminate {
            if !shared.busy(&t.instance_id) || group.is_deleting() {
                mark_terminating(ctx, &t.instance_id, &t.cause).await?;
            }
        }
        if !decided.launch.is_empty() && !shared.backing_off(&group.name, now) {
            launch_for(ctx, shared, g, &world, &subnets, &decided.launch, &mut used_ips).await?;
        }
        if group.is_deleting() && mine.iter().all(|h| h.lifecycle == Lifecycle::Terminated) {
            delete_group(ctx, g).await?;
        }
    }

    for h in hosts.iter().filter(|h| h.lifecycle == Lifecycle::Terminating && !shared.busy(&h.instance_id)) {
        let regs = registered.get(&h.instance_id).cloned().unwrap_or_default();
        if let Err(e) = terminate::step(ctx, shared, h, regs).await {
            tracing::warn!(instance = %h.instance_id, error = %e, "a termination step failed; the next pass tries again");
        }
    }

    let keep_ms = shared.settings.terminated_retention.as_millis() as i64;
    let expired: Vec<(String, flotilla_store::Revision)> = world
        .hosts
        .iter()
        .filter(|h| h.value.lifecycle == Lifecycle::Terminated)
        .filter(|h| h.value.terminated_at_ms.is_some_and(|t| now - t >= keep_ms))
        .map(|h| (keys::host(&h.value.instance_id), h.revision))
        .collect();
    if !expired.is_empty() {
        ctx.delete_unchanged(&expired).await?;
    }
    let due = {
        let mut swept = lock(&shared.swept_at_ms);
        let due = now.saturating_sub(*swept) >= SWEEP_EVERY_MS;
        if due {
            *swept = now;
        }
        due
    };
    if due {
        sweep_activities(ctx, now - shared.settings.activity_retention.as_millis() as i64).await?;
    }
    Ok(())
}

/// Deletes activities that ended before `cutoff_ms`.
async fn sweep_activities(ctx: &Ctx, cutoff_ms: i64) -> ApiResult<()> {
    let listing = ctx.store.list(keys::ACTIVITY).await?;
    let old: Vec<(String, flotilla_store::Revision)> = listing
        .kvs
        .into_iter()
        .filter(|kv| {
            serde_json::from_slice::<flotilla_hosts::Activity>(&kv.value)
                .is_ok_and(|a| a.ended_at_ms.is_some_and(|t| t < cutoff_ms))
        })
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    if !old.is_empty() {
        ctx.delete_unchanged(&old).await?;
    }
    Ok(())
}

/// After a restart: hosts the provisioner no longer has are terminated (and so replaced).
async fn adopt(ctx: &Ctx, shared: &Shared, hosts: &[&Host]) -> ApiResult<()> {
    for h in hosts.iter().filter(|h| plan::is_live(h) && !shared.busy(&h.instance_id)) {
        if !shared.provisioner.adopt(h).await {
            tracing::info!(instance = %h.instance_id, "a host did not survive the restart; replacing it");
            let cause = format!(
                "At {} an instance was taken out of service because the {} provisioner no longer has it (the server restarted).",
                activities::rfc3339(ctx.clock.now_ms()),
                shared.provisioner.name()
            );
            mark_terminating(ctx, &h.instance_id, &cause).await?;
        }
    }
    Ok(())
}

async fn launch_for(
    ctx: &Ctx,
    shared: &Arc<Shared>,
    g: &records::Versioned<AutoScalingGroup>,
    world: &records::World,
    subnets: &[Subnet],
    choices: &[plan::LaunchChoice],
    used_ips: &mut HashSet<String>,
) -> ApiResult<()> {
    let group = &g.value;
    let now = ctx.clock.now_ms();
    let template = match launch::resolve(group, &world.templates) {
        Ok(t) => t,
        Err(message) => {
            shared.launch_failed(&group.name, now);
            let (key, a) = activities::new(
                &group.name,
                "Launching a new EC2 instance.  Status Reason: the launch could not start.".into(),
                format!(
                    "At {} an instance was started in response to a difference between desired and actual capacity, increasing the capacity to meet the desired capacity.",
                    activities::rfc3339(now)
                ),
                now,
            );
            return activities::record(ctx, a, &key, Some(message)).await;
        }
    };
    for choice in choices.iter().take(shared.settings.max_launches_per_pass) {
        let Some(subnet) = subnets.iter().find(|s| s.availability_zone == choice.zone) else { continue };
        let Some(ip) = launch::free_address(subnet, used_ips) else {
            tracing::warn!(subnet = %subnet.subnet_id, "no free address left in the subnet");
            continue;
        };
        used_ips.insert(ip.clone());
        let l = launch::Launch {
            group: group.clone(),
            group_revision: g.revision,
            template: template.clone(),
            subnet: subnet.clone(),
            private_ip: ip,
            spot: choice.spot,
        };
        if !launch::start(ctx, shared, l).await? {
            // The group or hosts changed meanwhile: the next pass decides again.
            break;
        }
    }
    Ok(())
}

/// Deletes a group whose deletion has taken all its hosts, and its activities.
async fn delete_group(ctx: &Ctx, g: &records::Versioned<AutoScalingGroup>) -> ApiResult<()> {
    let key = keys::group(&g.value.name);
    if ctx.commit(Txn::new().when(Compare::unchanged(&key, g.revision)).then(Op::delete(&key))).await?.is_none() {
        return Ok(());
    }
    let listing = ctx.store.list(&keys::activities_of(&g.value.name)).await?;
    let old: Vec<(String, flotilla_store::Revision)> =
        listing.kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)).collect();
    ctx.delete_unchanged(&old).await?;
    tracing::info!(group = %g.value.name, "Auto Scaling group deleted");
    Ok(())
}
