//! The mock server's fault knobs: one struct that is both the `orbatch mock-server` flags
//! (via `clap::Args`) and the in-process configuration used by `run --mock` and tests.

/// Fault and behaviour knobs of the mock OpenRouter server. Defaults mean "no faults".
///
/// Probabilistic faults are drawn from one RNG seeded with `--seed`, so a run with the same
/// seed and the same request order sees the same faults.
#[derive(Debug, Clone, clap::Args)]
pub struct MockConfig {
    /// Seed of the RNG that decides probabilistic faults and jitter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Base latency in ms before answering (for streams, spread across the chunks).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Extra latency drawn uniformly from 0..=J ms, added to --latency-ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,

    /// Fraction (0..1) of inference requests answered 429 rate limited.
    #[arg(long, default_value_t = 0.0)]
    pub rate_429: f64,

    /// Seconds sent in `Retry-After` on 429 and 503 answers (none when unset).
    #[arg(long)]
    pub retry_after: Option<u64>,

    /// Fraction (0..1) of inference requests answered 500/502/503/504/524/529 (picked at random).
    #[arg(long, default_value_t = 0.0)]
    pub rate_5xx: f64,

    /// Fraction (0..1) of inference requests whose connection is closed with no response at all.
    #[arg(long, default_value_t = 0.0)]
    pub rate_drop: f64,

    /// Fraction (0..1) of inference requests answered 200 with an error body (alternating a
    /// top-level `error` and a `choices[0].error` with `finish_reason:"error"`).
    #[arg(long, default_value_t = 0.0)]
    pub rate_200_error: f64,

    /// Fraction (0..1) of streaming requests that send some chunks, then an error chunk, then end.
    #[arg(long, default_value_t = 0.0)]
    pub rate_mid_stream_error: f64,

    /// Fraction (0..1) of requests cut short: streams end without usage/[DONE], non-streaming
    /// bodies are cut in the middle of the JSON.
    #[arg(long, default_value_t = 0.0)]
    pub rate_truncate: f64,

    /// Number of `: OPENROUTER PROCESSING` comment lines sent before the first stream event.
    #[arg(long, default_value_t = 1)]
    pub keepalive_comments: u32,

    /// After the headers of a 200, wait this many ms before the first body byte (client timeouts).
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,

    /// Credit limit in USD: once the mock has billed this much, inference answers 402.
    #[arg(long)]
    pub credit_limit: Option<f64>,

    /// Server-side rate limit: more than RPS inference requests in any 1 s window get 429
    /// with `Retry-After: 1`.
    #[arg(long)]
    pub rate_limit: Option<u32>,

    /// Server-side token bucket, as many providers enforce it: RPS tokens a second (fractions
    /// allowed), at most BURST saved up, full at start; a request that finds no token gets
    /// 429 at once, with no `x-ratelimit-*` headers and `Retry-After` only if --retry-after
    /// is set.
    #[arg(long, value_name = "RPS:BURST", value_parser = Bucket::parse)]
    pub rate_limit_bucket: Option<Bucket>,

    /// Server-side in-flight budget: an inference request that finds N already being answered
    /// gets OpenRouter's in-flight-budget 402 with `Retry-After: 1`.
    #[arg(long)]
    pub max_in_flight: Option<u32>,

    /// Fraction (0..1) of answers to a request with a JSON Schema that are not JSON (also
    /// `[[mock:json-invalid*N]]` in a prompt, for its first N asks).
    #[arg(long, default_value_t = 0.0)]
    pub rate_json_invalid: f64,

    /// Fraction (0..1) of schema answers missing a required field (`json-missing`).
    #[arg(long, default_value_t = 0.0)]
    pub rate_json_missing: f64,

    /// Fraction (0..1) of schema answers in a ```json code fence (`json-fenced`).
    #[arg(long, default_value_t = 0.0)]
    pub rate_json_fenced: f64,

    /// Fraction (0..1) of schema answers with prose around the JSON (`json-prose`).
    #[arg(long, default_value_t = 0.0)]
    pub rate_json_prose: f64,

    /// A generation id answers 404 on GET /generation until this many ms after it was created.
    #[arg(long, default_value_t = 0)]
    pub generation_delay_ms: u64,

    /// How many generations `GET /generation` can look up: beyond it the oldest are
    /// forgotten (and answer 404), so a long-running mock does not grow. 0 keeps none.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub keep_generations: usize,

    /// Accept only `Authorization: Bearer KEY` (any non-empty key is accepted when unset).
    #[arg(long)]
    pub require_key: Option<String>,

    /// Answer inference requests 401 unless they carry this header, 'Name: value' (a
    /// gateway's own key, as LiteLLM or Portkey want it).
    #[arg(long, value_name = "NAME: VALUE")]
    pub require_header: Option<String>,

    /// The expected answer of each prompt (by the hash of its text as the mock reads it):
    /// such a prompt is answered with exactly that value, or a wrong one, deterministically,
    /// at a per-model accuracy (see [`super::answer::accuracy`]). Set by `run --mock` for a
    /// job with a `[score]` table, so the evaluation demo has something to measure.
    #[arg(skip)]
    pub oracle: Option<std::sync::Arc<std::collections::HashMap<u64, String>>>,

    /// Answer as most OpenAI-compatible servers do (LiteLLM, vLLM, llama.cpp): `usage` has
    /// tokens but no `cost`, `cost_details` or `is_byok`.
    #[arg(long)]
    pub no_cost: bool,

    /// Send a streamed chat answer's usage only when the request asks for it with
    /// `stream_options.include_usage` (as OpenAI and vLLM do; OpenRouter always sends it).
    #[arg(long)]
    pub usage_only_if_asked: bool,

    /// Fraction (0..1) of requests answered as BYOK (the user's own provider key): `usage.cost`
    /// is then OpenRouter's 5 % fee and `cost_details.upstream_inference_cost` the provider's
    /// charge, with `is_byok: true`; the same in `/generation`. Decided by the hash of the model
    /// and prompt, so a prompt is BYOK on every attempt.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub byok_rate: f64,

    /// Answer one chat stream at a time, as llama.cpp's server (llama-cpp-python) does: a
    /// new streamed request interrupts the one being answered, which then ends with `[DONE]`
    /// and no finish reason or usage.
    #[arg(long)]
    pub interrupt_streams: bool,
    /// The management key: only it may call `/keys` (create, get, disable keys), and it
    /// cannot make completions (401). Keys created with it are accepted for inference until
    /// disabled, expired or at their limit. Without it, every `/keys` call is refused.
    #[arg(long, value_name = "VALUE")]
    pub management_key: Option<String>,

    /// Status of a `/keys` call made with a key that is not the management key: 403, as
    /// OpenRouter documents it, or 401.
    #[arg(long, value_name = "401|403", default_value_t = 403,
          value_parser = |s: &str| status_in(s, &[401, 403]))]
    pub management_refusal: u16,

    /// Status of inference with a created key whose usage reached its limit: 402, or 403
    /// (both with `limit_source: openrouter_key_limit`).
    #[arg(long, value_name = "402|403", default_value_t = 402,
          value_parser = |s: &str| status_in(s, &[402, 403]))]
    pub key_limit_status: u16,
    /// Prompt tokens counted (and billed) per token of orbatch's estimate (characters ÷ 4 + 4
    /// per message): 0.7 or 1.6 act as tokenizers that count fewer or more than estimated.
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_factor)]
    pub token_factor: f64,

    /// Answers of MIN to MAX completion tokens, a fixed function of model and prompt spread
    /// evenly over the range (the answer's words, then filler words); `max_tokens` still
    /// cuts them. Unset: answers of about 10 to 20 tokens.
    #[arg(long, value_name = "MIN-MAX", value_parser = Spread::parse)]
    pub completion_spread: Option<Spread>,

    /// What a stream that fails mid-answer (`--rate-mid-stream-error`) is billed: `sent` the
    /// tokens it streamed, `none` nothing (zero-completion insurance), `full` the whole answer
    /// (a provider that finished generating anyway).
    #[arg(long, value_enum, default_value_t = MidStreamBilling::Sent)]
    pub mid_stream_billing: MidStreamBilling,

    /// Do not serve these paths (they answer 404), as servers that are not OpenRouter:
    /// any of key, generation, responses, models (comma-separated).
    #[arg(long, value_name = "PATHS", value_delimiter = ',', value_parser = ["key", "generation", "responses", "models"])]
    pub without: Vec<String>,

    /// Publish this context length for every model in `/models` (0 publishes `null`, as
    /// OpenRouter does for a model whose context it does not know).
    #[arg(long, value_name = "TOKENS")]
    pub context_length: Option<u64>,

    /// Publish this `top_provider.max_completion_tokens` for every model (0: `null`)
    /// [default: 16384].
    #[arg(long, value_name = "TOKENS")]
    pub max_completion_tokens: Option<u64>,
    /// Batch API: ms from submit to a terminal status (validating, in_progress, finalizing
    /// each a third of it).
    #[arg(long, default_value_t = 0)]
    pub batch_ms: u64,

    /// Batch API: reads of a new batch answered 404 before it is found (eventual consistency).
    #[arg(long, default_value_t = 0)]
    pub batch_404s: u32,

    /// Batch API: reads of completed results answered 402 (the payment gate) before they
    /// are released.
    #[arg(long, default_value_t = 0)]
    pub batch_402: u32,

    /// Batch API: reads of a completed batch that show no results yet (settlement pending:
    /// `completed`, `results: null`, `/results` 404) before they appear.
    #[arg(long, default_value_t = 0)]
    pub batch_settle_polls: u32,

    /// Batch API: submit bodies larger than this many bytes are refused with 413 (the real
    /// limit is 200 MB).
    #[arg(long)]
    pub batch_max_bytes: Option<usize>,

    /// Batch API: the first N submits are stored but their connection is dropped unanswered.
    #[arg(long, default_value_t = 0)]
    pub batch_drop_submits: u32,

    /// Batch API: where results are served: inline (in GET /batches/{id}), paged (only
    /// GET /batches/{id}/results) or both.
    #[arg(long, default_value = "inline", value_parser = ["inline", "paged", "both"])]
    pub batch_results: String,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            seed: 0,
            latency_ms: 0,
            jitter_ms: 0,
            rate_429: 0.0,
            retry_after: None,
            rate_5xx: 0.0,
            rate_drop: 0.0,
            rate_200_error: 0.0,
            rate_mid_stream_error: 0.0,
            rate_truncate: 0.0,
            keepalive_comments: 1,
            stall_ms: 0,
            credit_limit: None,
            rate_limit: None,
            rate_limit_bucket: None,
            max_in_flight: None,
            rate_json_invalid: 0.0,
            rate_json_missing: 0.0,
            rate_json_fenced: 0.0,
            rate_json_prose: 0.0,
            generation_delay_ms: 0,
            keep_generations: 100_000,
            require_key: None,
            require_header: None,
            oracle: None,
            no_cost: false,
            usage_only_if_asked: false,
            byok_rate: 0.0,
            interrupt_streams: false,
            token_factor: 1.0,
            mid_stream_billing: MidStreamBilling::Sent,
            completion_spread: None,
            without: Vec::new(),
            management_key: None,
            management_refusal: 403,
            key_limit_status: 402,
            context_length: None,
            max_completion_tokens: None,
            batch_ms: 0,
            batch_404s: 0,
            batch_402: 0,
            batch_drop_submits: 0,
            batch_settle_polls: 0,
            batch_max_bytes: None,
            batch_results: "inline".to_owned(),
        }
    }
}

/// An HTTP status that must be one of `allowed`.
fn status_in(s: &str, allowed: &[u16]) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|n| allowed.contains(n))
        .ok_or_else(|| format!("`{s}`: expected one of {allowed:?}"))
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: u32,
}

impl Bucket {
    /// `RPS:BURST`, e.g. `25:5`.
    pub fn parse(s: &str) -> Result<Bucket, String> {
        let usage = || format!("`{s}`: expected RPS:BURST, e.g. 25:5 (RPS > 0, BURST ≥ 1)");
        let (rps, burst) = s.split_once(':').ok_or_else(usage)?;
        let per_second: f64 = rps.trim().parse().map_err(|_| usage())?;
        let burst: u32 = burst.trim().parse().map_err(|_| usage())?;
        if !(per_second.is_finite() && per_second > 0.0 && burst >= 1) {
            return Err(usage());
        }
        Ok(Bucket { per_second, burst })
    }
}

/// `--mid-stream-billing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MidStreamBilling {
    Sent,
    None,
    Full,
}

/// `--token-factor`: a finite number from 0.1 to 10.
fn parse_factor(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.1..=10.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}`: expected a factor from 0.1 to 10, e.g. 0.7 or 1.6"
        )),
    }
}

/// A range of completion lengths, in tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: u64,
    pub max: u64,
}

impl Spread {
    /// `MIN-MAX`, e.g. `20-600`.
    pub fn parse(s: &str) -> Result<Spread, String> {
        let usage =
            || format!("`{s}`: expected MIN-MAX tokens, e.g. 20-600 (1 ≤ MIN ≤ MAX ≤ 100000)");
        let (min, max) = s.split_once('-').ok_or_else(usage)?;
        let min: u64 = min.trim().parse().map_err(|_| usage())?;
        let max: u64 = max.trim().parse().map_err(|_| usage())?;
        if !(1..=max).contains(&min) || max > 100_000 {
            return Err(usage());
        }
        Ok(Spread { min, max })
    }

    /// The length for an answer whose (model, prompt) hash is `hash`.
    pub fn pick(self, hash: u64) -> u64 {
        self.min + hash % (self.max - self.min + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn buckets_parse() {
        assert_eq!(
            Bucket::parse("25:5"),
            Ok(Bucket {
                per_second: 25.0,
                burst: 5
            })
        );
        assert_eq!(Bucket::parse("0.5:1").map(|b| b.per_second), Ok(0.5));
        for bad in [
            "25", "25:0", "0:5", "-1:5", "nan:5", "inf:5", "a:b", "25:5:1",
        ] {
            assert!(Bucket::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn factors_and_spreads_parse() {
        assert_eq!(parse_factor("1.6"), Ok(1.6));
        for bad in ["0", "-1", "nan", "inf", "11", "x"] {
            assert!(parse_factor(bad).is_err(), "{bad}");
        }
        assert_eq!(Spread::parse("20-600"), Ok(Spread { min: 20, max: 600 }));
        assert_eq!(Spread::parse("5-5").map(|s| s.pick(123)), Ok(5));
        for bad in ["600-20", "0-5", "5", "a-b", "1-100001"] {
            assert!(Spread::parse(bad).is_err(), "{bad}");
        }
        let s = Spread { min: 20, max: 600 };
        assert!(
            (0..1000)
                .map(|h| s.pick(h))
                .all(|n| (20..=600).contains(&n))
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockConfig,
    }

    #[test]
    fn flag_defaults_match_default_impl() {
        let parsed = Cli::parse_from(["x"]).mock;
        let default = MockConfig::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }
}
