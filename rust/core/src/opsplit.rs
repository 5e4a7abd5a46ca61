//! Approximate parallel solver: operator splitting of diffusion and reactions.
//!
//! Time advances in steps of length tau. Each step first moves every mobile
//! molecule for tau (diffusion alone), then runs the reactions of each
//! subvolume for tau (reactions alone, an exact SSA inside the subvolume with
//! the counts the diffusion phase left), as Lattice Microbes' MPD-RDME and
//! STEPS' TetOpSplit do. This Lie splitting is first order in tau: the only
//! approximation is that reactions see the molecules at the positions the
//! diffusion phase gave them, once per step, instead of along their paths.
//!
//! Diffusion is not discretised further:
//! - On a Cartesian lattice where every edge of an axis carries species s at
//!   the same rate w (as `uniform_edge_inv` detects per site in the NSM), the
//!   continuous-time walk of one molecule over tau is sampled exactly: per
//!   axis the displacement of the free walk is the difference of two
//!   independent Poisson(w tau) numbers (a Skellam variable, drawn in O(1)
//!   from an alias table built once per tau), and a reflecting wall is the
//!   free walk folded at the half-integer boundaries -1/2 and n - 1/2 (the
//!   fold maps the free walk onto the walk whose outward hop at a wall is
//!   suppressed, which is what the NSM's missing wall edge does). The cost is
//!   O(1) per molecule and step, whatever the number of hops.
//! - Any other graph (tetrahedral meshes, membranes, compartments, unequal
//!   couplings) falls back to simulating each molecule's hops within tau
//!   (exponential waiting times, edge chosen by rate): exact for the walk,
//!   O(hops) per molecule.
//!
//! Zero-order sources are Poisson numbers of births per block and step,
//! placed by rate and given uniform birth times inside the step, so the
//! reaction phase exposes a new molecule for the rest of the step only (as an
//! SSA with the source channel would).
//!
//! Work is proportional to what moves or reacts, not to the lattice size:
//! each block keeps the list of subvolumes holding mobile molecules and a
//! heap of reactive subvolumes that nothing touched ("sleepers"), each with
//! its next reaction time, which stays valid while its counts and constants
//! do not change (memorylessness); a sleeper costs nothing until its time
//! falls inside a step.
//!
//! Determinism: subvolumes are cut into fixed blocks of `BLOCK` indices,
//! independent of the thread count; every (phase, step, block) draws from its
//! own stream `Stream::for_block(seed, replicate, phase, step, block)`.
//! Diffusion is a two-phase scatter/gather: each block writes its molecules'
//! destinations into its own buffer (sorted stably by destination block),
//! then each block adds the arrivals addressed to it, reading the buffers in
//! block order. No atomics, no races, and the trajectory is bitwise the same
//! on any number of threads.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;

use rand_distr::Poisson;
use rayon::prelude::*;

use crate::error::{invalid, CoreError};
use crate::nsm::{choose_channel, Advance, RowChannel};
use crate::problem::{Problem, RateSchedule, StorageMap};
use crate::rng::Stream;

/// Subvolumes per block: the unit of parallel work and of random streams.
pub const BLOCK: usize = 4096;

/// Largest mean number of hops per direction and axis in one step of the
/// lattice walk. A cost bound (the alias table grows as the square root of
/// it), not an accuracy bound: tau is capped so that w tau stays below it.
pub const MAX_WALK_LAMBDA: f64 = 1e4;

/// Largest expected number of hops of one molecule in one step for the
/// hop-by-hop walk: a cost bound (each step's work stays bounded, so that
/// Ctrl-C and progress reports come through), not an accuracy bound.
pub const MAX_HOPS_PER_STEP: f64 = 1e4;

/// Births of one source table in one block and step above this are refused
/// (they would have to be held in memory at once): the step is far too long.
const MAX_BIRTHS_PER_STEP: f64 = 1e7;

/// Reaction events in one subvolume in one step beyond this plus 100 per
/// molecule present are refused: a runaway (e.g. autocatalysis with a user
/// tau far beyond the tolerance's) instead of a hang.
const MAX_SSA_EVENTS: u64 = 1_000_000;

/// Reaction events of one subvolume's SSA between two looks at the cancel
/// flag (a power of two; a look costs one relaxed load).
const CANCEL_CHECK_EVENTS: u64 = 1 << 16;

/// Mobile molecules the diffusion phase can move in one step (its buffers
/// hold one 8-byte record per molecule): a limitation of this solver.
pub const MAX_MOBILE_MOLECULES: u64 = 1 << 28;

/// Default largest per-molecule reaction probability per step.
pub const DEFAULT_TOLERANCE: f64 = 0.01;

const PHASE_DIFFUSION: u64 = 1;
const PHASE_REACTION: u64 = 2;

/// User settings of the solver.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSplitOptions {
    /// Largest per-molecule reaction probability in one step, in (0, 1):
    /// tau = -ln(1 - tolerance) / k_max (see `OpSplit::tau_bound`).
    pub tolerance: f64,
    /// A fixed largest step (s) instead of the automatic one.
    pub tau: Option<f64>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

impl Default for OpSplitOptions {
    fn default() -> Self {
        OpSplitOptions {
            tolerance: DEFAULT_TOLERANCE,
            tau: None,
            threads: 0,
        }
    }
}

impl OpSplitOptions {
    fn validate(&self) -> Result<(), CoreError> {
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) {
            return invalid(format!(
                "tolerance = {} must lie strictly between 0 and 1",
                self.tolerance
            ));
        }
        if let Some(tau) = self.tau {
            if !(tau.is_finite() && tau > 0.0) {
                return invalid(format!("tau = {tau} must be finite and positive"));
            }
        }
        if self.threads > 1024 {
            return invalid(format!("threads = {} is more than 1024", self.threads));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    First,
    Pair,
    Dimer,
}

/// A reaction of order 1 or 2 as it applies in one rate class. For `A + A`
/// the constant is halved, so that c n (n - 1) counts distinct pairs.
#[derive(Clone, Copy, Debug)]
struct Channel {
    c: f64,
    a: u32,
    b: u32,
    kind: Kind,
    reaction: u32,
}

impl RowChannel for Channel {
    #[inline(always)]
    fn propensity(&self, row: &[u32]) -> f64 {
        let xa = row[self.a as usize] as f64;
        match self.kind {
            Kind::First => self.c * xa,
            Kind::Pair => self.c * xa * row[self.b as usize] as f64,
            Kind::Dimer => self.c * xa * (xa - 1.0),
        }
    }
    #[inline(always)]
    fn reaction(&self) -> usize {
        self.reaction as usize
    }
}

/// The per-molecule reaction rates of one rate class as functions of a
/// subvolume's counts, for the automatic step bound. A species with pair
/// partners (or A + A) reacts at `fixed + sum of c (x_src - off)+` over its
/// terms; one with first-order channels only at a constant, folded into
/// `fixed_max`. Rebuilt with the channels (at a rate switch).
#[derive(Clone, Debug, Default)]
struct ClassRates {
    /// Largest count-independent part over species (a lower bound of the
    /// class's largest rate in any subvolume).
    fixed_max: f64,
    /// Species whose rate depends on counts: (constant part, its terms as a
    /// range of `terms`).
    targets: Vec<(f64, u32, u32)>,
    terms: Vec<RateTerm>,
}

/// One count-dependent term of a species' rate: `c * max(x_src - off, 0)`
/// (off = 0 for a partner of A + B, 1 and c doubled for A + A).
#[derive(Clone, Copy, Debug)]
struct RateTerm {
    src: u32,
    off: f64,
    c: f64,
}

impl ClassRates {
    fn new(chans: &[Channel], s: usize) -> Self {
        let mut fixed = vec![0.0f64; s];
        let mut terms: Vec<Vec<RateTerm>> = vec![Vec::new(); s];
        for ch in chans {
            let (a, b) = (ch.a as usize, ch.b as usize);
            match ch.kind {
                Kind::First => fixed[a] += ch.c,
                Kind::Pair => {
                    terms[a].push(RateTerm {
                        src: ch.b,
                        off: 0.0,
                        c: ch.c,
                    });
                    terms[b].push(RateTerm {
                        src: ch.a,
                        off: 0.0,
                        c: ch.c,
                    });
                }
                Kind::Dimer => terms[a].push(RateTerm {
                    src: ch.a,
                    off: 1.0,
                    c: 2.0 * ch.c,
                }),
            }
        }
        let mut out = ClassRates {
            fixed_max: fixed.iter().copied().fold(0.0, f64::max),
            ..Self::default()
        };
        for (sp, t) in terms.into_iter().enumerate() {
            if !t.is_empty() {
                let a = out.terms.len() as u32;
                out.terms.extend(t);
                out.targets.push((fixed[sp], a, out.terms.len() as u32));
            }
        }
        out
    }
}

/// The largest per-molecule reaction rate over the subvolumes and species of
/// one block (what the automatic step bound needs); one pass over the
/// records, without per-subvolume allocation or per-species scratch.
fn block_rate_bound(b: &Block, layout: Rec, rates: &[ClassRates]) -> f64 {
    let (s, st) = (layout.s, layout.st);
    let mut kmax = 0.0f64;
    for rec in b.cells()[..(b.hi - b.lo) * st].chunks_exact(st) {
        let cr = &rates[rec[s] as usize];
        kmax = kmax.max(cr.fixed_max);
        for &(fixed, a, z) in &cr.targets {
            let mut k = fixed;
            for t in &cr.terms[a as usize..z as usize] {
                k += t.c * (f64::from(rec[t.src as usize]) - t.off).max(0.0);
            }
            kmax = kmax.max(k);
        }
    }
    kmax
}

/// The zero-order sources of one reaction inside one block.
#[derive(Clone, Debug)]
struct SourceTable {
    reaction: u32,
    subvolumes: Vec<u32>,
    /// Running sums of the (unscaled) constants, for placing births by rate.
    cumulative: Vec<f64>,
    total: f64,
}

/// How a species moves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Walk {
    Still,
    /// Exact per-axis walk on the detected lattice, with these per-edge rates.
    Lattice([f64; 3]),
    /// Hop-by-hop within the step; index into the hop tables.
    Hops(usize),
}

/// A Cartesian lattice recognised in the graph: index = sum c_a * strides[a].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Grid {
    dims: [usize; 3],
    strides: [usize; 3],
}

/// Walker/Vose alias table of a distribution on offset, offset + 1, ...
#[derive(Clone, Debug, Default)]
struct Alias {
    offset: i64,
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(offset: i64, weights: &[f64]) -> Self {
        let k = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * k as f64 / total).collect();
        let mut prob = vec![1.0; k];
        let mut alias: Vec<u32> = (0..k as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..k).partition(|&j| scaled[j] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers are 1 up to rounding.
        Alias {
            offset,
            prob,
            alias,
        }
    }

    #[inline(always)]
    fn sample(&self, rng: &mut Stream) -> i64 {
        let k = self.prob.len();
        let u = rng.uniform() * k as f64;
        let j = (u as usize).min(k - 1);
        let idx = if u - (j as f64) < self.prob[j] {
            j
        } else {
            self.alias[j] as usize
        };
        self.offset + idx as i64
    }
}

/// P(X - Y = d), X and Y independent Poisson(lambda): (lowest d, masses),
/// cut where a tail holds less than about 1e-18 (below the resolution of a
/// 53-bit uniform). Computed by convolving the Poisson masses, which are
/// built outward from the mode so that nothing underflows.
fn skellam(lambda: f64) -> (i64, Vec<f64>) {
    if lambda <= 0.0 {
        return (0, vec![1.0]);
    }
    let sd = lambda.sqrt();
    let lo = (lambda - 14.0 * sd - 20.0).floor().max(0.0) as usize;
    let hi = (lambda + 14.0 * sd + 30.0).ceil() as usize;
    let mode = (lambda.floor() as usize).clamp(lo, hi);
    let mut q = vec![0.0; hi - lo + 1];
    q[mode - lo] = 1.0;
    for j in mode..hi {
        q[j + 1 - lo] = q[j - lo] * lambda / (j + 1) as f64;
    }
    for j in (lo + 1..=mode).rev() {
        q[j - 1 - lo] = q[j - lo] * j as f64 / lambda;
    }
    let sum: f64 = q.iter().sum();
    for v in &mut q {
        *v /= sum;
    }
    let w = q.len();
    let mut pos = Vec::with_capacity(w);
    for d in 0..w {
        let p: f64 = q[..w - d].iter().zip(&q[d..]).map(|(a, b)| a * b).sum();
        if d > 0 && p < 1e-18 * pos[0] {
            break;
        }
        pos.push(p);
    }
    let m = pos.len() - 1;
    let mut full = Vec::with_capacity(2 * m + 1);
    full.extend(pos.iter().rev());
    full.extend(&pos[1..]);
    (-(m as i64), full)
}

/// Fold the free walk's position y onto 0..n (reflection at -1/2 and n - 1/2).
#[inline(always)]
fn fold(y: i64, n: i64) -> i64 {
    let r = y.rem_euclid(2 * n);
    if r < n {
        r
    } else {
        2 * n - 1 - r
    }
}

/// One edge of a hop list: its target and the running sum of the rates of
/// the subvolume's edges up to and including it.
#[derive(Clone, Copy, Debug, Default)]
struct HopEdge {
    cum: f64,
    target: u32,
}

/// The edges with a positive rate for one hop-walking species, in CSR form,
/// contiguous per subvolume: one hop reads one offset pair and one short run
/// of edges (the total rate is the last running sum).
#[derive(Clone, Debug, Default)]
struct HopList {
    offsets: Vec<usize>,
    edges: Vec<HopEdge>,
}

/// Hop tables of the species that walk hop by hop.
#[derive(Clone, Debug, Default)]
struct Hops {
    lists: Vec<HopList>,
    /// Per hop species, the largest total out-rate.
    max_total: Vec<f64>,
}

/// A reactive subvolume that nothing touched, with its next reaction time.
#[derive(Clone, Copy, Debug)]
struct Sleeper {
    time: f64,
    sub: u32,
}

impl PartialEq for Sleeper {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sleeper {
    /// Reversed: the BinaryHeap pops the earliest time (ties by index).
    fn cmp(&self, o: &Self) -> Ordering {
        o.time
            .total_cmp(&self.time)
            .then_with(|| o.sub.cmp(&self.sub))
    }
}

#[derive(Clone, Copy, Debug)]
struct Move {
    dst: u32,
    species: u32,
}

#[derive(Clone, Copy, Debug)]
struct Birth {
    sub: u32,
    time: f64,
    reaction: u32,
}

/// State of one block of subvolumes lo..hi.
#[derive(Clone, Debug, Default)]
struct Block {
    lo: usize,
    hi: usize,
    /// Subvolumes holding a mobile molecule (after the last phase).
    occupied: Vec<u32>,
    /// Subvolumes the last scatter emptied of mobile molecules: their
    /// propensity changed, so the reaction phase must look at them too.
    departed: Vec<u32>,
    sleepers: BinaryHeap<Sleeper>,
    /// One record per subvolume, `Rec` layout, starting at `off` (so that
    /// records are 32-byte aligned and a record never straddles a cache line:
    /// the phases touch a random subvolume through one line, not four arrays).
    rec: Vec<u32>,
    off: usize,
    sources: Vec<SourceTable>,
    /// Reconsider every subvolume in the next reaction phase (start, switch).
    rescan: bool,
    cand: Vec<u32>,
    births: Vec<Birth>,
    hops: Vec<u64>,
    reactions: Vec<u64>,
    /// Subvolume SSA runs (candidates) so far: the reaction phase's work.
    ssa_runs: u64,
}

/// Record of one subvolume in its block (u32 words): counts 0..S, then its
/// rate class, a candidate mark, and the bits of its sleeping next reaction
/// time (NaN: none), low word first; padded to the stride.
#[derive(Clone, Copy, Debug)]
struct Rec {
    s: usize,
    st: usize,
}

impl Rec {
    fn new(s: usize) -> Self {
        let need = s + 4;
        let st = if need <= 8 { 8 } else { need.div_ceil(16) * 16 };
        Rec { s, st }
    }
    #[inline(always)]
    fn class(&self, cells: &[u32], loc: usize) -> usize {
        cells[loc * self.st + self.s] as usize
    }
    #[inline(always)]
    fn marked(&self, cells: &[u32], loc: usize) -> bool {
        cells[loc * self.st + self.s + 1] != 0
    }
    #[inline(always)]
    fn set_mark(&self, cells: &mut [u32], loc: usize, on: bool) {
        cells[loc * self.st + self.s + 1] = u32::from(on);
    }
    #[inline(always)]
    fn time(&self, cells: &[u32], loc: usize) -> f64 {
        let b = loc * self.st + self.s + 2;
        f64::from_bits(u64::from(cells[b]) | u64::from(cells[b + 1]) << 32)
    }
    #[inline(always)]
    fn set_time(&self, cells: &mut [u32], loc: usize, t: f64) {
        let b = loc * self.st + self.s + 2;
        let bits = t.to_bits();
        cells[b] = bits as u32;
        cells[b + 1] = (bits >> 32) as u32;
    }
    #[inline(always)]
    fn row<'c>(&self, cells: &'c [u32], loc: usize) -> &'c [u32] {
        &cells[loc * self.st..loc * self.st + self.s]
    }
    #[inline(always)]
    fn row_mut<'c>(&self, cells: &'c mut [u32], loc: usize) -> &'c mut [u32] {
        &mut cells[loc * self.st..loc * self.st + self.s]
    }
}

impl Block {
    fn cells(&self) -> &[u32] {
        &self.rec[self.off..]
    }
}

/// The part of the solver that blocks read while running in parallel.
struct Shared<'a> {
    s: usize,
    rec: Rec,
    seed: u64,
    replicate: u64,
    step: u64,
    mobile: &'a [u32],
    walk: &'a [Walk],
    grid: Option<Grid>,
    tables: &'a [Vec<Alias>],
    hops: &'a Hops,
    channels: &'a [Vec<Channel>],
    changes: &'a [Vec<(u32, i64)>],
    factors: &'a [f64],
    cancel: &'a AtomicBool,
    /// The caller's index of each stored subvolume (for messages).
    external: &'a StorageMap,
}

/// The step plan of one advance segment: steps end at
/// t_start + (t_end - t_start) k / n, the last exactly at t_end.
#[derive(Clone, Copy, Debug)]
struct Plan {
    t_start: f64,
    t_end: f64,
    n: u64,
    done: u64,
}

/// The operator-splitting solver on one trajectory. Not `Clone` (it owns a
/// thread pool); no checkpoints.
pub struct OpSplit {
    n: usize,
    s: usize,
    rec: Rec,
    base_channels: Vec<Vec<Channel>>,
    channels: Vec<Vec<Channel>>,
    /// Per rate class, the rates of `channels` for the step bound.
    rate_bounds: Vec<ClassRates>,
    changes: Vec<Vec<(u32, i64)>>,
    factors: Vec<f64>,
    schedule: RateSchedule,
    walk: Vec<Walk>,
    mobile: Vec<u32>,
    grid: Option<Grid>,
    /// Per species: one alias table per axis for the current tau (lattice only).
    tables: Vec<Vec<Alias>>,
    tables_tau: f64,
    hops: Hops,
    blocks: Vec<Block>,
    moves: Vec<Vec<Move>>,
    groups: Vec<Vec<(u32, u32, u32)>>,
    incoming: Vec<Vec<(u32, u32, u32)>>,
    pool: Arc<rayon::ThreadPool>,
    options: OpSplitOptions,
    seed: u64,
    replicate: u64,
    time: f64,
    steps: u64,
    plan: Option<Plan>,
    failed: Option<CoreError>,
    /// The caller's index of each stored subvolume (the problem's layout,
    /// as in the exact solver).
    external: StorageMap,
    /// Set by another thread (Ctrl-C) to stop `advance` soon: between steps it
    /// pauses cleanly; inside a step's reaction phase it fails the solver.
    cancel: Arc<AtomicBool>,
    /// Expected hops of the lattice walks (not drawn), accumulated per species.
    lattice_hops: Vec<f64>,
    tau_bound: f64,
    tau_min: f64,
    tau_max: f64,
}

impl OpSplit {
    pub fn new(
        problem: &Problem,
        seed: u64,
        replicate: u64,
        options: OpSplitOptions,
    ) -> Result<Self, CoreError> {
        problem.validate()?;
        options.validate()?;
        let (stored, external) = problem.stored();
        Self::build(&stored, external, seed, replicate, options)
    }

    /// The solver of a validated `problem` stored in its own order, whose
    /// position k is the caller's subvolume `external.caller(k)`.
    fn build(
        problem: &Problem,
        external: StorageMap,
        seed: u64,
        replicate: u64,
        options: OpSplitOptions,
    ) -> Result<Self, CoreError> {
        let n = problem.n_subvolumes();
        let s = problem.n_species;
        let r = problem.n_reactions();
        let g = &problem.graph;
        let n_rclasses = problem.rate_constants.len().checked_div(r).unwrap_or(0);

        // Largest factor each reaction ever runs at (for the overflow bound).
        let max_factor = problem.schedule.max_factors(r);
        let mut base_channels = vec![Vec::new(); n_rclasses.max(1)];
        let mut changes = Vec::with_capacity(r);
        for (ri, rx) in problem.reactions.iter().enumerate() {
            changes.push(rx.net_change());
            for (c, chans) in base_channels.iter_mut().enumerate().take(n_rclasses) {
                let k = problem.rate_constants[c * r + ri];
                if k <= 0.0 {
                    continue;
                }
                let (a, b, kind, cc) = match rx.reactants.as_slice() {
                    [] => continue,
                    [a] => (*a, *a, Kind::First, k),
                    [a, b] if a == b => (*a, *a, Kind::Dimer, 0.5 * k),
                    [a, b] => (*a, *b, Kind::Pair, k),
                    _ => return invalid("reaction of order above 2"),
                };
                chans.push(Channel {
                    c: cc,
                    a,
                    b,
                    kind,
                    reaction: ri as u32,
                });
            }
        }
        // The largest propensity any subvolume could reach at the count limit
        // must stay finite, or the SSA could run away (as the NSM checks).
        let m = f64::from(u32::MAX);
        for (c, chans) in base_channels.iter().enumerate() {
            let mut bound = 0.0;
            for ch in chans {
                let x = if ch.kind == Kind::First { m } else { m * m };
                bound += ch.c * max_factor[ch.reaction as usize] * x;
            }
            for (ri, rx) in problem.reactions.iter().enumerate() {
                if rx.reactants.is_empty() && c < n_rclasses {
                    bound += problem.rate_constants[c * r + ri] * max_factor[ri];
                }
            }
            if bound.is_nan() || bound >= f64::MAX / 4.0 {
                return invalid(format!(
                    "propensity overflow: in rate class {c} the total reaction propensity \
                     could reach {bound:e} /s at the count limit, beyond the floating-point \
                     range; a rate constant is far too large"
                ));
            }
        }

        // Transport: per-edge rates, lattice detection, walk per species.
        let grid = detect_grid(problem);
        let mut walk = vec![Walk::Still; s];
        let mut mobile = Vec::new();
        let mut hop_species = Vec::new();
        for (sp, w) in walk.iter_mut().enumerate() {
            let mut any = false;
            let mut axis_rate: [Option<f64>; 3] = [None; 3];
            let mut uniform = grid.is_some();
            for i in 0..n {
                let inv_v = 1.0 / g.volumes[i];
                for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                    let rate = problem.transport_coefficients[g.edge_class[e] as usize * s + sp]
                        * g.edge_coupling[e]
                        * inv_v;
                    if !rate.is_finite() {
                        return invalid(format!(
                            "transport rate of species {sp} out of subvolume {} is not \
                             finite (coefficient * coupling / volume overflows)",
                            external.caller(i)
                        ));
                    }
                    any |= rate > 0.0;
                    if let (true, Some(gr)) = (uniform, grid) {
                        let delta = (g.edge_targets[e] as i64 - i as i64).unsigned_abs() as usize;
                        let axis = (0..3).find(|&a| gr.dims[a] > 1 && gr.strides[a] == delta);
                        match axis {
                            Some(a) => match axis_rate[a] {
                                None => axis_rate[a] = Some(rate),
                                Some(w0) => uniform &= w0 == rate,
                            },
                            None => uniform = false,
                        }
                    }
                }
            }
            if !any {
                continue;
            }
            mobile.push(sp as u32);
            *w = if uniform {
                Walk::Lattice(axis_rate.map(|x| x.unwrap_or(0.0)))
            } else {
                hop_species.push(sp);
                Walk::Hops(hop_species.len() - 1)
            };
        }
        let mut hops = Hops::default();
        if !hop_species.is_empty() {
            for &sp in &hop_species {
                let mut list = HopList {
                    offsets: Vec::with_capacity(n + 1),
                    edges: Vec::new(),
                };
                let mut max_total = 0.0f64;
                list.offsets.push(0);
                for i in 0..n {
                    let inv_v = 1.0 / g.volumes[i];
                    let mut cum = 0.0;
                    for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                        let rate = problem.transport_coefficients
                            [g.edge_class[e] as usize * s + sp]
                            * g.edge_coupling[e]
                            * inv_v;
                        if rate > 0.0 {
                            cum += rate;
                            list.edges.push(HopEdge {
                                cum,
                                target: g.edge_targets[e],
                            });
                        }
                    }
                    if !cum.is_finite() {
                        return invalid(format!(
                            "transport rate of species {sp} out of subvolume {} is not finite",
                            external.caller(i)
                        ));
                    }
                    max_total = max_total.max(cum);
                    list.offsets.push(list.edges.len());
                }
                hops.lists.push(list);
                hops.max_total.push(max_total);
            }
        }
        let mobile_total: u64 = problem
            .initial_counts
            .chunks_exact(s)
            .map(|row| {
                mobile
                    .iter()
                    .map(|&sp| u64::from(row[sp as usize]))
                    .sum::<u64>()
            })
            .sum();
        if mobile_total > MAX_MOBILE_MOLECULES {
            return invalid(format!(
                "{mobile_total} mobile molecules exceed the operator-splitting solver's \
                 limit of {MAX_MOBILE_MOLECULES} (each is moved individually); use the NSM"
            ));
        }

        // Blocks.
        let n_blocks = n.div_ceil(BLOCK);
        let rate_class: Vec<u32> = if r == 0 {
            vec![0; n]
        } else {
            problem.rate_class.clone()
        };
        let mut blocks = Vec::with_capacity(n_blocks);
        for b in 0..n_blocks {
            let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
            let mut sources = Vec::new();
            for (ri, rx) in problem.reactions.iter().enumerate() {
                if !rx.reactants.is_empty() {
                    continue;
                }
                let mut table = SourceTable {
                    reaction: ri as u32,
                    subvolumes: Vec::new(),
                    cumulative: Vec::new(),
                    total: 0.0,
                };
                for (i, &rc) in rate_class.iter().enumerate().take(hi).skip(lo) {
                    let k = problem.rate_constants[rc as usize * r + ri];
                    if k > 0.0 {
                        table.total += k;
                        table.subvolumes.push(i as u32);
                        table.cumulative.push(table.total);
                    }
                }
                if table.total > 0.0 {
                    sources.push(table);
                }
            }
            let occupied = (lo..hi)
                .filter(|&i| {
                    mobile
                        .iter()
                        .any(|&sp| problem.initial_counts[i * s + sp as usize] > 0)
                })
                .map(|i| i as u32)
                .collect();
            let layout = Rec::new(s);
            let len = hi - lo;
            let mut rec_buf = vec![0u32; len * layout.st + 8];
            let off = (32 - rec_buf.as_ptr() as usize % 32) % 32 / 4;
            {
                let cells = &mut rec_buf[off..];
                for loc in 0..len {
                    let i = lo + loc;
                    layout
                        .row_mut(cells, loc)
                        .copy_from_slice(&problem.initial_counts[i * s..(i + 1) * s]);
                    cells[loc * layout.st + s] = rate_class[i];
                    layout.set_time(cells, loc, f64::NAN);
                }
            }
            blocks.push(Block {
                lo,
                hi,
                occupied,
                rec: rec_buf,
                off,
                sources,
                rescan: true,
                hops: vec![0; s],
                reactions: vec![0; r],
                ..Block::default()
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .build()
            .map_err(|e| CoreError::InvalidInput(format!("cannot start worker threads: {e}")))?;
        let mut solver = OpSplit {
            n,
            s,
            rec: Rec::new(s),
            channels: base_channels.clone(),
            rate_bounds: Vec::new(),
            base_channels,
            changes,
            factors: vec![1.0; r],
            schedule: problem.schedule.clone(),
            walk,
            mobile,
            grid,
            tables: vec![Vec::new(); s],
            tables_tau: f64::NAN,
            hops,
            moves: vec![Vec::new(); n_blocks],
            groups: vec![Vec::new(); n_blocks],
            incoming: vec![Vec::new(); n_blocks],
            blocks,
            pool: Arc::new(pool),
            options,
            seed,
            replicate,
            time: 0.0,
            steps: 0,
            plan: None,
            failed: None,
            external,
            cancel: Arc::new(AtomicBool::new(false)),
            lattice_hops: vec![0.0; s],
            tau_bound: f64::NAN,
            tau_min: f64::INFINITY,
            tau_max: 0.0,
        };
        solver.set_factors(0.0);
        solver.tau_bound = solver.compute_tau_bound();
        Ok(solver)
    }

    /// Constants in force at time t (after a switch, every subvolume is
    /// reconsidered: the sleepers' times were drawn for the old constants).
    fn set_factors(&mut self, t: f64) {
        let r = self.factors.len();
        self.factors = self.schedule.factors_at(t, r);
        for (eff, base) in self.channels.iter_mut().zip(&self.base_channels) {
            eff.clear();
            for ch in base {
                let c = ch.c * self.factors[ch.reaction as usize];
                if c > 0.0 {
                    eff.push(Channel { c, ..*ch });
                }
            }
        }
        self.rate_bounds = self
            .channels
            .iter()
            .map(|chans| ClassRates::new(chans, self.s))
            .collect();
        for b in &mut self.blocks {
            b.rescan = true;
            b.sleepers.clear();
        }
    }

    /// The automatic step bound from the current state: tau such that the
    /// largest per-molecule reaction rate k_max (over subvolumes and species,
    /// with the constants in force) gives a reaction probability
    /// 1 - exp(-k_max tau) = tolerance; the user's tau instead if given; in
    /// both cases capped so that the lattice walk's mean hops per direction
    /// and axis stay below `MAX_WALK_LAMBDA`. Infinite when nothing reacts
    /// and nothing walks on the lattice (the step is then the whole interval).
    fn compute_tau_bound(&self) -> f64 {
        let mut tau = match self.options.tau {
            Some(t) => t,
            None => {
                let layout = self.rec;
                let bounds = &self.rate_bounds;
                let kmax = self.pool.install(|| {
                    self.blocks
                        .par_iter()
                        .map(|b| block_rate_bound(b, layout, bounds))
                        .reduce(|| 0.0, f64::max)
                });
                if kmax > 0.0 {
                    -(1.0 - self.options.tolerance).ln() / kmax
                } else {
                    f64::INFINITY
                }
            }
        };
        for w in &self.walk {
            if let Walk::Lattice(rates) = w {
                for &rate in rates {
                    if rate > 0.0 {
                        tau = tau.min(MAX_WALK_LAMBDA / rate);
                    }
                }
            }
        }
        if let Some(&max_rate) = self.hops.max_total.iter().max_by(|a, b| a.total_cmp(b)) {
            if max_rate > 0.0 {
                tau = tau.min(MAX_HOPS_PER_STEP / max_rate);
            }
        }
        tau
    }

    fn build_tables(&mut self, tau: f64) {
        if self.tables_tau.to_bits() == tau.to_bits() {
            return;
        }
        self.tables_tau = tau;
        for (sp, w) in self.walk.iter().enumerate() {
            if let Walk::Lattice(rates) = w {
                self.tables[sp] = rates
                    .iter()
                    .map(|&rate| {
                        let (off, p) = skellam(rate * tau);
                        Alias::new(off, &p)
                    })
                    .collect();
            }
        }
    }

    pub fn time(&self) -> f64 {
        self.time
    }
    pub fn n_subvolumes(&self) -> usize {
        self.n
    }
    pub fn n_species(&self) -> usize {
        self.s
    }
    pub fn n_reactions(&self) -> usize {
        self.factors.len()
    }
    /// Worker threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// The step bound computed last (s; infinite if nothing bounds it).
    pub fn tau_bound(&self) -> f64 {
        self.tau_bound
    }
    /// Shortest and longest step actually taken (s); (inf, 0) before any.
    pub fn tau_range(&self) -> (f64, f64) {
        (self.tau_min, self.tau_max)
    }
    pub fn options(&self) -> &OpSplitOptions {
        &self.options
    }
    /// True for a species whose walk is sampled exactly per axis on a
    /// detected lattice (false: hop by hop, or immobile).
    pub fn lattice_walk(&self, species: usize) -> bool {
        matches!(self.walk.get(species), Some(Walk::Lattice(_)))
    }

    pub fn reaction_events(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.factors.len()];
        for b in &self.blocks {
            for (o, &v) in out.iter_mut().zip(&b.reactions) {
                *o += v;
            }
        }
        out
    }

    /// Transport events per species: hops simulated one by one, plus for
    /// lattice walks (whose hops are not drawn) their expected number,
    /// 2 (w_x + w_y + w_z) tau per molecule and step (walls included).
    pub fn diffusion_events(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .lattice_hops
            .iter()
            .map(|&h| h.round() as u64)
            .collect();
        for b in &self.blocks {
            for (o, &v) in out.iter_mut().zip(&b.hops) {
                *o += v;
            }
        }
        out
    }

    /// Subvolume SSA runs so far (the reaction phase's work; compare with
    /// steps x subvolumes to see what the active set saves).
    pub fn ssa_runs(&self) -> u64 {
        self.blocks.iter().map(|b| b.ssa_runs).sum()
    }

    pub fn total_events(&self) -> u64 {
        self.diffusion_events().iter().sum::<u64>() + self.reaction_events().iter().sum::<u64>()
    }

    /// Counts as an (N, S) row-major array.
    pub fn counts(&self) -> Vec<u32> {
        let mut out = vec![0; self.n * self.s];
        self.counts_into(&mut out);
        out
    }

    /// Write the (N, S) counts into `out`, in the caller's order of
    /// subvolumes whatever the layout.
    pub fn counts_into(&self, out: &mut [u32]) {
        let s = self.s;
        for b in &self.blocks {
            let cells = b.cells();
            for loc in 0..b.hi - b.lo {
                let i = b.lo + loc;
                let i = self.external.caller(i);
                out[i * s..(i + 1) * s].copy_from_slice(self.rec.row(cells, loc));
            }
        }
    }

    pub fn totals(&self) -> Vec<u64> {
        let mut t = vec![0u64; self.s];
        for b in &self.blocks {
            let cells = b.cells();
            for loc in 0..b.hi - b.lo {
                for (acc, &c) in t.iter_mut().zip(self.rec.row(cells, loc)) {
                    *acc += c as u64;
                }
            }
        }
        t
    }

    /// Memory held by the solver state, in bytes per subvolume.
    pub fn bytes_per_subvolume(&self) -> f64 {
        use std::mem::size_of;
        let mut bytes = 0;
        for list in &self.hops.lists {
            bytes += list.offsets.capacity() * size_of::<usize>()
                + list.edges.capacity() * size_of::<HopEdge>();
        }
        for b in &self.blocks {
            bytes += (b.occupied.capacity() + b.departed.capacity()) * 4
                + b.sleepers.capacity() * size_of::<Sleeper>()
                + b.rec.capacity() * 4
                + b.cand.capacity() * 4
                + b.births.capacity() * size_of::<Birth>();
            for t in &b.sources {
                bytes += t.subvolumes.capacity() * 4 + t.cumulative.capacity() * 8;
            }
        }
        for m in &self.moves {
            bytes += m.capacity() * size_of::<Move>();
        }
        bytes as f64 / self.n as f64
    }

    /// The flag another thread sets to stop a running `advance` soon (see
    /// `advance`); it stays set until the caller clears it.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Run steps up to t_stop, at most `max_steps` of them. Steps are laid
    /// out per segment between the current time, every rate switch and
    /// t_stop (equal steps no longer than the bound, the last ending exactly
    /// on the segment end); a call that pauses continues the same plan.
    /// After a run-time error (count overflow, or a cancel seen inside a
    /// step) the state is not consistent and every later call returns that
    /// error. A cancel seen between steps pauses (the caller clears the flag).
    pub fn advance(&mut self, t_stop: f64, max_steps: u64) -> Result<Advance, CoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if t_stop.is_nan() || t_stop < self.time {
            return invalid(format!(
                "cannot advance to t = {t_stop}: the simulation is already at t = {}",
                self.time
            ));
        }
        if t_stop.is_infinite() {
            return invalid(format!("t_stop = {t_stop} must be finite"));
        }
        let mut taken = 0u64;
        loop {
            if self.plan.is_some_and(|p| p.t_end > t_stop) {
                self.plan = None;
            }
            let mut plan = match self.plan {
                Some(p) => p,
                None => {
                    if self.time >= t_stop {
                        self.time = t_stop;
                        return Ok(Advance::Reached);
                    }
                    let t_end = match self.schedule.next_switch_after(self.time) {
                        Some(sw) if sw <= t_stop => sw,
                        _ => t_stop,
                    };
                    self.tau_bound = self.compute_tau_bound();
                    let span = t_end - self.time;
                    let steps = (span / self.tau_bound * (1.0 - 1e-12)).ceil().max(1.0);
                    if steps > 1e12 {
                        return invalid(format!(
                            "advancing by {span} s in steps of at most {} s would take {steps:e} \
                             steps; raise the tolerance or tau",
                            self.tau_bound
                        ));
                    }
                    Plan {
                        t_start: self.time,
                        t_end,
                        n: steps as u64,
                        done: 0,
                    }
                }
            };
            self.build_tables((plan.t_end - plan.t_start) / plan.n as f64);
            while plan.done < plan.n {
                if taken == max_steps || self.cancel.load(AtomicOrdering::Relaxed) {
                    self.plan = Some(plan);
                    return Ok(Advance::Paused);
                }
                let k = plan.done + 1;
                let t1 = if k == plan.n {
                    plan.t_end
                } else {
                    plan.t_start + (plan.t_end - plan.t_start) * (k as f64 / plan.n as f64)
                };
                if let Err(e) = self.step(self.time, t1) {
                    let e = self.external.caller_error(e);
                    self.failed = Some(e.clone());
                    self.plan = None;
                    return Err(e);
                }
                self.time = t1;
                plan.done = k;
                taken += 1;
            }
            self.plan = None;
            if self.schedule.times.contains(&self.time) {
                self.set_factors(self.time);
            }
        }
    }

    fn step(&mut self, t0: f64, t1: f64) -> Result<(), CoreError> {
        let tau = t1 - t0;
        self.tau_min = self.tau_min.min(tau);
        self.tau_max = self.tau_max.max(tau);
        let step = self.steps;
        self.steps += 1;
        let pool = Arc::clone(&self.pool);
        let shared = Shared {
            s: self.s,
            rec: self.rec,
            seed: self.seed,
            replicate: self.replicate,
            step,
            mobile: &self.mobile,
            walk: &self.walk,
            grid: self.grid,
            tables: &self.tables,
            hops: &self.hops,
            channels: &self.channels,
            changes: &self.changes,
            factors: &self.factors,
            cancel: &self.cancel,
            external: &self.external,
        };
        let blocks = &mut self.blocks;
        let moves = &mut self.moves;
        let groups = &mut self.groups;
        let incoming = &mut self.incoming;
        let lattice_hops = &mut self.lattice_hops;
        pool.install(|| -> Result<(), CoreError> {
            if !shared.mobile.is_empty() {
                // Scatter: every block moves its molecules into its own buffer.
                let steps: Vec<Result<Vec<u64>, CoreError>> = blocks
                    .par_iter_mut()
                    .zip(moves.par_iter_mut().zip(groups.par_iter_mut()))
                    .enumerate()
                    .map(|(b, (blk, (mv, gr)))| scatter(&shared, b, blk, mv, gr, t0, tau))
                    .collect();
                let steps = steps.into_iter().collect::<Result<Vec<_>, CoreError>>()?;
                for (sp, w) in shared.walk.iter().enumerate() {
                    if let Walk::Lattice(rates) = w {
                        let molecules: u64 = steps.iter().map(|v| v[sp]).sum();
                        lattice_hops[sp] +=
                            molecules as f64 * 2.0 * rates.iter().sum::<f64>() * tau;
                    }
                }
                for inc in incoming.iter_mut() {
                    inc.clear();
                }
                for (src, gr) in groups.iter().enumerate() {
                    for &(dst, a, z) in gr {
                        incoming[dst as usize].push((src as u32, a, z));
                    }
                }
            }
            // Gather (every block adds the arrivals addressed to it), then the
            // reaction phase of the same block: it needs nothing from other
            // blocks, so both run in one parallel pass (one barrier less).
            let moves = &*moves;
            let diffuse = !shared.mobile.is_empty();
            let errs: Vec<Result<(), CoreError>> = blocks
                .par_iter_mut()
                .zip(incoming.par_iter())
                .enumerate()
                .map(|(b, (blk, inc))| {
                    if diffuse {
                        gather(&shared, blk, inc, moves)?;
                    }
                    react(&shared, b, blk, t0, t1)
                })
                .collect();
            errs.into_iter().collect::<Result<(), CoreError>>()
        })
    }
}

/// Diffusion, first half: move every mobile molecule of the block for tau
/// (the step starting at t0) and record its destination. Returns
/// molecule-steps per species. Reads the cancel flag every
/// `CANCEL_CHECK_EVENTS` molecules and hops: a step can move 2^28 molecules
/// by up to ~1e4 hops each.
#[allow(clippy::too_many_arguments)]
fn scatter(
    sh: &Shared,
    b: usize,
    blk: &mut Block,
    mv: &mut Vec<Move>,
    gr: &mut Vec<(u32, u32, u32)>,
    t0: f64,
    tau: f64,
) -> Result<Vec<u64>, CoreError> {
    let mut work = 0u64;
    let mut cancelled = || {
        work += 1;
        work.is_multiple_of(CANCEL_CHECK_EVENTS) && sh.cancel.load(AtomicOrdering::Relaxed)
    };
    let s = sh.s;
    let st = sh.rec.st;
    let mut molecules = vec![0u64; s];
    mv.clear();
    gr.clear();
    if blk.occupied.is_empty() {
        return Ok(molecules);
    }
    let off = blk.off;
    let cnt = &mut blk.rec[off..];
    let in_block: u64 = blk
        .occupied
        .iter()
        .map(|&i| {
            let loc = i as usize - blk.lo;
            sh.mobile
                .iter()
                .map(|&sp| u64::from(cnt[loc * st + sp as usize]))
                .sum::<u64>()
        })
        .sum();
    if in_block > MAX_MOBILE_MOLECULES {
        return invalid(format!(
            "{in_block} mobile molecules in subvolumes {}..{} exceed the \
             operator-splitting solver's limit of {MAX_MOBILE_MOLECULES}",
            blk.lo, blk.hi
        ));
    }
    let mut rng = Stream::for_block(sh.seed, sh.replicate, PHASE_DIFFUSION, sh.step, b as u64);
    for &i in &blk.occupied {
        let i = i as usize;
        let loc = i - blk.lo;
        for &sp in sh.mobile {
            let sp = sp as usize;
            let n = std::mem::take(&mut cnt[loc * st + sp]);
            if n == 0 {
                continue;
            }
            molecules[sp] += u64::from(n);
            match sh.walk[sp] {
                Walk::Lattice(_) => {
                    let grid = sh.grid.expect("lattice walk implies a grid");
                    let tables = &sh.tables[sp];
                    for _ in 0..n {
                        if cancelled() {
                            return Err(CoreError::Cancelled { time: t0 });
                        }
                        let mut j = 0usize;
                        for ((&dim, &stride), table) in
                            grid.dims.iter().zip(&grid.strides).zip(tables)
                        {
                            if dim == 1 {
                                continue;
                            }
                            let c = ((i / stride) % dim) as i64;
                            let x = fold(c + table.sample(&mut rng), dim as i64);
                            j += x as usize * stride;
                        }
                        mv.push(Move {
                            dst: j as u32,
                            species: sp as u32,
                        });
                    }
                }
                Walk::Hops(k) => {
                    let list = &sh.hops.lists[k];
                    for _ in 0..n {
                        let mut at = i;
                        let mut t = 0.0;
                        loop {
                            if cancelled() {
                                return Err(CoreError::Cancelled { time: t0 });
                            }
                            let edges = &list.edges[list.offsets[at]..list.offsets[at + 1]];
                            let Some(last) = edges.last() else {
                                break;
                            };
                            let a = last.cum;
                            t += rng.exp1() / a;
                            if t >= tau {
                                break;
                            }
                            let x = rng.uniform() * a;
                            at = edges.iter().find(|e| x < e.cum).unwrap_or(last).target as usize;
                            blk.hops[sp] += 1;
                        }
                        mv.push(Move {
                            dst: at as u32,
                            species: sp as u32,
                        });
                    }
                }
                Walk::Still => unreachable!("only mobile species are listed"),
            }
        }
    }
    std::mem::swap(&mut blk.occupied, &mut blk.departed);
    blk.occupied.clear();
    // Group by destination block; a stable sort keeps the production order
    // inside each group, so the gather order is fixed.
    mv.sort_by_key(|m| m.dst as usize / BLOCK);
    let mut start = 0usize;
    while start < mv.len() {
        let d = mv[start].dst as usize / BLOCK;
        let mut end = start + 1;
        while end < mv.len() && mv[end].dst as usize / BLOCK == d {
            end += 1;
        }
        gr.push((d as u32, start as u32, end as u32));
        start = end;
    }
    Ok(molecules)
}

/// Diffusion, second half: add the arrivals addressed to this block, in
/// source-block order, and list the subvolumes that now hold mobile molecules.
fn gather(
    sh: &Shared,
    blk: &mut Block,
    inc: &[(u32, u32, u32)],
    moves: &[Vec<Move>],
) -> Result<(), CoreError> {
    let off = blk.off;
    let cnt = &mut blk.rec[off..];
    for &(src, a, z) in inc {
        for m in &moves[src as usize][a as usize..z as usize] {
            let loc = m.dst as usize - blk.lo;
            let row = sh.rec.row_mut(cnt, loc);
            let was_empty = sh.mobile.iter().all(|&sp| row[sp as usize] == 0);
            let cell = &mut row[m.species as usize];
            *cell = cell.checked_add(1).ok_or(CoreError::CountOverflow {
                species: m.species as usize,
                subvolume: m.dst as usize,
            })?;
            if was_empty {
                blk.occupied.push(m.dst);
            }
        }
    }
    Ok(())
}

/// Apply a reaction's net change to a row, or fail leaving it unchanged.
#[inline]
fn apply(row: &mut [u32], change: &[(u32, i64)], sub: usize) -> Result<(), CoreError> {
    for &(sp, d) in change {
        let v = row[sp as usize] as i64 + d;
        if v < 0 || v > u32::MAX as i64 {
            return Err(CoreError::CountOverflow {
                species: sp as usize,
                subvolume: sub,
            });
        }
    }
    for &(sp, d) in change {
        row[sp as usize] = (row[sp as usize] as i64 + d) as u32;
    }
    Ok(())
}

/// The reaction phase of one block over [t0, t1): births from the sources,
/// then an exact SSA in every subvolume that diffusion or a birth touched,
/// that a rescan asks for, or whose sleeping reaction time falls in the step.
fn react(sh: &Shared, b: usize, blk: &mut Block, t0: f64, t1: f64) -> Result<(), CoreError> {
    let tau = t1 - t0;
    let lo = blk.lo;
    let len = blk.hi - blk.lo;
    let blk_lo_hi = (blk.lo, blk.hi);
    let rc = sh.rec;
    let mut rng = Stream::for_block(sh.seed, sh.replicate, PHASE_REACTION, sh.step, b as u64);
    let Block {
        occupied,
        departed,
        sleepers,
        rec,
        off,
        sources,
        rescan,
        cand,
        births,
        reactions,
        ssa_runs,
        ..
    } = blk;
    let cells = &mut rec[*off..];
    cand.clear();
    // Touched by diffusion: counts changed, so their sleeping times are void.
    for &i in occupied.iter().chain(departed.iter()) {
        let loc = i as usize - lo;
        if !rc.marked(cells, loc) {
            rc.set_mark(cells, loc, true);
            cand.push(i);
        }
        rc.set_time(cells, loc, f64::NAN);
    }
    occupied.clear();
    departed.clear();
    if std::mem::take(rescan) {
        sleepers.clear();
        for loc in 0..len {
            if rc.marked(cells, loc) {
                continue;
            }
            let chans = &sh.channels[rc.class(cells, loc)];
            let row = rc.row(cells, loc);
            if chans.iter().any(|ch| ch.propensity(row) > 0.0) {
                rc.set_mark(cells, loc, true);
                cand.push((lo + loc) as u32);
                rc.set_time(cells, loc, f64::NAN);
            }
        }
    }
    births.clear();
    for src in sources.iter() {
        let lambda = src.total * sh.factors[src.reaction as usize] * tau;
        if lambda <= 0.0 {
            continue;
        }
        if lambda > MAX_BIRTHS_PER_STEP {
            return invalid(format!(
                "reaction {} would fire about {lambda:e} times in one step in subvolumes \
                 {}..{}: the step is far too long for this source; lower tau",
                src.reaction, blk_lo_hi.0, blk_lo_hi.1
            ));
        }
        let k = match Poisson::new(lambda) {
            Ok(p) => rng.sample(&p),
            Err(_) => 0.0,
        };
        for _ in 0..k as u64 {
            let u = rng.uniform() * src.total;
            let idx = src
                .cumulative
                .partition_point(|&c| c <= u)
                .min(src.subvolumes.len() - 1);
            births.push(Birth {
                sub: src.subvolumes[idx],
                time: t0 + rng.uniform() * tau,
                reaction: src.reaction,
            });
        }
    }
    births.sort_by(|x, y| x.sub.cmp(&y.sub).then(x.time.total_cmp(&y.time)));
    for bi in births.iter() {
        let loc = bi.sub as usize - lo;
        if !rc.marked(cells, loc) {
            rc.set_mark(cells, loc, true);
            cand.push(bi.sub);
        }
        rc.set_time(cells, loc, f64::NAN);
    }
    while let Some(top) = sleepers.peek().copied() {
        if top.time >= t1 {
            break;
        }
        sleepers.pop();
        let loc = top.sub as usize - lo;
        if rc.time(cells, loc).to_bits() != top.time.to_bits() || rc.marked(cells, loc) {
            continue; // stale: redrawn since
        }
        rc.set_mark(cells, loc, true);
        cand.push(top.sub);
    }

    *ssa_runs += cand.len() as u64;
    for &i in cand.iter() {
        if sh.cancel.load(AtomicOrdering::Relaxed) {
            return Err(CoreError::Cancelled { time: t0 });
        }
        let i = i as usize;
        let loc = i - lo;
        rc.set_mark(cells, loc, false);
        let mut clock = rc.time(cells, loc);
        let chans = &sh.channels[rc.class(cells, loc)];
        let row = rc.row_mut(cells, loc);
        let first_birth = births.partition_point(|x| (x.sub as usize) < i);
        let mut bk = first_birth;
        let mut t = t0;
        let mut a0;
        let present: u64 = row.iter().map(|&c| u64::from(c)).sum();
        let budget = MAX_SSA_EVENTS + 100 * present;
        let mut fired = 0u64;
        loop {
            fired += 1;
            if fired.is_multiple_of(CANCEL_CHECK_EVENTS) && sh.cancel.load(AtomicOrdering::Relaxed)
            {
                return Err(CoreError::Cancelled { time: t0 });
            }
            if fired > budget {
                return invalid(format!(
                    "more than {budget} reaction events in subvolume {} within one step \
                     ({t0} to {t1} s): the step is far too long for these rates (a \
                     runaway); lower tau or the tolerance",
                    sh.external.caller(i)
                ));
            }
            a0 = 0.0;
            for ch in chans {
                a0 += ch.propensity(row);
            }
            if !a0.is_finite() {
                return invalid(format!(
                    "the reaction propensity of subvolume {} is not finite",
                    sh.external.caller(i)
                ));
            }
            if clock.is_nan() {
                clock = if a0 > 0.0 {
                    t + rng.exp1() / a0
                } else {
                    f64::INFINITY
                };
            }
            let tb = births
                .get(bk)
                .filter(|x| x.sub as usize == i)
                .map_or(f64::INFINITY, |x| x.time);
            if clock >= t1 && tb >= t1 {
                break;
            }
            if tb < clock {
                let r = births[bk].reaction as usize;
                apply(row, &sh.changes[r], i)?;
                reactions[r] += 1;
                t = tb;
                bk += 1;
            } else {
                let u = rng.uniform() * a0;
                let Some(r) = choose_channel(chans, row, u) else {
                    clock = f64::NAN;
                    continue;
                };
                apply(row, &sh.changes[r], i)?;
                reactions[r] += 1;
                t = clock;
            }
            // The propensity changed: draw afresh (memoryless).
            clock = f64::NAN;
        }
        let has_mobile = sh.mobile.iter().any(|&sp| row[sp as usize] > 0);
        if has_mobile {
            occupied.push(i as u32);
            rc.set_time(cells, loc, f64::NAN);
        } else if a0 > 0.0 && clock.is_finite() {
            rc.set_time(cells, loc, clock);
            sleepers.push(Sleeper {
                time: clock,
                sub: i as u32,
            });
        } else {
            rc.set_time(cells, loc, f64::NAN);
        }
    }
    // Drop stale heap entries once they outnumber the subvolumes.
    if sleepers.len() > 2 * len + 64 {
        let cells = &*cells;
        sleepers.retain(|x| rc.time(cells, x.sub as usize - lo).to_bits() == x.time.to_bits());
    }
    Ok(())
}

/// Recognise a Cartesian lattice with reflecting walls: every subvolume's
/// edges go exactly to its face neighbours at index offsets +-1, +-nx,
/// +-nx*ny (any axis order), nothing else.
fn detect_grid(problem: &Problem) -> Option<Grid> {
    let g = &problem.graph;
    let n = g.n_subvolumes();
    let mut deltas: Vec<usize> = Vec::new();
    for i in 0..n {
        for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
            let t = g.edge_targets[e] as usize;
            if t > i && !deltas.contains(&(t - i)) {
                deltas.push(t - i);
                if deltas.len() > 3 {
                    return None;
                }
            }
        }
    }
    deltas.sort_unstable();
    if deltas.first() != Some(&1) {
        return None;
    }
    let mut dims = [1usize; 3];
    let mut strides = [n; 3];
    for k in 0..deltas.len() {
        strides[k] = deltas[k];
        let next = if k + 1 < deltas.len() {
            deltas[k + 1]
        } else {
            n
        };
        if next % deltas[k] != 0 || next / deltas[k] < 2 {
            return None;
        }
        dims[k] = next / deltas[k];
    }
    for i in 0..n {
        let edges = g.edge_offsets[i]..g.edge_offsets[i + 1];
        let mut expected = 0usize;
        let mut seen = 0u8;
        for a in 0..3 {
            if dims[a] == 1 {
                continue;
            }
            let c = (i / strides[a]) % dims[a];
            expected += usize::from(c > 0) + usize::from(c + 1 < dims[a]);
        }
        if edges.len() != expected {
            return None;
        }
        for e in edges {
            let t = g.edge_targets[e] as usize;
            let bit = (0..3).find_map(|a| {
                if dims[a] == 1 {
                    return None;
                }
                let c = (i / strides[a]) % dims[a];
                if c + 1 < dims[a] && t == i + strides[a] {
                    Some(2 * a)
                } else if c > 0 && t + strides[a] == i {
                    Some(2 * a + 1)
                } else {
                    None
                }
            })?;
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
        }
    }
    Some(Grid { dims, strides })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::{cubic_lattice, voxel_index};
    use crate::problem::{Reaction, SubvolumeGraph};

    fn diffusion_problem(shape: [usize; 3], d: f64, start: usize, n0: u32) -> Problem {
        let graph = cubic_lattice(shape, 1.0);
        let n = graph.n_subvolumes();
        let mut counts = vec![0; n];
        counts[start] = n0;
        Problem {
            n_species: 1,
            graph,
            transport_coefficients: vec![d],
            reactions: vec![],
            rate_class: vec![0; n],
            rate_constants: vec![],
            initial_counts: counts,
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        }
    }

    /// One species in one closed subvolume of volume 1 (no diffusion).
    fn one_voxel(reactions: Vec<Reaction>, rate_constants: Vec<f64>, n0: u32) -> Problem {
        Problem {
            n_species: 1,
            graph: SubvolumeGraph {
                volumes: vec![1.0],
                edge_offsets: vec![0, 0],
                ..SubvolumeGraph::default()
            },
            transport_coefficients: vec![0.0],
            reactions,
            rate_class: vec![0],
            rate_constants,
            initial_counts: vec![n0],
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        }
    }

    /// The automatic step bound against the per-molecule rates written out by
    /// hand: A + B -> C, A + A -> B, C -> A and B -> in two rate classes with
    /// different constants, random counts, two blocks.
    #[test]
    fn tau_bound_is_the_largest_per_molecule_rate() {
        let shape = [20, 20, 11];
        let graph = cubic_lattice(shape, 1.0);
        let n = graph.n_subvolumes();
        assert!(n > BLOCK);
        let reactions = vec![
            Reaction {
                reactants: vec![0, 1],
                products: vec![2],
            },
            Reaction {
                reactants: vec![0, 0],
                products: vec![1],
            },
            Reaction {
                reactants: vec![2],
                products: vec![0],
            },
            Reaction {
                reactants: vec![1],
                products: vec![],
            },
        ];
        // Per class: k_AB, k_AA, k_C, k_B.
        let k = [[0.3, 0.05, 2.0, 1.5], [0.01, 0.9, 0.5, 7.0]];
        let rate_class: Vec<u32> = (0..n).map(|i| u32::from(i % shape[0] < 10)).collect();
        let mut state = 12345u64;
        let initial_counts: Vec<u32> = (0..n * 3)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % 40) as u32
            })
            .collect();
        let mut expected = 0.0f64;
        for i in 0..n {
            let kc = k[rate_class[i] as usize];
            let x = &initial_counts[i * 3..i * 3 + 3];
            let (a, b) = (f64::from(x[0]), f64::from(x[1]));
            let rate_a = kc[0] * b + kc[1] * (a - 1.0).max(0.0);
            let rate_b = kc[0] * a + kc[3];
            let rate_c = kc[2];
            expected = expected.max(rate_a).max(rate_b).max(rate_c);
        }
        let problem = Problem {
            n_species: 3,
            graph,
            transport_coefficients: vec![0.0; 3],
            reactions,
            rate_class,
            rate_constants: k.concat(),
            initial_counts,
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        };
        let options = OpSplitOptions {
            tolerance: 0.02,
            threads: 2,
            ..OpSplitOptions::default()
        };
        let solver = OpSplit::new(&problem, 1, 0, options).unwrap();
        let tau = -(1.0f64 - 0.02).ln() / expected;
        assert!(
            (solver.tau_bound() / tau - 1.0).abs() < 1e-12,
            "{} vs {tau}",
            solver.tau_bound()
        );
    }

    #[test]
    fn skellam_matches_its_moments_and_sums_to_one() {
        for &lambda in &[1e-4, 0.3, 2.0, 37.5, 900.0] {
            let (off, p) = skellam(lambda);
            let total: f64 = p.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "{lambda}: {total}");
            let mean: f64 = p
                .iter()
                .enumerate()
                .map(|(k, &w)| (off + k as i64) as f64 * w)
                .sum();
            let var: f64 = p
                .iter()
                .enumerate()
                .map(|(k, &w)| ((off + k as i64) as f64).powi(2) * w)
                .sum();
            assert!(mean.abs() < 1e-9 * (1.0 + lambda));
            assert!(
                (var - 2.0 * lambda).abs() < 1e-9 * (1.0 + lambda),
                "{lambda}: {var}"
            );
        }
        // P(0) = exp(-2 lambda) I_0(2 lambda); for lambda = 0.3: I_0(0.6) = 1.092045364.
        let (off, p) = skellam(0.3);
        let p0 = p[(-off) as usize];
        assert!((p0 - (-0.6f64).exp() * 1.092_045_364_317_340_5).abs() < 1e-12);
    }

    #[test]
    fn fold_reflects_at_half_integers() {
        let n = 4;
        let got: Vec<i64> = (-6..10).map(|y| fold(y, n)).collect();
        assert_eq!(got, vec![2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1]);
    }

    /// The folded walk has the distribution of the exact reflecting lattice
    /// walk: compare the distribution after time t on a 1-D chain of 5
    /// sites, started at a wall, with the solution of the master equation
    /// (matrix exponential by many small Euler steps of the generator, error
    /// ~1e-6), using 200,000 molecules (tolerance: 5 binomial standard
    /// errors per site).
    #[test]
    fn folded_walk_matches_master_equation() {
        let (len, w, t) = (5usize, 3.0, 0.7);
        let n0 = 200_000u32;
        let p = diffusion_problem([len, 1, 1], w, 0, n0);
        let mut solver = OpSplit::new(
            &p,
            9,
            0,
            OpSplitOptions {
                tau: Some(t),
                ..OpSplitOptions::default()
            },
        )
        .unwrap();
        assert!(solver.lattice_walk(0));
        solver.advance(t, u64::MAX).unwrap();
        assert_eq!(solver.steps(), 1);
        let counts = solver.counts();
        // Master equation.
        let mut q = vec![0.0f64; len];
        q[0] = 1.0;
        let steps = 200_000;
        let dt = t / steps as f64;
        for _ in 0..steps {
            let mut dq = vec![0.0; len];
            for x in 0..len {
                if x > 0 {
                    dq[x - 1] += w * q[x];
                    dq[x] -= w * q[x];
                }
                if x + 1 < len {
                    dq[x + 1] += w * q[x];
                    dq[x] -= w * q[x];
                }
            }
            for x in 0..len {
                q[x] += dt * dq[x];
            }
        }
        for x in 0..len {
            let expect = q[x] * n0 as f64;
            let sd = (n0 as f64 * q[x] * (1.0 - q[x])).sqrt();
            assert!(
                (counts[x] as f64 - expect).abs() < 5.0 * sd + 1.0,
                "site {x}: {} vs {expect:.0} (sd {sd:.0})",
                counts[x]
            );
        }
    }

    /// Same distribution from the hop-by-hop fallback (the graph is made
    /// irregular by a second transport class with the same coefficient, so
    /// the lattice is not used) and from the lattice walk.
    #[test]
    fn hop_fallback_agrees_with_lattice_walk() {
        let shape = [6, 5, 1];
        let start = voxel_index(shape, 1, 2, 0);
        let mut p = diffusion_problem(shape, 2.0, start, 100_000);
        let lattice = {
            let mut s = OpSplit::new(&p, 3, 0, OpSplitOptions::default()).unwrap();
            assert!(s.lattice_walk(0));
            s.advance(0.5, u64::MAX).unwrap();
            s.counts()
        };
        p.transport_coefficients = vec![2.0, 2.0];
        p.graph.edge_class[0] = 1;
        p.graph.edge_coupling[1] *= 1.0 + 1e-15;
        let hops = {
            let mut s = OpSplit::new(&p, 3, 0, OpSplitOptions::default()).unwrap();
            assert!(!s.lattice_walk(0));
            s.advance(0.5, u64::MAX).unwrap();
            assert!(s.diffusion_events()[0] > 100_000);
            s.counts()
        };
        for (x, (&a, &b)) in lattice.iter().zip(&hops).enumerate() {
            let mean = 0.5 * (a + b) as f64;
            assert!(
                (a as f64 - b as f64).abs() < 5.0 * (2.0 * mean).sqrt() + 2.0,
                "voxel {x}: {a} vs {b}"
            );
        }
        assert_eq!(lattice.iter().sum::<u32>(), 100_000);
        assert_eq!(hops.iter().sum::<u32>(), 100_000);
    }

    #[test]
    fn grid_detection() {
        for shape in [[4, 3, 2], [5, 1, 1], [1, 4, 3], [7, 1, 2]] {
            let p = diffusion_problem(shape, 1.0, 0, 1);
            let g = detect_grid(&p).expect("lattice");
            let n: usize = shape.iter().product();
            assert_eq!(g.dims.iter().product::<usize>(), n);
        }
        let mut p = diffusion_problem([4, 3, 2], 1.0, 0, 1);
        // A missing edge is no longer a lattice.
        p.graph.edge_targets[0] = p.graph.edge_targets[1];
        assert!(detect_grid(&p).is_none());
        let single = Problem {
            n_species: 1,
            graph: SubvolumeGraph {
                volumes: vec![1.0],
                edge_offsets: vec![0, 0],
                ..SubvolumeGraph::default()
            },
            transport_coefficients: vec![1.0],
            rate_class: vec![0],
            initial_counts: vec![3],
            ..Problem::default()
        };
        assert!(detect_grid(&single).is_none());
        let mut s = OpSplit::new(&single, 1, 0, OpSplitOptions::default()).unwrap();
        s.advance(1.0, u64::MAX).unwrap();
        assert_eq!(s.totals(), vec![3]);
    }

    fn b1_like(shape: [usize; 3]) -> Problem {
        let graph = cubic_lattice(shape, 0.1);
        let n = graph.n_subvolumes();
        let mut rate_class = vec![0u32; n];
        for z in 0..shape[2] {
            for y in 0..shape[1] {
                rate_class[voxel_index(shape, 0, y, z)] = 1;
            }
        }
        let mut counts = vec![0u32; n * 3];
        for i in 0..n {
            counts[i * 3 + 1] = 12;
        }
        Problem {
            n_species: 3,
            graph,
            transport_coefficients: vec![1000.0, 0.0, 0.0],
            reactions: vec![
                Reaction {
                    reactants: vec![0, 1],
                    products: vec![2],
                },
                Reaction {
                    reactants: vec![2],
                    products: vec![1],
                },
                Reaction {
                    reactants: vec![],
                    products: vec![0],
                },
            ],
            rate_class,
            rate_constants: vec![16.6, 10.0, 0.0, 16.6, 10.0, 500.0],
            initial_counts: counts,
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        // More than one block, so that scatter and gather cross blocks.
        let p = b1_like([24, 20, 20]);
        let run = |threads| {
            let mut s = OpSplit::new(
                &p,
                5,
                1,
                OpSplitOptions {
                    threads,
                    ..OpSplitOptions::default()
                },
            )
            .unwrap();
            s.advance(0.01, u64::MAX).unwrap();
            let mid = s.counts();
            s.advance(0.02, u64::MAX).unwrap();
            (mid, s.counts(), s.reaction_events(), s.diffusion_events())
        };
        let one = run(1);
        assert!(one.2[0] > 100, "{:?}", one.2);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    /// A layout changes only where subvolumes are stored: the solver runs
    /// exactly the problem renumbered in that order (on 1 and 2 threads),
    /// and its counts come back in the caller's order.
    #[test]
    fn layout_changes_storage_only() {
        let mut plain = b1_like([12, 10, 10]);
        let n = plain.n_subvolumes();
        for (i, row) in plain.initial_counts.chunks_exact_mut(3).enumerate() {
            row[2] = (i % 7) as u32; // PrxOx tells subvolumes apart at t = 0
        }
        // Shuffled: the stored graph is no longer a lattice, so molecules
        // take the hop-by-hop walk in both runs.
        let layout = crate::problem::shuffled_layout(n, 99);
        let laid = Problem {
            layout: layout.clone(),
            ..plain.clone()
        };
        let renumbered = laid.in_layout_order();
        let run = |p: &Problem, threads| {
            let options = OpSplitOptions {
                threads,
                ..OpSplitOptions::default()
            };
            let mut s = OpSplit::new(p, 5, 1, options).unwrap();
            let start = s.counts();
            s.advance(0.01, u64::MAX).unwrap();
            (start, s.counts(), s.reaction_events(), s.diffusion_events())
        };
        for threads in [1, 2] {
            let (start, end, rx, dx) = run(&laid, threads);
            assert_eq!(start, plain.initial_counts);
            let (_, end_r, rx_r, dx_r) = run(&renumbered, threads);
            assert_eq!(end, crate::problem::in_caller_order(&layout, &end_r, 3));
            assert!(dx_r[0] > 1000, "{dx_r:?}");
            assert_eq!((rx, dx), (rx_r, dx_r));
        }
    }

    /// The same on a graph that is not a lattice (hop-by-hop walk), with a
    /// rate switch in the middle.
    #[test]
    fn hop_walk_results_do_not_depend_on_thread_count() {
        let mut p = b1_like([24, 20, 20]);
        p.graph.edge_coupling[0] *= 1.5;
        p.schedule = RateSchedule {
            times: vec![0.004],
            factors: vec![1.0, 1.0, 3.0],
        };
        let run = |threads| {
            let opts = OpSplitOptions {
                threads,
                ..OpSplitOptions::default()
            };
            let mut s = OpSplit::new(&p, 8, 0, opts).unwrap();
            assert!(!s.lattice_walk(0));
            s.advance(0.008, u64::MAX).unwrap();
            (s.counts(), s.reaction_events(), s.diffusion_events())
        };
        let one = run(1);
        assert!(one.2[0] > 10_000, "{:?}", one.2);
        assert_eq!(one, run(2));
    }

    #[test]
    fn pausing_does_not_change_the_trajectory() {
        let p = b1_like([12, 10, 10]);
        let mut a = OpSplit::new(&p, 2, 0, OpSplitOptions::default()).unwrap();
        a.advance(0.01, u64::MAX).unwrap();
        let mut b = OpSplit::new(&p, 2, 0, OpSplitOptions::default()).unwrap();
        while b.advance(0.01, 3).unwrap() == Advance::Paused {}
        assert_eq!(a.counts(), b.counts());
        assert_eq!(a.time(), 0.01);
        assert_eq!(b.time(), 0.01);
    }

    /// Birth-death: 0 -> A at k, A -> 0 at g in one subvolume; the
    /// stationary law is Poisson(k / g). The reaction phase is an exact SSA
    /// here (one subvolume, nothing to split), so mean and variance match
    /// within sampling error: 400 samples 0.5 s apart (decorrelated,
    /// g = 10 /s), tolerance 5 standard errors.
    #[test]
    fn birth_death_is_poisson() {
        let p = one_voxel(
            vec![
                Reaction {
                    reactants: vec![],
                    products: vec![0],
                },
                Reaction {
                    reactants: vec![0],
                    products: vec![],
                },
            ],
            vec![200.0, 10.0],
            20,
        );
        // One subvolume: the reaction phase is the whole dynamics, exact for
        // any tau.
        let opts = OpSplitOptions {
            tau: Some(0.5),
            ..OpSplitOptions::default()
        };
        let mut s = OpSplit::new(&p, 4, 0, opts).unwrap();
        let mut xs = Vec::new();
        for k in 1..=400 {
            s.advance(0.5 * k as f64, u64::MAX).unwrap();
            xs.push(s.totals()[0] as f64);
        }
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        let se = (20.0 / 400.0f64).sqrt();
        assert!((m - 20.0).abs() < 5.0 * se, "mean {m}");
        // Var of the sample variance of Poisson(20): (mu4 - s^4)/n, mu4 = 3*20^2 + 20.
        assert!((v - 20.0).abs() < 5.0 * ((3.0 * 400.0 + 20.0 - 400.0) / 400.0f64).sqrt());
    }

    #[test]
    fn schedule_switches_land_on_step_boundaries() {
        // A source switched off at t = 0.3: no birth after it.
        let p = Problem {
            schedule: RateSchedule {
                times: vec![0.3],
                factors: vec![0.0],
            },
            ..one_voxel(
                vec![Reaction {
                    reactants: vec![],
                    products: vec![0],
                }],
                vec![1000.0],
                0,
            )
        };
        let mut s = OpSplit::new(
            &p,
            1,
            0,
            OpSplitOptions {
                tau: Some(0.07),
                ..OpSplitOptions::default()
            },
        )
        .unwrap();
        s.advance(0.3, u64::MAX).unwrap();
        let at_switch = s.totals()[0];
        assert!((at_switch as f64 - 300.0).abs() < 5.0 * 300f64.sqrt());
        s.advance(1.0, u64::MAX).unwrap();
        assert_eq!(s.totals()[0], at_switch);
        assert_eq!(s.time(), 1.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = b1_like([3, 3, 3]);
        for opts in [
            OpSplitOptions {
                tolerance: 0.0,
                ..OpSplitOptions::default()
            },
            OpSplitOptions {
                tolerance: f64::NAN,
                ..OpSplitOptions::default()
            },
            OpSplitOptions {
                tau: Some(-1.0),
                ..OpSplitOptions::default()
            },
        ] {
            assert!(OpSplit::new(&p, 1, 0, opts).is_err());
        }
        let mut s = OpSplit::new(&p, 1, 0, OpSplitOptions::default()).unwrap();
        s.advance(0.001, u64::MAX).unwrap();
        assert!(s.advance(0.0005, u64::MAX).is_err());
        assert!(s.advance(f64::NAN, u64::MAX).is_err());
        assert!(s.advance(f64::INFINITY, u64::MAX).is_err());
    }

    /// A -> 2A in one voxel from 1e7 molecules grows without bound: one step
    /// of the reaction phase is an exact SSA of ~1e9 events (its runaway
    /// budget) before it fails. A cancel set by another thread must stop
    /// it inside the step (an error naming the step's start; the solver is
    /// then refused), and a cancel seen between steps must pause cleanly.
    #[test]
    fn cancel_stops_a_runaway_step_and_pauses_between_steps() {
        let p = one_voxel(
            vec![Reaction {
                reactants: vec![0],
                products: vec![0, 0],
            }],
            vec![1.0],
            10_000_000,
        );
        let opts = OpSplitOptions {
            tau: Some(100.0),
            ..OpSplitOptions::default()
        };
        let mut s = OpSplit::new(&p, 5, 0, opts.clone()).unwrap();
        let flag = s.cancel_flag();
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            flag.store(true, AtomicOrdering::Relaxed);
        });
        let outcome = s.advance(100.0, u64::MAX);
        watchdog.join().unwrap();
        assert_eq!(outcome, Err(CoreError::Cancelled { time: 0.0 }));
        assert_eq!(s.time(), 0.0);
        assert!(s.reaction_events()[0] > 0);
        assert_eq!(
            s.advance(100.0, u64::MAX),
            Err(CoreError::Cancelled { time: 0.0 })
        );

        // In the diffusion phase: 2^27 molecules on a chain that is not a
        // lattice (the hop-by-hop walk), 2,000 hops each in the one step:
        // hours of work that Ctrl-C must be able to stop.
        let mut chain = diffusion_problem([64, 1, 1], 1000.0, 0, 1 << 27);
        chain.layout = crate::problem::shuffled_layout(64, 7);
        let mut s = OpSplit::new(&chain, 5, 0, OpSplitOptions::default()).unwrap();
        assert!(!s.lattice_walk(0));
        let flag = s.cancel_flag();
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            flag.store(true, AtomicOrdering::Relaxed);
        });
        let started = std::time::Instant::now();
        let outcome = s.advance(1.0, u64::MAX);
        watchdog.join().unwrap();
        assert_eq!(outcome, Err(CoreError::Cancelled { time: 0.0 }));
        assert!(
            started.elapsed().as_secs_f64() < 5.0,
            "{:?}",
            started.elapsed()
        );

        // Between steps: set before the call, nothing runs; cleared, it goes on.
        let decay = Problem {
            reactions: vec![Reaction {
                reactants: vec![0],
                products: vec![],
            }],
            ..p
        };
        let mut s = OpSplit::new(&decay, 5, 0, opts).unwrap();
        s.cancel_flag().store(true, AtomicOrdering::Relaxed);
        assert_eq!(s.advance(300.0, u64::MAX), Ok(Advance::Paused));
        assert_eq!((s.time(), s.steps()), (0.0, 0));
        s.cancel_flag().store(false, AtomicOrdering::Relaxed);
        assert_eq!(s.advance(300.0, u64::MAX), Ok(Advance::Reached));
        assert_eq!(s.steps(), 3);
        assert_eq!(s.totals(), vec![0]);
    }
}
