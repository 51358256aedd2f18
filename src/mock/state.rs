//! The mock's shared mutable state: counters, issued generations, per-prompt attempt counts,
//! the rate-limit window and the seeded RNG. Every lock is held for microseconds and never
//! across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::{Bucket, MockConfig};

/// Counters of what the mock saw and billed (also served as `GET /api/v1/_mock/stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MockStats {
    /// Inference requests received (chat + responses), every attempt.
    pub requests: u64,
    /// HTTP status sent for inference requests (200 counts 200-with-error too; key 0 counts
    /// connections dropped without any status).
    pub by_status: BTreeMap<u16, u64>,
    /// Successful answers (billed, full response delivered or stream completed).
    pub answered: u64,
    /// Sum of the cost of every billed generation, in USD.
    pub billed_usd: f64,
    /// What providers billed to the user's own keys for BYOK generations, in USD (not in
    /// `billed_usd`).
    pub byok_billed_usd: f64,
    /// Max over (model, prompt) of successful answers (proves no row was paid twice).
    pub max_answers_per_prompt: u64,
    /// Generation ids issued.
    pub generations: u64,
    /// `GET /generation` calls.
    pub generation_lookups: u64,
    /// Most inference requests received within any 1 s (what a server-side limit sees).
    pub peak_1s: u64,
    /// Seconds from the first inference request received to the last (the achieved rate is
    /// `(requests - 1) / arrival_span_s`).
    pub arrival_span_s: f64,
    /// Batches submitted to the Batch API (`POST /batches`), and their lines.
    #[serde(default)]
    pub batch_submits: u64,
    #[serde(default)]
    pub batch_lines: u64,
}

/// One recorded generation, as `GET /generation` reports it.
#[derive(Debug, Clone)]
pub struct Generation {
    pub id: String,
    pub model: String,
    pub provider: &'static str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What OpenRouter charged (the BYOK fee for a BYOK generation).
    pub cost: f64,
    /// What the provider charged (`upstream_inference_cost`).
    pub upstream_cost: f64,
    pub is_byok: bool,
    pub service_tier: Option<&'static str>,
    pub finish_reason: &'static str,
    pub streamed: bool,
    pub cancelled: bool,
    pub latency_ms: u64,
    pub created_at: jiff::Timestamp,
    pub http_referer: Option<String>,
    pub user_agent: Option<String>,
    /// When the record was made (for `--generation-delay-ms`).
    pub recorded: Instant,
}

/// Result of a generation lookup.
pub enum Lookup {
    Found(Box<Generation>),
    NotYet,
    Unknown,
}

#[derive(Default)]
struct Book {
    stats: MockStats,
    answers: HashMap<u64, u64>,
    attempts: HashMap<u64, u64>,
    generations: HashMap<String, Generation>,
    /// The ids in `generations`, oldest first (for `--keep-generations`).
    generation_order: VecDeque<String>,
    /// Issued ids whose generation is not recorded yet (a stream still running).
    pending: std::collections::HashSet<String>,
    window: VecDeque<Instant>,
    /// The token bucket's tokens, and when they were counted.
    tokens: Option<(f64, Instant)>,
    /// Arrivals of the last second, for `peak_1s`.
    arrivals: VecDeque<Instant>,
    first_arrival: Option<Instant>,
}

/// State shared by all handlers.
pub struct Shared {
    pub config: MockConfig,
    rng: Mutex<SmallRng>,
    /// Latency jitter has its own RNG: when answers are produced (which depends on timing)
    /// must not change which faults the fault RNG draws.
    jitter: Mutex<SmallRng>,
    book: Mutex<Book>,
    id_seq: AtomicU64,
    alternate: AtomicU64,
    in_flight: AtomicU64,
    /// Keys created through the management API (`/keys`).
    pub keys: super::keys::Keys,
    /// The stream being answered, under `--interrupt-streams` (a new one cancels it).
    current_stream: Mutex<Option<tokio_util::sync::CancellationToken>>,
    /// Batches submitted to the Batch API.
    pub batches: super::batch::Store,
}

/// Drop the instants 1 s or more before `now` (oldest first).
fn keep_last_second(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        times.pop_front();
    }
}

/// One inference request being answered (for `--max-in-flight`); ends when dropped.
pub struct Flight(Arc<Shared>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Shared {
    pub fn new(config: MockConfig) -> Shared {
        let rng = SmallRng::seed_from_u64(config.seed);
        let jitter = SmallRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
        Shared {
            config,
            rng: Mutex::new(rng),
            jitter: Mutex::new(jitter),
            book: Mutex::new(Book::default()),
            id_seq: AtomicU64::new(0),
            alternate: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            keys: super::keys::Keys::default(),
            current_stream: Mutex::new(None),
            batches: super::batch::Store::default(),
        }
    }

    /// Under `--interrupt-streams`: this stream becomes the one being answered, and the one
    /// that was (if any) is told to stop. The token is cancelled when a later stream starts.
    pub fn take_over_stream(&self) -> Option<tokio_util::sync::CancellationToken> {
        if !self.config.interrupt_streams {
            return None;
        }
        let mine = tokio_util::sync::CancellationToken::new();
        let mut current = self
            .current_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = current.replace(mine.clone()) {
            previous.cancel();
        }
        Some(mine)
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn rng(&self) -> MutexGuard<'_, SmallRng> {
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A uniform draw in [0, 1) and an index below `n`, from the seeded RNG.
    pub fn draw(&self, n: usize) -> (f64, usize) {
        let mut rng = self.rng();
        let u = rng.random::<f64>();
        (u, rng.random_range(0..n.max(1)))
    }

    /// The latency of one answer: `--latency-ms` plus uniform jitter.
    pub fn latency(&self) -> Duration {
        let jitter = match self.config.jitter_ms {
            0 => 0,
            j => self
                .jitter
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .random_range(0..=j),
        };
        Duration::from_millis(self.config.latency_ms + jitter)
    }

    /// True on every other call (alternates the two 200-with-error shapes).
    pub fn flip(&self) -> bool {
        self.alternate
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(2)
    }

    pub fn count_request(&self) {
        self.count_request_at(Instant::now());
    }

    fn count_request_at(&self, now: Instant) {
        let mut book = self.book();
        book.stats.requests += 1;
        let first = *book.first_arrival.get_or_insert(now);
        book.stats.arrival_span_s = now.duration_since(first).as_secs_f64();
        book.arrivals.push_back(now);
        keep_last_second(&mut book.arrivals, now);
        book.stats.peak_1s = book.stats.peak_1s.max(book.arrivals.len() as u64);
    }

    /// Record the status sent for an inference request (0 = dropped, no status).
    pub fn count_status(&self, status: u16) {
        *self.book().stats.by_status.entry(status).or_insert(0) += 1;
    }

    /// 1-based number of this attempt for the (model, prompt) `key`.
    pub fn next_attempt(&self, key: u64) -> u64 {
        let mut book = self.book();
        let n = book.attempts.entry(key).or_insert(0);
        *n += 1;
        *n
    }

    /// Count one more request in flight, unless `max` already are.
    pub fn take_off(self: &Arc<Self>, max: u32) -> Option<Flight> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let flight = Flight(self.clone());
        (before < u64::from(max)).then_some(flight)
    }

    /// Token bucket limiter: true if this request found a token (and took it).
    pub fn take_token(&self, bucket: Bucket) -> bool {
        self.take_token_at(bucket, Instant::now())
    }

    fn take_token_at(&self, bucket: Bucket, now: Instant) -> bool {
        let full = f64::from(bucket.burst);
        let mut book = self.book();
        let (tokens, since) = book.tokens.get_or_insert((full, now));
        let earned = now.saturating_duration_since(*since).as_secs_f64() * bucket.per_second;
        *tokens = (*tokens + earned).min(full);
        *since = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sliding 1 s window limiter: true if this request is admitted under `rps`.
    pub fn admit(&self, rps: u32) -> bool {
        let now = Instant::now();
        let mut book = self.book();
        keep_last_second(&mut book.window, now);
        if book.window.len() >= rps as usize {
            return false;
        }
        book.window.push_back(now);
        true
    }

    /// USD billed so far.
    pub fn billed(&self) -> f64 {
        self.book().stats.billed_usd
    }

    /// Issue a new `gen-<unix secs>-<20 alphanumerics>` id (unique per server).
    pub fn new_generation_id(&self) -> String {
        let seq = self.id_seq.fetch_add(1, Ordering::Relaxed);
        let mut rnd: u64 = rand::random();
        let mut tail = String::with_capacity(20);
        for _ in 0..10 {
            tail.push(ALNUM[(rnd % 62) as usize] as char);
            rnd /= 62;
        }
        let mut s = seq;
        for _ in 0..10 {
            tail.push(ALNUM[(s % 62) as usize] as char);
            s /= 62;
        }
        let id = format!("gen-{}-{tail}", jiff::Timestamp::now().as_second());
        let mut book = self.book();
        book.stats.generations += 1;
        book.pending.insert(id.clone());
        id
    }

    /// Record a generation and bill its cost; `answer_key` counts a successful answer for
    /// that (model, prompt).
    pub fn record(&self, generation: Generation, answer_key: Option<u64>) {
        let mut book = self.book();
        book.stats.billed_usd += generation.cost;
        if generation.is_byok {
            book.stats.byok_billed_usd += generation.upstream_cost;
        }
        if let Some(key) = answer_key {
            book.stats.answered += 1;
            let n = book.answers.entry(key).or_insert(0);
            *n += 1;
            let n = *n;
            book.stats.max_answers_per_prompt = book.stats.max_answers_per_prompt.max(n);
        }
        book.pending.remove(&generation.id);
        let keep = self.config.keep_generations;
        if keep == 0 {
            return;
        }
        let id = generation.id.clone();
        if book.generations.insert(id.clone(), generation).is_none() {
            book.generation_order.push_back(id);
        }
        while book.generations.len() > keep {
            let Some(oldest) = book.generation_order.pop_front() else {
                break;
            };
            book.generations.remove(&oldest);
        }
    }

    /// Look up a generation (counts the lookup); honours `--generation-delay-ms`.
    pub fn lookup(&self, id: &str) -> Lookup {
        let delay = Duration::from_millis(self.config.generation_delay_ms);
        let mut book = self.book();
        book.stats.generation_lookups += 1;
        match book.generations.get(id) {
            Some(g) if g.recorded.elapsed() >= delay => Lookup::Found(Box::new(g.clone())),
            Some(_) => Lookup::NotYet,
            None if book.pending.contains(id) => Lookup::NotYet,
            None => Lookup::Unknown,
        }
    }

    pub fn stats(&self) -> MockStats {
        let mut stats = self.book().stats.clone();
        (stats.batch_submits, stats.batch_lines) = self.batches.counts();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let s = Shared::new(MockConfig::default());
        let a = s.new_generation_id();
        let b = s.new_generation_id();
        assert_ne!(a, b);
        let tail = a.rsplit('-').next().unwrap_or_default();
        assert_eq!(tail.len(), 20);
        assert!(tail.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn limiter_admits_rps_per_window() {
        let s = Shared::new(MockConfig::default());
        assert!(s.admit(2) && s.admit(2));
        assert!(!s.admit(2));
    }

    #[test]
    fn the_bucket_starts_full_and_refills_at_its_rate() {
        let s = Shared::new(MockConfig::default());
        let bucket = Bucket {
            per_second: 10.0,
            burst: 3,
        };
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let took: Vec<bool> = (0..4).map(|_| s.take_token_at(bucket, t0)).collect();
        assert_eq!(took, [true, true, true, false], "a full bucket of 3");
        assert!(!s.take_token_at(bucket, t0 + ms(50)), "half a token");
        assert!(s.take_token_at(bucket, t0 + ms(100)), "one token in 100 ms");
        assert!(!s.take_token_at(bucket, t0 + ms(100)));
        // A long idle spell saves up the burst, no more.
        let later = t0 + Duration::from_secs(10);
        let took = (0..4).filter(|_| s.take_token_at(bucket, later)).count();
        assert_eq!(took, 3);
    }

    fn generation(id: &str) -> Generation {
        Generation {
            id: id.to_owned(),
            model: "a/b".to_owned(),
            provider: "Mock",
            prompt_tokens: 1,
            completion_tokens: 1,
            cost: 0.0,
            upstream_cost: 0.0,
            is_byok: false,
            service_tier: None,
            finish_reason: "stop",
            streamed: false,
            cancelled: false,
            latency_ms: 0,
            created_at: jiff::Timestamp::now(),
            http_referer: None,
            user_agent: None,
            recorded: Instant::now(),
        }
    }

    #[test]
    fn only_the_newest_generations_are_kept() {
        let s = Shared::new(MockConfig {
            keep_generations: 2,
            ..MockConfig::default()
        });
        for id in ["g1", "g2", "g3"] {
            s.record(generation(id), None);
        }
        let found = |id| matches!(s.lookup(id), Lookup::Found(_));
        assert!(!found("g1"), "the oldest is dropped first");
        assert!(found("g2") && found("g3"));
        s.record(generation("g4"), None);
        assert!(!found("g2") && found("g3") && found("g4"));
    }

    #[test]
    fn none_kept_is_none_kept() {
        let s = Shared::new(MockConfig {
            keep_generations: 0,
            ..MockConfig::default()
        });
        s.record(generation("g1"), None);
        assert!(matches!(s.lookup("g1"), Lookup::Unknown));
        assert_eq!(s.stats().generations, 0, "counts ids issued, not records");
    }

    #[test]
    fn arrivals_give_the_peak_second_and_the_span() {
        let s = Shared::new(MockConfig::default());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 3 in the first second, then 2 one second later: the peak is 3, not 5.
        for t in [0, 400, 999, 1000, 1999] {
            s.count_request_at(t0 + ms(t));
        }
        let st = s.stats();
        assert_eq!((st.requests, st.peak_1s), (5, 3));
        assert!((st.arrival_span_s - 1.999).abs() < 1e-9);
    }
}
