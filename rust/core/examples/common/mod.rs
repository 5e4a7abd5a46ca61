//! The B1/B2 problem of the shared BENCHMARKS.md as core arrays, for the
//! examples that run it straight on the core (`b1` on the exact NSM,
//! `b1_opsplit` on the operator-splitting solver).

use redoxfield_core::lattice::{cubic_lattice, voxel_index};
use redoxfield_core::{Problem, Reaction};

const AVOGADRO: f64 = 6.022_140_76e23;

/// Species 0 H2O2 (D 1000 µm²/s), 1 Prx, 2 PrxOx (immobile) on a cubic
/// lattice of `shape` voxels: H2O2 + Prx -> PrxOx at 1e7 /(M s), PrxOx -> Prx
/// at 10 /s, a 41.5 µM/s H2O2 source in the slab x < 0.5 µm, Prx 20 µM.
pub fn b1_problem(shape: [usize; 3]) -> Problem {
    let h = 0.1; // µm
    let graph = cubic_lattice(shape, h);
    let n = graph.n_subvolumes();
    let v_litre = h * h * h * 1e-15;
    let k_ox = 1e7 / (AVOGADRO * v_litre); // 1/(M s) -> per pair per s
    let k_red = 10.0;
    let source = 41.5e-6 * AVOGADRO * v_litre; // µM/s -> molecules/s per voxel
    let mut rate_class = vec![0u32; n];
    for z in 0..shape[2] {
        for y in 0..shape[1] {
            for x in (0..shape[0]).filter(|&x| (x as f64 + 0.5) * h < 0.5) {
                rate_class[voxel_index(shape, x, y, z)] = 1;
            }
        }
    }
    let prx = (20e-6 * AVOGADRO * v_litre).round() as u32;
    let mut counts = vec![0u32; n * 3];
    for i in 0..n {
        counts[i * 3 + 1] = prx;
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
        rate_constants: vec![k_ox, k_red, 0.0, k_ox, k_red, source],
        initial_counts: counts,
        schedule: Default::default(),
        layout: Vec::new(),
    }
}

/// `[seed] [nx ny nz] [t_end]` from the command line (defaults 1, B1's
/// 40 x 40 x 40, 0.05 s).
#[allow(dead_code)] // the opsplit example has arguments of its own
pub fn seed_shape_t_end() -> (u64, [usize; 3], f64) {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).map_or(1, |a| a.parse().unwrap());
    let shape = if args.len() >= 5 {
        [
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        ]
    } else {
        [40, 40, 40]
    };
    let t_end: f64 = args.get(5).map_or(0.05, |a| a.parse().unwrap());
    (seed, shape, t_end)
}

/// CPU time of this thread so far (Linux: /proc/thread-self/schedstat, ns
/// on the CPU); None elsewhere.
#[allow(dead_code)] // not every example times itself
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}
