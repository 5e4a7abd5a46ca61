//! Exact spatial SSA with one next-event clock per molecule of the lone
//! mobile species (`solver = "molecules"`).
//!
//! The reaction-diffusion master equation of a problem in which exactly one
//! species M moves, and no reaction has two M among its reactants, splits
//! over M's molecules: a subvolume's hop propensity d_i · x_M and the
//! propensity c · x_M · x_X of every M + X reaction (X immobile) are sums of
//! one identical term per molecule. So each molecule can carry its own
//! exponential clock with rate
//!
//!   r_i = d_i + Σ_(M + X -> ...) c · x_X + Σ_(M -> ...) c,
//!
//! which depends only on the immobile counts of the subvolume it is in, and
//! the next event of the whole system is the earliest clock (the
//! next-reaction method of Gibson & Bruck 2000 over molecules instead of
//! subvolumes; the same Markov chain as the next-subvolume method of Elf &
//! Ehrenberg 2004, not the same random numbers). Reactions without an M
//! reactant keep one clock per subvolume in an indexed heap (the *static*
//! group, as in the NSM).
//!
//! Why: a hop then touches one molecule record, the destination's 16-byte
//! subvolume entry and one calendar slot, where the NSM rewrites two
//! subvolume records and two queue entries. When a reaction changes the
//! immobile counts of a subvolume, the clocks of the molecules in it are
//! rescaled (Gibson & Bruck); each subvolume keeps a list of its molecules
//! for that. docs/performance.md has the measurements.
//!
//! Thinning (`MoleculesMethod::Thinning`): when every subvolume's molecule
//! rate is close to the largest one (B1's lattice: the hop rate dominates
//! and differs only at the walls), the clocks are replaced by one Poisson
//! stream of candidate events at rate N · B, with B >= every subvolume's
//! molecule rate at all times; a candidate picks a molecule uniformly and
//! is accepted with probability r_i / B (thinning, Lewis & Shedler 1979; the
//! rejection-based SSA of Thanh et al. 2014 over molecules). Exact again: the
//! accepted candidates of molecule i form a Poisson stream of rate r_i given
//! the state. Nothing is rescaled when counts change (a rate is read when a
//! candidate needs it), so there are no clocks, no calendar and no lists;
//! B is raised whenever a reaction raises a subvolume's rate, recomputed at
//! rate switches. `Auto` takes it when the mean subvolume rate is at least
//! `THINNING_MIN_ACCEPTANCE` of B at the start.

use crate::calendar::{CalendarQueue, Store, IN_HEAP};
use crate::error::{invalid, CoreError};
use crate::memory::advise_huge_pages;
use crate::nsm::{
    choose_channel, first_time, prefetch, rescaled_finite, total_propensity, Advance, RowChannel,
    Segmented,
};
use crate::problem::{Problem, RateSchedule, StorageMap};
use crate::queue::EventQueue;
use crate::rng::Stream;
use std::collections::HashMap;

const NIL: u32 = u32::MAX;

/// How the molecules' events are drawn; both are exact and give the same
/// statistics (not the same random numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MoleculesMethod {
    /// Thinning when the start state's mean acceptance is high enough, else clocks.
    #[default]
    Auto,
    /// One next-event clock per molecule in a calendar queue.
    Clocks,
    /// One candidate stream at rate N · B, thinned per molecule.
    Thinning,
}

/// `Auto` thins when the mean over subvolumes of rate / B is at least this
/// (each rejected candidate costs about a third of an event).
const THINNING_MIN_ACCEPTANCE: f64 = 0.75;
/// Stands for "no partner species" in a channel (order-1 reactions).
const NONE: u32 = u32::MAX;
/// Molecule slots of a new solver at least (grown by doubling).
const MIN_CAPACITY: usize = 64;
/// Slots per live molecule kept while the slots are fewer than
/// `ROOMY_CAPACITY`: the calendar sizes its ring of buckets from its number
/// of ids (one per 16), and with fewer buckets than molecules most of them
/// would wait in its slower coarse level (B1 ran 1.04x slower with 4,096
/// slots than with 65,536).
const SLOTS_PER_MOLECULE: usize = 16;
const ROOMY_CAPACITY: usize = 1 << 19;
/// Most molecules of the moving species a solver holds (8 GiB of slots):
/// more is refused with `CoreError::TooManyMolecules` rather than left to
/// the allocator to abort.
pub const MAX_MOLECULES: usize = 1 << 28;

/// One molecule of M (or a free slot: voxel == NIL). 32 bytes.
#[derive(Clone, Copy, Debug)]
struct Mol {
    time: f64,
    /// Calendar location (see `calendar::Store`).
    loc: u32,
    /// Stored subvolume it is in; NIL for a free slot.
    voxel: u32,
    /// Neighbours in its subvolume's list of molecules.
    next: u32,
    prev: u32,
    /// Site of its subvolume (copied on arrival, for the prefetch hint).
    site: u32,
}

const FREE_MOL: Mol = Mol {
    time: f64::INFINITY,
    loc: IN_HEAP,
    voxel: NIL,
    next: NIL,
    prev: NIL,
    site: 0,
};

#[derive(Clone, Debug)]
struct Mols(Vec<Mol>);

// SAFETY (every method): the calendar only hands in ids below the n it was
// built with, and it is always built with n == the slots' length.
impl Store for Mols {
    #[inline(always)]
    fn time(&self, id: usize) -> f64 {
        debug_assert!(id < self.0.len());
        unsafe { self.0.get_unchecked(id).time }
    }
    #[inline(always)]
    fn loc(&self, id: usize) -> u32 {
        debug_assert!(id < self.0.len());
        unsafe { self.0.get_unchecked(id).loc }
    }
    #[inline(always)]
    fn tag(&self, id: usize) -> u32 {
        debug_assert!(id < self.0.len());
        unsafe { self.0.get_unchecked(id).voxel }
    }
    #[inline(always)]
    fn set_loc(&mut self, id: usize, loc: u32) {
        debug_assert!(id < self.0.len());
        unsafe { self.0.get_unchecked_mut(id).loc = loc }
    }
    #[inline(always)]
    fn set(&mut self, id: usize, time: f64, loc: u32) {
        debug_assert!(id < self.0.len());
        let m = unsafe { self.0.get_unchecked_mut(id) };
        m.time = time;
        m.loc = loc;
    }
}

/// Per stored subvolume: what a hop into it reads. 16 bytes.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct Vox {
    /// 1 / the clock rate of each M molecule here (s; +inf for rate 0):
    /// a hop's new time is then a product, not a quotient, on the chain
    /// from the destination's entry to the calendar.
    inv_rate: f64,
    /// First molecule of its list (NIL when none).
    head: u32,
    site: u32,
}

/// Where M can hop from a subvolume, shared by subvolumes with the same
/// outgoing (offset, rate) list (a lattice has a few dozen).
#[derive(Clone, Debug)]
struct HopSite {
    /// Total hop rate per molecule.
    hop: f64,
    /// 1 / the common edge rate when every edge has the same one, else 0.
    inv_w: f64,
    edge_start: u32,
    edge_end: u32,
    /// Offsets of the first six targets, for the prefetch (0 past the last).
    prefetch: [i32; 6],
}

/// A reaction with M as a reactant, in one rate class: c (with the current
/// factor) times the count of `partner` (1 when NONE).
#[derive(Clone, Copy, Debug)]
struct FastChannel {
    c: f64,
    partner: u32,
    reaction: u32,
}

/// A reaction without M among its reactants: c · x_a · (x_b - dimer), with
/// a, b = NONE standing for a count of 1.
#[derive(Clone, Copy, Debug)]
struct StaticChannel {
    c: f64,
    a: u32,
    b: u32,
    dimer: f64,
    reaction: u32,
}

/// The count of species `sp` in `row`, 1 for NONE.
#[inline(always)]
fn count(row: &[u32], sp: u32) -> f64 {
    if sp == NONE {
        1.0
    } else {
        row[sp as usize] as f64
    }
}

impl RowChannel for FastChannel {
    #[inline(always)]
    fn propensity(&self, row: &[u32]) -> f64 {
        self.c * count(row, self.partner)
    }
    #[inline(always)]
    fn reaction(&self) -> usize {
        self.reaction as usize
    }
}

impl RowChannel for StaticChannel {
    #[inline(always)]
    fn propensity(&self, row: &[u32]) -> f64 {
        self.c * count(row, self.a) * (count(row, self.b) - self.dimer)
    }
    #[inline(always)]
    fn reaction(&self) -> usize {
        self.reaction as usize
    }
}

/// What a reaction does: its changes of the immobile species, how many M it
/// makes, whether it takes one M.
#[derive(Clone, Debug, Default)]
struct Effect {
    immobile: Vec<(u32, i64)>,
    m_made: u32,
    m_taken: bool,
    /// Some changed species is a partner of a fast channel (the molecules'
    /// rate may change) / a reactant of a static one.
    touches_fast: bool,
    touches_static: bool,
}

/// Exact solver with one clock per molecule of the lone mobile species; see
/// the module documentation.
#[derive(Clone, Debug)]
pub struct Molecules {
    n: usize,
    s: usize,
    mobile: usize,
    time: f64,
    vox: Vec<Vox>,
    /// (n, s) counts of the immobile species; M's column stays 0.
    counts: Vec<u32>,
    rate_class: Vec<u32>,
    sites: Vec<HopSite>,
    edge_delta: Vec<i32>,
    /// Running sums of the edge rates of each site.
    edge_cum: Vec<f64>,
    /// Per rate class, channels [off[k], off[k + 1]).
    fast: Vec<FastChannel>,
    fast_off: Vec<usize>,
    stat: Vec<StaticChannel>,
    stat_off: Vec<usize>,
    effects: Vec<Effect>,
    /// Reactants of each reaction (the channels are rebuilt from them when a
    /// rate switch changes the factors).
    reactants: Vec<Vec<u32>>,
    /// (n_classes, n_reactions) constants before the schedule's factors.
    base_constants: Vec<f64>,
    n_reactions: usize,
    schedule: RateSchedule,
    factors: Vec<f64>,
    mols: Mols,
    free: Vec<u32>,
    queue: CalendarQueue,
    static_queue: EventQueue,
    rng: Stream,
    /// Hops so far (only the moving species hops).
    hops: u64,
    reaction_events: Vec<u64>,
    total_events: u64,
    external: StorageMap,
    /// Thinning instead of clocks (see the module documentation).
    thinning: bool,
    /// Thinning: a bound on every subvolume's molecule rate, and the stored
    /// subvolume of each molecule, densely (no slots, lists or clocks; a
    /// molecule that reacts away is replaced by the last one).
    bound: f64,
    live: Vec<u32>,
    /// Thinning: rejected candidates so far.
    rejected: u64,
    /// Thinning: the uniform that picks the next candidate's molecule, drawn
    /// one candidate ahead so that its subvolume entry can be prefetched
    /// (NaN until the first candidate).
    next_pick: f64,
}

impl Molecules {
    /// The solver for `problem` at t = 0; refuses (InvalidInput) a problem
    /// in which not exactly one species moves or a reaction takes two
    /// molecules of the moving species.
    pub fn new(problem: &Problem, seed: u64, replicate: u64) -> Result<Self, CoreError> {
        Self::with_method(problem, seed, replicate, MoleculesMethod::Auto)
    }

    /// As `new`, with the way events are drawn chosen by the caller.
    pub fn with_method(
        problem: &Problem,
        seed: u64,
        replicate: u64,
        method: MoleculesMethod,
    ) -> Result<Self, CoreError> {
        problem.validate()?;
        let (stored, external) = problem.stored();
        Self::build(&stored, external, seed, replicate, method)
    }

    fn build(
        problem: &Problem,
        external: StorageMap,
        seed: u64,
        replicate: u64,
        method: MoleculesMethod,
    ) -> Result<Self, CoreError> {
        let s = problem.n_species;
        let n = problem.n_subvolumes();
        let n_reactions = problem.reactions.len();
        let mobile: Vec<usize> = (problem.mobile_species().iter().enumerate())
            .filter_map(|(sp, &moves)| moves.then_some(sp))
            .collect();
        let m = match mobile[..] {
            [m] => m,
            _ => {
                return invalid(format!(
                    "the molecules solver needs exactly one species that moves, but {} do \
                     (use the nsm solver)",
                    mobile.len()
                ))
            }
        };
        let mut effects = Vec::with_capacity(n_reactions);
        for (r, rx) in problem.reactions.iter().enumerate() {
            let taken = rx.reactants.iter().filter(|&&sp| sp as usize == m).count();
            if taken > 1 {
                return invalid(format!(
                    "reactions[{r}] has the moving species {m} twice among its reactants, \
                     which the molecules solver cannot split over molecules (use the nsm solver)"
                ));
            }
            let made = rx.products.iter().filter(|&&sp| sp as usize == m).count();
            let immobile = rx
                .net_change()
                .into_iter()
                .filter(|&(sp, _)| sp as usize != m)
                .collect();
            effects.push(Effect {
                immobile,
                m_made: made as u32,
                m_taken: taken == 1,
                touches_fast: false,
                touches_static: false,
            });
        }
        // Every class a subvolume uses (validated to have constants when
        // there are reactions; without reactions any class is valid).
        let n_classes = problem
            .rate_class
            .iter()
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0);
        // Which species the channels read.
        let mut fast_partner = vec![false; s];
        let mut static_reactant = vec![false; s];
        for rx in &problem.reactions {
            let has_m = rx.reactants.iter().any(|&sp| sp as usize == m);
            for &sp in rx.reactants.iter().filter(|&&sp| sp as usize != m) {
                if has_m {
                    fast_partner[sp as usize] = true;
                } else {
                    static_reactant[sp as usize] = true;
                }
            }
        }
        for e in &mut effects {
            e.touches_fast = e.immobile.iter().any(|&(sp, _)| fast_partner[sp as usize]);
            e.touches_static = e
                .immobile
                .iter()
                .any(|&(sp, _)| static_reactant[sp as usize]);
        }

        // Edge offsets are kept as i32.
        if i32::try_from(n).is_err() {
            return invalid(format!(
                "the molecules solver takes at most {} subvolumes, got {n}",
                i32::MAX
            ));
        }
        // Hop sites: subvolumes with the same outgoing (offset, rate bits).
        let g = &problem.graph;
        let mut site_of_key: HashMap<Vec<(i64, u64)>, u32> = HashMap::new();
        let mut sites: Vec<HopSite> = Vec::new();
        let mut edge_delta = Vec::new();
        let mut edge_cum = Vec::new();
        let mut vox_site = vec![0u32; n];
        for (i, site) in vox_site.iter_mut().enumerate() {
            let mut key = Vec::new();
            for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                let d = problem.transport_coefficients[g.edge_class[e] as usize * s + m];
                let rate = d * g.edge_coupling[e] / g.volumes[i];
                if rate > 0.0 {
                    key.push((g.edge_targets[e] as i64 - i as i64, rate.to_bits()));
                }
            }
            let next_id = sites.len() as u32;
            let id = *site_of_key.entry(key.clone()).or_insert(next_id);
            if id == next_id {
                let start = edge_delta.len() as u32;
                let mut acc = 0.0;
                let mut prefetch = [0i32; 6];
                for (k, &(delta, bits)) in key.iter().enumerate() {
                    let delta = delta as i32; // |delta| < n <= i32::MAX
                    acc += f64::from_bits(bits);
                    edge_delta.push(delta);
                    edge_cum.push(acc);
                    if k < 6 {
                        prefetch[k] = delta;
                    }
                }
                let uniform = !key.is_empty() && key.iter().all(|e| e.1 == key[0].1);
                sites.push(HopSite {
                    hop: acc,
                    inv_w: if uniform {
                        1.0 / f64::from_bits(key[0].1)
                    } else {
                        0.0
                    },
                    edge_start: start,
                    edge_end: edge_delta.len() as u32,
                    prefetch,
                });
            }
            *site = id;
        }

        let mut solver = Molecules {
            n,
            s,
            mobile: m,
            time: 0.0,
            vox: Vec::new(),
            counts: problem.initial_counts.clone(),
            rate_class: problem.rate_class.clone(),
            sites,
            edge_delta,
            edge_cum,
            fast: Vec::new(),
            fast_off: Vec::new(),
            stat: Vec::new(),
            stat_off: Vec::new(),
            effects,
            reactants: problem
                .reactions
                .iter()
                .map(|rx| rx.reactants.clone())
                .collect(),
            base_constants: problem.rate_constants.clone(),
            n_reactions,
            schedule: problem.schedule.clone(),
            factors: vec![1.0; n_reactions],
            mols: Mols(Vec::new()),
            free: Vec::new(),
            queue: CalendarQueue::build(0, &mut Mols(Vec::new())),
            static_queue: EventQueue::default(),
            rng: Stream::new(seed, replicate),
            hops: 0,
            reaction_events: vec![0; n_reactions],
            total_events: 0,
            external,
            thinning: false,
            bound: 0.0,
            live: Vec::new(),
            rejected: 0,
            next_pick: f64::NAN,
        };
        solver.factors = solver.schedule.factors_at(0.0, n_reactions);
        solver.set_channels(n_classes);
        solver.check_rate_bound()?;

        // Subvolume entries, with their molecules' rates.
        let mut vox = Vec::with_capacity(n);
        advise_huge_pages(vox.as_ptr() as *const u8, n * std::mem::size_of::<Vox>());
        for &site in &vox_site {
            vox.push(Vox {
                inv_rate: f64::INFINITY,
                head: NIL,
                site,
            });
        }
        solver.vox = vox;
        for i in 0..n {
            solver.vox[i].inv_rate = 1.0 / solver.molecule_rate(i);
        }
        solver.bound = solver.largest_rate();
        solver.thinning = match method {
            MoleculesMethod::Clocks => false,
            MoleculesMethod::Thinning => true,
            MoleculesMethod::Auto => {
                let mean = (0..n).map(|i| solver.rate(i)).sum::<f64>() / n.max(1) as f64;
                solver.bound > 0.0 && mean >= THINNING_MIN_ACCEPTANCE * solver.bound
            }
        };
        // The molecules of M, in subvolume order.
        let initial: usize = (0..n)
            .map(|i| solver.counts[i * s + m] as usize)
            .sum::<usize>();
        if initial > MAX_MOLECULES {
            return invalid(format!(
                "the molecules solver holds at most {MAX_MOLECULES} molecules of the moving \
                 species {m}, but the initial counts have {initial} (use the nsm solver)"
            ));
        }
        let mut total_rate = 0.0;
        if solver.thinning {
            // Each molecule is its subvolume, densely; no slots, no clocks.
            solver.live.reserve(initial);
            for i in 0..n {
                let k = std::mem::take(&mut solver.counts[i * s + m]);
                solver
                    .live
                    .extend(std::iter::repeat_n(i as u32, k as usize));
            }
        } else {
            let capacity = (SLOTS_PER_MOLECULE * initial)
                .min(ROOMY_CAPACITY)
                .max(initial + initial / 4)
                .clamp(MIN_CAPACITY, MAX_MOLECULES);
            solver.mols = Mols(vec![FREE_MOL; capacity]);
            solver.free = (0..capacity as u32).rev().collect();
            for i in 0..n {
                let k = std::mem::take(&mut solver.counts[i * s + m]);
                for _ in 0..k {
                    let id = solver.free.pop().expect("capacity >= initial") as usize;
                    solver.link(id, i);
                    let r = solver.rate(i);
                    total_rate += r;
                    let t = if r > 0.0 {
                        first_time(0.0, solver.rng.exp1(), r)
                    } else {
                        f64::INFINITY
                    };
                    solver.mols.0[id].time = t;
                }
            }
        }
        let static_times: Vec<f64> = (0..n)
            .map(|i| {
                let a = solver.static_propensity(i);
                if a > 0.0 {
                    first_time(0.0, solver.rng.exp1(), a)
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        solver.static_queue = EventQueue::build(&static_times);
        if !solver.thinning {
            let capacity = solver.mols.0.len();
            solver.queue = CalendarQueue::build_with_rate(capacity, &mut solver.mols, total_rate);
        }
        Ok(solver)
    }

    /// The largest molecule rate over the subvolumes (the thinning bound).
    fn largest_rate(&self) -> f64 {
        (0..self.n).map(|i| self.rate(i)).fold(0.0, f64::max)
    }

    /// The channels of every rate class, with the factors in force.
    fn set_channels(&mut self, n_classes: usize) {
        let m = self.mobile as u32;
        self.fast.clear();
        self.stat.clear();
        self.fast_off = vec![0];
        self.stat_off = vec![0];
        for class in 0..n_classes {
            for (r, reactants) in self.reactants.iter().enumerate() {
                let c = self.base_constants[class * self.n_reactions + r] * self.factors[r];
                if c <= 0.0 {
                    continue;
                }
                if reactants.contains(&m) {
                    let partner = reactants
                        .iter()
                        .copied()
                        .find(|&sp| sp != m)
                        .unwrap_or(NONE);
                    self.fast.push(FastChannel {
                        c,
                        partner,
                        reaction: r as u32,
                    });
                } else {
                    let a = reactants.first().copied().unwrap_or(NONE);
                    let b = reactants.get(1).copied().unwrap_or(NONE);
                    self.stat.push(StaticChannel {
                        c,
                        a,
                        b,
                        dimer: if a != NONE && a == b { 1.0 } else { 0.0 },
                        reaction: r as u32,
                    });
                }
            }
            self.fast_off.push(self.fast.len());
            self.stat_off.push(self.stat.len());
        }
    }

    /// Refuse a problem whose clock rates could overflow: with every count at
    /// u32::MAX and the largest factor of the schedule, a molecule's rate
    /// and a subvolume's static propensity must stay below f64::MAX / 4.
    fn check_rate_bound(&self) -> Result<(), CoreError> {
        let big = f64::from(u32::MAX);
        let limit = f64::MAX / 4.0;
        let r = self.n_reactions;
        let max_factor = self.schedule.max_factors(r);
        let max_hop = self.sites.iter().map(|s| s.hop).fold(0.0, f64::max);
        let n_classes = self.fast_off.len() - 1;
        for class in 0..n_classes {
            let (mut fast, mut stat) = (max_hop, 0.0);
            for (rx_id, reactants) in self.reactants.iter().enumerate() {
                let c = self.base_constants[class * r + rx_id] * max_factor[rx_id];
                if reactants.contains(&(self.mobile as u32)) {
                    fast += c * big;
                } else {
                    stat += c * big * big;
                }
            }
            if !(fast < limit && stat < limit) {
                return invalid(format!(
                    "rate constants of rate class {class} are so large that propensities \
                     could overflow (at most {limit:e} per subvolume)"
                ));
            }
        }
        Ok(())
    }

    /// The counts of stored subvolume i (M's column is 0).
    #[inline(always)]
    fn row(&self, i: usize) -> &[u32] {
        &self.counts[i * self.s..(i + 1) * self.s]
    }

    fn fast_channels(&self, i: usize) -> &[FastChannel] {
        let class = self.rate_class[i] as usize;
        &self.fast[self.fast_off[class]..self.fast_off[class + 1]]
    }

    fn static_channels(&self, i: usize) -> &[StaticChannel] {
        let class = self.rate_class[i] as usize;
        &self.stat[self.stat_off[class]..self.stat_off[class + 1]]
    }

    /// Clock rate of one M molecule in stored subvolume i, as held.
    #[inline(always)]
    fn rate(&self, i: usize) -> f64 {
        1.0 / self.vox[i].inv_rate
    }

    /// Clock rate of one M molecule in stored subvolume i, from the counts.
    fn molecule_rate(&self, i: usize) -> f64 {
        self.sites[self.vox[i].site as usize].hop
            + total_propensity(self.fast_channels(i), self.row(i))
    }

    fn static_propensity(&self, i: usize) -> f64 {
        total_propensity(self.static_channels(i), self.row(i))
    }

    /// Put free slot id into subvolume i's list (time and queue untouched).
    #[inline(always)]
    fn link(&mut self, id: usize, i: usize) {
        debug_assert!(id < self.mols.0.len() && i < self.n);
        // SAFETY: callers pass a slot (from the calendar or the free stack)
        // and a stored subvolume; list entries are live slots (< len).
        unsafe {
            let v = self.vox.get_unchecked_mut(i);
            let old = v.head;
            v.head = id as u32;
            let site = v.site;
            let mol = self.mols.0.get_unchecked_mut(id);
            mol.voxel = i as u32;
            mol.next = old;
            mol.prev = NIL;
            mol.site = site;
            if old != NIL {
                self.mols.0.get_unchecked_mut(old as usize).prev = id as u32;
            }
        }
    }

    /// Take molecule id out of its subvolume's list.
    #[inline(always)]
    fn unlink(&mut self, id: usize) {
        debug_assert!(id < self.mols.0.len());
        // SAFETY: id is a live slot, its voxel a stored subvolume and its list
        // neighbours live slots.
        unsafe {
            let mol = *self.mols.0.get_unchecked(id);
            debug_assert!((mol.voxel as usize) < self.n);
            if mol.prev == NIL {
                self.vox.get_unchecked_mut(mol.voxel as usize).head = mol.next;
            } else {
                self.mols.0.get_unchecked_mut(mol.prev as usize).next = mol.next;
            }
            if mol.next != NIL {
                self.mols.0.get_unchecked_mut(mol.next as usize).prev = mol.prev;
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
        self.n_reactions
    }
    /// Empty calendar buckets walked over so far (a diagnostic of the
    /// queue's tuning: about one per event or less is healthy).
    pub fn empty_buckets_walked(&self) -> u64 {
        self.queue.empty_steps()
    }
    /// Molecule slots (live and free).
    pub fn capacity(&self) -> usize {
        self.mols.0.len()
    }
    /// The species whose molecules carry the clocks.
    pub fn mobile_species(&self) -> usize {
        self.mobile
    }
    pub fn total_events(&self) -> u64 {
        self.total_events
    }
    /// Diffusion events by species (only the moving one hops).
    pub fn diffusion_events(&self) -> Vec<u64> {
        let mut d = vec![0; self.s];
        d[self.mobile] = self.hops;
        d
    }
    pub fn reaction_events(&self) -> &[u64] {
        &self.reaction_events
    }
    /// How events are drawn (`Clocks` or `Thinning`; `Auto` has chosen).
    pub fn method(&self) -> MoleculesMethod {
        if self.thinning {
            MoleculesMethod::Thinning
        } else {
            MoleculesMethod::Clocks
        }
    }
    /// Thinning: candidates rejected so far (0 with clocks).
    pub fn rejected_candidates(&self) -> u64 {
        self.rejected
    }
    /// Molecules of the moving species now.
    pub fn n_molecules(&self) -> usize {
        if self.thinning {
            return self.live.len();
        }
        self.mols.0.len() - self.free.len()
    }

    /// Counts as an (N, S) row-major array.
    pub fn counts(&self) -> Vec<u32> {
        let mut out = vec![0; self.n * self.s];
        self.counts_into(&mut out);
        out
    }

    /// Write the (N, S) counts into `out` (length N * S), in the caller's
    /// order of subvolumes whatever the layout.
    pub fn counts_into(&self, out: &mut [u32]) {
        let s = self.s;
        for (k, row) in self.counts.chunks_exact(s).enumerate() {
            let i = self.external.caller(k);
            out[i * s..(i + 1) * s].copy_from_slice(row);
        }
        for mol in self.mols.0.iter().filter(|m| m.voxel != NIL) {
            out[self.external.caller(mol.voxel as usize) * s + self.mobile] += 1;
        }
        for &v in &self.live {
            out[self.external.caller(v as usize) * s + self.mobile] += 1;
        }
    }

    pub fn totals(&self) -> Vec<u64> {
        let mut t = vec![0u64; self.s];
        for row in self.counts.chunks_exact(self.s) {
            for (acc, &c) in t.iter_mut().zip(row) {
                *acc += c as u64;
            }
        }
        t[self.mobile] = self.n_molecules() as u64;
        t
    }

    /// Memory held by the solver state, in bytes per subvolume.
    pub fn bytes_per_subvolume(&self) -> f64 {
        use std::mem::size_of;
        let bytes = self.vox.capacity() * size_of::<Vox>()
            + self.counts.capacity() * 4
            + self.rate_class.capacity() * 4
            + self.sites.capacity() * size_of::<HopSite>()
            + self.edge_delta.capacity() * 4
            + self.edge_cum.capacity() * 8
            + self.mols.0.capacity() * size_of::<Mol>()
            + self.free.capacity() * 4
            + self.live.capacity() * 4
            + self.queue.bytes()
            + self.n * EventQueue::bytes_per_entry();
        bytes as f64 / self.n as f64
    }

    /// The factor of each reaction in force now (1 without a schedule).
    pub fn rate_factors(&self) -> &[f64] {
        &self.factors
    }

    /// Run every event with time <= t_stop, at most `max_events` of them.
    /// Rate switches of the schedule that fall in (time, t_stop] take effect
    /// exactly at their times.
    pub fn advance(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError> {
        self.advance_by_segments(t_stop, max_events)
            .map_err(|e| self.external.caller_error(e))
    }

    /// New constants at switch time ts: every clock whose rate changes is
    /// rescaled (exact by memorylessness), and the calendar is rebuilt: its
    /// last `peek` may have moved past ts (it stops at the static minimum,
    /// not at the switch), so times between ts and there cannot be filed.
    fn apply_switch(&mut self, ts: f64) {
        let factors = self.schedule.factors_at(ts, self.n_reactions);
        if factors == self.factors {
            return;
        }
        let old_static: Vec<f64> = (0..self.n).map(|i| self.static_propensity(i)).collect();
        // The clocks' rates before the switch (thinning has no clocks).
        let old_rate: Vec<f64> = if self.thinning {
            Vec::new()
        } else {
            (0..self.n).map(|i| self.rate(i)).collect()
        };
        self.factors = factors;
        let n_classes = self.fast_off.len() - 1;
        self.set_channels(n_classes);
        for i in 0..self.n {
            let r = self.molecule_rate(i);
            self.vox[i].inv_rate = 1.0 / r;
        }
        if self.thinning {
            // Candidates read the new rates; only the bound follows them.
            self.bound = self.largest_rate();
        } else {
            for id in 0..self.mols.0.len() {
                let v = self.mols.0[id].voxel;
                if v == NIL {
                    continue;
                }
                let (a_old, a_new) = (old_rate[v as usize], self.rate(v as usize));
                if a_old != a_new {
                    self.mols.0[id].time = self.rescaled(ts, self.mols.0[id].time, a_old, a_new);
                }
            }
            self.rebuild_queue();
        }
        for (i, &a_old) in old_static.iter().enumerate() {
            let a_new = self.static_propensity(i);
            if a_new != a_old {
                let t = self.rescaled(ts, self.static_queue.time_of(i), a_old, a_new);
                self.static_queue.update(i, t);
            }
        }
    }

    /// Fire every event with time <= t_stop (at most `max_events`):
    /// (outcome, events fired). Reaching t_stop sets the time to it.
    fn run_events(&mut self, t_stop: f64, max_events: u64) -> Result<(Advance, u64), CoreError> {
        if self.thinning {
            return self.run_thinned(t_stop, max_events);
        }
        let mut fired = 0u64;
        // A finite bound, so that one compare also stops at "no next event".
        let bound = t_stop.min(f64::MAX);
        // The static minimum, re-read only after events that can move it (a
        // hop cannot).
        let (mut ts, mut is) = self.static_queue.peek();
        loop {
            if fired >= max_events {
                return Ok((Advance::Paused, fired));
            }
            let (tf, id) = self.queue.peek_before(&mut self.mols, ts);
            let t = tf.min(ts);
            if t > bound {
                self.time = t_stop;
                return Ok((Advance::Reached, fired));
            }
            let static_moved = if tf <= ts {
                self.prefetch_hint();
                self.molecule_event(t, id)?
            } else {
                self.static_event(t, is)?;
                true
            };
            if static_moved {
                (ts, is) = self.static_queue.peek();
            }
            self.time = t;
            fired += 1;
            self.total_events += 1;
            self.queue.note_event(&mut self.mols, t);
        }
    }

    /// `run_events` by thinning: candidates at rate N · B merged with the
    /// static clocks. A pause comes before a draw, so that the random
    /// numbers, and the trajectory, do not depend on the budgets; rejected
    /// candidates count towards a budget of their own (the same size).
    fn run_thinned(&mut self, t_stop: f64, max_events: u64) -> Result<(Advance, u64), CoreError> {
        let mut fired = 0u64;
        let mut rejected = 0u64;
        let bound = t_stop.min(f64::MAX);
        let (mut ts, mut is) = self.static_queue.peek();
        let mut t = self.time;
        loop {
            if fired >= max_events || rejected >= max_events {
                return Ok((Advance::Paused, fired));
            }
            let total = self.live.len() as f64 * self.bound;
            let tc = if total > 0.0 {
                first_time(t, self.rng.exp1(), total)
            } else {
                f64::INFINITY
            };
            let next = tc.min(ts);
            if next > bound {
                self.time = t_stop;
                return Ok((Advance::Reached, fired));
            }
            t = next;
            self.time = t;
            let static_moved = if tc <= ts {
                match self.candidate(t)? {
                    None => {
                        rejected += 1;
                        self.rejected += 1;
                        continue;
                    }
                    Some(moved) => moved,
                }
            } else {
                self.static_event(t, is)?;
                true
            };
            if static_moved {
                (ts, is) = self.static_queue.peek();
            }
            fired += 1;
            self.total_events += 1;
        }
    }

    /// A thinning candidate at t: a molecule drawn uniformly, accepted with
    /// probability rate / B, then a hop or one of its reactions as with a
    /// clock. None when rejected; Some(true) when the static queue may have
    /// changed.
    #[inline(always)]
    fn candidate(&mut self, t: f64) -> Result<Option<bool>, CoreError> {
        let n_live = self.live.len();
        debug_assert!(n_live > 0);
        if self.next_pick.is_nan() {
            self.next_pick = self.rng.uniform();
        }
        let pick = ((self.next_pick * n_live as f64) as usize).min(n_live - 1);
        self.next_pick = self.rng.uniform();
        // The next candidate's entry, if no molecule comes or goes meanwhile.
        let ahead = ((self.next_pick * n_live as f64) as usize).min(n_live - 1);
        prefetch(
            self.vox
                .as_ptr()
                .wrapping_add(unsafe { *self.live.get_unchecked(ahead) } as usize),
        );
        // SAFETY: pick < live.len(); a live molecule's subvolume is stored,
        // its site a valid index, and a site's edges lie in the edge arrays
        // and lead to stored subvolumes.
        let v = unsafe { *self.live.get_unchecked(pick) } as usize;
        debug_assert!(v < self.n);
        let vox = unsafe { *self.vox.get_unchecked(v) };
        // u uniform on [0, B); accepted iff u < rate, i.e. u / rate < 1
        // (inv_rate is +inf for rate 0: never accepted).
        let u = self.rng.uniform() * self.bound;
        if u * vox.inv_rate >= 1.0 {
            return Ok(None);
        }
        let site = unsafe { self.sites.get_unchecked(vox.site as usize) };
        if u >= site.hop {
            self.fast_reaction(t, pick, v, u - site.hop)?;
            return Ok(Some(true));
        }
        let j = self.hop_target(site, v, u);
        unsafe { *self.live.get_unchecked_mut(pick) = j as u32 };
        self.hops += 1;
        Ok(Some(false))
    }

    /// The subvolume a hop from v through `site` goes to, for u uniform on
    /// [0, site.hop).
    #[inline(always)]
    fn hop_target(&self, site: &HopSite, v: usize, u: f64) -> usize {
        let (start, end) = (site.edge_start as usize, site.edge_end as usize);
        let k = if site.inv_w > 0.0 {
            // SAFETY: 0 <= u < hop = n_edges * w (finite), so u * inv_w is
            // finite, >= 0 and at most n_edges plus a rounding step.
            (unsafe { (u * site.inv_w).to_int_unchecked::<u32>() } as usize).min(end - start - 1)
        } else {
            let cum = unsafe { self.edge_cum.get_unchecked(start..end) };
            cum.iter().position(|&c| u < c).unwrap_or(end - start - 1)
        };
        let j =
            (v as isize + unsafe { *self.edge_delta.get_unchecked(start + k) } as isize) as usize;
        debug_assert!(j < self.n);
        j
    }

    /// Bring the subvolume entries a hop of the likely next molecule reads
    /// (its own and its neighbours') into the cache.
    #[inline(always)]
    fn prefetch_hint(&self) {
        let (hid, hvox) = self.queue.hint();
        let (Some(mol), true) = (self.mols.0.get(hid as usize), (hvox as usize) < self.n) else {
            return;
        };
        let base = self.vox.as_ptr().wrapping_add(hvox as usize);
        prefetch(base);
        if let Some(site) = self.sites.get(mol.site as usize) {
            for &d in &site.prefetch {
                prefetch(base.wrapping_offset(d as isize));
            }
        }
    }

    /// Molecule id's clock fired at t: a hop or one of its reactions.
    /// Ok(true) when the static queue may have changed.
    #[inline(always)]
    fn molecule_event(&mut self, t: f64, id: usize) -> Result<bool, CoreError> {
        debug_assert!(id < self.mols.0.len());
        // SAFETY: id comes from the calendar (< slots); a queued molecule is
        // live, so its voxel and site are valid indices; a site's edges lie
        // in the edge arrays and lead to stored subvolumes (built in `build`).
        let (v, site) = unsafe {
            let mol = self.mols.0.get_unchecked(id);
            (
                mol.voxel as usize,
                self.sites.get_unchecked(mol.site as usize),
            )
        };
        debug_assert!(v < self.n);
        // A queued molecule's rate is positive, so inv_rate is finite.
        let inv_rate = unsafe { self.vox.get_unchecked(v).inv_rate };
        let u = self.rng.uniform() / inv_rate;
        if u >= site.hop {
            self.fast_reaction(t, id, v, u - site.hop)?;
            return Ok(true);
        }
        let j = self.hop_target(site, v, u);
        self.unlink(id);
        self.link(id, j);
        let inv = unsafe { self.vox.get_unchecked(j).inv_rate };
        if inv < f64::INFINITY {
            let next = (t + self.rng.exp1() * inv).min(f64::MAX);
            self.queue.update_finite(&mut self.mols, id, next);
        } else {
            self.queue.update_idle(&mut self.mols, id);
        }
        self.hops += 1;
        Ok(false)
    }

    /// Molecule id in subvolume v takes part in the fast channel that u
    /// (uniform on [0, its reaction rate)) falls in.
    fn fast_reaction(&mut self, t: f64, id: usize, v: usize, u: f64) -> Result<(), CoreError> {
        let chosen = choose_channel(self.fast_channels(v), self.row(v), u);
        let Some(r) = chosen else {
            // Cannot happen (the rate would be the hop rate alone, and u
            // below it); redraw the clock rather than fire anything.
            if self.thinning {
                return Ok(());
            }
            let next = first_time(t, self.rng.exp1(), self.rate(v));
            self.queue.update_finite(&mut self.mols, id, next);
            return Ok(());
        };
        self.check_room(v, r)?;
        let static_before = if self.effects[r].touches_static {
            self.static_propensity(v)
        } else {
            0.0
        };
        if self.thinning {
            // id is the molecule's index in `live`.
            self.live.swap_remove(id);
        } else {
            self.unlink(id);
            self.mols.0[id].voxel = NIL;
            self.queue.update_idle(&mut self.mols, id);
            self.free.push(id as u32);
        }
        self.apply(t, v, r, static_before);
        Ok(())
    }

    /// The static clock of subvolume v fired at t.
    fn static_event(&mut self, t: f64, v: usize) -> Result<(), CoreError> {
        let a = self.static_propensity(v);
        let u = self.rng.uniform() * a;
        let chosen = choose_channel(self.static_channels(v), self.row(v), u);
        if let Some(r) = chosen {
            self.check_room(v, r)?;
            self.apply(t, v, r, a);
        }
        // The clock that fired draws afresh.
        let a_new = self.static_propensity(v);
        let next = if a_new > 0.0 {
            first_time(t, self.rng.exp1(), a_new)
        } else {
            f64::INFINITY
        };
        self.static_queue.update(v, next);
        Ok(())
    }

    /// Refuse reaction r in subvolume v if a count would pass u32::MAX
    /// (before anything changes, so that the state stays as it was).
    fn check_room(&self, v: usize, r: usize) -> Result<(), CoreError> {
        let eff = &self.effects[r];
        for &(sp, d) in &eff.immobile {
            if d > 0 && self.counts[v * self.s + sp as usize] as i64 + d > u32::MAX as i64 {
                return Err(CoreError::CountOverflow {
                    species: sp as usize,
                    subvolume: v,
                });
            }
        }
        let after = self.n_molecules() + eff.m_made as usize;
        if after - usize::from(eff.m_taken) > MAX_MOLECULES {
            return Err(CoreError::TooManyMolecules {
                species: self.mobile,
                limit: MAX_MOLECULES,
            });
        }
        Ok(())
    }

    /// Reaction r happened in subvolume v at t (its M reactant, if any,
    /// already gone): the immobile counts change, the clocks of the
    /// molecules in v and v's static clock are rescaled to the new rates
    /// (the static one only when `static_before`, its propensity before the
    /// event, is given by a fast event; a static event redraws its own), and
    /// new molecules start their clocks.
    fn apply(&mut self, t: f64, v: usize, r: usize, static_before: f64) {
        let s = self.s;
        for k in 0..self.effects[r].immobile.len() {
            let (sp, d) = self.effects[r].immobile[k];
            let c = &mut self.counts[v * s + sp as usize];
            *c = (*c as i64 + d) as u32;
        }
        let eff = &self.effects[r];
        // A reaction that takes an M is a fast (molecule) event.
        let (touches_fast, touches_static, made, fast_event) = (
            eff.touches_fast,
            eff.touches_static,
            eff.m_made,
            eff.m_taken,
        );
        if touches_fast {
            let old = self.rate(v);
            let new = self.molecule_rate(v);
            self.vox[v].inv_rate = 1.0 / new;
            if self.thinning {
                // Candidates read the new rate; only the bound must hold.
                self.bound = self.bound.max(new);
            } else if new != old {
                let mut k = self.vox[v].head;
                while k != NIL {
                    let id = k as usize;
                    let next = self.rescaled(t, self.mols.0[id].time, old, new);
                    self.queue.update(&mut self.mols, id, next);
                    k = self.mols.0[id].next;
                }
            }
        }
        if fast_event && touches_static {
            let a_new = self.static_propensity(v);
            if a_new != static_before {
                let next = self.rescaled(t, self.static_queue.time_of(v), static_before, a_new);
                self.static_queue.update(v, next);
            }
        }
        if self.thinning {
            self.live
                .extend(std::iter::repeat_n(v as u32, made as usize));
            self.reaction_events[r] += 1;
            return;
        }
        for _ in 0..made {
            let cap = self.mols.0.len();
            if cap < MAX_MOLECULES
                && (self.free.is_empty()
                    || (cap < ROOMY_CAPACITY && self.n_molecules() * SLOTS_PER_MOLECULE > cap))
            {
                self.grow();
            }
            let id = self.free.pop().expect("grown") as usize;
            self.link(id, v);
            let rate = self.rate(v);
            if rate > 0.0 {
                let next = first_time(t, self.rng.exp1(), rate);
                self.queue.update_finite(&mut self.mols, id, next);
            } else {
                self.queue.update_idle(&mut self.mols, id);
            }
        }
        self.reaction_events[r] += 1;
    }

    /// Double the molecule slots; the calendar is rebuilt over them (it
    /// keeps the exact order, so nothing else changes).
    fn grow(&mut self) {
        let cap = self.mols.0.len();
        let new_cap = (2 * cap).min(MAX_MOLECULES);
        self.mols.0.resize(new_cap, FREE_MOL);
        self.free.extend((cap as u32..new_cap as u32).rev());
        self.rebuild_queue();
    }

    /// A new calendar of every slot at the times the slots hold.
    fn rebuild_queue(&mut self) {
        let rate: f64 = self
            .mols
            .0
            .iter()
            .filter(|m| m.voxel != NIL)
            .map(|m| self.rate(m.voxel as usize))
            .sum();
        self.queue = CalendarQueue::build_with_rate(self.mols.0.len(), &mut self.mols, rate);
    }

    /// A pending time t_old of a clock whose rate goes from a_old to a_new at
    /// `now` (nsm::rescaled_finite); +inf for a rate of 0.
    fn rescaled(&mut self, now: f64, t_old: f64, a_old: f64, a_new: f64) -> f64 {
        if a_new <= 0.0 {
            f64::INFINITY
        } else {
            rescaled_finite(&mut self.rng, now, t_old, a_old, a_new)
        }
    }
}

impl Segmented for Molecules {
    fn now(&self) -> f64 {
        self.time
    }
    fn rate_schedule(&self) -> &RateSchedule {
        &self.schedule
    }
    fn run_segment(&mut self, t_end: f64, max_events: u64) -> Result<(Advance, u64), CoreError> {
        self.run_events(t_end, max_events)
    }
    fn apply_switch(&mut self, ts: f64) {
        Molecules::apply_switch(self, ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::cubic_lattice;
    use crate::problem::Reaction;
    use crate::Nsm;

    fn rx(reactants: Vec<u32>, products: Vec<u32>) -> Reaction {
        Reaction {
            reactants,
            products,
        }
    }

    /// A (moving), B and C (immobile) on a 6 x 5 x 4 lattice: A + B -> C,
    /// A + B -> A + C (A kept), A ->, C -> B + A (a static reaction that
    /// makes A), a source of A in rate class 1 only.
    fn mixed_problem() -> Problem {
        let graph = cubic_lattice([6, 5, 4], 0.5);
        let n = graph.n_subvolumes();
        let mut counts = vec![0u32; n * 3];
        for i in 0..n {
            counts[i * 3] = (i % 4) as u32;
            counts[i * 3 + 1] = 3 + (i % 3) as u32;
        }
        let rate_class: Vec<u32> = (0..n).map(|i| u32::from(i % 6 == 0)).collect();
        Problem {
            n_species: 3,
            graph,
            transport_coefficients: vec![0.4, 0.0, 0.0],
            reactions: vec![
                rx(vec![0, 1], vec![2]),
                rx(vec![0, 1], vec![0, 2]),
                rx(vec![0], vec![]),
                rx(vec![2], vec![1, 0]),
                rx(vec![], vec![0]),
            ],
            rate_class,
            rate_constants: vec![
                0.3, 0.1, 0.5, 0.8, 0.0, //
                0.3, 0.1, 0.5, 0.8, 6.0,
            ],
            initial_counts: counts,
            schedule: RateSchedule {
                times: vec![0.6],
                factors: vec![2.0, 1.0, 0.5, 1.0, 3.0],
            },
            layout: Vec::new(),
        }
    }

    /// Both ways of drawing the molecules' events; every test below runs each.
    const METHODS: [MoleculesMethod; 2] = [MoleculesMethod::Clocks, MoleculesMethod::Thinning];

    fn solver(p: &Problem, seed: u64, method: MoleculesMethod) -> Molecules {
        let m = Molecules::with_method(p, seed, 0, method).unwrap();
        assert_eq!(m.method(), method);
        m
    }

    fn run_molecules(p: &Problem, seed: u64, t: f64, method: MoleculesMethod) -> Molecules {
        let mut m = solver(p, seed, method);
        assert_eq!(m.advance(t, u64::MAX).unwrap(), Advance::Reached);
        m
    }

    /// Mean and standard error of the mean.
    fn mean_se(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, (var / n).sqrt())
    }

    /// The same Markov chain as the NSM: over 300 replicates each, the mean
    /// final totals, hops and firings of every reaction agree within 4.5
    /// standard errors of the difference (with a rate switch in the run).
    #[test]
    fn agrees_with_the_nsm_in_distribution() {
        for method in METHODS {
            agrees_with_the_nsm(&mixed_problem(), 1.2, method);
        }
    }

    /// As above where reactions outpace hops (D 100x smaller, several A per
    /// voxel): the rescaling of the clocks of the other molecules in a
    /// subvolume when a reaction changes their rate now matters (without it
    /// the A total is off by many standard errors).
    #[test]
    fn agrees_with_the_nsm_when_reactions_dominate() {
        let mut p = mixed_problem();
        p.transport_coefficients[0] = 0.004;
        for (i, c) in p.initial_counts.chunks_exact_mut(3).enumerate() {
            c[0] = 4 + (i % 3) as u32;
        }
        for method in METHODS {
            agrees_with_the_nsm(&p, 0.8, method);
        }
    }

    fn agrees_with_the_nsm(p: &Problem, t: f64, method: MoleculesMethod) {
        let reps = 300u64;
        let mut a: Vec<Vec<f64>> = vec![Vec::new(); 3 + 1 + 5];
        let mut b = a.clone();
        for seed in 0..reps {
            let m = run_molecules(p, seed, t, method);
            let mut nsm = Nsm::new(p, seed + 10_000, 0).unwrap();
            assert_eq!(nsm.advance(t, u64::MAX).unwrap(), Advance::Reached);
            let row_m: Vec<f64> = m
                .totals()
                .iter()
                .map(|&x| x as f64)
                .chain([m.diffusion_events()[0] as f64])
                .chain(m.reaction_events().iter().map(|&x| x as f64))
                .collect();
            let row_n: Vec<f64> = nsm
                .totals()
                .iter()
                .map(|&x| x as f64)
                .chain([nsm.diffusion_events()[0] as f64])
                .chain(nsm.reaction_events().iter().map(|&x| x as f64))
                .collect();
            for k in 0..row_m.len() {
                a[k].push(row_m[k]);
                b[k].push(row_n[k]);
            }
        }
        for k in 0..a.len() {
            let (ma, sa) = mean_se(&a[k]);
            let (mb, sb) = mean_se(&b[k]);
            let z = (ma - mb) / (sa * sa + sb * sb).sqrt().max(1e-12);
            assert!(
                z.abs() < 4.5,
                "{method:?}, quantity {k}: molecules {ma} vs nsm {mb}, z = {z}"
            );
        }
    }

    /// Pure decay switched on at t = 0.3 s: the survivors at 1 s are
    /// Binomial(N, exp(-k · 0.7)), whatever the hops do.
    #[test]
    fn decay_switched_on_follows_the_exponential_law() {
        let graph = cubic_lattice([5, 5, 5], 0.5);
        let n = graph.n_subvolumes();
        let counts: Vec<u32> = (0..n).map(|i| 8 * (i % 2) as u32).collect();
        let total: u32 = counts.iter().sum();
        let p = Problem {
            n_species: 1,
            graph,
            transport_coefficients: vec![0.3],
            reactions: vec![rx(vec![0], vec![])],
            rate_class: vec![0; n],
            rate_constants: vec![2.0],
            initial_counts: counts,
            schedule: RateSchedule {
                times: vec![0.0, 0.3],
                factors: vec![0.0, 1.0],
            },
            layout: Vec::new(),
        };
        let pr = (-2.0f64 * 0.7).exp();
        for method in METHODS {
            let mut left = Vec::new();
            for seed in 0..40 {
                let m = run_molecules(&p, seed, 1.0, method);
                let mid = {
                    let mut m2 = solver(&p, seed, method);
                    m2.advance(0.29, u64::MAX).unwrap();
                    m2.totals()[0]
                };
                assert_eq!(mid, total as u64, "no decay before the switch");
                left.push(m.totals()[0] as f64);
            }
            let (mean, _) = mean_se(&left);
            let expect = total as f64 * pr;
            let se = (total as f64 * pr * (1.0 - pr) / left.len() as f64).sqrt();
            assert!(
                ((mean - expect) / se).abs() < 4.0,
                "{method:?}: mean survivors {mean}, expected {expect} (se {se})"
            );
        }
    }

    /// A rate switch that speeds clocks up: 100 A in one voxel (D > 0, no
    /// edges), A -> at 2 /s tripled at 0.15 s. By 0.3 s the decays are
    /// Binomial(100, 1 - exp(-0.3 - 0.9)); 2,000 replicates, 4 se. (The
    /// calendar's cursor could be past the switch time when the switch
    /// filed earlier times: 69.07 instead of 69.88 before the rebuild.)
    #[test]
    fn switch_that_speeds_clocks_up_loses_no_event() {
        let p = Problem {
            n_species: 1,
            graph: crate::problem::SubvolumeGraph {
                volumes: vec![1.0],
                edge_offsets: vec![0, 0],
                edge_targets: vec![],
                edge_coupling: vec![],
                edge_class: vec![],
            },
            transport_coefficients: vec![1.0],
            reactions: vec![rx(vec![0], vec![])],
            rate_class: vec![0],
            rate_constants: vec![2.0],
            initial_counts: vec![100],
            schedule: RateSchedule {
                times: vec![0.15],
                factors: vec![3.0],
            },
            layout: Vec::new(),
        };
        for method in METHODS {
            let fired: Vec<f64> = (0..2000)
                .map(|seed| run_molecules(&p, seed, 0.3, method).reaction_events()[0] as f64)
                .collect();
            let (mean, se) = mean_se(&fired);
            let expect = 100.0 * (1.0 - (-1.2f64).exp());
            assert!(
                ((mean - expect) / se).abs() < 4.0,
                "{method:?}: mean decays {mean}, expected {expect} (se {se})"
            );
        }
    }

    /// Slicing a run by event budgets changes nothing, and the same seed
    /// gives bitwise the same run; another seed another one.
    #[test]
    fn budgets_and_seeds() {
        for method in METHODS {
            budgets_and_seeds_with(method);
        }
    }

    fn budgets_and_seeds_with(method: MoleculesMethod) {
        let p = mixed_problem();
        let whole = run_molecules(&p, 7, 1.5, method);
        let mut sliced = solver(&p, 7, method);
        let mut pauses = 0;
        while sliced.advance(1.5, 37).unwrap() == Advance::Paused {
            pauses += 1;
        }
        assert!(pauses > 10);
        assert_eq!(whole.counts(), sliced.counts());
        assert_eq!(whole.reaction_events(), sliced.reaction_events());
        assert_eq!(whole.diffusion_events(), sliced.diffusion_events());
        assert_eq!(whole.time(), 1.5);
        let other = run_molecules(&p, 8, 1.5, method);
        assert_ne!(whole.counts(), other.counts());
        // The totals are the counts' sums, and B + C is conserved.
        let c = whole.counts();
        for (sp, &t) in whole.totals().iter().enumerate() {
            assert_eq!(
                c.iter().skip(sp).step_by(3).map(|&x| x as u64).sum::<u64>(),
                t
            );
        }
        let bc0: u64 = p
            .initial_counts
            .iter()
            .skip(1)
            .step_by(3)
            .map(|&x| x as u64)
            .sum();
        assert_eq!(whole.totals()[1] + whole.totals()[2], bc0);
    }

    /// A stored layout moves data only: the laid-out problem runs bitwise as
    /// its renumbered twin, and hands counts back in the caller's order.
    #[test]
    fn layout_changes_storage_only() {
        let mut p = mixed_problem();
        p.schedule = RateSchedule::default();
        let n = p.n_subvolumes();
        p.layout = crate::problem::shuffled_layout(n, 99);
        let twin = p.in_layout_order();
        for method in METHODS {
            let a = run_molecules(&p, 3, 1.0, method);
            let b = run_molecules(&twin, 3, 1.0, method);
            let (ca, cb) = (a.counts(), b.counts());
            for (k, &i) in p.layout.iter().enumerate() {
                let i = i as usize;
                assert_eq!(ca[i * 3..i * 3 + 3], cb[k * 3..k * 3 + 3]);
            }
            assert_eq!(a.reaction_events(), b.reaction_events());
        }
    }

    /// Tens of thousands of births grow the molecule slots (and rebuild the
    /// calendar) without losing or reordering anything.
    #[test]
    fn slots_grow_without_loss() {
        let graph = cubic_lattice([4, 4, 4], 0.5);
        let n = graph.n_subvolumes();
        let p = Problem {
            n_species: 1,
            graph,
            transport_coefficients: vec![0.5],
            reactions: vec![rx(vec![], vec![0])],
            rate_class: vec![0; n],
            rate_constants: vec![2000.0],
            initial_counts: vec![0; n],
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        };
        for method in METHODS {
            let mut m = solver(&p, 1, method);
            m.advance(0.5, u64::MAX).unwrap();
            let births = m.reaction_events()[0];
            assert!(births > 60_000, "{births}");
            assert_eq!(m.totals()[0], births);
            assert_eq!(m.counts().iter().map(|&c| c as u64).sum::<u64>(), births);
            if method == MoleculesMethod::Clocks {
                assert!(m.mols.0.len() >= births as usize);
            }
            // Slicing across the growths gives the same run.
            let mut s = solver(&p, 1, method);
            while s.advance(0.5, 1001).unwrap() == Advance::Paused {}
            assert_eq!(s.counts(), m.counts());
            assert!(m.diffusion_events()[0] > 0);
        }
    }

    /// A partner made while the run goes: 200 A in one closed voxel (D > 0,
    /// no edges: no hops), B born at kb = 10 /s, A + B -> B at c = 0.5 /s.
    /// Given B's path each A survives to T = 1 s with exp(-c ∫B dt), so the
    /// mean survivors are 200 exp(-kb (T - (1 - e^(-cT)) / c)) = 23.7; 400
    /// replicates, 4 se. Thinning starts with B = 0 and a bound of 0: only
    /// raising the bound as B is born lets any A react.
    #[test]
    fn rates_that_rise_during_the_run() {
        let p = Problem {
            n_species: 2,
            graph: crate::problem::SubvolumeGraph {
                volumes: vec![1.0],
                edge_offsets: vec![0, 0],
                ..Default::default()
            },
            transport_coefficients: vec![1.0, 0.0],
            reactions: vec![rx(vec![], vec![1]), rx(vec![0, 1], vec![1])],
            rate_class: vec![0],
            rate_constants: vec![10.0, 0.5],
            initial_counts: vec![200, 0],
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        };
        let (kb, c, t) = (10.0f64, 0.5f64, 1.0f64);
        let expect = 200.0 * (-kb * (t - (1.0 - (-c * t).exp()) / c)).exp();
        for method in METHODS {
            let left: Vec<f64> = (0..400)
                .map(|seed| run_molecules(&p, seed, t, method).totals()[0] as f64)
                .collect();
            let (mean, se) = mean_se(&left);
            assert!(
                ((mean - expect) / se).abs() < 4.0,
                "{method:?}: mean survivors {mean}, expected {expect} (se {se})"
            );
        }
    }

    /// `Auto` thins where nearly every candidate counts (hops dominate on a
    /// lattice: only the walls lower the rate) and keeps clocks where the
    /// rates differ widely (a hot spot of the partner in one subvolume).
    #[test]
    fn auto_thins_only_when_most_candidates_count() {
        let p = mixed_problem();
        let m = Molecules::new(&p, 1, 0).unwrap();
        assert_eq!(m.method(), MoleculesMethod::Thinning);
        let mut hotspot = mixed_problem();
        hotspot.initial_counts[1] = 1000; // B in subvolume 0: A reacts 200x faster there
        let m = Molecules::new(&hotspot, 1, 0).unwrap();
        assert_eq!(m.method(), MoleculesMethod::Clocks);
        let mut run = Molecules::new(&p, 1, 0).unwrap();
        run.advance(1.0, u64::MAX).unwrap();
        let rejected = run.rejected_candidates() as f64;
        let accepted = run.total_events() as f64;
        assert!(
            rejected > 0.0 && rejected < 0.5 * accepted,
            "{rejected} vs {accepted}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_split() {
        let mut p = mixed_problem();
        p.transport_coefficients = vec![0.4, 0.1, 0.0];
        let err = Molecules::new(&p, 1, 0).unwrap_err().to_string();
        assert!(
            err.contains("exactly one species that moves, but 2"),
            "{err}"
        );
        p.transport_coefficients = vec![0.0, 0.0, 0.0];
        let err = Molecules::new(&p, 1, 0).unwrap_err().to_string();
        assert!(err.contains("but 0"), "{err}");
        let mut p = mixed_problem();
        p.reactions[2] = rx(vec![0, 0], vec![1]);
        let err = Molecules::new(&p, 1, 0).unwrap_err().to_string();
        assert!(err.contains("reactions[2]"), "{err}");
        let mut p = mixed_problem();
        p.rate_constants[0] = 1e300;
        let err = Molecules::new(&p, 1, 0).unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
    }

    /// A count that would pass u32::MAX is an error naming species and
    /// subvolume (in the caller's numbering), and the state stays as it was.
    #[test]
    fn count_overflow_is_refused_and_leaves_the_state() {
        let graph = cubic_lattice([3, 1, 1], 0.5);
        let p = Problem {
            n_species: 2,
            graph,
            transport_coefficients: vec![0.0001, 0.0],
            reactions: vec![rx(vec![0], vec![0, 1])],
            rate_class: vec![0; 3],
            rate_constants: vec![5.0],
            initial_counts: vec![0, 0, 1, u32::MAX, 0, 0],
            schedule: RateSchedule::default(),
            layout: vec![2, 0, 1],
        };
        for method in METHODS {
            let mut m = solver(&p, 1, method);
            let before = m.counts();
            let err = m.advance(100.0, u64::MAX).unwrap_err();
            assert_eq!(
                err,
                CoreError::CountOverflow {
                    species: 1,
                    subvolume: 1
                }
            );
            assert_eq!(m.counts(), before);
        }
    }
}
