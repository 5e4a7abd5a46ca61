//! Deterministic fuzzing of every core input (cargo-fuzz needs nightly and
//! libFuzzer, which this environment cannot install; these seeded property
//! tests play the same role and run on stable in CI). Each target feeds random
//! and mutated inputs to the public API and requires that it never panics:
//! every bad input must come back as a `CoreError`.
//!
//! Iterations: `REDOXFIELD_FUZZ_ITERS` (default 3000 per target) and a wall-time
//! bound `REDOXFIELD_FUZZ_SECONDS` (default 20 s per target); the CI job runs
//! `REDOXFIELD_FUZZ_ITERS=100000000 REDOXFIELD_FUZZ_SECONDS=60` (bounded by time).
//! `FUZZ_TRACE=1` prints every opsplit input before it runs (to find a hang).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redoxfield_core::lattice::cubic_lattice;
use redoxfield_core::{
    ensemble_totals, ExactSolver, Molecules, MoleculesMethod, Nsm, OpSplit, OpSplitOptions,
    Problem, RateSchedule, Reaction, Stream, SubvolumeGraph,
};
use std::sync::atomic::{AtomicBool, Ordering};

fn budget() -> (u64, Duration) {
    let iters = std::env::var("REDOXFIELD_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let secs = std::env::var("REDOXFIELD_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    (iters, Duration::from_secs_f64(secs))
}

struct Gen(Stream);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        ((self.0.uniform() * n as f64) as u64).min(n.saturating_sub(1))
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.uniform() < p
    }
    /// A float that is usually sensible and sometimes hostile.
    fn float(&mut self) -> f64 {
        match self.below(12) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => 0.0,
            4 => 1e300,
            5 => f64::MIN_POSITIVE,
            6 => 1e-310,
            _ => self.0.exp1() * 10f64.powi(self.below(7) as i32 - 3),
        }
    }
    fn index(&mut self, n: usize) -> u32 {
        if self.chance(0.03) {
            (n + self.below(3) as usize) as u32 // out of range
        } else {
            self.below(n.max(1) as u64) as u32
        }
    }
}

fn random_problem(g: &mut Gen) -> Problem {
    let n = g.below(7) as usize + usize::from(g.chance(0.97));
    let s = g.below(4) as usize + usize::from(g.chance(0.97));
    let mut offsets = vec![0usize];
    let mut targets = Vec::new();
    for i in 0..n {
        for _ in 0..g.below(4) {
            let t = g.index(n) as usize;
            targets.push(if t == i && g.chance(0.9) {
                (t + 1) % n.max(1)
            } else {
                t
            } as u32);
        }
        offsets.push(targets.len());
    }
    if g.chance(0.03) && !offsets.is_empty() {
        let k = g.below(offsets.len() as u64) as usize;
        offsets[k] = offsets[k].wrapping_add(g.below(5) as usize).wrapping_sub(2);
    }
    let e = targets.len();
    let n_tclasses = g.below(3) as usize + 1;
    let sane = g.chance(0.5);
    let f = |g: &mut Gen| if sane { g.0.exp1() } else { g.float() };
    let volumes = (0..n).map(|_| f(g)).collect();
    let coupling = (0..e + usize::from(g.chance(0.02))).map(|_| f(g)).collect();
    let edge_class = (0..e).map(|_| g.index(n_tclasses)).collect();
    let tc = (0..n_tclasses * s + usize::from(g.chance(0.02)))
        .map(|_| f(g))
        .collect();
    let r = g.below(5) as usize;
    let reactions = (0..r)
        .map(|_| Reaction {
            reactants: (0..g.below(3) + u64::from(g.chance(0.02)))
                .map(|_| g.index(s))
                .collect(),
            products: (0..g.below(4)).map(|_| g.index(s)).collect(),
        })
        .collect();
    let n_rclasses = g.below(3) as usize + 1;
    let rate_class = (0..n + usize::from(g.chance(0.02)))
        .map(|_| g.index(n_rclasses))
        .collect();
    let rate_constants = (0..n_rclasses * r).map(|_| f(g)).collect();
    let initial_counts = (0..n * s + usize::from(g.chance(0.02)))
        .map(|_| match g.below(6) {
            0 => u32::MAX,
            1 => u32::MAX - 1,
            _ => g.below(50) as u32,
        })
        .collect();
    // A schedule in half the problems: mostly valid, sometimes with a
    // non-increasing time or a factor array of the wrong size.
    let schedule = if g.chance(0.5) {
        let k = g.below(4) as usize;
        let mut t = 0.0;
        let times = (0..k)
            .map(|_| {
                t += if g.chance(0.95) {
                    g.0.exp1() * 0.01
                } else {
                    -1.0
                };
                t
            })
            .collect();
        let factors = (0..k * r + usize::from(g.chance(0.03)))
            .map(|_| if g.chance(0.2) { 0.0 } else { f(g) })
            .collect();
        RateSchedule { times, factors }
    } else {
        RateSchedule::default()
    };
    // A storage layout in a third of the problems: mostly a permutation,
    // sometimes with a repeated or out-of-range entry, or one too long.
    let layout = if g.chance(0.33) {
        let mut order: Vec<u32> = (0..n as u32).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, g.below(k as u64 + 1) as usize);
        }
        if g.chance(0.05) && n > 1 {
            order[0] = order[1];
        }
        if g.chance(0.03) {
            order.push(g.below(2 * n as u64 + 1) as u32);
        }
        order
    } else {
        Vec::new()
    };
    Problem {
        n_species: s,
        graph: SubvolumeGraph {
            volumes,
            edge_offsets: offsets,
            edge_targets: targets,
            edge_coupling: coupling,
            edge_class,
        },
        transport_coefficients: tc,
        reactions,
        rate_class,
        rate_constants,
        initial_counts,
        schedule,
        layout,
    }
}

#[test]
fn fuzz_problem_validation_and_construction() {
    let (iters, limit) = budget();
    let start = Instant::now();
    let mut g = Gen(Stream::new(0xF022, 1));
    let (mut built, mut refused, mut ran) = (0u64, 0u64, 0u64);
    let mut molecules_ran = 0u64;
    let mut execs = 0u64;
    while execs < iters && start.elapsed() < limit {
        execs += 1;
        let p = random_problem(&mut g);
        let seed = g.below(1 << 20);
        // The molecules solver on the same input: a short run, its counts
        // and totals; every refusal an error, never a panic.
        let method = [
            MoleculesMethod::Auto,
            MoleculesMethod::Clocks,
            MoleculesMethod::Thinning,
        ][g.below(3) as usize];
        let molecules = catch_unwind(AssertUnwindSafe(|| {
            match Molecules::with_method(&p, seed, 0, method) {
                Err(_) => false,
                Ok(mut m) => {
                    let _ = m.advance(1.0, 2000);
                    let counts = m.counts();
                    let totals = m.totals();
                    for (sp, &t) in totals.iter().enumerate() {
                        let sum: u64 = counts
                            .iter()
                            .skip(sp)
                            .step_by(m.n_species())
                            .map(|&c| c as u64)
                            .sum();
                        assert_eq!(sum, t, "totals are the counts' sums");
                    }
                    true
                }
            }
        }));
        match molecules {
            Ok(r) => molecules_ran += u64::from(r),
            Err(_) => panic!("molecules solver panicked on input {execs}: {p:?}"),
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let _ = p.validate();
            match Nsm::new(&p, seed, 0) {
                Err(_) => (false, false),
                Ok(mut nsm) => {
                    if nsm.check_propensity_bound().is_err() {
                        return (true, false);
                    }
                    // A short run: overflow must be an error, never a panic.
                    let _ = nsm.advance(1.0, 2000);
                    let bytes = nsm.checkpoint();
                    let back = Nsm::restore(&p, &bytes).expect("own checkpoint restores");
                    assert_eq!(back.checkpoint(), bytes);
                    (true, true)
                }
            }
        }));
        match outcome {
            Ok((true, r)) => {
                built += 1;
                ran += u64::from(r);
            }
            Ok((false, _)) => refused += 1,
            Err(_) => panic!("panic on input {execs}: {p:?}"),
        }
    }
    println!(
        "fuzz_problem: {execs} executions, {built} built ({ran} run), {refused} refused; \
         molecules solver ran {molecules_ran}"
    );
    assert!(built > 0 && refused > 0 && molecules_ran > 0);
}

/// Runs `work` while a watchdog thread sets `cancel` (the flag Ctrl-C sets)
/// once 200 ms have passed, unless `work` returned before.
fn with_watchdog<R>(cancel: &AtomicBool, work: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let t0 = Instant::now();
            while !done.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_millis(200) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !done.load(Ordering::Relaxed) {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        let out = work();
        done.store(true, Ordering::Relaxed);
        out
    })
}

/// The approximate solver and the ensemble runner on the same random
/// problems, with random schedules, options and stop times: never a panic.
#[test]
fn fuzz_opsplit_and_ensemble() {
    let (iters, limit) = budget();
    let start = Instant::now();
    let mut g = Gen(Stream::new(0x0B5B, 3));
    let (mut built, mut refused, mut execs) = (0u64, 0u64, 0u64);
    while execs < iters && start.elapsed() < limit {
        execs += 1;
        let mut p = random_problem(&mut g);
        if g.chance(0.3) {
            let r = p.reactions.len();
            let k = g.below(3) as usize;
            let mut t = 0.0;
            let times: Vec<f64> = (0..k)
                .map(|_| {
                    t += if g.chance(0.1) {
                        g.float()
                    } else {
                        1e-4 * g.0.exp1()
                    };
                    t
                })
                .collect();
            let factors = (0..k * r + usize::from(g.chance(0.05)))
                .map(|_| {
                    if g.chance(0.9) {
                        2.0 * g.0.uniform()
                    } else {
                        g.float()
                    }
                })
                .collect();
            p.schedule = RateSchedule { times, factors };
        }
        let options = OpSplitOptions {
            tolerance: if g.chance(0.9) {
                0.5 * g.0.uniform() + 1e-3
            } else {
                g.float()
            },
            tau: match g.below(10) {
                0 => Some(g.float()),
                1..=3 => Some(1e-3 * g.0.uniform()),
                _ => None,
            },
            threads: g.below(3) as usize,
        };
        let seed = g.below(1 << 20);
        // With billions of molecules even a microsecond is a billion events of
        // legitimate work: such problems run for a picosecond (their overflow and
        // limit paths are what is fuzzed); others up to 2 ms or a hostile time.
        let huge = p.initial_counts.iter().any(|&c| c >= 1000);
        let stops: Vec<f64> = (0..3)
            .map(|_| match (huge, g.chance(0.9)) {
                (true, _) => 1e-12 * g.0.uniform(),
                (false, true) => 2e-3 * g.0.uniform(),
                (false, false) => g.float(),
            })
            .collect();
        if std::env::var("FUZZ_TRACE").is_ok() {
            eprintln!("{execs}: {p:?} {options:?} {stops:?}");
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let built = match OpSplit::new(&p, seed, 0, options.clone()) {
                Err(_) => false,
                Ok(mut s) => {
                    // One step of explosive autocatalysis is an SSA of ~1e9 events
                    // before its runaway bound: the watchdog's cancel ends it.
                    let flag = s.cancel_flag();
                    with_watchdog(&flag, || {
                        for &t in &stops {
                            let _ = s.advance(t, 200);
                        }
                    });
                    let _ = (
                        s.totals(),
                        s.counts(),
                        s.diffusion_events(),
                        s.total_events(),
                    );
                    true
                }
            };
            let cancel = AtomicBool::new(false);
            // Tiny stop times only: an exact run to 1e300 s (or of 1e10 molecules for
            // 1 s) is legitimately endless.
            let mut times: Vec<f64> = stops.iter().map(|t| t.abs().min(1e-6)).collect();
            times.sort_by(f64::total_cmp);
            if g.chance(0.1) {
                times.reverse();
            }
            if !huge {
                // Rates are hostile too (a 1e300 /s source is 4e9 exact events
                // before its count overflows): the watchdog cancels the run.
                with_watchdog(&cancel, || {
                    let solver = if g.chance(0.5) {
                        ExactSolver::Molecules(MoleculesMethod::Auto)
                    } else {
                        ExactSolver::Nsm
                    };
                    let _ =
                        ensemble_totals(&p, seed, &[0, 1], &times, &[vec![0]], 1, solver, &cancel);
                });
            }
            built
        }));
        match outcome {
            Ok(true) => built += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("panic on input {execs}: {p:?} {options:?} {stops:?}"),
        }
    }
    println!("fuzz_opsplit: {execs} executions, {built} built, {refused} refused");
    assert!(built > 0 && refused > 0);
}

#[test]
fn fuzz_checkpoint_decoding() {
    let (iters, limit) = budget();
    let start = Instant::now();
    let graph = cubic_lattice([3, 2, 2], 0.1);
    let n = graph.n_subvolumes();
    let p = Problem {
        n_species: 2,
        graph,
        transport_coefficients: vec![1.0, 0.3],
        reactions: vec![
            Reaction {
                reactants: vec![0, 0],
                products: vec![1],
            },
            Reaction {
                reactants: vec![],
                products: vec![0],
            },
            Reaction {
                reactants: vec![1],
                products: vec![],
            },
        ],
        rate_class: vec![0; n],
        rate_constants: vec![0.01, 50.0, 1.0],
        initial_counts: (0..2 * n as u32).collect(),
        schedule: Default::default(),
        layout: Vec::new(),
    };
    let mut base = Nsm::new(&p, 3, 0).unwrap();
    base.advance(0.2, u64::MAX).unwrap();
    let good = base.checkpoint();
    let mut g = Gen(Stream::new(0xC4EC, 2));
    let (mut ok, mut err, mut execs) = (0u64, 0u64, 0u64);
    while execs < iters && start.elapsed() < limit {
        execs += 1;
        let mut bytes = good.clone();
        match g.below(6) {
            0 => {
                let len = g.below(bytes.len() as u64 + 1) as usize;
                bytes.truncate(len);
            }
            1 => {
                for _ in 0..=g.below(8) {
                    let k = g.below(bytes.len() as u64) as usize;
                    bytes[k] ^= 1 << g.below(8);
                }
            }
            2 => {
                let len = g.below(400) as usize;
                bytes = (0..len).map(|_| g.below(256) as u8).collect();
            }
            3 => {
                // Header fields (dimensions, version, flags) with random values.
                let k = 8 + 8 * g.below(5) as usize;
                let v = match g.below(4) {
                    0 => u64::MAX,
                    1 => 1 << 62,
                    2 => 0,
                    _ => g.below(64),
                };
                bytes[k..k + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                // Mutate the body and fix the checksum, so that the value
                // checks behind it (times, counts, counters, rng) are reached.
                for _ in 0..=g.below(4) {
                    let k = 48 + g.below((bytes.len() - 56) as u64) as usize;
                    bytes[k] = g.below(256) as u8;
                }
                let body = bytes.len() - 8;
                let sum = checksum_of(&bytes[..body]);
                bytes[body..].copy_from_slice(&sum.to_le_bytes());
            }
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| match Nsm::restore(&p, &bytes) {
            Ok(mut nsm) => {
                let _ = nsm.advance(nsm.time() + 0.05, 5000);
                true
            }
            Err(_) => false,
        }));
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!("panic on checkpoint input {execs}: {bytes:?}"),
        }
    }
    println!("fuzz_checkpoint: {execs} executions, {ok} accepted, {err} refused");
    assert!(err > 0);
}

/// The checkpoint checksum, recomputed here through the public format: a
/// round trip through `checkpoint` of a restored solver would hide bugs, so
/// the function is re-derived from the documented definition.
fn checksum_of(bytes: &[u8]) -> u64 {
    use redoxfield_core::rng::splitmix64;
    let mut h = splitmix64(bytes.len() as u64 ^ 0x5EED_C0DE_CAFE_F00D);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = splitmix64(h ^ u64::from_le_bytes(w.try_into().unwrap()));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = splitmix64(h ^ u64::from_le_bytes(b) ^ 0xA5);
    }
    h
}
