//! `orbatch costs`: flags → [`CostsConfig`], the lookups, and the summary on stderr.

use tokio_util::sync::CancellationToken;

use super::connect;
use crate::cli::CostsArgs;
use crate::config::Key;
use crate::costs::{self, CostsConfig, CostsReport, Schedule};
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::text::usd;
use crate::ui;

/// Run `orbatch costs`. Exit 0 when every id is in the sidecar, 1 when some are pending or
/// failed (or the lookups could not run), 3 when the key was refused, 130 when interrupted.
pub async fn command(args: &CostsArgs, interrupt: CancellationToken) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    if args.api.mock {
        return Err(UsageError::new(
            "costs --mock: an in-process mock knows no earlier generations; point --base-url at \
             the server the run used (e.g. one started with `orbatch mock-server`)",
        )
        .into());
    }
    let config = CostsConfig {
        out: args.out.clone(),
        wait: args.wait,
        // clap keeps it within 1..=1024.
        concurrency: usize::try_from(args.concurrency).unwrap_or(1),
        schedule: Schedule::from_env(),
    };
    let prepared = costs::prepare(&config)?;
    if !args.verbosity.quiet && prepared.pending() > 0 {
        eprintln!(
            "looking up {} of {} generation ids; waiting up to {} for those OpenRouter does not \
             know yet (Ctrl-C stops, a rerun continues)",
            prepared.pending(),
            prepared.ids(),
            ui::format_duration(config.wait)
        );
    }
    let conn = connect(&args.api, Key::Required).await?;
    let bar = ui::lookup_bar(args.verbosity.quiet, prepared.pending());
    let result = costs::run(&conn.client, prepared, &config, &interrupt, |s| {
        if let Some(bar) = &bar {
            ui::show_lookups(bar, &s);
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    conn.close().await;
    let report = result?;
    if !args.verbosity.quiet {
        eprint!("{}", summary(&report, &args.out.display().to_string()));
    }
    if let Some(message) = &report.tally.no_endpoint {
        return Err(Failure::failed(format!(
            "GET /generation answered {message} for {:.1}s without naming a generation: this \
             server may not serve /generation (OpenRouter's base URL is \
             https://openrouter.ai/api/v1); the ids stay pending for a rerun",
            crate::costs::generation_grace().as_secs_f64()
        )));
    }
    if let Some(message) = &report.tally.refused {
        return Err(Failure::Refused(format!(
            "the API key was refused ({message}); check {} (ids looked up so far are kept)",
            args.api.key_source()
        )));
    }
    Ok(if report.tally.interrupted {
        Exit::Interrupted
    } else if report.complete() {
        Exit::Ok
    } else {
        Exit::RowsFailed
    })
}

/// The lines printed at the end: counts and sidecar, what to do next, the totals.
pub fn summary(r: &CostsReport, out: &str) -> String {
    let t = &r.tally;
    let mut s = format!(
        "looked up {}, still pending {}, failed {}; sidecar: {}\n",
        t.found,
        t.pending,
        t.failed.len(),
        r.sidecar.display()
    );
    if r.already_known > 0 {
        s.push_str(&format!(
            "  {} of {} ids were already in the sidecar\n",
            r.already_known, r.ids
        ));
    }
    if t.pending > 0 && t.no_endpoint.is_none() {
        s.push_str(&format!(
            "  OpenRouter does not know every generation yet: rerun `{}` later to finish \
             them\n",
            rerun_hint(out)
        ));
        if let Some(e) = &t.last_error {
            s.push_str(&format!(
                "  {} of the pending last failed with an error: {e}\n",
                t.pending_errors
            ));
        }
    }
    for (id, reason) in t.failed.iter().take(5) {
        s.push_str(&format!("  failed: {id}: {reason}\n"));
    }
    if t.failed.len() > 5 {
        s.push_str(&format!("  … and {} more failed\n", t.failed.len() - 5));
    }
    // A partial sidecar's sum is a lower bound: no difference until every id is known.
    let (total, difference) = if t.pending == 0 && t.failed.is_empty() {
        (usd(r.sidecar_total), usd(r.sidecar_total - r.inline_total))
    } else {
        (
            format!("at least {}", usd(r.sidecar_total)),
            "not known until every id is looked up".to_owned(),
        )
    };
    s.push_str(&format!(
        "  total_cost from /generation: {total} ({} ids); inline usage.cost: {}; difference: \
         {difference}\n",
        r.sidecar_ids,
        usd(r.inline_total),
    ));
    if r.sidecar_byok != 0.0 {
        s.push_str(&format!(
            "  of that, {} was billed by providers to your own keys (BYOK, \
             upstream_inference_cost) and {} by OpenRouter (total_cost)\n",
            usd(r.sidecar_byok),
            usd(r.sidecar_total - r.sidecar_byok)
        ));
    }
    if r.sidecar_without_cost > 0 {
        s.push_str(&format!(
            "  {} sidecar records carry no total_cost\n",
            r.sidecar_without_cost
        ));
    }
    s
}

/// The command to rerun: as typed (so `--base-url`, `--api-key-env` and every flag that
/// changes the target stay), or `orbatch costs OUT` when not run from the command line.
fn rerun_hint(out: &str) -> String {
    let args = crate::rerun::typed();
    if args.first().map(String::as_str) == Some("costs") {
        crate::rerun::hint(&args)
    } else {
        crate::text::shell_line(["orbatch", "costs", out])
    }
}
