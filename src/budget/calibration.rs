//! What a run has learnt of each model from its answers, so that `--max-cost` reserves what
//! the server will count rather than what orbatch guesses: the ratio of real `prompt_tokens`
//! to the characters ÷ 4 estimate (tokenizers differ by model, up to ~1.6× for some), and the
//! longest completion, and what it is billed against the catalogue's price for the tokens it
//! used (a BYOK request costs OpenRouter's 5 % fee on top of the provider's bill; a tier other
//! than the standard one another price). Until a model has [`WARMUP`] answers its bounds stay
//! conservative.

use crate::budget::DEFAULT_COMPLETION_BOUND;

/// Answers of a model after which its own figures are trusted alone.
pub const WARMUP: u32 = 8;

/// Real prompt tokens per estimated token assumed until [`WARMUP`] answers are in (above the
/// ~1.6× of the tokenizers furthest from characters ÷ 4).
pub const PRIOR_PROMPT_RATIO: f64 = 2.0;

/// Head-room over the largest prompt ratio seen (texts differ in how they tokenize).
pub const PROMPT_MARGIN: f64 = 1.1;

/// Head-room over the longest completion seen (a later answer may run longer).
pub const COMPLETION_MARGIN: f64 = 1.25;

/// Spend per catalogue-priced dollar assumed until [`WARMUP`] answers are in: a BYOK request
/// costs the provider's bill plus OpenRouter's 5 % fee.
pub const PRIOR_PRICE_RATIO: f64 = 1.05;

/// The same for a request that asks for the priority tier, whose premium the catalogue does
/// not say.
pub const PRIOR_PRIORITY_RATIO: f64 = 2.0;

/// The smallest completion bound once calibrated (a model whose first answers were empty).
pub const MIN_COMPLETION_BOUND: u64 = 16;

/// One model's figures from the answers so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    answers: u32,
    /// Largest `prompt_tokens / estimate` seen.
    prompt_ratio: f64,
    /// Largest `completion_tokens` seen.
    longest: u64,
    /// Largest spend / catalogue price of the tokens used.
    price_ratio: f64,
}

impl Calibration {
    /// Learn what an answer of `cost` USD, whose tokens cost `listed` at the catalogue's
    /// price, was billed against that price.
    pub fn observe_price(&mut self, cost: f64, listed: f64) {
        if listed > 0.0 && cost.is_finite() {
            self.price_ratio = self.price_ratio.max(cost / listed);
        }
    }

    /// Spend per catalogue-priced dollar, at most: the largest seen (`prior` at least until
    /// warm).
    pub fn price_ratio(&self, prior: f64) -> f64 {
        if self.warm() {
            self.price_ratio.max(f64::MIN_POSITIVE)
        } else {
            self.price_ratio.max(prior)
        }
    }

    /// Learn from an answer whose prompt was estimated at `estimate` tokens.
    pub fn observe(&mut self, estimate: u64, prompt_tokens: u64, completion_tokens: u64) {
        self.answers = self.answers.saturating_add(1);
        if estimate > 0 {
            self.prompt_ratio = self
                .prompt_ratio
                .max(prompt_tokens as f64 / estimate as f64);
        }
        self.longest = self.longest.max(completion_tokens);
    }

    fn warm(&self) -> bool {
        self.answers >= WARMUP
    }

    /// Real prompt tokens per estimated token, at most (with the margin).
    pub fn prompt_ratio(&self) -> f64 {
        let seen = self.prompt_ratio * PROMPT_MARGIN;
        if self.warm() {
            seen
        } else {
            seen.max(PRIOR_PROMPT_RATIO)
        }
    }

    /// The most prompt tokens the server may count for a prompt estimated at `estimate`.
    pub fn prompt_bound(&self, estimate: u64) -> u64 {
        let x = estimate as f64 * self.prompt_ratio();
        // Rounding noise (100 × 1.6 × 1.1 = 176.00000000000003) is not a token.
        (x - x * 1e-12).ceil() as u64
    }

    /// The most completion tokens to expect: the request's own limit when it sets one, else
    /// the longest seen with a margin ([`DEFAULT_COMPLETION_BOUND`] at least until warm).
    pub fn completion_bound(&self, max_tokens: Option<u64>) -> u64 {
        if let Some(n) = max_tokens {
            return n;
        }
        let seen =
            ((self.longest as f64 * COMPLETION_MARGIN).ceil() as u64).max(MIN_COMPLETION_BOUND);
        if self.warm() {
            seen
        } else {
            seen.max(DEFAULT_COMPLETION_BOUND)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservative_until_warm_then_the_largest_seen_with_a_margin() {
        let mut c = Calibration::default();
        assert_eq!(c.prompt_bound(100), 200);
        assert_eq!(c.completion_bound(None), DEFAULT_COMPLETION_BOUND);
        assert_eq!(c.completion_bound(Some(64)), 64);
        // A tokenizer that counts 1.6× the estimate, answers up to 600 tokens.
        for i in 0..WARMUP - 1 {
            c.observe(100, 160, 100 + u64::from(i) * 50);
        }
        assert_eq!(c.prompt_bound(100), 200, "not warm yet: the prior holds");
        assert_eq!(c.completion_bound(None), DEFAULT_COMPLETION_BOUND);
        c.observe(100, 150, 600);
        assert_eq!(c.prompt_bound(100), 176, "1.6 × 1.1");
        assert_eq!(c.completion_bound(None), 750, "600 × 1.25");
        assert_eq!(c.completion_bound(Some(64)), 64);
    }

    #[test]
    fn a_tokenizer_that_counts_less_lowers_the_bound_once_warm() {
        let mut c = Calibration::default();
        for _ in 0..WARMUP {
            c.observe(100, 70, 0);
        }
        assert_eq!(c.prompt_bound(100), 77);
        assert_eq!(c.completion_bound(None), MIN_COMPLETION_BOUND);
        // An estimate of 0 teaches nothing about the ratio.
        c.observe(0, 50, 3);
        assert_eq!(c.prompt_bound(100), 77);
    }

    #[test]
    fn the_price_ratio_covers_byok_and_tiers() {
        let mut c = Calibration::default();
        assert_eq!(c.price_ratio(PRIOR_PRICE_RATIO), 1.05);
        assert_eq!(c.price_ratio(PRIOR_PRIORITY_RATIO), 2.0);
        // A priority answer billed at 2.5× the catalogue price beats the prior at once.
        c.observe_price(0.25, 0.1);
        assert_eq!(c.price_ratio(PRIOR_PRICE_RATIO), 2.5);
        let mut flex = Calibration::default();
        for _ in 0..WARMUP {
            flex.observe(100, 100, 10);
            flex.observe_price(0.05, 0.1);
        }
        assert_eq!(
            flex.price_ratio(PRIOR_PRICE_RATIO),
            0.5,
            "warm: flex at half price"
        );
        flex.observe_price(1.0, 0.0);
        assert_eq!(
            flex.price_ratio(PRIOR_PRICE_RATIO),
            0.5,
            "nothing listed teaches nothing"
        );
    }

    #[test]
    fn a_prior_above_what_is_seen_still_counts_a_larger_ratio() {
        let mut c = Calibration::default();
        c.observe(10, 30, 5);
        assert_eq!(c.prompt_bound(10), 33, "3 × 1.1 beats the prior of 2");
    }
}
