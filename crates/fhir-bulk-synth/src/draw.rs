//! Random draws: where each random stream comes from, and the few distributions we need.
//!
//! Determinism rests on one rule: every owner of random choices (each patient, each
//! practitioner, organization and location) gets its own ChaCha8 stream, keyed by the seed
//! and a domain and numbered by the owner's index. The output of patient 41 therefore does
//! not depend on how many draws patient 40 made, or on the order in which patients are
//! generated, so the generator may be reordered or parallelised without changing a byte.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator every stream uses: fast, portable and reproducible across platforms.
pub type SynthRng = ChaCha8Rng;

/// Who owns a random stream.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    /// A patient and their whole clinical history.
    Patient = 1,
    /// A practitioner.
    Practitioner = 2,
    /// An organization.
    Organization = 3,
    /// A location.
    Location = 4,
}

/// The stream of owner `index` in `domain` for `seed`.
///
/// The key holds the seed and the domain side by side (not mixed), so two different
/// `(seed, domain)` pairs can never share a key; the index selects one of ChaCha's 2^64
/// streams under that key.
pub fn stream(seed: u64, domain: Domain, index: u64) -> SynthRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(domain as u64).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

/// Uniform choice from a non-empty table.
pub fn pick<'a, T>(rng: &mut impl Rng, table: &'a [T]) -> &'a T {
    table.choose(rng).expect("tables are never empty")
}

/// Choice from a non-empty table with integer weights.
pub fn weighted<'a, T>(rng: &mut impl Rng, table: &'a [(T, u32)]) -> &'a T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut ticket = rng.gen_range(0..total);
    for (item, weight) in table {
        if ticket < *weight {
            return item;
        }
        ticket -= weight;
    }
    &table[table.len() - 1].0
}

/// An approximately normal draw (Irwin–Hall sum of four uniforms, rescaled), clamped to
/// `[min, max]`. Good enough for vital signs and lab values, and it needs no extra crate.
pub fn gauss(rng: &mut impl Rng, mean: f64, sd: f64, min: f64, max: f64) -> f64 {
    let sum: f64 = (0..4).map(|_| rng.gen_range(0.0..1.0)).sum();
    let z = (sum - 2.0) * 3f64.sqrt();
    (mean + sd * z).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let draw = |seed, domain, index| stream(seed, domain, index).gen_range(0..u64::MAX);
        assert_eq!(draw(1, Domain::Patient, 5), draw(1, Domain::Patient, 5));
        assert_ne!(draw(1, Domain::Patient, 5), draw(1, Domain::Patient, 6));
        assert_ne!(draw(1, Domain::Patient, 5), draw(2, Domain::Patient, 5));
        assert_ne!(
            draw(1, Domain::Patient, 5),
            draw(1, Domain::Practitioner, 5)
        );
    }

    #[test]
    fn gauss_centres_on_the_mean_and_respects_bounds() {
        let mut rng = stream(9, Domain::Location, u64::MAX);
        let draws: Vec<f64> = (0..10_000)
            .map(|_| gauss(&mut rng, 10.0, 2.0, 5.0, 14.0))
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 10.0).abs() < 0.1, "mean {mean}");
        assert!(draws.iter().all(|d| (5.0..=14.0).contains(d)));
        let sd =
            (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        assert!((sd - 2.0).abs() < 0.15, "sd {sd}");
    }

    #[test]
    fn weighted_follows_weights() {
        let mut rng = stream(3, Domain::Location, u64::MAX - 1);
        let table = [("a", 90), ("b", 10)];
        let a = (0..10_000)
            .filter(|_| *weighted(&mut rng, &table) == "a")
            .count();
        assert!((8_700..9_300).contains(&a), "{a}");
    }
}
