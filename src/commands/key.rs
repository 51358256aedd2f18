//! `orbatch key`: the key's account state (`GET /key`) as a small table on stdout; and, with
//! a management key, `key create|show|disable` (a key per job). Only the server's masked
//! label and the key's hash are ever shown, never a key itself: a created key goes straight
//! into its file.

use std::io::Write as _;
use std::path::Path;

use comfy_table::{Table, presets};

use super::connect;
use crate::audit::manage::{self, ManagedKey, NewKey};
use crate::catalog::{self, KeyInfo};
use crate::cli::{KeyAction, KeyArgs, KeyCreateArgs, KeyDisableArgs, KeyShowArgs, TableFormat};
use crate::config::Key;
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::text::{sanitize, usd};
use crate::{stdout, ui};

/// Largest `--limit` accepted, in USD (as `--max-cost`'s bound).
const MAX_LIMIT_USD: f64 = 1_000_000.0;

/// Run `orbatch key` (and its subcommands).
pub async fn command(args: &KeyArgs) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    match &args.action {
        Some(KeyAction::Create(a)) => return create(a).await,
        Some(KeyAction::Show(a)) => return show(a).await,
        Some(KeyAction::Disable(a)) => return disable(a).await,
        None => {}
    }
    let conn = connect(&args.api, Key::Required).await?;
    let result = catalog::fetch_key(&conn.client).await;
    conn.close().await;
    let info = result.map_err(|f| f.with_key_hint(&args.api.key_source()))?;
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
    name_value_table(rows(k))
}

fn name_value_table<S: Into<String>>(rows: Vec<(S, String)>) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED).force_no_tty();
    for (name, value) in rows {
        t.add_row(vec![name.into(), value]);
    }
    t
}

/// `orbatch key create`: the file is claimed first (an existing one is refused before
/// anything is created), the key is written into it, only its hash and label are printed.
async fn create(args: &KeyCreateArgs) -> Outcome {
    let name = args.name.trim();
    if name.is_empty() {
        return Err(UsageError::new("--name: give the key a name, e.g. the job's").into());
    }
    if !(args.limit.is_finite() && (0.0..=MAX_LIMIT_USD).contains(&args.limit)) {
        return Err(UsageError::new(format!(
            "--limit {}: expected USD from 0 to {MAX_LIMIT_USD}",
            args.limit
        ))
        .into());
    }
    let expires_at = match &args.expires {
        Some(text) => Some(expiry(text, jiff::Timestamp::now())?),
        None => None,
    };
    let conn = manage::connect(&args.api).await?;
    let mut file = match claim(&args.out) {
        Ok(f) => f,
        Err(e) => {
            conn.close().await;
            return Err(e.into());
        }
    };
    let created = manage::create(&conn.client, name, args.limit, expires_at).await;
    conn.close().await;
    let (key, secret) = match created {
        Ok(k) => k,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&args.out);
            return Err(e);
        }
    };
    if let Err(e) = store(&mut file, &secret) {
        return Err(Failure::failed(format!(
            "{}: cannot write the new key: {e}; it was created (hash {}) but is lost:              disable it with `orbatch key disable {}`",
            args.out.display(),
            key.hash,
            key.hash
        )));
    }
    drop(secret);
    let mut rows = managed_rows(&key);
    rows.push(("key file", format!("{} (mode 0600)", args.out.display())));
    stdout::write(format!("{}\n", name_value_table(rows)).as_bytes())?;
    eprintln!(
        "orbatch: run with `--api-key-file {}`; afterwards `orbatch audit OUT.jsonl… \
         --key-hash {}` and `orbatch key disable {}`",
        args.out.display(),
        key.hash,
        key.hash
    );
    Ok(Exit::Ok)
}

/// Create `path` for the key: new (never an existing file), readable by its owner only.
fn claim(path: &Path) -> Result<std::fs::File, UsageError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        let shown = path.display();
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            UsageError::new(format!(
                "--out {shown}: the file exists; a key file is never overwritten (nothing \
                 was created): pick another path, or remove it first"
            ))
        } else {
            UsageError::new(format!("--out {shown}: cannot create the key file: {e}"))
        }
    })
}

fn store(file: &mut std::fs::File, secret: &NewKey) -> std::io::Result<()> {
    secret.write_to(file)?;
    file.flush()?;
    file.sync_all()
}

/// `--expires`: a span from `now` (90m, 12h, 30d, "1 week") or an RFC 3339 time.
fn expiry(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, UsageError> {
    let bad = |why: &str| {
        UsageError::new(format!(
            "--expires {}: {why} (e.g. 90m, 12h, 30d, or 2027-01-31T00:00:00Z)",
            sanitize(text)
        ))
    };
    let at = match text.trim().parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => {
            let span: jiff::Span = text.trim().parse().map_err(|_| bad("not a duration"))?;
            now.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .checked_add(span)
                .map_err(|_| bad("too far"))?
                .timestamp()
        }
    };
    if at <= now {
        return Err(bad("must be in the future"));
    }
    Ok(at)
}

/// `orbatch key show HASH`.
async fn show(args: &KeyShowArgs) -> Outcome {
    let conn = manage::connect(&args.api).await?;
    let key = manage::show(&conn.client, &args.hash).await;
    conn.close().await;
    let key = key?;
    let text = match args.format {
        TableFormat::Table => format!("{}\n", name_value_table(managed_rows(&key))),
        TableFormat::Json => format!("{}\n", managed_json(&key)),
    };
    stdout::write(text.as_bytes())?;
    Ok(Exit::Ok)
}

/// `orbatch key disable HASH`.
async fn disable(args: &KeyDisableArgs) -> Outcome {
    let conn = manage::connect(&args.api).await?;
    let key = manage::disable(&conn.client, &args.hash).await;
    conn.close().await;
    let key = key?;
    stdout::write(format!("{}\n", name_value_table(managed_rows(&key))).as_bytes())?;
    Ok(Exit::Ok)
}

/// A managed key's rows: hash, name, label, state, limit, usage.
fn managed_rows(k: &ManagedKey) -> Vec<(&'static str, String)> {
    let or_dash = |x: Option<&String>| x.map_or("—".to_owned(), |s| sanitize(s));
    let limit = match (k.limit, &k.limit_reset) {
        (None, _) => "unlimited".to_owned(),
        (Some(l), Some(reset)) => format!("{} ({})", usd(l), sanitize(reset)),
        (Some(l), None) => usd(l),
    };
    vec![
        ("hash", sanitize(&k.hash)),
        ("name", sanitize(&k.name)),
        ("label", sanitize(&k.label)),
        (
            "state",
            if k.disabled { "disabled" } else { "enabled" }.to_owned(),
        ),
        ("limit", limit),
        (
            "remaining",
            k.limit_remaining.map_or("unlimited".to_owned(), usd),
        ),
        ("usage", usd(k.usage)),
        ("byok usage", k.byok_usage.map_or("—".to_owned(), usd)),
        (
            "byok in limit",
            if k.include_byok_in_limit { "yes" } else { "no" }.to_owned(),
        ),
        (
            "expires",
            k.expires_at
                .as_ref()
                .map_or("never".to_owned(), |s| sanitize(s)),
        ),
        ("created", or_dash(k.created_at.as_ref())),
    ]
}

fn managed_json(k: &ManagedKey) -> serde_json::Value {
    serde_json::json!({
        "hash": k.hash,
        "name": k.name,
        "label": k.label,
        "disabled": k.disabled,
        "limit": k.limit,
        "limit_remaining": k.limit_remaining,
        "limit_reset": k.limit_reset,
        "include_byok_in_limit": k.include_byok_in_limit,
        "usage": k.usage,
        "byok_usage": k.byok_usage,
        "expires_at": k.expires_at,
        "created_at": k.created_at,
    })
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

    #[test]
    fn expiry_is_a_span_or_a_time_in_the_future() {
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let at = |s: &str| expiry(s, now).map(|t| t.to_string());
        assert_eq!(at("30d").ok().as_deref(), Some("2026-12-31T00:00:00Z"));
        assert_eq!(at("90m").ok().as_deref(), Some("2026-12-01T01:30:00Z"));
        assert_eq!(
            at("2027-01-31T00:00:00Z").ok().as_deref(),
            Some("2027-01-31T00:00:00Z")
        );
        for bad in ["", "soon", "-1h", "2020-01-01T00:00:00Z"] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_file_is_created_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.key");
        let f = claim(&path);
        assert!(f.is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = claim(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("exists") && e.contains("never overwritten"),
            "{e}"
        );
    }
}
