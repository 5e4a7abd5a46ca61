//! Seeded random streams. One generator per trajectory; the stream of a
//! (seed, replicate) pair is a pure function of that pair, so the same inputs
//! give bitwise identical output on any machine and thread count.

use rand::Rng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};
use rand_xoshiro::Xoshiro256PlusPlus;

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Xoshiro256++ (Blackman & Vigna 2018) keyed by (seed, replicate).
///
/// The 256-bit state is filled by SplitMix64 from a 64-bit key that mixes seed
/// and replicate through two rounds of SplitMix64, as Vigna recommends for
/// seeding; distinct pairs give distinct keys except with probability ~2^-64.
#[derive(Clone, Debug)]
pub struct Stream {
    inner: Xoshiro256PlusPlus,
}

impl Stream {
    pub fn new(seed: u64, replicate: u64) -> Self {
        let key = splitmix64(seed ^ splitmix64(replicate ^ 0xD1B5_4A32_D192_ED03));
        Stream {
            inner: Xoshiro256PlusPlus::seed_from_u64(key),
        }
    }

    /// The stream of one block of work of trajectory (seed, replicate):
    /// `phase` names the kind of work, `step` and `block` where it is. A pure
    /// function of the five numbers, so a parallel solver that gives each
    /// (step, fixed block) its own stream draws the same numbers whichever
    /// thread runs the block and however many threads there are.
    pub fn for_block(seed: u64, replicate: u64, phase: u64, step: u64, block: u64) -> Self {
        let base = splitmix64(seed ^ splitmix64(replicate ^ 0xD1B5_4A32_D192_ED03));
        let key = splitmix64(
            base ^ splitmix64(
                step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ splitmix64(block ^ splitmix64(phase ^ 0x6A09_E667_F3BC_C909)),
            ),
        );
        Stream {
            inner: Xoshiro256PlusPlus::seed_from_u64(key),
        }
    }

    /// A draw from any `rand_distr` distribution, from this stream.
    #[inline(always)]
    pub fn sample<T, D: Distribution<T>>(&mut self, dist: &D) -> T {
        dist.sample(&mut self.inner)
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline(always)]
    pub fn uniform(&mut self) -> f64 {
        (self.inner.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard exponential variate (ziggurat, rand_distr).
    #[inline(always)]
    pub fn exp1(&mut self) -> f64 {
        Exp1.sample(&mut self.inner)
    }

    /// The 256-bit generator state (four little-endian u64 words), for
    /// checkpoints: `Stream::from_state(s.state())` continues exactly where
    /// `s` is.
    pub fn state(&self) -> [u8; 32] {
        self.inner.state()
    }

    /// The stream whose state is `state`; None for the all-zero state, which
    /// no seeded stream ever reaches (Xoshiro's only fixed point).
    pub fn from_state(state: [u8; 32]) -> Option<Self> {
        if state == [0u8; 32] {
            return None;
        }
        Some(Stream {
            inner: Xoshiro256PlusPlus::from_seed(state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<f64> = {
            let mut s = Stream::new(7, 0);
            (0..8).map(|_| s.uniform()).collect()
        };
        let b: Vec<f64> = {
            let mut s = Stream::new(7, 0);
            (0..8).map(|_| s.uniform()).collect()
        };
        let c: Vec<f64> = {
            let mut s = Stream::new(7, 1);
            (0..8).map(|_| s.uniform()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn block_streams_differ_by_every_coordinate() {
        let first = |s: &mut Stream| s.uniform().to_bits();
        let a = first(&mut Stream::for_block(1, 0, 1, 5, 7));
        assert_eq!(a, first(&mut Stream::for_block(1, 0, 1, 5, 7)));
        for other in [
            Stream::for_block(2, 0, 1, 5, 7),
            Stream::for_block(1, 1, 1, 5, 7),
            Stream::for_block(1, 0, 2, 5, 7),
            Stream::for_block(1, 0, 1, 6, 7),
            Stream::for_block(1, 0, 1, 5, 8),
        ] {
            assert_ne!(a, first(&mut other.clone()));
        }
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = Stream::new(11, 2);
        for _ in 0..1000 {
            a.exp1();
        }
        let mut b = Stream::from_state(a.state()).unwrap();
        for _ in 0..1000 {
            assert_eq!(a.uniform().to_bits(), b.uniform().to_bits());
            assert_eq!(a.exp1().to_bits(), b.exp1().to_bits());
        }
        assert!(Stream::from_state([0; 32]).is_none());
    }

    #[test]
    fn uniform_and_exponential_moments() {
        // Mean of U(0,1) is 1/2 (sd of the mean 0.2887/sqrt(n)); mean and variance
        // of Exp(1) are 1 (sd of the mean 1/sqrt(n)). Tolerance: 5 standard errors.
        let n = 200_000;
        let mut s = Stream::new(42, 3);
        let mut su = 0.0;
        let (mut se, mut se2) = (0.0, 0.0);
        for _ in 0..n {
            let u = s.uniform();
            assert!((0.0..1.0).contains(&u));
            su += u;
            let e = s.exp1();
            se += e;
            se2 += e * e;
        }
        let nf = n as f64;
        assert!((su / nf - 0.5).abs() < 5.0 * 0.2887 / nf.sqrt());
        let mean = se / nf;
        let var = se2 / nf - mean * mean;
        assert!((mean - 1.0).abs() < 5.0 / nf.sqrt());
        // Var of the sample variance of Exp(1) is (mu4 - 1)/n = 8/n.
        assert!((var - 1.0).abs() < 5.0 * (8.0 / nf).sqrt());
    }
}
