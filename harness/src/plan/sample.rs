//! Random variates for the arrival processes and the request mix, from one seeded generator, so a
//! seed fixes the whole plan (ChaCha8 is specified to give the same stream on every platform).

use rand::RngExt;
use std::collections::BTreeMap;

/// A uniform in (0, 1], never exactly zero (logs of it stay finite).
pub fn unit_open<R: RngExt + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.random::<f64>()
}

/// Exp(1).
pub fn exponential<R: RngExt + ?Sized>(rng: &mut R) -> f64 {
    -unit_open(rng).ln()
}

/// Standard normal (Box-Muller).
pub fn normal<R: RngExt + ?Sized>(rng: &mut R) -> f64 {
    let (u, v) = (unit_open(rng), rng.random::<f64>());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Gamma(shape, 1) by Marsaglia and Tsang, boosted for shape < 1.
pub fn gamma<R: RngExt + ?Sized>(rng: &mut R, shape: f64) -> f64 {
    if shape < 1.0 {
        return gamma(rng, shape + 1.0) * unit_open(rng).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = unit_open(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Picks a key by weight; `None` for an empty map.
pub fn weighted<'a, R: RngExt + ?Sized>(
    rng: &mut R,
    weights: &'a BTreeMap<String, f64>,
) -> Option<&'a str> {
    let total: f64 = weights.values().sum();
    if weights.is_empty() || total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    for (k, w) in weights {
        if x < *w {
            return Some(k);
        }
        x -= w;
    }
    weights
        .iter()
        .rev()
        .find(|(_, w)| **w > 0.0)
        .map(|(k, _)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        (
            m,
            xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64,
        )
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let e: Vec<f64> = (0..50_000).map(|_| exponential(&mut rng)).collect();
        let (m, v) = mean_var(&e);
        assert!(
            (m - 1.0).abs() < 0.02 && (v - 1.0).abs() < 0.05,
            "exp {m} {v}"
        );
        for shape in [0.25, 0.5, 2.0, 5.0] {
            let g: Vec<f64> = (0..50_000).map(|_| gamma(&mut rng, shape)).collect();
            let (m, v) = mean_var(&g);
            assert!((m / shape - 1.0).abs() < 0.03, "gamma({shape}) mean {m}");
            assert!((v / shape - 1.0).abs() < 0.08, "gamma({shape}) var {v}");
        }
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w = BTreeMap::from([
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 3.0),
            ("z".to_owned(), 0.0),
        ]);
        let n = 40_000;
        let b = (0..n)
            .filter(|_| weighted(&mut rng, &w) == Some("b"))
            .count() as f64
            / n as f64;
        assert!((b - 0.75).abs() < 0.01, "{b}");
        assert!((0..1000).all(|_| weighted(&mut rng, &w) != Some("z")));
        assert_eq!(weighted(&mut rng, &BTreeMap::new()), None);
    }
}
