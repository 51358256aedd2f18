//! The HTML renderer: one self-contained page (inline CSS, inline SVG charts, no script, no
//! external asset, no network) with the summary table, spend by group, the latency
//! distribution and the outcomes of each group. Pure: returns the page as a `String`.

use super::render::{self, percent};
use super::scores::{self, Scores};
use super::{Bucket, Report, Row};
use crate::output::record::ErrorKind;
use crate::text::usd;

/// Width of the bar area of the horizontal charts, and of a label column, in pixels.
const BAR_W: f64 = 460.0;
const LABEL_W: f64 = 260.0;
const ROW_H: f64 = 26.0;

const OK_COLOUR: &str = "#3a9d5d";
const INLINE_COLOUR: &str = "#4c78a8";
const EXACT_COLOUR: &str = "#f58518";
const BYOK_COLOUR: &str = "#72b7b2";
const FAILED_COLOUR: &str = "#e45756";

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
.muted{color:#666}
.cards{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.3rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e3e3e3;padding:.3rem .6rem;white-space:nowrap}
th{background:#f5f5f5;text-align:left}td.n,th.n{text-align:right}
tr:last-child td{font-weight:600;border-top:2px solid #bbb}
table.plain tr:last-child td{font-weight:400;border-top:1px solid #e3e3e3}
svg text{font:12px system-ui,sans-serif;fill:#222}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
";

/// The page.
pub fn html(report: &Report) -> String {
    let by = report.by.as_str();
    let mut page = String::from("<!doctype html>\n<html lang=\"en\">\n<head>\n");
    page.push_str("<meta charset=\"utf-8\">\n<title>orbatch report</title>\n");
    page.push_str(&format!("<style>\n{STYLE}</style>\n</head>\n<body>\n"));
    page.push_str(&format!(
        "<h1>orbatch report</h1>\n<p class=\"muted\">by {by} · {}</p>\n",
        esc(&inputs_line(report))
    ));
    page.push_str(&cards(report));
    page.push_str(&format!("<h2>Summary by {by}</h2>\n{}", table(report)));
    page.push_str("<ul>\n");
    for n in render::notes(report).iter().take(2) {
        page.push_str(&format!("<li>{}</li>\n", esc(n)));
    }
    page.push_str("</ul>\n");
    page.push_str(&format!("<h2>Spend by {by}</h2>\n{}", spend_chart(report)));
    page.push_str(&format!(
        "<h2>Where the money went, by {by}</h2>\n{}{}<p class=\"muted\">{}</p>\n",
        audit_chart(report),
        cells_table(&render::audit_cells(report), ""),
        esc(&render::audit_note(report))
    ));
    page.push_str(&format!(
        "<h2>Latency of ok requests (ms)</h2>\n{}",
        latency_chart(&report.latency_histogram)
    ));
    page.push_str(&format!(
        "<h2>Outcomes by {by}</h2>\n{}",
        outcomes_chart(report)
    ));
    if let Some(sc) = &report.scores {
        page.push_str(&scores_section(sc));
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// Accuracy against spend (with the Wilson interval and the Pareto front), then the scores
/// and pairs tables.
fn scores_section(s: &Scores) -> String {
    let mut out = format!("<h2>Accuracy against spend</h2>\n{}", accuracy_chart(s));
    for (title, cells) in scores::sections(s) {
        out.push_str(&format!(
            "<h2>{}</h2>\n{}",
            esc(&title),
            cells_table(&cells, "plain")
        ));
    }
    out.push_str("<ul>\n");
    for n in scores::notes(s) {
        out.push_str(&format!("<li>{}</li>\n", esc(&n)));
    }
    out.push_str("</ul>\n");
    out
}

/// A scatter of accuracy (y, with its 95 % interval) against spend (x), the Pareto front
/// joined by a dashed line and its points filled.
fn accuracy_chart(s: &Scores) -> String {
    let points: Vec<_> = s
        .models
        .iter()
        .filter_map(|m| Some((m, m.spend?, m.accuracy?)))
        .collect();
    if points.is_empty() {
        return "<p class=\"muted\">No model has both a spend and a score.</p>\n".to_owned();
    }
    let (plot_w, plot_h, left, top) = (640.0, 260.0, 56.0, 12.0);
    let max_spend = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let x_of = |spend: f64| {
        if max_spend > 0.0 {
            left + spend / (max_spend * 1.1) * plot_w
        } else {
            left + plot_w / 2.0
        }
    };
    let y_of = |acc: f64| top + (1.0 - acc) * plot_h;
    let mut body = String::new();
    // Grid: accuracy every 25 %; spend labelled at 0 and at the largest.
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(q);
        body.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/>\n",
            left + plot_w
        ));
        body.push_str(&text(
            left - 6.0,
            y + 4.0,
            "end",
            &format!("{:.0}%", q * 100.0),
        ));
    }
    let axis_y = top + plot_h + 18.0;
    body.push_str(&text(left, axis_y, "middle", "$0"));
    body.push_str(&text(x_of(max_spend), axis_y, "middle", &usd(max_spend)));
    body.push_str(&text(left + plot_w / 2.0, axis_y + 18.0, "middle", "spend"));
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0.pareto)
        .map(|p| (x_of(p.1), y_of(p.2)))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    if front.len() > 1 {
        let path: Vec<String> = front
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        body.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{EXACT_COLOUR}\" \
             stroke-dasharray=\"4 3\"/>\n",
            path.join(" ")
        ));
    }
    for (m, spend, acc) in &points {
        let (x, y) = (x_of(*spend), y_of(*acc));
        if let (Some(lo), Some(hi)) = (m.ci_low, m.ci_high) {
            body.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\n",
                y_of(hi),
                y_of(lo)
            ));
        }
        let (fill, stroke) = if m.pareto {
            (EXACT_COLOUR, EXACT_COLOUR)
        } else {
            ("#fff", INLINE_COLOUR)
        };
        let tip = format!(
            "{}: {:.1}% correct, {} spent{}",
            m.model,
            acc * 100.0,
            usd(*spend),
            if m.pareto { " (best value)" } else { "" }
        );
        body.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{fill}\" stroke=\"{stroke}\" \
             stroke-width=\"2\"><title>{}</title></circle>\n",
            esc(&tip)
        ));
        body.push_str(&text(x + 8.0, y - 6.0, "start", &m.model));
    }
    let mut out = svg(
        left + plot_w + 160.0,
        top + plot_h + 44.0,
        "accuracy against spend",
        &body,
    );
    out.push_str(&legend(&[
        (EXACT_COLOUR, "on the Pareto front (best value)"),
        (INLINE_COLOUR, "other models; lines: 95% interval"),
    ]));
    out
}

/// Escape text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn inputs_line(report: &Report) -> String {
    let names: Vec<&str> = report.inputs.iter().map(|i| i.path.as_str()).collect();
    match names.len() {
        0 => "no input".to_owned(),
        _ => names.join(", "),
    }
}

fn cards(report: &Report) -> String {
    let t = &report.total;
    let s = &report.spend;
    let mut cards = vec![
        ("requests", t.requests.to_string()),
        ("ok", t.ok_pct.map_or_else(|| "-".into(), percent)),
        ("attempts", t.attempts.to_string()),
        (
            "spend (usage.cost)",
            crate::text::spend(s.inline, s.records_without_cost),
        ),
    ];
    if let Some(exact) = s.exact {
        let label = if s.difference_final {
            "spend (exact)"
        } else {
            "spend (exact, incomplete)"
        };
        cards.push((label, usd(exact)));
    }
    if let Some(j) = &report.judge {
        let spend = j
            .total
            .audit
            .total
            .map_or_else(|| "unknown".to_owned(), usd);
        cards.push((
            "judge spend (apart)",
            format!("{spend} ({})", j.total.audit.source),
        ));
    }
    cards.push((
        "latency p50 / p95",
        format!("{} / {} ms", opt(t.latency_ms.p50), opt(t.latency_ms.p95)),
    ));
    let mut out = String::from("<div class=\"cards\">\n");
    for (label, value) in cards {
        out.push_str(&format!(
            "<div class=\"card\"><span class=\"muted\">{}</span><b>{}</b></div>\n",
            esc(label),
            esc(&value)
        ));
    }
    out.push_str("</div>\n");
    out
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn table(report: &Report) -> String {
    cells_table(&render::cells(report), "")
}

/// `cells` as an HTML table in a box that scrolls (a wide table does not widen the page);
/// `class_name` is the table's class (`plain`: no total row).
fn cells_table(cells: &render::Cells, class_name: &str) -> String {
    let class = |n: bool| if n { " class=\"n\"" } else { "" };
    let mut out = if class_name.is_empty() {
        String::from("<div class=\"scroll\">\n<table>\n<thead><tr>")
    } else {
        format!("<div class=\"scroll\">\n<table class=\"{class_name}\">\n<thead><tr>")
    };
    for (h, &n) in cells.header.iter().zip(&cells.numeric) {
        out.push_str(&format!("<th{}>{}</th>", class(n), esc(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &cells.rows {
        out.push_str("<tr>");
        for (c, &n) in row.iter().zip(&cells.numeric) {
            out.push_str(&format!("<td{}>{}</td>", class(n), esc(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// An `<svg>` element of the given size with an accessible title.
fn svg(width: f64, height: f64, title: &str, body: &str) -> String {
    format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         role=\"img\" aria-label=\"{t}\"><title>{t}</title>\n{body}</svg>\n",
        t = esc(title)
    )
}

/// A rectangle with a tooltip.
fn rect(x: f64, y: f64, w: f64, h: f64, fill: &str, tip: &str) -> String {
    format!(
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\">\
         <title>{}</title></rect>\n",
        esc(tip)
    )
}

fn text(x: f64, y: f64, anchor: &str, s: &str) -> String {
    format!(
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>\n",
        esc(s)
    )
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut out = String::from("<p class=\"legend\">");
    for (colour, label) in items {
        out.push_str(&format!(
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            esc(label)
        ));
    }
    out.push_str("</p>\n");
    out
}

/// Horizontal bars: inline spend per group, and exact spend beside it when known.
fn spend_chart(report: &Report) -> String {
    if report.groups.is_empty() {
        return "<p class=\"muted\">No requests.</p>\n".to_owned();
    }
    let exact = report.spend.exact.is_some();
    let value = |r: &Row| {
        r.spend_inline
            .unwrap_or(0.0)
            .max(r.spend_exact.unwrap_or(0.0))
    };
    let max = report.groups.iter().map(value).fold(0.0, f64::max);
    let scale = if max > 0.0 { BAR_W / max } else { 0.0 };
    let bar_h = if exact { 10.0 } else { 18.0 };
    let mut body = String::new();
    for (i, r) in report.groups.iter().enumerate() {
        let y = i as f64 * ROW_H + 4.0;
        body.push_str(&text(LABEL_W - 8.0, y + 14.0, "end", &r.key));
        // An unknown or incomplete sum is drawn as what it is: no bar for unknown, a hatched
        // bar with an open end for a lower bound, never a plain shorter bar.
        let inline = crate::text::spend(r.spend_inline, r.records_without_cost);
        let w = r.spend_inline.unwrap_or(0.0) * scale;
        let tip = format!("{}: {inline} (usage.cost)", r.key);
        if r.records_without_cost > 0 {
            body.push_str(&partial_rect(LABEL_W, y, w, bar_h, INLINE_COLOUR, &tip));
        } else {
            body.push_str(&rect(LABEL_W, y, w, bar_h, INLINE_COLOUR, &tip));
        }
        let mut label = inline;
        if let Some(e) = r.spend_exact {
            let complete = r.unconfirmed_ids == 0;
            let shown = if complete {
                usd(e)
            } else {
                format!("\u{2265} {} (incomplete)", usd(e))
            };
            let tip = format!("{}: {shown} (exact)", r.key);
            let draw = if complete { rect } else { partial_rect };
            body.push_str(&draw(
                LABEL_W,
                y + bar_h,
                e * scale,
                bar_h,
                EXACT_COLOUR,
                &tip,
            ));
            label = format!("{label} / {shown}");
        }
        body.push_str(&text(
            LABEL_W + w.max(e_width(r, scale)) + 6.0,
            y + 14.0,
            "start",
            &label,
        ));
    }
    let height = report.groups.len() as f64 * ROW_H + 8.0;
    let mut out = svg(LABEL_W + BAR_W + 200.0, height, "spend by group", &body);
    let mut items = vec![(INLINE_COLOUR, "usage.cost (inline)")];
    if exact {
        items.push((EXACT_COLOUR, "/generation (exact)"));
    }
    out.push_str(&legend(&items));
    out
}

/// Two stacked bars per group, each as long as its spend: OpenRouter against the providers'
/// BYOK bills, and answers against failed attempts.
fn audit_chart(report: &Report) -> String {
    let rows: Vec<(&Row, f64)> = report
        .groups
        .iter()
        .filter_map(|r| Some((r, r.audit.total?)))
        .collect();
    if rows.is_empty() {
        return "<p class=\"muted\">No group has a known spend.</p>\n".to_owned();
    }
    let max = rows.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let scale = if max > 0.0 { BAR_W / max } else { 0.0 };
    let bar_h = 10.0;
    let mut body = String::new();
    for (i, (r, total)) in rows.iter().enumerate() {
        let a = &r.audit;
        let y = i as f64 * ROW_H + 4.0;
        body.push_str(&text(LABEL_W - 8.0, y + 14.0, "end", &r.key));
        let stack = [
            [
                (a.openrouter, INLINE_COLOUR, "OpenRouter"),
                (a.byok, BYOK_COLOUR, "provider (BYOK)"),
            ],
            [
                (a.answers, OK_COLOUR, "answers"),
                (a.failed_attempts, FAILED_COLOUR, "failed attempts"),
            ],
        ];
        for (j, parts) in stack.iter().enumerate() {
            let mut x = LABEL_W;
            for (value, colour, what) in parts {
                let v = value.unwrap_or(0.0);
                let tip = format!("{}: {what} {} ({})", r.key, usd(v), a.source);
                body.push_str(&rect(
                    x,
                    y + j as f64 * bar_h,
                    v * scale,
                    bar_h,
                    colour,
                    &tip,
                ));
                x += v * scale;
            }
        }
        body.push_str(&text(
            LABEL_W + total * scale + 6.0,
            y + 14.0,
            "start",
            &format!("{} ({})", usd(*total), a.source),
        ));
    }
    let height = rows.len() as f64 * ROW_H + 8.0;
    let mut out = svg(LABEL_W + BAR_W + 200.0, height, "spend taken apart", &body);
    out.push_str(&legend(&[
        (INLINE_COLOUR, "OpenRouter"),
        (BYOK_COLOUR, "provider (BYOK)"),
        (OK_COLOUR, "answers"),
        (FAILED_COLOUR, "failed attempts"),
    ]));
    out
}

/// A bar for a lower bound: hatched, with a dashed open end.
fn partial_rect(x: f64, y: f64, w: f64, h: f64, colour: &str, tip: &str) -> String {
    format!(
        "<g class=\"partial\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
         fill=\"{colour}\" fill-opacity=\"0.35\"/><line x1=\"{x2:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" \
         y2=\"{y2:.1}\" stroke=\"{colour}\" stroke-dasharray=\"2 2\"/><title>{}</title></g>\n",
        esc(tip),
        x2 = x + w,
        y2 = y + h
    )
}

fn e_width(r: &Row, scale: f64) -> f64 {
    r.spend_exact.unwrap_or(0.0) * scale
}

/// Vertical bars: how many ok requests fell in each latency bucket.
fn latency_chart(buckets: &[Bucket]) -> String {
    if buckets.is_empty() {
        return "<p class=\"muted\">No ok requests with a latency.</p>\n".to_owned();
    }
    let (plot_w, plot_h, left, top) = (720.0, 180.0, 40.0, 16.0);
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let bw = plot_w / buckets.len() as f64;
    let mut body = String::new();
    let label_every = buckets.len().div_ceil(10).max(1);
    for (i, b) in buckets.iter().enumerate() {
        let x = left + i as f64 * bw;
        let h = b.count as f64 / max * plot_h;
        let tip = format!("{}–{} ms: {} requests", b.from_ms, b.to_ms, b.count);
        body.push_str(&rect(
            x + 1.0,
            top + plot_h - h,
            bw - 2.0,
            h,
            INLINE_COLOUR,
            &tip,
        ));
        if b.count > 0 {
            let y = top + plot_h - h - 3.0;
            body.push_str(&text(x + bw / 2.0, y, "middle", &b.count.to_string()));
        }
        if i % label_every == 0 {
            let y = top + plot_h + 16.0;
            body.push_str(&text(x, y, "middle", &b.from_ms.to_string()));
        }
    }
    body.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#999\"/>\n",
        y = top + plot_h,
        x2 = left + plot_w
    ));
    svg(
        left + plot_w + 40.0,
        top + plot_h + 24.0,
        "latency distribution",
        &body,
    )
}

/// One 100 % stacked bar per group: ok, then each error kind.
fn outcomes_chart(report: &Report) -> String {
    if report.groups.is_empty() {
        return "<p class=\"muted\">No requests.</p>\n".to_owned();
    }
    let mut body = String::new();
    for (i, r) in report.groups.iter().enumerate() {
        let y = i as f64 * ROW_H + 4.0;
        body.push_str(&text(LABEL_W - 8.0, y + 14.0, "end", &r.key));
        let per = BAR_W / r.requests.max(1) as f64;
        let mut x = LABEL_W;
        let parts = std::iter::once(("ok", OK_COLOUR, r.ok)).chain(
            r.error_kinds
                .iter()
                .map(|(k, &n)| (k.as_str(), kind_colour(*k), n)),
        );
        for (label, colour, n) in parts.filter(|p| p.2 > 0) {
            let w = n as f64 * per;
            let tip = format!("{}: {label} {n} of {}", r.key, r.requests);
            body.push_str(&rect(x, y, w, 18.0, colour, &tip));
            x += w;
        }
        let pct = r.ok_pct.map_or_else(|| "-".into(), percent);
        body.push_str(&text(
            LABEL_W + BAR_W + 6.0,
            y + 14.0,
            "start",
            &format!("{pct} ok"),
        ));
    }
    let height = report.groups.len() as f64 * ROW_H + 8.0;
    let mut out = svg(LABEL_W + BAR_W + 120.0, height, "outcomes by group", &body);
    let mut items = vec![(OK_COLOUR, "ok")];
    items.extend(
        report
            .total
            .error_kinds
            .keys()
            .map(|k| (kind_colour(*k), k.as_str())),
    );
    out.push_str(&legend(&items));
    out
}

fn kind_colour(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited => "#e45756",
        ErrorKind::Transient => "#f58518",
        ErrorKind::Timeout => "#b279a2",
        ErrorKind::Auth => "#9d755d",
        ErrorKind::Credits => "#bab0ac",
        ErrorKind::BadRequest => "#d62728",
        ErrorKind::ContentFilter => "#72b7b2",
        ErrorKind::ProviderError => "#ff9da6",
        ErrorKind::Truncated => "#eeca3b",
        ErrorKind::InvalidResponse => "#54a24b",
        ErrorKind::InvalidOutput => "#4c78a8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = html(&crate::report::tests::sample());
        assert!(page.starts_with("<!doctype html>"));
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("provider (BYOK)") && page.contains("failed attempts"));
        for bad in ["http://", "https://", "<script", "<link", "url("] {
            assert!(!page.contains(bad), "{bad}");
        }
    }
}
