//! `orbatch plan`: everything `run` checks, plus what the job will ask for and roughly what
//! it will cost — requests, a prompt-token estimate, a completion bound, catalogue prices and
//! the key's remaining credit. Sends no prompt.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::budget::DEFAULT_COMPLETION_BOUND;
use crate::catalog::{Catalog, KeyInfo, fetch_key, fetch_models};
use crate::config::RunConfig;
use crate::connect::{ClientOptions, Connection};
use crate::estimate;
use crate::exit::{Failure, UsageError};
use crate::job::{Input, Request};
use crate::mock::MockConfig;
use crate::output::resume::{self, Decision, Prior};
use crate::text::usd;

/// The longest wait for the catalogue of the context check.
const CATALOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one model will be asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelPlan {
    pub requests: u64,
    /// Of `requests`, the reduce requests of chunked documents (their prompt: the chunk
    /// answers, each at its completion bound).
    pub reduce: u64,
    /// Estimated prompt tokens (characters ÷ 4 + 4 per message).
    pub prompt_tokens: u64,
    /// Sum of the completion bounds (`max_tokens`, else the default bound).
    pub completion_bound: u64,
    /// Requests without `max_tokens` (their bound is assumed).
    pub unbounded: u64,
    /// Estimated cost of the prompts alone, and with every completion at its bound.
    pub prompt_cost: Option<f64>,
    pub max_cost: Option<f64>,
    /// The worst case at the model's `:batch` variant's own prices, and that variant's id
    /// (`None`: `/models` lists no `:batch` variant).
    pub batch_max_cost: Option<f64>,
    pub batch_id: Option<String>,
    /// Not a model id `/models` lists, and the ids that look like it.
    pub unknown: bool,
    pub suggestions: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub rows: u64,
    /// Requests an earlier run on the output already answered (skipped by `run`).
    pub done: u64,
    /// Requests whose last record is an error and that `--no-retry-errors` keeps.
    pub kept_errors: u64,
    pub models: BTreeMap<String, ModelPlan>,
    /// The key's remaining credit (`None`: unlimited or unknown).
    pub key: Option<KeyInfo>,
    /// Why the credit check could not be done (a server without `/key`, the network).
    pub key_skipped: Option<String>,
    pub max_cost_flag: Option<f64>,
    /// Requests by the `service_tier` they ask for (`None`: not set).
    pub tiers: BTreeMap<Option<String>, u64>,
    /// `--reask N` under `--schema`: each request may take up to N + 1 asks.
    pub reasks: u32,
    /// Requests that do not fit their model's context, and why the check was skipped if it was.
    pub overflows: crate::fit::Overflows,
    pub context_skipped: Option<String>,
    /// What the input reader said (document files it skipped).
    pub notes: Vec<String>,
    /// `--lane`: with batch or auto, the plan shows the cost bound per lane.
    pub lane: crate::batch::Lane,
}

impl Plan {
    /// Count one request.
    pub fn add(&mut self, req: &Request) {
        let tier = req
            .body
            .get("service_tier")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        *self.tiers.entry(tier).or_default() += 1;
        let m = self.models.entry(req.model.clone()).or_default();
        m.requests += 1;
        m.prompt_tokens += estimate::prompt_tokens(&req.body);
        match estimate::max_completion(&req.body) {
            Some(n) => m.completion_bound += n,
            None => {
                m.completion_bound += DEFAULT_COMPLETION_BOUND;
                m.unbounded += 1;
            }
        }
    }

    /// With a reduce stage: a chunk to send means its document's reduce will be sent too,
    /// with this chunk's answer (at most its completion bound) in its prompt.
    pub fn add_to_reduce(&mut self, req: &Request) {
        if req.stage != Some(crate::output::record::Stage::Map) {
            return;
        }
        let bound = estimate::max_completion(&req.body).unwrap_or(DEFAULT_COMPLETION_BOUND);
        let m = self.models.entry(req.model.clone()).or_default();
        m.prompt_tokens += bound;
        if req.id.ends_with("#1") {
            m.reduce += 1;
            m.requests += 1;
            m.completion_bound += bound;
            m.prompt_tokens += estimate::TOKENS_PER_MESSAGE;
        }
    }

    /// Attach prices from the catalogue.
    pub fn price(&mut self, catalog: &Catalog) {
        for (id, m) in &mut self.models {
            if catalog.get(id).is_none() {
                m.suggestions = catalog
                    .close_to(id)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                m.unknown = true;
            }
            let variant = if id.ends_with(":batch") {
                id.clone()
            } else {
                format!("{id}:batch")
            };
            if let Some(info) = catalog.get_exact(&variant) {
                m.batch_id = Some(variant);
                m.batch_max_cost = info.pricing.map(|p| {
                    p.cost(m.prompt_tokens, m.completion_bound)
                        + p.request * (m.requests as f64 - 1.0).max(0.0)
                });
            }
            if let Some(p) = catalog.get(id).and_then(|i| i.pricing) {
                m.prompt_cost = Some(
                    p.cost(m.prompt_tokens, 0) + p.request * (m.requests as f64 - 1.0).max(0.0),
                );
                m.max_cost = Some(
                    p.cost(m.prompt_tokens, m.completion_bound)
                        + p.request * (m.requests as f64 - 1.0).max(0.0),
                );
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.models.values().map(|m| m.requests).sum()
    }

    /// The total worst case, if every model has a price.
    pub fn total_max_cost(&self) -> Option<f64> {
        self.models.values().map(|m| m.max_cost).sum()
    }

    /// Warnings: the estimate against `--max-cost` and the key's remaining credit.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.notes.clone();
        w.extend(self.context_skipped.clone());
        for (id, m) in self.models.iter().filter(|(_, m)| m.unknown) {
            let hint = match m.suggestions.as_slice() {
                [] => "; `orbatch models --search …` lists the ids".to_owned(),
                s => format!("; did you mean {}?", s.join(", ")),
            };
            w.push(format!(
                "{id} is not a model in /models (unknown model id; the total leaves it out){hint}"
            ));
        }
        let unpriced: Vec<&str> = self
            .models
            .iter()
            .filter(|(_, m)| m.max_cost.is_none() && !m.unknown)
            .map(|(id, _)| id.as_str())
            .collect();
        if !unpriced.is_empty() {
            w.push(format!(
                "no price in /models for {}; the total leaves them out",
                unpriced.join(", ")
            ));
        }
        let unbounded: u64 = self.models.values().map(|m| m.unbounded).sum();
        if unbounded > 0 {
            w.push(format!(
                "{unbounded} requests set no max_tokens: their completions were assumed to be \
                 {DEFAULT_COMPLETION_BOUND} tokens (pass -p max_tokens=N for a real bound)"
            ));
        }
        let total: f64 = self.models.values().filter_map(|m| m.max_cost).sum();
        if let Some(cap) = self.max_cost_flag
            && total > cap
        {
            w.push(format!(
                "the worst case {} exceeds --max-cost {}: the run will stop at the cap",
                usd(total),
                usd(cap)
            ));
        }
        if self.reasks > 0 {
            w.push(format!(
                "--schema with --reask {}: a request whose answer does not fit is asked again, up \
                 to {} asks in all (each re-ask sends the conversation so far), so the worst \
                 case above is for the first ask only: up to {}× more if every answer is re-asked",
                self.reasks,
                self.reasks + 1,
                self.reasks + 1
            ));
        }
        for (tier, n) in &self.tiers {
            match tier.as_deref() {
                Some("flex") => w.push(format!(
                    "{n} requests ask for service_tier flex: where a provider serves them on \
                     flex they are billed about half the standard price, so the costs above \
                     (standard prices) are high for them"
                )),
                Some(t @ ("priority" | "fast" | "scale")) => w.push(format!(
                    "{n} requests ask for service_tier {t}: billed above the standard price, \
                     so the costs above (standard prices) are low for them"
                )),
                _ => {}
            }
        }
        if let Some(why) = &self.key_skipped {
            w.push(format!("the key's credit was not checked: {why}"));
        }
        if let Some(remaining) = self.key.as_ref().and_then(|k| k.limit_remaining)
            && total > remaining
        {
            w.push(format!(
                "the worst case {} exceeds the key's remaining credit {}",
                usd(total),
                usd(remaining)
            ));
        }
        w
    }

    /// The plan as a table (stdout).
    pub fn render(&self) -> String {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        t.set_header(vec![
            "model",
            "requests",
            "prompt tokens (est.)",
            "completion bound",
            "prompts only",
            "worst case",
        ]);
        let money = |c: Option<f64>| c.map(usd).unwrap_or_else(|| "—".into());
        for (id, m) in &self.models {
            t.add_row(vec![
                id.clone(),
                m.requests.to_string(),
                m.prompt_tokens.to_string(),
                m.completion_bound.to_string(),
                money(m.prompt_cost),
                money(m.max_cost),
            ]);
        }
        let sum = |f: fn(&ModelPlan) -> u64| self.models.values().map(f).sum::<u64>().to_string();
        let prompts: Option<f64> = self.models.values().map(|m| m.prompt_cost).sum();
        t.add_row(vec![
            "total".to_owned(),
            sum(|m| m.requests),
            sum(|m| m.prompt_tokens),
            sum(|m| m.completion_bound),
            money(prompts),
            money(self.total_max_cost()),
        ]);
        let mut out = format!("{t}\n");
        let skipped = self.done + self.kept_errors;
        let _ = writeln!(
            out,
            "{} rows → {} requests to send{}. Prompt tokens are estimated as characters ÷ 4 + 4 \
             per message; prices are the standard tier's from /models (a BYOK request costs \
             about as much in all: OpenRouter's 5 % fee plus the provider's bill to your key).",
            self.rows,
            self.requests(),
            if skipped > 0 {
                format!(" ({skipped} more already in the output are skipped)")
            } else {
                String::new()
            }
        );
        let reduce: u64 = self.models.values().map(|m| m.reduce).sum();
        if reduce > 0 {
            let _ = writeln!(
                out,
                "Of these, {reduce} reduce requests, one per chunked document and model: their \
                 prompts are counted as the chunk answers at their completion bound."
            );
        }
        if !self.overflows.is_empty() {
            let _ = writeln!(
                out,
                "Too long for the context (`run` refuses these before sending anything):"
            );
            for line in self.overflows.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        if self.lane != crate::batch::Lane::Sync {
            out.push_str(&self.render_lanes());
        }
        match &self.key {
            Some(k) => {
                let remaining = k
                    .limit_remaining
                    .map(|r| format!("{} remaining", usd(r)))
                    .unwrap_or_else(|| "no limit".into());
                let _ = writeln!(out, "key {}: {remaining}, {} used", k.label, usd(k.usage));
            }
            None => {
                let _ = writeln!(out, "key: not checked");
            }
        }
        out
    }
}

impl Plan {
    /// The worst case per lane and model: live (standard tier), flex (about half the
    /// standard price where a provider offers it) and batch (the `:batch` entry's prices).
    fn render_lanes(&self) -> String {
        let money = |c: Option<f64>| c.map(usd).unwrap_or_else(|| "—".into());
        let mut out = String::from("Worst case per lane (live · flex ≈ ½ live · batch):\n");
        let mut chosen = Some(0.0);
        for (id, m) in &self.models {
            let batch = match (&m.batch_id, m.batch_max_cost) {
                (Some(b), Some(c)) => format!("{} ({b})", usd(c)),
                (Some(b), None) => format!("no price for {b}"),
                (None, _) => "no :batch variant in /models".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {id}: live {} · flex {} · batch {batch}",
                money(m.max_cost),
                money(m.max_cost.map(|c| c * 0.5))
            );
            let lane_cost = match (self.lane, m.batch_id.is_some()) {
                (crate::batch::Lane::Auto, false) => m.max_cost,
                _ => m.batch_max_cost,
            };
            chosen = chosen.zip(lane_cost).map(|(a, b)| a + b);
        }
        let lane = match self.lane {
            crate::batch::Lane::Auto => {
                "--lane auto (batch where a :batch variant exists, live for the rest)"
            }
            _ => "--lane batch",
        };
        let _ = writeln!(out, "  with {lane}: {}", money(chosen));
        out
    }
}

/// Build the plan for a resolved run configuration: validate the input (exit 2 on a
/// problem, like `run`), read every request that `run` would send (an existing output is
/// read, not changed: what it answered is skipped), then price it with `/models` and, when
/// `check_key`, compare with `/key`. A refused key is [`Failure::Refused`], a network or
/// server failure [`Failure::Failed`].
pub async fn plan(config: &RunConfig, check_key: bool) -> Result<Plan, Failure> {
    let context = crate::fit::fetch(&config.target, config.timeout.min(CATALOG_TIMEOUT)).await;
    let mut input_config = config.input.clone();
    input_config.context = context.catalog();
    let output = config.output.clone();
    let retry_errors = config.retry_errors;
    let fresh = config.fresh;
    let reduce = config.reduce_template.is_some();
    let reasks = config.structured.as_ref().map_or(0, |s| s.reask);
    let mut plan = tokio::task::spawn_blocking(move || -> Result<Plan, UsageError> {
        let input = Input::open(input_config).map_err(|e| UsageError::new(e.to_string()))?;
        let prior = if fresh {
            Prior::default()
        } else {
            resume::peek(&output).map_err(|e| {
                UsageError::new(format!("{}: cannot read the output: {e}", output.display()))
            })?
        };
        let mut plan = Plan {
            reasks,
            rows: input.rows(),
            overflows: input.overflows().clone(),
            notes: input.notes().to_vec(),
            ..Plan::default()
        };
        for req in input
            .requests()
            .map_err(|e| UsageError::new(e.to_string()))?
        {
            let req = req.map_err(|e| UsageError::new(e.to_string()))?;
            match prior.decide(&req.id, &req.model, &req.fingerprint, retry_errors) {
                Decision::Done => plan.done += 1,
                Decision::KeepError => plan.kept_errors += 1,
                Decision::New | Decision::Changed | Decision::RetryError => {
                    if reduce {
                        plan.add_to_reduce(&req);
                    }
                    plan.add(&req)
                }
            }
        }
        Ok(plan)
    })
    .await??;
    plan.max_cost_flag = config.max_cost;
    plan.context_skipped = context.skipped();
    plan.lane = config.batch.lane;
    let connection = Connection::open(
        &config.target,
        ClientOptions::default(),
        MockConfig::default(),
    )
    .await
    .map_err(|e| UsageError::new(e.to_string()))?;
    // The context check's catalogue prices the plan too; `--mock` (or a failed fetch) asks
    // again here.
    let catalog = match context.catalog() {
        Some(c) => Ok(c),
        None => fetch_models(&connection.client)
            .await
            .map(std::sync::Arc::new),
    };
    let key = if check_key {
        Some(fetch_key(&connection.client).await)
    } else {
        None
    };
    connection.close().await;
    plan.price(&*catalog?);
    // A refused key stops here (exit 3); a server that cannot tell the credit (no `/key`,
    // as on OpenAI-compatible servers) only skips the check.
    match key {
        Some(Ok(info)) => plan.key = Some(info),
        Some(Err(Failure::Failed(e))) => plan.key_skipped = Some(format!("{e:#}")),
        Some(Err(other)) => return Err(other),
        None => {}
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(model: &str, max_tokens: Option<u64>) -> Request {
        crate::job::test_request(model, max_tokens)
    }

    #[test]
    fn sums_estimates_and_prices_per_model() {
        let mut plan = Plan {
            rows: 2,
            max_cost_flag: Some(0.0),
            ..Plan::default()
        };
        plan.add(&req("a", Some(10)));
        plan.add(&req("a", Some(10)));
        plan.add(&req("b", None));
        let catalog = Catalog::from_json(&json!({"data":[
            {"id":"a","pricing":{"prompt":"0.000001","completion":"0.000002"}}]}))
        .unwrap();
        plan.price(&catalog);
        let a = &plan.models["a"];
        assert_eq!(
            (a.requests, a.prompt_tokens, a.completion_bound),
            (2, 12, 20)
        );
        assert!((a.max_cost.unwrap() - (12e-6 + 40e-6)).abs() < 1e-15);
        assert_eq!(plan.models["b"].unbounded, 1);
        assert_eq!(plan.total_max_cost(), None, "b has no price");
        let w = plan.warnings().join("\n");
        assert!(
            w.contains("b is not a model in /models (unknown model id; the total leaves it out); did you mean a?"),
            "{w}"
        );
        assert!(w.contains("max_tokens"), "{w}");
        assert!(w.contains("--max-cost"), "{w}");
        let table = plan.render();
        assert!(
            table.contains("total") && table.contains("3 requests"),
            "{table}"
        );
        assert!(!plan.warnings().join("\n").contains("service_tier"));
        let mut flex = req("a", Some(10));
        flex.body.insert("service_tier".into(), json!("flex"));
        let mut fast = req("a", Some(10));
        fast.body.insert("service_tier".into(), json!("fast"));
        plan.add(&flex);
        plan.add(&fast);
        plan.add(&fast);
        let w = plan.warnings().join("\n");
        assert!(w.contains("1 requests ask for service_tier flex"), "{w}");
        assert!(
            w.contains("2 requests ask for service_tier fast: billed above"),
            "{w}"
        );
        assert!(plan.render().contains("prices are the standard tier's"));
    }
}
