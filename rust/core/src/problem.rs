//! The inputs every solver shares: a subvolume graph, transport coefficients,
//! a mass-action reaction network with per-subvolume mesoscopic constants, and
//! initial counts. Built from plain arrays and validated once; solvers then
//! index without bounds surprises.

use std::borrow::Cow;

use crate::error::{invalid, CoreError};

/// Directed neighbour graph of subvolumes in CSR form.
///
/// Transport of species `s` along edge `e = i -> j` happens at rate
/// `coefficients[edge_class[e] * n_species + s] * coupling[e] / volumes[i]`
/// per molecule in `i` (DESIGN.md: `D * g_ij / V_i` inside a compartment,
/// `P * A_ij / V_i` across a membrane).
#[derive(Clone, Debug, Default)]
pub struct SubvolumeGraph {
    pub volumes: Vec<f64>,
    pub edge_offsets: Vec<usize>,
    pub edge_targets: Vec<u32>,
    pub edge_coupling: Vec<f64>,
    pub edge_class: Vec<u32>,
}

impl SubvolumeGraph {
    pub fn n_subvolumes(&self) -> usize {
        self.volumes.len()
    }
    pub fn n_edges(&self) -> usize {
        self.edge_targets.len()
    }
}

/// One mass-action reaction: at most two reactants (a repeated index is A + A),
/// any number of products (repeat an index for stoichiometry > 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reaction {
    pub reactants: Vec<u32>,
    pub products: Vec<u32>,
}

impl Reaction {
    pub fn order(&self) -> usize {
        self.reactants.len()
    }

    /// Net change of each species, merged and without zero entries.
    pub fn net_change(&self) -> Vec<(u32, i64)> {
        let mut delta: Vec<(u32, i64)> = Vec::new();
        let mut add = |s: u32, d: i64| match delta.iter_mut().find(|(t, _)| *t == s) {
            Some(entry) => entry.1 += d,
            None => delta.push((s, d)),
        };
        for &s in &self.reactants {
            add(s, -1);
        }
        for &s in &self.products {
            add(s, 1);
        }
        delta.retain(|&(_, d)| d != 0);
        delta
    }
}

/// Piecewise-constant multipliers of the reaction rate constants in time: the
/// exact time schedules of protocols (contraction on, rest, intervals).
///
/// From `times[k]` until `times[k + 1]` reaction `r` runs at
/// `factors[k * n_reactions + r]` times its constants; before `times[0]` every
/// factor is 1. Solvers stop at each switch time, change the constants and
/// redraw what depends on them, so a switch takes effect exactly at its time
/// (exact for the SSA by the memorylessness of the exponential).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateSchedule {
    /// Strictly increasing, finite, >= 0 (s).
    pub times: Vec<f64>,
    /// (times.len(), n_reactions), row-major; finite and >= 0.
    pub factors: Vec<f64>,
}

impl RateSchedule {
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Index of the last switch with time <= t (None before the first).
    pub fn segment_at(&self, t: f64) -> Option<usize> {
        let k = self.times.partition_point(|&s| s <= t);
        k.checked_sub(1)
    }

    /// The first switch time strictly after t, if any.
    pub fn next_switch_after(&self, t: f64) -> Option<f64> {
        let k = self.times.partition_point(|&s| s <= t);
        self.times.get(k).copied()
    }

    /// The largest factor each of `n_reactions` reactions runs at anywhere
    /// in the schedule (1 before the first switch counts), for bounds.
    pub fn max_factors(&self, n_reactions: usize) -> Vec<f64> {
        let mut max = vec![1.0f64; n_reactions];
        for row in self.factors.chunks_exact(n_reactions.max(1)) {
            for (m, &f) in max.iter_mut().zip(row) {
                *m = m.max(f);
            }
        }
        max
    }

    /// Factor of each reaction in force at time t (all 1 before the first switch).
    pub fn factors_at(&self, t: f64, n_reactions: usize) -> Vec<f64> {
        match self.segment_at(t) {
            None => vec![1.0; n_reactions],
            Some(k) => self.factors[k * n_reactions..(k + 1) * n_reactions].to_vec(),
        }
    }

    pub fn validate(&self, n_reactions: usize) -> Result<(), CoreError> {
        for (k, &t) in self.times.iter().enumerate() {
            if !t.is_finite() || t < 0.0 {
                return invalid(format!(
                    "schedule times[{k}] = {t} must be finite and non-negative"
                ));
            }
            if k > 0 && t <= self.times[k - 1] {
                return invalid(format!(
                    "schedule times must increase strictly: times[{k}] = {t} follows {}",
                    self.times[k - 1]
                ));
            }
        }
        if self.factors.len() != self.times.len() * n_reactions {
            return invalid(format!(
                "schedule factors has {} entries but must have len(times) * n_reactions = {}",
                self.factors.len(),
                self.times.len() * n_reactions
            ));
        }
        check_finite_nonneg("schedule factors", &self.factors)
    }
}

/// Everything a solver needs to start a trajectory.
#[derive(Clone, Debug, Default)]
pub struct Problem {
    pub n_species: usize,
    pub graph: SubvolumeGraph,
    /// (n_transport_classes, n_species), row-major: D (µm²/s) or P (µm/s).
    pub transport_coefficients: Vec<f64>,
    pub reactions: Vec<Reaction>,
    /// Per subvolume, the row of `rate_constants` that applies there.
    pub rate_class: Vec<u32>,
    /// (n_rate_classes, n_reactions), row-major: mesoscopic constants c
    /// (order 0: 1/s; order 1: 1/s; order 2: 1/s per reactant pair). 0 means
    /// the reaction does not happen in subvolumes of that class.
    pub rate_constants: Vec<f64>,
    /// (n_subvolumes, n_species), row-major.
    pub initial_counts: Vec<u32>,
    /// Switches of the rate constants in time (empty: constant rates).
    pub schedule: RateSchedule,
    /// Storage order for the exact solver (empty: the order given).
    /// `layout[k]` is the subvolume kept at position k; a permutation of
    /// 0..n that puts neighbours close (e.g. a Morton order of a mesh's
    /// tets) keeps a hop's records in the same cache lines. Only where
    /// things are stored changes: every array in and out of a solver stays
    /// in the caller's order.
    pub layout: Vec<u32>,
}

fn check_finite_nonneg(name: &str, values: &[f64]) -> Result<(), CoreError> {
    for (k, &v) in values.iter().enumerate() {
        if !v.is_finite() || v < 0.0 {
            return invalid(format!("{name}[{k}] = {v} must be finite and non-negative"));
        }
    }
    Ok(())
}

impl Problem {
    pub fn n_subvolumes(&self) -> usize {
        self.graph.n_subvolumes()
    }

    /// Per species, whether some transport class moves it (a positive
    /// coefficient; whether any edge uses that class does not matter).
    pub fn mobile_species(&self) -> Vec<bool> {
        let s = self.n_species;
        (0..s)
            .map(|sp| {
                self.transport_coefficients
                    .iter()
                    .skip(sp)
                    .step_by(s.max(1))
                    .any(|&d| d > 0.0)
            })
            .collect()
    }
    pub fn n_reactions(&self) -> usize {
        self.reactions.len()
    }

    /// Checks every shape, index and value; the error names the array and index.
    pub fn validate(&self) -> Result<(), CoreError> {
        let n = self.n_subvolumes();
        let s = self.n_species;
        let r = self.n_reactions();
        let g = &self.graph;
        if n == 0 {
            return invalid("the subvolume graph has no subvolumes");
        }
        if n > u32::MAX as usize {
            return invalid(format!("{n} subvolumes exceed the limit of {}", u32::MAX));
        }
        for (k, &v) in g.volumes.iter().enumerate() {
            if !v.is_finite() || v <= 0.0 {
                return invalid(format!("volumes[{k}] = {v} must be finite and positive"));
            }
        }
        if g.edge_offsets.len() != n + 1 {
            return invalid(format!(
                "edge_offsets has length {} but must have n_subvolumes + 1 = {}",
                g.edge_offsets.len(),
                n + 1
            ));
        }
        if g.edge_offsets[0] != 0 {
            return invalid("edge_offsets[0] must be 0");
        }
        for k in 0..n {
            if g.edge_offsets[k + 1] < g.edge_offsets[k] {
                return invalid(format!("edge_offsets is decreasing at index {}", k + 1));
            }
        }
        let e = g.edge_targets.len();
        if g.edge_offsets[n] != e {
            return invalid(format!(
                "edge_offsets[-1] = {} but there are {e} edge_targets",
                g.edge_offsets[n]
            ));
        }
        if g.edge_coupling.len() != e || g.edge_class.len() != e {
            return invalid(format!(
                "edge_coupling ({}) and edge_class ({}) must have one entry per edge ({e})",
                g.edge_coupling.len(),
                g.edge_class.len()
            ));
        }
        for i in 0..n {
            for k in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                let t = g.edge_targets[k] as usize;
                if t >= n {
                    return invalid(format!(
                        "edge_targets[{k}] = {t} is not a subvolume index (n_subvolumes = {n})"
                    ));
                }
                if t == i {
                    return invalid(format!("edge_targets[{k}] is a self-loop on subvolume {i}"));
                }
            }
        }
        check_finite_nonneg("edge_coupling", &g.edge_coupling)?;
        if s == 0 {
            return invalid("the network has no species");
        }
        if !self.transport_coefficients.len().is_multiple_of(s) {
            return invalid(format!(
                "transport_coefficients has {} entries, not a multiple of n_species = {s}",
                self.transport_coefficients.len()
            ));
        }
        let n_tclasses = self.transport_coefficients.len() / s;
        check_finite_nonneg("transport_coefficients", &self.transport_coefficients)?;
        for (k, &c) in g.edge_class.iter().enumerate() {
            if c as usize >= n_tclasses {
                return invalid(format!(
                    "edge_class[{k}] = {c} but there are {n_tclasses} transport classes"
                ));
            }
        }
        for (ri, rx) in self.reactions.iter().enumerate() {
            if rx.reactants.len() > 2 {
                return invalid(format!(
                    "reaction {ri} has order {}; only orders 0, 1 and 2 are supported",
                    rx.reactants.len()
                ));
            }
            for &sp in rx.reactants.iter().chain(rx.products.iter()) {
                if sp as usize >= s {
                    return invalid(format!(
                        "reaction {ri} names species index {sp} but there are {s} species"
                    ));
                }
            }
        }
        if self.rate_class.len() != n {
            return invalid(format!(
                "rate_class has length {} but there are {n} subvolumes",
                self.rate_class.len()
            ));
        }
        let n_rclasses = if r == 0 {
            0
        } else {
            if !self.rate_constants.len().is_multiple_of(r) {
                return invalid(format!(
                    "rate_constants has {} entries, not a multiple of n_reactions = {r}",
                    self.rate_constants.len()
                ));
            }
            self.rate_constants.len() / r
        };
        check_finite_nonneg("rate_constants", &self.rate_constants)?;
        if r > 0 {
            for (k, &c) in self.rate_class.iter().enumerate() {
                if c as usize >= n_rclasses {
                    return invalid(format!(
                        "rate_class[{k}] = {c} but there are {n_rclasses} rate classes"
                    ));
                }
            }
        }
        if self.initial_counts.len() != n * s {
            return invalid(format!(
                "counts has {} entries but must have n_subvolumes * n_species = {}",
                self.initial_counts.len(),
                n * s
            ));
        }
        if !self.layout.is_empty() {
            if self.layout.len() != n {
                return invalid(format!(
                    "layout has length {} but there are {n} subvolumes",
                    self.layout.len()
                ));
            }
            let mut seen = vec![false; n];
            for (k, &i) in self.layout.iter().enumerate() {
                match seen.get_mut(i as usize) {
                    None => {
                        return invalid(format!(
                            "layout[{k}] = {i} is not a subvolume index (n_subvolumes = {n})"
                        ))
                    }
                    Some(true) => {
                        return invalid(format!(
                            "layout[{k}] = {i} repeats a subvolume: layout must be a permutation"
                        ))
                    }
                    Some(s) => *s = true,
                }
            }
        }
        self.schedule.validate(r)
    }

    /// The problem as a solver stores it (renumbered in layout order;
    /// borrowed when there is no layout) and the map back to the caller's
    /// numbering. Call on a validated problem.
    pub(crate) fn stored(&self) -> (Cow<'_, Problem>, StorageMap) {
        if self.layout.is_empty() {
            (Cow::Borrowed(self), StorageMap::default())
        } else {
            (
                Cow::Owned(self.in_layout_order()),
                StorageMap(self.layout.clone()),
            )
        }
    }

    /// The same problem with its subvolumes renumbered in `layout` order
    /// (subvolume `layout[k]` becomes k) and an empty layout; itself when
    /// the layout is empty. Call on a validated problem.
    pub fn in_layout_order(&self) -> Problem {
        if self.layout.is_empty() {
            return self.clone();
        }
        let n = self.n_subvolumes();
        let s = self.n_species;
        let g = &self.graph;
        let mut position = vec![0u32; n];
        for (k, &i) in self.layout.iter().enumerate() {
            position[i as usize] = k as u32;
        }
        let mut graph = SubvolumeGraph {
            volumes: Vec::with_capacity(n),
            edge_offsets: Vec::with_capacity(n + 1),
            edge_targets: Vec::with_capacity(g.n_edges()),
            edge_coupling: Vec::with_capacity(g.n_edges()),
            edge_class: Vec::with_capacity(g.n_edges()),
        };
        graph.edge_offsets.push(0);
        let mut rate_class = Vec::with_capacity(n);
        let mut initial_counts = Vec::with_capacity(n * s);
        for &i in &self.layout {
            let i = i as usize;
            graph.volumes.push(g.volumes[i]);
            let edges = g.edge_offsets[i]..g.edge_offsets[i + 1];
            graph.edge_targets.extend(
                g.edge_targets[edges.clone()]
                    .iter()
                    .map(|&t| position[t as usize]),
            );
            graph
                .edge_coupling
                .extend_from_slice(&g.edge_coupling[edges.clone()]);
            graph.edge_class.extend_from_slice(&g.edge_class[edges]);
            graph.edge_offsets.push(graph.edge_targets.len());
            rate_class.push(self.rate_class[i]);
            initial_counts.extend_from_slice(&self.initial_counts[i * s..(i + 1) * s]);
        }
        Problem {
            n_species: s,
            graph,
            transport_coefficients: self.transport_coefficients.clone(),
            reactions: self.reactions.clone(),
            rate_class,
            rate_constants: self.rate_constants.clone(),
            initial_counts,
            schedule: self.schedule.clone(),
            layout: Vec::new(),
        }
    }
}

/// Where a solver's stored subvolumes come from: position k holds the
/// caller's subvolume `map[k]` (a problem's layout); empty when they are
/// stored in the caller's order. Everything a solver hands out (counts,
/// subvolumes named in errors) goes through it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StorageMap(Vec<u32>);

impl StorageMap {
    /// The caller's index of stored subvolume k.
    pub(crate) fn caller(&self, k: usize) -> usize {
        self.0.get(k).map_or(k, |&i| i as usize)
    }

    /// `err` with the subvolume it names (a count overflow) in the caller's
    /// numbering.
    pub(crate) fn caller_error(&self, err: CoreError) -> CoreError {
        match err {
            CoreError::CountOverflow { species, subvolume } => CoreError::CountOverflow {
                species,
                subvolume: self.caller(subvolume),
            },
            other => other,
        }
    }
}

/// The (N, S) counts of a solver that stores subvolumes in `layout` order,
/// `stored`, in the caller's order (for tests comparing the two).
#[cfg(test)]
pub(crate) fn in_caller_order(layout: &[u32], stored: &[u32], s: usize) -> Vec<u32> {
    let mut out = vec![0; stored.len()];
    for (row, &i) in stored.chunks_exact(s).zip(layout) {
        out[i as usize * s..(i as usize + 1) * s].copy_from_slice(row);
    }
    out
}

/// A fixed pseudo-random permutation of 0..n (an LCG shuffle), for tests
/// that need a storage layout with no structure the solvers could exploit.
#[cfg(test)]
pub(crate) fn shuffled_layout(n: usize, seed: u64) -> Vec<u32> {
    let mut layout: Vec<u32> = (0..n as u32).collect();
    let mut x = seed;
    for k in (1..n).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        layout.swap(k, (x >> 33) as usize % (k + 1));
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_change_merges_and_drops_zero() {
        let rx = Reaction {
            reactants: vec![0, 0],
            products: vec![0, 1],
        };
        assert_eq!(rx.net_change(), vec![(0, -1), (1, 1)]);
        let cat = Reaction {
            reactants: vec![2],
            products: vec![2],
        };
        assert!(cat.net_change().is_empty());
    }

    #[test]
    fn validate_names_bad_arrays() {
        let p = Problem {
            n_species: 1,
            graph: SubvolumeGraph {
                volumes: vec![1.0, 1.0],
                edge_offsets: vec![0, 1, 2],
                edge_targets: vec![1, 5],
                edge_coupling: vec![1.0, 1.0],
                edge_class: vec![0, 0],
            },
            transport_coefficients: vec![1.0],
            reactions: vec![],
            rate_class: vec![0, 0],
            rate_constants: vec![],
            initial_counts: vec![0, 0],
            schedule: RateSchedule::default(),
            layout: Vec::new(),
        };
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("edge_targets[1] = 5"), "{err}");
    }

    #[test]
    fn layout_renumbers_the_graph_and_is_validated() {
        // A path 0 - 1 - 2 - 3 with distinct couplings and volumes.
        let mut p = Problem {
            n_species: 1,
            graph: SubvolumeGraph {
                volumes: vec![1.0, 2.0, 3.0, 4.0],
                edge_offsets: vec![0, 1, 3, 5, 6],
                edge_targets: vec![1, 0, 2, 1, 3, 2],
                edge_coupling: vec![10.0, 10.0, 12.0, 12.0, 23.0, 23.0],
                edge_class: vec![0; 6],
            },
            transport_coefficients: vec![1.0],
            reactions: vec![],
            rate_class: vec![0, 0, 0, 0],
            rate_constants: vec![],
            initial_counts: vec![5, 6, 7, 8],
            schedule: RateSchedule::default(),
            layout: vec![2, 0, 3, 1],
        };
        p.validate().unwrap();
        let q = p.in_layout_order();
        q.validate().unwrap();
        assert!(q.layout.is_empty());
        assert_eq!(q.graph.volumes, vec![3.0, 1.0, 4.0, 2.0]);
        assert_eq!(q.initial_counts, vec![7, 5, 8, 6]);
        // Every edge of the caller's subvolume layout[k] is an edge of k, to
        // the position of the same neighbour, with the same coupling.
        let position = |i: u32| p.layout.iter().position(|&x| x == i).unwrap() as u32;
        for (k, &i) in p.layout.iter().enumerate() {
            let i = i as usize;
            let mine: Vec<(u32, f64)> = (q.graph.edge_offsets[k]..q.graph.edge_offsets[k + 1])
                .map(|e| (q.graph.edge_targets[e], q.graph.edge_coupling[e]))
                .collect();
            let theirs: Vec<(u32, f64)> = (p.graph.edge_offsets[i]..p.graph.edge_offsets[i + 1])
                .map(|e| (position(p.graph.edge_targets[e]), p.graph.edge_coupling[e]))
                .collect();
            assert_eq!(mine, theirs, "subvolume {i} at position {k}");
        }
        for (layout, want) in [
            (vec![0, 1, 2], "layout has length 3"),
            (vec![0, 1, 2, 4], "layout[3] = 4 is not a subvolume"),
            (vec![0, 1, 1, 3], "layout[2] = 1 repeats"),
        ] {
            p.layout = layout;
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn schedule_segments_and_validation() {
        let sched = RateSchedule {
            times: vec![0.5, 1.0],
            factors: vec![2.0, 0.0, 1.0, 3.0],
        };
        sched.validate(2).unwrap();
        assert_eq!(sched.factors_at(0.1, 2), vec![1.0, 1.0]);
        assert_eq!(sched.factors_at(0.5, 2), vec![2.0, 0.0]);
        assert_eq!(sched.factors_at(7.0, 2), vec![1.0, 3.0]);
        assert_eq!(sched.next_switch_after(0.5), Some(1.0));
        assert_eq!(sched.next_switch_after(1.0), None);
        let bad = RateSchedule {
            times: vec![1.0, 1.0],
            factors: vec![1.0, 1.0],
        };
        assert!(bad
            .validate(1)
            .unwrap_err()
            .to_string()
            .contains("increase"));
        let bad = RateSchedule {
            times: vec![1.0],
            factors: vec![-1.0],
        };
        assert!(bad.validate(1).unwrap_err().to_string().contains("factors"));
    }
}
