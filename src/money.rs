//! USD as integer picodollars, so that sums of costs are exact and do not depend on the order
//! they are added in (shards merged give the same totals as one run).

/// An amount of USD in picodollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Picos(pub i128);

impl Picos {
    pub fn from_usd(usd: f64) -> Picos {
        // `as` saturates and maps NaN to 0: a nonsense cost cannot poison the sum.
        Picos((usd * 1e12).round() as i128)
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e12
    }

    pub fn add(&mut self, other: Picos) {
        self.0 = self.0.saturating_add(other.0);
    }

    /// `self − other`.
    pub fn minus(self, other: Picos) -> Picos {
        Picos(self.0.saturating_sub(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_nonsense_is_zero() {
        let mut sum = Picos::default();
        for _ in 0..10 {
            sum.add(Picos::from_usd(0.1));
        }
        assert_eq!(sum.usd(), 1.0);
        assert_eq!(Picos::from_usd(f64::NAN), Picos(0));
        assert_eq!(sum.minus(Picos::from_usd(0.25)).usd(), 0.75);
    }
}
