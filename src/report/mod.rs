//! `orbatch report`: the aggregation (SPEC §6). Records from one or more output files and the
//! `/generation` costs of their sidecars go in; a serializable [`Report`] comes out.
//!
//! Pure: no I/O here. Reading lives in [`read`], formatting in [`render`] and [`html`], the
//! command glue in [`command`].
//!
//! Two rules decide every number:
//! * **outcomes** (requests, ok, errors, latency) come from the *last* record of each
//!   `(id, model)`, across all files: a rerun appends retries and the last one stands;
//! * **spend** (attempts, tokens, inline and exact cost) counts *every* record, because every
//!   record's attempts were paid for. It is attributed to the group of the key's last record,
//!   so the groups partition both the requests and the money.

pub mod command;
pub mod html;
pub mod read;
pub mod render;
pub mod scores;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::costs::charge::Charge;
use crate::hash::{hash64, key64};
use crate::money::Picos;
use crate::output::record::{ErrorKind, InlineCost, Record, Status};

/// The group of a record with nothing to group by (no provider, no error).
pub const NONE: &str = "-";

/// The key of the total row.
pub const TOTAL: &str = "TOTAL";

/// What the rows of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The requested model id (the record's `model`).
    Model,
    /// The provider that served the final attempt (`-` when none did).
    Provider,
    /// `ok` or `error`.
    Status,
    /// The error kind (`-` for ok rows).
    Error,
    /// The service tier that served the final attempt (`service_tier`; `-` when not said).
    Tier,
    /// The output file the key's last record was read from (one line per job or shard).
    Input,
    /// The document (a chunked document's chunk records and its reduce record together).
    Document,
    /// The lane that sent the request: `sync` (live) or `batch`.
    Lane,
}

impl GroupBy {
    /// The word used in headers (`model`, `provider`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Status => "status",
            GroupBy::Error => "error",
            GroupBy::Tier => "tier",
            GroupBy::Input => "input",
            GroupBy::Document => "document",
            GroupBy::Lane => "lane",
        }
    }

    /// The group of `r`, read from the file named `input`.
    fn key<'a>(self, r: &'a Record, input: &'a str) -> &'a str {
        match self {
            GroupBy::Model => &r.model,
            GroupBy::Provider => r.provider.as_deref().unwrap_or(NONE),
            GroupBy::Status => match r.status {
                Status::Ok => "ok",
                Status::Error => "error",
            },
            GroupBy::Error => r.error.as_ref().map_or(NONE, |e| e.kind.as_str()),
            GroupBy::Tier => r.service_tier.as_deref().unwrap_or(NONE),
            GroupBy::Input => input,
            GroupBy::Document => crate::docs::document_of(&r.id, r.stage),
            GroupBy::Lane => r.lane.as_deref().unwrap_or("sync"),
        }
    }
}

/// A summary of one or more output files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What the rows are grouped by.
    pub by: GroupBy,
    /// The files read, in the order given (filled in by the reader, empty from [`aggregate`]).
    pub inputs: Vec<Input>,
    /// One row per group, sorted by key.
    pub groups: Vec<Row>,
    /// All groups together (key [`TOTAL`]).
    pub total: Row,
    /// Inline against exact spend.
    pub spend: Spend,
    /// `latency_ms` of the ok requests in equal-width buckets (for charts).
    pub latency_histogram: Vec<Bucket>,
    /// Accuracy per model and pairs of models, when `OUT.scores.jsonl` files were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<scores::Scores>,
    /// What grading the answers cost (the judge scorer's `OUT.judge.jsonl` files, when there
    /// are any): apart from the totals above, which are the job's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<Judge>,
}

/// The judge's requests, summed over its output files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judge {
    /// The judge's output files read.
    pub files: Vec<String>,
    /// All of them together (requests, spend, audit), as a row of the report.
    pub total: Row,
}

/// One output file read into the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Input {
    pub path: String,
    /// Records read from it.
    pub records: u64,
    /// Lines that were not records (skipped with a warning).
    pub skipped_lines: u64,
    /// Its `.generations.jsonl` sidecar, when there is one.
    pub sidecar: Option<String>,
    /// Generation costs read from the sidecar.
    pub generations: u64,
}

/// One row of the report: a group, or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    /// Distinct `(id, model)` keys whose last record falls in this group.
    pub requests: u64,
    pub ok: u64,
    /// Of the ok ones, answers cut at max_tokens (`finish_reason: length`).
    pub truncated: u64,
    pub errors: u64,
    /// `ok / requests × 100`; `null` without requests.
    pub ok_pct: Option<f64>,
    /// Records (all of them, including superseded ones).
    pub records: u64,
    /// Attempts, summed over all records.
    pub attempts: u64,
    /// `usage.prompt_tokens` / `usage.completion_tokens`, summed over all records.
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// USD: `usage.cost` summed over the records that have one; `null` when none has one
    /// (the server sent no cost: unknown, not $0).
    pub spend_inline: Option<f64>,
    /// Answers (ok records) that carry no `usage.cost` (then `spend_inline` is a
    /// lower bound).
    pub records_without_cost: u64,
    /// USD: sidecar `total_cost` over every known generation id; `null` without any sidecar.
    pub spend_exact: Option<f64>,
    /// Generation ids the sidecars do not know (yet).
    pub unconfirmed_ids: u64,
    /// Where the money went: OpenRouter against the providers (BYOK), answers against
    /// failed attempts, per 1,000 rows.
    pub audit: Audit,
    /// Percentiles of `latency_ms` over ok requests.
    pub latency_ms: Percentiles,
    /// Median time to first token over ok streamed requests.
    pub ttft_p50_ms: Option<u64>,
    /// Error kinds of the failed requests, with counts.
    pub error_kinds: BTreeMap<ErrorKind, u64>,
    /// Answers checked against a JSON Schema (`--schema`); absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRow>,
}

/// How the answers of a group fared against the job's schema (last records only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaRow {
    /// Requests whose answer was checked (it fits, or it ended `invalid_output`).
    pub checked: u64,
    /// Of those, the ones that fit (possibly after re-asks).
    pub valid: u64,
    /// `valid / checked × 100`.
    pub valid_pct: f64,
    /// Requests that needed at least one re-ask.
    pub reasked: u64,
}

/// A group's spend taken apart, from the best source there is: exact (`/generation`) when
/// every generation id of the group is confirmed, else inline (`usage.cost`). USD; `null`
/// when unknown (inline, with answers that carry no cost and none that does).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    /// `exact` or `inline`.
    pub source: &'static str,
    /// Charged to the OpenRouter balance (for BYOK requests, only its fee).
    pub openrouter: Option<f64>,
    /// Billed by providers to the user's own keys (BYOK).
    pub byok: Option<f64>,
    /// `openrouter + byok`.
    pub total: Option<f64>,
    /// Spent on the attempts that gave the answers kept (the ok records' final attempts).
    pub answers: Option<f64>,
    /// Spent on every other attempt: failed ones, retried ones, superseded records. Inline,
    /// this is a lower bound (only failed records that carry a cost count); exact, it is all.
    pub failed_attempts: Option<f64>,
    /// `total / requests × 1000`.
    pub per_1000_rows: Option<f64>,
}

/// Latency percentiles in milliseconds; `null` when there is nothing to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
}

/// The spend reconciliation: what `usage.cost` says against what `/generation` says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spend {
    /// USD, `usage.cost` over the records that have one; `null` when none has one.
    pub inline: Option<f64>,
    /// Answers (ok records) that carry no `usage.cost`.
    pub records_without_cost: u64,
    /// USD, sidecar `total_cost` over the confirmed generation ids; `null` without any sidecar.
    pub exact: Option<f64>,
    /// Generation ids in all records (every attempt that got one).
    pub generation_ids: u64,
    /// Of those, ids no sidecar knows yet.
    pub unconfirmed_ids: u64,
    /// `exact − inline`, only when both are complete (a sidecar was read, every id is
    /// confirmed, every record has a cost); `null` otherwise, never a partial sum's
    /// difference.
    pub difference: Option<f64>,
    /// Whether exact spend is complete: a sidecar was read and every id is confirmed.
    pub difference_final: bool,
}

/// `count` ok requests had `from_ms <= latency_ms < to_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub from_ms: u64,
    pub to_ms: u64,
    pub count: u64,
}

/// A generation's exact spend: OpenRouter's part and the provider's (BYOK).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Exact {
    openrouter: Picos,
    byok: Picos,
}

impl Exact {
    fn total(self) -> Picos {
        {
            let mut t = self.openrouter;
            t.add(self.byok);
            t
        }
    }
}

/// Exact costs from the `/generation` sidecars, by generation id. Ids are kept hashed
/// (16 bytes an id), as resume keeps its keys.
#[derive(Debug, Default)]
pub struct Generations {
    cost: HashMap<u64, Exact>,
}

impl Generations {
    /// Note what generation `id` cost (a later line for the same id wins).
    pub fn insert(&mut self, id: &str, charge: Charge) {
        let exact = Exact {
            openrouter: Picos::from_usd(charge.openrouter),
            byok: Picos::from_usd(charge.byok),
        };
        self.cost.insert(hash64(id.as_bytes()), exact);
    }

    fn get(&self, id: &str) -> Option<Exact> {
        self.cost.get(&hash64(id.as_bytes())).copied()
    }

    /// Note that generation `id` cost `usd` (not BYOK).
    #[cfg(test)]
    pub fn insert_usd(&mut self, id: &str, usd: f64) {
        let charge = Charge {
            openrouter: usd,
            byok: 0.0,
        };
        self.insert(id, charge);
    }

    /// Number of generation ids with a cost.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cost.len()
    }

    /// The spend of generation `id` in USD (OpenRouter's and, for BYOK, the provider's), if
    /// a sidecar has it.
    pub fn cost_of(&self, id: &str) -> Option<f64> {
        self.get(id).map(|e| e.total().usd())
    }
}

#[cfg(test)]
/// Summarise `records` grouped `by`. `generations` is `None` when no sidecar exists (then the
/// report has no exact spend), else the costs of every sidecar read.
pub fn aggregate<'r>(
    by: GroupBy,
    generations: Option<&Generations>,
    records: impl IntoIterator<Item = &'r Record>,
) -> Report {
    let mut agg = Aggregator::new(by, generations);
    for r in records {
        agg.add(r);
    }
    agg.finish()
}

/// [`aggregate`], one record at a time (for streaming files through it). Memory grows with
/// the number of distinct `(id, model)` keys (about 100 bytes each), not with records.
pub struct Aggregator<'g> {
    by: GroupBy,
    generations: Option<&'g Generations>,
    names: Vec<String>,
    name_index: HashMap<String, usize>,
    keys: HashMap<u64, KeyState>,
    /// The file records are being read from (for `--by input`).
    input: String,
}

/// What is known about one `(id, model)`: its last outcome and everything paid for it.
#[derive(Debug, Clone, Copy)]
struct KeyState {
    last: Outcome,
    paid: Paid,
}

/// The outcome of a record, as far as the report cares.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    group: usize,
    kind: Option<ErrorKind>,
    ok: bool,
    /// Ok, but cut at max_tokens.
    truncated: bool,
    latency_ms: Option<u64>,
    ttft_ms: Option<u64>,
    /// Checked against a schema: whether it fit.
    schema: Option<bool>,
    reasked: bool,
}

/// What records cost, summed.
#[derive(Debug, Clone, Copy, Default)]
struct Paid {
    records: u64,
    attempts: u64,
    tokens_in: u64,
    tokens_out: u64,
    inline: Picos,
    /// Of `inline`: the providers' BYOK charges; the failed records' costs.
    inline_byok: Picos,
    inline_failed: Picos,
    /// Records with a `usage.cost` / ok records without one.
    costed: u64,
    uncosted: u64,
    exact: Picos,
    /// Of `exact`: the providers' BYOK charges; every attempt's but the answers kept.
    exact_byok: Picos,
    exact_failed: Picos,
    ids: u64,
    unconfirmed: u64,
}

impl Paid {
    fn add(&mut self, o: &Paid) {
        self.records += o.records;
        self.attempts += o.attempts;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.inline.add(o.inline);
        self.inline_byok.add(o.inline_byok);
        self.inline_failed.add(o.inline_failed);
        self.costed += o.costed;
        self.uncosted += o.uncosted;
        self.exact.add(o.exact);
        self.exact_byok.add(o.exact_byok);
        self.exact_failed.add(o.exact_failed);
        self.ids += o.ids;
        self.unconfirmed += o.unconfirmed;
    }
}

impl<'g> Aggregator<'g> {
    pub fn new(by: GroupBy, generations: Option<&'g Generations>) -> Self {
        Aggregator {
            by,
            generations,
            names: Vec::new(),
            name_index: HashMap::new(),
            keys: HashMap::new(),
            input: String::new(),
        }
    }

    /// Name the file the next records come from (what `--by input` groups by).
    pub fn set_input(&mut self, name: &str) {
        name.clone_into(&mut self.input);
    }

    /// Take one record into account (records of a key must come in file order).
    pub fn add(&mut self, r: &Record) {
        let last = self.outcome(r);
        let paid = self.paid(r);
        let state = self.keys.entry(key64(&r.id, &r.model)).or_insert(KeyState {
            last,
            paid: Paid::default(),
        });
        state.last = last;
        state.paid.add(&paid);
    }

    fn outcome(&mut self, r: &Record) -> Outcome {
        let ok = r.status == Status::Ok;
        let key = self.by.key(r, &self.input).to_owned();
        Outcome {
            group: self.intern(&key),
            kind: if ok {
                None
            } else {
                r.error.as_ref().map(|e| e.kind)
            },
            ok,
            truncated: ok && r.finish_reason.as_deref() == Some("length"),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            schema: if r.output_json.is_some() {
                Some(true)
            } else {
                r.error
                    .as_ref()
                    .filter(|e| e.kind == ErrorKind::InvalidOutput)
                    .map(|_| false)
            },
            reasked: r.reasks > 0,
        }
    }

    fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.name_index.get(name) {
            return i;
        }
        self.names.push(name.to_owned());
        self.name_index
            .insert(name.to_owned(), self.names.len() - 1);
        self.names.len() - 1
    }

    fn paid(&self, r: &Record) -> Paid {
        let usage = r.usage.as_ref();
        let mut paid = Paid {
            records: 1,
            attempts: u64::from(r.attempts),
            tokens_in: usage.map_or(0, |u| u.prompt_tokens),
            tokens_out: usage.map_or(0, |u| u.completion_tokens),
            ids: r.generation_ids.len() as u64,
            ..Paid::default()
        };
        let ok = r.status == Status::Ok;
        match r.inline_cost() {
            InlineCost::Known(c) => {
                paid.inline = Picos::from_usd(c);
                paid.inline_byok = Picos::from_usd(r.byok_cost());
                if !ok {
                    paid.inline_failed = paid.inline;
                }
                paid.costed = 1;
            }
            InlineCost::Free => {}
            InlineCost::Unknown => paid.uncosted = 1,
        }
        // The answer kept is the ok record's final attempt; every other attempt failed.
        let answer = if ok { r.generation_id.as_deref() } else { None };
        for id in &r.generation_ids {
            match self.generations.and_then(|g| g.get(id)) {
                Some(cost) => {
                    paid.exact.add(cost.total());
                    paid.exact_byok.add(cost.byok);
                    if Some(id.as_str()) != answer {
                        paid.exact_failed.add(cost.total());
                    }
                }
                None => paid.unconfirmed += 1,
            }
        }
        paid
    }

    /// The report: one row per group that holds at least one key, and the total.
    pub fn finish(self) -> Report {
        let mut groups: Vec<Acc> = self.names.iter().map(|_| Acc::new()).collect();
        let mut total = Acc::new();
        for state in self.keys.values() {
            groups[state.last.group].add(state);
            total.add(state);
        }
        let exact = self.generations.is_some();
        let mut rows: Vec<Row> = groups
            .iter()
            .zip(&self.names)
            .filter(|(acc, _)| acc.requests > 0)
            .map(|(acc, name)| acc.row(name, exact))
            .collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Report {
            by: self.by,
            inputs: Vec::new(),
            groups: rows,
            total: total.row(TOTAL, exact),
            spend: spend(&total.paid, exact),
            latency_histogram: buckets(&total.latency),
            scores: None,
            judge: None,
        }
    }
}

fn spend(paid: &Paid, exact: bool) -> Spend {
    let exact_usd = exact.then(|| paid.exact.usd());
    let complete = exact && paid.unconfirmed == 0;
    Spend {
        inline: paid.inline_usd(),
        records_without_cost: paid.uncosted,
        exact: exact_usd,
        generation_ids: paid.ids,
        unconfirmed_ids: paid.unconfirmed,
        difference: (complete && paid.uncosted == 0).then(|| paid.exact.minus(paid.inline).usd()),
        difference_final: complete,
    }
}

impl Paid {
    /// `usage.cost` summed, or `None` when answers carry none and none has one.
    fn inline_usd(&self) -> Option<f64> {
        InlineCost::sum(self.inline.usd(), self.costed, self.uncosted)
    }

    /// The spend of `requests` requests taken apart; exact when a sidecar was read and knows
    /// every id.
    fn audit(&self, requests: u64, exact: bool) -> Audit {
        let (source, total, byok, failed) = if exact && self.unconfirmed == 0 {
            let total = Some(self.exact);
            ("exact", total, self.exact_byok, self.exact_failed)
        } else {
            let total = self.inline_usd().map(|_| self.inline);
            ("inline", total, self.inline_byok, self.inline_failed)
        };
        let part = |p: Picos| total.map(|_| p.usd());
        Audit {
            source,
            openrouter: total.map(|t| t.minus(byok).usd()),
            byok: part(byok),
            total: total.map(Picos::usd),
            answers: total.map(|t| t.minus(failed).usd()),
            failed_attempts: part(failed),
            per_1000_rows: total
                .filter(|_| requests > 0)
                .map(|t| t.usd() * 1000.0 / requests as f64),
        }
    }
}

/// A group's running totals.
struct Acc {
    requests: u64,
    ok: u64,
    truncated: u64,
    kinds: BTreeMap<ErrorKind, u64>,
    paid: Paid,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    schema_checked: u64,
    schema_valid: u64,
    reasked: u64,
}

/// An empty histogram of milliseconds, 3 significant digits, growing as needed.
fn histogram() -> Histogram<u64> {
    // 3 significant digits is within hdrhistogram's 0..=5: this cannot fail.
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

impl Acc {
    fn new() -> Acc {
        Acc {
            requests: 0,
            ok: 0,
            truncated: 0,
            kinds: BTreeMap::new(),
            paid: Paid::default(),
            latency: histogram(),
            ttft: histogram(),
            schema_checked: 0,
            schema_valid: 0,
            reasked: 0,
        }
    }

    fn add(&mut self, state: &KeyState) {
        let last = &state.last;
        self.requests += 1;
        self.paid.add(&state.paid);
        if let Some(valid) = last.schema {
            self.schema_checked += 1;
            self.schema_valid += u64::from(valid);
        }
        self.reasked += u64::from(last.reasked);
        if last.ok {
            self.ok += 1;
            self.truncated += u64::from(last.truncated);
            if let Some(ms) = last.latency_ms {
                self.latency.saturating_record(ms);
            }
            if let Some(ms) = last.ttft_ms {
                self.ttft.saturating_record(ms);
            }
        } else if let Some(kind) = last.kind {
            *self.kinds.entry(kind).or_default() += 1;
        }
    }

    fn row(&self, key: &str, exact: bool) -> Row {
        let p = &self.paid;
        Row {
            key: key.to_owned(),
            requests: self.requests,
            ok: self.ok,
            truncated: self.truncated,
            errors: self.requests - self.ok,
            ok_pct: (self.requests > 0).then(|| self.ok as f64 * 100.0 / self.requests as f64),
            records: p.records,
            attempts: p.attempts,
            tokens_in: p.tokens_in,
            tokens_out: p.tokens_out,
            spend_inline: p.inline_usd(),
            records_without_cost: p.uncosted,
            spend_exact: exact.then(|| p.exact.usd()),
            unconfirmed_ids: p.unconfirmed,
            audit: p.audit(self.requests, exact),
            latency_ms: Percentiles {
                p50: quantile(&self.latency, 0.50),
                p95: quantile(&self.latency, 0.95),
                p99: quantile(&self.latency, 0.99),
            },
            ttft_p50_ms: quantile(&self.ttft, 0.50),
            error_kinds: self.kinds.clone(),
            schema: (self.schema_checked > 0).then(|| SchemaRow {
                checked: self.schema_checked,
                valid: self.schema_valid,
                valid_pct: self.schema_valid as f64 * 100.0 / self.schema_checked as f64,
                reasked: self.reasked,
            }),
        }
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

/// At most this many latency buckets.
const MAX_BUCKETS: u64 = 20;

/// Equal-width buckets of a 1-2-5 width covering `0..=max`.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let width = nice_width(h.max().div_ceil(MAX_BUCKETS));
    let n = h.max() / width + 1;
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            from_ms: i * width,
            to_ms: (i + 1) * width,
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        let i = (v.value_iterated_to() / width).min(n - 1);
        if let Some(b) = out.get_mut(i as usize) {
            b.count += v.count_at_value();
        }
    }
    out
}

/// The smallest of 1, 2, 5, 10, 20, 50, … that is at least `raw`.
fn nice_width(raw: u64) -> u64 {
    let mut unit: u64 = 1;
    loop {
        for m in [1, 2, 5] {
            let w = unit.saturating_mul(m);
            if w >= raw || w == u64::MAX {
                return w;
            }
        }
        unit = unit.saturating_mul(10);
    }
}
