//! Seeded, portable randomness: ChaCha8 (`rand_chacha`), one stream per purpose.
//!
//! A run's seed gives independent streams of the same ChaCha8 key, so that changing how
//! many numbers one purpose draws never shifts another:
//! [`Stream::Weights`] (forward initialisation), [`Stream::Feedback`] (the fixed `B` matrices),
//! [`Stream::Shuffle`] (the order of the mini-batches), [`Stream::Dropout`] (dropout masks), and
//! [`Stream::Embedding`] for the t-SNE pictures.
//! The sampling below is written out here
//! (not taken from `rand`'s distributions) so that the numbers are fixed by this file alone.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Weights = 0,
    Feedback = 1,
    Shuffle = 2,
    Dropout = 3,
    /// The starting points of t-SNE embeddings (`features`).
    Embedding = 4,
    /// Feedback recomputed during training (brSF's magnitudes, redrawn every step).
    Refresh = 5,
}

/// A ChaCha8 generator whose full state can be saved and restored.
#[derive(Clone, Debug)]
pub struct DfaRng(ChaCha8Rng);

/// The complete state of a [`DfaRng`]: key (from the seed), stream and position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub key: [u8; 32],
    pub stream: u64,
    /// Position in the stream, in 32-bit words (a `u128` in ChaCha, kept as a string in JSON).
    pub word_pos: String,
}

impl DfaRng {
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream as u64);
        DfaRng(rng)
    }

    pub fn state(&self) -> RngState {
        RngState { key: self.0.get_seed(), stream: self.0.get_stream(), word_pos: self.0.get_word_pos().to_string() }
    }

    pub fn from_state(state: &RngState) -> Option<Self> {
        let mut rng = ChaCha8Rng::from_seed(state.key);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos.parse().ok()?);
        Some(DfaRng(rng))
    }

    /// Uniform in `[0, 1)` with 24 random bits (every f32 of the form `k / 2^24`).
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[-bound, bound)`.
    pub fn symmetric(&mut self, bound: f32) -> f32 {
        (2.0 * self.unit() - 1.0) * bound
    }

    /// Uniform integer in `0..n` (`n > 0`), unbiased (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u32) -> u32 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = self.0.next_u32() as u64 * n as u64;
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }

    pub fn fill_symmetric(&mut self, out: &mut [f32], bound: f32) {
        for x in out {
            *x = self.symmetric(bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_continues_the_same_sequence() {
        let mut a = DfaRng::new(7, Stream::Shuffle);
        for _ in 0..13 {
            a.unit();
        }
        let mut b = DfaRng::from_state(&a.state()).unwrap();
        let xs: Vec<f32> = (0..50).map(|_| a.unit()).collect();
        let ys: Vec<f32> = (0..50).map(|_| b.unit()).collect();
        assert_eq!(xs, ys);
    }

    #[test]
    fn streams_differ_and_seeds_repeat() {
        let x = DfaRng::new(1, Stream::Weights).unit();
        assert_ne!(x, DfaRng::new(1, Stream::Feedback).unit());
        assert_eq!(x, DfaRng::new(1, Stream::Weights).unit());
    }

    #[test]
    fn shuffle_is_a_permutation_and_below_is_in_range() {
        let mut rng = DfaRng::new(3, Stream::Shuffle);
        let mut v: Vec<usize> = (0..1000).collect();
        rng.shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
        assert!((0..1000).all(|_| rng.below(3) < 3));
        let s = rng.symmetric(0.5);
        assert!((-0.5..0.5).contains(&s));
    }
}
