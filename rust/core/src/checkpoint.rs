//! Checkpoints of the exact NSM state, and the propensity bound.
//!
//! This file is a child module of `nsm` (declared at the end of nsm.rs) so that
//! it can read the solver's private state without widening its visibility.
//!
//! # What a checkpoint holds, and why that is enough for a bitwise resume
//!
//! The future of an NSM trajectory is a function of: the counts, the tentative
//! next-event time of every subvolume, the generator state, the current time
//! and the event counters. The calendar queue is *not* part of the state:
//! `CalendarQueue::peek` returns the exact minimum (time, id) with ties broken
//! by id, whatever the bucket width, tuning history or where an entry sits
//! (fine bucket, coarse list or heap; see calendar.rs and its
//! `always_returns_exact_minimum` test), so a queue rebuilt from the saved times
//! fires the same events in the same order. The prefetch hint only prefetches.
//! Per-site data (rates, channels) follow deterministically from the `Problem`,
//! which the caller passes again; a fingerprint of that compiled data is stored
//! so that a checkpoint is never resumed on a different problem.
//!
//! # Format (version 2, little-endian)
//!
//! ```text
//! offset  size     field
//! 0       8        magic b"RDXFCKPT"
//! 8       4        format version (2)
//! 12      4        flags (0)
//! 16      8        n_subvolumes N
//! 24      8        n_species S
//! 32      8        n_reactions R
//! 40      8        fingerprint of the compiled problem
//! 48      8        time (f64 bits)
//! 56      8        total events
//! 64      32       Xoshiro256++ state
//! 96      8 S      diffusion events per species
//!         8 R      reaction events per reaction
//!         4 N S    counts, (N, S) row-major
//!         8 N      next-event time per subvolume, fast group (f64 bits; +inf = none)
//!         8 N      next-event time per subvolume, static group (reactions
//!                  with no mobile reactant; f64 bits; +inf = none)
//!         8        checksum of every byte before it
//! ```
//!
//! Version 1 (one time per subvolume, before the static group existed) is
//! refused with a message: its times cannot be split between the groups
//! without new random numbers.
//!
//! ```text
//! ```
//!
//! Decoding never panics and never allocates more than the input's length
//! implies: the length is checked against N, S, R (with overflow-checked
//! arithmetic) before anything else is read; every value is then checked
//! (checksum, dimensions, fingerprint, finite non-negative times not before
//! the current time, a finite time exactly where the propensity is positive).
//! The checksum detects corruption (truncation, bit flips); it is not a
//! cryptographic signature.

use super::{Nsm, C0, SITE};
use crate::calendar::{CalendarQueue, Store, IN_HEAP};
use crate::error::{invalid, CoreError};
use crate::problem::Problem;
use crate::queue::EventQueue;
use crate::rng::{splitmix64, Stream};

const MAGIC: [u8; 8] = *b"RDXFCKPT";
const HEADER: usize = 96;

/// 64-bit hash of a byte string (SplitMix64 over 8-byte words, length mixed
/// in): corruption detection, not security.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = splitmix64(bytes.len() as u64 ^ 0x5EED_C0DE_CAFE_F00D);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = splitmix64(h ^ u64::from_le_bytes(b));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = splitmix64(h ^ u64::from_le_bytes(b) ^ 0xA5);
    }
    h
}

/// Incremental fingerprint of numbers.
struct Fingerprint(u64);

impl Fingerprint {
    fn add(&mut self, v: u64) {
        self.0 = splitmix64(self.0 ^ v);
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => invalid("checkpoint is truncated"),
        }
    }
    fn u32(&mut self) -> Result<u32, CoreError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, CoreError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

/// Byte length of a version-2 checkpoint of these dimensions (None on overflow).
pub fn checkpoint_len(n: u64, s: u64, r: u64) -> Option<usize> {
    let ns = n.checked_mul(s)?;
    let body = s
        .checked_mul(8)?
        .checked_add(r.checked_mul(8)?)?
        .checked_add(ns.checked_mul(4)?)?
        .checked_add(n.checked_mul(16)?)?;
    let total = body.checked_add(HEADER as u64 + 8)?;
    usize::try_from(total).ok()
}

/// The decoded, checksummed content of a checkpoint (values not yet checked
/// against a problem).
struct Decoded<'a> {
    n: usize,
    s: usize,
    r: usize,
    fingerprint: u64,
    time: f64,
    total_events: u64,
    rng: [u8; 32],
    diffusion_events: Vec<u64>,
    reaction_events: Vec<u64>,
    counts: &'a [u8],
    times: &'a [u8],
    static_times: &'a [u8],
}

fn decode(bytes: &[u8]) -> Result<Decoded<'_>, CoreError> {
    if bytes.len() < HEADER + 8 {
        return invalid(format!(
            "checkpoint is truncated ({} bytes; a header alone is {})",
            bytes.len(),
            HEADER + 8
        ));
    }
    let mut rd = Reader { bytes, pos: 0 };
    if rd.take(8)? != MAGIC {
        return invalid("not a redoxfield checkpoint (bad magic bytes)");
    }
    let version = rd.u32()?;
    if version != Nsm::CHECKPOINT_VERSION {
        return invalid(format!(
            "checkpoint format version {version} is not supported (this build reads version {})",
            Nsm::CHECKPOINT_VERSION
        ));
    }
    let flags = rd.u32()?;
    let (n, s, r) = (rd.u64()?, rd.u64()?, rd.u64()?);
    let expected = checkpoint_len(n, s, r);
    if expected != Some(bytes.len()) {
        return invalid(format!(
            "checkpoint has {} bytes but its header (N = {n}, S = {s}, R = {r}) implies {}",
            bytes.len(),
            expected.map_or_else(|| "an impossible size".to_string(), |e| e.to_string())
        ));
    }
    let body_end = bytes.len() - 8;
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&bytes[body_end..]);
    if checksum(&bytes[..body_end]) != u64::from_le_bytes(tail) {
        return invalid("checkpoint checksum mismatch: the checkpoint is corrupt");
    }
    if flags != 0 {
        return invalid(format!("checkpoint flags {flags:#x} are not supported"));
    }
    // The length check bounds n, s, r by bytes.len(), so these fit in usize.
    let (n, s, r) = (n as usize, s as usize, r as usize);
    let fingerprint = rd.u64()?;
    let time = f64::from_bits(rd.u64()?);
    let total_events = rd.u64()?;
    let mut rng = [0u8; 32];
    rng.copy_from_slice(rd.take(32)?);
    let diffusion_events = (0..s).map(|_| rd.u64()).collect::<Result<Vec<_>, _>>()?;
    let reaction_events = (0..r).map(|_| rd.u64()).collect::<Result<Vec<_>, _>>()?;
    let counts = rd.take(n * s * 4)?;
    let times = rd.take(n * 8)?;
    let static_times = rd.take(n * 8)?;
    Ok(Decoded {
        n,
        s,
        r,
        fingerprint,
        time,
        total_events,
        rng,
        diffusion_events,
        reaction_events,
        counts,
        times,
        static_times,
    })
}

fn le_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    u32::from_le_bytes(w)
}

fn le_f64(b: &[u8]) -> f64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    f64::from_bits(u64::from_le_bytes(w))
}

impl Nsm {
    /// Version of the checkpoint format written by `checkpoint`.
    pub const CHECKPOINT_VERSION: u32 = 2;

    /// A fingerprint of everything the dynamics depend on besides the state:
    /// dimensions, per-site transport rates and edges, reaction channels and
    /// net changes, and the site of every subvolume.
    pub fn problem_fingerprint(&self) -> u64 {
        let mut f = Fingerprint(0x7EDD_0F1E_1D00_0001);
        f.add(self.n_subvolumes as u64);
        f.add(self.n_species as u64);
        f.add(self.reaction_events.len() as u64);
        for site in &self.sites {
            f.add(u64::from(site.edge_start) | u64::from(site.edge_end) << 32);
            f.add(u64::from(site.channel_start) | u64::from(site.channel_end) << 32);
            f.add(u64::from(site.channel_mid));
        }
        for &x in self
            .site_diff_rate
            .iter()
            .chain(&self.edge_rates)
            .chain(&self.uniform_edge_inv)
        {
            f.add(x.to_bits());
        }
        for e in &self.edges {
            f.add(e.delta as u64);
        }
        for (ch, base) in self.channels.iter().zip(&self.channel_base) {
            f.add(base.to_bits());
            f.add(ch.dimer.to_bits());
            f.add(u64::from(ch.a) | u64::from(ch.b) << 32);
            f.add(u64::from(ch.reaction));
        }
        for (&sp, &d) in self.change_species.iter().zip(&self.change_delta) {
            f.add(u64::from(sp) ^ (d as u64).rotate_left(32));
        }
        for &o in &self.change_offsets {
            f.add(o as u64);
        }
        let cells = self.rec.cells();
        for i in 0..self.n_subvolumes {
            f.add(u64::from(cells[i * self.stride + SITE]));
        }
        // Only when present, so that schedule-free fingerprints stay as they were.
        for &x in self.schedule.times.iter().chain(&self.schedule.factors) {
            f.add(x.to_bits());
        }
        f.0
    }

    /// The full solver state as bytes (format in the module docs). Taken
    /// between events (`advance` returned), it resumes bitwise: see `restore`.
    pub fn checkpoint(&self) -> Vec<u8> {
        let (n, s, r) = (
            self.n_subvolumes,
            self.n_species,
            self.reaction_events.len(),
        );
        let len = checkpoint_len(n as u64, s as u64, r as u64).unwrap_or(0);
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&Self::CHECKPOINT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [n as u64, s as u64, r as u64, self.problem_fingerprint()] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.time.to_bits().to_le_bytes());
        out.extend_from_slice(&self.total_events.to_le_bytes());
        out.extend_from_slice(&self.rng.state());
        for &v in self.diffusion_events.iter().chain(&self.reaction_events) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let cells = self.rec.cells();
        for row in cells.chunks_exact(self.stride).take(n) {
            for &c in &row[C0..C0 + s] {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        for i in 0..n {
            out.extend_from_slice(&self.rec.time(i).to_bits().to_le_bytes());
        }
        for i in 0..n {
            out.extend_from_slice(&self.static_queue.time_of(i).to_bits().to_le_bytes());
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// The solver of `problem` in the state saved by `checkpoint`. The problem
    /// must be the one the checkpoint was taken from (its initial counts are
    /// ignored); anything else, and any corrupt or hand-made checkpoint that
    /// is not a reachable state, gives `InvalidInput` naming what is wrong.
    pub fn restore(problem: &Problem, bytes: &[u8]) -> Result<Self, CoreError> {
        let d = decode(bytes)?;
        let mut nsm = Nsm::new(problem, 0, 0)?;
        nsm.check_propensity_bound()?;
        let (n, s, r) = (nsm.n_subvolumes, nsm.n_species, nsm.reaction_events.len());
        if (d.n, d.s, d.r) != (n, s, r) {
            return invalid(format!(
                "checkpoint is of a problem with {} subvolumes, {} species and {} reactions, \
                 not {n}, {s} and {r}",
                d.n, d.s, d.r
            ));
        }
        if d.fingerprint != nsm.problem_fingerprint() {
            return invalid(
                "checkpoint was taken from a different problem (geometry, transport or \
                 reaction constants differ)",
            );
        }
        if !d.time.is_finite() || d.time < 0.0 {
            return invalid(format!(
                "checkpoint time {} is not finite and non-negative",
                d.time
            ));
        }
        let Some(rng) = Stream::from_state(d.rng) else {
            return invalid("checkpoint generator state is all zero (unreachable)");
        };
        let event_sum = d
            .diffusion_events
            .iter()
            .chain(&d.reaction_events)
            .try_fold(0u64, |acc, &v| acc.checked_add(v));
        if event_sum != Some(d.total_events) {
            return invalid("checkpoint event counters do not add up to its total");
        }
        let factors = nsm.schedule.factors_at(d.time, r);
        nsm.set_factors(&factors);
        let stride = nsm.stride;
        {
            let cells = nsm.rec.cells_mut();
            for (row, src) in cells
                .chunks_exact_mut(stride)
                .zip(d.counts.chunks_exact(4 * s))
                .take(n)
            {
                for (k, c) in src.chunks_exact(4).enumerate() {
                    row[C0 + k] = le_u32(c);
                }
            }
        }
        // A next time is +inf exactly when its group's propensity is 0 (the
        // hot loop relies on it), else finite and not before the current time.
        let reachable = |t: f64, a: f64| {
            (t == f64::INFINITY && a == 0.0) || (t.is_finite() && t >= d.time && a > 0.0)
        };
        let mut total_rate = 0.0;
        let mut static_times = vec![f64::INFINITY; n];
        for (i, static_time) in static_times.iter_mut().enumerate() {
            let t = le_f64(&d.times[i * 8..i * 8 + 8]);
            let (ad, ar) = nsm.propensities::<0, false>(i * stride);
            let a = ad + ar;
            let ts = le_f64(&d.static_times[i * 8..i * 8 + 8]);
            let a_static = nsm.static_propensity::<0>(i * stride);
            if !(a + a_static).is_finite() {
                return invalid(format!(
                    "checkpoint: the total propensity of subvolume {} is not finite",
                    nsm.external_id(i)
                ));
            }
            total_rate += a;
            for (what, t, a) in [("", t, a), ("static ", ts, a_static)] {
                if !reachable(t, a) {
                    return invalid(format!(
                        "checkpoint: {what}next-event time {t} of subvolume {} is not \
                         reachable (time {}, propensity {a})",
                        nsm.external_id(i),
                        d.time
                    ));
                }
            }
            nsm.rec.set(i, t, IN_HEAP);
            *static_time = ts;
        }
        nsm.static_queue = EventQueue::build(&static_times);
        nsm.queue = CalendarQueue::build_with_rate(n, &mut nsm.rec, total_rate);
        nsm.rng = rng;
        nsm.time = d.time;
        nsm.total_events = d.total_events;
        nsm.diffusion_events = d.diffusion_events;
        nsm.reaction_events = d.reaction_events;
        Ok(nsm)
    }

    /// Refuse a problem whose propensities could overflow during a run: with
    /// every count at its limit (u32::MAX), each subvolume's total propensity
    /// sum(c * M^2) + sum(M * d_s) must stay below f64::MAX / 4. Then no
    /// propensity computed during any run is infinite or NaN. The message
    /// names the subvolume and the largest term.
    pub fn check_propensity_bound(&self) -> Result<(), CoreError> {
        let m = f64::from(u32::MAX);
        let limit = f64::MAX / 4.0;
        let s = self.n_species;
        let max_factor = self.schedule.max_factors(self.reaction_events.len());
        let mut checked = vec![false; self.sites.len()];
        let cells = self.rec.cells();
        for i in 0..self.n_subvolumes {
            let site_id = cells[i * self.stride + SITE] as usize;
            if std::mem::replace(&mut checked[site_id], true) {
                continue;
            }
            let site = &self.sites[site_id];
            let mut bound = 0.0;
            let mut worst = (0.0, String::new());
            for (sp, &d) in self.site_diff_rate[site_id * s..(site_id + 1) * s]
                .iter()
                .enumerate()
            {
                let term = m * d;
                bound += term;
                if term > worst.0 || !term.is_finite() {
                    worst = (term, format!("transport of species {sp}"));
                }
            }
            let range = site.channel_start as usize..site.channel_end as usize;
            for (ch, &base) in self.channels[range.clone()]
                .iter()
                .zip(&self.channel_base[range])
            {
                let xa = if ch.a as usize == C0 + s { 1.0 } else { m };
                let xb = if ch.b as usize == C0 + s { 1.0 } else { m };
                let term = base * max_factor[ch.reaction as usize] * xa * xb;
                bound += term;
                if term > worst.0 || !term.is_finite() {
                    worst = (term, format!("reaction {}", ch.reaction));
                }
            }
            if bound.is_nan() || bound >= limit {
                return invalid(format!(
                    "propensity overflow: in subvolume {} the total propensity could reach \
                     {bound:e} /s (largest term: {} with {:e} /s at the count limit of {} \
                     molecules), beyond the floating-point range; a rate constant or a \
                     transport coefficient is far too large",
                    self.external_id(i),
                    worst.1,
                    worst.0,
                    u32::MAX
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::cubic_lattice;
    use crate::nsm::Advance;
    use crate::problem::Reaction;

    fn problem(shape: [usize; 3]) -> Problem {
        let graph = cubic_lattice(shape, 0.1);
        let n = graph.n_subvolumes();
        let mut counts = vec![0u32; n * 3];
        for i in 0..n {
            counts[i * 3] = (i % 7) as u32 * 3;
            counts[i * 3 + 1] = 20;
        }
        Problem {
            n_species: 3,
            graph,
            transport_coefficients: vec![1.0, 0.0, 0.2],
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
                Reaction {
                    reactants: vec![0],
                    products: vec![],
                },
            ],
            rate_class: vec![0; n],
            rate_constants: vec![0.05, 3.0, 40.0, 1.0],
            initial_counts: counts,
            schedule: Default::default(),
            layout: Vec::new(),
        }
    }

    /// Interrupt after a pseudo-random number of events, checkpoint, restore
    /// into a fresh solver and compare every later sample with the run that
    /// was never interrupted: identical counts, times and counters.
    #[test]
    fn resume_is_bitwise_identical() {
        let p = problem([6, 5, 4]);
        let samples: Vec<f64> = (1..=20).map(|k| k as f64 * 0.05).collect();
        let mut reference = Nsm::new(&p, 9, 1).unwrap();
        let mut expect = Vec::new();
        for &t in &samples {
            reference.advance(t, u64::MAX).unwrap();
            expect.push((reference.counts(), reference.total_events()));
        }
        for cut in [1u64, 17, 1234, 20_011] {
            let mut a = Nsm::new(&p, 9, 1).unwrap();
            let mut k = 0;
            // Run to the cut (an event count, mid-interval), checkpoint there.
            let mut left = cut;
            while k < samples.len() {
                let before = a.total_events();
                match a.advance(samples[k], left).unwrap() {
                    Advance::Reached => {
                        left -= a.total_events() - before;
                        k += 1;
                    }
                    Advance::Paused => break,
                }
            }
            assert!(k < samples.len(), "cut {cut} is past the end of the run");
            let bytes = a.checkpoint();
            assert_eq!(bytes.len(), checkpoint_len(120, 3, 4).unwrap());
            let mut b = Nsm::restore(&p, &bytes).unwrap();
            assert_eq!(
                b.checkpoint(),
                bytes,
                "cut {cut}: restore is not a fixed point"
            );
            for (j, &t) in samples.iter().enumerate().skip(k) {
                b.advance(t, u64::MAX).unwrap();
                assert_eq!(
                    (b.counts(), b.total_events()),
                    expect[j],
                    "cut {cut} sample {j}"
                );
            }
            assert_eq!(b.diffusion_events(), reference.diffusion_events());
            assert_eq!(b.reaction_events(), reference.reaction_events());
        }
    }

    #[test]
    fn corrupt_checkpoints_are_refused() {
        let p = problem([3, 2, 2]);
        let mut a = Nsm::new(&p, 1, 0).unwrap();
        a.advance(0.3, u64::MAX).unwrap();
        let good = a.checkpoint();
        assert!(Nsm::restore(&p, &good).is_ok());
        for cut in [0, 7, 95, good.len() - 1] {
            let e = Nsm::restore(&p, &good[..cut]).unwrap_err().to_string();
            assert!(e.contains("truncated") || e.contains("implies"), "{e}");
        }
        let mut flipped = good.clone();
        flipped[200] ^= 1;
        let e = Nsm::restore(&p, &flipped).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let mut other = p.clone();
        other.rate_constants[0] = 0.06;
        let e = Nsm::restore(&other, &good).unwrap_err().to_string();
        assert!(e.contains("different problem"), "{e}");
        // A validly checksummed but unreachable state: a finite time before now.
        let mut bad = good.clone();
        let body = bad.len() - 8;
        let t_at = body - 8;
        bad[t_at..body].copy_from_slice(&(-1.0f64).to_bits().to_le_bytes());
        let sum = checksum(&bad[..body]);
        bad[body..].copy_from_slice(&sum.to_le_bytes());
        let e = Nsm::restore(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("not reachable"), "{e}");
    }

    #[test]
    fn propensity_overflow_is_refused_at_build() {
        let mut p = problem([2, 1, 1]);
        p.rate_constants[0] = 1e300;
        let nsm = Nsm::new(&p, 1, 0).unwrap();
        let e = nsm.check_propensity_bound().unwrap_err().to_string();
        assert!(
            e.contains("propensity overflow") && e.contains("reaction 0"),
            "{e}"
        );
        let ok = Nsm::new(&problem([2, 1, 1]), 1, 0).unwrap();
        assert!(ok.check_propensity_bound().is_ok());
    }
}
