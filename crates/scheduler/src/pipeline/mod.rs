//! `place`: the one place where the pipeline is assembled.
//!
//! 1. Requests whose strategies are all spreads (or none, or `random` first) first try sampling
//!    (`sample`): probe instances for one with the best possible key; most requests end there.
//! 2. Otherwise every instance goes through the checks, cheapest first: a vectorized screen on
//!    status, agent, cpu and memory (`Checks::screen`), then required attributes, constraints
//!    (memberOf evaluated column by column) and ports on the survivors (`Checks::rest`).
//! 3. The instances that fit are ranked by the strategies in the user's order (`select`); the best
//!    is chosen, its reservation taken, and the next task of the request sees the cluster as the
//!    earlier ones left it.
//! 4. Only when tasks are left over does a last pass count, instance by instance, the first check
//!    each one fails (`Checks::check`), for the failures' reasons and detail.

pub(crate) mod checks;
mod sample;
mod select;
mod verdict;

pub use verdict::{eligible, verify, Standing};

use checks::{Checks, InstState};
use select::Selector;

use crate::plan::{detail, Failure, FailureReason, Placement, Plan, Reason, Rejections};
use crate::request::{Env, Request, RequestError};
use crate::rng::Rng;
use crate::snapshot::{GroupCursor, Snapshot};

/// Places `request.count` tasks on `snapshot`'s instances. Pure: the same snapshot, request and
/// seed give the same plan. Tasks that do not fit come back as `unplaced`, with failures naming
/// ECS's reasons and counting why each instance was turned down.
pub fn place(snapshot: &Snapshot, request: &Request, env: &Env) -> Result<Plan, RequestError> {
    run(snapshot, request, env, true)
}

/// [`place`] without sampling: every request takes the full scan. The plans follow the same rules
/// (not necessarily the same draws); tests hold both paths to them, and the benchmark shows what
/// sampling saves.
#[doc(hidden)]
pub fn place_by_scan(snapshot: &Snapshot, request: &Request, env: &Env) -> Result<Plan, RequestError> {
    run(snapshot, request, env, false)
}

fn run(snapshot: &Snapshot, request: &Request, env: &Env, sampling: bool) -> Result<Plan, RequestError> {
    request.validate()?;
    let count = request.count as usize;
    if snapshot.is_empty() {
        return Ok(Plan {
            unplaced: request.count,
            failures: vec![Failure {
                reason: FailureReason::Missing,
                arn: None,
                detail: "no container instances are registered in the cluster".to_string(),
            }],
            ..Plan::default()
        });
    }
    let checks = Checks::new(snapshot, request);
    let mut rng = Rng::new(env.seed);

    // Spreads (and random) can be sampled for; the scan below is their fallback and serves the rest.
    if sampling {
        if let Some(chosen) = sample::place(snapshot, request, &checks, &mut rng) {
            let placements = chosen.into_iter().map(|instance| Placement { instance }).collect();
            return Ok(Plan { placements, ..Plan::default() });
        }
    }

    // Screen, finish the checks on the survivors, rank what fits.
    let mut cands = checks.screen();
    if checks.has_rest() {
        let member_of = checks.member_of_mask();
        let mut groups = GroupCursor::new(snapshot, checks.group);
        cands.retain(|&i| {
            let st = InstState::initial(snapshot, i as usize, groups.count(i as usize));
            checks.rest(i as usize, &st, member_of.as_deref())
        });
    }
    let mut selector = Selector::new(snapshot, request, checks.group);
    selector.fill(cands);
    selector.count_group();

    // Choose, reserve, repeat: each task sees what the earlier ones took.
    let mut placements = Vec::with_capacity(count);
    while placements.len() < count {
        let Some((cell, pos)) = selector.choose(&mut rng) else { break };
        let instance = selector.place(cell, pos, &checks);
        placements.push(Placement { instance });
    }
    if placements.len() == count {
        return Ok(Plan { placements, ..Plan::default() });
    }

    // Nothing fits any more: say why, instance by instance, in the state the request left them
    // (only now, so that a request that succeeds never pays for the reasons).
    let mut rejections = Rejections::default();
    let mut example: [Option<usize>; Reason::ALL.len()] = [None; Reason::ALL.len()];
    let mut groups = GroupCursor::new(snapshot, checks.group);
    for i in 0..snapshot.len() {
        let st = selector.state(i).unwrap_or_else(|| InstState::initial(snapshot, i, groups.count(i)));
        if let Err(reason) = checks.check(i, &st) {
            rejections.add(reason);
            example[reason as usize].get_or_insert(i);
        }
    }
    let unplaced = (count - placements.len()) as u32;
    let detail = detail(snapshot.len(), placements.len(), request.count, &rejections);
    let failures = rejections
        .iter()
        .map(|(reason, _)| Failure {
            reason: FailureReason::Rejected(reason),
            arn: example[reason as usize].map(|i| snapshot.arn(i).to_string()),
            detail: detail.clone(),
        })
        .collect();
    Ok(Plan { placements, unplaced, rejections, failures })
}
