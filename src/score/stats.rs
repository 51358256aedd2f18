//! The statistics a careful reader asks for before believing "A beats B": a 95 % Wilson
//! interval for an accuracy, and the exact McNemar test for two models on the same rows.

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The 95 % Wilson score interval of `passed` out of `n`; `None` for `n = 0`.
pub fn wilson(passed: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = passed.min(n as u64) as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Two models on the same rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Paired {
    pub both_right: u64,
    pub only_a: u64,
    pub only_b: u64,
    pub both_wrong: u64,
}

impl Paired {
    /// Note one row: whether A and B passed it.
    pub fn add(&mut self, a: bool, b: bool) {
        match (a, b) {
            (true, true) => self.both_right += 1,
            (true, false) => self.only_a += 1,
            (false, true) => self.only_b += 1,
            (false, false) => self.both_wrong += 1,
        }
    }

    /// The rows both were scored on.
    pub fn rows(&self) -> u64 {
        self.both_right + self.only_a + self.only_b + self.both_wrong
    }

    /// The exact (binomial) McNemar p-value, two-sided: how likely a split of the discordant
    /// rows at least this uneven is if the two models were equally good. 1 with no
    /// discordant rows.
    pub fn mcnemar_p(&self) -> f64 {
        let n = self.only_a + self.only_b;
        let k = self.only_a.min(self.only_b);
        if n == 0 {
            return 1.0;
        }
        // P(X ≤ k) for X ~ Binomial(n, ½), summed in log space (0.5^n underflows past 1074).
        let nf = n as f64;
        let mut log_pmf = -nf * std::f64::consts::LN_2;
        let mut terms = Vec::with_capacity(k as usize + 1);
        for i in 0..=k {
            terms.push(log_pmf);
            let i = i as f64;
            log_pmf += (nf - i).ln() - (i + 1.0).ln();
        }
        let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
        (2.0 * tail).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 10: p = .8, z² = 3.8415; centre = (.8 + .19207)/1.38415 = .71674;
        // half = 1.96·√(.016 + .0096037)/1.38415 = .22658 → (.4902, .9433).
        let (lo, hi) = wilson(8, 10).unwrap();
        assert!(near(lo, 0.4902) && near(hi, 0.9433), "{lo} {hi}");
        // The edges stay inside [0, 1] and are not degenerate.
        let (lo, hi) = wilson(0, 10).unwrap();
        assert!(lo == 0.0 && near(hi, 0.2775), "{hi}");
        let (lo, hi) = wilson(10, 10).unwrap();
        assert!(near(lo, 0.7225) && near(hi, 1.0), "{lo} {hi}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn mcnemar_matches_hand_computed_values() {
        let p = |a, b| {
            Paired {
                only_a: a,
                only_b: b,
                ..Paired::default()
            }
            .mcnemar_p()
        };
        // 1 vs 9 discordant: 2·(1 + 10)/1024 = 0.021484375.
        assert!(near(p(1, 9), 0.021_484_375));
        assert!(near(p(9, 1), 0.021_484_375));
        // 0 vs 5: 2/32 = 0.0625 — five wins in a row are not yet significant.
        assert!(near(p(0, 5), 0.0625));
        // 3 vs 3, or nothing discordant: no evidence at all.
        assert_eq!(p(3, 3), 1.0);
        assert_eq!(p(0, 0), 1.0);
        // Large n does not underflow: 500 vs 600 → p ≈ 0.0028.
        let big = p(500, 600);
        assert!(big > 0.002 && big < 0.004, "{big}");
        assert!(p(0, 2000) >= 0.0);
    }

    #[test]
    fn paired_counts_each_row_once() {
        let mut pair = Paired::default();
        for (a, b) in [
            (true, true),
            (true, false),
            (false, true),
            (false, false),
            (true, false),
        ] {
            pair.add(a, b);
        }
        assert_eq!(
            pair,
            Paired {
                both_right: 1,
                only_a: 2,
                only_b: 1,
                both_wrong: 1
            }
        );
        assert_eq!(pair.rows(), 5);
    }
}
