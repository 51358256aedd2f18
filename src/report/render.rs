//! Text renderers of a [`Report`]: a terminal table, Markdown, CSV and JSON. Pure: each one
//! returns the whole document as a `String`; the caller decides where it goes.

use comfy_table::{CellAlignment, Table, presets};

use super::{Audit, Report, Row, scores};
use crate::text::{spend, usd};

/// A percentage with one decimal: `91.7%`.
pub fn percent(pct: f64) -> String {
    format!("{pct:.1}%")
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `bad_request 1, timeout 2`, or `-`.
pub fn kinds(row: &Row) -> String {
    if row.error_kinds.is_empty() {
        return "-".to_owned();
    }
    row.error_kinds
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One column of the human-readable renderers.
struct Column {
    title: &'static str,
    numeric: bool,
    cell: fn(&Row) -> String,
}

const fn col(title: &'static str, cell: fn(&Row) -> String) -> Column {
    Column {
        title,
        numeric: true,
        cell,
    }
}

/// The columns shown for `report`: exact spend only when a sidecar was read, TTFT only when
/// something was streamed.
fn columns(report: &Report) -> Vec<Column> {
    let mut cols = vec![
        Column {
            title: "",
            numeric: false,
            cell: |r| r.key.clone(),
        },
        col("requests", |r| r.requests.to_string()),
        col("ok", |r| r.ok.to_string()),
        col("errors", |r| r.errors.to_string()),
        col("ok %", |r| r.ok_pct.map_or_else(|| "-".into(), percent)),
        col("attempts", |r| r.attempts.to_string()),
        col("tokens in", |r| r.tokens_in.to_string()),
        col("tokens out", |r| r.tokens_out.to_string()),
        col("spend", |r| spend(r.spend_inline, r.records_without_cost)),
    ];
    // Answers cut at max_tokens, when there are any (CSV and JSON always have the count).
    if report.total.truncated > 0 {
        cols.insert(3, col("truncated", |r| r.truncated.to_string()));
    }
    // Answers checked against a schema (--schema): the share that fit, and the re-asks.
    if report.total.schema.is_some() {
        let at = cols
            .iter()
            .position(|c| c.title == "ok %")
            .map_or(cols.len(), |i| i + 1);
        cols.insert(
            at,
            col("re-asked", |r| {
                r.schema
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| s.reasked.to_string())
            }),
        );
        cols.insert(
            at,
            col("schema ok %", |r| {
                r.schema
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| percent(s.valid_pct))
            }),
        );
    }
    if report.spend.exact.is_some() {
        cols.push(col("exact spend", |r| {
            r.spend_exact
                .map_or_else(|| "-".into(), |e| spend(Some(e), r.unconfirmed_ids))
        }));
    }
    cols.extend([
        col("p50 ms", |r| opt(r.latency_ms.p50)),
        col("p95 ms", |r| opt(r.latency_ms.p95)),
        col("p99 ms", |r| opt(r.latency_ms.p99)),
    ]);
    if report.total.ttft_p50_ms.is_some() {
        cols.push(col("ttft p50", |r| opt(r.ttft_p50_ms)));
    }
    cols.push(Column {
        title: "error kinds",
        numeric: false,
        cell: kinds,
    });
    cols
}

/// Header and body cells (groups, then the total), ready to lay out.
pub(crate) struct Cells {
    pub header: Vec<String>,
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

pub(crate) fn cells(report: &Report) -> Cells {
    let cols = columns(report);
    let header = cols
        .iter()
        .map(|c| match c.title {
            "" => report.by.as_str().to_owned(),
            t => t.to_owned(),
        })
        .collect();
    let rows = report
        .groups
        .iter()
        .chain(std::iter::once(&report.total))
        .map(|r| cols.iter().map(|c| (c.cell)(r)).collect())
        .collect();
    Cells {
        header,
        numeric: cols.iter().map(|c| c.numeric).collect(),
        rows,
    }
}

/// One money column of the spend table.
struct AuditColumn {
    title: &'static str,
    csv: &'static str,
    value: fn(&Audit) -> Option<f64>,
}

const fn money_col(
    title: &'static str,
    csv: &'static str,
    value: fn(&Audit) -> Option<f64>,
) -> AuditColumn {
    AuditColumn { title, csv, value }
}

const AUDIT_COLUMNS: [AuditColumn; 6] = [
    money_col("OpenRouter", "openrouter_usd", |a| a.openrouter),
    money_col("provider (BYOK)", "byok_usd", |a| a.byok),
    money_col("total", "total_usd", |a| a.total),
    money_col("answers", "answers_usd", |a| a.answers),
    money_col("failed attempts", "failed_attempts_usd", |a| {
        a.failed_attempts
    }),
    money_col("per 1,000 rows", "per_1000_rows_usd", |a| a.per_1000_rows),
];

/// The spend table as a header and lines of cells: per group (then the total), its source
/// and the money columns, with CSV's headers when `csv`, and cells written by `money`.
fn audit_lines(
    report: &Report,
    csv: bool,
    money: fn(Option<f64>) -> String,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec![report.by.as_str().to_owned(), "source".to_owned()];
    header.extend(
        AUDIT_COLUMNS
            .iter()
            .map(|c| if csv { c.csv } else { c.title }.to_owned()),
    );
    let rows = report
        .groups
        .iter()
        .chain(std::iter::once(&report.total))
        .map(|r| {
            let mut line = vec![r.key.clone(), r.audit.source.to_owned()];
            line.extend(AUDIT_COLUMNS.iter().map(|c| money((c.value)(&r.audit))));
            line
        })
        .collect();
    (header, rows)
}

/// The spend table: per group, OpenRouter's charge and the providers' (BYOK) side by side,
/// answers against failed attempts, and the cost of 1,000 rows.
pub(crate) fn audit_cells(report: &Report) -> Cells {
    let (header, rows) = audit_lines(report, false, |v| v.map_or_else(|| "-".to_owned(), usd));
    let mut numeric = vec![true; header.len()];
    numeric[0] = false;
    numeric[1] = false;
    Cells {
        header,
        numeric,
        rows,
    }
}

/// What the spend table's numbers are, under it.
pub(crate) fn audit_note(report: &Report) -> String {
    let inline = report.total.audit.source == "inline";
    let mut note = "spend by source: OpenRouter is what the credit balance paid (for BYOK \
                    requests only its fee), provider (BYOK) what providers billed to your own \
                    keys; failed attempts are every attempt but the answers kept"
        .to_owned();
    if inline {
        note.push_str(
            "; inline, failed attempts count only failed records that carry a cost (a lower \
             bound): `orbatch costs` makes it exact",
        );
    }
    note
}

/// The lines under the table: inline against exact spend, and what was read.
pub fn notes(report: &Report) -> Vec<String> {
    let s = &report.spend;
    let records = report.total.records;
    let mut notes = vec![match (s.inline, s.records_without_cost) {
        (Some(x), 0) => format!(
            "spend: {} from usage.cost (inline) over {records} records",
            usd(x)
        ),
        (Some(x), n) => format!(
            "spend: at least {} from usage.cost (inline): {n} answers of {records} records \
             carry no cost (the server sent none); `orbatch costs OUT.jsonl` looks every \
             generation id up",
            usd(x)
        ),
        (None, n) => format!(
            "spend: unknown: the server sent no usage.cost for any of the {n} answers (unknown \
             is not $0); `orbatch costs OUT.jsonl` looks every generation id up"
        ),
    }];
    notes.push(match (s.exact, s.difference) {
        (Some(exact), Some(diff)) => format!(
            "exact: {} from /generation, all {} generation ids confirmed; difference (exact - inline) {}",
            usd(exact),
            s.generation_ids,
            usd(diff)
        ),
        (Some(exact), None) if s.difference_final => format!(
            "exact: {} from /generation, all {} generation ids confirmed (the inline sum is \
             incomplete, so there is no difference to show)",
            usd(exact),
            s.generation_ids
        ),
        (Some(exact), None) => format!(
            "exact: at least {} from /generation for {} of {} generation ids; {} not confirmed \
             yet (rerun `orbatch costs`), so exact spend is incomplete and has no difference yet",
            usd(exact),
            s.generation_ids - s.unconfirmed_ids,
            s.generation_ids,
            s.unconfirmed_ids
        ),
        _ => "exact: no .generations.jsonl sidecar; `orbatch costs OUT.jsonl` looks every \
              generation id up"
            .to_owned(),
    });
    if !report.inputs.is_empty() {
        notes.push(format!("inputs: {}", inputs(report)));
    }
    if let Some(j) = &report.judge {
        let t = &j.total;
        notes.push(format!(
            "judge (grading the answers, not in the totals above): {} requests, {} ok, {} \
             attempts, spend {} ({}) in {}",
            t.requests,
            t.ok,
            t.attempts,
            t.audit.total.map_or_else(|| "unknown".to_owned(), usd),
            t.audit.source,
            j.files.join(", ")
        ));
    }
    notes
}

fn inputs(report: &Report) -> String {
    report
        .inputs
        .iter()
        .map(|i| {
            let mut s = format!("{} ({} records", i.path, i.records);
            if i.skipped_lines > 0 {
                s.push_str(&format!(", {} lines skipped", i.skipped_lines));
            }
            if i.sidecar.is_some() {
                s.push_str(&format!(", {} generations", i.generations));
            }
            s.push(')');
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns a narrow terminal loses first (the CSV, JSON and Markdown reports keep them all).
const HIDE_FIRST: &[&str] = &[
    "p99 ms",
    "ttft p50",
    "attempts",
    "tokens in",
    "tokens out",
    "p95 ms",
    "error kinds",
    "ok %",
];

/// Columns of the spend table a narrow terminal loses first.
const AUDIT_HIDE_FIRST: &[&str] = &["source", "per 1,000 rows", "answers", "failed attempts"];

/// `cells` as a terminal table that fits `width` (when given): the columns named in
/// `hide_first` are left out, in that order, until it fits. Returns the table and what was
/// left out.
fn fitted(
    cells: &Cells,
    hide_first: &[&'static str],
    width: Option<u16>,
) -> (String, Vec<&'static str>) {
    let mut t = comfy(cells);
    let mut text = t.to_string();
    let mut hidden = Vec::new();
    let fits = |text: &str, w: u16| text.lines().all(|l| l.chars().count() <= usize::from(w));
    if let Some(w) = width {
        for title in hide_first {
            if fits(&text, w) {
                break;
            }
            let Some(i) = cells.header.iter().position(|h| h == title) else {
                continue;
            };
            if let Some(c) = t.column_mut(i) {
                c.set_constraint(comfy_table::ColumnConstraint::Hidden);
            }
            hidden.push(*title);
            text = t.to_string();
        }
    }
    (text, hidden)
}

/// A plain table for the terminal (no colours), then the notes. Given a `width` (a terminal's),
/// the least useful columns are left out until the table fits, and a note says which.
pub fn table(report: &Report, width: Option<u16>) -> String {
    let (text, mut hidden) = fitted(&cells(report), HIDE_FIRST, width);
    let (audit, audit_hidden) = fitted(&audit_cells(report), AUDIT_HIDE_FIRST, width);
    hidden.extend(audit_hidden);
    let mut out = text;
    out.push('\n');
    if !hidden.is_empty() {
        out.push_str(&format!(
            "hidden to fit the terminal: {}; --format md, csv or json has every column\n",
            hidden.join(", ")
        ));
    }
    for n in notes(report) {
        out.push_str(&n);
        out.push('\n');
    }
    out.push_str(&format!("\nspend\n{audit}\n{}\n", audit_note(report)));
    if let Some(sc) = &report.scores {
        for (title, cells) in scores::sections(sc) {
            out.push_str(&format!("\n{title}\n{}\n", comfy(&cells)));
        }
        for n in scores::notes(sc) {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// A terminal table of `cells`: numbers right-aligned, no colours.
fn comfy(cells: &Cells) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .force_no_tty()
        .set_header(cells.header.clone());
    for row in &cells.rows {
        t.add_row(row.clone());
    }
    for (i, &numeric) in cells.numeric.iter().enumerate() {
        if let (true, Some(c)) = (numeric, t.column_mut(i)) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// A GitHub-flavoured Markdown table of `cells`.
fn md_table(cells: &Cells) -> String {
    let line = |cells: &[String]| {
        let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    let mut out = line(&cells.header);
    let rule: Vec<String> = cells
        .numeric
        .iter()
        .map(|&n| if n { "---:" } else { "---" }.to_owned())
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &cells.rows {
        out.push_str(&line(row));
    }
    out
}

/// A GitHub-flavoured Markdown table, then the notes as a list (and the scores sections).
pub fn md(report: &Report) -> String {
    let mut out = md_table(&cells(report));
    out.push('\n');
    for n in notes(report) {
        out.push_str(&format!("- {}\n", n.replace('|', "\\|")));
    }
    out.push_str(&format!(
        "\n### Spend\n\n{}\n- {}\n",
        md_table(&audit_cells(report)),
        audit_note(report)
    ));
    if let Some(sc) = &report.scores {
        for (title, cells) in scores::sections(sc) {
            out.push_str(&format!("\n### {title}\n\n{}", md_table(&cells)));
        }
        out.push('\n');
        for n in scores::notes(sc) {
            out.push_str(&format!("- {}\n", n.replace('|', "\\|")));
        }
    }
    out
}

/// One CSV line per group and one for the total (key `TOTAL`), with plain numbers: USD
/// without `$`, percentages without `%`, empty cells for unknown values.
pub fn csv(report: &Report) -> String {
    let by = report.by.as_str();
    let header = [
        by,
        "requests",
        "ok",
        "truncated",
        "errors",
        "ok_pct",
        "records",
        "attempts",
        "tokens_in",
        "tokens_out",
        "spend_inline_usd",
        "records_without_cost",
        "spend_exact_usd",
        "unconfirmed_ids",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "ttft_p50_ms",
        "error_kinds",
    ];
    let mut header: Vec<String> = header.map(str::to_owned).to_vec();
    // With --schema answers: three more columns at the end (absent otherwise).
    let schema = report.total.schema.is_some();
    if schema {
        header.extend(["schema_checked", "schema_valid", "reasked"].map(str::to_owned));
    }
    let rows = report.groups.iter().chain(std::iter::once(&report.total));
    let lines = std::iter::once(header).chain(rows.map(|r| {
        let mut line = csv_row(r);
        if schema {
            let s = r.schema.as_ref();
            line.extend(
                [
                    s.map(|s| s.checked),
                    s.map(|s| s.valid),
                    s.map(|s| s.reasked),
                ]
                .map(|n| n.unwrap_or(0).to_string()),
            );
        }
        line
    }));
    let mut out = csv_text(lines);
    // The spend table, then the scores' two: each after a blank line with its own header.
    out.push('\n');
    out.push_str(&csv_text(audit_csv(report)));
    if let Some(sc) = &report.scores {
        for (header, rows) in scores::csv_tables(sc) {
            out.push('\n');
            out.push_str(&csv_text(std::iter::once(header).chain(rows)));
        }
    }
    out
}

/// The spend table as CSV lines: plain numbers, empty cells for unknown values.
fn audit_csv(report: &Report) -> Vec<Vec<String>> {
    let (header, rows) = audit_lines(report, true, |v| {
        v.map(|v| v.to_string()).unwrap_or_default()
    });
    std::iter::once(header).chain(rows).collect()
}

/// CSV lines as text.
fn csv_text(lines: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for line in lines {
        // Writing to a Vec cannot fail.
        w.write_record(&line).expect("CSV into memory");
    }
    let bytes = w.into_inner().expect("CSV into memory");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn csv_row(r: &Row) -> Vec<String> {
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        r.key.clone(),
        r.requests.to_string(),
        r.ok.to_string(),
        r.truncated.to_string(),
        r.errors.to_string(),
        r.ok_pct.map(|p| format!("{p:.1}")).unwrap_or_default(),
        r.records.to_string(),
        r.attempts.to_string(),
        r.tokens_in.to_string(),
        r.tokens_out.to_string(),
        r.spend_inline.map(|v| v.to_string()).unwrap_or_default(),
        r.records_without_cost.to_string(),
        r.spend_exact.map(|v| v.to_string()).unwrap_or_default(),
        r.unconfirmed_ids.to_string(),
        num(r.latency_ms.p50),
        num(r.latency_ms.p95),
        num(r.latency_ms.p99),
        num(r.ttft_p50_ms),
        r.error_kinds
            .iter()
            .map(|(k, n)| format!("{}:{n}", k.as_str()))
            .collect::<Vec<_>>()
            .join(";"),
    ]
}

/// The [`Report`] itself, pretty-printed.
pub fn json(report: &Report) -> String {
    // A Report is plain data with string map keys: serializing it cannot fail.
    let mut s = serde_json::to_string_pretty(report).expect("a Report serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(91.666), "91.7%");
    }
}
