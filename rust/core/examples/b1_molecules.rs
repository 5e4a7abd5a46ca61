//! B1 `h2o2-burst` (shared BENCHMARKS.md) on the molecules solver straight on
//! the core: `cargo run --release --example b1_molecules -- [seed] [nx ny nz] [t_end]`.

mod common;

use redoxfield_core::{Advance, Molecules};
use std::time::Instant;

fn main() {
    let (seed, shape, t_end) = common::seed_shape_t_end();
    let problem = common::b1_problem(shape);
    let n = problem.n_subvolumes();
    let mut solver = Molecules::new(&problem, seed, 0).expect("valid problem");
    let start = Instant::now();
    let cpu0 = common::cpu_seconds();
    while solver.advance(t_end, u64::MAX).unwrap() != Advance::Reached {}
    let wall = start.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let ev = solver.total_events();
    println!(
        "n={n} events={ev} diffusion={} reactions={:?} wall={wall:.3}s cpu={:.3}s events/s={:.3e} events/cpu-s={:.3e} totals={:?} bytes/subvolume={:.1} empty-buckets/event={:.2} slots={}",
        solver.diffusion_events()[0],
        solver.reaction_events(),
        cpu.unwrap_or(f64::NAN),
        ev as f64 / wall,
        ev as f64 / cpu.unwrap_or(f64::NAN),
        solver.totals(),
        solver.bytes_per_subvolume(),
        solver.empty_buckets_walked() as f64 / ev as f64,
        solver.capacity(),
    );
}
