//! B1 `h2o2-burst` (shared BENCHMARKS.md) straight on the core, for profiling
//! without Python: `cargo run --release --example b1 -- [seed] [nx ny nz] [t_end]`.

use redoxfield_core::lattice::cubic_lattice;
use redoxfield_core::{Advance, Nsm, Problem, Reaction};
use std::time::Instant;

const AVOGADRO: f64 = 6.022_140_76e23;

fn main() {
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
    let h = 0.1; // µm
    let graph = cubic_lattice(shape, h);
    let n = graph.n_subvolumes();
    let v_litre = h * h * h * 1e-15;
    // Species 0 H2O2 (D 1000 µm²/s), 1 Prx, 2 PrxOx (immobile).
    let k_ox = 1e7 / (AVOGADRO * v_litre); // 1/(M s) -> per pair per s
    let k_red = 10.0;
    let source = 41.5e-6 * AVOGADRO * v_litre; // µM/s -> molecules/s per voxel
    let mut rate_class = vec![0u32; n];
    for z in 0..shape[2] {
        for y in 0..shape[1] {
            for x in 0..shape[0] {
                if (x as f64 + 0.5) * h < 0.5 {
                    rate_class[x + shape[0] * (y + shape[1] * z)] = 1;
                }
            }
        }
    }
    let prx = (20e-6 * AVOGADRO * v_litre).round() as u32;
    let mut counts = vec![0u32; n * 3];
    for i in 0..n {
        counts[i * 3 + 1] = prx;
    }
    let problem = Problem {
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
    };
    let mut nsm = Nsm::new(&problem, seed, 0).expect("valid problem");
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    while nsm.advance(t_end, u64::MAX).unwrap() != Advance::Reached {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let ev = nsm.total_events();
    let totals = nsm.totals();
    println!(
        "n={n} events={ev} diffusion={} reactions={:?} wall={wall:.3}s cpu={:.3}s events/s={:.3e} events/cpu-s={:.3e} totals={totals:?} bytes/subvolume={:.1}",
        nsm.diffusion_events()[0],
        nsm.reaction_events(),
        cpu.unwrap_or(f64::NAN),
        ev as f64 / wall,
        ev as f64 / cpu.unwrap_or(f64::NAN),
        nsm.bytes_per_subvolume()
    );
}

/// CPU time of this thread so far (Linux: /proc/thread-self/schedstat, ns
/// on the CPU); None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}
