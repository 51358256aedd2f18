//! `orbatch audit OUT.jsonl… --key-hash HASH`: read the outputs and their `costs`
//! sidecars, ask the management API for the key's usage, and show the three figures and
//! their differences as a table (or JSON). Exit 0 when they agree, 1 when a difference is
//! beyond the tolerance and not explained.

use std::path::{Path, PathBuf};

use comfy_table::{CellAlignment, Table, presets};
use serde::Deserialize;
use serde_json::json;

use super::figures::{
    Exact, Figures, Reconciliation, Split, TOLERANCE_FLOOR_USD, TOLERANCE_SHARE, Tally, reconcile,
};
use super::manage::{self, ManagedKey};
use crate::cli::{AuditArgs, TableFormat};
use crate::exit::{Exit, Outcome, UsageError};
use crate::output::record::Record;
use crate::report::read::{self, ReadError};
use crate::text::{sanitize, usd};
use crate::{stdout, ui};

/// Lines not understood are reported up to this many per file.
const MAX_WARNINGS: usize = 5;

/// Run `orbatch audit`.
pub async fn command(args: &AuditArgs) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    let outputs = args.outputs.clone();
    // The files first: a wrong path is found before any call.
    let (tally, warnings) = tokio::task::spawn_blocking(move || read_all(&outputs))
        .await?
        .map_err(|e| UsageError::new(e.to_string()))?;
    if !args.verbosity.quiet {
        for w in &warnings {
            eprintln!("orbatch: warning: {w}");
        }
    }
    let conn = manage::connect(&args.api).await?;
    let key = manage::show(&conn.client, &args.key_hash).await;
    conn.close().await;
    let key = key?;
    let figures = tally.figures();
    let rec = reconcile(&figures, &key);
    let text = match args.format {
        TableFormat::Table => render(&figures, &key, &rec),
        TableFormat::Json => format!("{:#}\n", to_json(&figures, &key, &rec)),
    };
    stdout::write(text.as_bytes())?;
    Ok(if rec.agree {
        Exit::Ok
    } else {
        Exit::RowsFailed
    })
}

/// Read every output and its sidecar into one tally.
fn read_all(outputs: &[PathBuf]) -> Result<(Tally, Vec<String>), ReadError> {
    let mut tally = Tally::default();
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for out in outputs {
        // The same file twice would count its spend twice.
        let real = std::fs::canonicalize(out).unwrap_or_else(|_| out.clone());
        if !seen.insert(real) {
            warnings.push(format!("{}: given twice; counted once", out.display()));
            continue;
        }
        read_output(out, &mut tally, &mut warnings)?;
        read_sidecar(out, &mut tally, &mut warnings)?;
    }
    Ok((tally, warnings))
}

fn read_output(out: &Path, tally: &mut Tally, warnings: &mut Vec<String>) -> Result<(), ReadError> {
    let shown = out.display().to_string();
    let (mut good, mut bad, mut lines) = (0u64, 0usize, 0u64);
    read::for_each_line(out, |n, line, last| {
        lines += 1;
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                good += 1;
                tally.record(&r);
            }
            Err(e) => {
                bad += 1;
                if bad <= MAX_WARNINGS {
                    warnings.push(if last {
                        format!("{shown}:{n}: skipped a torn last line")
                    } else {
                        format!("{shown}:{n}: skipped: not an output record ({e})")
                    });
                }
            }
        }
    })?;
    if good == 0 && lines > 0 {
        return Err(ReadError::NotAnOutput { path: shown, lines });
    }
    Ok(())
}

/// A sidecar line: the `/generation` `data` object, or the whole `{"data": …}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SidecarLine {
    Wrapped { data: Exact },
    Bare(Exact),
}

fn read_sidecar(
    out: &Path,
    tally: &mut Tally,
    warnings: &mut Vec<String>,
) -> Result<(), ReadError> {
    let path = read::sidecar_path(out);
    if !path.exists() {
        return Ok(());
    }
    let shown = path.display().to_string();
    let mut bad = 0usize;
    read::for_each_line(&path, |n, line, last| {
        match serde_json::from_slice::<SidecarLine>(line) {
            Ok(SidecarLine::Wrapped { data } | SidecarLine::Bare(data)) => tally.exact(&data),
            // A torn last line: `orbatch costs` was cut off; rerunning it repairs that.
            Err(_) if last => {}
            Err(e) => {
                bad += 1;
                if bad <= MAX_WARNINGS {
                    warnings.push(format!("{shown}:{n}: skipped: not a generation ({e})"));
                }
            }
        }
    })
}

/// The table, the differences, and the verdict.
fn render(f: &Figures, key: &ManagedKey, rec: &Reconciliation) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .force_no_tty()
        .set_header(vec![
            "spend",
            "OpenRouter",
            "provider (BYOK)",
            "total",
            "from",
        ]);
    let money = |s: Split| vec![usd(s.openrouter), usd(s.byok), usd(s.total())];
    let row = |name: &str, s: Split, from: String| {
        let mut cells = vec![name.to_owned()];
        cells.extend(money(s));
        cells.push(from);
        cells
    };
    let mut from = format!("{} records", f.records);
    if f.uncosted_answers > 0 {
        from.push_str(&format!(
            ", {} answers without a cost (a lower bound)",
            f.uncosted_answers
        ));
    }
    t.add_row(row("records (inline)", f.inline, from));
    t.add_row(row(
        "/generation (exact)",
        f.exact,
        format!("{} of {} ids looked up", f.looked_up, f.ids),
    ));
    if f.pending > 0 {
        t.add_row(row(
            "job (exact + pending)",
            f.job(),
            format!("{} ids at their records' cost", f.pending),
        ));
    }
    let key_split = Split {
        openrouter: key.usage,
        byok: key.byok_usage.unwrap_or(0.0),
    };
    let mut key_cells = vec![
        format!("key {}", short(&key.hash)),
        usd(key.usage),
        key.byok_usage.map_or("—".to_owned(), usd),
        usd(key_split.total()),
    ];
    key_cells.push(key_note(key));
    t.add_row(key_cells);
    for i in 1..=3 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!("{t}\n");
    out.push_str(&format!(
        "differences (tolerance: {} % of the larger figure, at least {}):\n",
        TOLERANCE_SHARE * 100.0,
        usd(TOLERANCE_FLOOR_USD)
    ));
    for d in &rec.differences {
        let mark = if d.explained { "ok" } else { "UNEXPLAINED" };
        out.push_str(&format!(
            "  {mark:<11} {:<28} {:>13}  {}\n",
            d.between,
            signed(d.usd),
            d.why
        ));
    }
    out.push_str(if rec.agree {
        "audit: records, /generation and the key's usage agree\n"
    } else {
        "audit: the figures disagree beyond the tolerance (see UNEXPLAINED above)\n"
    });
    out
}

fn key_note(key: &ManagedKey) -> String {
    let mut note = sanitize(&key.label);
    if !key.name.is_empty() {
        note = format!("{} ({note})", sanitize(&key.name));
    }
    if let Some(limit) = key.limit {
        note.push_str(&format!(", limit {}", usd(limit)));
    }
    if key.disabled {
        note.push_str(", disabled");
    }
    note
}

/// The first 12 characters of a hash.
fn short(hash: &str) -> String {
    let s: String = sanitize(hash).chars().take(12).collect();
    if hash.chars().count() > 12 {
        format!("{s}…")
    } else {
        s
    }
}

fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", usd(x))
    } else {
        usd(x)
    }
}

fn split_json(s: Split) -> serde_json::Value {
    json!({ "openrouter": s.openrouter, "byok": s.byok, "total": s.total() })
}

/// The audit as JSON: the figures in USD, the differences, the verdict.
fn to_json(f: &Figures, key: &ManagedKey, rec: &Reconciliation) -> serde_json::Value {
    json!({
        "records": {
            "count": f.records,
            "uncosted_answers": f.uncosted_answers,
            "inline": split_json(f.inline),
        },
        "generation": {
            "ids": f.ids,
            "looked_up": f.looked_up,
            "pending": f.pending,
            "pending_unpriced": f.pending_unpriced,
            "exact": split_json(f.exact),
            "pending_inline": split_json(f.pending_inline),
            "failed_attempts": f.failed_attempts,
            "failed_attempts_cost": split_json(f.failed_attempts_cost),
            "job": split_json(f.job()),
        },
        "key": {
            "hash": key.hash,
            "name": key.name,
            "label": key.label,
            "disabled": key.disabled,
            "limit": key.limit,
            "limit_remaining": key.limit_remaining,
            "include_byok_in_limit": key.include_byok_in_limit,
            "usage": key.usage,
            "byok_usage": key.byok_usage,
        },
        "differences": rec.differences.iter().map(|d| json!({
            "between": d.between,
            "usd": d.usd,
            "explained": d.explained,
            "why": d.why,
        })).collect::<Vec<_>>(),
        "tolerance": { "share": TOLERANCE_SHARE, "floor_usd": TOLERANCE_FLOOR_USD },
        "agree": rec.agree,
    })
}
