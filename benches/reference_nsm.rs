//! A minimal exact next-subvolume method for B1 (`h2o2-burst`, shared
//! BENCHMARKS.md), written with nothing but std and none of redoxfield's
//! code: the yardstick that issue #2 and #7 measure the engine against
//! ("an independent minimal kernel reaches 13-16 M events per CPU-second").
//!
//! It knows one problem only: a cubic lattice, H2O2 the one mobile species,
//! H2O2 + Prx -> PrxOx, PrxOx -> Prx, a source in the slab x < 0.5 µm. One
//! propensity per voxel, one indexed binary heap of next times (Elf &
//! Ehrenberg 2004), the destination's time rescaled (Gibson & Bruck 2000),
//! exponentials by -ln(u). `bench_nsm.py --reference` builds it with
//! `rustc -O` and runs it beside the engine, so that the ratio between the
//! two is free of this machine's slow phases.
//!
//! Usage: `reference_nsm SEED NX NY NZ T_END` (h = 0.1 µm); prints one line
//! of `key=value` pairs. tests/test_reference_kernel.py checks the engine's
//! statistics against it.

use std::time::Instant;

const AVOGADRO: f64 = 6.022_140_76e23;

struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 seeding (Vigna), as usual for xoshiro.
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// xoshiro256++ (Blackman & Vigna 2018).
    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    /// Uniform on [0, 1).
    #[inline(always)]
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential with mean 1.
    #[inline(always)]
    fn exp1(&mut self) -> f64 {
        -(1.0 - self.uniform()).ln()
    }
}

/// Indexed binary min-heap of voxel next-event times, the time kept in the
/// heap entry (one read per level) and idle voxels (time +inf) left out.
struct Heap {
    time: Vec<f64>,
    heap: Vec<(f64, u32)>,
    /// Heap slot of each voxel; u32::MAX when idle.
    pos: Vec<u32>,
}

const IDLE: u32 = u32::MAX;

impl Heap {
    fn new(time: Vec<f64>) -> Self {
        let n = time.len();
        let mut h = Heap {
            time: vec![f64::INFINITY; n],
            heap: Vec::with_capacity(n),
            pos: vec![IDLE; n],
        };
        for (i, t) in time.into_iter().enumerate() {
            h.set(i, t);
        }
        h
    }

    #[inline(always)]
    fn place(&mut self, k: usize, e: (f64, u32)) {
        self.heap[k] = e;
        self.pos[e.1 as usize] = k as u32;
    }

    fn up(&mut self, mut k: usize) {
        let e = self.heap[k];
        while k > 0 {
            let p = (k - 1) / 2;
            if e.0 < self.heap[p].0 {
                let pe = self.heap[p];
                self.place(k, pe);
                k = p;
            } else {
                break;
            }
        }
        self.place(k, e);
    }

    fn down(&mut self, mut k: usize) {
        let n = self.heap.len();
        let e = self.heap[k];
        loop {
            let l = 2 * k + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap[r].0 < self.heap[l].0 {
                r
            } else {
                l
            };
            if self.heap[c].0 < e.0 {
                let ce = self.heap[c];
                self.place(k, ce);
                k = c;
            } else {
                break;
            }
        }
        self.place(k, e);
    }

    #[inline(always)]
    fn set(&mut self, id: usize, t: f64) {
        let old = self.time[id];
        self.time[id] = t;
        let k = self.pos[id];
        if k == IDLE {
            if t.is_finite() {
                self.heap.push((t, id as u32));
                let k = self.heap.len() - 1;
                self.up(k);
            }
            return;
        }
        let k = k as usize;
        if !t.is_finite() {
            // Out: the last entry takes its slot.
            self.pos[id] = IDLE;
            let last = self.heap.pop().expect("id is in the heap");
            if k < self.heap.len() {
                self.heap[k] = last;
                self.pos[last.1 as usize] = k as u32;
                self.up(k);
                let k = self.pos[last.1 as usize] as usize;
                self.down(k);
            }
            return;
        }
        self.heap[k].0 = t;
        if t < old {
            self.up(k);
        } else {
            self.down(k);
        }
    }

    #[inline(always)]
    fn top(&self) -> (f64, usize) {
        self.heap
            .first()
            .map_or((f64::INFINITY, 0), |&(t, id)| (t, id as usize))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: usize, d: f64| args.get(k).map_or(d, |a| a.parse().expect("a number"));
    let seed = arg(1, 1.0) as u64;
    let (nx, ny, nz) = (
        arg(2, 40.0) as usize,
        arg(3, 40.0) as usize,
        arg(4, 40.0) as usize,
    );
    let t_end = arg(5, 0.05);
    let n = nx * ny * nz;

    // B1 in per-voxel units (BENCHMARKS.md).
    let h = 0.1; // µm
    let v_litre = h * h * h * 1e-15;
    let d = 1000.0 / (h * h); // per molecule per face, 1/s
    let k_ox = 1e7 / (AVOGADRO * v_litre); // per pair, 1/s
    let k_red = 10.0;
    let k_src = 41.5e-6 * AVOGADRO * v_litre;

    let idx = |x: usize, y: usize, z: usize| (z * ny + y) * nx + x;
    // Up to six neighbour offsets per voxel, reflecting walls (fewer faces).
    let mut nbr = vec![0i32; n * 6];
    let mut n_nbr = vec![0u8; n];
    let mut src = vec![0.0f64; n];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = idx(x, y, z);
                let mut c = 0;
                let mut add = |j: usize| {
                    nbr[i * 6 + c] = j as i32 - i as i32;
                    c += 1;
                };
                if x > 0 {
                    add(idx(x - 1, y, z));
                }
                if x + 1 < nx {
                    add(idx(x + 1, y, z));
                }
                if y > 0 {
                    add(idx(x, y - 1, z));
                }
                if y + 1 < ny {
                    add(idx(x, y + 1, z));
                }
                if z > 0 {
                    add(idx(x, y, z - 1));
                }
                if z + 1 < nz {
                    add(idx(x, y, z + 1));
                }
                n_nbr[i] = c as u8;
                if (x as f64 + 0.5) * h < 0.5 {
                    src[i] = k_src;
                }
            }
        }
    }
    let prx0 = (20e-6 * AVOGADRO * v_litre).round() as u32;
    let mut h2o2 = vec![0u32; n];
    let mut prx = vec![prx0; n];
    let mut ox = vec![0u32; n];

    // Two groups per voxel, each with its own heap (the split most NSM
    // codes make when rates differ by orders): the fast one moves with
    // H2O2 (hops, oxidation), the slow one is the source and the reduction.
    let fast = |i: usize, h2o2: &[u32], prx: &[u32]| {
        h2o2[i] as f64 * (d * n_nbr[i] as f64 + k_ox * prx[i] as f64)
    };
    let slow = |i: usize, ox: &[u32]| src[i] + k_red * ox[i] as f64;
    let mut rng = Rng::new(seed);
    let mut a_slow: Vec<f64> = (0..n).map(|i| slow(i, &ox)).collect();
    let slow_times = a_slow
        .iter()
        .map(|&ai| {
            if ai > 0.0 {
                rng.exp1() / ai
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let mut slow_heap = Heap::new(slow_times);
    let mut fast_heap = Heap::new(vec![f64::INFINITY; n]);
    let mut a_fast = vec![0.0f64; n];
    // Rescale a pending time for a new propensity (exact by memorylessness).
    let rescale = |rng: &mut Rng, t: f64, t_old: f64, a_old: f64, a_new: f64| {
        if a_new <= 0.0 {
            f64::INFINITY
        } else if a_old > 0.0 && t_old.is_finite() {
            t + (t_old - t) * (a_old / a_new)
        } else {
            t + rng.exp1() / a_new
        }
    };

    let (mut hops, mut oxidations, mut reductions, mut births) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    loop {
        let (tf, i) = fast_heap.top();
        let (ts, is) = slow_heap.top();
        if tf.min(ts) > t_end {
            break;
        }
        if tf <= ts {
            let t = tf;
            let nh = h2o2[i] as f64;
            let a_hop = nh * d * n_nbr[i] as f64;
            let u = rng.uniform() * a_fast[i];
            if u < a_hop {
                // Reuse u to choose the face: uniform on [0, n_nbr).
                let f = ((u / (nh * d)) as usize).min(n_nbr[i] as usize - 1);
                let j = (i as i32 + nbr[i * 6 + f]) as usize;
                h2o2[i] -= 1;
                h2o2[j] += 1;
                hops += 1;
                let a_old = a_fast[j];
                a_fast[j] = fast(j, &h2o2, &prx);
                let next = rescale(&mut rng, t, fast_heap.time[j], a_old, a_fast[j]);
                fast_heap.set(j, next);
            } else {
                h2o2[i] -= 1;
                prx[i] -= 1;
                ox[i] += 1;
                oxidations += 1;
                let a_old = a_slow[i];
                a_slow[i] = slow(i, &ox);
                let next = rescale(&mut rng, t, slow_heap.time[i], a_old, a_slow[i]);
                slow_heap.set(i, next);
            }
            a_fast[i] = fast(i, &h2o2, &prx);
            let next = if a_fast[i] > 0.0 {
                t + rng.exp1() / a_fast[i]
            } else {
                f64::INFINITY
            };
            fast_heap.set(i, next);
        } else {
            let (t, i) = (ts, is);
            let u = rng.uniform() * a_slow[i];
            if u < src[i] {
                h2o2[i] += 1;
                births += 1;
            } else {
                ox[i] -= 1;
                prx[i] += 1;
                reductions += 1;
            }
            a_slow[i] = slow(i, &ox);
            let next = if a_slow[i] > 0.0 {
                t + rng.exp1() / a_slow[i]
            } else {
                f64::INFINITY
            };
            slow_heap.set(i, next);
            let a_old = a_fast[i];
            a_fast[i] = fast(i, &h2o2, &prx);
            let next = rescale(&mut rng, t, fast_heap.time[i], a_old, a_fast[i]);
            fast_heap.set(i, next);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map_or(wall, |(b, a)| b - a);
    let events = hops + oxidations + reductions + births;
    let total = |v: &[u32]| v.iter().map(|&c| c as u64).sum::<u64>();
    println!(
        "events={events} diffusion={hops} oxidations={oxidations} reductions={reductions} births={births} cpu_s={cpu:.4} wall_s={wall:.4} events_per_cpu_s={:.4e} H2O2={} Prx={} PrxOx={}",
        events as f64 / cpu,
        total(&h2o2),
        total(&prx),
        total(&ox),
    );
}

/// CPU time of this thread (Linux: /proc/thread-self/schedstat, ns on the
/// CPU); None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}
