//! Command-line syntax only (clap derive). Doc comments are the help text. Nothing below
//! `config` sees these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::exit::EXIT_CODES_HELP;
use crate::job::Shard;

/// Run bulk prompts against OpenRouter and keep an exact audit of what each row, model and
/// job cost.
#[derive(Debug, Parser)]
#[command(name = "orbatch", version, about, max_term_width = 100, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send every (row × model) request and write one JSONL record each.
    #[command(after_help = EXIT_CODES_HELP)]
    Run(Box<RunArgs>),
    /// Validate a job and estimate its requests, tokens and cost; sends no prompt.
    #[command(after_help = EXIT_CODES_HELP)]
    Plan(Box<RunArgs>),
    /// Serve a local OpenRouter-compatible mock API (for tests, demos and benchmarks).
    MockServer(MockServerArgs),
    /// Look up the exact cost of every generation id of an output file (GET /generation).
    #[command(after_help = EXIT_CODES_HELP)]
    Costs(CostsArgs),
    /// List models and their prices per million tokens (GET /models).
    #[command(after_help = EXIT_CODES_HELP)]
    Models(ModelsArgs),
    /// Show the API key's label, limit, remaining credit and usage (GET /key); with a
    /// management key, create, show and disable keys (a key per job).
    #[command(after_help = EXIT_CODES_HELP)]
    Key(KeyArgs),
    /// A job's spend three ways — its records, /generation (the `costs` sidecars) and the
    /// key's own usage — with the differences and what explains them. Exit 0 when they
    /// agree, 1 when they do not.
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
    /// Summarise output files: counts, ok %, tokens, spend (inline and exact), latency, errors.
    #[command(after_help = EXIT_CODES_HELP)]
    Report(ReportArgs),
    /// Score the answers of output files against the input's expected values (offline but
    /// for the judge scorer, whose requests go to OUT.judge.jsonl):
    /// writes OUT.scores.jsonl beside each output (replaced on every run) and shows accuracy
    /// per model. `report` then adds intervals, cost per correct answer and model pairs.
    #[command(after_help = EXIT_CODES_HELP)]
    Score(ScoreArgs),
    /// Join the input rows back to their records: every input column, plus per model the
    /// output, status, error kind, tokens, spend and score, as CSV or JSONL.
    #[command(after_help = EXIT_CODES_HELP)]
    Export(ExportArgs),
}

/// `orbatch run`: every option can also be set in the job file; a flag wins over the file.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// A job file (TOML) with the same settings as the flags; relative paths in it resolve
    /// against its folder.
    #[arg(value_name = "JOB.toml")]
    pub job: Option<PathBuf>,

    /// Input rows: .jsonl/.ndjson/.csv/.tsv, or - for stdin (then --input-format is needed);
    /// or documents (a row per file): a folder, a glob ('docs/**/*.{md,txt}') or a .md, .txt,
    /// .html or .pdf file.
    #[arg(short, long, value_name = "PATH")]
    pub input: Option<String>,

    /// Input format (default: from the file extension).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormatArg>,

    /// With a folder or glob as input: also read hidden and .gitignored files.
    #[arg(long)]
    pub hidden: bool,

    /// Documents longer than N estimated tokens (characters ÷ 4) are split at paragraph,
    /// then sentence boundaries into chunk rows ID#1…ID#k (fields chunk, chunk_index,
    /// chunk_count); shorter ones stay one row (chunk = text).
    #[arg(long, value_name = "N")]
    pub chunk_tokens: Option<u64>,

    /// Tokens each chunk shares with the one before [default: 0].
    #[arg(long, value_name = "M", requires = "chunk_tokens")]
    pub chunk_overlap: Option<u64>,

    /// Once every chunk of a document is answered, one more request per (document, model)
    /// with this template over the document's fields and {{ chunks }} (the chunk answers, in
    /// order): its answer is the document's record.
    #[arg(long, value_name = "TEXT", conflicts_with = "reduce_template_file")]
    pub reduce_template: Option<String>,

    /// Read the reduce template from a file.
    #[arg(long, value_name = "PATH")]
    pub reduce_template_file: Option<PathBuf>,

    /// Output JSONL file [default: <input stem>.out.jsonl next to the input].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Model id; repeat to send every row to every model. A row's own "model" field wins.
    #[arg(short = 'm', long = "model", value_name = "ID")]
    pub models: Vec<String>,

    /// Which API to call [default: chat].
    #[arg(long, value_enum)]
    pub endpoint: Option<EndpointArg>,

    /// A minijinja template over the row's fields; the result is the user message.
    #[arg(long, value_name = "TEXT", conflicts_with = "template_file")]
    pub template: Option<String>,

    /// Read the template from a file.
    #[arg(long, value_name = "PATH")]
    pub template_file: Option<PathBuf>,

    /// System message (chat) or instructions (responses).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,

    /// The field holding the row id [default: id, then custom_id, else the row number].
    #[arg(long, value_name = "NAME")]
    pub id_field: Option<String>,

    /// A body parameter, repeatable; VALUE is parsed as JSON, else taken as a string
    /// (temperature=0, max_tokens=256, provider={"sort":"price"}).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Requests in flight at most, 1 to 65536 [default: 32].
    #[arg(short = 'j', long, value_name = "N", allow_negative_numbers = true)]
    pub concurrency: Option<u64>,

    /// Requests per second at most, 0.0000167 (one per 1,000 minutes) to 1000000 (the
    /// bucket starts empty).
    #[arg(
        long,
        value_name = "X",
        conflicts_with = "rpm",
        allow_negative_numbers = true
    )]
    pub rps: Option<f64>,

    /// Requests per minute at most, 0.001 to 60000000.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub rpm: Option<f64>,

    /// Requests that may start together after an idle spell under --rps/--rpm, 1 to 10000
    /// [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub burst: Option<u64>,

    /// Attempts per request, including the first, 1 to 100 [default: 6].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_attempts: Option<u64>,

    /// Seconds per attempt, 0.001 to 86400 (a day) [default: 300].
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout: Option<f64>,

    /// Stop dispatching before spend (earlier runs on this output included) could pass USD
    /// (0 to 1000000).
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub max_cost: Option<f64>,

    /// Stream answers (SSE); records the time to the first token.
    #[arg(long)]
    pub stream: bool,

    /// What an answer cut at max_tokens (finish_reason "length") is: ok (kept, and counted
    /// as truncated in the summary and report) or error (an error record of kind truncated,
    /// which a rerun sends again) [default: ok].
    #[arg(long, value_enum, value_name = "ok|error")]
    pub truncated: Option<TruncatedArg>,

    /// A JSON Schema the answers must fit: sent as the answer format (with
    /// provider.require_parameters unless set), checked locally; the record gets output_json.
    #[arg(long, value_name = "FILE.json")]
    pub schema: Option<PathBuf>,

    /// The name the schema is sent under [default: the file name without .schema.json].
    #[arg(long, value_name = "NAME")]
    pub schema_name: Option<String>,

    /// With --schema: ask again this many times, quoting the validator's errors, when an
    /// answer does not fit (0 to 10) [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub reask: Option<u64>,

    /// With --schema: strip one code fence, or the prose around a single JSON value, before
    /// checking (the record says lenient_json when it did).
    #[arg(long)]
    pub lenient_json: bool,

    /// Only the first N rows of the input.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<u64>,

    /// Only rows whose stable id hash mod N == K (run N shards in parallel).
    #[arg(long, value_name = "K/N", value_parser = crate::config::parse_shard)]
    pub shard: Option<Shard>,

    /// On resume, send rows whose last record is an error again (the default).
    #[arg(long, overrides_with = "no_retry_errors")]
    pub retry_errors: bool,

    /// On resume, keep rows whose last record is an error as they are.
    #[arg(long, overrides_with = "retry_errors")]
    pub no_retry_errors: bool,

    /// Ignore and truncate an existing output file.
    #[arg(long)]
    pub fresh: bool,

    /// How requests go: sync (live, one by one), batch (OpenRouter's Batch API, about half
    /// price, minutes to hours) or auto (batch for models with a :batch variant in /models,
    /// live for the rest) [default: sync].
    #[arg(long, value_enum, value_name = "sync|batch|auto")]
    pub lane: Option<crate::batch::Lane>,

    /// Batch lane: what happens to rows the Batch API did not answer (a refused model, failed
    /// lines, a failed or expired batch): none (error records a rerun sends again) or sync
    /// (sent live now) [default: none].
    #[arg(long, value_enum, value_name = "none|sync")]
    pub fallback: Option<crate::batch::Fallback>,

    /// Batch lane: stop polling after DURATION (90s, 10m, 1h) and exit 1; rerunning the same
    /// command continues polling [default: until every batch is done].
    #[arg(long, value_name = "DURATION", value_parser = crate::costs::parse_duration)]
    pub wait: Option<std::time::Duration>,

    /// Batch lane: the Batch API's path under --base-url, or a whole URL (e.g.
    /// https://openrouter.ai/api/beta/batches) [default: /batches].
    #[arg(long, value_name = "PATH")]
    pub batch_path: Option<String>,

    /// Copy each row's other fields into the record's "meta".
    #[arg(long)]
    pub keep_fields: bool,

    #[command(flatten)]
    pub api: ApiArgs,

    /// Your app's URL, sent as HTTP-Referer (attribution).
    #[arg(long, value_name = "URL")]
    pub app_url: Option<String>,

    /// Your app's name, sent as X-OpenRouter-Title and X-Title.
    #[arg(long, value_name = "NAME")]
    pub app_title: Option<String>,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Where API calls go, shared by every command that talks to OpenRouter.
#[derive(Debug, Args, Clone, Default)]
pub struct ApiArgs {
    /// API base URL [default: $OPENROUTER_BASE_URL, else https://openrouter.ai/api/v1].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Use the built-in mock server, started in-process (no key, no network).
    #[arg(long)]
    pub mock: bool,

    /// The environment variable holding the API key [default: OPENROUTER_API_KEY].
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,

    /// Read the API key from FILE (trimmed) instead of the environment, e.g. a per-job key
    /// from `orbatch key create --out FILE`; the key is never taken on the command line.
    #[arg(long, value_name = "FILE", conflicts_with = "api_key_env")]
    pub api_key_file: Option<PathBuf>,

    /// An extra request header, 'Name: value' (repeatable), for proxies and gateways; never
    /// logged. Authorization is refused: the key comes from the environment or --api-key-file.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

/// Where the key is read from unless `--api-key-env` says otherwise.
pub const DEFAULT_KEY_ENV: &str = "OPENROUTER_API_KEY";

impl ApiArgs {
    /// The variable the key is read from: `--api-key-env`, else the default.
    pub fn key_env(&self) -> &str {
        self.api_key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV)
    }

    /// Where the key comes from, for messages: `$VAR` or `the key file FILE`.
    pub fn key_source(&self) -> String {
        match &self.api_key_file {
            Some(f) => format!("the key file {}", f.display()),
            None => format!("${}", self.key_env()),
        }
    }
}

/// `-q` / `-v` flags shared by commands.
#[derive(Debug, Args, Default, Clone, Copy)]
pub struct Verbosity {
    /// No progress bar and no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More logging on stderr: -v info, -vv debug, -vvv trace (never the key).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// `orbatch mock-server`.
#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    #[command(flatten)]
    pub config: crate::mock::MockConfig,
}

/// `orbatch costs`: ids already in the sidecar are skipped, so rerunning finishes the rest.
#[derive(Debug, Args)]
pub struct CostsArgs {
    /// The output file of `orbatch run`; records go to OUT.generations.jsonl beside it.
    #[arg(value_name = "OUT.jsonl")]
    pub out: PathBuf,

    /// How long to keep asking for generations OpenRouter does not know yet (90s, 10m, 1h,
    /// or seconds; at most a week); those still unknown then stay pending for a rerun.
    #[arg(long, value_name = "DURATION", default_value = "10m",
          value_parser = crate::costs::parse_duration)]
    pub wait: std::time::Duration,

    /// Lookups in flight at most, 1 to 1024.
    #[arg(short = 'j', long, value_name = "N", default_value = "8",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// The scorer kinds and their options, for `orbatch score --help`.
const SCORERS_HELP: &str = "How answers are scored: KIND[:OPTS] [default: exact].
  exact[:ignore_case,collapse_whitespace,strip_punctuation,trim=false]
        the whole answer equals the expected value (both trimmed)
  contains[:the same options]
        the expected value appears in the answer
  regex:PATTERN
        group 1 (or the group named answer, or the whole match) equals the expected
        value; flags go inline, e.g. 'regex:(?i)answer:\\s*(\\w+)'
  number[:abs=X,rel=X,pick=first|last]
        the last (or first) number of the answer is within tolerance of the expected
        one; reads 1,234.5  $12  12%  -3e2
  choice[:letters=ABCD]
        the option letter chosen (\"The answer is (B)\", \"**B**\", \"B) Paris\"); the
        expected value is the letter or the option's text
  json[:/pointer]
        the answer parsed as JSON (inside one code fence, if fenced); the value at the
        pointer equals the expected value (numbers by value)
  judge[:model=ID]
        a model grades the answer against the expected value with a rubric
        (--judge-model, --judge-template); its requests go to OUT.judge.jsonl through
        the same limits and retries, resumable, their spend shown apart by report";

/// `orbatch score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Output files of `orbatch run` (shards: several; each gets its own scores file)
    /// [default: the job file's output].
    #[arg(value_name = "OUT.jsonl")]
    pub outputs: Vec<PathBuf>,

    /// A job file: its input, id_field, output and [score] table (expected, scorer,
    /// scorer_field) are used where no flag says otherwise.
    #[arg(long, value_name = "JOB.toml")]
    pub job: Option<PathBuf>,

    /// The input the outputs were run on (its rows are joined to the records by id).
    #[arg(short, long, value_name = "PATH")]
    pub input: Option<String>,

    /// Input format (default: from the file extension).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormatArg>,

    /// Which field is the row id, as given to `run` (default id, then custom_id, else the
    /// 1-based row number).
    #[arg(long, value_name = "NAME")]
    pub id_field: Option<String>,

    /// The input field holding each row's expected answer; rows without one are not scored.
    #[arg(long, value_name = "FIELD")]
    pub expected: Option<String>,

    /// How answers are scored: exact, contains, regex:PATTERN, number, choice, json or
    /// judge, each with options (--help lists them) [default: exact].
    #[arg(long, value_name = "KIND[:OPTS]", long_help = SCORERS_HELP)]
    pub scorer: Option<String>,

    /// An input field naming a row's own scorer (mixed sets); rows where it is empty use
    /// --scorer.
    #[arg(long, value_name = "FIELD")]
    pub scorer_field: Option<String>,

    /// The model that grades answers for the judge scorer (unless the scorer names one:
    /// judge:model=ID). Its requests go to OUT.judge.jsonl, resumable and audited like a run.
    #[arg(long, value_name = "ID")]
    pub judge_model: Option<String>,

    /// The judge's rubric, a template with {{ question }}, {{ answer }}, {{ expected }},
    /// {{ answer_model }} and {{ row.FIELD }}; its answer must say CORRECT or INCORRECT (or
    /// SCORE: 0..1) [default: the rubric orbatch ships].
    #[arg(long, value_name = "FILE")]
    pub judge_template: Option<PathBuf>,

    /// Where the judge's requests go (only the judge scorer sends any).
    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `orbatch export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output files of `orbatch run` (shards: several, merged). Their `.generations.jsonl`
    /// and `.scores.jsonl` sidecars are read when they exist.
    #[arg(value_name = "OUT.jsonl", required = true)]
    pub outputs: Vec<PathBuf>,

    /// The input the outputs were run on (a file: it is read twice).
    #[arg(
        short,
        long,
        value_name = "PATH",
        required_unless_present = "to_dir",
        conflicts_with = "to_dir"
    )]
    pub input: Option<String>,

    /// Write one file per ok final record (its answer) into DIR, plus DIR/index.csv (id,
    /// model, file, tokens, spend); files whose content is unchanged are left alone.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "format"])]
    pub to_dir: Option<PathBuf>,

    /// With --to-dir: the file name, a template over id, model, model_slug, name, stem, ext,
    /// id_stem and dir [default: {{ stem }}.{{ model_slug }}.md].
    #[arg(long, value_name = "TEMPLATE", requires = "to_dir")]
    pub name: Option<String>,

    /// With --to-dir: list what would be written (new, changed, unchanged), write nothing.
    #[arg(long, requires = "to_dir")]
    pub dry_run: bool,

    /// Input format (default: from the file extension).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormatArg>,

    /// Which field is the row id, as given to `run`.
    #[arg(long, value_name = "NAME")]
    pub id_field: Option<String>,

    /// csv or jsonl [default: from the -o extension, else csv].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ExportFormatArg>,

    /// long: a line per (row, model); wide: a line per row, columns per model.
    #[arg(long, value_enum, default_value_t = ExportShapeArg::Long)]
    pub shape: ExportShapeArg,

    /// Write to PATH instead of stdout (replaced whole, never left half-written).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Keep CSV cells that start with = + - @ as they are (by default they get a leading '
    /// so that a spreadsheet shows them instead of running them as formulas).
    #[arg(long)]
    pub raw: bool,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportShapeArg {
    Long,
    Wide,
}

/// `orbatch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output files of `orbatch run`; several (shards) merge into one report. Each one's
    /// `.generations.jsonl` sidecar (from `orbatch costs`) is read when it exists.
    #[arg(value_name = "OUT.jsonl", required = true)]
    pub inputs: Vec<PathBuf>,

    /// What the rows are.
    #[arg(long, value_enum, default_value_t = ReportByArg::Model)]
    pub by: ReportByArg,

    /// How the report is written.
    #[arg(long, value_enum, default_value_t = ReportFormatArg::Table)]
    pub format: ReportFormatArg,

    /// Write the report to PATH instead of stdout.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `orbatch models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Only models whose id or name contains this (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `orbatch key`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: Option<KeyAction>,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,

    #[command(flatten)]
    pub api: ApiArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// `orbatch key create|show|disable` (management key: `$OPENROUTER_MANAGEMENT_KEY`).
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key with a credit limit that OpenRouter enforces (a key per job, shared by
    /// all its shards): the key goes to --out (mode 0600; an existing file is never
    /// overwritten), only its hash and label are printed.
    #[command(after_help = EXIT_CODES_HELP)]
    Create(KeyCreateArgs),
    /// Show a key's limit, usage and state (GET /keys/HASH).
    #[command(after_help = EXIT_CODES_HELP)]
    Show(KeyShowArgs),
    /// Disable a key (PATCH /keys/HASH with disabled: true), e.g. once its job is done.
    #[command(after_help = EXIT_CODES_HELP)]
    Disable(KeyDisableArgs),
}

/// Where management calls go; the key is `$OPENROUTER_MANAGEMENT_KEY`, never a flag.
#[derive(Debug, Args, Clone, Default)]
pub struct ManagementArgs {
    /// API base URL [default: $OPENROUTER_BASE_URL, else https://openrouter.ai/api/v1].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// An extra request header, 'Name: value' (repeatable), for proxies and gateways.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

/// `orbatch key create`.
#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The key's name (shown in OpenRouter's key list), e.g. the job's.
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// Credit limit in USD (0 to 1000000): requests made with the key are refused once it
    /// has spent this much.
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub limit: f64,

    /// Expire the key after this long (90m, 12h, 30d, or an RFC 3339 UTC time).
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,

    /// Write the key to FILE (created with mode 0600; refused if it exists). Pass it to
    /// run, plan and costs with --api-key-file FILE.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    #[command(flatten)]
    pub api: ManagementArgs,
}

/// `orbatch key show`.
#[derive(Debug, Args)]
pub struct KeyShowArgs {
    /// The key's hash, as `key create` printed it.
    #[arg(value_name = "HASH")]
    pub hash: String,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,

    #[command(flatten)]
    pub api: ManagementArgs,
}

/// `orbatch key disable`.
#[derive(Debug, Args)]
pub struct KeyDisableArgs {
    /// The key's hash, as `key create` printed it.
    #[arg(value_name = "HASH")]
    pub hash: String,

    #[command(flatten)]
    pub api: ManagementArgs,
}

/// What `orbatch audit` compares and when it fails.
pub const AUDIT_HELP: &str =
    "The key's usage is read with the management key, $OPENROUTER_MANAGEMENT_KEY.
Tolerance: two figures agree when they differ by at most 0.5 % of the larger one, and at
least $0.000001. Explained differences: failed attempts (billed by /generation, in no
usage.cost), ids not looked up yet (counted at their records' cost; run `orbatch costs`),
BYOK provider charges (not in a key's usage; in byok_usage). Unexplained: more on the key
than in the outputs (other use of the key), less on the key (OpenRouter updates key usage
minutes late: rerun later).

Exit codes:
  0    the figures agree
  1    they disagree beyond the tolerance; or the command could not finish
  2    usage error (a file cannot be read, no management key); nothing was sent
  3    the management key was refused";

/// `orbatch audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Output files of the job (every shard's); each one's `.generations.jsonl` sidecar
    /// (from `orbatch costs`) is read when it exists.
    #[arg(value_name = "OUT.jsonl", required = true)]
    pub outputs: Vec<PathBuf>,

    /// The hash of the job's key, as `orbatch key create` printed it.
    #[arg(long, value_name = "HASH")]
    pub key_hash: String,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,

    #[command(flatten)]
    pub api: ManagementArgs,

    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// A listing on stdout: for people, or for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
}

/// `report --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportByArg {
    /// The requested model id.
    Model,
    /// The provider that served the request.
    Provider,
    /// ok or error.
    Status,
    /// The error kind (`-` for ok requests).
    Error,
    /// The service tier that served the request (flex, priority, standard; `-` when the
    /// response did not say).
    Tier,
    /// The output file (one line per job or shard, when several are given).
    Input,
    /// The document: a chunked document's chunk and reduce requests together (its whole
    /// spend).
    Document,
    /// The lane: sync (live) or batch (`--lane`).
    Lane,
}

/// `report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormatArg {
    /// A plain text table.
    Table,
    /// The report as JSON (groups, total, spend reconciliation, latency histogram).
    Json,
    /// One line per group and one for the total.
    Csv,
    /// A Markdown table.
    Md,
    /// One self-contained HTML page with charts (inline SVG, no script, no network).
    Html,
}

/// `--truncated`, and `truncated` in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruncatedArg {
    Ok,
    Error,
}

/// `--input-format`, and `input_format` in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormatArg {
    #[value(alias = "ndjson")]
    #[serde(alias = "ndjson")]
    Jsonl,
    Csv,
    Tsv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    Chat,
    Responses,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
