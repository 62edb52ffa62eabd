//! Placement by sampling, for requests whose strategies are all spreads (or none, or `random`
//! first). Such a ranking has a best key known without looking at the cluster: no task of the group
//! on the instance, and the fewest in each spread attribute's emptiest value (counted from the
//! group's member list, not from the instances). Probing instances uniformly from the emptiest
//! value's instances (or from all) and keeping the first that fits with exactly that key is
//! rejection sampling: it draws uniformly from the best instances, which is the engine's
//! tie-breaking rule, at a cost set by how many of them fit rather than by the size of the cluster.
//! When the best key is not reachable, or too few instances fit, the probes run out and the
//! request goes to the full scan, which finds the true best.

use super::checks::{Checks, InstState};
use super::select::ranked;
use crate::request::{Request, SpreadField, Strategy};
use crate::rng::Rng;
use crate::snapshot::{group_count, Column, Snapshot};

/// Probes per task before leaving the request to the full scan: a probe costs tens of nanoseconds
/// and the scan of 10,000 instances tens of microseconds, so sampling may keep trying while one
/// probed instance in twenty or more is a best fit (256 probes then miss once in 10^5).
const PROBES: usize = 256;

/// A spread over an attribute: the group's tasks per value (the last slot: instances without it).
struct Spread<'a> {
    column: Option<&'a Column>,
    counts: Vec<u64>,
}

impl Spread<'_> {
    fn bucket(&self, i: usize) -> usize {
        self.column.and_then(|c| c.get(i)).map_or(self.counts.len() - 1, |v| v as usize)
    }
}

/// The instances chosen for the request's tasks, or `None` to leave the request to the full scan.
pub(crate) fn place(snapshot: &Snapshot, request: &Request, checks: &Checks<'_>, rng: &mut Rng) -> Option<Vec<usize>> {
    let ranked = ranked(request);
    if ranked.iter().any(|s| matches!(s, Strategy::Binpack(_))) {
        return None; // the least memory left that still fits is not known without looking
    }
    let per_instance = ranked.contains(&Strategy::Spread(SpreadField::Instance));
    let mut spreads: Vec<Spread> = Vec::new();
    for s in ranked {
        if let Strategy::Spread(SpreadField::Attribute(name)) = s {
            let column = snapshot.attribute_names.get(name).map(|id| &snapshot.columns[id as usize]);
            let mut counts = vec![0; column.map_or(0, |c| c.values.names.len()) + 1];
            // With every instance carrying the attribute, the slot of those without it is no bucket
            // at all and must not pass for the emptiest.
            let carrying: usize = column.map_or(0, |c| c.members.iter().map(Vec::len).sum());
            if carrying == snapshot.len() {
                if let Some(absent) = counts.last_mut() {
                    *absent = u64::MAX;
                }
            }
            spreads.push(Spread { column, counts });
        }
    }
    if let Some(members) = checks.group.map(|g| &snapshot.group_members[g as usize]) {
        for &(i, tasks) in members {
            for s in &mut spreads {
                let b = s.bucket(i as usize);
                s.counts[b] += u64::from(tasks);
            }
        }
    }

    let n = snapshot.len() as u64;
    // What this request has done to the (at most count) instances it placed on.
    let mut touched: Vec<(usize, InstState)> = Vec::with_capacity(request.count as usize);
    let mut chosen = Vec::with_capacity(request.count as usize);
    let mut pool: Vec<&[u32]> = Vec::new();
    for _ in 0..request.count {
        let best: Vec<u64> = spreads.iter().map(|s| s.counts.iter().copied().min().unwrap_or(0)).collect();
        // Probe the instances of the first spread's emptiest values; all of them when the
        // instances without the attribute are among the emptiest (they have no list) or when
        // there is no attribute spread.
        pool.clear();
        let mut everyone = true;
        if let Some(first) = spreads.first() {
            let absent = first.counts.len() - 1;
            if first.counts[absent] != best[0] {
                if let Some(column) = first.column {
                    everyone = false;
                    pool.extend((0..absent).filter(|v| first.counts[*v] == best[0]).map(|v| &column.members[v][..]));
                }
            }
        }
        let size: u64 = if everyone { n } else { pool.iter().map(|p| p.len() as u64).sum() };
        if size == 0 {
            return None;
        }
        let mut found = None;
        for _ in 0..PROBES {
            let i = if everyone { rng.below(n) as usize } else { pick(&pool, rng.below(size)) };
            let st = touched
                .iter()
                .find(|(t, _)| *t == i)
                .map_or_else(|| InstState::initial(snapshot, i, group_count(snapshot, i, checks.group)), |(_, st)| *st);
            let best_key =
                !(per_instance && st.group > 0) && spreads.iter().zip(&best).all(|(s, b)| s.counts[s.bucket(i)] == *b);
            if best_key && checks.check(i, &st).is_ok() {
                found = Some((i, st));
                break;
            }
        }
        let (i, mut st) = found?;
        checks.reserve(&mut st);
        for s in &mut spreads {
            let b = s.bucket(i);
            s.counts[b] += 1;
        }
        match touched.iter_mut().find(|(t, _)| *t == i) {
            Some(entry) => entry.1 = st,
            None => touched.push((i, st)),
        }
        chosen.push(i);
    }
    Some(chosen)
}

/// The `r`-th instance of the concatenated lists.
fn pick(pool: &[&[u32]], mut r: u64) -> usize {
    for list in pool {
        if r < list.len() as u64 {
            return list[r as usize] as usize;
        }
        r -= list.len() as u64;
    }
    unreachable!("r is below the pool's size")
}
