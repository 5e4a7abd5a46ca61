//! Rate schedules in the exact NSM: switches take effect exactly at their
//! times, the statistics follow the time-varying rate, and pausing or
//! checkpointing across a switch changes nothing.

use redoxfield_core::lattice::cubic_lattice;
use redoxfield_core::{Advance, Nsm, Problem, RateSchedule, Reaction};

/// A 3x3x3 lattice; A is made by a zero-order source (reaction 0, c per
/// voxel) and decays (reaction 1); B is made only by the decay of A, so it
/// counts how many A decayed.
fn source_decay(c_source: f64, k_decay: f64, schedule: RateSchedule) -> Problem {
    let graph = cubic_lattice([3, 3, 3], 0.2);
    let n = graph.n_subvolumes();
    Problem {
        n_species: 2,
        graph,
        transport_coefficients: vec![1.0, 0.0],
        reactions: vec![
            Reaction {
                reactants: vec![],
                products: vec![0],
            },
            Reaction {
                reactants: vec![0],
                products: vec![1],
            },
        ],
        rate_class: vec![0; n],
        rate_constants: vec![c_source, k_decay],
        initial_counts: vec![0; n * 2],
        schedule,
        layout: Vec::new(),
    }
}

fn totals_at(nsm: &mut Nsm, t: f64) -> Vec<u64> {
    assert_eq!(nsm.advance(t, u64::MAX).unwrap(), Advance::Reached);
    nsm.totals()
}

/// With the source switched off on [0.2, 0.5), not one A is made there: the
/// switch is exact, not approximated by a step.
#[test]
fn a_zero_factor_stops_a_reaction_exactly_at_its_time() {
    let schedule = RateSchedule {
        times: vec![0.2, 0.5],
        factors: vec![0.0, 1.0, 1.0, 1.0],
    };
    let p = source_decay(50.0, 0.0, schedule);
    for seed in 1..20 {
        let mut nsm = Nsm::new(&p, seed, 0).unwrap();
        let at_switch = totals_at(&mut nsm, 0.2);
        assert!(at_switch[0] > 0);
        // Events strictly after the switch time see the new factor.
        assert_eq!(totals_at(&mut nsm, 0.35), at_switch);
        assert_eq!(totals_at(&mut nsm, 0.5), at_switch);
        assert_eq!(nsm.rate_factors(), &[1.0, 1.0]);
        assert!(totals_at(&mut nsm, 0.6)[0] > at_switch[0]);
    }
}

/// Births with a piecewise-constant rate: the count at T is Poisson with
/// mean sum(c_k * dt_k) over the segments (the time-varying Poisson process).
/// 4000 replicates; mean and variance within 4 standard errors.
#[test]
fn piecewise_source_is_poisson_with_the_integrated_rate() {
    let n = 27.0;
    let c = 2.0;
    let schedule = RateSchedule {
        times: vec![0.1, 0.25, 0.3],
        factors: vec![3.0, 1.0, 0.5, 1.0, 10.0, 1.0],
    };
    let p = source_decay(c, 0.0, schedule);
    // Segments: [0, .1) x1, [.1, .25) x3, [.25, .3) x0.5, [.3, .4] x10.
    let mean = n * c * (0.1 + 0.15 * 3.0 + 0.05 * 0.5 + 0.1 * 10.0);
    let reps = 4000;
    let xs: Vec<f64> = (0..reps)
        .map(|rep| {
            let mut nsm = Nsm::new(&p, 7, rep).unwrap();
            totals_at(&mut nsm, 0.4)[0] as f64
        })
        .collect();
    let m = xs.iter().sum::<f64>() / reps as f64;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (reps - 1) as f64;
    let se_mean = (mean / reps as f64).sqrt();
    // Var of the sample variance of a Poisson: (mu + 2 mu^2 (n/(n-1))) / n ~ (mu + 2 mu^2) / n.
    let se_var = ((mean + 2.0 * mean * mean) / reps as f64).sqrt();
    assert!((m - mean).abs() < 4.0 * se_mean, "mean {m} vs {mean}");
    assert!(
        (var - mean).abs() < 4.0 * se_var,
        "variance {var} vs {mean}"
    );
}

/// Decay whose constant switches while molecules are waiting: the survivors
/// follow exp(-integral of k). Checks the rescaling of pending times (dense
/// case: 50 per voxel, slow hops) and, in the sparse case (2 per voxel, hops
/// as fast as the switched decay), that a molecule arriving in a voxel brings
/// the switched reaction rate with it.
#[test]
fn decay_follows_the_switched_constant() {
    // (initial per voxel, D, factor after the switch at 0.3, end time)
    for (per_voxel, d, factor, t) in [(50u32, 0.5, 4.0, 0.5), (2, 0.5, 40.0, 0.33)] {
        let graph = cubic_lattice([2, 2, 2], 0.2);
        let n = graph.n_subvolumes();
        let p = Problem {
            n_species: 1,
            graph,
            transport_coefficients: vec![d],
            reactions: vec![Reaction {
                reactants: vec![0],
                products: vec![],
            }],
            rate_class: vec![0; n],
            rate_constants: vec![1.0],
            initial_counts: vec![per_voxel; n],
            schedule: RateSchedule {
                times: vec![0.3],
                factors: vec![factor],
            },
            layout: Vec::new(),
        };
        let n0 = f64::from(per_voxel) * n as f64;
        let survive = (-(0.3 * 1.0 + (t - 0.3) * factor)).exp();
        let reps = 4000;
        let total: f64 = (0..reps)
            .map(|rep| {
                let mut nsm = Nsm::new(&p, 3, rep).unwrap();
                totals_at(&mut nsm, t)[0] as f64
            })
            .sum();
        let m = total / reps as f64;
        let expected = n0 * survive;
        let se = (n0 * survive * (1.0 - survive) / reps as f64).sqrt();
        assert!(
            (m - expected).abs() < 4.0 * se,
            "{per_voxel} per voxel, factor {factor}: mean {m} vs {expected} (se {se})"
        );
    }
}

/// Pausing on an event budget, or checkpointing and restoring, across
/// switches gives bitwise the same trajectory as one uninterrupted run.
#[test]
fn pauses_and_checkpoints_across_switches_are_invisible() {
    let schedule = RateSchedule {
        times: vec![0.05, 0.1, 0.15],
        factors: vec![0.0, 2.0, 5.0, 0.5, 1.0, 1.0],
    };
    let p = source_decay(40.0, 3.0, schedule);
    let mut reference = Nsm::new(&p, 11, 2).unwrap();
    let want = totals_at(&mut reference, 0.3);
    let want_counts = reference.counts();

    let mut paused = Nsm::new(&p, 11, 2).unwrap();
    while paused.advance(0.3, 7).unwrap() == Advance::Paused {}
    assert_eq!(paused.totals(), want);
    assert_eq!(paused.counts(), want_counts);

    for t_cut in [0.05, 0.07, 0.1, 0.2] {
        let mut a = Nsm::new(&p, 11, 2).unwrap();
        totals_at(&mut a, t_cut);
        let bytes = a.checkpoint();
        let mut b = Nsm::restore(&p, &bytes).unwrap();
        assert_eq!(b.rate_factors(), a.rate_factors());
        assert_eq!(totals_at(&mut b, 0.3), want, "cut at {t_cut}");
        assert_eq!(b.counts(), want_counts);
    }
}

/// A factor that would overflow the propensity range is refused up front.
#[test]
fn huge_factors_are_refused_by_the_bound() {
    let schedule = RateSchedule {
        times: vec![1.0],
        factors: vec![1.0, 1e300],
    };
    let p = source_decay(1.0, 1.0, schedule);
    let nsm = Nsm::new(&p, 1, 0).unwrap();
    let err = nsm.check_propensity_bound().unwrap_err().to_string();
    assert!(err.contains("reaction 1"), "{err}");
}
