//! The exact next-subvolume method (Elf & Ehrenberg 2004, IET Syst. Biol. 1:230).
//!
//! Each subvolume has one total propensity a_i = a_diff_i + a_react_i and one
//! tentative next-event time in a calendar queue. After an event only the
//! subvolumes it touched are updated: the one that fired draws a fresh
//! exponential; a diffusion destination keeps its random number and has its
//! time rescaled, t_j <- t + (t_j - t) a_j_old / a_j_new (Gibson & Bruck 2000),
//! which is exact and saves one exponential per diffusion event.
//!
//! Memory layout, chosen because the hot loop is bound by cache misses on
//! random subvolumes: subvolumes with the same neighbourhood (edge offsets,
//! transport classes, couplings / volume) and the same rate class share one
//! *site*; a subvolume is one record
//! `[time_lo, time_hi, site, queue location, n_0, ..., n_{S-1}, 1, padding]`
//! of u32, 32 bytes for up to 3 species and a multiple of 64 bytes beyond,
//! aligned so that a record never straddles a cache line. The queue keeps the
//! live next time and the bucket slot of each subvolume in its record (see
//! `calendar::Store`), so that touching a subvolume (its counts, its time for
//! the rescaling, its queue position) costs one cache line. Propensities are
//! recomputed from the counts (O(S + R_site)) rather than stored, so no
//! rounding drift accumulates over billions of events. A Cartesian lattice has
//! at most 27 x (number of rate classes) sites, all cache-resident.

use std::collections::HashMap;

use crate::calendar::{CalendarQueue, Store, IN_HEAP};
use crate::error::{invalid, CoreError};
use crate::problem::{Problem, RateSchedule, StorageMap};
use crate::queue::EventQueue;
use crate::rng::Stream;

/// A reaction as it applies at one rate class, in a branch-free form:
/// propensity = c * x[a] * (x[b] - dimer), where x is the subvolume record
/// (counts at `C0 + k`, a constant 1 at `C0 + S`). A source points a and b at the trailing 1;
/// a first-order reaction points b at it; `A + A` has a == b, dimer = 1 and
/// c halved, giving c/2 * n (n - 1) = c * (number of distinct pairs).
#[derive(Clone, Copy, Debug)]
struct Channel {
    c: f64,
    dimer: f64,
    a: u32,
    b: u32,
    reaction: u32,
}

impl Channel {
    #[inline(always)]
    fn propensity(&self, row: &[u32]) -> f64 {
        debug_assert!((self.a as usize) < row.len() && (self.b as usize) < row.len());
        // SAFETY: a and b are built in `Nsm::new` as C0 + species index or the
        // trailing-one position C0 + S, and every row has stride >= C0 + S + 1
        // entries (`stride_for`).
        let (xa, xb) = unsafe {
            (
                *row.get_unchecked(self.a as usize),
                *row.get_unchecked(self.b as usize),
            )
        };
        self.c * xa as f64 * (xb as f64 - self.dimer)
    }
}

/// What makes two subvolumes share a site: rate class and, per edge, (target
/// offset, transport class, bits of coupling / volume).
type SiteKey = (u32, Vec<(i64, u32, u64)>);

/// Neighbourhood + chemistry shared by many subvolumes.
#[derive(Clone, Debug)]
struct Site {
    edge_start: u32,
    edge_end: u32,
    /// Channels [channel_start, channel_mid) have a mobile reactant (the
    /// *fast* group, in the subvolume's record time); [channel_mid,
    /// channel_end) have only immobile reactants or none (the *static*
    /// group, in the static queue), see `Nsm`.
    channel_start: u32,
    channel_mid: u32,
    channel_end: u32,
    /// Record offsets (in cells: neighbour offset * stride) of the first six
    /// neighbours (0 past the last), prefetched when the site's subvolume is
    /// likely to fire next.
    prefetch: [i32; 6],
    /// Rate class: the site's gain terms for species s are
    /// `gains[gain_offsets[class * S + s]..gain_offsets[class * S + s + 1]]`.
    class: u32,
}

/// One term of the gain in reaction propensity when one molecule of a
/// species is added: `coef * x[idx]` on the counts before the addition
/// (x[C0 + S] is the constant 1). For a channel c * x[a] * (x[b] - dimer):
/// (c, b) when the species is a alone, (c, a) when it is b alone, (2c, a)
/// for A + A. Propensities are non-decreasing in every count, so every term
/// is >= 0 and old + gain has no cancellation.
#[derive(Clone, Copy, Debug)]
struct Gain {
    coef: f64,
    idx: u32,
    /// The reaction of the channel (its schedule factor scales `coef`).
    reaction: u32,
}

/// What a hop of the lone mobile species into a subvolume of a site needs
/// besides its record: the species' transport rate out of the site and the
/// range of its gain terms in `gains`. One 16-byte entry per site, so that on
/// a mesh (a site per tet) the arrival reads one line instead of the site,
/// the class's gain offsets and the rates, one after the other.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    rate: f64,
    gain_start: u32,
    gain_end: u32,
}

/// Everything a hop of the lone mobile species out of or into one subvolume
/// of a mesh reads, in one cache line, per stored subvolume (built when a
/// graph has too many sites to stay in cache, every site has at most four
/// edges and exactly one species moves).
///
/// `cum` holds the running sums of the species' edge rates in edge order,
/// the very sums the general scan forms, so `x < cum[k]` picks the same edge
/// bitwise; the last edge with a non-zero rate, and every slot after it,
/// holds +inf instead, so that an x rounded up to the total still picks that
/// edge (as the scan's fallback does) and the first k with `x < cum[k]` is
/// the number of slots with `x >= cum[k]`, four compares without a branch.
/// `rate` and the gain range are the subvolume's `Arrival`. Indexed by
/// subvolume, not site: the destination's line is known from i and the edge
/// alone, without waiting for the destination's record.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct HopLine {
    cum: [f64; 4],
    delta: [i32; 4],
    rate: f64,
    gain_start: u32,
    gain_end: u32,
}

impl HopLine {
    /// The offset of the edge a hop takes for x uniform on [0, rate).
    #[inline(always)]
    fn pick(&self, x: f64) -> i64 {
        // The first k with x < cum[k]: cum is non-decreasing and +inf from
        // the last moving edge on.
        let k = usize::from(x >= self.cum[0])
            + usize::from(x >= self.cum[1])
            + usize::from(x >= self.cum[2])
            + usize::from(x >= self.cum[3]);
        debug_assert!(k < 4);
        self.delta[k.min(3)] as i64
    }
}

/// Record layout (u32 positions): next time (f64 bits, low word first), site,
/// queue location, counts from C0, then the constant 1 at C0 + S.
const T_LO: usize = 0;
const T_HI: usize = 1;
const SITE: usize = 2;
const LOC: usize = 3;
const C0: usize = 4;

/// Record stride in u32 for S species: 8 (32 bytes) when it fits, else a
/// multiple of 16 (whole cache lines).
const fn stride_for(s: usize) -> usize {
    let need = C0 + s + 1;
    if need <= 8 {
        8
    } else {
        need.div_ceil(16) * 16
    }
}

#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// The per-subvolume records, in cache-line-aligned storage.
#[derive(Clone, Debug)]
struct Records {
    lines: Vec<Line>,
    stride: usize,
}

impl Records {
    fn new(n: usize, stride: usize) -> Self {
        let len = (n * stride).div_ceil(16);
        let mut lines: Vec<Line> = Vec::with_capacity(len);
        // Ask for huge pages before the first touch: the hot loop reads
        // records at random, and with 4 KiB pages a large lattice misses
        // the TLB on nearly every one.
        crate::memory::advise_huge_pages(lines.as_ptr().cast(), len * std::mem::size_of::<Line>());
        lines.resize(len, Line::default());
        Records { lines, stride }
    }

    #[inline(always)]
    fn cells(&self) -> &[u32] {
        // SAFETY: Line is repr(C) [u32; 16] (64 bytes, no padding), so the
        // buffer holds lines.len() * 16 initialised, properly aligned u32s.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<u32>(), self.lines.len() * 16)
        }
    }

    #[inline(always)]
    fn cells_mut(&mut self) -> &mut [u32] {
        // SAFETY: as in `cells`, and the borrow of self is exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr().cast::<u32>(),
                self.lines.len() * 16,
            )
        }
    }

    fn bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
    }
}

impl Records {
    /// The record stride: the constant of `stride_for(K)` when the caller is
    /// specialised for K species (the multiply by it folds), else dynamic.
    #[inline(always)]
    fn stride_k<const K: usize>(&self) -> usize {
        if K == 0 {
            self.stride
        } else {
            stride_for(K)
        }
    }

    /// The first cell of the record of subvolume `id`.
    #[inline(always)]
    fn row_ptr_k<const K: usize>(&self, id: usize) -> *const u32 {
        debug_assert!((id + 1) * self.stride <= self.lines.len() * 16);
        self.lines
            .as_ptr()
            .cast::<u32>()
            .wrapping_add(id * self.stride_k::<K>())
    }

    /// As `row_ptr_k`, for writing.
    #[inline(always)]
    fn row_mut_ptr_k<const K: usize>(&mut self, id: usize) -> *mut u32 {
        debug_assert!((id + 1) * self.stride <= self.lines.len() * 16);
        let st = self.stride_k::<K>();
        self.lines.as_mut_ptr().cast::<u32>().wrapping_add(id * st)
    }

    /// Cell `k` of the record of subvolume `id`, unchecked in release.
    #[inline(always)]
    fn at_k<const K: usize>(&self, id: usize, k: usize) -> u32 {
        debug_assert!(k < self.stride);
        // SAFETY: the queue only handles ids 0..n that the NSM gave it, and
        // the buffer holds n * stride cells (`Records::new`); k < stride.
        unsafe { *self.row_ptr_k::<K>(id).add(k) }
    }

    /// Write the time and location of subvolume `id` through one pointer
    /// (so the compiler merges the two halves of the time into one store).
    #[inline(always)]
    fn set_k<const K: usize>(&mut self, id: usize, time: f64, loc: u32) {
        let bits = time.to_bits();
        let p = self.row_mut_ptr_k::<K>(id);
        // SAFETY: as in `at_k` (T_LO, T_HI, LOC < stride); the borrow is
        // exclusive.
        unsafe {
            *p.add(T_LO) = bits as u32;
            *p.add(T_HI) = (bits >> 32) as u32;
            *p.add(LOC) = loc;
        }
    }

    #[inline(always)]
    fn put_k<const K: usize>(&mut self, id: usize, k: usize, v: u32) {
        debug_assert!(k < self.stride);
        // SAFETY: as in `at_k`; the borrow is exclusive.
        unsafe { *self.row_mut_ptr_k::<K>(id).add(k) = v }
    }

    #[inline(always)]
    fn time_k<const K: usize>(&self, id: usize) -> f64 {
        let p = self.row_ptr_k::<K>(id);
        // SAFETY: as in `at_k`.
        let (lo, hi) = unsafe { (*p.add(T_LO), *p.add(T_HI)) };
        f64::from_bits(u64::from(lo) | u64::from(hi) << 32)
    }
}

/// The calendar's view of the records, for K species (0: any). Ids are
/// always < n (the calendar only sees ids the NSM queued), which makes the
/// unchecked accesses sound.
struct View<'a, const K: usize>(&'a mut Records);

/// The records as the calendar's store outside the hot loop (any K).
impl Store for Records {
    fn time(&self, id: usize) -> f64 {
        self.time_k::<0>(id)
    }
    fn loc(&self, id: usize) -> u32 {
        self.at_k::<0>(id, LOC)
    }
    fn tag(&self, id: usize) -> u32 {
        self.at_k::<0>(id, SITE)
    }
    fn set_loc(&mut self, id: usize, loc: u32) {
        self.put_k::<0>(id, LOC, loc);
    }
    fn set(&mut self, id: usize, time: f64, loc: u32) {
        self.set_k::<0>(id, time, loc);
    }
}

impl<const K: usize> Store for View<'_, K> {
    #[inline(always)]
    fn time(&self, id: usize) -> f64 {
        self.0.time_k::<K>(id)
    }
    #[inline(always)]
    fn loc(&self, id: usize) -> u32 {
        self.0.at_k::<K>(id, LOC)
    }
    #[inline(always)]
    fn tag(&self, id: usize) -> u32 {
        self.0.at_k::<K>(id, SITE)
    }
    #[inline(always)]
    fn set_loc(&mut self, id: usize, loc: u32) {
        self.0.put_k::<K>(id, LOC, loc);
    }
    #[inline(always)]
    fn set(&mut self, id: usize, time: f64, loc: u32) {
        self.0.set_k::<K>(id, time, loc);
    }
}

#[derive(Clone, Copy, Debug)]
struct SiteEdge {
    /// target = subvolume + delta
    delta: i64,
}

#[derive(Clone, Debug)]
pub struct Nsm {
    n_subvolumes: usize,
    n_species: usize,
    stride: usize,
    /// One record per subvolume (layout above).
    rec: Records,
    sites: Vec<Site>,
    /// (n_sites, S): total transport rate per molecule out of the site.
    site_diff_rate: Vec<f64>,
    edges: Vec<SiteEdge>,
    /// (n_site_edges, S): transport rate per molecule along each site edge.
    edge_rates: Vec<f64>,
    /// (n_sites, S): 1 / w when every edge of the site carries species s at
    /// the same rate w > 0 (a lattice), so the edge is picked by one
    /// multiplication; 0 otherwise (picked by a cumulative scan).
    uniform_edge_inv: Vec<f64>,
    channels: Vec<Channel>,
    /// Per channel, its constant before the schedule factor (`channels[k].c`
    /// = `channel_base[k] * factors[reaction]`).
    channel_base: Vec<f64>,
    /// Rate switches in time, and the factor of each reaction in force now.
    schedule: RateSchedule,
    factors: Vec<f64>,
    /// Gain terms per (rate class, species), see `Gain`; `gain_base[k]` is
    /// the coefficient of `gains[k]` before the schedule factor.
    gains: Vec<Gain>,
    gain_base: Vec<f64>,
    gain_offsets: Vec<u32>,
    change_offsets: Vec<usize>,
    change_species: Vec<u32>,
    change_delta: Vec<i64>,
    /// Species that appear as a reactant somewhere.
    reactive: Vec<bool>,
    /// The only species that moves, when exactly one does (usize::MAX
    /// otherwise): the hot loop is then specialised (`M1`).
    lone_mobile: usize,
    /// Sites too many to stay in cache (e.g. one per tet of a mesh): the
    /// prefetch of the next subvolume then takes its site's data too.
    many_sites: bool,
    /// Per site, when exactly one species moves (empty otherwise).
    arrivals: Vec<Arrival>,
    /// Per stored subvolume on meshes with one mobile species (empty
    /// otherwise; see `HopLine`).
    hop_lines: Vec<HopLine>,
    queue: CalendarQueue,
    /// Next times of the static group of every subvolume (reactions with
    /// no mobile reactant), in their own indexed heap: a diffusion event
    /// never changes them, so the hot loop only reads the heap's minimum, and
    /// slow chemistry (decay of immobile species, sources) stays out of the
    /// calendar. (The calendar needs every insertion at or after its current
    /// bucket, which static times set during fast events do not respect.)
    static_queue: EventQueue,
    rng: Stream,
    time: f64,
    total_events: u64,
    diffusion_events: Vec<u64>,
    reaction_events: Vec<u64>,
    /// The caller's index of each stored subvolume (the problem's layout).
    external: StorageMap,
}

/// An exact solver that runs events between the switches of its rate
/// schedule and changes its constants at each switch (the NSM and the
/// molecules solver share `advance` this way).
pub(crate) trait Segmented {
    fn now(&self) -> f64;
    fn rate_schedule(&self) -> &RateSchedule;
    /// Fire every event with time <= t_end, at most `max_events`: (outcome,
    /// events fired); reaching t_end sets the time to it.
    fn run_segment(&mut self, t_end: f64, max_events: u64) -> Result<(Advance, u64), CoreError>;
    /// The schedule's constants of switch time ts take effect.
    fn apply_switch(&mut self, ts: f64);

    /// Run every event with time <= t_stop, at most `max_events` of them;
    /// switches in (time, t_stop] take effect exactly at their times. Errors
    /// name subvolumes by their stored position.
    fn advance_by_segments(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError> {
        if t_stop.is_nan() || t_stop < self.now() {
            return invalid(format!(
                "cannot advance to t = {t_stop}: the simulation is already at t = {}",
                self.now()
            ));
        }
        let mut budget = max_events;
        loop {
            let switch = self
                .rate_schedule()
                .next_switch_after(self.now())
                .filter(|&ts| ts <= t_stop);
            let segment_end = switch.unwrap_or(t_stop);
            let (outcome, fired) = self.run_segment(segment_end, budget)?;
            budget -= fired;
            if outcome == Advance::Paused {
                return Ok(Advance::Paused);
            }
            match switch {
                Some(ts) => self.apply_switch(ts),
                None => return Ok(Advance::Reached),
            }
            if segment_end == t_stop {
                return Ok(Advance::Reached);
            }
        }
    }
}

impl Segmented for Nsm {
    fn now(&self) -> f64 {
        self.time
    }
    fn rate_schedule(&self) -> &RateSchedule {
        &self.schedule
    }
    fn run_segment(&mut self, t_end: f64, max_events: u64) -> Result<(Advance, u64), CoreError> {
        Nsm::run_segment(self, t_end, max_events)
    }
    fn apply_switch(&mut self, ts: f64) {
        Nsm::apply_switch(self, ts)
    }
}

/// Outcome of `advance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Every event up to t_stop has been run; time == t_stop.
    Reached,
    /// The event budget ran out first; call again.
    Paused,
}

impl Nsm {
    pub fn new(problem: &Problem, seed: u64, replicate: u64) -> Result<Self, CoreError> {
        problem.validate()?;
        let (stored, external) = problem.stored();
        Self::build(&stored, external, seed, replicate)
    }

    /// The solver of a validated `problem` stored in its own order, whose
    /// position k is the caller's subvolume `external.caller(k)`.
    fn build(
        problem: &Problem,
        external: StorageMap,
        seed: u64,
        replicate: u64,
    ) -> Result<Self, CoreError> {
        let n = problem.n_subvolumes();
        let s = problem.n_species;
        let r = problem.n_reactions();
        let g = &problem.graph;

        // Compile reactions: kinds, net changes, channels per rate class.
        let mut kinds = Vec::with_capacity(r);
        let mut change_offsets = vec![0];
        let mut change_species = Vec::new();
        let mut change_delta = Vec::new();
        let mut reactive = vec![false; s];
        for rx in &problem.reactions {
            // Record positions: species k sits at C0 + k, the constant 1 at C0 + s.
            let c0 = C0 as u32;
            let one = c0 + s as u32;
            let (a, b, dimer) = match rx.reactants.as_slice() {
                [] => (one, one, false),
                [a] => (c0 + *a, one, false),
                [a, b] => (c0 + *a, c0 + *b, a == b),
                _ => return invalid("reaction of order above 2"),
            };
            kinds.push((a, b, dimer));
            for (sp, d) in rx.net_change() {
                change_species.push(sp);
                change_delta.push(d);
            }
            change_offsets.push(change_species.len());
        }
        // A species is mobile if some transport class moves it. A reaction
        // whose reactants are all immobile (or that has none) is *static*:
        // no diffusion event changes its propensity.
        let mobile = problem.mobile_species();
        let lone_mobile = match mobile.iter().filter(|&&m| m).count() {
            1 => mobile.iter().position(|&m| m).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        let is_static: Vec<bool> = problem
            .reactions
            .iter()
            .map(|rx| rx.reactants.iter().all(|&sp| !mobile[sp as usize]))
            .collect();
        for (rx, &st) in problem.reactions.iter().zip(&is_static) {
            if !st {
                for &sp in &rx.reactants {
                    reactive[sp as usize] = true;
                }
            }
        }
        // Rate classes renumbered in the order subvolumes first use them
        // (unused ones dropped), so that the per-class data (channels, gain
        // terms) of neighbouring subvolumes lies close together in memory
        // when every subvolume has a class of its own (a mesh: the constants
        // depend on the volume). The caller's numbering is arbitrary.
        let (class_id, class_order) = match problem.rate_constants.len().checked_div(r) {
            None => (vec![0; n], vec![0]),
            Some(n_given) => {
                let mut renumbered = vec![u32::MAX; n_given];
                let mut order = Vec::new();
                let ids: Vec<u32> = problem
                    .rate_class
                    .iter()
                    .map(|&c| {
                        let id = &mut renumbered[c as usize];
                        if *id == u32::MAX {
                            *id = order.len() as u32;
                            order.push(c);
                        }
                        *id
                    })
                    .collect();
                (ids, order)
            }
        };
        let n_rclasses = class_order.len();
        // Per rate class: its channels, fast ones first, and how many are fast.
        let mut class_channels: Vec<(Vec<Channel>, usize)> = vec![(Vec::new(), 0); n_rclasses];
        if r > 0 {
            for (&given, (chans, n_fast)) in class_order.iter().zip(class_channels.iter_mut()) {
                let c = given as usize;
                for want_static in [false, true] {
                    for (ri, &(a, b, dimer)) in kinds.iter().enumerate() {
                        let k = problem.rate_constants[c * r + ri];
                        if k > 0.0 && is_static[ri] == want_static {
                            chans.push(Channel {
                                c: if dimer { 0.5 * k } else { k },
                                dimer: if dimer { 1.0 } else { 0.0 },
                                a,
                                b,
                                reaction: ri as u32,
                            });
                        }
                    }
                    if !want_static {
                        *n_fast = chans.len();
                    }
                }
            }
        }

        // Deduplicate subvolumes into sites.
        let mut site_of_key: HashMap<SiteKey, u32> = HashMap::new();
        let mut sites = Vec::new();
        let mut edges: Vec<SiteEdge> = Vec::new();
        let mut edge_rates: Vec<f64> = Vec::new();
        let mut channels: Vec<Channel> = Vec::new();
        let mut site_diff_rate: Vec<f64> = Vec::new();
        let mut uniform_edge_inv: Vec<f64> = Vec::new();
        let stride = stride_for(s);
        let mut rec = Records::new(n, stride);
        let cells = rec.cells_mut();
        let mut class_channel_range: Vec<Option<(u32, u32, u32)>> = vec![None; n_rclasses];
        for i in 0..n {
            let inv_v = 1.0 / g.volumes[i];
            let key_edges: Vec<(i64, u32, u64)> = (g.edge_offsets[i]..g.edge_offsets[i + 1])
                .map(|e| {
                    (
                        g.edge_targets[e] as i64 - i as i64,
                        g.edge_class[e],
                        (g.edge_coupling[e] * inv_v).to_bits(),
                    )
                })
                .collect();
            let rc = class_id[i];
            let key = (rc, key_edges);
            let site = match site_of_key.get(&key) {
                Some(&site) => site,
                None => {
                    let site = sites.len() as u32;
                    let edge_start = edges.len() as u32;
                    let mut rates = vec![0.0; s];
                    for &(delta, class, wbits) in &key.1 {
                        let weight = f64::from_bits(wbits);
                        edges.push(SiteEdge { delta });
                        for (sp, rate) in rates.iter_mut().enumerate() {
                            let r =
                                problem.transport_coefficients[class as usize * s + sp] * weight;
                            edge_rates.push(r);
                            *rate += r;
                        }
                    }
                    for (sp, &rate) in rates.iter().enumerate() {
                        if !rate.is_finite() {
                            return invalid(format!(
                                "transport rate of species {sp} out of subvolume {} is not \
                                 finite (coefficient * coupling / volume overflows)",
                                external.caller(i)
                            ));
                        }
                    }
                    site_diff_rate.extend_from_slice(&rates);
                    let site_rates = &edge_rates[edge_start as usize * s..];
                    for sp in 0..s {
                        let mut w_all = site_rates.iter().skip(sp).step_by(s);
                        let w0 = w_all.next().copied().unwrap_or(0.0);
                        let uniform = w0 > 0.0 && w_all.all(|&w| w == w0);
                        uniform_edge_inv.push(if uniform { 1.0 / w0 } else { 0.0 });
                    }
                    let (cs, cm, ce) = *class_channel_range[rc as usize].get_or_insert_with(|| {
                        let start = channels.len() as u32;
                        let (chans, n_fast) = &class_channels[rc as usize];
                        channels.extend_from_slice(chans);
                        (start, start + *n_fast as u32, channels.len() as u32)
                    });
                    let mut prefetch = [0i32; 6];
                    for (p, e) in prefetch.iter_mut().zip(&edges[edge_start as usize..]) {
                        // Past i32 (over ~2^28 subvolumes apart) the record
                        // itself stands in: a prefetch is only a hint.
                        *p = i32::try_from(e.delta * stride as i64).unwrap_or(0);
                    }
                    sites.push(Site {
                        prefetch,
                        edge_start,
                        edge_end: edges.len() as u32,
                        channel_start: cs,
                        channel_mid: cm,
                        channel_end: ce,
                        class: rc,
                    });
                    if sites.len() > u32::MAX as usize {
                        return invalid("too many distinct subvolume neighbourhoods");
                    }
                    site_of_key.insert(key, site);
                    site
                }
            };
            let row = &mut cells[i * stride..(i + 1) * stride];
            let inf = f64::INFINITY.to_bits();
            row[T_LO] = inf as u32;
            row[T_HI] = (inf >> 32) as u32;
            row[SITE] = site;
            row[LOC] = IN_HEAP;
            row[C0..C0 + s].copy_from_slice(&problem.initial_counts[i * s..(i + 1) * s]);
            row[C0 + s] = 1;
        }

        // Gain terms per (rate class, species), for the species that move
        // (only a hop reads them; an immobile species' range stays empty,
        // which halves this array on a mesh, where every tet has a class).
        let mut gains = Vec::new();
        let mut gain_offsets = vec![0u32];
        for (chans, n_fast) in &class_channels {
            for (sp, &moves) in mobile.iter().enumerate() {
                let pos = (C0 + sp) as u32;
                // Only fast channels: an arriving molecule is mobile, and no
                // static channel has a mobile reactant.
                let fast = if moves { &chans[..*n_fast] } else { &[] };
                for ch in fast {
                    let term = match (ch.a == pos, ch.b == pos) {
                        (true, true) => Gain {
                            coef: 2.0 * ch.c,
                            idx: ch.a,
                            reaction: ch.reaction,
                        },
                        (true, false) => Gain {
                            coef: ch.c,
                            idx: ch.b,
                            reaction: ch.reaction,
                        },
                        (false, true) => Gain {
                            coef: ch.c,
                            idx: ch.a,
                            reaction: ch.reaction,
                        },
                        (false, false) => continue,
                    };
                    gains.push(term);
                }
                gain_offsets.push(gains.len() as u32);
            }
        }

        let many_sites = sites.len() > MANY_SITES;
        let arrivals = if lone_mobile < s {
            let m = lone_mobile;
            (0..sites.len())
                .map(|site| {
                    let k = sites[site].class as usize * s + m;
                    Arrival {
                        rate: site_diff_rate[site * s + m],
                        gain_start: gain_offsets[k],
                        gain_end: gain_offsets[k + 1],
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut nsm = Nsm {
            n_subvolumes: n,
            n_species: s,
            stride,
            rec,
            sites,
            site_diff_rate,
            edges,
            edge_rates,
            uniform_edge_inv,
            channel_base: channels.iter().map(|ch| ch.c).collect(),
            channels,
            schedule: problem.schedule.clone(),
            factors: vec![1.0; r],
            gain_base: gains.iter().map(|g| g.coef).collect(),
            gains,
            gain_offsets,
            change_offsets,
            change_species,
            change_delta,
            reactive,
            lone_mobile,
            many_sites,
            arrivals,
            hop_lines: Vec::new(),
            queue: CalendarQueue::build(0, &mut Records::new(0, stride)),
            static_queue: EventQueue::default(),
            rng: Stream::new(seed, replicate),
            time: 0.0,
            total_events: 0,
            diffusion_events: vec![0; s],
            reaction_events: vec![0; r],
            external,
        };
        nsm.hop_lines = nsm.build_hop_lines();
        let factors = nsm.schedule.factors_at(0.0, r);
        nsm.set_factors(&factors);
        let mut total_rate = 0.0;
        for i in 0..n {
            let (ad, ar) = nsm.propensities::<0, false>(i * stride);
            let a = ad + ar;
            total_rate += a;
            if !a.is_finite() {
                return invalid(format!(
                    "the total propensity of subvolume {} is not finite",
                    nsm.external_id(i)
                ));
            }
            if a > 0.0 {
                let t = first_time(0.0, nsm.rng.exp1(), a);
                nsm.rec.set(i, t, IN_HEAP);
            }
        }
        let mut static_times = vec![f64::INFINITY; n];
        for (i, t) in static_times.iter_mut().enumerate() {
            let a = nsm.static_propensity::<0>(i * stride);
            if !a.is_finite() {
                return invalid(format!(
                    "the total propensity of subvolume {} is not finite",
                    nsm.external_id(i)
                ));
            }
            if a > 0.0 {
                *t = first_time(0.0, nsm.rng.exp1(), a);
            }
        }
        // The bucket width follows from the total event rate.
        nsm.queue = CalendarQueue::build_with_rate(n, &mut nsm.rec, total_rate);
        nsm.static_queue = EventQueue::build(&static_times);
        Ok(nsm)
    }

    /// The hop lines of every stored subvolume (see `HopLine`), or none when
    /// the graph has few sites (they stay in cache anyway), more than one
    /// species moves, or a site has more than four edges.
    fn build_hop_lines(&self) -> Vec<HopLine> {
        let (s, m) = (self.n_species, self.lone_mobile);
        if m >= s || !self.many_sites {
            return Vec::new();
        }
        let fits = self
            .sites
            .iter()
            .all(|site| site.edge_end - site.edge_start <= 4)
            && self.edges.iter().all(|e| i32::try_from(e.delta).is_ok());
        if !fits {
            return Vec::new();
        }
        let cells = self.rec.cells();
        (0..self.n_subvolumes)
            .map(|i| {
                let site_id = cells[i * self.stride + SITE] as usize;
                let site = &self.sites[site_id];
                let arrival = self.arrivals[site_id];
                let mut line = HopLine {
                    cum: [f64::INFINITY; 4],
                    delta: [0; 4],
                    rate: arrival.rate,
                    gain_start: arrival.gain_start,
                    gain_end: arrival.gain_end,
                };
                let edges = site.edge_start as usize..site.edge_end as usize;
                let inv_w = self.uniform_edge_inv[site_id * s + m];
                if inv_w > 0.0 {
                    // The general path picks edge floor(x * inv_w) here (at
                    // most the last): edge k from the least x with
                    // x * inv_w >= k, found on the f64 grid, since the
                    // rounded product is monotone in x.
                    for (k, e) in edges.clone().enumerate() {
                        line.delta[k] = self.edges[e].delta as i32;
                        if k > 0 {
                            line.cum[k - 1] = least_reaching(k as f64, inv_w);
                        }
                    }
                    return line;
                }
                let mut acc = 0.0;
                let mut last_moving = None;
                for (k, e) in edges.enumerate() {
                    let w = self.edge_rates[e * s + m];
                    if w > 0.0 {
                        acc += w;
                        last_moving = Some(k);
                    }
                    line.cum[k] = acc;
                    line.delta[k] = self.edges[e].delta as i32;
                }
                let first_inf = last_moving.unwrap_or(0);
                line.cum[first_inf..].fill(f64::INFINITY);
                line
            })
            .collect()
    }

    /// The number of species: the constant K when the hot loop is
    /// specialised for it (loops unroll, bounds checks fold), else dynamic.
    #[inline(always)]
    fn ns<const K: usize>(&self) -> usize {
        if K == 0 {
            self.n_species
        } else {
            K
        }
    }

    /// The record stride, constant when specialised.
    #[inline(always)]
    fn st<const K: usize>(&self) -> usize {
        self.rec.stride_k::<K>()
    }

    /// The record starting at `base` (= subvolume * stride).
    #[inline(always)]
    fn row<const K: usize>(&self, base: usize) -> &[u32] {
        let st = self.st::<K>();
        let cells = self.rec.cells();
        debug_assert!(base + st <= cells.len());
        // SAFETY: base = i * stride for a subvolume i < n (from the queue, or
        // a neighbour through a validated edge), and cells holds n * stride.
        unsafe { cells.get_unchecked(base..base + st) }
    }

    /// (diffusion, reaction) propensity of the subvolume whose record starts
    /// at `base`, from its counts.
    #[inline(always)]
    fn propensities<const K: usize, const M1: bool>(&self, base: usize) -> (f64, f64) {
        (
            self.diffusion_propensity::<K, M1>(base),
            self.reaction_propensity::<K>(base),
        )
    }

    /// Per-molecule transport rate out of a subvolume of site `site_id`,
    /// per species.
    #[inline(always)]
    fn site_rates<const K: usize>(&self, site_id: usize) -> &[f64] {
        let s = self.ns::<K>();
        debug_assert!((site_id + 1) * s <= self.site_diff_rate.len());
        // SAFETY: site ids in records are < sites.len() (set in `new`), and
        // site_diff_rate holds S rates per site.
        unsafe {
            self.site_diff_rate
                .get_unchecked(site_id * s..(site_id + 1) * s)
        }
    }

    /// Gain in reaction propensity of the subvolume at `base` if one
    /// molecule of `species` were added (see `Gain`).
    #[inline(always)]
    fn reaction_gain<const K: usize>(&self, base: usize, species: usize) -> f64 {
        let row = self.row::<K>(base);
        let s = self.ns::<K>();
        // SAFETY: site ids in records are < sites.len(); gain_offsets has
        // n_classes * S + 1 entries bounding ranges of `gains`, and every idx
        // is < C0 + S + 1 <= stride (built in `new`).
        unsafe {
            let class = self.sites.get_unchecked(row[SITE] as usize).class as usize;
            let k = class * s + species;
            debug_assert!(k + 1 < self.gain_offsets.len());
            let start = *self.gain_offsets.get_unchecked(k) as usize;
            let end = *self.gain_offsets.get_unchecked(k + 1) as usize;
            let mut g = 0.0;
            for t in self.gains.get_unchecked(start..end) {
                debug_assert!((t.idx as usize) < row.len());
                g += t.coef * *row.get_unchecked(t.idx as usize) as f64;
            }
            g
        }
    }

    /// The fast reaction channels of site `site_id` (with a mobile reactant).
    #[inline(always)]
    fn site_channels(&self, site_id: usize) -> &[Channel] {
        debug_assert!(site_id < self.sites.len());
        // SAFETY: site ids in records are < sites.len(), and every site's
        // channel ranges lie inside `channels` (built together in `new`).
        unsafe {
            let site = self.sites.get_unchecked(site_id);
            debug_assert!(site.channel_mid <= site.channel_end);
            debug_assert!(site.channel_end as usize <= self.channels.len());
            self.channels
                .get_unchecked(site.channel_start as usize..site.channel_mid as usize)
        }
    }

    /// The static reaction channels of site `site_id` (no mobile reactant).
    #[inline(always)]
    fn site_static_channels(&self, site_id: usize) -> &[Channel] {
        let site = &self.sites[site_id];
        &self.channels[site.channel_mid as usize..site.channel_end as usize]
    }

    /// Propensity of the static group of the subvolume at `base`.
    #[inline(always)]
    fn static_propensity<const K: usize>(&self, base: usize) -> f64 {
        let row = self.row::<K>(base);
        total_propensity(self.site_static_channels(row[SITE] as usize), row)
    }

    #[inline(always)]
    fn diffusion_propensity<const K: usize, const M1: bool>(&self, base: usize) -> f64 {
        let s = self.ns::<K>();
        let row = self.row::<K>(base);
        let rates = self.site_rates::<K>(row[SITE] as usize);
        if M1 {
            // The other species' rates are exactly 0, so this is bitwise the
            // sum below.
            let m = self.lone_mobile;
            debug_assert!(m < s);
            // SAFETY: M1 runs only when lone_mobile < S (`run_segment`); rows
            // and rates hold S counts / rates.
            return unsafe { *row.get_unchecked(C0 + m) as f64 * *rates.get_unchecked(m) };
        }
        let mut ad = 0.0;
        for (&c, &d) in row[C0..C0 + s].iter().zip(rates) {
            ad += c as f64 * d;
        }
        ad
    }

    /// Propensity of the fast reactions of the subvolume at `base`.
    #[inline(always)]
    fn reaction_propensity<const K: usize>(&self, base: usize) -> f64 {
        let row = self.row::<K>(base);
        total_propensity(self.site_channels(row[SITE] as usize), row)
    }

    pub fn time(&self) -> f64 {
        self.time
    }
    pub fn n_subvolumes(&self) -> usize {
        self.n_subvolumes
    }
    pub fn n_species(&self) -> usize {
        self.n_species
    }
    pub fn n_reactions(&self) -> usize {
        self.reaction_events.len()
    }
    pub fn n_sites(&self) -> usize {
        self.sites.len()
    }
    /// Empty calendar buckets walked over so far (a diagnostic of the
    /// queue's tuning: about one per event or less is healthy).
    pub fn empty_buckets_walked(&self) -> u64 {
        self.queue.empty_steps()
    }
    pub fn total_events(&self) -> u64 {
        self.total_events
    }
    pub fn diffusion_events(&self) -> &[u64] {
        &self.diffusion_events
    }
    pub fn reaction_events(&self) -> &[u64] {
        &self.reaction_events
    }

    /// Counts as an (N, S) row-major array.
    pub fn counts(&self) -> Vec<u32> {
        let mut out = vec![0; self.n_subvolumes * self.n_species];
        self.counts_into(&mut out);
        out
    }

    /// Write the (N, S) counts into `out` (length N * S), in the caller's
    /// order of subvolumes whatever the layout.
    pub fn counts_into(&self, out: &mut [u32]) {
        let s = self.n_species;
        let rows = self.rec.cells().chunks_exact(self.stride);
        for (k, row) in rows.take(self.n_subvolumes).enumerate() {
            let i = self.external.caller(k);
            out[i * s..(i + 1) * s].copy_from_slice(&row[C0..C0 + s]);
        }
    }

    /// The caller's index of the subvolume stored at position i.
    pub(crate) fn external_id(&self, i: usize) -> usize {
        self.external.caller(i)
    }

    pub fn totals(&self) -> Vec<u64> {
        let s = self.n_species;
        let mut t = vec![0u64; s];
        for row in self
            .rec
            .cells()
            .chunks_exact(self.stride)
            .take(self.n_subvolumes)
        {
            for (acc, &c) in t.iter_mut().zip(&row[C0..C0 + s]) {
                *acc += c as u64;
            }
        }
        t
    }

    /// Memory held by the solver state, in bytes per subvolume.
    pub fn bytes_per_subvolume(&self) -> f64 {
        use std::mem::size_of;
        let shared = self.sites.capacity() * size_of::<Site>()
            + self.site_diff_rate.capacity() * size_of::<f64>()
            + self.edges.capacity() * size_of::<SiteEdge>()
            + self.edge_rates.capacity() * size_of::<f64>()
            + self.uniform_edge_inv.capacity() * size_of::<f64>()
            + self.channels.capacity() * size_of::<Channel>()
            + self.arrivals.capacity() * size_of::<Arrival>()
            + self.hop_lines.capacity() * size_of::<HopLine>();
        let per = self.rec.bytes()
            + self.queue.bytes()
            + self.n_subvolumes * EventQueue::bytes_per_entry();
        (shared + per) as f64 / self.n_subvolumes as f64
    }

    /// Run every event with time <= t_stop, at most `max_events` of them.
    /// Rate switches of the schedule that fall in (time, t_stop] take effect
    /// exactly at their times.
    pub fn advance(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError> {
        self.advance_by_segments(t_stop, max_events)
            .map_err(|err| self.external.caller_error(err))
    }

    /// The factor of each reaction in force now (1 without a schedule).
    pub fn rate_factors(&self) -> &[f64] {
        &self.factors
    }

    fn set_factors(&mut self, factors: &[f64]) {
        for (ch, &base) in self.channels.iter_mut().zip(&self.channel_base) {
            ch.c = base * factors[ch.reaction as usize];
        }
        for (g, &base) in self.gains.iter_mut().zip(&self.gain_base) {
            g.coef = base * factors[g.reaction as usize];
        }
        self.factors.copy_from_slice(factors);
    }

    /// Switch the rate constants at time ts (every event up to ts has run).
    /// A subvolume whose propensity changes from a_old to a_new keeps its
    /// random number: t <- ts + (t - ts) a_old / a_new (Gibson & Bruck 2000),
    /// exact by memorylessness, and costs no draw; one that had none draws.
    fn apply_switch(&mut self, ts: f64) {
        let r = self.reaction_events.len();
        let factors = self.schedule.factors_at(ts, r);
        if factors == self.factors {
            return;
        }
        let n = self.n_subvolumes;
        let stride = self.stride;
        let old: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let (ad, ar) = self.propensities::<0, false>(i * stride);
                (ad + ar, self.static_propensity::<0>(i * stride))
            })
            .collect();
        self.set_factors(&factors);
        let mut total_rate = 0.0;
        let mut static_times: Vec<f64> = (0..n).map(|i| self.static_queue.time_of(i)).collect();
        for (i, &(a_old, s_old)) in old.iter().enumerate() {
            let (ad, ar) = self.propensities::<0, false>(i * stride);
            let a_new = ad + ar;
            total_rate += a_new;
            if a_new != a_old {
                let next = self.rescaled_time(ts, self.rec.time(i), a_old, a_new);
                self.rec.set(i, next, IN_HEAP);
            }
            let s_new = self.static_propensity::<0>(i * stride);
            if s_new != s_old {
                static_times[i] = self.rescaled_time(ts, static_times[i], s_old, s_new);
            }
        }
        self.queue = CalendarQueue::build_with_rate(n, &mut self.rec, total_rate);
        self.static_queue = EventQueue::build(&static_times);
    }

    /// `advance` within one schedule segment: (outcome, events fired).
    fn run_segment(&mut self, t_stop: f64, max_events: u64) -> Result<(Advance, u64), CoreError> {
        // Specialised on the species count, and on whether exactly one
        // species moves (then the diffusion terms are one product, and a
        // subvolume left without that species has no fast propensity).
        macro_rules! dispatch {
            ($m1:literal) => {
                match self.n_species {
                    1 => self.run_events::<1, $m1>(t_stop, max_events),
                    2 => self.run_events::<2, $m1>(t_stop, max_events),
                    3 => self.run_events::<3, $m1>(t_stop, max_events),
                    4 => self.run_events::<4, $m1>(t_stop, max_events),
                    5 => self.run_events::<5, $m1>(t_stop, max_events),
                    6 => self.run_events::<6, $m1>(t_stop, max_events),
                    7 => self.run_events::<7, $m1>(t_stop, max_events),
                    8 => self.run_events::<8, $m1>(t_stop, max_events),
                    _ => self.run_events::<0, $m1>(t_stop, max_events),
                }
            };
        }
        if self.lone_mobile < self.n_species {
            dispatch!(true)
        } else {
            dispatch!(false)
        }
    }

    fn run_events<const K: usize, const M1: bool>(
        &mut self,
        t_stop: f64,
        max_events: u64,
    ) -> Result<(Advance, u64), CoreError> {
        let mut fired = 0u64;
        // The subvolume whose neighbours the last hint prefetched.
        let mut prefetched = u32::MAX;
        // Events stop after this time; +inf never fires (a finite bound
        // makes `t > bound` cover it, one compare less per event).
        let bound = t_stop.min(f64::MAX);
        // The static group's earliest event, re-read only after the events
        // that can change that group (a hop leaves it as it was).
        let mut static_top = self.static_queue.peek();
        loop {
            let (ts, is) = static_top;
            // The calendar stays at or before ts, so that a static event
            // may file fast times from ts on (see `peek_before`).
            let (t, i) = self.queue.peek_before(&mut View::<K>(&mut self.rec), ts);
            // On a tie the fast group goes first (a fixed rule: deterministic).
            let static_first = ts < t;
            let t = if static_first { ts } else { t };
            if t > bound {
                self.time = t_stop;
                return Ok((Advance::Reached, fired));
            }
            if fired == max_events {
                return Ok((Advance::Paused, fired));
            }
            self.time = t;
            if static_first {
                self.fire_static::<K, M1>(t, is)?;
                static_top = self.static_queue.peek();
            } else {
                if prefetched != i as u32 {
                    // The hint missed: start loading the neighbours (one of
                    // which this event touches) now, a hundred instructions
                    // before the destination is read.
                    self.prefetch_neighbours::<K>(i, self.rec.at_k::<K>(i, SITE) as usize);
                }
                prefetched = self.prefetch_hint::<K>();
                if self.fire::<K, M1>(t, i)? == Fired::Reaction {
                    static_top = self.static_queue.peek();
                }
                self.queue.note_event(&mut View::<K>(&mut self.rec), t);
            }
            fired += 1;
        }
    }

    /// Start loading the record of the subvolume likely to fire next, and the
    /// records of its neighbours (one of which it will touch), so that those
    /// cache misses overlap with this event instead of stalling the next one.
    /// Returns the subvolume whose neighbours were prefetched.
    #[inline(always)]
    fn prefetch_hint<const K: usize>(&self) -> u32 {
        let (h, site) = self.queue.hint();
        if (h as usize) < self.n_subvolumes {
            self.prefetch_neighbours::<K>(h as usize, site as usize);
        }
        h
    }

    /// Prefetch the record of subvolume h (of site `site`) and its neighbours'.
    #[inline(always)]
    fn prefetch_neighbours<const K: usize>(&self, h: usize, site_id: usize) {
        let Some(site) = self.sites.get(site_id) else {
            return;
        };
        let row = self.rec.row_ptr_k::<K>(h);
        prefetch(row);
        // A fixed six (a lattice neighbourhood; padded with 0, the record
        // itself): the loop unrolls, with no trip count to load.
        for &d in &site.prefetch {
            prefetch(row.wrapping_offset(d as isize));
        }
        if self.many_sites {
            // The site's own rates, channels and edges, which its next event
            // reads (a few lines each; out of cache when every subvolume has
            // a site of its own). Channels belong to a rate class, but on a
            // mesh every tet's volume makes a class of its own: prefetching
            // them measured faster on B3 than leaving them out (5 of 5 pairs).
            let s = self.ns::<K>();
            let (e, c) = (site.edge_start as usize, site.channel_start as usize);
            let rates = self.site_diff_rate.as_ptr().wrapping_add(site_id * s);
            let chans = self.channels.as_ptr().wrapping_add(c);
            for p in [
                rates.cast::<u32>(),
                chans.cast(),
                chans.wrapping_add(2).cast(),
            ] {
                prefetch(p);
            }
            if !self.hop_lines.is_empty() {
                // h's hop line, and its neighbours' (one of which the hop
                // enters): the edge choice and the arrival read nothing else
                // of the graph.
                let line = self.hop_lines.as_ptr().wrapping_add(h);
                prefetch(line);
                let st = self.st::<K>() as isize;
                for &d in &site.prefetch[..4] {
                    prefetch(line.wrapping_offset(d as isize / st));
                }
            } else {
                let edges = self.edges.as_ptr().wrapping_add(e);
                let edge_rates = self.edge_rates.as_ptr().wrapping_add(e * s);
                for p in [
                    edges.cast::<u32>(),
                    edge_rates.cast(),
                    edge_rates.wrapping_add(8).cast(),
                ] {
                    prefetch(p);
                }
            }
            if !self.arrivals.is_empty() {
                // The arrival entries and gain terms that a hop out of h
                // reads for its destination: sites and classes are numbered
                // in storage order, so along a mesh's Morton order the
                // neighbours' lie a few entries either side of h's (B3:
                // 1.30x and 1.35x median over 10 and 8 interleaved pairs).
                let g = self.gains.as_ptr().wrapping_add(
                    self.arrivals
                        .get(site_id)
                        .map_or(0, |x| x.gain_start as usize),
                );
                for p in [g.wrapping_sub(4), g, g.wrapping_add(4)] {
                    prefetch(p);
                }
                if self.hop_lines.is_empty() {
                    // (With hop lines a hop reads its destination's arrival
                    // from the line prefetched above, not from here.)
                    let a = self.arrivals.as_ptr().wrapping_add(site_id);
                    for p in [a.wrapping_sub(4), a, a.wrapping_add(4)] {
                        prefetch(p);
                    }
                }
            }
        }
    }

    /// Fire subvolume i's fast group at time t; says whether a reaction ran
    /// (which may have changed the static group) or a hop (which cannot).
    #[inline(always)]
    fn fire<const K: usize, const M1: bool>(
        &mut self,
        t: f64,
        i: usize,
    ) -> Result<Fired, CoreError> {
        let base = i * self.st::<K>();
        let (ad, ar) = self.propensities::<K, M1>(base);
        let u = self.rng.uniform() * (ar + ad);
        // A reaction when u < ar (then ar > 0), or when only reactions can
        // fire (u may round up to ar); tested in the order that puts the
        // common diffusion after two well-predicted compares.
        if u < ar {
            self.fire_reaction::<K, M1>(t, i, u)?;
            Ok(Fired::Reaction)
        } else if ad > 0.0 || ar <= 0.0 {
            self.fire_diffusion::<K, M1>(t, i, ad, ar, (u - ar).max(0.0))?;
            Ok(Fired::Hop)
        } else {
            self.fire_reaction::<K, M1>(t, i, ar)?;
            Ok(Fired::Reaction)
        }
    }

    /// Next time of a subvolume whose propensity changed from `a_old` to
    /// `a_new` at time `now`, its pending time being `t_old`: the same random
    /// number rescaled, `now + (t_old - now) a_old / a_new` (Gibson & Bruck
    /// 2000, exact by memorylessness), or a fresh draw when it had none.
    #[inline(always)]
    fn rescaled_time(&mut self, now: f64, t_old: f64, a_old: f64, a_new: f64) -> f64 {
        if a_new <= 0.0 {
            f64::INFINITY
        } else {
            self.rescaled_finite(now, t_old, a_old, a_new)
        }
    }

    /// `rescaled_time` for `a_new > 0`: always finite.
    #[inline(always)]
    fn rescaled_finite(&mut self, now: f64, t_old: f64, a_old: f64, a_new: f64) -> f64 {
        rescaled_finite(&mut self.rng, now, t_old, a_old, a_new)
    }

    /// Draw a fresh next time for i from its current propensity.
    #[inline(always)]
    fn reschedule<const K: usize, const M1: bool>(&mut self, i: usize, t: f64) {
        let (ad, ar) = self.propensities::<K, M1>(i * self.st::<K>());
        let a = ad + ar;
        let next = if a > 0.0 {
            first_time(t, self.rng.exp1(), a)
        } else {
            f64::INFINITY
        };
        self.queue.update(&mut View::<K>(&mut self.rec), i, next);
    }

    /// A fast-group reaction in subvolume i, chosen by u (uniform on [0,
    /// fast reaction propensity)).
    fn fire_reaction<const K: usize, const M1: bool>(
        &mut self,
        t: f64,
        i: usize,
        u: f64,
    ) -> Result<(), CoreError> {
        let base = i * self.st::<K>();
        let chosen = choose_channel(
            self.site_channels(self.row::<K>(base)[SITE] as usize),
            self.row::<K>(base),
            u,
        );
        let Some(chosen) = chosen else {
            self.reschedule::<K, M1>(i, t);
            return Ok(());
        };
        let a_static_old = self.static_propensity::<K>(base);
        self.apply_reaction::<K>(i, chosen)?;
        self.reschedule::<K, M1>(i, t);
        // The static group keeps its random number (rescaled) if it changed.
        let a_static = self.static_propensity::<K>(base);
        if a_static != a_static_old {
            let next = self.rescaled_time(t, self.static_queue.time_of(i), a_static_old, a_static);
            self.static_queue.update(i, next);
        }
        Ok(())
    }

    /// A static-group reaction in subvolume i (the static heap's minimum).
    #[cold]
    #[inline(never)]
    fn fire_static<const K: usize, const M1: bool>(
        &mut self,
        t: f64,
        i: usize,
    ) -> Result<(), CoreError> {
        let base = i * self.st::<K>();
        let a_static = self.static_propensity::<K>(base);
        let u = self.rng.uniform() * a_static;
        let row = self.row::<K>(base);
        let chosen = choose_channel(self.site_static_channels(row[SITE] as usize), row, u);
        if let Some(chosen) = chosen {
            let (ad, ar) = self.propensities::<K, M1>(base);
            let a_fast_old = ad + ar;
            self.apply_reaction::<K>(i, chosen)?;
            // The fast group keeps its random number (rescaled) if it changed.
            let (ad, ar) = self.propensities::<K, M1>(base);
            let a_fast = ad + ar;
            if a_fast != a_fast_old {
                let next = self.rescaled_time(t, self.rec.time_k::<K>(i), a_fast_old, a_fast);
                self.queue.update(&mut View::<K>(&mut self.rec), i, next);
            }
        }
        // The static group fired: a fresh draw.
        let a_static = self.static_propensity::<K>(base);
        let next = if a_static > 0.0 {
            first_time(t, self.rng.exp1(), a_static)
        } else {
            f64::INFINITY
        };
        self.static_queue.update(i, next);
        Ok(())
    }

    /// Apply the net change of reaction `chosen` in subvolume i and count it.
    #[inline(always)]
    fn apply_reaction<const K: usize>(&mut self, i: usize, chosen: usize) -> Result<(), CoreError> {
        let base = i * self.st::<K>();
        let row = self.row::<K>(base);
        let changes = self.change_offsets[chosen]..self.change_offsets[chosen + 1];
        for k in changes.clone() {
            let sp = self.change_species[k] as usize;
            let new = row[C0 + sp] as i64 + self.change_delta[k];
            if new > u32::MAX as i64 || new < 0 {
                return Err(CoreError::CountOverflow {
                    species: sp,
                    subvolume: i,
                });
            }
        }
        let cells = self.rec.cells_mut();
        for k in changes {
            let cell = &mut cells[base + C0 + self.change_species[k] as usize];
            *cell = (*cell as i64 + self.change_delta[k]) as u32;
        }
        self.reaction_events[chosen] += 1;
        self.total_events += 1;
        Ok(())
    }

    /// The offset of the edge along which a molecule of `species` leaves a
    /// subvolume of site `site_id`, for x uniform on [0, its hop rate).
    #[inline(always)]
    fn pick_edge<const K: usize>(&self, site_id: usize, species: usize, x: f64) -> i64 {
        let s = self.ns::<K>();
        debug_assert!(site_id < self.sites.len());
        // SAFETY: site ids in records are < sites.len(), and the per-(site,
        // species) arrays hold sites.len() * S entries (built in `new`).
        let (site, inv_w) = unsafe {
            (
                self.sites.get_unchecked(site_id),
                *self.uniform_edge_inv.get_unchecked(site_id * s + species),
            )
        };
        let edges = site.edge_start as usize..site.edge_end as usize;
        if inv_w > 0.0 {
            // x is uniform on [0, n_edges * w): edge floor(x / w).
            let y = x * inv_w;
            debug_assert!((0.0..=edges.len() as f64).contains(&y));
            // SAFETY: x and inv_w are finite and >= 0 and y <= n_edges (up to
            // rounding), far inside i64: one instruction, exact like `as`.
            let k = (unsafe { y.to_int_unchecked::<i64>() } as usize).min(edges.len() - 1);
            debug_assert!(edges.start + k < self.edges.len());
            // SAFETY: k < the site's edge count, and its edges lie in `edges`.
            unsafe { self.edges.get_unchecked(edges.start + k).delta }
        } else {
            let mut acc = 0.0;
            let mut delta = 0i64;
            for (edge, rates) in self.edges[edges.clone()]
                .iter()
                .zip(self.edge_rates[edges.start * s..edges.end * s].chunks_exact(s))
            {
                let w = rates[species];
                if w > 0.0 {
                    acc += w;
                    delta = edge.delta;
                    if x < acc {
                        break;
                    }
                }
            }
            delta
        }
    }

    fn fire_diffusion<const K: usize, const M1: bool>(
        &mut self,
        t: f64,
        i: usize,
        ad: f64,
        ar: f64,
        u: f64,
    ) -> Result<(), CoreError> {
        let s = self.ns::<K>();
        let st = self.st::<K>();
        let base = i * st;
        let row = self.row::<K>(base);
        let site_id = row[SITE] as usize;
        let counts = &row[C0..C0 + s];
        let rates = self.site_rates::<K>(site_id);
        let mut species = usize::MAX;
        let mut rem = 0.0;
        if M1 {
            // The one species with a non-zero rate (as the loop below finds).
            let m = self.lone_mobile.min(s - 1);
            // Bitwise counts[m] * rates[m] (`diffusion_propensity`).
            let w = ad;
            if w > 0.0 {
                species = m;
                rem = u.clamp(0.0, w);
            }
        } else {
            let mut acc = 0.0;
            for sp in 0..s {
                let w = counts[sp] as f64 * rates[sp];
                if w > 0.0 {
                    species = sp;
                    rem = (u - acc).clamp(0.0, w);
                    acc += w;
                    if u < acc {
                        break;
                    }
                }
            }
        }
        if species == usize::MAX || ad <= 0.0 {
            self.reschedule::<K, M1>(i, t);
            return Ok(());
        }
        // A no-op (species < s here) that tells the compiler so: the checks
        // on rows and per-species arrays below fold away.
        let species = species.min(s - 1);
        // rem is uniform on [0, n_s d_s): reuse it to choose the edge.
        let x = rem / counts[species] as f64;
        let delta = if M1 && !self.hop_lines.is_empty() {
            debug_assert!(i < self.hop_lines.len());
            // SAFETY: hop lines are built for every stored subvolume.
            unsafe { self.hop_lines.get_unchecked(i) }.pick(x)
        } else {
            self.pick_edge::<K>(site_id, species, x)
        };
        let j = (i as i64 + delta) as usize;
        let jbase = j * st;
        let rowj = self.row::<K>(jbase);
        if rowj[C0 + species] == u32::MAX {
            return Err(CoreError::CountOverflow {
                species,
                subvolume: j,
            });
        }
        let t_j = self.rec.time_k::<K>(j);
        let sj = rowj[SITE] as usize;
        // SAFETY: species < S == reactive.len().
        let reactive = unsafe { *self.reactive.get_unchecked(species) };
        // An idle destination (time +inf) has propensity exactly 0 (see
        // `first_time`): no pass over its channels. Most B1 hops land in one.
        let a_j_old = if t_j == f64::INFINITY {
            0.0
        } else {
            let (adj, arj) = self.propensities::<K, M1>(jbase);
            adj + arj
        };
        // j's propensity after the arrival: old + transport rate + gain
        // (all terms >= 0: no cancellation). Not stored, so no drift.
        let (rate_j, gain) = if M1 {
            debug_assert!(sj < self.arrivals.len());
            // SAFETY: sj is a site id (< sites.len() == arrivals.len() under
            // M1) and j a stored subvolume (< hop_lines.len() when there are
            // any); the gain range lies in `gains` and every idx < stride.
            unsafe {
                let arrival = if self.hop_lines.is_empty() {
                    *self.arrivals.get_unchecked(sj)
                } else {
                    let line = self.hop_lines.get_unchecked(j);
                    Arrival {
                        rate: line.rate,
                        gain_start: line.gain_start,
                        gain_end: line.gain_end,
                    }
                };
                let mut g = 0.0;
                for t in self
                    .gains
                    .get_unchecked(arrival.gain_start as usize..arrival.gain_end as usize)
                {
                    g += t.coef * *rowj.get_unchecked(t.idx as usize) as f64;
                }
                (arrival.rate, g)
            }
        } else {
            // SAFETY: sj is a site id (< sites.len()), site_diff_rate holds S per site.
            let rate = unsafe { *self.site_diff_rate.get_unchecked(sj * s + species) };
            (rate, self.reaction_gain::<K>(jbase, species))
        };
        let cells = self.rec.cells_mut();
        debug_assert!(base.max(jbase) + C0 + species < cells.len());
        // SAFETY: i and j are subvolumes (< n) and C0 + species < stride, so
        // both cells lie in the n * stride records; species < S ==
        // diffusion_events.len().
        unsafe {
            *cells.get_unchecked_mut(base + C0 + species) -= 1;
            *cells.get_unchecked_mut(jbase + C0 + species) += 1;
            *self.diffusion_events.get_unchecked_mut(species) += 1;
        }
        self.total_events += 1;

        // The diffusion terms change by exactly one molecule's rate; the
        // reaction terms only if the species reacts.
        // Recomputed, not decremented, so that an emptied subvolume gets
        // exactly zero.
        let ad_i = self.diffusion_propensity::<K, M1>(base);
        let ar_i = if !reactive {
            ar
        } else if M1 && self.row::<K>(base)[C0 + species] == 0 {
            // Every fast channel has the lone mobile species as a reactant,
            // so each term is +-0 and the sum is exactly 0.0: skip the pass.
            0.0
        } else {
            self.reaction_propensity::<K>(base)
        };
        let a_i = ad_i + ar_i;
        // Filed straight as finite or idle: `first_time` is finite.
        if a_i > 0.0 {
            let next_i = first_time(t, self.rng.exp1(), a_i);
            self.queue
                .update_finite(&mut View::<K>(&mut self.rec), i, next_i);
        } else {
            self.queue.update_idle(&mut View::<K>(&mut self.rec), i);
        }
        let a_j_new = a_j_old + rate_j + gain;
        if a_j_new > 0.0 {
            let next_j = self.rescaled_finite(t, t_j, a_j_old, a_j_new);
            self.queue
                .update_finite(&mut View::<K>(&mut self.rec), j, next_j);
        } else {
            self.queue.update_idle(&mut View::<K>(&mut self.rec), j);
        }
        Ok(())
    }
}

/// What a fast-group event turned out to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fired {
    Reaction,
    Hop,
}

/// Above this many sites, their data is prefetched with the records.
const MANY_SITES: usize = 4096;

/// A reaction channel evaluated on a row of counts (the NSM's and the
/// operator-splitting solver's channel types).
pub(crate) trait RowChannel {
    fn propensity(&self, row: &[u32]) -> f64;
    fn reaction(&self) -> usize;
}

impl RowChannel for Channel {
    #[inline(always)]
    fn propensity(&self, row: &[u32]) -> f64 {
        Channel::propensity(self, row)
    }
    #[inline(always)]
    fn reaction(&self) -> usize {
        self.reaction as usize
    }
}

/// The sum of the channels' propensities on `row`.
#[inline(always)]
pub(crate) fn total_propensity<C: RowChannel>(channels: &[C], row: &[u32]) -> f64 {
    let mut a = 0.0;
    for ch in channels {
        a += ch.propensity(row);
    }
    a
}

/// The reaction of the channel that u (uniform on [0, sum of the channels'
/// propensities)) falls in; the last channel with a positive propensity
/// takes any rounding excess; None if every propensity is 0.
#[inline(always)]
pub(crate) fn choose_channel<C: RowChannel>(channels: &[C], row: &[u32], u: f64) -> Option<usize> {
    let mut acc = 0.0;
    let mut chosen = None;
    for ch in channels {
        let a = ch.propensity(row);
        if a > 0.0 {
            acc += a;
            chosen = Some(ch.reaction());
            if u < acc {
                break;
            }
        }
    }
    chosen
}

/// The least x >= 0 with `x * inv_w >= k` in f64 arithmetic (k >= 1,
/// inv_w > 0 finite): a step or two from k / inv_w along the f64 grid.
fn least_reaching(k: f64, inv_w: f64) -> f64 {
    let step_down = |x: f64| f64::from_bits(x.to_bits() - 1);
    let step_up = |x: f64| f64::from_bits(x.to_bits() + 1);
    let mut x = k / inv_w;
    while x > 0.0 && step_down(x) * inv_w >= k {
        x = step_down(x);
    }
    while x * inv_w < k {
        x = step_up(x);
    }
    x
}

/// The next time of a subvolume with propensity `a > 0` at time `now`, from
/// a standard exponential `e`: now + e / a, held at f64::MAX when that
/// overflows (a propensity below ~1e-307 /s). So a subvolume's time is +inf
/// exactly when its propensity is 0, which lets a diffusion skip the old
/// propensity of an idle destination. No run reaches f64::MAX seconds, and
/// for every finite value the result is bitwise now + e / a.
#[inline(always)]
pub(crate) fn first_time(now: f64, e: f64, a: f64) -> f64 {
    (now + e / a).min(f64::MAX)
}

/// A pending time `t_old` of a clock whose rate goes from `a_old` to
/// `a_new > 0` at `now`: the same random number rescaled, `now + (t_old -
/// now) a_old / a_new` (Gibson & Bruck 2000, exact by memorylessness), or a
/// fresh draw from `rng` when it had none. Always finite.
#[inline(always)]
pub(crate) fn rescaled_finite(
    rng: &mut Stream,
    now: f64,
    t_old: f64,
    a_old: f64,
    a_new: f64,
) -> f64 {
    debug_assert!(a_new > 0.0);
    if a_old > 0.0 && t_old.is_finite() {
        (now + (t_old - now) * (a_old / a_new)).min(f64::MAX)
    } else {
        first_time(now, rng.exp1(), a_new)
    }
}

/// Hint the CPU to bring the cache line at p into L1 (no-op elsewhere).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and has no architectural effect, whatever
    // the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::{cubic_lattice, voxel_index};

    fn rx(reactants: Vec<u32>, products: Vec<u32>) -> crate::problem::Reaction {
        crate::problem::Reaction {
            reactants,
            products,
        }
    }

    /// The hot loop specialised for one mobile species must give bitwise
    /// the trajectory of the general loop: a mobile species that reacts with
    /// itself (A + A, the channel whose terms become -0 when A is gone) and
    /// with an immobile one, an immobile decay, a source in a sub-region.
    #[test]
    fn lone_mobile_path_matches_the_general_loop_bitwise() {
        let shape = [9, 7, 5];
        let graph = cubic_lattice(shape, 0.1);
        let n = graph.n_subvolumes();
        let mut counts = vec![0u32; n * 3];
        for i in 0..n {
            counts[i * 3] = (i % 3) as u32;
            counts[i * 3 + 1] = 4 + (i % 5) as u32;
        }
        let rate_class: Vec<u32> = (0..n).map(|i| u32::from(i % 9 < 2)).collect();
        let problem = Problem {
            n_species: 3,
            graph,
            transport_coefficients: vec![3.0, 0.0, 0.0],
            reactions: vec![
                rx(vec![0, 1], vec![2]),
                rx(vec![0, 0], vec![1]),
                rx(vec![2], vec![1]),
                rx(vec![], vec![0]),
            ],
            rate_class,
            rate_constants: vec![40.0, 15.0, 30.0, 0.0, 40.0, 15.0, 30.0, 500.0],
            initial_counts: counts,
            schedule: Default::default(),
            layout: Vec::new(),
        };
        for seed in 1..4 {
            let mut lone = Nsm::new(&problem, seed, 0).unwrap();
            assert_eq!(lone.lone_mobile, 0);
            let mut general = Nsm::new(&problem, seed, 0).unwrap();
            general.lone_mobile = usize::MAX;
            for t in [0.01, 0.05, 0.2] {
                lone.advance(t, u64::MAX).unwrap();
                general.advance(t, u64::MAX).unwrap();
                assert_eq!(lone.counts(), general.counts(), "seed {seed}, t = {t}");
                assert_eq!(lone.reaction_events(), general.reaction_events());
                assert_eq!(lone.diffusion_events(), general.diffusion_events());
            }
            assert!(lone.reaction_events().iter().all(|&e| e > 0));
            assert!(lone.total_events() > 10_000, "{}", lone.total_events());
        }
    }

    /// A layout changes only where subvolumes are stored: the solver of a
    /// problem with a layout runs exactly the solver of the problem
    /// renumbered in that order, and everything it hands out (counts,
    /// errors, checkpoints) is in the caller's order.
    #[test]
    fn layout_changes_storage_only() {
        let shape = [6, 5, 4];
        let graph = cubic_lattice(shape, 0.1);
        let n = graph.n_subvolumes();
        // Neighbours far apart, as in a mesh file.
        let layout = crate::problem::shuffled_layout(n, 12345);
        let mut counts = vec![0u32; n * 2];
        for i in 0..n {
            counts[i * 2 + 1] = 100 + i as u32; // tells every subvolume apart
        }
        let plain = Problem {
            n_species: 2,
            graph,
            transport_coefficients: vec![0.2, 0.0],
            reactions: vec![
                rx(vec![0, 1], vec![1]),
                rx(vec![], vec![0]),
                rx(vec![0], vec![]),
            ],
            // The source only in the first x-plane (class 1).
            rate_class: (0..n).map(|i| u32::from(i % shape[0] == 0)).collect(),
            rate_constants: vec![0.01, 0.0, 5.0, 0.01, 1000.0, 5.0],
            initial_counts: counts.clone(),
            schedule: Default::default(),
            layout: Vec::new(),
        };
        let laid = Problem {
            layout: layout.clone(),
            ..plain.clone()
        };
        let renumbered = laid.in_layout_order();
        let mut a = Nsm::new(&laid, 7, 0).unwrap();
        assert_eq!(
            a.counts(),
            counts,
            "initial counts come back in the caller's order"
        );
        let mut b = Nsm::new(&renumbered, 7, 0).unwrap();
        for t in [0.01, 0.03] {
            a.advance(t, u64::MAX).unwrap();
            b.advance(t, u64::MAX).unwrap();
            let stored = crate::problem::in_caller_order(&layout, &b.counts(), 2);
            assert_eq!(a.counts(), stored, "t = {t}");
            assert_eq!(a.diffusion_events(), b.diffusion_events());
            assert_eq!(a.reaction_events(), b.reaction_events());
        }
        assert!(a.total_events() > 1000, "{}", a.total_events());
        // Immobile species 1 only moves by the source-free A + B -> B, so
        // each subvolume keeps its own count: a wrong mapping would mix them.
        let ca = a.counts();
        for i in 0..n {
            assert_eq!(ca[i * 2 + 1], 100 + i as u32);
        }
        // Molecules appear where the source is, and few get 3 hops from it
        // (D = 0.2 µm²/s: one voxel in ~0.03 s).
        let source_planes: u32 = (0..n).filter(|i| i % shape[0] > 2).map(|i| ca[i * 2]).sum();
        let near: u32 = (0..n)
            .filter(|i| i % shape[0] == 0)
            .map(|i| ca[i * 2])
            .sum();
        assert!(near > 3 * source_planes.max(1), "{near} vs {source_planes}");
        // A checkpoint of the laid-out solver resumes bitwise.
        let restored = Nsm::restore(&laid, &a.checkpoint());
        let mut restored = restored.unwrap();
        a.advance(0.05, u64::MAX).unwrap();
        restored.advance(0.05, u64::MAX).unwrap();
        assert_eq!(a.counts(), restored.counts());
        assert_eq!(a.total_events(), restored.total_events());
        // An overflow names the caller's subvolume.
        let mut full = laid.clone();
        full.initial_counts = vec![0; n * 2];
        full.initial_counts[(n - 1) * 2] = u32::MAX;
        full.reactions = vec![rx(vec![], vec![0])];
        full.rate_constants = vec![0.0, 0.0];
        full.rate_class = vec![0; n];
        full.rate_constants = vec![1e6];
        full.transport_coefficients = vec![0.0, 0.0];
        let err = Nsm::new(&full, 1, 0)
            .unwrap()
            .advance(1.0, u64::MAX)
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("subvolume {}", n - 1)),
            "{err}"
        );
    }

    /// With a site per subvolume (as on a tet mesh: here a chain whose
    /// volumes all differ) the prefetch takes the site data too; that must
    /// change nothing but speed: the same trajectory with it switched off.
    #[test]
    fn site_prefetch_changes_nothing() {
        let mut graph = cubic_lattice([6000, 1, 1], 0.1);
        let n = graph.n_subvolumes();
        for (i, v) in graph.volumes.iter_mut().enumerate() {
            *v *= 1.0 + 1e-4 * i as f64;
        }
        let problem = Problem {
            n_species: 2,
            graph,
            transport_coefficients: vec![1.0, 0.0],
            reactions: vec![
                crate::problem::Reaction {
                    reactants: vec![0, 1],
                    products: vec![1],
                },
                crate::problem::Reaction {
                    reactants: vec![],
                    products: vec![0],
                },
            ],
            rate_class: vec![0; n],
            rate_constants: vec![0.05, 2.0],
            initial_counts: (0..n).flat_map(|i| [(i % 4) as u32, 3]).collect(),
            schedule: Default::default(),
            layout: Vec::new(),
        };
        let mut with = Nsm::new(&problem, 7, 0).unwrap();
        assert!(with.many_sites && with.n_sites() > MANY_SITES);
        let mut without = Nsm::new(&problem, 7, 0).unwrap();
        without.many_sites = false;
        runs_match(&mut with, &mut without, &[0.1, 0.5]);
        // A uniform lattice has a handful of sites, whatever its size.
        let lattice = Problem {
            graph: cubic_lattice([20, 20, 20], 0.1),
            rate_class: vec![0; 8000],
            initial_counts: vec![1; 16000],
            ..problem
        };
        let lattice = Nsm::new(&lattice, 7, 0).unwrap();
        assert!(!lattice.many_sites && lattice.n_sites() < 100);
    }

    /// Advance both solvers to each time and assert identical counts and
    /// event counters, over a run long enough to mean something.
    fn runs_match(a: &mut Nsm, b: &mut Nsm, times: &[f64]) {
        for &t in times {
            a.advance(t, u64::MAX).unwrap();
            b.advance(t, u64::MAX).unwrap();
            assert_eq!(a.counts(), b.counts(), "t = {t}");
            assert_eq!(a.diffusion_events(), b.diffusion_events());
            assert_eq!(a.reaction_events(), b.reaction_events());
        }
        assert!(a.total_events() > 100_000, "{}", a.total_events());
    }

    /// Hop lines (meshes with one mobile species) pick the same edges and
    /// arrivals as the general path, bitwise: a 2D grid (at most four edges
    /// per subvolume) whose volumes vary, so that every subvolume is a site
    /// of its own. The first 2,000 keep equal couplings (uniform sites, where
    /// the general path picks by one multiplication); the rest vary per edge
    /// and have some edges closed (coupling 0), the last edge of some too.
    #[test]
    fn hop_lines_change_nothing() {
        let mut graph = cubic_lattice([90, 80, 1], 0.1);
        let n = graph.n_subvolumes();
        for (i, v) in graph.volumes.iter_mut().enumerate() {
            *v *= 1.0 + 1e-5 * i as f64;
        }
        for i in 2000..n {
            for e in graph.edge_offsets[i]..graph.edge_offsets[i + 1] {
                graph.edge_coupling[e] *= if e % 13 == 5 || e % 17 == 3 {
                    0.0
                } else {
                    1.0 + 1e-3 * (e % 7) as f64
                };
            }
        }
        let problem = Problem {
            n_species: 2,
            graph,
            transport_coefficients: vec![1.0, 0.0],
            reactions: vec![
                rx(vec![0, 1], vec![1]),
                rx(vec![], vec![0]),
                rx(vec![0, 0], vec![]),
            ],
            rate_class: vec![0; n],
            rate_constants: vec![0.05, 2.0, 0.01],
            initial_counts: (0..n).flat_map(|i| [(i % 4) as u32, 3]).collect(),
            schedule: Default::default(),
            layout: Vec::new(),
        };
        let mut with = Nsm::new(&problem, 11, 0).unwrap();
        assert!(with.many_sites && with.hop_lines.len() == n);
        let uniform = (0..with.n_sites())
            .filter(|&k| with.uniform_edge_inv[k * 2] > 0.0)
            .count();
        assert!((1500..=2000).contains(&uniform), "{uniform} uniform sites");
        // Edge by edge, at every threshold, one f64 step below it, and at
        // the total rate (an x rounded up to it takes the last moving edge).
        let step_down = |x: f64| f64::from_bits(x.to_bits() - 1);
        for (i, line) in with.hop_lines.iter().enumerate() {
            let site = with.rec.cells()[i * with.stride + SITE] as usize;
            let mut xs = vec![0.0, line.rate, with.site_diff_rate[site * 2]];
            for &c in line.cum.iter().filter(|c| c.is_finite() && **c > 0.0) {
                xs.extend([c, step_down(c)]);
            }
            for x in xs {
                assert_eq!(line.pick(x), with.pick_edge::<2>(site, 0, x), "i {i} x {x}");
            }
        }
        let mut without = Nsm::new(&problem, 11, 0).unwrap();
        without.hop_lines = Vec::new();
        runs_match(&mut with, &mut without, &[0.05, 0.3]);
        // Not built where they would not pay or not apply: a lattice (few,
        // uniform sites), or a graph with more than four edges per subvolume.
        let lattice = Problem {
            graph: cubic_lattice([20, 20, 20], 0.1),
            rate_class: vec![0; 8000],
            initial_counts: vec![1; 16000],
            ..problem.clone()
        };
        assert!(Nsm::new(&lattice, 7, 0).unwrap().hop_lines.is_empty());
        let mut graph = cubic_lattice([20, 20, 20], 0.1);
        for (i, v) in graph.volumes.iter_mut().enumerate() {
            *v *= 1.0 + 1e-5 * i as f64;
        }
        let six_edges = Problem { graph, ..lattice };
        let six_edges = Nsm::new(&six_edges, 7, 0).unwrap();
        assert!(six_edges.many_sites && six_edges.hop_lines.is_empty());
    }

    /// A point release: every molecule starts in one voxel, so at build time
    /// one subvolume holds the only finite time. The calendar's bucket width
    /// must still match the event spacing (1 / total propensity); a width
    /// set from that lone time (as before) made `peek` walk ~1e4 empty
    /// buckets per event until the first retune. Counts walked buckets, not
    /// time, so it is robust on a loaded machine.
    #[test]
    fn point_release_walks_few_empty_buckets() {
        let shape = [37, 47, 91];
        let graph = cubic_lattice(shape, 0.1);
        let n = graph.n_subvolumes();
        let mut counts = vec![0u32; n];
        counts[voxel_index(shape, 18, 23, 45)] = 20_000;
        let problem = Problem {
            n_species: 1,
            graph,
            transport_coefficients: vec![2.0],
            reactions: vec![],
            rate_class: vec![0; n],
            rate_constants: vec![],
            initial_counts: counts,
            schedule: Default::default(),
            layout: Vec::new(),
        };
        for seed in 1..6 {
            let mut nsm = Nsm::new(&problem, seed, 0).unwrap();
            let events = 100_000;
            assert_eq!(nsm.advance(1e9, events).unwrap(), Advance::Paused);
            assert_eq!(nsm.total_events(), events);
            let per_event = nsm.queue.empty_steps() as f64 / events as f64;
            assert!(
                per_event < 4.0,
                "seed {seed}: {per_event} empty buckets walked per event"
            );
            assert_eq!(nsm.totals(), vec![20_000]);
        }
    }
}

// Checkpoint / restore and the propensity bound (a child module, so that it
// reads the private state above without widening its visibility).
#[path = "checkpoint.rs"]
mod checkpoint;
