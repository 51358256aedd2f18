//! The model catalogue (`GET /models`: ids and prices) and the key's account state
//! (`GET /key`: limit, remaining credit, usage), parsed leniently (FACTS §6).

use std::collections::HashMap;

use anyhow::Context;
use serde_json::Value;

use crate::client::{Client, GetResponse};
use crate::exit::Failure;
use crate::retry::describe;

/// Prices in USD: per prompt token, per completion token, per request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pricing {
    pub prompt: f64,
    pub completion: f64,
    pub request: f64,
}

impl Pricing {
    /// The cost of a request with these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.prompt * prompt_tokens as f64
            + self.completion * completion_tokens as f64
            + self.request
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// `None` when the catalogue gives no usable price (e.g. the router's `-1` sentinel).
    pub pricing: Option<Pricing>,
}

/// The models by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub models: Vec<ModelInfo>,
    by_id: HashMap<String, usize>,
}

impl Catalog {
    pub fn new(models: Vec<ModelInfo>) -> Catalog {
        let by_id = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Catalog { models, by_id }
    }

    /// Up to three ids that look like `id` (a typo, a missing author, another version), the
    /// closest first: the suggestions for a model id `/models` does not list.
    pub fn close_to(&self, id: &str) -> Vec<&str> {
        let wanted = id.to_ascii_lowercase();
        let slug = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
        let mut scored: Vec<(usize, &str)> = self
            .models
            .iter()
            .map(|m| {
                let other = m.id.to_ascii_lowercase();
                let d = edit_distance(&wanted, &other)
                    .min(edit_distance(&slug(&wanted), &slug(&other)));
                (d, m.id.as_str())
            })
            .filter(|(d, _)| *d <= (wanted.len() / 3).max(2))
            .collect();
        scored.sort();
        scored.into_iter().take(3).map(|(_, id)| id).collect()
    }

    /// The entry listed under exactly `id` (a `:batch` variant is its own entry, with its
    /// own prices, or none).
    pub fn get_exact(&self, id: &str) -> Option<&ModelInfo> {
        self.by_id.get(id).map(|&i| &self.models[i])
    }

    /// A model by id; a `:variant` suffix falls back to the base id's entry.
    pub fn get(&self, id: &str) -> Option<&ModelInfo> {
        self.by_id
            .get(id)
            .or_else(|| {
                id.split_once(':')
                    .and_then(|(base, _)| self.by_id.get(base))
            })
            .map(|&i| &self.models[i])
    }

    /// Parse a `/models` body: `{"data": [Model…]}`.
    pub fn from_json(body: &Value) -> anyhow::Result<Catalog> {
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .context("the /models answer has no data array")?;
        Ok(Catalog::new(data.iter().filter_map(parse_model).collect()))
    }
}

fn parse_model(m: &Value) -> Option<ModelInfo> {
    let id = m.get("id")?.as_str()?.to_owned();
    let pricing = m.get("pricing").and_then(|p| {
        let prompt = price(p.get("prompt"))?;
        let completion = price(p.get("completion"))?;
        Some(Pricing {
            prompt,
            completion,
            request: price(p.get("request")).unwrap_or(0.0),
        })
    });
    Some(ModelInfo {
        name: m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&id)
            .to_owned(),
        context_length: m.get("context_length").and_then(Value::as_u64).or_else(|| {
            m.get("top_provider")
                .and_then(|t| t.get("context_length"))
                .and_then(Value::as_u64)
        }),
        max_completion_tokens: m
            .get("top_provider")
            .and_then(|t| t.get("max_completion_tokens"))
            .and_then(Value::as_u64),
        pricing,
        id,
    })
}

/// A price: a decimal string (or number) of USD per unit; negative sentinels are unknown.
fn price(v: Option<&Value>) -> Option<f64> {
    let x = match v? {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (x.is_finite() && x >= 0.0).then_some(x)
}

/// The key's account state from `/key`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyInfo {
    /// The masked key, e.g. `sk-or-v1-au7...890`.
    pub label: String,
    /// USD cap of this key; `None` is unlimited.
    pub limit: Option<f64>,
    pub limit_remaining: Option<f64>,
    pub limit_reset: Option<String>,
    pub usage: f64,
    pub usage_daily: Option<f64>,
    pub usage_weekly: Option<f64>,
    pub usage_monthly: Option<f64>,
    pub is_free_tier: bool,
}

impl KeyInfo {
    /// Parse a `/key` body: `{"data": {…}}`.
    pub fn from_json(body: &Value) -> anyhow::Result<KeyInfo> {
        let d = body
            .get("data")
            .filter(|d| d.is_object())
            .context("the /key answer has no data object")?;
        let f = |k: &str| d.get(k).and_then(Value::as_f64);
        Ok(KeyInfo {
            label: d
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            limit: f("limit"),
            limit_remaining: f("limit_remaining"),
            limit_reset: d
                .get("limit_reset")
                .and_then(Value::as_str)
                .map(str::to_owned),
            usage: f("usage").unwrap_or(0.0),
            usage_daily: f("usage_daily"),
            usage_weekly: f("usage_weekly"),
            usage_monthly: f("usage_monthly"),
            is_free_tier: d
                .get("is_free_tier")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// `GET /models`.
pub async fn fetch_models(client: &Client) -> Result<Catalog, Failure> {
    let resp = get_ok(client, "/models").await?;
    Ok(Catalog::from_json(&resp.body)?)
}

/// `GET /key`.
pub async fn fetch_key(client: &Client) -> Result<KeyInfo, Failure> {
    let resp = get_ok(client, "/key").await?;
    Ok(KeyInfo::from_json(&resp.body)?)
}

/// A `GET` that must answer 200. A refused key (401/403) or spent credit (402) is
/// [`Failure::Refused`]; the network or any other status is [`Failure::Failed`].
async fn get_ok(client: &Client, path: &str) -> Result<GetResponse, Failure> {
    let resp = client
        .get(path)
        .await
        .map_err(|f| Failure::failed(format!("GET {path}: {}", describe(&f))))?;
    if resp.status != 200 {
        let message = resp
            .error()
            .map(|e| crate::text::sanitize(&e.message))
            .unwrap_or_default();
        let what = format!("GET {path}: HTTP {} {message}", resp.status);
        return Err(match resp.status {
            401 | 403 => Failure::Refused(format!("{} (the API key was refused)", what.trim_end())),
            402 => Failure::Refused(format!("{} (out of credit)", what.trim_end())),
            // Not "key refused": the server does not serve this path (an OpenAI-compatible
            // server, or a base URL without /api/v1).
            404 | 405 => Failure::failed(format!(
                "{}: this server has no {path} (is --base-url an OpenRouter-compatible API, \
                 ending in /api/v1?)",
                what.trim_end()
            )),
            _ => Failure::failed(what.trim_end()),
        });
    }
    Ok(resp)
}

/// Levenshtein distance over chars (ids are short: a row of 80 cells is plenty).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ids_are_suggested_for_an_unknown_one() {
        let ids = [
            "openai/gpt-4o-mini",
            "openai/gpt-4o",
            "anthropic/claude-3.5-haiku",
            "x/y",
        ];
        let data: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        let c = Catalog::from_json(&json!({ "data": data })).unwrap();
        assert_eq!(
            c.close_to("openai/gpt-4o-mimi"),
            ["openai/gpt-4o-mini", "openai/gpt-4o"]
        );
        // Without the author, the slug still matches.
        assert_eq!(
            c.close_to("claude-3.5-haiku")[0],
            "anthropic/claude-3.5-haiku"
        );
        assert!(c.close_to("something/else-entirely").is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
    use serde_json::json;

    #[test]
    fn parses_prices_as_decimal_strings_and_skips_sentinels() {
        let body = json!({"data":[
            {"id":"openai/gpt-4o-mini","name":"GPT-4o mini","context_length":128000,
             "pricing":{"prompt":"0.00000015","completion":"0.0000006","request":"0"},
             "top_provider":{"max_completion_tokens":16384}},
            {"id":"openrouter/auto","pricing":{"prompt":"-1","completion":"-1"}},
            {"no_id":true}
        ]});
        let c = Catalog::from_json(&body).unwrap();
        assert_eq!(c.models.len(), 2);
        let m = c.get("openai/gpt-4o-mini").unwrap();
        let p = m.pricing.unwrap();
        assert_eq!(p.prompt, 0.00000015);
        assert!((p.cost(1_000_000, 1_000_000) - 0.75).abs() < 1e-12);
        assert_eq!(m.max_completion_tokens, Some(16384));
        assert_eq!(c.get("openrouter/auto").unwrap().pricing, None);
        assert!(c.get("openai/gpt-4o-mini:nitro").is_some());
        assert!(c.get("nope").is_none());
    }

    #[test]
    fn parses_key_info_with_nulls() {
        let k = KeyInfo::from_json(&json!({"data":{"label":"sk-or-v1-ab...yz","limit":null,
            "limit_remaining":null,"usage":1.5,"usage_daily":0.25,"is_free_tier":false}}))
        .unwrap();
        assert_eq!(k.limit, None);
        assert_eq!(k.usage, 1.5);
        assert_eq!(k.usage_daily, Some(0.25));
        assert!(KeyInfo::from_json(&json!({"error":{"code":401}})).is_err());
    }
}
