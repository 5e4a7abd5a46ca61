//! The exact next-subvolume method (Elf & Ehrenberg 2004, IET Syst. Biol. 1:230).
//!
//! Each subvolume carries one total propensity a_i = a_diff_i + a_react_i and one
//! tentative next-event time in an indexed heap. After an event only the
//! subvolumes it touched are updated: the one that fired draws a fresh
//! exponential; a diffusion destination keeps its random number and has its
//! time rescaled, t_j <- t + (t_j - t) a_j_old / a_j_new (Gibson & Bruck 2000),
//! which is exact and saves one exponential per diffusion event.
//!
//! Propensities of a touched subvolume are recomputed from its counts
//! (O(S + R_i)) rather than updated incrementally, so no rounding drift
//! accumulates over billions of events.

use crate::error::{invalid, CoreError};
use crate::problem::Problem;
use crate::queue::EventQueue;
use crate::rng::Stream;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Source,
    Unimolecular(u32),
    Bimolecular(u32, u32),
    Dimerisation(u32),
}

#[derive(Clone, Debug)]
pub struct Nsm {
    n_subvolumes: usize,
    n_species: usize,
    counts: Vec<u32>,
    a_diff: Vec<f64>,
    a_react: Vec<f64>,
    /// (N, S): total transport rate per molecule of s out of i.
    diff_rate: Vec<f64>,
    edge_offsets: Vec<usize>,
    edge_targets: Vec<u32>,
    /// coupling_e / V_i, so that rate = coefficient * weight.
    edge_weight: Vec<f64>,
    edge_class: Vec<u32>,
    transport_coefficients: Vec<f64>,
    kinds: Vec<Kind>,
    change_offsets: Vec<usize>,
    change_species: Vec<u32>,
    change_delta: Vec<i64>,
    rate_class: Vec<u32>,
    rate_constants: Vec<f64>,
    /// Per rate class, the reactions with a non-zero constant (CSR).
    active_offsets: Vec<usize>,
    active_reactions: Vec<u32>,
    /// Species that appear as a reactant somewhere.
    reactive: Vec<bool>,
    queue: EventQueue,
    rng: Stream,
    time: f64,
    total_events: u64,
    diffusion_events: Vec<u64>,
    reaction_events: Vec<u64>,
}

/// Outcome of `advance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// Every event up to t_stop has been run; time == t_stop.
    Reached,
    /// The event budget ran out first; call again.
    Paused,
}

#[inline(always)]
fn propensity(kind: Kind, c: f64, row: &[u32]) -> f64 {
    match kind {
        Kind::Source => c,
        Kind::Unimolecular(a) => c * row[a as usize] as f64,
        Kind::Bimolecular(a, b) => c * row[a as usize] as f64 * row[b as usize] as f64,
        Kind::Dimerisation(a) => {
            let n = row[a as usize] as f64;
            // n (n - 1) / 2 distinct pairs; 0 for n < 2.
            c * (n * (n - 1.0) * 0.5).max(0.0)
        }
    }
}

impl Nsm {
    pub fn new(problem: &Problem, seed: u64, replicate: u64) -> Result<Self, CoreError> {
        problem.validate()?;
        let n = problem.n_subvolumes();
        let s = problem.n_species;
        let r = problem.n_reactions();
        let g = &problem.graph;

        let mut edge_weight = Vec::with_capacity(g.n_edges());
        let mut diff_rate = vec![0.0; n * s];
        for i in 0..n {
            let inv_v = 1.0 / g.volumes[i];
            for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                let w = g.edge_coupling[e] * inv_v;
                edge_weight.push(w);
                let class = g.edge_class[e] as usize;
                for sp in 0..s {
                    diff_rate[i * s + sp] += problem.transport_coefficients[class * s + sp] * w;
                }
            }
        }
        for (k, &d) in diff_rate.iter().enumerate() {
            if !d.is_finite() {
                return invalid(format!(
                    "transport rate of species {} out of subvolume {} is not finite \
                     (coefficient * coupling / volume overflows)",
                    k % s,
                    k / s
                ));
            }
        }

        let mut kinds = Vec::with_capacity(r);
        let mut change_offsets = vec![0];
        let mut change_species = Vec::new();
        let mut change_delta = Vec::new();
        let mut reactive = vec![false; s];
        for rx in &problem.reactions {
            let kind = match rx.reactants.as_slice() {
                [] => Kind::Source,
                [a] => Kind::Unimolecular(*a),
                [a, b] if a == b => Kind::Dimerisation(*a),
                [a, b] => Kind::Bimolecular(*a, *b),
                _ => unreachable!("validated: order <= 2"),
            };
            for &sp in &rx.reactants {
                reactive[sp as usize] = true;
            }
            kinds.push(kind);
            for (sp, d) in rx.net_change() {
                change_species.push(sp);
                change_delta.push(d);
            }
            change_offsets.push(change_species.len());
        }

        let n_rclasses = if r == 0 {
            0
        } else {
            problem.rate_constants.len() / r
        };
        let mut active_offsets = vec![0];
        let mut active_reactions = Vec::new();
        for c in 0..n_rclasses {
            for ri in 0..r {
                if problem.rate_constants[c * r + ri] > 0.0 {
                    active_reactions.push(ri as u32);
                }
            }
            active_offsets.push(active_reactions.len());
        }
        let rate_class = if r == 0 {
            vec![0; n]
        } else {
            problem.rate_class.clone()
        };
        if r == 0 {
            active_offsets.push(0);
        }

        let mut nsm = Nsm {
            n_subvolumes: n,
            n_species: s,
            counts: problem.initial_counts.clone(),
            a_diff: vec![0.0; n],
            a_react: vec![0.0; n],
            diff_rate,
            edge_offsets: g.edge_offsets.clone(),
            edge_targets: g.edge_targets.clone(),
            edge_weight,
            edge_class: g.edge_class.clone(),
            transport_coefficients: problem.transport_coefficients.clone(),
            kinds,
            change_offsets,
            change_species,
            change_delta,
            rate_class,
            rate_constants: problem.rate_constants.clone(),
            active_offsets,
            active_reactions,
            reactive,
            queue: EventQueue::default(),
            rng: Stream::new(seed, replicate),
            time: 0.0,
            total_events: 0,
            diffusion_events: vec![0; s],
            reaction_events: vec![0; r],
        };
        let mut times = vec![f64::INFINITY; n];
        for (i, t) in times.iter_mut().enumerate() {
            nsm.a_diff[i] = nsm.diffusion_propensity(i);
            nsm.a_react[i] = nsm.reaction_propensity(i);
            let a = nsm.a_diff[i] + nsm.a_react[i];
            if !a.is_finite() {
                return invalid(format!("the total propensity of subvolume {i} is not finite"));
            }
            if a > 0.0 {
                *t = nsm.rng.exp1() / a;
            }
        }
        nsm.queue = EventQueue::build(&times);
        Ok(nsm)
    }

    #[inline(never)]
    fn diffusion_propensity(&self, i: usize) -> f64 {
        let s = self.n_species;
        let row = &self.counts[i * s..(i + 1) * s];
        let rates = &self.diff_rate[i * s..(i + 1) * s];
        row.iter()
            .zip(rates)
            .map(|(&c, &d)| c as f64 * d)
            .sum()
    }

    #[inline(never)]
    fn reaction_propensity(&self, i: usize) -> f64 {
        let r = self.kinds.len();
        if r == 0 {
            return 0.0;
        }
        let s = self.n_species;
        let row = &self.counts[i * s..(i + 1) * s];
        let class = self.rate_class[i] as usize;
        let consts = &self.rate_constants[class * r..(class + 1) * r];
        let mut a = 0.0;
        for &ri in &self.active_reactions[self.active_offsets[class]..self.active_offsets[class + 1]]
        {
            a += propensity(self.kinds[ri as usize], consts[ri as usize], row);
        }
        a
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
        self.kinds.len()
    }
    pub fn counts(&self) -> &[u32] {
        &self.counts
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

    pub fn totals(&self) -> Vec<u64> {
        let s = self.n_species;
        let mut t = vec![0u64; s];
        for row in self.counts.chunks_exact(s) {
            for (acc, &c) in t.iter_mut().zip(row) {
                *acc += c as u64;
            }
        }
        t
    }

    /// Memory held per subvolume by the solver state, in bytes.
    pub fn bytes_per_subvolume(&self) -> f64 {
        use std::mem::size_of;
        let bytes = self.counts.capacity() * size_of::<u32>()
            + (self.a_diff.capacity() + self.a_react.capacity() + self.diff_rate.capacity())
                * size_of::<f64>()
            + self.edge_offsets.capacity() * size_of::<usize>()
            + self.edge_targets.capacity() * size_of::<u32>()
            + self.edge_weight.capacity() * size_of::<f64>()
            + self.edge_class.capacity() * size_of::<u32>()
            + self.rate_class.capacity() * size_of::<u32>()
            + self.queue.len() * EventQueue::bytes_per_entry();
        bytes as f64 / self.n_subvolumes as f64
    }

    /// Run every event with time <= t_stop, at most `max_events` of them.
    pub fn advance(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError> {
        if t_stop.is_nan() || t_stop < self.time {
            return invalid(format!(
                "cannot advance to t = {t_stop}: the simulation is already at t = {}",
                self.time
            ));
        }
        let mut fired = 0u64;
        loop {
            let (t, i) = self.queue.peek();
            if t > t_stop {
                self.time = t_stop;
                return Ok(Advance::Reached);
            }
            if fired == max_events {
                return Ok(Advance::Paused);
            }
            self.time = t;
            self.fire(t, i)?;
            fired += 1;
        }
    }

    #[inline(always)]
    fn fire(&mut self, t: f64, i: usize) -> Result<(), CoreError> {
        let ar = self.a_react[i];
        let ad = self.a_diff[i];
        let u = self.rng.uniform() * (ar + ad);
        if (u < ar || ad <= 0.0) && ar > 0.0 {
            self.fire_reaction(t, i, u.min(ar))
        } else {
            self.fire_diffusion(t, i, (u - ar).max(0.0))
        }
    }

    #[inline(never)]
    fn schedule(&mut self, i: usize, t: f64) {
        let a = self.a_diff[i] + self.a_react[i];
        let next = if a > 0.0 {
            t + self.rng.exp1() / a
        } else {
            f64::INFINITY
        };
        self.queue.update(i, next);
    }

    #[inline(never)]
    fn fire_reaction(&mut self, t: f64, i: usize, u: f64) -> Result<(), CoreError> {
        let r = self.kinds.len();
        let s = self.n_species;
        let class = self.rate_class[i] as usize;
        let row = i * s;
        let mut acc = 0.0;
        let mut chosen = usize::MAX;
        for k in self.active_offsets[class]..self.active_offsets[class + 1] {
            let ri = self.active_reactions[k] as usize;
            let a = propensity(
                self.kinds[ri],
                self.rate_constants[class * r + ri],
                &self.counts[row..row + s],
            );
            if a > 0.0 {
                acc += a;
                chosen = ri;
                if u < acc {
                    break;
                }
            }
        }
        if chosen == usize::MAX {
            // Propensity vanished through rounding: nothing can fire here.
            self.a_react[i] = 0.0;
            self.schedule(i, t);
            return Ok(());
        }
        let changes = self.change_offsets[chosen]..self.change_offsets[chosen + 1];
        for k in changes.clone() {
            let sp = self.change_species[k] as usize;
            let new = self.counts[row + sp] as i64 + self.change_delta[k];
            if new > u32::MAX as i64 || new < 0 {
                return Err(CoreError::CountOverflow {
                    species: sp,
                    subvolume: i,
                });
            }
        }
        for k in changes {
            let sp = self.change_species[k] as usize;
            self.counts[row + sp] = (self.counts[row + sp] as i64 + self.change_delta[k]) as u32;
        }
        self.reaction_events[chosen] += 1;
        self.total_events += 1;
        self.a_diff[i] = self.diffusion_propensity(i);
        self.a_react[i] = self.reaction_propensity(i);
        self.schedule(i, t);
        Ok(())
    }

    #[inline(never)]
    fn fire_diffusion(&mut self, t: f64, i: usize, u: f64) -> Result<(), CoreError> {
        let s = self.n_species;
        let row = i * s;
        let mut acc = 0.0;
        let mut species = usize::MAX;
        let mut rem = 0.0;
        for sp in 0..s {
            let n = self.counts[row + sp] as f64;
            let w = n * self.diff_rate[row + sp];
            if w > 0.0 {
                species = sp;
                rem = (u - acc).clamp(0.0, w);
                acc += w;
                if u < acc {
                    break;
                }
            }
        }
        if species == usize::MAX {
            self.a_diff[i] = 0.0;
            self.schedule(i, t);
            return Ok(());
        }
        // rem is uniform on [0, n_s * d_s): reuse it to choose the edge.
        let x = rem / self.counts[row + species] as f64;
        let mut acc = 0.0;
        let mut target = usize::MAX;
        for e in self.edge_offsets[i]..self.edge_offsets[i + 1] {
            let w = self.transport_coefficients[self.edge_class[e] as usize * s + species]
                * self.edge_weight[e];
            if w > 0.0 {
                acc += w;
                target = self.edge_targets[e] as usize;
                if x < acc {
                    break;
                }
            }
        }
        debug_assert!(target != usize::MAX, "positive diffusion rate implies an edge");
        let j = target;
        let jrow = j * s;
        if self.counts[jrow + species] == u32::MAX {
            return Err(CoreError::CountOverflow {
                species,
                subvolume: j,
            });
        }
        self.counts[row + species] -= 1;
        self.counts[jrow + species] += 1;
        self.diffusion_events[species] += 1;
        self.total_events += 1;

        let a_j_old = self.a_diff[j] + self.a_react[j];
        self.a_diff[i] = self.diffusion_propensity(i);
        self.a_diff[j] = self.diffusion_propensity(j);
        if self.reactive[species] {
            self.a_react[i] = self.reaction_propensity(i);
            self.a_react[j] = self.reaction_propensity(j);
        }
        self.schedule(i, t);
        let a_j_new = self.a_diff[j] + self.a_react[j];
        let t_j = self.queue.time_of(j);
        let next_j = if a_j_new <= 0.0 {
            f64::INFINITY
        } else if a_j_old > 0.0 && t_j.is_finite() {
            t + (t_j - t) * (a_j_old / a_j_new)
        } else {
            t + self.rng.exp1() / a_j_new
        };
        self.queue.update(j, next_j);
        Ok(())
    }
}
