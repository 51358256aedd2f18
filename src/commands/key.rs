//! `orbatch key`: the key's account state (`GET /key`) as a small table on stdout. Only the
//! server's masked label is shown, never the key itself.

use comfy_table::{Table, presets};

use super::connect;
use crate::catalog::{self, KeyInfo};
use crate::cli::{KeyArgs, TableFormat};
use crate::config::Key;
use crate::exit::{Exit, Outcome};
use crate::text::{sanitize, usd};
use crate::{stdout, ui};

/// Run `orbatch key`.
pub async fn command(args: &KeyArgs) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    let conn = connect(&args.api, Key::Required).await?;
    let result = catalog::fetch_key(&conn.client).await;
    conn.close().await;
    let info = result.map_err(|f| f.with_key_hint(args.api.key_env()))?;
    let text = match args.format {
        TableFormat::Table => format!("{}\n", table(&info)),
        TableFormat::Json => format!("{}\n", json(&info)),
    };
    stdout::write(text.as_bytes())?;
    Ok(Exit::Ok)
}

/// The rows: label, limit, remaining, usage by period, free tier.
pub fn rows(k: &KeyInfo) -> Vec<(&'static str, String)> {
    let money = |x: Option<f64>| x.map_or("—".to_owned(), usd);
    let limit = match (k.limit, &k.limit_reset) {
        (None, _) => "unlimited".to_owned(),
        (Some(l), Some(reset)) => format!("{} ({})", usd(l), sanitize(reset)),
        (Some(l), None) => usd(l),
    };
    vec![
        ("label", sanitize(&k.label)),
        ("limit", limit),
        (
            "remaining",
            if k.limit.is_none() {
                "unlimited".to_owned()
            } else {
                money(k.limit_remaining)
            },
        ),
        ("usage today", money(k.usage_daily)),
        ("usage this week", money(k.usage_weekly)),
        ("usage this month", money(k.usage_monthly)),
        ("usage total", usd(k.usage)),
        (
            "free tier",
            if k.is_free_tier { "yes" } else { "no" }.to_owned(),
        ),
    ]
}

/// The key's state as JSON, in USD as numbers (`null`: unlimited or not reported).
pub fn json(k: &KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "label": sanitize(&k.label),
        "limit": k.limit,
        "limit_remaining": k.limit_remaining,
        "limit_reset": k.limit_reset,
        "usage": k.usage,
        "usage_daily": k.usage_daily,
        "usage_weekly": k.usage_weekly,
        "usage_monthly": k.usage_monthly,
        "is_free_tier": k.is_free_tier,
    })
}

fn table(k: &KeyInfo) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    for (name, value) in rows(k) {
        t.add_row(vec![name.to_owned(), value]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_keys_say_so() {
        let k = KeyInfo {
            label: "sk-or-v1-ab...yz".into(),
            usage: 1.5,
            usage_daily: Some(0.25),
            ..KeyInfo::default()
        };
        let r = rows(&k);
        assert_eq!(r[1], ("limit", "unlimited".to_owned()));
        assert_eq!(r[2], ("remaining", "unlimited".to_owned()));
        assert_eq!(r[3], ("usage today", "$0.250000".to_owned()));
        assert_eq!(r[4], ("usage this week", "—".to_owned()));
        let capped = KeyInfo {
            limit: Some(10.0),
            limit_remaining: Some(8.5),
            limit_reset: Some("monthly".into()),
            ..k
        };
        let r = rows(&capped);
        assert_eq!(r[1].1, "$10.000000 (monthly)");
        assert_eq!(r[2].1, "$8.500000");
    }
}
