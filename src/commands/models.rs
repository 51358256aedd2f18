//! `orbatch models`: the model catalogue (`GET /models`) as a table or JSON on stdout, prices
//! per million tokens. Only the data goes to stdout, so the output can be piped.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

use super::connect;
use crate::catalog::{self, ModelInfo};
use crate::cli::{ModelsArgs, TableFormat};
use crate::config::Key;
use crate::exit::{Exit, Outcome};
use crate::{stdout, ui};

/// One row of the listing; prices are USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    pub id: String,
    pub name: String,
    pub context_length: Option<u64>,
    pub prompt_per_m: Option<f64>,
    pub completion_per_m: Option<f64>,
}

impl ModelRow {
    fn new(m: &ModelInfo) -> ModelRow {
        ModelRow {
            id: m.id.clone(),
            name: m.name.clone(),
            context_length: m.context_length,
            prompt_per_m: m.pricing.map(|p| per_million(p.prompt)),
            completion_per_m: m.pricing.map(|p| per_million(p.completion)),
        }
    }
}

/// USD per token → USD per million tokens, rounded to a millionth of a dollar so that
/// `0.00000015` shows as `0.15`, not `0.15000000000000002`.
pub fn per_million(per_token: f64) -> f64 {
    (per_token * 1e12).round() / 1e6
}

/// Case-insensitive substring of the id or the name.
pub fn matches(m: &ModelInfo, search: &str) -> bool {
    let needle = search.to_lowercase();
    m.id.to_lowercase().contains(&needle) || m.name.to_lowercase().contains(&needle)
}

/// Run `orbatch models`.
pub async fn command(args: &ModelsArgs) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    let conn = connect(&args.api, Key::Optional).await?;
    let result = catalog::fetch_models(&conn.client).await;
    conn.close().await;
    let catalog = result.map_err(|f| f.with_key_hint(&args.api.key_source()))?;
    let rows: Vec<ModelRow> = catalog
        .models
        .iter()
        .filter(|m| args.search.as_deref().is_none_or(|s| matches(m, s)))
        .map(ModelRow::new)
        .collect();
    let text = match args.format {
        TableFormat::Table => format!("{}\n", table(&rows)),
        TableFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?
        ),
    };
    stdout::write(text.as_bytes())?;
    if !args.verbosity.quiet {
        eprintln!(
            "{} of {} models{}; prices in USD per million tokens",
            rows.len(),
            catalog.models.len(),
            args.search
                .as_deref()
                .map(|s| format!(" matching {s:?}"))
                .unwrap_or_default()
        );
    }
    Ok(Exit::Ok)
}

fn table(rows: &[ModelRow]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["id", "name", "context", "prompt $/M", "completion $/M"]);
    for r in rows {
        t.add_row(vec![
            Cell::new(&r.id),
            Cell::new(&r.name),
            right(r.context_length.map_or("—".to_owned(), |c| c.to_string())),
            right(price(r.prompt_per_m)),
            right(price(r.completion_per_m)),
        ]);
    }
    t
}

fn right(text: String) -> Cell {
    Cell::new(text).set_alignment(CellAlignment::Right)
}

fn price(p: Option<f64>) -> String {
    p.map_or("—".to_owned(), |p| format!("{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_million_prices_are_clean() {
        assert_eq!(per_million(0.000_000_15), 0.15);
        assert_eq!(per_million(0.000_004), 4.0);
        assert_eq!(per_million(0.000_000_02), 0.02);
        assert_eq!(per_million(0.0), 0.0);
    }

    #[test]
    fn search_is_case_insensitive_on_id_and_name() {
        let m = ModelInfo {
            id: "openai/gpt-4o-mini".into(),
            name: "OpenAI: GPT-4o-mini".into(),
            context_length: None,
            max_completion_tokens: None,
            pricing: None,
        };
        assert!(matches(&m, "GPT-4O"));
        assert!(matches(&m, "openai:"));
        assert!(!matches(&m, "claude"));
        assert_eq!(price(None), "—");
    }
}
