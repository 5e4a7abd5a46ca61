//! Many replicates of one `Problem` on all cores: each replicate is its own
//! exact trajectory (NSM, or the molecules solver where it applies) with
//! stream (seed, replicate), so the output is
//! bitwise the one of running the replicates one by one, in any order and on
//! any number of threads. Only totals (and region totals) at the sample
//! times are kept, so memory is one solver per thread, not per replicate.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{invalid, CoreError};
use crate::molecules::{Molecules, MoleculesMethod};
use crate::nsm::{Advance, Nsm};
use crate::problem::Problem;

/// The exact solver that runs every replicate: the same Markov chain, so the
/// same statistics; `Molecules` applies when one species moves and no
/// reaction takes two of it (it refuses the problem otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExactSolver {
    #[default]
    Nsm,
    Molecules(MoleculesMethod),
}

/// What the ensemble needs of a running exact solver.
trait Replicate {
    fn advance(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError>;
    fn totals(&self) -> Vec<u64>;
    fn counts_into(&self, out: &mut [u32]);
    fn total_events(&self) -> u64;
}

macro_rules! replicate_impl {
    ($t:ty) => {
        impl Replicate for $t {
            fn advance(&mut self, t_stop: f64, max_events: u64) -> Result<Advance, CoreError> {
                <$t>::advance(self, t_stop, max_events)
            }
            fn totals(&self) -> Vec<u64> {
                <$t>::totals(self)
            }
            fn counts_into(&self, out: &mut [u32]) {
                <$t>::counts_into(self, out)
            }
            fn total_events(&self) -> u64 {
                <$t>::total_events(self)
            }
        }
    };
}
replicate_impl!(Nsm);
replicate_impl!(Molecules);

/// Samples of an ensemble.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnsembleOutput {
    /// (replicates, times, species), row-major.
    pub totals: Vec<u64>,
    /// (replicates, times, regions, species), row-major; empty without regions.
    pub region_totals: Vec<u64>,
    /// Events per replicate.
    pub events: Vec<u64>,
}

/// One replicate's samples: totals, region totals, events.
type Samples = (Vec<u64>, Vec<u64>, u64);

/// Events between two looks at the cancel flag.
const EVENTS_PER_SLICE: u64 = 1 << 20;

/// Run `replicates` (their stream numbers) of `problem` with `seed`, sampling
/// species totals, and per region (lists of subvolume indices) the totals
/// over its subvolumes, at each of `times` (non-decreasing, >= 0), with the
/// exact `solver`. `threads` = 0 uses every core. Returns None if `cancel`
/// was set while running.
#[allow(clippy::too_many_arguments)]
pub fn ensemble_totals(
    problem: &Problem,
    seed: u64,
    replicates: &[u64],
    times: &[f64],
    regions: &[Vec<u32>],
    threads: usize,
    solver: ExactSolver,
    cancel: &AtomicBool,
) -> Result<Option<EnsembleOutput>, CoreError> {
    problem.validate()?;
    let n = problem.n_subvolumes();
    for (k, &t) in times.iter().enumerate() {
        if !t.is_finite() || t < 0.0 {
            return invalid(format!("times[{k}] = {t} must be finite and non-negative"));
        }
        if k > 0 && t < times[k - 1] {
            return invalid(format!(
                "times must not decrease: times[{k}] = {t} follows {}",
                times[k - 1]
            ));
        }
    }
    for (g, members) in regions.iter().enumerate() {
        if let Some(&bad) = members.iter().find(|&&i| i as usize >= n) {
            return invalid(format!(
                "region {g} lists subvolume {bad} but there are {n} subvolumes"
            ));
        }
    }
    if threads > 1024 {
        return invalid(format!("threads = {threads} is more than 1024"));
    }
    // Build one solver first, so that a bad problem fails before any thread.
    let first = replicates.first().copied().unwrap_or(0);
    match solver {
        ExactSolver::Nsm => Nsm::new(problem, seed, first)?.check_propensity_bound()?,
        // Its constructor refuses what it cannot run (before any thread starts).
        ExactSolver::Molecules(method) => {
            drop(Molecules::with_method(problem, seed, first, method)?)
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CoreError::InvalidInput(format!("cannot start worker threads: {e}")))?;
    let results: Vec<_> = pool.install(|| match solver {
        ExactSolver::Nsm => run_all(problem, replicates, times, regions, cancel, |rep| {
            Nsm::new(problem, seed, rep)
        }),
        ExactSolver::Molecules(method) => {
            run_all(problem, replicates, times, regions, cancel, |rep| {
                Molecules::with_method(problem, seed, rep, method)
            })
        }
    });
    let mut out = EnsembleOutput::default();
    for r in results {
        match r? {
            None => return Ok(None),
            Some((t, g, e)) => {
                out.totals.extend(t);
                out.region_totals.extend(g);
                out.events.push(e);
            }
        }
    }
    Ok(Some(out))
}

/// Every replicate, each started by `start(replicate)`, in parallel on the
/// current pool, in replicate order.
fn run_all<R: Replicate>(
    problem: &Problem,
    replicates: &[u64],
    times: &[f64],
    regions: &[Vec<u32>],
    cancel: &AtomicBool,
    start: impl Fn(u64) -> Result<R, CoreError> + Sync,
) -> Vec<Result<Option<Samples>, CoreError>> {
    let (n, s) = (problem.n_subvolumes(), problem.n_species);
    let (n_t, n_g) = (times.len(), regions.len());
    let one = |rep: u64| -> Result<Option<Samples>, CoreError> {
        let mut one = start(rep)?;
        let mut totals = Vec::with_capacity(n_t * s);
        let mut by_region = Vec::with_capacity(n_t * n_g * s);
        let mut counts = vec![0u32; n * s];
        for &t in times {
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                if one.advance(t, EVENTS_PER_SLICE)? == Advance::Reached {
                    break;
                }
            }
            totals.extend(one.totals());
            if n_g > 0 {
                one.counts_into(&mut counts);
                for members in regions {
                    let mut acc = vec![0u64; s];
                    for &i in members {
                        let row = &counts[i as usize * s..(i as usize + 1) * s];
                        for (a, &c) in acc.iter_mut().zip(row) {
                            *a += u64::from(c);
                        }
                    }
                    by_region.extend(acc);
                }
            }
        }
        Ok(Some((totals, by_region, one.total_events())))
    };
    replicates.par_iter().map(|&r| one(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::cubic_lattice;
    use crate::problem::Reaction;

    /// Birth, conversion and decay on a 5x4x3 lattice; species 1 moves only
    /// when `both_move`.
    fn problem(both_move: bool) -> Problem {
        let graph = cubic_lattice([5, 4, 3], 0.5);
        let n = graph.n_subvolumes();
        Problem {
            n_species: 2,
            graph,
            transport_coefficients: vec![1.0, if both_move { 0.2 } else { 0.0 }],
            reactions: vec![
                Reaction {
                    reactants: vec![],
                    products: vec![0],
                },
                Reaction {
                    reactants: vec![0],
                    products: vec![1],
                },
                Reaction {
                    reactants: vec![1],
                    products: vec![],
                },
            ],
            rate_class: vec![0; n],
            rate_constants: vec![3.0, 2.0, 1.0],
            initial_counts: vec![1; 2 * n],
            schedule: Default::default(),
            layout: Vec::new(),
        }
    }

    /// The ensemble with `solver` against its replicates run one by one with
    /// `R`, on 1 and 2 threads, plus the cancel flag and bad inputs.
    fn check_same_as_one_by_one<R: Replicate>(
        p: &Problem,
        solver: ExactSolver,
        start: impl Fn(u64) -> R,
    ) {
        let n = p.n_subvolumes();
        let times = [0.0, 0.5, 1.0, 2.0];
        let regions = vec![vec![0, 1, 2], (0..n as u32).collect()];
        let reps = [0u64, 1, 2, 7, 8];
        let cancel = AtomicBool::new(false);
        let par = ensemble_totals(p, 11, &reps, &times, &regions, 2, solver, &cancel)
            .unwrap()
            .unwrap();
        for (k, &rep) in reps.iter().enumerate() {
            let mut one = start(rep);
            for (j, &t) in times.iter().enumerate() {
                one.advance(t, u64::MAX).unwrap();
                let off = (k * times.len() + j) * 2;
                assert_eq!(&par.totals[off..off + 2], one.totals().as_slice());
                // The region of every subvolume sums to the totals.
                let g = ((k * times.len() + j) * 2 + 1) * 2;
                assert_eq!(&par.region_totals[g..g + 2], one.totals().as_slice());
            }
            assert_eq!(par.events[k], one.total_events());
        }
        let single = ensemble_totals(p, 11, &reps, &times, &regions, 1, solver, &cancel)
            .unwrap()
            .unwrap();
        assert_eq!(single, par);
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(
            ensemble_totals(p, 11, &reps, &times, &[], 1, solver, &cancel).unwrap(),
            None
        );
        let cancel = AtomicBool::new(false);
        assert!(ensemble_totals(p, 11, &reps, &[1.0, 0.5], &[], 1, solver, &cancel).is_err());
        assert!(ensemble_totals(p, 11, &reps, &times, &[vec![999]], 1, solver, &cancel).is_err());
    }

    #[test]
    fn same_as_one_by_one() {
        let p = problem(true);
        check_same_as_one_by_one(&p, ExactSolver::Nsm, |rep| Nsm::new(&p, 11, rep).unwrap());
        let p = problem(false);
        for method in [MoleculesMethod::Clocks, MoleculesMethod::Thinning] {
            check_same_as_one_by_one(&p, ExactSolver::Molecules(method), |rep| {
                Molecules::with_method(&p, 11, rep, method).unwrap()
            });
        }
    }

    #[test]
    fn molecules_refuses_two_moving_species_before_any_thread() {
        let cancel = AtomicBool::new(false);
        let err = ensemble_totals(
            &problem(true),
            1,
            &[0, 1],
            &[1.0],
            &[],
            2,
            ExactSolver::Molecules(MoleculesMethod::Auto),
            &cancel,
        )
        .unwrap_err();
        assert!(err.to_string().contains("species"), "{err}");
    }
}
