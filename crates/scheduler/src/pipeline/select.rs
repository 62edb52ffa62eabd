//! The strategies of one request, as a ranking that answers "which instance next?" without
//! rescanning the cluster for every task.
//!
//! Strategies compare instances lexicographically, level by level: `binpack` by the resource left
//! (less is better), `spread` on instanceId by the group's tasks on the instance, `spread` on an
//! attribute by the group's tasks on all instances sharing its value (its *bucket*), and `random`
//! ends the list (it breaks every remaining tie). Ties after the last level are broken uniformly
//! at random, drawn afresh for every task.
//!
//! Candidates are grouped into *cells*, one per combination of bucket values. Inside a cell the
//! bucket levels are equal, so its members rank by their own (instance-level) keys alone, and only
//! the *tier* of members tied at the cell's best key can win. A placement changes one candidate's
//! key (and the counts of its buckets, which are shared per cell), so choosing the next instance
//! costs one look at each cell, and a tier is rebuilt from its cell's members only when placements
//! have used it up.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::checks::{Checks, InstState};
use crate::request::{Request, Resource, SpreadField, Strategy, MAX_STRATEGIES};
use crate::rng::Rng;
use crate::snapshot::{group_count, Column, GroupCursor, Snapshot, ABSENT};

const LEVELS: usize = MAX_STRATEGIES;

/// An instance-level key: its levels (at most three distinct ones exist: binpack cpu, binpack
/// memory, spread instanceId) packed 32 bits each, first level highest, so one integer comparison
/// is the lexicographic one. (An array compared field by field was a third of the pass: the CPU
/// could not forward the freshly stored fields to the wide load that compared them.)
type Key = u128;

/// Cells are indexed through a flat table while all bucket combinations fit in this many slots.
const DENSE_CELLS: u64 = 1 << 16;

#[derive(Debug, Clone, Copy)]
enum Level {
    Binpack(Resource),
    SpreadInstance,
    /// A spread over an attribute: index into `Selector::buckets`.
    Bucket(usize),
}

/// The strategy levels that rank, i.e. those before the first `random`.
pub(crate) fn ranked(request: &Request) -> &[Strategy] {
    let end = request.strategies.iter().position(|s| *s == Strategy::Random).unwrap_or(request.strategies.len());
    &request.strategies[..end]
}

struct BucketLevel<'a> {
    column: Option<&'a Column>,
    /// Bucket of instances without the attribute (one past the last value id).
    absent: u32,
    /// Tasks of the group per bucket, over every instance (a task counts where it runs, even on an
    /// instance that cannot take another).
    counts: Vec<u64>,
}

impl BucketLevel<'_> {
    #[inline]
    fn bucket(&self, i: usize) -> u32 {
        self.column.and_then(|c| c.get(i)).unwrap_or(self.absent)
    }
}

struct Cell {
    buckets: [u32; LEVELS],
    /// The best instance-level key among live members, and the members (instance indexes) holding it.
    key: Key,
    tier: Vec<u32>,
    alive: u32,
}

enum CellIndex {
    Dense { strides: [u64; LEVELS], slots: Vec<u32> },
    Sparse(BTreeMap<[u32; LEVELS], u32>),
}

/// The per-request ranking. It keeps no record per candidate beyond its index: the state of an
/// instance the request has not touched is the snapshot's, and the (at most `count`) instances it
/// placed on are kept aside in `touched`.
pub(crate) struct Selector<'a> {
    snapshot: &'a Snapshot,
    group: Option<u32>,
    levels: Vec<Level>,
    /// The instance-level levels, in order: they fill a `Key`.
    own: Vec<Level>,
    buckets: Vec<BucketLevel<'a>>,
    cells: Vec<Cell>,
    index: CellIndex,
    /// Instances that fit before the request, in increasing order, and their cells when there is
    /// more than one: what a tier is rebuilt from.
    cands: Vec<u32>,
    cand_cells: Vec<u32>,
    /// Instances this request placed on: their state and whether they can take another task.
    touched: Vec<(u32, InstState, bool)>,
    /// Cells are the values of the only attribute spread (cell id = value id), so a candidate's
    /// cell is read from the column rather than kept in `cand_cells`.
    direct: bool,
}

impl<'a> Selector<'a> {
    pub fn new(snapshot: &'a Snapshot, request: &Request, group: Option<u32>) -> Self {
        let mut levels = Vec::new();
        let mut buckets = Vec::new();
        let ranked = ranked(request);
        for (k, s) in ranked.iter().enumerate() {
            // A strategy repeated later never breaks a tie its first occurrence left.
            if ranked[..k].contains(s) {
                continue;
            }
            levels.push(match s {
                Strategy::Binpack(r) => Level::Binpack(*r),
                Strategy::Spread(SpreadField::Instance) => Level::SpreadInstance,
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    let column = snapshot.attribute_names.get(name).map(|id| &snapshot.columns[id as usize]);
                    let absent = column.map_or(0, |c| c.values.names.len() as u32);
                    buckets.push(BucketLevel { column, absent, counts: vec![0; absent as usize + 1] });
                    Level::Bucket(buckets.len() - 1)
                }
                Strategy::Random => unreachable!("ranked() stops before random"),
            });
        }
        let own = levels.iter().copied().filter(|l| !matches!(l, Level::Bucket(_))).collect();
        let mut strides = [0u64; LEVELS];
        let mut slots: Option<u64> = Some(1);
        for (b, level) in buckets.iter().enumerate() {
            strides[b] = slots.unwrap_or(0);
            slots = slots.and_then(|s| s.checked_mul(level.counts.len() as u64)).filter(|s| *s <= DENSE_CELLS);
        }
        let index = match slots {
            Some(n) => CellIndex::Dense { strides, slots: vec![u32::MAX; n as usize] },
            None => CellIndex::Sparse(BTreeMap::new()),
        };
        Selector {
            snapshot,
            group,
            levels,
            own,
            buckets,
            cells: Vec::new(),
            index,
            cands: Vec::new(),
            cand_cells: Vec::new(),
            touched: Vec::new(),
            direct: false,
        }
    }

    #[inline]
    fn key(&self, st: &InstState) -> Key {
        let mut key: Key = 0;
        for level in &self.own {
            let v = match level {
                Level::Binpack(Resource::Cpu) => st.cpu.max(0) as u32,
                Level::Binpack(Resource::Memory) => st.memory.max(0) as u32,
                Level::SpreadInstance => st.group,
                Level::Bucket(_) => 0,
            };
            key = (key << 32) | Key::from(v);
        }
        key
    }

    /// Level `k` of the instance-level levels of a key.
    #[inline]
    fn own_level(&self, key: Key, k: usize) -> u32 {
        (key >> (32 * (self.own.len() - 1 - k))) as u32
    }

    /// Takes the candidates (the instances that fit, in increasing order). With no attribute spread
    /// there is one cell, and its tier comes from two tight passes (the best key, then who holds
    /// it) instead of per-candidate bookkeeping; the common single-binpack key reads one array.
    pub fn fill(&mut self, cands: Vec<u32>) {
        if !self.buckets.is_empty() {
            self.fill_cells(cands);
            return;
        }
        if cands.is_empty() {
            return;
        }
        let s = self.snapshot;
        let (best, tier) = match self.own.as_slice() {
            [] => (0, cands.clone()),
            [Level::Binpack(r)] => {
                let left = if *r == Resource::Cpu { &s.cpu } else { &s.memory };
                let best = cands.iter().map(|&i| left[i as usize]).min().unwrap_or(0);
                (Key::from(best.max(0) as u32), cands.iter().copied().filter(|&i| left[i as usize] == best).collect())
            }
            _ => {
                let mut groups = GroupCursor::new(s, self.group);
                let keys: Vec<Key> = cands
                    .iter()
                    .map(|&i| self.key(&InstState::initial(s, i as usize, groups.count(i as usize))))
                    .collect();
                let best = keys.iter().copied().min().unwrap_or(0);
                (best, cands.iter().zip(&keys).filter(|(_, k)| **k == best).map(|(i, _)| *i).collect())
            }
        };
        self.cells.push(Cell { buckets: [0; LEVELS], key: best, tier, alive: cands.len() as u32 });
        if !self.own.is_empty() {
            self.cands = cands;
        }
    }

    /// `fill` with attribute spreads: the same two passes, per cell. The first finds each
    /// candidate's cell and each cell's best key, the second gathers every cell's tier. Keys are
    /// read straight from the snapshot for a single binpack, computed once otherwise.
    fn fill_cells(&mut self, cands: Vec<u32>) {
        let s = self.snapshot;
        // The usual case, one spread over a dense attribute (the zone) with at most a binpack after
        // it, has a cell per attribute value: cell and value ids coincide, and the passes read two
        // arrays per candidate.
        let dense = match self.buckets.as_slice() {
            [l] => l.column.and_then(Column::dense).map(|column| (column, l.absent)),
            _ => None,
        };
        if let (Some((column, absent)), CellIndex::Dense { slots, .. }) = (dense, &mut self.index) {
            let left = match self.own.as_slice() {
                [] => Some(None),
                [Level::Binpack(Resource::Cpu)] => Some(Some(&s.cpu[..])),
                [Level::Binpack(Resource::Memory)] => Some(Some(&s.memory[..])),
                _ => None,
            };
            if let Some(left) = left {
                for (b, slot) in slots.iter_mut().enumerate() {
                    *slot = b as u32;
                    let mut buckets = [0; LEVELS];
                    buckets[0] = b as u32;
                    self.cells.push(Cell { buckets, key: Key::MAX, tier: Vec::new(), alive: 0 });
                }
                let bucket = |i: u32| {
                    let v = column[i as usize];
                    (if v == ABSENT { absent } else { v }) as usize
                };
                let key = |i: u32| left.map_or(0, |l| Key::from(l[i as usize].max(0) as u32));
                for &i in &cands {
                    let c = &mut self.cells[bucket(i)];
                    c.key = c.key.min(key(i));
                    c.alive += 1;
                }
                for &i in &cands {
                    let c = &mut self.cells[bucket(i)];
                    if key(i) == c.key {
                        c.tier.push(i);
                    }
                }
                self.direct = true;
                if left.is_some() {
                    self.cands = cands;
                }
                return;
            }
        }
        match self.own.as_slice() {
            [] => self.fill_cells_with(cands, |_, _| 0),
            [Level::Binpack(r)] => {
                let left = if *r == Resource::Cpu { &s.cpu[..] } else { &s.memory[..] };
                self.fill_cells_with(cands, |_, i| Key::from(left[i as usize].max(0) as u32))
            }
            _ => {
                let mut groups = GroupCursor::new(s, self.group);
                let keys: Vec<Key> = cands
                    .iter()
                    .map(|&i| self.key(&InstState::initial(s, i as usize, groups.count(i as usize))))
                    .collect();
                self.fill_cells_with(cands, |k, _| keys[k])
            }
        }
    }

    fn fill_cells_with(&mut self, cands: Vec<u32>, key: impl Fn(usize, u32) -> Key) {
        let mut cells: Vec<u32> = Vec::with_capacity(cands.len());
        let mut best: Vec<(Key, u32)> = Vec::new();
        match &mut self.index {
            CellIndex::Dense { strides, slots } => {
                let levels: Vec<(&BucketLevel, u64)> = self.buckets.iter().zip(strides.iter().copied()).collect();
                // The usual case, one spread over a dense attribute (the zone), reads its column
                // directly: the cell code is the value id.
                let single = match levels.as_slice() {
                    [(l, _)] => l.column.and_then(|c| c.dense()).map(|d| (d, l.absent)),
                    _ => None,
                };
                let code_of = |i: u32| -> u64 {
                    match single {
                        Some((column, absent)) => {
                            let v = column[i as usize];
                            u64::from(if v == ABSENT { absent } else { v })
                        }
                        None => levels.iter().map(|(l, stride)| u64::from(l.bucket(i as usize)) * stride).sum(),
                    }
                };
                for (k, &i) in cands.iter().enumerate() {
                    let code = code_of(i);
                    let slot = &mut slots[code as usize];
                    if *slot == u32::MAX {
                        *slot = self.cells.len() as u32;
                        let mut ids = [0u32; LEVELS];
                        for (b, (l, stride)) in levels.iter().enumerate() {
                            ids[b] = ((code / stride) % l.counts.len() as u64) as u32;
                        }
                        self.cells.push(Cell { buckets: ids, key: 0, tier: Vec::new(), alive: 0 });
                        best.push((Key::MAX, 0));
                    }
                    let b = &mut best[*slot as usize];
                    b.0 = b.0.min(key(k, i));
                    b.1 += 1;
                    cells.push(*slot);
                }
            }
            CellIndex::Sparse(_) => {
                for (k, &i) in cands.iter().enumerate() {
                    let mut ids = [0u32; LEVELS];
                    for (b, level) in self.buckets.iter().enumerate() {
                        ids[b] = level.bucket(i as usize);
                    }
                    let cell = self.cell(ids) as usize;
                    best.resize(self.cells.len(), (Key::MAX, 0));
                    best[cell].0 = best[cell].0.min(key(k, i));
                    best[cell].1 += 1;
                    cells.push(cell as u32);
                }
            }
        }
        let everyone = self.own.is_empty();
        for (c, (k, alive)) in self.cells.iter_mut().zip(&best) {
            c.key = *k;
            c.alive = *alive;
            if everyone {
                c.tier.reserve_exact(*alive as usize); // every member is in the tier
            }
        }
        for (k, (&i, &cell)) in cands.iter().zip(&cells).enumerate() {
            if key(k, i) == best[cell as usize].0 {
                self.cells[cell as usize].tier.push(i);
            }
        }
        if !self.own.is_empty() {
            self.cands = cands;
            self.cand_cells = cells;
        }
    }

    /// Counts the group's tasks per bucket, over every instance (a task counts where it runs, even
    /// on an instance that cannot take another), from the group's member list.
    pub fn count_group(&mut self) {
        let Some(g) = self.group else { return };
        for &(i, tasks) in &self.snapshot.group_members[g as usize] {
            for level in &mut self.buckets {
                let b = level.bucket(i as usize);
                level.counts[b as usize] += u64::from(tasks);
            }
        }
    }

    #[inline]
    fn cell(&mut self, ids: [u32; LEVELS]) -> u32 {
        let next = self.cells.len() as u32;
        let slot = match &mut self.index {
            CellIndex::Dense { strides, slots } => {
                let n = self.buckets.len();
                let code: u64 = ids[..n].iter().zip(&strides[..n]).map(|(id, s)| u64::from(*id) * s).sum();
                &mut slots[code as usize]
            }
            CellIndex::Sparse(map) => map.entry(ids).or_insert(u32::MAX),
        };
        if *slot == u32::MAX {
            *slot = next;
            self.cells.push(Cell { buckets: ids, key: 0, tier: Vec::new(), alive: 0 });
        }
        *slot
    }

    /// The full lexicographic key of a cell's best tier.
    #[inline]
    fn cell_key(&self, cell: &Cell) -> [u64; LEVELS] {
        let mut key = [0u64; LEVELS];
        let mut own = 0;
        for (k, level) in key.iter_mut().zip(&self.levels) {
            *k = match level {
                Level::Bucket(b) => self.buckets[*b].counts[cell.buckets[*b] as usize],
                _ => {
                    own += 1;
                    u64::from(self.own_level(cell.key, own - 1))
                }
            };
        }
        key
    }

    /// The next instance: the best cell (ties weighted by tier size, so the pick is uniform over
    /// every tied instance), then a uniform member of its tier. `None` when nothing fits any more.
    pub fn choose(&mut self, rng: &mut Rng) -> Option<(usize, usize)> {
        let mut best: Option<[u64; LEVELS]> = None;
        let mut total = 0u64;
        let mut chosen = 0;
        for c in 0..self.cells.len() {
            if self.cells[c].alive == 0 {
                continue;
            }
            if self.cells[c].tier.is_empty() {
                self.rebuild(c);
            }
            let key = self.cell_key(&self.cells[c]);
            let weight = self.cells[c].tier.len() as u64;
            match best.map(|b| key.cmp(&b)) {
                None | Some(Ordering::Less) => {
                    best = Some(key);
                    total = weight;
                    chosen = c;
                }
                Some(Ordering::Equal) => {
                    // Weighted reservoir sampling over the tied cells.
                    total += weight;
                    if rng.below(total) < weight {
                        chosen = c;
                    }
                }
                Some(Ordering::Greater) => {}
            }
        }
        best?;
        let pos = rng.below(self.cells[chosen].tier.len() as u64) as usize;
        Some((chosen, pos))
    }

    /// Places one task on the chosen tier member and returns the instance. An instance that can
    /// take no further task of this request leaves its cell (why is worked out only if the request
    /// ends up failing).
    pub fn place(&mut self, cell: usize, pos: usize, checks: &Checks<'_>) -> usize {
        let i = self.cells[cell].tier[pos];
        let slot = match self.touched.iter().position(|t| t.0 == i) {
            Some(at) => at,
            None => {
                let st =
                    InstState::initial(self.snapshot, i as usize, group_count(self.snapshot, i as usize, self.group));
                self.touched.push((i, st, true));
                self.touched.len() - 1
            }
        };
        checks.reserve(&mut self.touched[slot].1);
        for (b, level) in self.buckets.iter_mut().enumerate() {
            level.counts[self.cells[cell].buckets[b] as usize] += 1;
        }
        let st = self.touched[slot].1;
        match checks.recheck(i as usize, &st) {
            Err(_) => {
                self.touched[slot].2 = false;
                let c = &mut self.cells[cell];
                c.alive -= 1;
                c.tier.swap_remove(pos);
                i as usize
            }
            Ok(()) => {
                let key = self.key(&st);
                let c = &mut self.cells[cell];
                match key.cmp(&c.key) {
                    Ordering::Equal => {}
                    Ordering::Less => {
                        c.tier.clear();
                        c.tier.push(i);
                        c.key = key;
                    }
                    Ordering::Greater => {
                        c.tier.swap_remove(pos);
                    }
                }
                i as usize
            }
        }
    }

    /// The state of an instance this request placed on.
    pub fn state(&self, i: usize) -> Option<InstState> {
        self.touched.iter().find(|t| t.0 == i as u32).map(|t| t.1)
    }

    /// Refills an exhausted tier from the cell's live members.
    fn rebuild(&mut self, cell: usize) {
        let mut tier = std::mem::take(&mut self.cells[cell].tier);
        let mut best: Key = 0;
        let mut groups = GroupCursor::new(self.snapshot, self.group);
        for (k, &i) in self.cands.iter().enumerate() {
            let in_cell = if self.direct {
                self.buckets[0].bucket(i as usize) == cell as u32
            } else {
                self.buckets.is_empty() || self.cand_cells[k] == cell as u32
            };
            if !in_cell {
                continue;
            }
            let st = match self.touched.iter().find(|t| t.0 == i) {
                Some((_, _, false)) => continue,
                Some((_, st, true)) => *st,
                None => InstState::initial(self.snapshot, i as usize, groups.count(i as usize)),
            };
            let key = self.key(&st);
            if tier.is_empty() || key < best {
                tier.clear();
                tier.push(i);
                best = key;
            } else if key == best {
                tier.push(i);
            }
        }
        self.cells[cell].tier = tier;
        self.cells[cell].key = best;
    }
}
