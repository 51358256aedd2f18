//! orbatch: bulk prompts against OpenRouter with an exact audit of what every row cost.
//!
//! Every subcommand is a library function so that tests can call it in-process; `main.rs`
//! only parses arguments, builds the runtime and maps the outcome to an exit code.

pub(crate) mod api;
pub(crate) mod audit;
pub(crate) mod batch;
pub(crate) mod budget;
pub(crate) mod catalog;
pub mod cli;
pub(crate) mod client;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod costs;
#[doc(hidden)]
pub mod docs;
pub(crate) mod endpoint;
pub(crate) mod estimate;
pub mod exit;
pub(crate) mod export;
pub(crate) mod fit;
pub(crate) mod hash;
pub(crate) mod health;
pub(crate) mod inflight;
pub(crate) mod job;
pub(crate) mod limit;
pub mod mock;
pub(crate) mod money;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod pool;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod rerun;
pub(crate) mod retry;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod score;
pub(crate) mod stdout;
pub mod text;
pub(crate) mod ui;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, ReportArgs, RunArgs};
use crate::config::RunConfig;
use crate::exit::{Exit, Failure, Outcome};
use crate::pool::StopReason;

/// Run one parsed command line to completion. Messages go to stderr; the exit code comes
/// from the typed outcome ([`exit::code_of`]), the caller turns it into the process code.
/// `interrupt` is cancelled on the first Ctrl-C.
pub async fn execute(cli: Cli, interrupt: CancellationToken) -> Exit {
    let outcome = match cli.command {
        Command::Run(args) => run_command(&args, interrupt).await,
        Command::Plan(args) => plan_command(&args).await,
        Command::MockServer(args) => {
            ui::init_logging(false, 0);
            mock::serve(args.config, args.port)
                .await
                .map(|()| Exit::Ok)
                .map_err(Failure::from)
        }
        Command::Costs(args) => commands::costs::command(&args, interrupt).await,
        Command::Models(args) => commands::models::command(&args).await,
        Command::Key(args) => commands::key::command(&args).await,
        Command::Audit(args) => audit::command::command(&args).await,
        Command::Report(args) => report_command(&args).await,
        Command::Score(args) => score_command(args, interrupt).await,
        Command::Export(args) => export_command(args).await,
    };
    if let Err(failure) = &outcome {
        tell(failure);
    }
    exit::code_of(&outcome)
}

/// The failure on stderr.
fn tell(failure: &Failure) {
    let msg = text::printable(&failure.to_string());
    match failure {
        // A list of problems (e.g. one per bad input line): one per line, unprefixed, so
        // each stays a clickable `PATH:LINE: message`.
        Failure::Usage(_) if msg.contains('\n') => {
            eprintln!("orbatch: error: nothing was sent; fix these problems and rerun:\n{msg}");
        }
        _ => eprintln!("orbatch: error: {msg}"),
    }
}

async fn run_command(args: &RunArgs, interrupt: CancellationToken) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    let config = RunConfig::resolve(args, &|k| std::env::var(k).ok())?;
    let quiet = config.quiet;
    let key_source = config.key_source.clone();
    let score_config = config.score.is_some().then(|| config.clone());
    let summary = run::run(config, ui::progress(quiet), interrupt.clone()).await?;
    if !quiet {
        eprint!("{}", ui::summary(&summary, &rerun_hint()));
        if matches!(summary.stopped, Some(StopReason::Auth(_))) {
            eprintln!("  the key was read from {key_source}");
        }
    } else {
        // -q hides the summary, not why the run stopped.
        for line in ui::stopped(&summary).lines() {
            eprintln!("orbatch: {}", line.trim_start());
        }
    }
    // A job with a [score] table: its answers are scored once the run is over.
    if let Some(config) = score_config {
        score::command::after_run(&config, quiet, &interrupt).await;
    }
    Ok(summary.exit())
}

async fn plan_command(args: &RunArgs) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    // The catalogue is public: plan works without a key, and then skips the credit check.
    let config = RunConfig::resolve_with(args, &|k| std::env::var(k).ok(), config::Key::Optional)?;
    let have_key = !matches!(config.target, config::Target::Remote { key: None, .. });
    let plan = plan::plan(&config, have_key)
        .await
        .map_err(|f| f.with_key_hint(&config.key_source))?;
    stdout::write(plan.render().as_bytes())?;
    for w in plan.warnings() {
        eprintln!("orbatch: warning: {w}");
    }
    if !have_key {
        eprintln!(
            "orbatch: note: {} is not set; the key's credit was not checked",
            config.key_env
        );
    }
    Ok(Exit::Ok)
}

async fn report_command(args: &ReportArgs) -> Outcome {
    let opts = report::command::ReportOptions::from_args(args);
    tokio::task::spawn_blocking(move || report::command::run(&opts)).await?
}

async fn score_command(args: cli::ScoreArgs, interrupt: CancellationToken) -> Outcome {
    ui::init_logging(args.verbosity.quiet, args.verbosity.verbose);
    score::command::run(&args, interrupt).await
}

async fn export_command(args: cli::ExportArgs) -> Outcome {
    tokio::task::spawn_blocking(move || export::command::run(&args)).await?
}

/// The command line as typed, to tell the user what to rerun.
fn rerun_hint() -> String {
    rerun::hint(&rerun::typed())
}
