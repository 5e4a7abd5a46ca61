//! B1/B2 (shared BENCHMARKS.md) on the operator-splitting solver, straight on
//! the core: `cargo run --release --example b1_opsplit -- [seed] [threads]
//! [tolerance] [nx ny nz] [t_end]`. Prints totals and a coarse x-profile of
//! H2O2 for comparison with the `b1` example (the exact NSM).

mod common;

use redoxfield_core::{OpSplit, OpSplitOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).map_or(1, |a| a.parse().unwrap());
    let threads: usize = args.get(2).map_or(0, |a| a.parse().unwrap());
    let tolerance: f64 = args.get(3).map_or(0.01, |a| a.parse().unwrap());
    let shape = if args.len() >= 7 {
        [
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
            args[6].parse().unwrap(),
        ]
    } else {
        [40, 40, 40]
    };
    let t_end: f64 = args.get(7).map_or(0.05, |a| a.parse().unwrap());
    let problem = common::b1_problem(shape);
    let n = problem.n_subvolumes();
    let options = OpSplitOptions {
        tolerance,
        threads,
        ..OpSplitOptions::default()
    };
    let mut solver = OpSplit::new(&problem, seed, 0, options).expect("valid problem");
    let start = Instant::now();
    solver.advance(t_end, u64::MAX).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let c = solver.counts();
    let mut profile = vec![0u64; shape[0].div_ceil(5)];
    for i in 0..n {
        profile[(i % shape[0]) / 5] += u64::from(c[i * 3]);
    }
    println!(
        "n={n} threads={} steps={} ssa_runs={} tau={:?} wall={wall:.3}s events={} ({:.3e}/s) totals={:?} \
         bytes/subvolume={:.1} x-profile(0.5um bins)={profile:?}",
        solver.threads(),
        solver.steps(),
        solver.ssa_runs(),
        solver.tau_range(),
        solver.total_events(),
        solver.total_events() as f64 / wall,
        solver.totals(),
        solver.bytes_per_subvolume()
    );
}
