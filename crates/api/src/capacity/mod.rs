//! ECS's capacity provider controller: one supervised loop that places the tasks waiting in
//! PROVISIONING for a provider's hosts as they arrive (every second), stops those that waited
//! too long, and once per scaling period runs managed scaling ([`scaling`]) on
//! CapacityProviderReservation ([`reservation`]). Level-triggered: each pass reads the cache and
//! the groups' records afresh, so a restart loses nothing but the count of periods below target.

pub mod reservation;
pub mod scaling;
pub mod waiting;

use std::time::{Duration, Instant};

use crate::context::Ctx;
use crate::supervisor::LoopError;

const LOOP: &str = "capacity";

/// How long a pass over the waiting tasks waits for a change before looking again anyway.
const WAITING_PASS: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Managed scaling measures and acts once per period (ECS: one minute).
    pub scaling_period: Duration,
    /// A task that waited this long in PROVISIONING is stopped.
    pub provisioning_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { scaling_period: Duration::from_secs(60), provisioning_timeout: Duration::from_secs(1800) }
    }
}

pub async fn run(ctx: Ctx, settings: Settings) -> Result<(), LoopError> {
    let mut memory = scaling::Memory::default();
    let mut changes = ctx.cache.changes();
    let mut next_period = Instant::now();
    loop {
        if let Err(e) = waiting::pass(&ctx, settings.provisioning_timeout).await {
            ctx.loops.count_error(LOOP);
            tracing::warn!(error = %e, "placing waiting tasks failed");
        }
        if Instant::now() >= next_period {
            next_period = Instant::now() + settings.scaling_period;
            if let Err(e) = scaling::period(&ctx, &mut memory).await {
                ctx.loops.count_error(LOOP);
                tracing::warn!(error = %e, "managed scaling failed");
            }
        }
        changes.borrow_and_update();
        let until_period = next_period.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(WAITING_PASS.min(until_period), changes.changed()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
