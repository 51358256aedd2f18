//! The terminal side of a run: the progress bar (stderr, only on a terminal), the end
//! summary, and logging setup. Everything here is presentation; the core never prints.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, WeakProgressBar};

use crate::health::Alarm;
use crate::limit::Pacer;
use crate::output::record::{ErrorKind, Record};
use crate::output::writer::Tally;
use crate::pool::StopReason;
use crate::progress::{Progress, Silent};
use crate::run::RunSummary;

/// The progress display for this process: a bar when stderr is a terminal and not `-q`.
pub fn progress(quiet: bool) -> Box<dyn Progress> {
    if quiet || !std::io::stderr().is_terminal() {
        Box::new(Silent)
    } else {
        Box::new(Bar::new())
    }
}

/// The bar of `orbatch costs` (a terminal and not `-q` only): ids answered of those to look
/// up, and while OpenRouter does not know the rest yet, when it is asked again.
pub fn lookup_bar(quiet: bool, total: usize) -> Option<ProgressBar> {
    if quiet || total == 0 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = new_bar(total as u64);
    bar.enable_steady_tick(Duration::from_millis(250));
    show_logs_above(&bar);
    Some(bar)
}

/// A bar on stderr: spinner, elapsed time, the bar, done/total, then a message.
fn new_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(8));
    bar.set_style(bar_style());
    bar
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The bar on the terminal, if one is drawn: log lines are written with it hidden, so that
/// they do not tear it (see [`LogWriter`]).
static SHOWN: Mutex<Option<WeakProgressBar>> = Mutex::new(None);

/// Log lines from now on are written above `bar` (until it is dropped or another is shown).
fn show_logs_above(bar: &ProgressBar) {
    *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.downgrade());
}

/// Log lines go to stderr plainly again.
fn forget_bar() {
    *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Run `write` with the shown bar, if any, cleared; the bar is drawn again after it.
fn write_above_bar(write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let bar = SHOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(WeakProgressBar::upgrade);
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Where `tracing` writes: stderr, with the progress bar (if one is shown) cleared for the
/// line and drawn again below it.
struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl Write for LogWriter {
    /// One call per event: the formatter writes each whole line at once.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_above_bar(|| io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Update the `costs` bar.
pub fn show_lookups(bar: &ProgressBar, s: &crate::costs::lookup::Status) {
    bar.set_position(s.found + s.failed as u64);
    let mut msg = format!("found {}", s.found);
    if s.failed > 0 {
        msg.push_str(&format!(" · failed {}", s.failed));
    }
    if s.waiting > 0 {
        msg.push_str(&format!(" · {} not known yet", s.waiting));
    }
    if let Some(at) = s.idle_until {
        let wait = at.saturating_duration_since(tokio::time::Instant::now());
        if wait >= Duration::from_secs(1) {
            msg.push_str(&format!(" · asking again in {}", format_duration(wait)));
        }
    }
    bar.set_message(msg);
}

/// An indicatif bar: done/total, ok/err, req/s, tokens, spend, ETA.
pub struct Bar {
    bar: ProgressBar,
    started: Instant,
    skipped: u64,
    rate: Option<Arc<Pacer>>,
    /// The columns the message may take, and when the terminal was last asked.
    width: Option<usize>,
    width_asked: Option<Instant>,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            bar: new_bar(0),
            started: Instant::now(),
            skipped: 0,
            rate: None,
            width: None,
            width_asked: None,
        }
    }
}

impl Bar {
    /// The terminal's width less the bar's other fields (the spinner, elapsed time, a short
    /// bar and pos/len take about 30 columns), asked at most once a second.
    fn message_width(&mut self) -> Option<usize> {
        if self
            .width_asked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.width_asked = Some(Instant::now());
            self.width = comfy_table::Table::new()
                .width()
                .map(|w| usize::from(w).saturating_sub(30));
        }
        self.width
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64) {
        self.bar.set_length(total);
        self.bar.enable_steady_tick(Duration::from_millis(250));
        self.started = Instant::now();
        show_logs_above(&self.bar);
    }

    fn watch_rate(&mut self, rate: Arc<Pacer>) {
        self.rate = Some(rate);
    }

    fn skipped(&mut self, count: u64) {
        self.skipped += count;
        self.bar.inc(count);
    }

    fn record(&mut self, _record: &Record, t: &Tally) {
        self.bar.inc(1);
        let remaining = self
            .bar
            .length()
            .unwrap_or(0)
            .saturating_sub(self.bar.position());
        let limits = Limits {
            rate: self.rate.as_ref().and_then(|r| r.rate()),
            in_flight: self.rate.as_ref().and_then(|r| r.in_flight().reduced()),
            width: self.message_width(),
        };
        self.bar
            .set_message(status(t, self.started.elapsed(), remaining, limits));
    }

    fn finish(&mut self) {
        forget_bar();
        self.bar.finish_and_clear();
    }
}

/// What limits the run now, shown after its rate.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    /// The learnt sending rate, requests/s.
    rate: Option<f64>,
    /// The reduced number of requests in flight.
    in_flight: Option<usize>,
    /// Columns the message may take (the terminal's, less the bar's other fields).
    width: Option<usize>,
}

/// The bar's message: `ok 12 err 1 · 3.4 req/s · 1234 tok · $0.01 · ETA 5.0s`.
fn status(t: &Tally, elapsed: Duration, remaining: u64, limits: Limits) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = t.written() as f64 / secs;
    let eta = if rate > 0.0 {
        format_duration(Duration::from_secs_f64(remaining as f64 / rate))
    } else {
        "?".to_owned()
    };
    let mut limit = match limits.rate {
        // The rate learnt from the server's 429s (or the --rps ceiling), not orbatch's choice.
        Some(r) => format!(" (server limit learnt: {r:.1}/s)"),
        None => String::new(),
    };
    if let Some(n) = limits.in_flight {
        limit.push_str(&format!(" (≤ {n} in flight)"));
    }
    let retries: u64 = t.retried.values().sum();
    let retried = if retries > 0 {
        format!("{retries} retried")
    } else {
        String::new()
    };
    // In the order shown, each with the rank at which it is dropped to fit a narrow
    // terminal (lowest first): counts, spend and ETA stay longest.
    let parts = [
        (9, format!("ok {} err {}", t.ok, t.failed)),
        (4, retried),
        (3, format!("{rate:.1} req/s{limit}")),
        (1, format!("{} tok", t.prompt_tokens + t.completion_tokens)),
        (6, t.spend()),
        (5, format!("ETA {eta}")),
    ];
    fit(&parts, limits.width)
}

/// `parts` joined with ` · `, leaving out the lowest-ranked ones until the line is at most
/// `width` characters (all of them without a width). A limit annotation is dropped from its
/// part before the part itself.
fn fit(parts: &[(u8, String)], width: Option<usize>) -> String {
    let join = |keep: &dyn Fn(u8) -> bool| {
        parts
            .iter()
            .filter(|(rank, text)| keep(*rank) && !text.is_empty())
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let Some(width) = width else {
        return join(&|_| true);
    };
    let mut ranks: Vec<u8> = parts.iter().map(|(r, _)| *r).collect();
    ranks.sort_unstable();
    let mut dropped_below = 0;
    loop {
        let line = join(&|r| r >= dropped_below);
        if line.chars().count() <= width || dropped_below > ranks[ranks.len() - 1] {
            return line;
        }
        // Drop the lowest rank still shown (never the last one).
        match ranks.iter().find(|r| **r >= dropped_below) {
            Some(&r) if ranks.iter().filter(|x| **x > r).count() > 0 => dropped_below = r + 1,
            _ => return line,
        }
    }
}

/// `retried 22 attempts: transient 18, rate_limited 4`: the extra attempts by cause, most
/// first.
fn retried(t: &Tally) -> String {
    let n: u64 = t.retried.values().sum();
    let mut causes: Vec<(&ErrorKind, &u64)> = t.retried.iter().collect();
    causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let causes: Vec<String> = causes
        .iter()
        .map(|(k, c)| format!("{} {c}", k.as_str()))
        .collect();
    let s = if n == 1 { "" } else { "s" };
    format!("retried {n} attempt{s}: {}", causes.join(", "))
}

/// `1m05s`, `12.3s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// The end-of-run summary (stderr).
pub fn summary(s: &RunSummary, command_hint: &str) -> String {
    let t = &s.tally;
    let mut out = String::new();
    let secs = s.wall.as_secs_f64().max(0.001);
    out.push_str(&format!(
        "orbatch: {} requests ({} rows) from {} in {}\n",
        s.requests,
        s.rows,
        s.input,
        format_duration(s.wall)
    ));
    let interrupted = if t.interrupted > 0 {
        format!(", {} interrupted", t.interrupted)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "  sent {}: {} ok, {} failed{interrupted} ({} attempts)",
        t.written(),
        t.ok,
        t.failed,
        t.attempts
    ));
    if s.skipped_done > 0 {
        out.push_str(&format!("; skipped {} already answered", s.skipped_done));
    }
    if s.changed > 0 {
        out.push_str(&format!(
            "; {} changed since last run, sent again",
            s.changed
        ));
    }
    if s.retried_errors > 0 {
        out.push_str(&format!("; {} earlier failures retried", s.retried_errors));
    }
    out.push('\n');
    if !t.retried.is_empty() {
        out.push_str(&format!("  {}\n", retried(t)));
    }
    let byok = if t.byok > 0.0 {
        format!(
            "; of it, {} billed by providers to your own keys (BYOK)",
            crate::text::usd(t.byok)
        )
    } else {
        String::new()
    };
    let spend = match (t.costed, t.uncosted) {
        (_, 0) => format!("spend {} (usage.cost{byok})", t.spend()),
        (0, n) => format!(
            "spend unknown: the server sent no usage.cost for {n} records (`orbatch costs` \
             looks them up)"
        ),
        (_, n) => format!(
            "spend {} (usage.cost{byok}; {n} records without one)",
            t.spend()
        ),
    };
    out.push_str(&format!(
        "  tokens {} in / {} out · {spend} · {:.1} req/s\n",
        t.prompt_tokens,
        t.completion_tokens,
        t.written() as f64 / secs
    ));
    out.push_str(&format!("  output: {}\n", s.output.display()));
    if !t.truncated.is_empty() {
        let n: u64 = t.truncated.values().sum();
        let per: Vec<String> = t
            .truncated
            .iter()
            .map(|(m, k)| format!("{m} {k}"))
            .collect();
        out.push_str(&format!(
            "  truncated: {n} answers were cut at max_tokens (finish_reason length; {}): raise \
             max_tokens, or --truncated error to record them as errors a rerun retries\n",
            per.join(", ")
        ));
    }
    if !t.errors.is_empty() {
        let kinds: Vec<String> = t
            .errors
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        out.push_str(&format!("  errors: {}\n", kinds.join(", ")));
        for e in &t.examples {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out.push_str(&stopped(s));
    let failed = t.failed + s.kept_errors;
    if failed > 0 && s.stopped.is_none() && s.failure.is_none() {
        out.push_str(&format!(
            "  {failed} failed: rerun `{command_hint}` to retry them (answered rows are skipped)\n"
        ));
    }
    out
}

/// Why the run stopped early, if it did: the summary's `stopped:` lines (also shown under
/// `-q`, which hides the rest of the summary).
pub fn stopped(s: &RunSummary) -> String {
    let mut out = String::new();
    if let Some(failure) = &s.failure {
        out.push_str(&format!(
            "  stopped: {failure}\n  rerun the same command to finish the job (recorded rows are skipped)\n"
        ));
    }
    match &s.stopped {
        // Said above, with its cause.
        _ if s.failure.is_some() => {}
        Some(StopReason::Auth(m)) => out.push_str(&format!(
            "  stopped: the API key was refused ({m}); check the API key, then rerun\n"
        )),
        Some(StopReason::Credits(m)) if m.contains("the key's credit limit is reached") => out
            .push_str(&format!(
                "  stopped: {m}; raise the key's limit at https://openrouter.ai/settings/keys, \
                 or give the job a key with a higher `orbatch key create --limit`, then rerun\n"
            )),
        Some(StopReason::Credits(m)) => out.push_str(&format!(
            "  stopped: out of credit ({m}); add credit at https://openrouter.ai/settings/credits, then rerun\n"
        )),
        Some(StopReason::Interrupted) => out.push_str(
            "  interrupted: rerun the same command to finish the job (answered rows are skipped)\n",
        ),
        Some(StopReason::WriteFailed) => out.push_str("  stopped: the output could not be written\n"),
        Some(StopReason::Unusable(
            Alarm::NoSuchPath(m) | Alarm::NotTls(m) | Alarm::Down(m),
        )) => out.push_str(&format!("  stopped: {m}\n")),
        Some(StopReason::Budget(m)) => out.push_str(&format!(
            "  stopped: {m}; rerun with a higher --max-cost to continue\n"
        )),
        // A higher cap would not help: no price, no bound.
        Some(StopReason::Unpriced(m)) => out.push_str(&format!(
            "  stopped: {m}; pick a model that /models prices (`orbatch models`), or drop \
             --max-cost\n"
        )),
        None => {}
    }
    if let Some(waiting) = &s.waiting {
        out.push_str(&format!(
            "  waiting: {waiting}; rerun the same command to continue polling (nothing is \
             submitted twice)\n"
        ));
    }
    out
}

/// Set up `tracing` on stderr: warnings by default, `-v` info, `-vv` debug, `-vvv` trace;
/// `RUST_LOG` overrides. Only orbatch's own events are shown below `warn`, never headers.
pub fn init_logging(quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, 0) => "error",
        (_, 0) => "warn,orbatch::progress=info",
        (_, 1) => "warn,orbatch=info",
        (_, 2) => "warn,orbatch=debug",
        _ => "warn,orbatch=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(false)
        .event_format(Plain)
        .try_init();
}

/// Log lines in the one format of orbatch's own messages: `orbatch: warning: …`, plain text
/// (no colour codes, whatever stderr is), fields after the message as `key=value`.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // Progress news (a batch submitted, a batch's status) is neither a warning nor
        // debugging: said plainly, shown unless -q.
        if event.metadata().target() == PROGRESS {
            write!(writer, "orbatch: ")?;
        } else {
            write!(
                writer,
                "orbatch: {}: ",
                level_word(*event.metadata().level())
            )?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The `tracing` target of progress news: shown at the default level, as plain lines.
pub const PROGRESS: &str = "orbatch::progress";

/// `warning`, as the messages orbatch prints itself say it.
fn level_word(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warning",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::costs::lookup::Status;

    #[tokio::test(start_paused = true)]
    async fn the_costs_bar_counts_the_wait_down() {
        let bar = ProgressBar::hidden();
        bar.set_length(10);
        let s = Status {
            found: 4,
            failed: 1,
            waiting: 5,
            idle_until: Some(tokio::time::Instant::now() + Duration::from_secs(30)),
        };
        show_lookups(&bar, &s);
        assert_eq!(bar.position(), 5);
        assert_eq!(
            bar.message(),
            "found 4 · failed 1 · 5 not known yet · asking again in 30.0s"
        );
        show_lookups(
            &bar,
            &Status {
                idle_until: None,
                failed: 0,
                ..s
            },
        );
        assert_eq!(bar.message(), "found 4 · 5 not known yet");
    }

    use indicatif::{InMemoryTerm, TermLike};

    /// A bar at a fixed state, drawn on a 140-column terminal.
    fn drawn_bar() -> (ProgressBar, InMemoryTerm) {
        let term = InMemoryTerm::new(4, 140);
        let bar = ProgressBar::with_draw_target(
            Some(1000),
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        )
        .with_elapsed(Duration::from_secs(83));
        bar.set_style(bar_style());
        bar.set_position(250);
        let tally = Tally {
            ok: 240,
            failed: 10,
            attempts: 262,
            prompt_tokens: 12_000,
            completion_tokens: 3_456,
            cost: 0.0421,
            ..Tally::default()
        };
        let limits = Limits {
            rate: Some(12.5),
            in_flight: Some(6),
            width: None,
        };
        bar.set_message(status(&tally, Duration::from_secs(50), 750, limits));
        bar.force_draw();
        (bar, term)
    }

    /// Unknown spend is `—`, and a sum with answers that carry no cost is a lower bound:
    /// never `$0.000000` for a server that sends no `usage.cost`.
    #[test]
    fn the_bar_shows_unknown_spend_as_unknown() {
        let limits = Limits::default();
        let unknown = Tally {
            ok: 5,
            uncosted: 5,
            ..Tally::default()
        };
        let line = status(&unknown, Duration::from_secs(1), 0, limits);
        assert!(line.contains(" · \u{2014} · "), "{line}");
        let partial = Tally {
            ok: 5,
            costed: 3,
            uncosted: 2,
            cost: 0.003,
            ..Tally::default()
        };
        let line = status(&partial, Duration::from_secs(1), 0, limits);
        assert!(line.contains("\u{2265} $0.003000"), "{line}");
    }

    /// On a narrow terminal the message drops its least useful parts (tokens first, then the
    /// rate) instead of wrapping; counts, spend and ETA stay.
    #[test]
    fn the_bar_message_fits_a_narrow_terminal() {
        let t = Tally {
            ok: 240,
            failed: 10,
            prompt_tokens: 12_000,
            completion_tokens: 3_456,
            cost: 0.0421,
            ..Tally::default()
        };
        let at = |width| {
            status(
                &t,
                Duration::from_secs(50),
                750,
                Limits {
                    rate: Some(12.5),
                    in_flight: None,
                    width,
                },
            )
        };
        let full = at(None);
        assert_eq!(
            full,
            "ok 240 err 10 · 5.0 req/s (server limit learnt: 12.5/s) · 15456 tok · $0.042100 · ETA 2m30s"
        );
        assert_eq!(at(Some(200)), full);
        // A 70-column terminal.
        let narrow = at(Some(70 - 30));
        assert_eq!(narrow, "ok 240 err 10 · $0.042100 · ETA 2m30s");
        let mid = at(Some(80));
        assert_eq!(
            mid,
            "ok 240 err 10 · 5.0 req/s (server limit learnt: 12.5/s) · $0.042100 · ETA 2m30s"
        );
        // Never less than the counts.
        assert_eq!(at(Some(3)), "ok 240 err 10");
    }

    #[test]
    fn the_run_bar_line() {
        let (_bar, term) = drawn_bar();
        insta::assert_snapshot!(term.contents());
    }

    /// A log line is written with the bar cleared, then the bar is drawn again below it:
    /// nothing is written into the bar's line.
    #[test]
    fn log_lines_go_above_the_bar() {
        let (bar, term) = drawn_bar();
        let alone = term.contents();
        show_logs_above(&bar);
        write_above_bar(|| term.write_line(" WARN rate limited: slowing down")).unwrap();
        forget_bar();
        assert_eq!(
            term.contents(),
            format!(" WARN rate limited: slowing down\n{alone}")
        );
    }
}
